//! A SQL script split into its statements, for stores that run one statement per call
//! (`spin:sqlite`). Comments are dropped; a `;` ends a statement only outside quotes, comments
//! and a trigger's `BEGIN … END` body.
//!
//! Hand-written on purpose: the split needs only SQLite's lexical rules, and a full parser
//! (sqlparser's SQLite dialect) does not accept every statement SQLite does. The unit test
//! holds it to SQLite itself: every migration, split here and run statement by statement,
//! builds the same schema as SQLite running the script whole. (A `CASE … END;` inside a trigger
//! body would end the trigger early; no migration has one, and that test would fail if one did.)

/// The statements of `sql`, each without its `;`, comments removed, empty ones skipped.
pub fn statements(sql: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '-' if chars.peek() == Some(&'-') => {
                // A line comment: up to the end of the line, kept as a line break.
                for c in chars.by_ref() {
                    if c == '\n' {
                        break;
                    }
                }
                current.push('\n');
            }
            '/' if chars.peek() == Some(&'*') => {
                chars.next();
                let mut last = ' ';
                for c in chars.by_ref() {
                    if last == '*' && c == '/' {
                        break;
                    }
                    last = c;
                }
                current.push(' ');
            }
            '\'' | '"' | '`' => {
                // A quoted string or identifier; a doubled quote is the quote itself.
                current.push(c);
                while let Some(q) = chars.next() {
                    current.push(q);
                    if q == c {
                        if chars.peek() == Some(&c) {
                            current.push(chars.next().expect("peeked"));
                        } else {
                            break;
                        }
                    }
                }
            }
            ';' if !inside_trigger_body(&current) => {
                let statement = current.trim();
                if !statement.is_empty() {
                    out.push(statement.to_string());
                }
                current.clear();
            }
            c => current.push(c),
        }
    }
    let statement = current.trim();
    if !statement.is_empty() {
        out.push(statement.to_string());
    }
    out
}

/// Whether `statement` (so far) is a `CREATE TRIGGER` whose body has not reached its `END`.
fn inside_trigger_body(statement: &str) -> bool {
    let words: Vec<String> = statement.split_whitespace().take(3).map(str::to_ascii_uppercase).collect();
    let trigger = words.first().is_some_and(|w| w == "CREATE")
        && (words.get(1).is_some_and(|w| w == "TRIGGER")
            || (words.get(1).is_some_and(|w| w == "TEMP" || w == "TEMPORARY")
                && words.get(2).is_some_and(|w| w == "TRIGGER")));
    trigger && !statement.split_whitespace().last().is_some_and(|w| w.eq_ignore_ascii_case("END"))
}

#[cfg(all(test, feature = "sqlite"))]
mod tests {
    use super::*;

    /// Every object of the schema, and each table's columns (SQLite keeps a table's text with
    /// its comments, so the text itself is not compared for tables).
    fn schema(conn: &rusqlite::Connection) -> Vec<String> {
        let sql = "SELECT m.type || ' ' || m.name || ' ' || m.tbl_name || ' ' || \
                   CASE WHEN m.type = 'table' THEN (SELECT group_concat(c.name || ':' || c.type || ':' || c.\"notnull\" \
                   || ':' || coalesce(c.dflt_value, '') || ':' || c.pk, ',') FROM pragma_table_info(m.name) c) \
                   ELSE coalesce(m.sql, '') END FROM sqlite_master m ORDER BY m.name";
        let mut stmt = conn.prepare(sql).unwrap();
        stmt.query_map([], |r| r.get(0)).unwrap().map(Result::unwrap).collect()
    }

    #[test]
    fn every_migration_split_builds_the_schema_sqlite_builds_from_the_whole_script() {
        let whole = rusqlite::Connection::open_in_memory().unwrap();
        let split = rusqlite::Connection::open_in_memory().unwrap();
        for (name, sql) in crate::store::migrations::MIGRATIONS {
            whole.execute_batch(sql).unwrap_or_else(|e| panic!("{name}: {e}"));
            for statement in statements(sql) {
                // One statement each: SQLite's prepare refuses a string with a second one.
                split.prepare(&statement).unwrap_or_else(|e| panic!("{name}: {e} in {statement:?}"));
                split.execute_batch(&statement).unwrap_or_else(|e| panic!("{name}: {e} in {statement:?}"));
            }
        }
        assert!(schema(&whole).len() > 30);
        assert_eq!(schema(&split), schema(&whole));
    }

    #[test]
    fn quotes_comments_and_trigger_bodies_keep_their_semicolons() {
        let sql = "-- a; comment\nINSERT INTO t VALUES ('a;b', \"c;\"\"d\"); /* x; */\n\
                   CREATE TRIGGER tr AFTER INSERT ON t BEGIN INSERT INTO u VALUES (1); DELETE FROM v; END;\n;";
        assert_eq!(
            statements(sql),
            [
                "INSERT INTO t VALUES ('a;b', \"c;\"\"d\")",
                "CREATE TRIGGER tr AFTER INSERT ON t BEGIN INSERT INTO u VALUES (1); DELETE FROM v; END"
            ]
        );
    }
}
