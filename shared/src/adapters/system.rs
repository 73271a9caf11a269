//! Adapters over the standard library, shared by the native host and the WASI component: the
//! system clock, the OS random source and configuration from environment variables.

use std::time::{SystemTime, UNIX_EPOCH};

use crate::store::ports::{Clock, ConfigSource, Random};

/// The system clock, in milliseconds since the Unix epoch.
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_millis(&self) -> i64 {
        SystemTime::now().duration_since(UNIX_EPOCH).expect("clock after 1970").as_millis() as i64
    }
}

/// The operating system's randomness (getrandom).
pub struct OsRandom;

impl Random for OsRandom {
    fn fill(&self, buf: &mut [u8]) {
        getrandom::fill(buf).expect("the OS random source is available");
    }
}

/// Configuration from the process environment.
pub struct EnvConfig;

impl ConfigSource for EnvConfig {
    fn get(&self, key: &str) -> Option<String> {
        std::env::var(key).ok().filter(|v| !v.is_empty())
    }
}
