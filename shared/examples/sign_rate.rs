//! The raw ES256 sign rate of each engine this build has, signing an access token in a loop on
//! one thread as a refresh does. `scripts/bench-edge` builds it for wasm32-wasip2 (features
//! `spin-wasi`) and runs it under `wasmtime run`: the components' engines, side by side.

use std::time::{Duration, Instant};

use futures_util::FutureExt;
use shared::identity::es256::Engine;
use shared::identity::tokens::{self, AccessTokenClaims, KeyCache, UserKind};

fn main() {
    let mut engines = vec![Engine::P256];
    if Engine::DEFAULT != Engine::P256 {
        engines.push(Engine::DEFAULT);
    }
    for engine in engines {
        println!("{engine:?}: {:.0} signatures/s", rate(engine, Duration::from_secs(3)));
    }
}

fn rate(engine: Engine, duration: Duration) -> f64 {
    let keys = KeyCache::on(engine, "YmVuY2htYXJrLXNlcnZlci1zZWNyZXQ".into());
    let project = "6f1d2c9e-3b7a-4c61-9d8e-0a1b2c3d4e5f";
    let claims = AccessTokenClaims {
        sub: "0b1c2d3e-4f50-4a6b-8c7d-9e0f1a2b3c4d".into(),
        project_id: project.into(),
        branch_id: "main".into(),
        refresh_token_id: Some("1b1c2d3e-4f50-4a6b-8c7d-9e0f1a2b3c4d".into()),
        role: "authenticated".into(),
        name: Some("Bench".into()),
        email: None,
        email_verified: false,
        selected_team_id: None,
        signed_up_at: 1_700_000_000,
        is_anonymous: false,
        is_restricted: Some(false),
        restricted_reason: None,
        requires_totp_mfa: false,
        iss: UserKind::Normal.issuer("http://127.0.0.1:8102", project),
        aud: project.into(),
    };
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < duration {
        // The in-process engines never wait: one poll signs.
        let token = tokens::sign(&keys, claims.clone(), 1_700_000_000_000 + n as i64, 600_000)
            .now_or_never()
            .expect("an in-process engine")
            .expect("signed");
        std::hint::black_box(token);
        n += 1;
    }
    n as f64 / start.elapsed().as_secs_f64()
}
