//! `companion bench-metrics`: the metrics engine from raw events and from the rollups, and
//! MAU against upstream's OLD shape, at chosen scales, on a real ClickHouse engine
//! (`scripts/bench-metrics` starts the local one).
//!
//! 1. The MAU equivalence matrix must pass first (nothing is measured otherwise).
//! 2. Per scale: seed synthetic events under a fresh `bench-mau-<uuid>` project (a progress
//!    bar while seeding; a scale is a length of history at steady traffic), check that OLD and
//!    NEW find the same set of users and that the rollups give the raw events' metrics, then
//!    time OLD (ship every distinct id, normalize and count here), NEW (one server-side
//!    `uniqExact(sipHash64(...))`), and the whole metrics computation from raw events and from
//!    the rollups. Duration, peak memory and rows/bytes read come from the engine's own
//!    `system.query_log`.
//! 3. Remove the synthetic rows, print a Markdown table and write an SVG chart.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::Instant;

use clickhouse::Row;
use serde::Deserialize;
use shared::adapters::native::ReqwestClient;
use shared::analytics::metrics::Window;

use super::{matrix, queries, MetricsEngine, Scope, Source};

type AnyResult<T> = Result<T, Box<dyn std::error::Error>>;

#[derive(clap::Args)]
pub struct BenchArgs {
    /// The analytics store (ClickHouse HTTP).
    #[arg(long)]
    clickhouse_url: String,
    /// The admin identity's password on a real server (none on the local engine).
    #[arg(long)]
    clickhouse_admin_password: Option<String>,
    /// Event counts to measure at, comma-separated.
    #[arg(long, default_value = "500000,2500000,10000000", value_delimiter = ',')]
    scales: Vec<u64>,
    /// Runs per measurement (the median is reported).
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// The project's users: every event belongs to one of them, drawn at random.
    #[arg(long, default_value_t = 50_000)]
    users: u64,
    /// Events per day: a scale is that many days of history (2.5 M events fill the window).
    #[arg(long, default_value_t = 83_334)]
    events_per_day: u64,
    /// One user in this many is anonymous.
    #[arg(long, default_value_t = 10)]
    anonymous_every: u64,
    /// Where to write the chart.
    #[arg(long, default_value = "docs/metrics-bench.svg")]
    chart: PathBuf,
}

/// The measured series, as the table and the chart name them.
const OLD_MAU: &str = "MAU, OLD (ship ids)";
const NEW_MAU: &str = "MAU, NEW (server-side)";
const ALL_RAW: &str = "all metrics, raw events";
const ALL_ROLLUPS: &str = "all metrics, rollups";

/// What the engine recorded for one measured run.
#[derive(Debug, Clone, Default, Row, Deserialize)]
struct Stats {
    queries: u64,
    duration_ms: u64,
    peak_memory: u64,
    read_rows: u64,
    read_bytes: u64,
    result_bytes: u64,
}

/// One metric's figures within a run of every metrics query.
#[derive(Debug, Clone, Row, Deserialize)]
struct QueryStats {
    name: String,
    duration_ms: u64,
    peak_memory: u64,
    read_rows: u64,
    read_bytes: u64,
}

/// One row of the results table.
struct Measured {
    scale: u64,
    what: &'static str,
    value: String,
    wall_ms: f64,
    stats: Stats,
}

pub fn run(args: BenchArgs) -> AnyResult<()> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(bench(args))
}

async fn bench(args: BenchArgs) -> AnyResult<()> {
    let store = super::admin_store(&args.clickhouse_url, args.clickhouse_admin_password.clone());
    let port = store.admin_client();
    shared::analytics::clickhouse::apply_schema(&port, &ReqwestClient::new(), None).await?;
    let engine = MetricsEngine::uncached(&store);
    let run_id = uuid_v4();
    let window = Window::at(chrono::Utc::now().timestamp_millis());

    println!("MAU equivalence matrix:");
    for (i, case) in matrix::cases(&window).iter().enumerate() {
        let outcome = matrix::run(case, &format!("bench-mau-{run_id}-case-{i}"), &window, &port, &engine).await?;
        let ok = outcome.old == outcome.new
            && outcome.new_count == case.expected
            && outcome.endpoint_mau == case.expected
            && outcome.rollups_match_raw;
        println!(
            "  {} {} (expected {}, OLD {}, NEW {})",
            if ok { "pass" } else { "FAIL" },
            case.name,
            case.expected,
            outcome.old.len(),
            outcome.new_count
        );
        if !ok {
            cleanup(&engine).await?;
            return Err(format!("the matrix failed on {:?}: nothing is measured", case.name).into());
        }
    }

    let mut results = Vec::new();
    let mut breakdowns = Vec::new();
    for &scale in &args.scales {
        let project = format!("bench-mau-{run_id}-{scale}");
        seed(&engine, &project, scale, &args).await?;
        let scope = Scope { project_id: project.clone(), branch_id: "main".into(), include_anonymous: false };

        let old_set = old_mau(&engine, &scope, &window, "check").await?;
        let new_set: BTreeSet<String> = engine
            .query("mau_set", &queries::mau_user_set(), &scope, &window)
            .fetch_all::<String>()
            .await?
            .into_iter()
            .collect();
        if old_set != new_set {
            cleanup(&engine).await?;
            return Err(format!("at {scale} events OLD found {} users and NEW {}", old_set.len(), new_set.len()).into());
        }
        println!("{scale} events: OLD and NEW agree on {} users", new_set.len());
        let from_raw = engine.compute_from(Source::RawEvents, &scope, &window).await?;
        if engine.compute(&scope, &window).await? != from_raw {
            cleanup(&engine).await?;
            return Err(format!("at {scale} events the rollups' metrics differ from the raw events'").into());
        }
        println!("{scale} events: the rollups give the raw events' metrics (MAU {})", from_raw.mau);

        let mut old_runs = Vec::new();
        let mut new_runs = Vec::new();
        let mut raw_runs = Vec::new();
        let mut rollup_runs = Vec::new();
        for run in 0..args.runs {
            let tag = format!("bench-{run_id}-{scale}-old-{run}");
            let start = Instant::now();
            let users = old_mau(&engine, &scope, &window, &tag).await?.len();
            old_runs.push((start.elapsed().as_secs_f64() * 1000.0, users.to_string(), tag));

            let tag = format!("bench-{run_id}-{scale}-new-{run}");
            let start = Instant::now();
            let mau = engine
                .query("mau", &queries::mau(), &scope, &window)
                .with_setting("log_comment", &tag)
                .fetch_one::<u64>()
                .await?;
            new_runs.push((start.elapsed().as_secs_f64() * 1000.0, mau.to_string(), tag));

            for (source, runs, name) in
                [(Source::RawEvents, &mut raw_runs, "raw"), (Source::Rollups, &mut rollup_runs, "rollups")]
            {
                let tag = format!("bench-{run_id}-{scale}-{name}-{run}");
                let tagged = engine.tagged(&tag);
                let start = Instant::now();
                let activity = tagged.compute_from(source, &scope, &window).await?;
                runs.push((start.elapsed().as_secs_f64() * 1000.0, activity.mau.to_string(), tag));
            }
        }
        for (what, runs) in [(OLD_MAU, old_runs), (NEW_MAU, new_runs), (ALL_RAW, raw_runs), (ALL_ROLLUPS, rollup_runs)]
        {
            let (wall_ms, value, tag) = median(runs);
            if what == ALL_RAW || what == ALL_ROLLUPS {
                breakdowns.push((scale, what, breakdown(&engine, &tag).await?));
            }
            results.push(Measured { scale, what, value, wall_ms, stats: stats(&engine, &tag).await? });
        }
    }
    cleanup(&engine).await?;

    print_table(&results);
    for (scale, what, queries) in &breakdowns {
        println!("\nEach metrics query at {scale} events ({what}):\n");
        println!("| query | engine ms | peak memory MiB | rows read | MiB read |");
        println!("|---|---|---|---|---|");
        for q in queries {
            println!(
                "| {} | {} | {:.1} | {} | {:.1} |",
                q.name,
                q.duration_ms,
                mib(q.peak_memory),
                q.read_rows,
                mib(q.read_bytes)
            );
        }
    }
    chart(&results, &args.chart)?;
    println!("\nchart: {}", args.chart.display());
    Ok(())
}

/// The OLD pipeline: every distinct raw id shipped here, normalized and counted here.
async fn old_mau(engine: &MetricsEngine, scope: &Scope, window: &Window, tag: &str) -> AnyResult<BTreeSet<String>> {
    let ids = engine
        .query("mau_old", &queries::mau_old_ids(), scope, window)
        .with_setting("log_comment", tag)
        .fetch_all::<String>()
        .await?;
    Ok(queries::normalize_old(ids))
}

/// Seeds `events` events under `project`, in batches, with a progress bar: a project with
/// steady traffic (`events_per_day` from a population of `users`), so a larger scale is a
/// longer history, which is how a real project's event count grows. Of every nine events five
/// are token refreshes (located; a third of the users in one of 500 teams), three page views
/// (one of five referrers) and one a click, stamped with their user's anonymity as the events
/// endpoint stamps them; users get v4 UUIDs and every `anonymous_every`-th is anonymous.
async fn seed(engine: &MetricsEngine, project: &str, events: u64, args: &BenchArgs) -> AnyResult<()> {
    const BATCH: u64 = 250_000;
    let history_ms = events.div_ceil(args.events_per_day.max(1)) * 86_400_000;
    let bar = indicatif::ProgressBar::new(events).with_message(format!("seeding {project}"));
    bar.set_style(indicatif::ProgressStyle::with_template("{msg} [{bar:40}] {pos}/{len} events ({elapsed})")?);
    let mut done = 0;
    while done < events {
        let n = BATCH.min(events - done);
        // Event `number` belongs to user `u` (a hash of the number); `k` picks its type. A
        // user's id is a v4 UUID made from a hash of the user's number.
        let sql = "INSERT INTO analytics_internal.events (event_type, event_at, data, project_id, branch_id, user_id, team_id) \
            SELECT multiIf(k < 5, '$token-refresh', k < 8, '$page-view', '$click'), \
              now64(3, 'UTC') - toIntervalMillisecond(cityHash64(number, 7) % {history_ms:UInt64}), \
              CAST(if(k < 5, \
                  concat('{\"is_anonymous\":', if(u % {anonymous_every:UInt64} = 0, 'true', 'false'), \
                    ',\"ip_info\":{\"country_code\":\"', ['US', 'DE', 'FR', 'JP', 'BR'][1 + u % 5], \
                    '\",\"region_code\":\"', ['CA', 'NY', 'BE'][1 + intDiv(u, 5) % 3], '\"}}'), \
                  concat('{\"is_anonymous\":', if(u % {anonymous_every:UInt64} = 0, 'true', 'false'), \
                    ',\"referrer\":\"https://', ['a', 'b', 'c', 'd', 'e'][1 + cityHash64(number) % 5], '.example/\"}')), 'JSON'), \
              {project:String}, 'main', \
              lower(concat(substring(h, 1, 8), '-', substring(h, 9, 4), '-4', substring(h, 14, 3), '-8', \
                substring(h, 18, 3), '-', substring(h, 21, 12))), \
              if(k < 5 AND u % 3 = 0, concat('team-', toString(u % 500)), NULL) \
            FROM (SELECT number, cityHash64(number, 3) % {users:UInt64} AS u, cityHash64(number, 5) % 9 AS k, \
                  hex(sipHash128(u)) AS h FROM numbers({offset:UInt64}, {n:UInt64}))";
        engine
            .client
            .query(sql)
            .param("history_ms", history_ms)
            .param("users", args.users)
            .param("anonymous_every", args.anonymous_every)
            .param("project", project)
            .param("offset", done)
            .param("n", n)
            .execute()
            .await?;
        done += n;
        bar.set_position(done);
    }
    bar.finish();
    // What background merges do to a store over time, at once: rows of one key in one part.
    for statement in shared::analytics::clickhouse::schema_statements() {
        let Some(table) = statement.rollup else { continue };
        engine.client.query(&format!("OPTIMIZE TABLE {table} FINAL")).execute().await?;
    }
    engine.client.query("OPTIMIZE TABLE analytics_internal.events FINAL").execute().await?;
    Ok(())
}

/// Removes every synthetic row (this run's and any left by an interrupted run).
async fn cleanup(engine: &MetricsEngine) -> AnyResult<()> {
    engine
        .client
        .query("ALTER TABLE analytics_internal.events DELETE WHERE startsWith(project_id, 'bench-mau-') OR startsWith(project_id, 'mau-matrix-')")
        .with_setting("mutations_sync", "1")
        .execute()
        .await?;
    for statement in shared::analytics::clickhouse::schema_statements() {
        let Some(table) = statement.rollup else { continue };
        engine
            .client
            .query(&format!(
                "ALTER TABLE {table} DELETE WHERE startsWith(project_id, 'bench-mau-') OR startsWith(project_id, 'mau-matrix-')"
            ))
            .with_setting("mutations_sync", "1")
            .execute()
            .await?;
    }
    Ok(())
}

/// The engine's figures for the queries tagged `tag`.
async fn stats(engine: &MetricsEngine, tag: &str) -> AnyResult<Stats> {
    engine.client.query("SYSTEM FLUSH LOGS query_log").execute().await?;
    let stats = engine
        .client
        .query(
            "SELECT count() AS queries, toUInt64(sum(query_duration_ms)) AS duration_ms, \
             toUInt64(max(memory_usage)) AS peak_memory, toUInt64(sum(read_rows)) AS read_rows, \
             toUInt64(sum(read_bytes)) AS read_bytes, toUInt64(sum(result_bytes)) AS result_bytes \
             FROM system.query_log WHERE (log_comment = {tag:String} OR startsWith(log_comment, {tag:String} || ':')) \
             AND type = 'QueryFinish'",
        )
        .param("tag", tag)
        .fetch_one::<Stats>()
        .await?;
    Ok(stats)
}

/// The engine's figures per metric (named by the queries' leading comments) for `tag`.
async fn breakdown(engine: &MetricsEngine, tag: &str) -> AnyResult<Vec<QueryStats>> {
    let rows = engine
        .client
        .query(
            "SELECT substring(log_comment, length({tag:String}) + 2) AS name, toUInt64(sum(query_duration_ms)) AS duration_ms, \
             toUInt64(max(memory_usage)) AS peak_memory, toUInt64(sum(read_rows)) AS read_rows, \
             toUInt64(sum(read_bytes)) AS read_bytes \
             FROM system.query_log WHERE startsWith(log_comment, {tag:String} || ':') AND type = 'QueryFinish' \
             GROUP BY name ORDER BY duration_ms DESC",
        )
        .param("tag", tag)
        .fetch_all::<QueryStats>()
        .await?;
    Ok(rows)
}

/// The run with the median wall time.
fn median(mut runs: Vec<(f64, String, String)>) -> (f64, String, String) {
    runs.sort_by(|a, b| a.0.total_cmp(&b.0));
    runs.swap_remove(runs.len() / 2)
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

fn print_table(results: &[Measured]) {
    println!("\n| events | what | result | wall ms | engine ms | queries | peak memory MiB | rows read | MiB read | result KiB |");
    println!("|---|---|---|---|---|---|---|---|---|---|");
    for r in results {
        let s = &r.stats;
        println!(
            "| {} | {} | {} | {:.0} | {} | {} | {:.1} | {} | {:.1} | {:.1} |",
            r.scale,
            r.what,
            r.value,
            r.wall_ms,
            s.duration_ms,
            s.queries,
            mib(s.peak_memory),
            s.read_rows,
            mib(s.read_bytes),
            s.result_bytes as f64 / 1024.0
        );
    }
}

/// Bars of wall time, OLD vs NEW MAU (and the whole metrics computation), per scale.
fn chart(results: &[Measured], path: &PathBuf) -> AnyResult<()> {
    use plotters::prelude::*;
    let scales: Vec<u64> = results.iter().map(|r| r.scale).collect::<BTreeSet<_>>().into_iter().collect();
    let series = [OLD_MAU, NEW_MAU, ALL_RAW, ALL_ROLLUPS];
    let colors = [RGBColor(200, 80, 60), RGBColor(60, 130, 200), RGBColor(120, 120, 120), RGBColor(60, 160, 90)];
    let max = results.iter().map(|r| r.wall_ms).fold(1.0, f64::max) * 1.15;
    let root = SVGBackend::new(path, (720, 420)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption("Metrics: wall time, raw events vs rollups (lower is better)", ("sans-serif", 20))
        .margin(16)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(0.0..scales.len() as f64, 0.0..max)?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        // Ticks every half unit; the ones in the middle of a group (i + 0.5) carry its label.
        .x_labels(2 * scales.len() + 1)
        .x_label_formatter(&|x| {
            let half_units = (x * 2.0).round() as usize;
            let label = (half_units % 2 == 1).then(|| scales.get(half_units / 2)).flatten();
            label.map(|s| format!("{s} events")).unwrap_or_default()
        })
        .y_desc("ms")
        .draw()?;
    for (k, name) in series.iter().enumerate() {
        let bars = scales.iter().enumerate().filter_map(|(i, scale)| {
            let r = results.iter().find(|r| r.scale == *scale && r.what == *name)?;
            let left = i as f64 + 0.1 + k as f64 * 0.2;
            Some(Rectangle::new([(left, 0.0), (left + 0.18, r.wall_ms)], colors[k].filled()))
        });
        chart
            .draw_series(bars)?
            .label(*name)
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 12, y + 5)], colors[k].filled()));
    }
    chart.configure_series_labels().border_style(BLACK).background_style(WHITE).draw()?;
    root.present()?;
    Ok(())
}

fn uuid_v4() -> String {
    shared::identity::crypto::new_uuid(&shared::adapters::system::OsRandom)
}
