//! Property tests of the query guard, bounded by case count (they run in CI).
//!
//! 1. Generated queries: SELECTs built from a small grammar (exposed and forbidden tables,
//!    `default.` prefixes, quoting, aliases, joins, subqueries in FROM and WHERE, CTEs, UNION,
//!    generator table functions, comments between tokens). Whatever the guard accepts must come
//!    out with every table read inside a scoping subquery.
//! 2. Token soup: random sequences of SQL tokens, including the dangerous ones. The guard never
//!    panics, and what it accepts satisfies the same property.
//!
//! The property is checked on the guard's output re-parsed by sqlparser: every table factor
//! that is not a CTE name or a generator is `default.<exposed table>` and sits directly in a
//! subquery equal to the scoping template, and there is one template per table read.

use std::collections::HashMap;
use std::ops::ControlFlow;
use std::sync::OnceLock;

use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::Config;
use shared::analytics::query_guard::{scope, EXPOSED_TABLES};
use sqlparser::ast::{Expr, InTarget, JoinOperator, Query, SetExpr, Spanned, TableFactor, Visit, Visitor};
use sqlparser::dialect::ClickHouseDialect;
use sqlparser::parser::Parser;

const CTE_NAMES: &[&str] = &["r", "recent"];
const GENERATORS: &[&str] = &["numbers", "zeros", "generate_series"];

/// The scoping subquery of each exposed table, as sqlparser prints it.
fn templates() -> &'static [(&'static str, String)] {
    static TEMPLATES: OnceLock<Vec<(&'static str, String)>> = OnceLock::new();
    TEMPLATES.get_or_init(|| {
        EXPOSED_TABLES
            .iter()
            .map(|table| {
                let sql = format!(
                    "SELECT * FROM default.{table} WHERE project_id = {{__stack_project_id:String}} AND branch_id = {{__stack_branch_id:String}}"
                );
                (*table, Parser::parse_sql(&ClickHouseDialect {}, &sql).unwrap()[0].to_string())
            })
            .collect()
    })
}

#[derive(Default)]
struct Reads {
    /// Reads of `default.<table>`, by table.
    tables: HashMap<String, usize>,
    /// Scoping subqueries, by table.
    templates: HashMap<String, usize>,
    /// Anything else read as a table.
    other: Vec<String>,
    /// Where `ARRAY JOIN` operands start: ClickHouse reads those as array columns, not tables.
    array_join_columns: Vec<sqlparser::tokenizer::Location>,
}

/// Every SELECT of a query body, through set operations and parentheses.
fn selects<'a>(body: &'a SetExpr, out: &mut Vec<&'a sqlparser::ast::Select>) {
    match body {
        SetExpr::Select(select) => out.push(select),
        SetExpr::SetOperation { left, right, .. } => {
            selects(left, out);
            selects(right, out);
        }
        SetExpr::Query(query) => selects(&query.body, out),
        _ => {}
    }
}

impl Visitor for Reads {
    type Break = ();
    fn pre_visit_query(&mut self, query: &Query) -> ControlFlow<()> {
        let mut found = Vec::new();
        selects(&query.body, &mut found);
        for join in found.iter().flat_map(|s| &s.from).flat_map(|from| &from.joins) {
            let array_join = matches!(
                join.join_operator,
                JoinOperator::ArrayJoin | JoinOperator::LeftArrayJoin | JoinOperator::InnerArrayJoin
            );
            if let (true, TableFactor::Table { name, args: None, .. }) = (array_join, &join.relation) {
                self.array_join_columns.push(name.span().start);
            }
        }
        ControlFlow::Continue(())
    }
    /// ClickHouse reads `x IN t` / `x IN (t)` as a table read.
    fn pre_visit_expr(&mut self, expr: &Expr) -> ControlFlow<()> {
        if let Expr::In { target: InTarget::List(items), .. } = expr {
            if let [Expr::Identifier(_) | Expr::CompoundIdentifier(_) | Expr::Nested(_)] = items.as_slice() {
                self.other.push(format!("IN {}", items[0]));
            }
        }
        ControlFlow::Continue(())
    }
    fn pre_visit_table_factor(&mut self, factor: &TableFactor) -> ControlFlow<()> {
        match factor {
            TableFactor::Derived { subquery, .. } => {
                let text = subquery.to_string();
                for (table, template) in templates() {
                    if text == *template {
                        *self.templates.entry(table.to_string()).or_default() += 1;
                    }
                }
            }
            TableFactor::Table { name, args, .. } => {
                // The name as ClickHouse resolves it: quotes removed.
                let parts: Vec<String> =
                    name.0.iter().map(|p| p.as_ident().map(|i| i.value.clone()).unwrap_or_default()).collect();
                let text = parts.join(".");
                // An ARRAY JOIN operand is a column unless it spells a table or database.
                let spells_table = parts.iter().any(|p| EXPOSED_TABLES.contains(&p.as_str()) || p.contains("system"));
                if args.is_none()
                    && parts.len() == 1
                    && !spells_table
                    && self.array_join_columns.contains(&name.span().start)
                {
                    return ControlFlow::Continue(());
                }
                let generator = args.is_some() && GENERATORS.contains(&text.to_ascii_lowercase().as_str());
                if let Some(table) = text.strip_prefix("default.").filter(|t| EXPOSED_TABLES.contains(t)) {
                    *self.tables.entry(table.to_string()).or_default() += 1;
                } else if !(generator || args.is_none() && CTE_NAMES.contains(&text.as_str())) {
                    self.other.push(text);
                }
            }
            _ => {}
        }
        ControlFlow::Continue(())
    }
}

/// Checks the property on the guard's output for `sql`, if the guard accepts it.
fn check(sql: &str) -> Result<(), TestCaseError> {
    let Ok(out) = scope(sql) else { return Ok(()) };
    let statements = Parser::parse_sql(&ClickHouseDialect {}, &out)
        .map_err(|e| TestCaseError::fail(format!("output does not parse: {e}\n{sql}\n=> {out}")))?;
    prop_assert_eq!(statements.len(), 1, "{} => {}", sql, out);
    let mut reads = Reads::default();
    let _ = statements[0].visit(&mut reads);
    prop_assert!(reads.other.is_empty(), "unscoped reads {:?}: {} => {}", reads.other, sql, out);
    prop_assert_eq!(&reads.tables, &reads.templates, "{} => {}", sql, out);
    Ok(())
}

fn table_name() -> impl Strategy<Value = String> {
    let exposed = prop::sample::select(EXPOSED_TABLES.to_vec()).prop_map(String::from);
    let forbidden = prop::sample::select(vec![
        "system.one",
        "system.users",
        "information_schema.tables",
        "analytics_internal.events",
        "other.events",
        "EVENTS",
    ])
    .prop_map(String::from);
    let cte = prop::sample::select(CTE_NAMES.to_vec()).prop_map(String::from);
    (prop_oneof![6 => exposed, 1 => forbidden, 1 => cte], 0..5u8).prop_map(|(t, style)| match style {
        0 if !t.contains('.') => format!("default.{t}"),
        1 if !t.contains('.') => format!("`{t}`"),
        2 if !t.contains('.') => format!("\"default\".\"{t}\""),
        _ => t,
    })
}

fn alias() -> impl Strategy<Value = String> {
    prop::sample::select(vec!["", " AS x", " y", " AS `events`", " AS users", " FINAL", " AS z"]).prop_map(String::from)
}

fn comment() -> impl Strategy<Value = String> {
    prop::sample::select(vec![" ", " ", " /* c */ ", " -- note\n", "\n\t"]).prop_map(String::from)
}

/// A SELECT, nesting subqueries up to a small depth.
fn select() -> impl Strategy<Value = String> {
    let leaf = (table_name(), alias(), comment()).prop_map(|(t, a, c)| format!("SELECT count(){c}FROM {t}{a}"));
    leaf.prop_recursive(3, 24, 3, |inner| {
        prop_oneof![
            (inner.clone(), alias()).prop_map(|(q, a)| format!("SELECT * FROM ({q}){a}")),
            (table_name(), inner.clone(), comment())
                .prop_map(|(t, q, c)| format!("SELECT 1 FROM {t}{c}WHERE 1 IN ({q})")),
            (table_name(), table_name(), 0..3u8).prop_map(|(t, u, form)| match form {
                0 => format!("SELECT 1 FROM {t} WHERE user_id IN {u}"),
                1 => format!("SELECT 1 FROM {t} WHERE user_id NOT IN ({u})"),
                _ => format!("SELECT 1 FROM {t} WHERE user_id GLOBAL IN {u}"),
            }),
            (table_name(), table_name(), alias())
                .prop_map(|(t, u, a)| format!("SELECT * FROM {t} AS a JOIN {u}{a} ON 1 = 1")),
            (inner.clone(), inner.clone()).prop_map(|(q, r)| format!("{q} UNION ALL {r}")),
            (inner.clone(), table_name()).prop_map(|(q, t)| format!("WITH r AS ({q}) SELECT * FROM r, {t}")),
            (inner.clone(), comment()).prop_map(|(q, c)| format!("SELECT ({q}){c}AS n FROM numbers(3)")),
            inner.prop_map(|q| format!("SELECT * FROM events WHERE user_id = ({q})")),
        ]
    })
}

/// Tokens for the soup, dangerous ones included.
const TOKENS: &[&str] = &[
    "SELECT",
    "FROM",
    "WHERE",
    "WITH",
    "AS",
    "UNION",
    "ALL",
    "JOIN",
    "ON",
    "IN",
    "(",
    ")",
    ",",
    "*",
    "1",
    "=",
    "events",
    "users",
    "default.events",
    "`events`",
    "system.one",
    "system",
    ".",
    "r",
    "x",
    "numbers(2)",
    "url('http://x')",
    "file('/etc/passwd')",
    "SETTINGS",
    "readonly",
    "FORMAT",
    "JSON",
    "FINAL",
    "ARRAY JOIN",
    "INTO OUTFILE",
    "'s'",
    "/* c */",
    "-- c\n",
    ";",
    "{p:String}",
    "{__stack_project_id:String}",
    "project_id",
    "LIMIT",
    "ORDER BY",
    "GROUP BY",
    "arrayJoin([1])",
    "x -> x",
    "\"default\".\"users\"",
    "INSERT",
    "DROP",
];

proptest! {
    #![proptest_config(Config { cases: 10_000, failure_persistence: None, ..Config::default() })]

    #[test]
    fn generated_selects_are_scoped_or_refused(sql in select()) {
        check(&sql)?;
    }

    #[test]
    fn token_soup_never_panics_and_is_scoped_or_refused(
        tokens in prop::collection::vec(prop::sample::select(TOKENS.to_vec()), 1..24)
    ) {
        check(&tokens.join(" "))?;
    }

    #[test]
    fn arbitrary_text_never_panics(sql in "\\PC{0,80}") {
        check(&sql)?;
    }
}

/// The generator is not vacuous: it produces queries the guard accepts, with table reads.
#[test]
fn the_grammar_reaches_accepted_queries_with_reads() {
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    let strategy = select();
    let (mut accepted, mut with_reads) = (0, 0);
    for _ in 0..500 {
        let sql = strategy.new_tree(&mut runner).unwrap().current();
        if let Ok(out) = scope(&sql) {
            accepted += 1;
            let statement = &Parser::parse_sql(&ClickHouseDialect {}, &out).unwrap()[0];
            let mut reads = Reads::default();
            let _ = statement.visit(&mut reads);
            if !reads.tables.is_empty() {
                with_reads += 1;
            }
        }
    }
    assert!(accepted > 100 && with_reads > 100, "accepted {accepted}, with reads {with_reads} of 500");
}

/// Found by the token soup in CI: an ARRAY JOIN operand spelled like a keyword is a column.
#[test]
fn an_array_join_operand_named_like_a_keyword_is_a_column() {
    check("SELECT WHERE FROM events ARRAY JOIN SELECT").unwrap();
}
