//! The ClickHouse port: queries over ClickHouse's HTTP interface, built on the outbound-HTTP
//! port so it works on every runtime (native, Workers, Spin).
//!
//! Requests carry the SQL in the body and everything else in the URL: `param_<name>` query
//! parameters (for `{name:Type}` placeholders), settings, `query_id`, `database`,
//! `default_format`. Results are decoded from `JSONEachRow`; errors are parsed from the
//! server's `Code: N. DB::Exception: <message> (<NAME>)` text.

use serde_json::{Map, Value};

use crate::store::ports::HttpClient;

/// Where and as whom to connect.
#[derive(Debug, Clone)]
pub struct ClickHouse {
    /// The ClickHouse HTTP interface's base URL.
    pub url: String,
    /// The database queries run in.
    pub database: String,
    /// The user to connect as (`None`: the server's default user).
    pub user: Option<String>,
    /// That user's password.
    pub password: Option<String>,
}

/// One query: SQL with `{name:Type}` placeholders, their values, and per-query settings.
#[derive(Debug, Clone, Default)]
pub struct Query {
    /// The SQL text.
    pub sql: String,
    /// Values of the `{name:Type}` placeholders, by name.
    pub params: Vec<(String, Value)>,
    /// Per-query settings, sent as URL parameters.
    pub settings: Vec<(String, String)>,
    /// The query id (`query_id`), for the query log and cancellation.
    pub query_id: Option<String>,
    /// How long the HTTP call may take (the port's client default when unset).
    pub timeout: Option<std::time::Duration>,
    /// The most bytes of answer read (no bound when unset).
    pub max_response_bytes: Option<usize>,
}

impl Query {
    /// A query of `sql`, without parameters or settings.
    pub fn new(sql: impl Into<String>) -> Query {
        Query { sql: sql.into(), ..Query::default() }
    }
    /// Sets the placeholder `name`.
    pub fn param(mut self, name: &str, value: impl Into<Value>) -> Query {
        self.params.push((name.to_string(), value.into()));
        self
    }
    /// Sets the setting `name`.
    pub fn setting(mut self, name: &str, value: impl ToString) -> Query {
        self.settings.push((name.to_string(), value.to_string()));
        self
    }
    /// Sets the query id.
    pub fn query_id(mut self, id: impl Into<String>) -> Query {
        self.query_id = Some(id.into());
        self
    }
    /// Bounds how long the HTTP call may take.
    pub fn timeout(mut self, timeout: std::time::Duration) -> Query {
        self.timeout = Some(timeout);
        self
    }
    /// Bounds how many bytes of the answer are read.
    pub fn max_response_bytes(mut self, limit: usize) -> Query {
        self.max_response_bytes = Some(limit);
        self
    }
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
/// Why a ClickHouse call failed.
pub enum ClickHouseError {
    /// The server refused or failed the query.
    #[error("ClickHouse error {code} ({name}): {message}")]
    Server {
        /// ClickHouse's error code.
        code: u32,
        /// The code's name (`UNKNOWN_TABLE`, ...).
        name: String,
        /// The server's message.
        message: String,
    },
    /// The server could not be reached, or answered something that is not ClickHouse.
    #[error("ClickHouse unreachable: {0}")]
    Transport(String),
    #[error("ClickHouse answer not decodable: {0}")]
    /// The answer could not be decoded as the expected rows.
    Decode(String),
}

impl ClickHouse {
    /// Runs a query and decodes its `JSONEachRow` rows.
    pub async fn rows(&self, http: &dyn HttpClient, query: &Query) -> Result<Vec<Map<String, Value>>, ClickHouseError> {
        let body = self.send(http, query, Some("JSONEachRow"), None).await?;
        let text = std::str::from_utf8(&body).map_err(|e| ClickHouseError::Decode(e.to_string()))?;
        text.lines()
            .filter(|l| !l.trim().is_empty())
            .map(|line| match serde_json::from_str(line) {
                Ok(Value::Object(row)) => Ok(row),
                Ok(other) => Err(ClickHouseError::Decode(format!("row is not an object: {other}"))),
                Err(e) => Err(ClickHouseError::Decode(e.to_string())),
            })
            .collect()
    }

    /// Runs a statement that returns nothing of interest (DDL, mutations).
    pub async fn execute(&self, http: &dyn HttpClient, query: &Query) -> Result<(), ClickHouseError> {
        self.send(http, query, None, None).await.map(|_| ())
    }

    /// Inserts rows given as JSON objects (`INSERT INTO table FORMAT JSONEachRow`).
    pub async fn insert(&self, http: &dyn HttpClient, table: &str, rows: &[Value]) -> Result<(), ClickHouseError> {
        let mut body = Vec::new();
        for row in rows {
            serde_json::to_writer(&mut body, row).map_err(|e| ClickHouseError::Decode(e.to_string()))?;
            body.push(b'\n');
        }
        let query = Query::new(format!("INSERT INTO {table} FORMAT JSONEachRow"));
        self.send(http, &query, None, Some(body)).await.map(|_| ())
    }

    /// Sends `query`: its SQL as the body, or, when `data` is given (an INSERT's rows), its SQL
    /// in the URL and the data as the body.
    async fn send(
        &self,
        http: &dyn HttpClient,
        query: &Query,
        format: Option<&str>,
        data: Option<Vec<u8>>,
    ) -> Result<Vec<u8>, ClickHouseError> {
        let mut url = url::Url::parse(&self.url).map_err(|e| ClickHouseError::Transport(e.to_string()))?;
        {
            let mut pairs = url.query_pairs_mut();
            pairs.append_pair("database", &self.database);
            if let Some(format) = format {
                pairs.append_pair("default_format", format);
            }
            if let Some(id) = &query.query_id {
                pairs.append_pair("query_id", id);
            }
            for (name, value) in &query.params {
                pairs.append_pair(&format!("param_{name}"), &param_text(value));
            }
            for (name, value) in &query.settings {
                pairs.append_pair(name, value);
            }
            if data.is_some() {
                pairs.append_pair("query", &query.sql);
            }
        }
        let body = data.unwrap_or_else(|| query.sql.as_bytes().to_vec());
        let mut request = http::Request::post(url.as_str());
        if let Some(timeout) = query.timeout {
            request = request.extension(crate::store::ports::RequestTimeout(timeout));
        }
        if let Some(limit) = query.max_response_bytes {
            request = request.extension(crate::store::ports::ResponseLimit(limit));
        }
        if let Some(user) = &self.user {
            request = request.header("x-clickhouse-user", user);
        }
        if let Some(password) = &self.password {
            request = request.header("x-clickhouse-key", password);
        }
        let request = request.body(body).map_err(|e| ClickHouseError::Transport(e.to_string()))?;
        let response = http.send(request).await.map_err(|e| match e.is_too_large() {
            // Said as ClickHouse says its own result limit, a message users may see.
            true => ClickHouseError::Server {
                code: 396,
                name: "TOO_MANY_ROWS_OR_BYTES".into(),
                message: format!("Limit for result exceeded, max bytes of the answer: {MAX_RESPONSE_BYTES}. "),
            },
            false => ClickHouseError::Transport(e.to_string()),
        })?;
        if response.status().is_success() {
            return Ok(response.into_body());
        }
        let text = String::from_utf8_lossy(response.body()).to_string();
        Err(parse_error(&text).unwrap_or(ClickHouseError::Transport(format!("HTTP {}: {text}", response.status()))))
    }
}

/// A parameter value in the text form ClickHouse's HTTP interface expects.
fn param_text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Null => "\\N".into(),
        other => other.to_string(),
    }
}

/// Resource limits on every user query (the endpoint and the AI tool). Upstream sets readonly,
/// the result bounds and the execution time, with a 1 GB memory profile on the server; these
/// add memory, rows read and threads per query, so no tenant's query can take the engine.
pub const MAX_MEMORY_BYTES: u64 = 512 * 1024 * 1024;
/// The most rows a user query may read.
pub const MAX_ROWS_TO_READ: u64 = 100_000_000;
/// The most threads a user query may use.
pub const MAX_THREADS: u64 = 2;
/// The most rows a user query's result may have.
pub const MAX_RESULT_ROWS: u64 = 10_000;
/// The most bytes a user query's result may have (as ClickHouse counts them).
pub const MAX_RESULT_BYTES: u64 = 10_485_760;
/// The most bytes of a user query's answer read from the engine: ClickHouse checks its result
/// limits between blocks, so one large block passes them; this bound holds whatever the blocks
/// (JSON text is larger than the engine's own byte count, hence the margin).
pub const MAX_RESPONSE_BYTES: usize = 16 * 1024 * 1024;
/// How much longer than the query's own time limit the HTTP call may take (the answer's
/// transfer, the engine's own overshoot).
const CALL_MARGIN: std::time::Duration = std::time::Duration::from_secs(5);

/// What the engine runs for a user query the guard has scoped: the scope parameters, the
/// tenancy's custom settings (read by a real server's row policies), the query id (also as
/// `log_comment`, which the timing endpoint reads), the limits, and the user's parameters.
/// The HTTP call may take as long as the query may, plus a margin.
pub fn user_query(
    scoped_sql: String,
    project_id: &str,
    branch_id: &str,
    query_id: &str,
    timeout_ms: i64,
    params: serde_json::Map<String, Value>,
) -> Query {
    let mut query = Query::new(scoped_sql)
        .query_id(query_id)
        .timeout(std::time::Duration::from_millis(timeout_ms.max(0) as u64) + CALL_MARGIN)
        .max_response_bytes(MAX_RESPONSE_BYTES)
        .setting("log_comment", query_id)
        .param(crate::analytics::query_guard::PROJECT_PARAM, project_id)
        .param(crate::analytics::query_guard::BRANCH_PARAM, branch_id)
        .setting("SQL_project_id", project_id)
        .setting("SQL_branch_id", branch_id)
        .setting("max_execution_time", timeout_ms as f64 / 1000.0)
        .setting("max_memory_usage", MAX_MEMORY_BYTES)
        .setting("max_rows_to_read", MAX_ROWS_TO_READ)
        .setting("read_overflow_mode", "throw")
        .setting("max_threads", MAX_THREADS)
        .setting("allow_ddl", 0)
        .setting("max_result_rows", MAX_RESULT_ROWS)
        .setting("max_result_bytes", MAX_RESULT_BYTES)
        .setting("result_overflow_mode", "throw")
        // Last, so every limit above is set before the query may change none.
        .setting("readonly", 1);
    for (name, value) in params {
        query = query.param(&name, value);
    }
    query
}

/// Parses `Code: N. DB::Exception: <message> (<NAME>) (version ...)`. The message is the text
/// between `Exception: ` and `(<NAME>)`, trailing space included, as upstream's client has it.
pub fn parse_error(text: &str) -> Option<ClickHouseError> {
    let text = text.trim_end();
    let rest = text.strip_prefix("Code: ")?;
    let (code, rest) = rest.split_once(". ")?;
    let code: u32 = code.parse().ok()?;
    let message = rest.split_once("Exception: ").map_or(rest, |(_, m)| m);
    // Drop a trailing "(version ...)", then take the last "(NAME)".
    let message = match message.rfind(" (version ") {
        Some(i) if message.ends_with(')') => &message[..i],
        _ => message,
    };
    let open = message.rfind('(')?;
    let name = message[open + 1..].strip_suffix(')')?.to_string();
    if name.is_empty() || !name.chars().all(|c| c.is_ascii_uppercase() || c == '_' || c.is_ascii_digit()) {
        return None;
    }
    Some(ClickHouseError::Server { code, name, message: message[..open].to_string() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_server_errors_like_upstreams_client() {
        let e = parse_error(
            "Code: 47. DB::Exception: Unknown expression identifier `x`. (UNKNOWN_IDENTIFIER) (version 26.9.0)\n",
        );
        assert_eq!(
            e,
            Some(ClickHouseError::Server {
                code: 47,
                name: "UNKNOWN_IDENTIFIER".into(),
                message: "Unknown expression identifier `x`. ".into()
            })
        );
        let e = parse_error(
            "Code: 159. DB::Exception: Timeout exceeded: elapsed 1.2 s, maximum: 1000 ms. (TIMEOUT_EXCEEDED)",
        );
        assert!(matches!(e, Some(ClickHouseError::Server { code: 159, .. })));
        assert_eq!(parse_error("502 Bad Gateway"), None);
    }

    #[test]
    fn parameters_use_clickhouse_text_form() {
        assert_eq!(param_text(&Value::from("a'b")), "a'b");
        assert_eq!(param_text(&Value::from(5)), "5");
        assert_eq!(param_text(&Value::Null), "\\N");
        assert_eq!(param_text(&serde_json::json!([1, 2])), "[1,2]");
    }
}

/// What users see instead of an error that could leak another tenant's schema or data.
pub const GENERIC_QUERY_ERROR: &str = "Error during execution of this query.";

/// Error codes whose ClickHouse message is safe to show verbatim (docs/api.md §6.3).
const SAFE_CODES: &[u32] = &[
    62,  // SYNTAX_ERROR
    158, // TOO_MANY_ROWS
    159, // TIMEOUT_EXCEEDED
    164, // READONLY
    241, // MEMORY_LIMIT_EXCEEDED: the query's own use against its limit
    396, // TOO_MANY_ROWS_OR_BYTES
    636, // CANNOT_EXTRACT_TABLE_STRUCTURE
];

/// Known codes whose message may leak (column names, types of unreadable tables, grants).
const UNSAFE_CODES: &[u32] = &[
    36,  // BAD_ARGUMENTS
    43,  // ILLEGAL_TYPE_OF_ARGUMENT: types resolve before access checks
    47,  // UNKNOWN_IDENTIFIER: "Maybe you meant ..." lists column names
    60,  // UNKNOWN_TABLE
    386, // NO_COMMON_TYPE: types resolve before access checks
    497, // ACCESS_DENIED: reveals grants and column lists
];

/// The message a user gets for a failed query. Safe codes pass through; anything else is the
/// generic message, plus, outside production (`show_details`), the full error for the developer.
/// Unknown codes are logged so they can be classified here.
pub fn user_message(error: &ClickHouseError, show_details: bool) -> String {
    let ClickHouseError::Server { code, message, .. } = error else {
        tracing::warn!(error = %error, "analytics query failed outside ClickHouse");
        return GENERIC_QUERY_ERROR.to_string();
    };
    if SAFE_CODES.contains(code) {
        return message.clone();
    }
    let known = UNSAFE_CODES.contains(code);
    if !known {
        tracing::warn!(code, "ClickHouse error code not classified as safe or unsafe");
    }
    if !show_details {
        return GENERIC_QUERY_ERROR.to_string();
    }
    let hint = if known {
        String::new()
    } else {
        format!("\n\nError code {code} is not classified yet: add it to SAFE_CODES or UNSAFE_CODES in shared/src/analytics/clickhouse.rs.")
    };
    format!(
        "{GENERIC_QUERY_ERROR}{hint}\n\nAs you are in development mode, you can see the full error: {code} {message}"
    )
}

#[cfg(test)]
mod sanitizing_tests {
    use super::*;

    fn server(code: u32, message: &str) -> ClickHouseError {
        ClickHouseError::Server { code, name: "X".into(), message: message.into() }
    }

    #[test]
    fn safe_codes_pass_through_unsafe_ones_are_hidden_in_production() {
        assert_eq!(
            user_message(&server(62, "Syntax error: failed at position 1 "), false),
            "Syntax error: failed at position 1 "
        );
        assert_eq!(user_message(&server(47, "Missing columns: 'secret_col'"), false), GENERIC_QUERY_ERROR);
        assert_eq!(user_message(&server(386, "There is no supertype"), false), GENERIC_QUERY_ERROR);
        assert_eq!(user_message(&server(999, "anything"), false), GENERIC_QUERY_ERROR);
        assert_eq!(user_message(&ClickHouseError::Transport("refused".into()), true), GENERIC_QUERY_ERROR);
    }

    #[test]
    fn development_shows_the_full_error_and_flags_unknown_codes() {
        let known = user_message(&server(47, "Missing columns "), true);
        assert_eq!(known, format!("{GENERIC_QUERY_ERROR}\n\nAs you are in development mode, you can see the full error: 47 Missing columns "));
        let unknown = user_message(&server(999, "odd "), true);
        assert!(unknown.contains("not classified yet") && unknown.ends_with("999 odd "), "{unknown}");
    }
}

/// The analytics schema (`shared/clickhouse/schema.sql`): the `analytics_internal` tables,
/// the 12 exposed views in `default`, and the access model of a real server.
const SCHEMA: &str = include_str!("../../clickhouse/schema.sql");

/// One statement of the schema.
#[derive(Debug, Clone, PartialEq)]
pub struct SchemaStatement {
    /// The statement's SQL.
    pub sql: String,
    /// Users, row policies and grants: run on a real server, skipped on the local engine.
    pub access_control: bool,
    /// For a `-- rollup: <table>` SELECT, the table it fills.
    pub rollup: Option<String>,
}

/// The schema's statements in order. Statements end with `;` at the end of a line; a
/// `-- access:` line marks the next statement as access control, a `-- rollup: <table>` line
/// the next as the SELECT that fills `<table>`.
pub fn schema_statements() -> Vec<SchemaStatement> {
    let mut statements = Vec::new();
    let (mut sql, mut access_control, mut rollup) = (String::new(), false, None);
    for line in SCHEMA.lines() {
        let trimmed = line.trim();
        if trimmed == "-- access:" {
            access_control = true;
            continue;
        }
        if let Some(table) = trimmed.strip_prefix("-- rollup:") {
            rollup = Some(table.trim().to_string());
            continue;
        }
        if trimmed.starts_with("--") || (trimmed.is_empty() && sql.is_empty()) {
            continue;
        }
        sql.push_str(line);
        sql.push('\n');
        if trimmed.ends_with(';') {
            let text = sql.trim().trim_end_matches(';').to_string();
            statements.push(SchemaStatement { sql: text, access_control, rollup: rollup.take() });
            sql.clear();
            access_control = false;
        }
    }
    statements
}

/// How long filling one rollup from the existing events may take.
const ROLLUP_FILL_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(3600);

/// `TABLE_ALREADY_EXISTS`: another run created the view first.
const TABLE_ALREADY_EXISTS: u32 = 57;

/// Applies the schema. `external_password` is `limited_user`'s password on a real server;
/// `None` is the local engine, which has no users, policies or grants to create. The
/// statements run in order, then the rollups are built ([`build_rollups`]).
pub async fn apply_schema(
    clickhouse: &ClickHouse,
    http: &dyn HttpClient,
    external_password: Option<&str>,
) -> Result<(), ClickHouseError> {
    let (rollups, statements): (Vec<_>, Vec<_>) = schema_statements().into_iter().partition(|s| s.rollup.is_some());
    for statement in statements {
        let query = match (statement.access_control, external_password) {
            (true, None) => continue,
            (true, Some(password)) => Query::new(statement.sql).param("external_password", password),
            (false, _) => Query::new(statement.sql),
        };
        clickhouse.execute(http, &query).await?;
    }
    build_rollups(clickhouse, http, rollups).await
}

/// Builds each rollup not yet filled (no row in `_stack_rollups`): its view dropped, its table
/// emptied, the view created again for events created from a cut (the server's clock now) on,
/// and, after a second for inserts already under way to land, the table filled with the
/// events created before the cut. So every event is counted once, also on a store that held
/// events before the rollups existed. Not meant to run twice at the same moment (a view the
/// other run created first is left to it).
async fn build_rollups(
    clickhouse: &ClickHouse,
    http: &dyn HttpClient,
    rollups: Vec<SchemaStatement>,
) -> Result<(), ClickHouseError> {
    let filled = clickhouse.rows(http, &Query::new("SELECT name FROM analytics_internal._stack_rollups")).await?;
    let filled: Vec<&str> = filled.iter().filter_map(|r| r.get("name").and_then(Value::as_str)).collect();
    let to_build: Vec<(String, String)> = rollups
        .into_iter()
        .filter_map(|s| Some((s.rollup?, s.sql)))
        .filter(|(table, _)| !filled.contains(&table.as_str()))
        .collect();
    if to_build.is_empty() {
        return Ok(());
    }
    let cut = server_now(clickhouse, http).await?;
    let mut built = Vec::new();
    for (table, select) in to_build {
        let view = format!("{table}_mv");
        clickhouse.execute(http, &Query::new(format!("DROP VIEW IF EXISTS {view}"))).await?;
        clickhouse.execute(http, &Query::new(format!("TRUNCATE TABLE {table}"))).await?;
        let from_cut = select.replace("@CREATED", &format!("created_at >= {cut}"));
        let create = Query::new(format!("CREATE MATERIALIZED VIEW {view} TO {table} AS {from_cut}"));
        match clickhouse.execute(http, &create).await {
            Err(ClickHouseError::Server { code: TABLE_ALREADY_EXISTS, .. }) => continue,
            other => other?,
        }
        built.push((table, select));
    }
    // ClickHouse's own sleep: the port runs on every runtime and has no timer of its own.
    clickhouse.execute(http, &Query::new("SELECT sleep(1)")).await?;
    for (table, select) in built {
        let before_cut = select.replace("@CREATED", &format!("created_at < {cut}"));
        // A scan of every event before the cut: on a large store it takes minutes, not seconds.
        let fill = Query::new(format!("INSERT INTO {table} {before_cut}")).timeout(ROLLUP_FILL_TIMEOUT);
        clickhouse.execute(http, &fill).await?;
        let record = Query::new(format!(
            "INSERT INTO analytics_internal._stack_rollups (name, cut) SELECT {{name:String}}, {cut}"
        ))
        .param("name", table.as_str());
        clickhouse.execute(http, &record).await?;
    }
    Ok(())
}

/// The server's clock now, as a DateTime64(3) literal (the rollups' cut).
async fn server_now(clickhouse: &ClickHouse, http: &dyn HttpClient) -> Result<String, ClickHouseError> {
    let rows = clickhouse.rows(http, &Query::new("SELECT toString(now64(3, 'UTC')) AS now")).await?;
    let now = rows.first().and_then(|r| r.get("now")).and_then(Value::as_str).unwrap_or_default();
    // Spliced into DDL (a view's definition takes no parameters): a timestamp's characters only.
    if now.is_empty() || !now.chars().all(|c| c.is_ascii_digit() || " -:.".contains(c)) {
        return Err(ClickHouseError::Decode(format!("not a server time: {now:?}")));
    }
    Ok(format!("toDateTime64('{now}', 3, 'UTC')"))
}
