//! The companion's scheduler. It fires each function's scheduled handler at the times of its
//! cron expressions (the same ones the Workers' cron triggers use), and serves
//! `/__scheduled?cron=...` under `dev --test-scheduled`, as `wrangler dev --test-scheduled` does,
//! so tests fire a trigger on demand on every runtime.

use std::str::FromStr;

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

/// Runs the scheduled work of every function that has `cron`. False when none has it.
pub async fn run_scheduled(cron: &str, ctx: &Context) -> bool {
    let mut ran = false;
    for function in router::FUNCTIONS {
        ran |= function.run_scheduled(cron, ctx).await;
    }
    ran
}

/// Sleeps until the next cron time, fires it, and repeats until shutdown.
pub async fn scheduler_loop(ctx: Context, mut shutdown: watch::Receiver<bool>) {
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
            _ = tokio::time::sleep(wait) => {
                tracing::info!(cron, "cron trigger");
                run_scheduled(cron, &ctx).await;
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
