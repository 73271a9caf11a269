//! Tenant isolation of the analytics endpoint under attack: a corpus of queries (system tables,
//! table functions, other databases, aliases and quoting tricks, comments, unicode, nested
//! subqueries, UNION, CTE shadowing, FINAL, ARRAY JOIN, settings smuggling, statements that
//! are not SELECTs), each in several spellings, run as project A's admin in production mode.
//! None may return project B's data, answer with a 5xx, or show raw ClickHouse error text.

use api_tests::{ClickHouseFront, Host, Project};
use serde_json::json;
use shared::adapters::native::ReqwestClient;
use shared::analytics::clickhouse::{apply_schema, ClickHouse};

const BASE: &[&str] = &[
    "SELECT * FROM events",
    "SELECT * FROM default.events",
    "SELECT * FROM analytics_internal.events",
    "SELECT * FROM `analytics_internal`.`events`",
    "SELECT * FROM \"analytics_internal\".\"events\"",
    "SELECT * FROM analytics_internal.users",
    "SELECT * FROM system.tables",
    "SELECT * FROM system.users",
    "SELECT * FROM system.query_log",
    "SELECT * FROM system.processes",
    "SELECT * FROM information_schema.tables",
    "SELECT * FROM url('http://127.0.0.1:9/x', CSV, 'a String')",
    "SELECT * FROM file('/etc/passwd', 'LineAsString')",
    "SELECT * FROM remote('127.0.0.1', analytics_internal.events)",
    "SELECT * FROM cluster('default', analytics_internal.events)",
    "SELECT * FROM s3('http://127.0.0.1:9/b/k', 'CSV')",
    "SELECT * FROM merge('analytics_internal', '.*')",
    "SELECT * FROM view(SELECT * FROM analytics_internal.events)",
    "SELECT * FROM executable('cat /etc/passwd', 'TSV', 'a String')",
    "SELECT * FROM input('a String')",
    "SELECT * FROM numbers(10)",
    "SELECT * FROM events AS users",
    "SELECT * FROM (SELECT * FROM analytics_internal.events)",
    "WITH events AS (SELECT * FROM analytics_internal.events) SELECT * FROM events",
    "WITH x AS (SELECT * FROM analytics_internal.events) SELECT * FROM x",
    "SELECT user_id FROM events UNION ALL SELECT user_id FROM analytics_internal.events",
    "SELECT * FROM events WHERE user_id IN (SELECT user_id FROM analytics_internal.events)",
    "SELECT (SELECT groupArray(user_id) FROM analytics_internal.events) AS all_users",
    "SELECT * FROM events JOIN analytics_internal.events AS e2 USING (user_id)",
    "SELECT * FROM events e, analytics_internal.events f",
    "SELECT * FROM users FINAL",
    "SELECT * FROM events ARRAY JOIN [1, 2] AS x",
    "SELECT * FROM events SETTINGS SQL_project_id = 'other'",
    "SELECT * FROM events SETTINGS readonly = 0",
    "SELECT 1; SELECT * FROM analytics_internal.events",
    "SELECT * FROM еvents",
    "SELECT joinGet('analytics_internal.events', 'user_id', 1)",
    "SELECT dictGet('d', 'a', toUInt64(1))",
    "SELECT getSetting('SQL_project_id') AS p",
    "SELECT * FROM events WHERE project_id != '' OR 1 = 1",
    "DROP TABLE events",
    "TRUNCATE TABLE events",
    "ALTER TABLE events DELETE WHERE 1",
    "INSERT INTO events (project_id) VALUES ('x')",
    "CREATE TABLE evil (a String) ENGINE = Memory",
    "SHOW TABLES",
    "SHOW GRANTS",
    "DESCRIBE TABLE analytics_internal.events",
    "KILL QUERY WHERE 1",
    "SYSTEM FLUSH LOGS",
    // Where the guard's lexer and ClickHouse's disagree (issue 15): a backslash escapes a quoted
    // identifier's closing quote for ClickHouse only, so the FROM after it was real.
    "SELECT `x\\` , ` FROM analytics_internal.events -- ` FROM events",
    "SELECT \"x\\\" , \" FROM analytics_internal.events -- \" FROM events",
    "SELECT `x\\` , ` FROM system.query_log -- ` FROM events",
    "SELECT `x\\` , ` FROM system.tables -- ` FROM events",
    "SELECT `x\\` , ` , user_id FROM analytics_internal.events WHERE 1 -- ` FROM events",
    "SELECT $a b$ FROM analytics_internal.events $a b$ FROM events",
    "SELECT count() FROM events // , analytics_internal.events",
    "SELECT count() FROM events #, analytics_internal.events",
    "SELECT * FROM events WHERE user_id IN {t:Identifier}",
    "SELECT 1events FROM analytics_internal.events",
    "SELECT \u{2018}x\u{2019} FROM analytics_internal.events",
    "SELECT 1 FROM events /* /* */ , analytics_internal.events */",
];

/// Attacks that only answer a yes/no question about another project's rows (so no marker text
/// would show a leak): each must be refused outright. ClickHouse reads `x IN t` as
/// `x IN (SELECT * FROM t)`, unscoped.
const ORACLES: &[&str] = &[
    "SELECT count() AS c FROM events WHERE user_id IN users",
    "SELECT count() AS c FROM events WHERE user_id IN (users)",
    "SELECT count() AS c FROM events WHERE user_id NOT IN default.events",
    "SELECT count() AS c FROM events WHERE user_id GLOBAL IN analytics_internal.events",
    "SELECT count() AS c FROM events WHERE (project_id, user_id) IN system.one",
    "SELECT in(user_id, users) AS c FROM events",
    "SELECT globalNotIn(user_id, events) AS c FROM events",
    "SELECT count() AS c FROM events ARRAY JOIN users AS u",
];

/// Each base query in several spellings.
fn corpus() -> Vec<String> {
    let mut all = Vec::new();
    for q in BASE.iter().chain(ORACLES) {
        all.push(q.to_string());
        all.push(format!("/* harmless */ {q}"));
        all.push(format!("{q} -- trailing comment"));
        all.push(q.replace(' ', "\n"));
        all.push(q.replace(' ', "\t  "));
    }
    all.sort();
    all.dedup();
    all
}

#[tokio::test]
async fn no_attack_query_reaches_another_project() {
    let queries = corpus();
    assert!(queries.len() >= 150, "corpus has {} queries", queries.len());

    let front = ClickHouseFront::start();
    let ch = ClickHouse { url: front.url.clone(), database: "default".into(), user: None, password: None };
    let http = ReqwestClient::new();
    apply_schema(&ch, &http, None).await.unwrap();
    // Production needs the low-privilege user's password (the local engine ignores it).
    let h = Host::start(&[
        ("STACK_CLICKHOUSE_URL", &front.url),
        ("STACK_ENVIRONMENT", "production"),
        ("STACK_CLICKHOUSE_EXTERNAL_PASSWORD", "the-local-engine-ignores-it"),
    ]);
    let a: Project = h.create_project(false).await;
    let b: Project = h.create_project(false).await;
    let marker = format!("secret-of-b-{}", &b.id[..8]);
    let mut rows = Vec::new();
    for (project, user) in [(&a.id, "user-of-a".to_string()), (&b.id, marker.clone())] {
        rows.push(json!({ "event_type": "$click", "event_at": "2026-11-26 10:00:00.000", "data": { "note": user },
                          "project_id": project, "branch_id": "main", "user_id": user }));
    }
    ch.insert(&http, "analytics_internal.events", &rows).await.unwrap();

    let mut answered = 0;
    for sql in &queries {
        let res = h.post("/api/v1/internal/analytics/query").admin(&a).json(&json!({ "query": sql })).send().await;
        assert!(res.status == 200 || res.status == 400, "{sql:?}: {} {}", res.status, res.text);
        assert!(!res.text.contains(&marker) && !res.text.contains(&b.id), "{sql:?} leaked project B: {}", res.text);
        assert!(!res.text.contains("DB::Exception") && !res.text.contains("Maybe you meant"), "{sql:?}: {}", res.text);
        if res.status == 200 {
            answered += 1;
        } else {
            assert_eq!(res.header("x-stack-known-error"), Some("ANALYTICS_QUERY_ERROR"), "{sql:?}: {}", res.text);
        }
    }
    for sql in ORACLES {
        let res = h.post("/api/v1/internal/analytics/query").admin(&a).json(&json!({ "query": sql })).send().await;
        res.assert_known_error(400, "ANALYTICS_QUERY_ERROR");
    }
    // The scoped spellings of the plain queries do run: isolation is not just refusal.
    assert!(answered >= 10, "only {answered} queries were answered");

    // An Identifier parameter would name any table its value says.
    let res = h
        .post("/api/v1/internal/analytics/query")
        .admin(&a)
        .json(&json!({ "query": "SELECT * FROM {t:Identifier}", "params": { "t": "analytics_internal.events" } }))
        .send()
        .await;
    res.assert_known_error(400, "ANALYTICS_QUERY_ERROR");
    assert!(!res.text.contains(&marker), "{}", res.text);

    // Parameters named like the scope parameters are refused, in every spelling.
    for name in ["__stack_project_id", "__stack_branch_id", "__stack_x"] {
        let res = h
            .post("/api/v1/internal/analytics/query")
            .admin(&a)
            .json(&json!({ "query": "SELECT * FROM events", "params": { name: b.id } }))
            .send()
            .await;
        res.assert_known_error(400, "ANALYTICS_QUERY_ERROR");
    }
}

/// Fail closed: in production, user SQL needs the dedicated low-privilege ClickHouse user. Without
/// its password the endpoint and the AI tool refuse with 503 instead of running as `default`.
#[tokio::test]
async fn production_without_a_low_privilege_user_refuses_user_sql() {
    let front = ClickHouseFront::start();
    let h = Host::start(&[("STACK_CLICKHOUSE_URL", &front.url), ("STACK_ENVIRONMENT", "production")]);
    let a = h.create_project(false).await;
    let res =
        h.post("/api/v1/internal/analytics/query").admin(&a).json(&json!({ "query": "SELECT 1 AS v" })).send().await;
    assert_eq!(res.status, 503, "{}", res.text);
    assert!(res.text.contains("STACK_CLICKHOUSE_EXTERNAL_PASSWORD"), "{}", res.text);
}

/// Every resource limit stops a query that exceeds it with a clear 4xx.
#[tokio::test]
async fn resource_limits_stop_queries_that_exceed_them() {
    let front = ClickHouseFront::start();
    let h = Host::start(&[("STACK_CLICKHOUSE_URL", &front.url)]);
    let a = h.create_project(false).await;
    let run = |sql: String| h.post("/api/v1/internal/analytics/query").admin(&a).json(&json!({ "query": sql })).send();
    let refused = |res: &api_tests::Res, what: &str| {
        res.assert_known_error(400, "ANALYTICS_QUERY_ERROR");
        let error = res.json()["error"].as_str().unwrap_or_default().to_string();
        assert!(error.contains(what), "expected {what:?} in {error:?}");
    };
    // Memory (512 MiB per query).
    refused(
        &run("SELECT length(groupArray(repeat('x', 2000))) FROM numbers(400000)".into()).await,
        "memory limit exceeded",
    );
    // Rows read (100 million).
    refused(&run("SELECT sum(number) FROM numbers(150000000)".into()).await, "Limit for rows");
    // Result rows (10,000).
    refused(&run("SELECT number FROM numbers(10001)".into()).await, "Limit for result exceeded");
    // The answer's size (16 MiB of JSON): ClickHouse lets one large block past its own result
    // bytes limit, so the port bounds what it reads.
    refused(&run("SELECT repeat('x', 1000000) AS s FROM numbers(20)".into()).await, "Limit for result exceeded");
    // Execution time: the query's own timeout.
    let res = h
        .post("/api/v1/internal/analytics/query")
        .admin(&a)
        .json(&json!({ "query": "SELECT sleep(3)", "timeout_ms": 1000 }))
        .send()
        .await;
    refused(&res, "Timeout exceeded");
    // Table references (100).
    refused(&run(format!("SELECT 1 FROM events{}", ", events".repeat(100))).await, "more than 100 table references");
    // Threads: every query runs on at most two.
    let res = run("SELECT getSetting('max_threads') AS t".into()).await;
    assert_eq!(res.status, 200, "{}", res.text);
    assert_eq!(res.json()["result"][0]["t"], json!(2), "{}", res.text);
    // Text size (100 KiB) and nesting depth, before anything is parsed.
    let long = format!("SELECT 1 AS x{}", " ".repeat(shared::analytics::query_guard::MAX_QUERY_BYTES));
    refused(&run(long).await, "longer than");
    let deep = format!("SELECT {}1{}", "(".repeat(100), ")".repeat(100));
    refused(&run(deep).await, "levels deep");
    // Settings cannot be changed from the query: the guard refuses the clause.
    refused(&run("SELECT 1 SETTINGS max_memory_usage = 0".into()).await, "SETTINGS");
}

/// One body cap on every runtime: a body over 1 MiB is refused with 413 before anything parses
/// it (here not even JSON), by the native host and by the Workers adapter alike.
#[tokio::test]
async fn bodies_over_the_cap_are_refused_before_parsing() {
    let h = Host::start(&[]);
    let a = h.create_project(false).await;
    let over = "{".repeat(shared::http::MAX_BODY_BYTES + 1);
    let res = h.post("/api/v1/internal/analytics/query").admin(&a).raw_body("application/json", &over).send().await;
    assert_eq!(res.status, 413, "{}", res.text);
    assert_eq!(res.text, format!("Request body too large (max {} bytes)", shared::http::MAX_BODY_BYTES));
    // Just under the cap, the same body reaches the handler, which reads it as bad JSON.
    let under = "{".repeat(shared::http::MAX_BODY_BYTES - 1);
    let res = h.post("/api/v1/internal/analytics/query").admin(&a).raw_body("application/json", &under).send().await;
    assert_eq!(res.status, 400, "{}", res.text);
}
