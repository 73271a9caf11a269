//! The raw ES256 sign rate of each engine this build has, signing an access token in a loop on
//! one thread as a refresh does. `scripts/bench-edge` builds it for wasm32-wasip2 (features
//! `spin-wasi`) and runs it under `wasmtime run`: the components' engines, side by side.

use std::time::Duration;

use shared::identity::es256::Engine;

// The loop bench-refresh measures natively, so both report the same work.
#[path = "../../bench/src/sign_rate.rs"]
mod sign_rate;

fn main() {
    let mut engines = vec![Engine::P256];
    if Engine::DEFAULT != Engine::P256 {
        engines.push(Engine::DEFAULT);
    }
    for engine in engines {
        println!("{engine:?}: {:.0} signatures/s", sign_rate::sign_rate(engine, Duration::from_secs(3)));
    }
}
