//! `bench-guard`: the query guard's parse-and-scope time per query (p50/p99), over analytics
//! queries of the kinds the endpoint serves.

use std::time::Instant;

use shared::query_guard::scope;

const QUERIES: &[&str] = &[
    "SELECT 1 AS value",
    "SELECT count() FROM events",
    "SELECT event_type, count() AS c FROM events GROUP BY event_type ORDER BY c DESC LIMIT 10",
    "SELECT countIf(data.is_anonymous = true) AS anon FROM events WHERE event_at > now() - INTERVAL 7 DAY",
    "SELECT uniqExact(sipHash64(lower(trim(assumeNotNull(user_id))))) AS mau FROM events WHERE event_type = '$token-refresh'",
    "SELECT toStartOfDay(event_at) AS d, uniqExact(user_id) AS dau FROM events GROUP BY d ORDER BY d",
    "SELECT user_id, row_number() OVER (PARTITION BY user_id ORDER BY event_at) AS rn FROM events",
    "WITH recent AS (SELECT * FROM events WHERE event_at > now() - INTERVAL 1 DAY) SELECT count() FROM recent",
    "SELECT e.event_type, u.display_name FROM events e JOIN users u ON e.user_id = toString(u.id) LIMIT 100",
    "SELECT arrayMap(x -> x * 2, [1, 2, 3]) AS a, quantile(0.5)(length(event_type)) AS q FROM events",
    "SELECT count() FROM events WHERE user_id IN (SELECT toString(id) FROM users WHERE is_anonymous = 0)",
    "SELECT t.display_name, count() FROM team_member_profiles m JOIN teams t ON m.team_id = t.id GROUP BY t.display_name",
];

fn main() {
    let rounds = 2000;
    let mut samples = Vec::with_capacity(rounds * QUERIES.len());
    for _ in 0..rounds {
        for q in QUERIES {
            let start = Instant::now();
            let scoped = scope(q).expect("the benchmark queries are valid");
            samples.push(start.elapsed().as_nanos() as u64);
            std::hint::black_box(scoped);
        }
    }
    samples.sort_unstable();
    let pct = |p: f64| samples[((samples.len() as f64 * p) as usize).min(samples.len() - 1)] as f64 / 1000.0;
    println!("| queries | runs | guard p50 µs | guard p99 µs |");
    println!("|---|---|---|---|");
    println!("| {} | {} | {:.1} | {:.1} |", QUERIES.len(), samples.len(), pct(0.50), pct(0.99));
}
