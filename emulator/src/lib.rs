//! The Stack Auth local emulator as a library (contract part 2, §5): formatting and environment
//! helpers (`format`), the runtime config disk (`iso`), resumable downloads (`download`) from a
//! GitHub-compatible API (`github`), and, in the CLI, the VM lifecycle.

pub mod download;
pub mod format;
pub mod github;
pub mod iso;
