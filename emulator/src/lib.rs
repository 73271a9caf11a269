//! The Stack Auth local emulator as a library (docs/api.md §10): formatting and environment
//! helpers (`format`), settings and paths (`settings`), the runtime config disk (`iso`),
//! resumable downloads (`download`, `progress`) from a GitHub-compatible API (`github`), QEMU's
//! control channels (`control`), the VM lifecycle (`vm`), secret rotation (`secrets`), and the
//! benchmark (`bench`). `main.rs` is the `stack-emulator` command line.

pub mod bench;
pub mod control;
pub mod download;
pub mod format;
pub mod github;
pub mod iso;
pub mod progress;
pub mod secrets;
pub mod settings;
pub mod vm;
