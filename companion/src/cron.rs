//! The companion's scheduler. It fires each function's crons at their times (the same
//! expressions the Workers' cron triggers use, from `router::FUNCTIONS`): in-process with the
//! API role, or — the `scheduler` role, for runtimes without cron triggers (Spin, `wasmtime
//! serve`) — over HTTP through each function's scheduled route (`POST
//! /api/v1/internal/scheduled/<function>?cron=...` with `CRON_SECRET`). Under
//! `--test-scheduled` the host serves `/__scheduled?cron=...`, as `wrangler dev
//! --test-scheduled` does, so tests fire a trigger on demand on every runtime.

use std::str::FromStr;
use std::time::Duration;

use chrono::Utc;
use croner::Cron;
use tokio::sync::watch;

use shared::Context;

/// Every function's cron expressions.
fn all_crons() -> Vec<&'static str> {
    let mut crons: Vec<&'static str> = router::FUNCTIONS.iter().flat_map(|f| f.crons.iter().copied()).collect();
    crons.sort_unstable();
    crons.dedup();
    crons
}

/// How a scheduler reaches the functions.
#[derive(Clone)]
pub enum Scheduler {
    /// In this process (the API role's context).
    Local(Context),
    /// Over HTTP, through the scheduled routes of the functions at `function_url`.
    Remote(RemoteFunctions),
}

/// The functions of another runtime, reached through their scheduled routes.
#[derive(Clone)]
pub struct RemoteFunctions {
    pub function_url: String,
    pub cron_secret: String,
    pub http: reqwest::Client,
}

impl RemoteFunctions {
    pub fn new(function_url: String, cron_secret: String) -> RemoteFunctions {
        let http = reqwest::Client::builder().timeout(Duration::from_secs(300)).build().expect("an HTTP client");
        RemoteFunctions { function_url, cron_secret, http }
    }

    /// Fires `cron` through the scheduled route at `path`; whether it answered 200.
    async fn fire(&self, path: &str, cron: &str) -> bool {
        let url = format!("{}{path}", self.function_url);
        let answer = self.http.post(&url).query(&[("cron", cron)]).bearer_auth(&self.cron_secret).send().await;
        match answer {
            Ok(response) if response.status().is_success() => true,
            Ok(response) => {
                tracing::error!(%url, status = %response.status(), "a scheduled route refused the trigger");
                false
            }
            Err(e) => {
                tracing::error!(%url, error = %e, "a scheduled route could not be reached");
                false
            }
        }
    }
}

impl Scheduler {
    /// Runs the scheduled work of every function that has `cron`. False when none has it (or,
    /// remotely, when none answered 200).
    pub async fn fire(&self, cron: &str) -> bool {
        let mut ran = false;
        for function in router::FUNCTIONS {
            ran |= match self {
                Scheduler::Local(ctx) => function.run_scheduled(cron, ctx).await,
                Scheduler::Remote(remote) => match function.scheduled_path() {
                    Some(path) if function.crons.contains(&cron) => remote.fire(&path, cron).await,
                    _ => false,
                },
            };
        }
        ran
    }
}

/// Sleeps until the next cron time, fires it, and repeats until shutdown.
pub async fn scheduler_loop(scheduler: Scheduler, mut shutdown: watch::Receiver<bool>) {
    let crons: Vec<(&str, Cron)> =
        all_crons().into_iter().map(|c| (c, Cron::from_str(c).expect("function crons are valid"))).collect();
    loop {
        let now = Utc::now();
        let next = crons
            .iter()
            .filter_map(|(text, cron)| cron.find_next_occurrence(&now, false).ok().map(|t| (t, *text)))
            .min();
        let Some((at, cron)) = next else { return };
        let wait = (at - now).to_std().unwrap_or_default();
        tokio::select! {
            () = tokio::time::sleep(wait) => {
                tracing::info!(cron, "cron trigger");
                scheduler.fire(cron).await;
            }
            _ = shutdown.wait_for(|stop| *stop) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_cron_parses() {
        for cron in super::all_crons() {
            assert!(<croner::Cron as std::str::FromStr>::from_str(cron).is_ok(), "{cron}");
        }
    }
}
