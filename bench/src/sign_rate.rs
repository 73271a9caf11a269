//! The raw ES256 sign rate of one engine: an access token signed in a loop on one thread, with
//! the claims and key of a refresh. Shared by `bench-refresh` (natively) and
//! `shared/examples/sign_rate.rs` (built for wasm32-wasip2, which includes this file), so it
//! needs nothing but `shared` and std.

use std::future::Future;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use shared::identity::es256::Engine;
use shared::identity::tokens::{self, AccessTokenClaims, KeyCache, UserKind};

/// Signatures per second on `engine` over `duration`.
pub fn sign_rate(engine: Engine, duration: Duration) -> f64 {
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
        let signing = std::pin::pin!(tokens::sign(&keys, claims.clone(), 1_700_000_000_000 + n as i64, 600_000));
        let Poll::Ready(token) = signing.poll(&mut Context::from_waker(Waker::noop())) else {
            panic!("an in-process engine does not wait");
        };
        std::hint::black_box(token.expect("signed"));
        n += 1;
    }
    n as f64 / start.elapsed().as_secs_f64()
}
