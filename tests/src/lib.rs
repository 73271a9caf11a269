//! The black-box test kit, one module a job: `launch` starts the host under test (native,
//! `wrangler dev --local`, or `wasmtime serve`) on a free loopback port with fresh state;
//! `client` is the small HTTP client the suites speak through; `engines` starts the real
//! services the suites need (the local ClickHouse engine, an SMTP server, an OpenID provider);
//! `oauth_browser` signs in through them like a browser; `fakes` holds the
//! recording stand-ins for paid services. Every process exits when the test process does (its
//! standard input closes). `STACK_EDGE_RUNTIME` picks the runtime: `native` (default:
//! `companion dev` over SQLite), `cloudflare` (real workerd and local D1, the Workers built
//! beforehand by `scripts/build-worker`) or `spin` (`spin up` of `spin.toml`, the components
//! built beforehand by `scripts/build-component <crate> spin`).

pub mod ai_fakes;
pub mod analytics_data;
pub mod client;
pub mod engines;
pub mod fakes;
pub mod launch;
pub mod oauth_browser;

pub use client::{Call, Project, Res, UserSession};
pub use engines::{ClickHouseFront, OpenIdProvider, SmtpSink};
pub use fakes::{Recorded, RecordingServer, Reply};
pub use launch::{companion_bin, host, repo_root, runtime, rust_sources, Host, Launch, Runtime};
