//! The query guard held against ClickHouse's own parser: a differential property test.
//!
//! Hostile token soup and structured queries (quoted identifiers with backslash escapes,
//! heredocs, every ClickHouse comment kind, query parameters, table functions, nested CTEs,
//! unicode, odd numbers) are generated; whatever the guard accepts is sent, scoped, to the local
//! engine (chdb, ClickHouse 26.9) as `EXPLAIN AST`. The oracle then reads ClickHouse's tree, not
//! the guard's: every table ClickHouse sees must be `default.<exposed>` inside a SELECT equal to
//! the scoping template (or a CTE name), every table function a generator, no `IN` may take a
//! bare name, and no forbidden function may appear. Queries ClickHouse cannot parse run nowhere,
//! so they pass.
//!
//! The oracle is independent of the guard (it never calls sqlparser), and it is shown to fail:
//! with the lexer agreement check switched off, the same cases find the backslash bypass.

use std::collections::HashMap;

use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::TestRunner;
use shared::adapters::native::ReqwestClient;
use shared::analytics::clickhouse::{ClickHouse, ClickHouseError, Query};
use shared::analytics::query_guard::{scope, scope_without_lexer_agreement, GuardError, EXPOSED_TABLES};

const CTE_NAMES: &[&str] = &["r", "recent"];
const GENERATORS: &[&str] = &["numbers", "numbers_mt", "zeros", "zeros_mt", "generate_series", "generateSeries"];
const IN_FUNCTIONS: &[&str] =
    &["in", "notIn", "globalIn", "globalNotIn", "nullIn", "notNullIn", "globalNullIn", "globalNotNullIn"];
/// Scalar functions that reach outside the query (table functions are checked by position).
const FORBIDDEN: &[&str] = &["file", "joinGet", "dictGet", "getClientHTTPHeader", "currentUser", "hostName"];

// --- generators -----------------------------------------------------------------------------

/// Pieces of SQL, the dangerous ones included.
fn atom() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => prop::sample::select(vec![
            "SELECT", "FROM", "WHERE", "JOIN", "IN", "NOT IN", "GLOBAL IN", "UNION ALL", "WITH", "AS", "ON",
            "ARRAY JOIN", "GROUP BY", "LIMIT 1", "AND", "OR", "count()", "*", "1", "x", "e", "r",
        ]),
        4 => prop::sample::select(vec![
            "events", "users", "default.events", "`events`", "\"users\"", "system.tables", "system.query_log",
            "analytics_internal.events", "analytics_internal.users", "system.one", "information_schema.tables",
        ]),
        3 => prop::sample::select(vec!["(", ")", ",", "=", ".", ";", "[", "]", "::", "->", "||", "{", "}", ":"]),
        2 => prop::sample::select(vec!["'a'", "'it''s'", "'a\\'b'", "0x1F", "1e5", "1_000", ".5", "1events", "x'4A'"]),
        3 => prop::sample::select(vec!["--", "//", "#", "# ", "#!", "/*", "*/", "/* /* */", "\n"]),
        2 => prop::sample::select(vec!["$a$", "$a b$", "$$", "$", "$1", "a$b"]),
        2 => prop::sample::select(vec!["{p:String}", "{t:Identifier}", "{t: Identifier}", "{__stack_project_id:String}"]),
        2 => prop::sample::select(vec![
            "numbers(3)", "url('http://127.0.0.1:1/x', CSV, 'a String')", "file('/etc/passwd')", "remote('127.0.0.1', system.one)",
            "zeros(2)", "merge('system', '.*')", "generate_series(1, 2)",
        ]),
        1 => prop::sample::select(vec!["\u{2018}", "\u{2019}", "\u{201c}", "\u{201d}", "\u{a0}", "é", "\\", "\\G"]),
    ]
    .prop_map(String::from)
}

/// A quoted identifier or string whose content is itself soup, often ending in a backslash.
fn quoted() -> impl Strategy<Value = String> {
    (prop::sample::select(vec!['`', '"', '\'']), prop::collection::vec(atom(), 0..5), any::<bool>()).prop_map(
        |(quote, inner, backslash)| {
            // No newlines inside quotes: EXPLAIN prints one tree line per output row.
            let inner = inner.join(" ").replace('\n', " ");
            format!("{quote}{inner}{}{quote}", if backslash { "\\" } else { "" })
        },
    )
}

/// Two quoted names side by side, the second holding a clause that reads a table: harmless if
/// the first ends where the guard thinks, a real read if its closing quote is escaped.
fn quoted_pair() -> impl Strategy<Value = String> {
    let clause = prop::sample::select(vec![
        " FROM system.tables -- ",
        " FROM analytics_internal.events -- ",
        " FROM analytics_internal.users WHERE 1 -- ",
        " FROM events -- ",
    ]);
    (prop::sample::select(vec!['`', '"']), any::<bool>(), clause)
        .prop_map(|(q, backslash, clause)| format!("{q}x{}{q} , {q}{clause}{q}", if backslash { "\\" } else { "" }))
}

fn token_soup() -> impl Strategy<Value = String> {
    let piece = prop_oneof![6 => atom(), 2 => quoted(), 1 => quoted_pair()];
    let separator = prop::sample::select(vec![" ", " ", "\n", ""]);
    prop::collection::vec((piece, separator), 1..14).prop_map(|parts| {
        let body: String = parts.into_iter().map(|(p, s)| format!("{p}{s}")).collect();
        format!("SELECT {body}")
    })
}

/// Names in every quoting, escapes included.
fn name(base: &'static [&'static str]) -> impl Strategy<Value = String> {
    (prop::sample::select(base), 0..12u8).prop_map(|(n, style)| match style {
        0..=5 => n.to_string(),
        6 | 7 => format!("`{n}`"),
        8 | 9 => format!("\"{n}\""),
        10 => format!("`{n}\\``"),
        _ => format!("`{n}\\\\`"),
    })
}

fn table() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => name(&["events", "users", "teams", "refresh_tokens"]),
        2 => name(&["events", "users"]).prop_map(|t| format!("default.{t}")),
        1 => prop::sample::select(vec!["system.tables", "analytics_internal.events", "`system`.`one`", "numbers(3)", "r", "recent"])
            .prop_map(String::from),
    ]
}

/// A comment or whitespace of one of ClickHouse's kinds, put between clauses.
fn gap() -> impl Strategy<Value = String> {
    prop::sample::select(vec![
        " ",
        "\n",
        " -- c\n",
        " // c\n",
        " # c\n",
        " #!c\n",
        " /* c */ ",
        " /* a /* b */ c */ ",
        " /* ` */ ",
        " -- ' \n",
    ])
    .prop_map(String::from)
}

fn structured() -> impl Strategy<Value = String> {
    let column = prop_oneof![
        4 => prop::sample::select(vec!["count()", "*", "1", "e.user_id", "'s\\'q'", "$h$ FROM system.tables $h$", "{p:String}"])
            .prop_map(String::from),
        1 => quoted_pair(),
    ];
    let leaf = (table(), name(&["e", "t", "a_b", "x"]), gap(), gap(), column)
        .prop_map(|(t, alias, g1, g2, column)| format!("SELECT {column}{g1}FROM {t} AS {alias}{g2}"));
    leaf.prop_recursive(3, 12, 3, |inner| {
        prop_oneof![
            (inner.clone(), table(), gap()).prop_map(|(q, t, g)| format!("SELECT count(){g}FROM ({q}) AS s, {t}")),
            (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("{a} UNION ALL {b}")),
            (inner.clone(), inner.clone(), gap())
                .prop_map(|(a, b, g)| format!("WITH r AS ({a}){g}SELECT * FROM r WHERE 1 IN ({b})")),
            (inner.clone(), inner.clone()).prop_map(|(a, b)| format!(
                "WITH recent AS (WITH r AS ({a}) SELECT * FROM r) SELECT * FROM recent JOIN ({b}) AS j ON 1"
            )),
            (inner.clone(), table()).prop_map(|(a, t)| format!("SELECT * FROM ({a}) AS q WHERE x IN {t}")),
        ]
    })
}

/// `count` cases of `strategy`, from a fixed seed (the run is repeatable).
fn cases(strategy: impl Strategy<Value = String>, count: usize) -> Vec<String> {
    let mut runner = TestRunner::deterministic();
    (0..count).map(|_| strategy.new_tree(&mut runner).expect("a case").current()).collect()
}

// --- the oracle -----------------------------------------------------------------------------

/// One line of `EXPLAIN AST`: its depth and text.
struct Node {
    depth: usize,
    text: String,
}

fn nodes(rows: &[serde_json::Map<String, serde_json::Value>]) -> Vec<Node> {
    rows.iter()
        .filter_map(|row| row.get("explain").and_then(|v| v.as_str()))
        .map(|line| {
            let text = line.trim_start_matches(' ');
            Node { depth: line.len() - text.len(), text: text.to_string() }
        })
        .collect()
}

/// The word after a node's type: `TableIdentifier default.events (alias e)` → `default.events`.
fn node_name<'a>(node: &'a Node, kind: &str) -> Option<&'a str> {
    let rest = node.text.strip_prefix(kind)?.strip_prefix(' ')?;
    Some(rest.split(" (").next().unwrap_or(rest))
}

/// Index of the parent of each node.
fn parents(tree: &[Node]) -> Vec<Option<usize>> {
    let mut stack: Vec<usize> = Vec::new();
    tree.iter()
        .enumerate()
        .map(|(i, node)| {
            while stack.last().is_some_and(|&top| tree[top].depth >= node.depth) {
                stack.pop();
            }
            let parent = stack.last().copied();
            stack.push(i);
            parent
        })
        .collect()
}

/// A node's subtree as text, depths relative to it.
fn subtree(tree: &[Node], at: usize) -> String {
    let base = tree[at].depth;
    let mut out = format!("{}\n", tree[at].text);
    for node in tree[at + 1..].iter().take_while(|n| n.depth > base) {
        out.push_str(&format!("{}{}\n", " ".repeat(node.depth - base), node.text));
    }
    out
}

struct Oracle {
    engine: ClickHouse,
    http: ReqwestClient,
    /// The scoping SELECT of each exposed table, as ClickHouse's tree.
    templates: HashMap<String, String>,
}

impl Oracle {
    async fn new(url: &str) -> Oracle {
        let engine = ClickHouse { url: url.to_string(), database: "default".into(), user: None, password: None };
        let mut oracle = Oracle { engine, http: ReqwestClient::new(), templates: HashMap::new() };
        for table in EXPOSED_TABLES {
            // As a subquery, as the guard writes it: a SETTINGS clause the engine's front may
            // append belongs to the outer SELECT, never to a template.
            let sql = format!(
                "SELECT * FROM (SELECT * FROM default.{table} WHERE project_id = {{__stack_project_id:String}} AND branch_id = {{__stack_branch_id:String}})"
            );
            let tree = oracle.explain(&sql).await.expect("the template parses");
            let select = tree.iter().rposition(|n| n.text.starts_with("SelectQuery")).expect("a SelectQuery");
            oracle.templates.insert(format!("default.{table}"), subtree(&tree, select));
        }
        oracle
    }

    async fn explain(&self, sql: &str) -> Result<Vec<Node>, ClickHouseError> {
        let query = Query::new(format!("EXPLAIN AST {sql}"))
            .param("__stack_project_id", "project-b")
            .param("__stack_branch_id", "main")
            .param("p", "v")
            .param("t", "system.one");
        self.engine.rows(&self.http, &query).await.map(|rows| nodes(&rows))
    }

    /// What ClickHouse would read outside the scoping, or `None` when everything is scoped (or
    /// ClickHouse cannot parse the query at all).
    async fn violation(&self, scoped: &str) -> Option<String> {
        let tree = match self.explain(scoped).await {
            Ok(tree) => tree,
            Err(ClickHouseError::Server { .. }) => return None,
            Err(other) => panic!("the engine failed: {other}"),
        };
        let parents = parents(&tree);
        let ancestor = |mut at: usize, up: usize| {
            for _ in 0..up {
                at = parents[at]?;
            }
            Some(at)
        };
        for (i, node) in tree.iter().enumerate() {
            if let Some(name) = node_name(node, "TableIdentifier") {
                if CTE_NAMES.contains(&name) {
                    continue;
                }
                let Some(template) = self.templates.get(name) else { return Some(format!("reads table {name}")) };
                // TableIdentifier < TableExpression < TablesInSelectQueryElement < TablesInSelectQuery < SelectQuery
                let select = ancestor(i, 4).filter(|&s| tree[s].text.starts_with("SelectQuery"));
                if select.is_none_or(|s| subtree(&tree, s) != *template) {
                    return Some(format!("reads {name} outside the scoping template"));
                }
            }
            if let Some(name) = node_name(node, "Function") {
                let parent = parents[i].map(|p| tree[p].text.as_str());
                if parent.is_some_and(|p| p.starts_with("TableExpression")) && !GENERATORS.contains(&name) {
                    return Some(format!("table function {name}"));
                }
                if FORBIDDEN.iter().any(|f| f.eq_ignore_ascii_case(name)) {
                    return Some(format!("function {name}"));
                }
                if IN_FUNCTIONS.contains(&name) {
                    // Function in > ExpressionList > (left, right): a bare name on the right is a table.
                    let arguments: Vec<usize> = (i + 1..tree.len())
                        .take_while(|&j| tree[j].depth > node.depth)
                        .filter(|&j| tree[j].depth == node.depth + 2)
                        .collect();
                    if arguments.get(1).is_some_and(|&j| tree[j].text.starts_with("Identifier")) {
                        return Some(format!("{name} with a bare name: {}", tree[arguments[1]].text));
                    }
                }
            }
        }
        None
    }
}

/// Runs every case through `guard`; returns the accepted count and the first violations found.
async fn run(oracle: &Oracle, cases: &[String], guard: fn(&str) -> Result<String, GuardError>) -> (usize, Vec<String>) {
    let mut accepted = 0;
    let mut violations = Vec::new();
    for sql in cases {
        let Ok(scoped) = guard(sql) else { continue };
        accepted += 1;
        if let Some(what) = oracle.violation(&scoped).await {
            violations.push(format!("{what}\n  query:  {sql:?}\n  scoped: {scoped:?}"));
            if violations.len() >= 20 {
                break;
            }
        }
    }
    (accepted, violations)
}

fn generated() -> Vec<String> {
    let mut all = cases(token_soup(), 10_000);
    all.extend(cases(structured(), 10_000));
    all
}

#[tokio::test]
async fn clickhouse_sees_no_table_outside_the_scoping() {
    let front = api_tests::ClickHouseFront::start();
    let oracle = Oracle::new(&front.url).await;
    let cases = generated();
    assert!(cases.len() >= 20_000);
    let (accepted, violations) = run(&oracle, &cases, scope).await;
    eprintln!("{} generated, {accepted} accepted and checked by ClickHouse", cases.len());
    assert!(violations.is_empty(), "ClickHouse reads outside the scoping:\n{}", violations.join("\n"));
    // The generators must reach accepted queries, or the test checks nothing.
    assert!(accepted > 2_000, "only {accepted} cases were accepted");
}

#[tokio::test]
async fn without_the_lexer_check_the_oracle_finds_the_backslash_bypass() {
    let front = api_tests::ClickHouseFront::start();
    let oracle = Oracle::new(&front.url).await;
    let known = "SELECT `x\\` , ` FROM analytics_internal.events -- ` FROM events";
    let scoped = scope_without_lexer_agreement(known).expect("sqlparser alone accepts it");
    assert_eq!(oracle.violation(&scoped).await.as_deref(), Some("reads table analytics_internal.events"));
    let (_, violations) = run(&oracle, &generated(), scope_without_lexer_agreement).await;
    eprintln!("found without the lexer check:\n{}", violations.join("\n"));
    let backslash_reads = violations.iter().filter(|v| v.starts_with("reads table") && v.contains("\\\\")).count();
    assert!(backslash_reads > 0, "the generated cases should find the backslash bypass when the check is off");
}
