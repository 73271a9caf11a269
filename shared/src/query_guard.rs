//! The guard in front of user SQL for the analytics store: the first of two independent locks
//! on tenant isolation (a real ClickHouse server adds row policies as the second).
//!
//! A query is parsed with `sqlparser`'s ClickHouse dialect and accepted only if it is one
//! SELECT (with WITH and UNION) that reads the exposed tables and nothing else: no table
//! functions, no other databases (`system`, `information_schema`, ...), no SETTINGS or FORMAT
//! clause, no functions that reach outside the query (`file`, `joinGet`, `dictGet`, ...). Each
//! reference to an exposed table is then replaced, at its exact place in the text, by a
//! subquery filtered to the caller's project and branch through query parameters; the rest of
//! the text stays verbatim, so what the user wrote is what runs. A query the parser cannot read
//! is rejected: what cannot be checked does not run.

use std::collections::HashSet;
use std::ops::ControlFlow;

use sqlparser::ast::{
    Expr, InTarget, JoinOperator, Query, Select, SetExpr, Spanned, Statement, TableFactor, Visit, Visitor,
};
use sqlparser::dialect::ClickHouseDialect;
use sqlparser::keywords::Keyword;
use sqlparser::parser::{Parser, ParserError};
use sqlparser::tokenizer::{Location, Token, Tokenizer};

/// The tables user SQL may read (views in the `default` database on a real server).
pub const EXPOSED_TABLES: [&str; 12] = [
    "events",
    "users",
    "contact_channels",
    "teams",
    "team_member_profiles",
    "team_permissions",
    "team_invitations",
    "email_outboxes",
    "project_permissions",
    "notification_preferences",
    "refresh_tokens",
    "connected_accounts",
];

/// Database names, which no column name in an `ARRAY JOIN` may spell.
const DATABASES: &[&str] = &["default", "system", "information_schema", "INFORMATION_SCHEMA", "analytics_internal"];

/// The query parameters the scoping subqueries use. User parameters may not use this prefix.
pub const SCOPE_PARAM_PREFIX: &str = "__stack_";
pub const PROJECT_PARAM: &str = "__stack_project_id";
pub const BRANCH_PARAM: &str = "__stack_branch_id";

/// Table functions that only generate values and read nothing, so need no scope (their
/// arguments are still checked like the rest of the query). Compared in lower case.
const GENERATOR_TABLE_FUNCTIONS: &[&str] =
    &["numbers", "numbers_mt", "zeros", "zeros_mt", "generate_series", "generateseries"];

/// Functions that read data or files outside the query's own tables. Compared in lower case.
const FORBIDDEN_FUNCTIONS: &[&str] = &[
    "file",
    "joinget",
    "joingetornull",
    "dictget",
    "dictgetornull",
    "dictgetordefault",
    "dicthas",
    "dictisin",
    "dictgethierarchy",
    "dictgetchildren",
    "dictgetdescendants",
    "hascolumnintable",
    "gethttpheader",
    "getmacro",
    "filesystemavailable",
    "filesystemcapacity",
    "filesystemunreserved",
];

/// The function forms of `IN` (`in(x, t)`, `globalNotIn(x, t)`, ...), which read a table when
/// given its name. The operator form is checked instead. Compared in lower case.
const IN_FUNCTIONS: &[&str] = &[
    "in",
    "notin",
    "globalin",
    "globalnotin",
    "nullin",
    "notnullin",
    "globalnullin",
    "globalnotnullin",
    "inignoreset",
    "notinignoreset",
    "globalinignoreset",
    "globalnotinignoreset",
    "nullinignoreset",
    "notnullinignoreset",
    "globalnullinignoreset",
    "globalnotnullinignoreset",
];

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum GuardError {
    #[error("The query could not be parsed, so it cannot be checked and was not run: {0}")]
    Unparsable(String),
    #[error("Only one statement can be run at a time.")]
    MultipleStatements,
    #[error("Only SELECT queries are allowed. Available tables: {tables}.", tables = EXPOSED_TABLES.join(", "))]
    NotASelect,
    #[error("Unknown table {0}. Available tables: {tables}.", tables = EXPOSED_TABLES.join(", "))]
    UnknownTable(String),
    #[error("Table functions are not allowed ({0}).")]
    TableFunction(String),
    #[error("Only tables can be selected from ({0} is not allowed).")]
    UnsupportedSource(String),
    #[error("The {0} clause is not allowed; settings and output format are fixed by the endpoint.")]
    Clause(&'static str),
    #[error("The function {0} is not allowed.")]
    ForbiddenFunction(String),
    #[error("IN with a bare name ({0}) reads a whole table; write IN (SELECT ... FROM table) instead.")]
    InTableName(String),
    #[error("The common table expression {0} has the name of a table; choose another name.")]
    CteShadowsTable(String),
    #[error("FINAL and SAMPLE modifiers are not supported.")]
    TableModifier,
    #[error("Query parameter names may not start with {SCOPE_PARAM_PREFIX} ({0}).")]
    ReservedParameter(String),
}

/// Checks `sql` and returns it with every exposed-table reference scoped to the caller's
/// project and branch (bound as the query parameters [`PROJECT_PARAM`] and [`BRANCH_PARAM`]).
pub fn scope(sql: &str) -> Result<String, GuardError> {
    let statements = Parser::parse_sql(&ClickHouseDialect {}, sql).map_err(|e| unparsable(sql, e))?;
    let statement = match statements.as_slice() {
        [one] => one,
        [] => return Err(GuardError::NotASelect),
        _ => return Err(GuardError::MultipleStatements),
    };
    let Statement::Query(query) = statement else { return Err(GuardError::NotASelect) };

    let mut check = Check::default();
    let _ = query.visit(&mut check);
    if let Some(error) = check.error {
        return Err(error);
    }
    Ok(rewrite(sql, &check.references))
}

/// Statement keywords the parser may not know in ClickHouse's spelling: a query that starts with
/// one is not a SELECT, whatever follows.
const OTHER_STATEMENTS: &[Keyword] = &[
    Keyword::ALTER,
    Keyword::ATTACH,
    Keyword::CREATE,
    Keyword::DELETE,
    Keyword::DETACH,
    Keyword::DROP,
    Keyword::GRANT,
    Keyword::INSERT,
    Keyword::KILL,
    Keyword::OPTIMIZE,
    Keyword::RENAME,
    Keyword::REVOKE,
    Keyword::SET,
    Keyword::SHOW,
    Keyword::SYSTEM,
    Keyword::TRUNCATE,
    Keyword::UPDATE,
    Keyword::USE,
];

/// Why `sql` could not be parsed, said as usefully as the tokens allow: a statement that is not
/// a SELECT is told so, and a `SETTINGS` or `FORMAT` clause (which the parser reads as an alias
/// and then fails on) is named; anything else gets the parser's own message.
fn unparsable(sql: &str, error: ParserError) -> GuardError {
    let tokens = Tokenizer::new(&ClickHouseDialect {}, sql).tokenize().unwrap_or_default();
    let mut words = tokens.iter().filter_map(|t| match t {
        Token::Word(word) if word.quote_style.is_none() => Some(word.keyword),
        _ => None,
    });
    if words.next().is_some_and(|first| OTHER_STATEMENTS.contains(&first)) {
        return GuardError::NotASelect;
    }
    for token in tokens {
        if let Token::Word(word) = token {
            match word.keyword {
                Keyword::SETTINGS if word.quote_style.is_none() => return GuardError::Clause("SETTINGS"),
                Keyword::FORMAT if word.quote_style.is_none() => return GuardError::Clause("FORMAT"),
                _ => {}
            }
        }
    }
    GuardError::Unparsable(error.to_string())
}

/// Rejects user query parameters that could stand in for the scope parameters.
pub fn check_param_names<'a>(names: impl IntoIterator<Item = &'a str>) -> Result<(), GuardError> {
    for name in names {
        if name.starts_with(SCOPE_PARAM_PREFIX) {
            return Err(GuardError::ReservedParameter(name.to_string()));
        }
    }
    Ok(())
}

/// One exposed-table reference: where it is, which table, and whether it has an alias.
struct Reference {
    start: Location,
    end: Location,
    table: &'static str,
    has_alias: bool,
}

#[derive(Default)]
struct Check {
    error: Option<GuardError>,
    cte_names: HashSet<String>,
    references: Vec<Reference>,
    /// Where the array columns of `ARRAY JOIN` clauses start.
    array_join_columns: Vec<Location>,
}

/// The SELECTs a query body is made of (through parentheses and UNION/EXCEPT/INTERSECT).
/// Any other body (`VALUES`, `TABLE t`, a DML statement) is not a SELECT.
fn selects_of<'a>(body: &'a SetExpr, out: &mut Vec<&'a Select>) -> Result<(), GuardError> {
    match body {
        SetExpr::Select(select) => out.push(select),
        SetExpr::Query(_) => {} // visited as a query of its own
        SetExpr::SetOperation { left, right, .. } => {
            selects_of(left, out)?;
            selects_of(right, out)?;
        }
        _ => return Err(GuardError::NotASelect),
    }
    Ok(())
}

impl Check {
    fn fail(&mut self, error: GuardError) -> ControlFlow<()> {
        self.error = Some(error);
        ControlFlow::Break(())
    }
}

impl Visitor for Check {
    type Break = ();

    fn pre_visit_query(&mut self, query: &Query) -> ControlFlow<()> {
        let mut selects = Vec::new();
        if let Err(error) = selects_of(&query.body, &mut selects) {
            return self.fail(error);
        }
        for select in selects {
            if select.into.is_some() {
                return self.fail(GuardError::Clause("INTO"));
            }
            // `ARRAY JOIN arr AS a` reaches the parser as a join with a table named `arr`; it
            // names an array column, not a table, so it is neither checked nor scoped.
            for join in select.from.iter().flat_map(|from| &from.joins) {
                if matches!(
                    join.join_operator,
                    JoinOperator::ArrayJoin | JoinOperator::LeftArrayJoin | JoinOperator::InnerArrayJoin
                ) {
                    if let TableFactor::Table { name, args: None, .. } = &join.relation {
                        // A column, never a table: refuse names that spell one, to be sure.
                        let spells_a_table = name.0.iter().filter_map(|p| p.as_ident()).any(|part| {
                            EXPOSED_TABLES.contains(&part.value.as_str()) || DATABASES.contains(&part.value.as_str())
                        });
                        if spells_a_table {
                            return self.fail(GuardError::UnknownTable(name.to_string()));
                        }
                        self.array_join_columns.push(name.span().start);
                    }
                }
            }
        }
        if query.settings.is_some() {
            return self.fail(GuardError::Clause("SETTINGS"));
        }
        if query.format_clause.is_some() {
            return self.fail(GuardError::Clause("FORMAT"));
        }
        if let Some(with) = &query.with {
            for cte in &with.cte_tables {
                let name = cte.alias.name.value.clone();
                if EXPOSED_TABLES.contains(&name.as_str()) {
                    return self.fail(GuardError::CteShadowsTable(name));
                }
                self.cte_names.insert(name);
            }
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_table_factor(&mut self, factor: &TableFactor) -> ControlFlow<()> {
        match factor {
            TableFactor::Table { name, alias, args, sample, version, .. } => {
                if args.is_none() && self.array_join_columns.contains(&name.span().start) {
                    return ControlFlow::Continue(());
                }
                if args.is_some() {
                    let function = name.to_string().to_ascii_lowercase();
                    if GENERATOR_TABLE_FUNCTIONS.contains(&function.as_str()) {
                        return ControlFlow::Continue(());
                    }
                    return self.fail(GuardError::TableFunction(name.to_string()));
                }
                if sample.is_some() || version.is_some() {
                    return self.fail(GuardError::TableModifier);
                }
                // ClickHouse's `t FINAL` / `t SAMPLE` reach the parser as an alias.
                if alias.as_ref().is_some_and(|a| {
                    let n = a.name.value.to_ascii_uppercase();
                    a.name.quote_style.is_none() && (n == "FINAL" || n == "SAMPLE")
                }) {
                    return self.fail(GuardError::TableModifier);
                }
                let parts: Vec<&str> =
                    name.0.iter().map(|p| p.as_ident().map(|i| i.value.as_str()).unwrap_or("")).collect();
                let table = match parts.as_slice() {
                    [table] if self.cte_names.contains(*table) => return ControlFlow::Continue(()),
                    [table] => *table,
                    ["default", table] => *table,
                    _ => return self.fail(GuardError::UnknownTable(name.to_string())),
                };
                let Some(exposed) = EXPOSED_TABLES.iter().find(|t| **t == table) else {
                    return self.fail(GuardError::UnknownTable(name.to_string()));
                };
                let span = name.span();
                self.references.push(Reference {
                    start: span.start,
                    end: span.end,
                    table: exposed,
                    has_alias: alias.is_some(),
                });
                ControlFlow::Continue(())
            }
            TableFactor::Derived { .. } | TableFactor::NestedJoin { .. } => ControlFlow::Continue(()),
            other => {
                let text = other.to_string();
                let head: String = text.chars().take(40).collect();
                self.fail(GuardError::UnsupportedSource(head))
            }
        }
    }

    fn pre_visit_expr(&mut self, expr: &Expr) -> ControlFlow<()> {
        match expr {
            Expr::Function(function) => {
                let name = function.name.to_string().trim_matches(|c| c == '`' || c == '"').to_ascii_lowercase();
                if FORBIDDEN_FUNCTIONS.contains(&name.as_str())
                    || IN_FUNCTIONS.contains(&name.as_str())
                    || name.starts_with("dictget")
                {
                    return self.fail(GuardError::ForbiddenFunction(function.name.to_string()));
                }
            }
            // ClickHouse reads `x IN t` and `x IN (t)` as `x IN (SELECT * FROM t)`: a table read
            // the scoping cannot see. A subquery or a list of values is fine.
            Expr::In { target, .. } => match target {
                InTarget::Subquery(_) => {}
                InTarget::List(items) if items.len() == 1 && is_name(&items[0]) => {
                    return self.fail(GuardError::InTableName(items[0].to_string()));
                }
                InTarget::List(_) => {}
                InTarget::Table { name, .. } => return self.fail(GuardError::InTableName(name.to_string())),
                InTarget::Unnest(_) => return self.fail(GuardError::NotASelect),
            },
            _ => {}
        }
        ControlFlow::Continue(())
    }
}

/// Whether `expr` is a bare (possibly parenthesized or qualified) name.
fn is_name(expr: &Expr) -> bool {
    match expr {
        Expr::Identifier(_) | Expr::CompoundIdentifier(_) => true,
        Expr::Nested(inner) => is_name(inner),
        _ => false,
    }
}

/// Replaces each reference's text with its scoped subquery, last first so earlier offsets stay
/// valid.
fn rewrite(sql: &str, references: &[Reference]) -> String {
    let mut out = sql.to_string();
    let mut ordered: Vec<&Reference> = references.iter().collect();
    ordered.sort_by_key(|r| std::cmp::Reverse(byte_offset(sql, r.start)));
    for r in ordered {
        let (start, end) = (byte_offset(sql, r.start), byte_offset(sql, r.end));
        let alias = if r.has_alias { String::new() } else { format!(" AS {}", r.table) };
        let scoped = format!(
            "(SELECT * FROM default.{t} WHERE project_id = {{{PROJECT_PARAM}:String}} AND branch_id = {{{BRANCH_PARAM}:String}}){alias}",
            t = r.table
        );
        out.replace_range(start..end, &scoped);
    }
    out
}

/// The byte offset of a 1-based (line, character column) location in `sql`.
fn byte_offset(sql: &str, location: Location) -> usize {
    let mut offset = 0;
    for (index, line) in sql.split_inclusive('\n').enumerate() {
        if index + 1 == location.line as usize {
            return offset
                + line.char_indices().nth(location.column as usize - 1).map(|(i, _)| i).unwrap_or(line.len());
        }
        offset += line.len();
    }
    sql.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scoped(t: &str) -> String {
        format!("(SELECT * FROM default.{t} WHERE project_id = {{__stack_project_id:String}} AND branch_id = {{__stack_branch_id:String}})")
    }

    #[test]
    fn scopes_each_reference_in_place_and_keeps_the_rest_verbatim() {
        let sql = "SELECT e.event_type, count() -- per type\nFROM events e JOIN `users` ON e.user_id = toString(users.id)\nGROUP BY 1";
        let out = scope(sql).unwrap();
        assert_eq!(
            out,
            format!(
                "SELECT e.event_type, count() -- per type\nFROM {} e JOIN {} AS users ON e.user_id = toString(users.id)\nGROUP BY 1",
                scoped("events"),
                scoped("users")
            )
        );
    }

    #[test]
    fn scopes_subqueries_ctes_and_unions() {
        let out = scope("WITH r AS (SELECT * FROM events) SELECT count() FROM r UNION ALL SELECT count() FROM default.users WHERE id IN (SELECT user_id FROM refresh_tokens)").unwrap();
        assert_eq!(out.matches("__stack_project_id").count(), 3, "{out}");
        assert!(out.contains("FROM r UNION"), "the CTE reference stays: {out}");
    }

    #[test]
    fn in_lists_and_subqueries_are_fine() {
        for sql in [
            "SELECT 1 FROM events WHERE event_type IN ('$click', '$page-view')",
            "SELECT 1 FROM events WHERE event_type IN '$click'",
            "SELECT 1 FROM events WHERE user_id IN (SELECT toString(id) FROM users)",
        ] {
            assert!(scope(sql).is_ok(), "{sql}");
        }
    }

    #[test]
    fn generator_table_functions_need_no_scope() {
        for sql in
            ["SELECT number FROM numbers(10)", "SELECT * FROM zeros(3) AS z", "SELECT * FROM generate_series(1, 5)"]
        {
            assert_eq!(scope(sql).unwrap(), sql);
        }
        let out = scope("SELECT number FROM numbers((SELECT count() FROM events))").unwrap();
        assert!(out.contains(&scoped("events")), "{out}");
    }

    #[test]
    fn array_join_columns_are_not_tables() {
        let sql = "SELECT user_id, h FROM (SELECT user_id, groupArray(1) AS hours FROM events GROUP BY user_id) ARRAY JOIN hours AS h";
        let out = scope(sql).unwrap();
        assert!(out.ends_with(") ARRAY JOIN hours AS h"), "{out}");
        assert_eq!(out.matches("__stack_project_id").count(), 1, "{out}");
        let out = scope("SELECT t FROM events AS e LEFT ARRAY JOIN e.tags AS t").unwrap();
        assert_eq!(out.matches("__stack_project_id").count(), 1, "{out}");
    }

    #[test]
    fn handles_multibyte_text_before_a_reference() {
        let out = scope("SELECT 'héllo ✓' AS greeting FROM events").unwrap();
        assert_eq!(out, format!("SELECT 'héllo ✓' AS greeting FROM {} AS events", scoped("events")));
    }

    /// A query and whether its error is the expected one.
    type RejectCase = (&'static str, fn(&GuardError) -> bool);

    #[test]
    fn rejects_what_it_cannot_scope() {
        let cases: &[RejectCase] = &[
            ("SELECT * FROM system.tables", |e| matches!(e, GuardError::UnknownTable(_))),
            ("SELECT * FROM information_schema.tables", |e| matches!(e, GuardError::UnknownTable(_))),
            ("SELECT * FROM analytics_internal.events", |e| matches!(e, GuardError::UnknownTable(_))),
            ("SELECT * FROM url('http://x', CSV, 'a String')", |e| matches!(e, GuardError::TableFunction(_))),
            ("SELECT * FROM system.numbers", |e| matches!(e, GuardError::UnknownTable(_))),
            ("SELECT * FROM numbers((SELECT count() FROM system.users))", |e| matches!(e, GuardError::UnknownTable(_))),
            ("SELECT * FROM remote('h', system.one)", |e| matches!(e, GuardError::TableFunction(_))),
            ("SELECT * FROM Events", |e| matches!(e, GuardError::UnknownTable(_))),
            ("SELECT 1; SELECT 2", |e| *e == GuardError::MultipleStatements),
            ("DROP TABLE events", |e| *e == GuardError::NotASelect),
            ("INSERT INTO events VALUES (1)", |e| *e == GuardError::NotASelect),
            ("WITH events AS (SELECT 1) SELECT * FROM events", |e| matches!(e, GuardError::CteShadowsTable(_))),
            ("SELECT * FROM events FINAL", |e| *e == GuardError::TableModifier),
            ("SELECT joinGet('t', 'x', 1)", |e| matches!(e, GuardError::ForbiddenFunction(_))),
            ("SELECT dictGetString('d', 'a', 1)", |e| matches!(e, GuardError::ForbiddenFunction(_))),
            ("SELECT file('/etc/passwd')", |e| matches!(e, GuardError::ForbiddenFunction(_))),
            ("SELECT 1 SETTINGS readonly=0", |e| *e == GuardError::Clause("SETTINGS")),
            ("SELECT 1 FORMAT JSON", |e| *e == GuardError::Clause("FORMAT")),
            ("SELECT count() FROM events SETTINGS max_threads = 1", |e| *e == GuardError::Clause("SETTINGS")),
            ("SELEC 1", |e| matches!(e, GuardError::Unparsable(_))),
            ("CREATE FUNCTION f AS (x) -> x", |e| *e == GuardError::NotASelect),
            ("SELECT 1 INTO OUTFILE '/tmp/x'", |e| matches!(e, GuardError::Clause(_) | GuardError::Unparsable(_))),
            ("SELECT * INTO t2 FROM events", |e| *e == GuardError::Clause("INTO")),
            ("VALUES (1)", |e| matches!(e, GuardError::NotASelect | GuardError::Unparsable(_))),
            ("SELECT x FROM events ARRAY JOIN tags AS x, system.one", |e| matches!(e, GuardError::UnknownTable(_))),
            ("SELECT * FROM events ARRAY JOIN system.one AS x", |e| matches!(e, GuardError::UnknownTable(_))),
            ("SELECT * FROM events ARRAY JOIN users AS u", |e| matches!(e, GuardError::UnknownTable(_))),
            ("SELECT 1 FROM events WHERE user_id IN users", |e| matches!(e, GuardError::InTableName(_))),
            ("SELECT 1 FROM events WHERE user_id NOT IN (users)", |e| matches!(e, GuardError::InTableName(_))),
            ("SELECT 1 FROM events WHERE user_id GLOBAL IN default.users", |e| matches!(e, GuardError::InTableName(_))),
            ("SELECT 1 FROM events WHERE (user_id, 1) IN system.one", |e| matches!(e, GuardError::InTableName(_))),
            ("SELECT in(user_id, users) FROM events", |e| matches!(e, GuardError::ForbiddenFunction(_))),
            ("SELECT globalNotIn(user_id, users) FROM events", |e| matches!(e, GuardError::ForbiddenFunction(_))),
            ("KILL QUERY WHERE 1", |e| *e == GuardError::NotASelect),
        ];
        for (sql, expected) in cases {
            let err = scope(sql).unwrap_err();
            assert!(expected(&err), "{sql}: {err:?}");
        }
    }

    #[test]
    fn reserved_parameter_names_are_refused() {
        assert!(check_param_names(["limit", "user"]).is_ok());
        assert_eq!(
            check_param_names(["__stack_project_id"]),
            Err(GuardError::ReservedParameter("__stack_project_id".into()))
        );
    }
}
