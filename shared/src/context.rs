//! The context a handler runs with: the ports, the loaded configuration, and per-instance
//! caches. Built once per worker (native), per isolate (Cloudflare) or per request (Spin).

use std::rc::Rc;

use crate::identity::crypto::base64url_decode;
use crate::identity::tokens::KeyCache;
use crate::store::ports::{Background, BlobStore, Clock, ConfigSource, HttpClient, HttpError, Random, SqlStore};

/// Which deployment this is. Only `Production` hides internal error text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Environment {
    /// Local development: internal error text shown.
    Development,
    /// Tests: internal error text shown.
    Test,
    /// Production: internal error text hidden.
    Production,
}

/// Configuration read once from a [`ConfigSource`]. Variable names follow upstream's.
#[derive(Clone)]
pub struct Config {
    /// `STACK_SERVER_SECRET`: the root of access-token key derivation. Must decode as base64url.
    pub server_secret: String,
    /// `STACK_ACCESS_TOKEN_EXPIRATION_TIME` (default `10min`), in milliseconds.
    pub access_token_lifetime_ms: i64,
    /// `NEXT_PUBLIC_STACK_API_URL`: the base of the access-token issuer.
    pub api_url: String,
    /// `STACK_ENVIRONMENT`: `development`, `test` or `production` (default).
    pub environment: Environment,
    /// The analytics store, when `STACK_CLICKHOUSE_URL` is set.
    pub clickhouse: Option<ClickHouseConfig>,
    /// The companion's secret and URL, when `STACK_COMPANION_SECRET` is set.
    pub companion: Option<CompanionConfig>,
    /// Stack's own OAuth app per shareable provider (`STACK_<PROVIDER>_CLIENT_ID`), used when a
    /// project's provider is shared.
    pub shared_oauth_client_ids: Vec<(&'static str, String)>,
    /// Its secret per shareable provider (`STACK_<PROVIDER>_CLIENT_SECRET`), needed to exchange
    /// the provider's code at the callback.
    pub shared_oauth_client_secrets: Vec<(&'static str, String)>,
    /// `STACK_ALLOW_SHARED_OAUTH_ACCESS_TOKENS` is exactly `true`.
    pub allow_shared_oauth_access_tokens: bool,
    /// `STACK_DEFAULT_EMAIL_CAPACITY_PER_HOUR`: emails per hour per tenancy before growth and
    /// boosts (200 in production, 100000 elsewhere).
    pub default_email_capacity_per_hour: f64,
    /// The AI endpoints' model API and docs server.
    pub ai: AiConfig,
    /// What the email sender (the companion's worker) needs.
    pub email: EmailConfig,
    /// `STACK_METRICS_CACHE_SECONDS` (default 15): how long the metrics engine reuses an answer.
    pub metrics_cache: std::time::Duration,
    /// `STACK_INTERNAL_ADMIN_KEY`: when set, the `internal` project is made to accept it as its
    /// admin key at start-up (the native host; once per isolate or component instance).
    pub internal_admin_key: Option<String>,
    /// `STACK_TRUSTED_PROXY` (`cloudflare` or `x-forwarded-for`): whose headers the native host
    /// believes for the end user's address and location; unset, it believes none.
    pub trusted_proxy: Option<crate::http::location::TrustedProxy>,
    /// `STACK_SQLITE_PATH` (default `/data/stack-edge.sqlite`): the database file of the WASI
    /// component that keeps SQLite inside (`spin-wasi`); other runtimes name their store
    /// themselves.
    pub sqlite_path: String,
}

// Secrets and keys never reach a log line.
impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("api_url", &self.api_url)
            .field("environment", &self.environment)
            .field("clickhouse", &self.clickhouse.as_ref().map(|c| &c.url))
            .field("companion", &self.companion)
            .field("email", &self.email)
            .field("ai", &self.ai)
            .finish_non_exhaustive()
    }
}

/// The email sender's settings.
#[derive(Clone)]
pub struct EmailConfig {
    /// `STACK_EMAIL_HOST` / `_PORT` (587) / `_USERNAME` / `_PASSWORD` / `_SENDER`: the shared server.
    pub shared_server: Option<crate::email::server::SharedServer>,
    /// `STACK_RESEND_SMTP_HOST` / `_PORT`: where managed domains send (`smtp.resend.com:465`).
    pub resend: crate::email::server::ResendEndpoint,
    /// `STACK_EMAILABLE_API_KEY` / `STACK_EMAILABLE_API_URL`: the deliverability check.
    pub emailable: Option<crate::email::server::Emailable>,
    /// `CRON_SECRET`: the queue-step route's bearer secret (`mock_cron_secret` outside production).
    pub cron_secret: Option<String>,
    /// `STACK_SMTP_ALLOWED_HOSTS`: project mail servers exempt from the public-address and
    /// mail-port rules (comma-separated, exactly as configured).
    pub smtp_allowed_hosts: Vec<String>,
}

// Passwords and keys never reach a log line.
impl std::fmt::Debug for EmailConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmailConfig")
            .field("shared_server", &self.shared_server.as_ref().map(|s| (&s.host, s.port)))
            .field("resend", &self.resend)
            .field("emailable", &self.emailable.as_ref().map(|e| &e.api_url))
            .field("smtp_allowed_hosts", &self.smtp_allowed_hosts)
            .finish_non_exhaustive()
    }
}

/// What a companion role that does not host the API reads (`companion serve` without the
/// `api` role): the sender and the metrics engine need no server secret and no store.
#[derive(Clone)]
pub struct RoleConfig {
    /// `STACK_ENVIRONMENT`, as [`Config::environment`].
    pub environment: Environment,
    /// `STACK_COMPANION_SECRET`: what the sender presents to the emails function, and what the
    /// metrics engine requires of its callers.
    pub companion_secret: Option<String>,
    /// The analytics store, as [`Config::clickhouse`].
    pub clickhouse: Option<ClickHouseConfig>,
    /// `STACK_METRICS_CACHE_SECONDS`, as [`Config::metrics_cache`].
    pub metrics_cache: std::time::Duration,
    /// `CRON_SECRET`, as [`EmailConfig::cron_secret`].
    pub cron_secret: Option<String>,
    /// `STACK_SMTP_ALLOWED_HOSTS`, as [`EmailConfig::smtp_allowed_hosts`].
    pub smtp_allowed_hosts: Vec<String>,
}

// Secrets never reach a log line.
impl std::fmt::Debug for RoleConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RoleConfig")
            .field("environment", &self.environment)
            .field("clickhouse", &self.clickhouse.as_ref().map(|c| &c.url))
            .field("smtp_allowed_hosts", &self.smtp_allowed_hosts)
            .finish_non_exhaustive()
    }
}

impl RoleConfig {
    /// The loader of a companion role; the same variables as [`Config::load`] reads.
    pub fn load(source: &dyn ConfigSource) -> Result<RoleConfig, ConfigError> {
        let environment = environment(source)?;
        Ok(RoleConfig {
            environment,
            companion_secret: companion_secret(source)?,
            clickhouse: clickhouse(source),
            metrics_cache: metrics_cache(source)?,
            cron_secret: cron_secret(source, environment),
            smtp_allowed_hosts: smtp_allowed_hosts(source),
        })
    }
}

fn environment(source: &dyn ConfigSource) -> Result<Environment, ConfigError> {
    match source.get("STACK_ENVIRONMENT").as_deref() {
        Some("development") => Ok(Environment::Development),
        Some("test") => Ok(Environment::Test),
        Some("production") | None => Ok(Environment::Production),
        Some(other) => Err(ConfigError(format!("STACK_ENVIRONMENT {other:?} is not development, test or production"))),
    }
}

/// `STACK_COMPANION_SECRET`, refused when shorter than 16 characters.
fn companion_secret(source: &dyn ConfigSource) -> Result<Option<String>, ConfigError> {
    match source.get("STACK_COMPANION_SECRET") {
        Some(secret) if secret.len() < 16 => {
            Err(ConfigError("STACK_COMPANION_SECRET must be 16 characters or more".into()))
        }
        secret => Ok(secret),
    }
}

fn clickhouse(source: &dyn ConfigSource) -> Option<ClickHouseConfig> {
    source.get("STACK_CLICKHOUSE_URL").map(|url| ClickHouseConfig {
        url,
        database: source.get("STACK_CLICKHOUSE_DATABASE").unwrap_or_else(|| "default".into()),
        external_password: source.get("STACK_CLICKHOUSE_EXTERNAL_PASSWORD"),
        admin_user: source.get("STACK_CLICKHOUSE_ADMIN_USER").unwrap_or_else(|| "stackframe".into()),
        admin_password: source.get("STACK_CLICKHOUSE_ADMIN_PASSWORD"),
    })
}

fn metrics_cache(source: &dyn ConfigSource) -> Result<std::time::Duration, ConfigError> {
    match source.get("STACK_METRICS_CACHE_SECONDS") {
        None => Ok(std::time::Duration::from_secs(15)),
        Some(s) => Ok(std::time::Duration::from_secs(
            s.parse().map_err(|e| ConfigError(format!("STACK_METRICS_CACHE_SECONDS {s:?}: {e}")))?,
        )),
    }
}

fn cron_secret(source: &dyn ConfigSource, environment: Environment) -> Option<String> {
    source.get("CRON_SECRET").or_else(|| (environment != Environment::Production).then(|| "mock_cron_secret".into()))
}

fn smtp_allowed_hosts(source: &dyn ConfigSource) -> Vec<String> {
    source
        .get("STACK_SMTP_ALLOWED_HOSTS")
        .map(|v| v.split(',').map(|h| h.trim().to_string()).filter(|h| !h.is_empty()).collect())
        .unwrap_or_default()
}

/// Where the AI endpoints (functions/mcp) send model calls and find documentation.
#[derive(Clone, Default, PartialEq)]
pub struct AiConfig {
    /// `STACK_AI_BASE_URL`: an OpenAI-compatible API (`<base>/chat/completions`), such as
    /// OpenRouter's. Unset: AI calls answer 503.
    pub base_url: Option<String>,
    /// `STACK_AI_API_KEY`: the key for callers without project authentication.
    pub api_key: Option<String>,
    /// `STACK_AI_AUTHENTICATED_API_KEY`: the key for authenticated callers (upstream's
    /// external-key routing); unset: `api_key`.
    pub authenticated_api_key: Option<String>,
    /// `STACK_DOCS_MCP_URL`: the documentation MCP server whose tools the `docs` tool set offers.
    pub docs_mcp_url: Option<String>,
    /// `STACK_MCP_ALLOWED_ORIGINS` (comma-separated `scheme://host[:port]`): browser origins,
    /// besides this deployment's own and local ones, that may call the MCP endpoint.
    pub mcp_allowed_origins: Vec<String>,
    /// `STACK_AI_RUNS_PER_MINUTE`: how many assistant runs (AI queries, `ask_stack_auth`
    /// calls) one caller may start per minute: a project when authenticated, else a client
    /// address (default 20).
    pub runs_per_minute: u32,
}

impl std::fmt::Debug for AiConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AiConfig")
            .field("base_url", &self.base_url)
            .field("docs_mcp_url", &self.docs_mcp_url)
            .field("mcp_allowed_origins", &self.mcp_allowed_origins)
            .field("runs_per_minute", &self.runs_per_minute)
            .finish_non_exhaustive()
    }
}

/// The providers Stack can offer its own OAuth app for.
pub const SHAREABLE_OAUTH_PROVIDERS: &[&str] = &["google", "github", "microsoft", "spotify"];

/// Whether provider access tokens may be handed out for shared keys: only when the variable is
/// exactly `true` (no trimming, no other truthy spellings), in every environment.
pub fn shared_access_tokens_allowed(value: Option<&str>) -> bool {
    value == Some("true")
}

/// The secret the companion and the functions share (`STACK_COMPANION_SECRET`), and where the
/// companion listens when the functions call it (`STACK_COMPANION_URL`, the metrics engine).
#[derive(Clone, PartialEq)]
pub struct CompanionConfig {
    /// The companion's base URL (unset: the metrics function answers 503; a sender companion
    /// calls the functions, not the other way round).
    pub url: Option<String>,
    /// The shared secret: the metrics engine requires it, and so do the emails function's
    /// sender routes.
    pub secret: String,
}

impl std::fmt::Debug for CompanionConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CompanionConfig").field("url", &self.url).field("secret", &"<hidden>").finish()
    }
}

/// Connection settings of the analytics store (upstream's variable names).
#[derive(Debug, Clone, PartialEq)]
pub struct ClickHouseConfig {
    /// `STACK_CLICKHOUSE_URL`
    pub url: String,
    /// `STACK_CLICKHOUSE_DATABASE` (default `default`)
    pub database: String,
    /// `STACK_CLICKHOUSE_EXTERNAL_PASSWORD`: the password of `limited_user`, which runs user SQL.
    /// Unset locally, where the engine has no users.
    pub external_password: Option<String>,
    /// `STACK_CLICKHOUSE_ADMIN_USER` (default `stackframe`) and `STACK_CLICKHOUSE_ADMIN_PASSWORD`:
    /// the identity that writes events. Unset password: no user (the local engine).
    pub admin_user: String,
    /// `STACK_CLICKHOUSE_ADMIN_PASSWORD`: that user's password.
    pub admin_password: Option<String>,
}

impl ClickHouseConfig {
    /// The client that runs user SQL: as `limited_user`, the dedicated low-privilege user whose
    /// grants and row policies are the second lock. Fails closed: in production, without that
    /// user's password there is no client (the caller answers 503). Elsewhere (the local engine,
    /// which has no users) the query guard is the only lock; docs/security.md says so.
    pub fn limited_client(
        &self,
        environment: Environment,
    ) -> Result<crate::analytics::clickhouse::ClickHouse, UserSqlDisabled> {
        if self.external_password.is_none() && environment == Environment::Production {
            return Err(UserSqlDisabled);
        }
        Ok(crate::analytics::clickhouse::ClickHouse {
            url: self.url.clone(),
            database: self.database.clone(),
            user: self.external_password.as_ref().map(|_| "limited_user".to_string()),
            password: self.external_password.clone(),
        })
    }

    /// The client that writes events and applies the schema.
    pub fn admin_client(&self) -> crate::analytics::clickhouse::ClickHouse {
        crate::analytics::clickhouse::ClickHouse {
            url: self.url.clone(),
            database: self.database.clone(),
            user: self.admin_password.as_ref().map(|_| self.admin_user.clone()),
            password: self.admin_password.clone(),
        }
    }
}

/// User SQL is refused: production without a dedicated low-privilege ClickHouse user.
#[derive(Debug, Clone, Copy, thiserror::Error, PartialEq)]
#[error("User SQL is disabled: the analytics store has no dedicated low-privilege user configured (STACK_CLICKHOUSE_EXTERNAL_PASSWORD).")]
pub struct UserSqlDisabled;

#[derive(Debug, Clone, thiserror::Error, PartialEq)]
#[error("configuration: {0}")]
/// A configuration value is missing or malformed; the message names it.
pub struct ConfigError(pub String);

/// Every key [`Config::load`] may read (its unit test holds the two together). The component
/// adapters read these once per request (Spin variables are async; their names are lowercase).
pub const CONFIG_KEYS: &[&str] = &[
    "STACK_SERVER_SECRET",
    "STACK_ACCESS_TOKEN_EXPIRATION_TIME",
    "NEXT_PUBLIC_STACK_API_URL",
    "STACK_ENVIRONMENT",
    "STACK_INTERNAL_ADMIN_KEY",
    "STACK_SQLITE_PATH",
    "STACK_CLICKHOUSE_URL",
    "STACK_CLICKHOUSE_DATABASE",
    "STACK_CLICKHOUSE_EXTERNAL_PASSWORD",
    "STACK_CLICKHOUSE_ADMIN_USER",
    "STACK_CLICKHOUSE_ADMIN_PASSWORD",
    "STACK_COMPANION_URL",
    "STACK_COMPANION_SECRET",
    "STACK_GOOGLE_CLIENT_ID",
    "STACK_GITHUB_CLIENT_ID",
    "STACK_MICROSOFT_CLIENT_ID",
    "STACK_SPOTIFY_CLIENT_ID",
    "STACK_GOOGLE_CLIENT_SECRET",
    "STACK_GITHUB_CLIENT_SECRET",
    "STACK_MICROSOFT_CLIENT_SECRET",
    "STACK_SPOTIFY_CLIENT_SECRET",
    "STACK_ALLOW_SHARED_OAUTH_ACCESS_TOKENS",
    "STACK_AI_BASE_URL",
    "STACK_AI_API_KEY",
    "STACK_AI_AUTHENTICATED_API_KEY",
    "STACK_DOCS_MCP_URL",
    "STACK_MCP_ALLOWED_ORIGINS",
    "STACK_AI_RUNS_PER_MINUTE",
    "CRON_SECRET",
    "STACK_DEFAULT_EMAIL_CAPACITY_PER_HOUR",
    "STACK_EMAIL_HOST",
    "STACK_EMAIL_PORT",
    "STACK_EMAIL_USERNAME",
    "STACK_EMAIL_PASSWORD",
    "STACK_EMAIL_SENDER",
    "STACK_RESEND_SMTP_HOST",
    "STACK_RESEND_SMTP_PORT",
    "STACK_EMAILABLE_API_KEY",
    "STACK_EMAILABLE_API_URL",
    "STACK_SMTP_ALLOWED_HOSTS",
    "STACK_TRUSTED_PROXY",
    "STACK_METRICS_CACHE_SECONDS",
];

impl Config {
    /// The one configuration loader, shared by every runtime.
    pub fn load(source: &dyn ConfigSource) -> Result<Config, ConfigError> {
        let server_secret =
            source.get("STACK_SERVER_SECRET").ok_or_else(|| ConfigError("STACK_SERVER_SECRET is not set".into()))?;
        if server_secret.is_empty() || base64url_decode(&server_secret).is_none() {
            return Err(ConfigError("STACK_SERVER_SECRET must be base64url".into()));
        }
        let lifetime = source.get("STACK_ACCESS_TOKEN_EXPIRATION_TIME").unwrap_or_else(|| "10min".into());
        let access_token_lifetime_ms = humantime::parse_duration(&lifetime)
            .map_err(|e| ConfigError(format!("STACK_ACCESS_TOKEN_EXPIRATION_TIME {lifetime:?}: {e}")))?
            .as_millis() as i64;
        if access_token_lifetime_ms < 1000 {
            return Err(ConfigError("STACK_ACCESS_TOKEN_EXPIRATION_TIME must be at least 1s".into()));
        }
        let api_url = source
            .get("NEXT_PUBLIC_STACK_API_URL")
            .unwrap_or_else(|| "http://localhost:8102".into())
            .trim_end_matches('/')
            .to_string();
        let environment = environment(source)?;
        let clickhouse = clickhouse(source);
        let companion = match (source.get("STACK_COMPANION_URL"), companion_secret(source)?) {
            (url, Some(secret)) => {
                Some(CompanionConfig { url: url.map(|u| u.trim_end_matches('/').to_string()), secret })
            }
            (None, None) => None,
            (Some(_), None) => {
                return Err(ConfigError("STACK_COMPANION_URL needs STACK_COMPANION_SECRET".into()));
            }
        };
        let shared_oauth_client_ids = SHAREABLE_OAUTH_PROVIDERS
            .iter()
            .filter_map(|p| source.get(&format!("STACK_{}_CLIENT_ID", p.to_ascii_uppercase())).map(|id| (*p, id)))
            .collect();
        let shared_oauth_client_secrets = SHAREABLE_OAUTH_PROVIDERS
            .iter()
            .filter_map(|p| source.get(&format!("STACK_{}_CLIENT_SECRET", p.to_ascii_uppercase())).map(|s| (*p, s)))
            .collect();
        // Read raw: ConfigSource adapters may drop empty values, which count as unset anyway.
        let allow_shared_oauth_access_tokens =
            shared_access_tokens_allowed(source.get("STACK_ALLOW_SHARED_OAUTH_ACCESS_TOKENS").as_deref());
        let default_email_capacity_per_hour = match source.get("STACK_DEFAULT_EMAIL_CAPACITY_PER_HOUR") {
            Some(c) => c.parse::<f64>().ok().filter(|c| c.is_finite() && *c > 0.0).ok_or_else(|| {
                ConfigError(format!("STACK_DEFAULT_EMAIL_CAPACITY_PER_HOUR {c:?} is not a positive number"))
            })?,
            None if environment == Environment::Production => 200.0,
            None => 100_000.0,
        };
        let ai = AiConfig {
            base_url: source.get("STACK_AI_BASE_URL").map(|u| u.trim_end_matches('/').to_string()),
            api_key: source.get("STACK_AI_API_KEY"),
            authenticated_api_key: source.get("STACK_AI_AUTHENTICATED_API_KEY"),
            docs_mcp_url: source.get("STACK_DOCS_MCP_URL"),
            mcp_allowed_origins: source
                .get("STACK_MCP_ALLOWED_ORIGINS")
                .map(|list| list.split(',').map(str::trim).filter(|o| !o.is_empty()).map(str::to_string).collect())
                .unwrap_or_default(),
            runs_per_minute: match source.get("STACK_AI_RUNS_PER_MINUTE") {
                None => 20,
                Some(n) => n.parse::<u32>().ok().filter(|n| *n > 0).ok_or_else(|| {
                    ConfigError(format!("STACK_AI_RUNS_PER_MINUTE {n:?} is not a positive whole number"))
                })?,
            },
        };
        let port = |key: &str, default: u16| match source.get(key) {
            None => Ok(default),
            Some(p) => p.parse::<u16>().map_err(|e| ConfigError(format!("{key} {p:?}: {e}"))),
        };
        let default_resend = crate::email::server::ResendEndpoint::default();
        let email = EmailConfig {
            shared_server: match source.get("STACK_EMAIL_HOST") {
                Some(host) => Some(crate::email::server::SharedServer {
                    host,
                    port: port("STACK_EMAIL_PORT", 587)?,
                    username: source.get("STACK_EMAIL_USERNAME"),
                    password: source.get("STACK_EMAIL_PASSWORD"),
                    sender_email: source.get("STACK_EMAIL_SENDER").unwrap_or_else(|| "noreply@stack-edge.local".into()),
                }),
                None => None,
            },
            resend: crate::email::server::ResendEndpoint {
                host: source.get("STACK_RESEND_SMTP_HOST").unwrap_or(default_resend.host),
                port: port("STACK_RESEND_SMTP_PORT", default_resend.port)?,
            },
            emailable: source.get("STACK_EMAILABLE_API_KEY").map(|api_key| crate::email::server::Emailable {
                api_url: source.get("STACK_EMAILABLE_API_URL").unwrap_or_else(|| "https://api.emailable.com/v1".into()),
                api_key,
            }),
            cron_secret: cron_secret(source, environment),
            smtp_allowed_hosts: smtp_allowed_hosts(source),
        };
        let metrics_cache = metrics_cache(source)?;
        let trusted_proxy = match source.get("STACK_TRUSTED_PROXY").as_deref() {
            None => None,
            Some("cloudflare") => Some(crate::http::location::TrustedProxy::Cloudflare),
            Some("x-forwarded-for") => Some(crate::http::location::TrustedProxy::XForwardedFor),
            Some(other) => {
                return Err(ConfigError(format!("STACK_TRUSTED_PROXY {other:?} is not cloudflare or x-forwarded-for")))
            }
        };
        Ok(Config {
            trusted_proxy,
            internal_admin_key: source.get("STACK_INTERNAL_ADMIN_KEY"),
            sqlite_path: source.get("STACK_SQLITE_PATH").unwrap_or_else(|| "/data/stack-edge.sqlite".into()),
            email,
            metrics_cache,
            server_secret,
            access_token_lifetime_ms,
            api_url,
            environment,
            clickhouse,
            companion,
            shared_oauth_client_ids,
            shared_oauth_client_secrets,
            allow_shared_oauth_access_tokens,
            default_email_capacity_per_hour,
            ai,
        })
    }

    /// Whether error answers may carry internal detail (not in production).
    pub fn shows_internal_errors(&self) -> bool {
        self.environment != Environment::Production
    }
}

/// Calls another function of the deployment by its name, as HTTP: a service binding on
/// Workers, the host's own route table natively, the public API URL from a component. A
/// function that needs another's work (the AI tools' `queryAnalytics`) asks it this way
/// instead of linking its code, so each Worker carries only its own; the request carries the
/// caller's credentials, which the function called authenticates again. Defined here, not
/// among the ports, because a call runs in a [`Context`] (natively, the caller's own).
#[async_trait::async_trait(?Send)]
pub trait Peers {
    /// Sends `request` (its URI a path: `/api/v1/...`) to `function` and buffers the answer.
    async fn call(
        &self,
        ctx: &Context,
        function: &str,
        request: http::Request<Vec<u8>>,
    ) -> Result<http::Response<Vec<u8>>, HttpError>;
}

/// Everything a handler may touch. Cheap to clone (all `Rc`), so background work can own one.
#[derive(Clone)]
pub struct Context {
    /// The primary SQL store (SQLite, D1, spin:sqlite).
    pub store: Rc<dyn SqlStore>,
    /// Session-replay chunks: a table of `store` unless the runtime binds a bucket.
    pub blobs: Rc<dyn BlobStore>,
    /// Outbound HTTP.
    pub http: Rc<dyn HttpClient>,
    /// The deployment's other functions.
    pub peers: Rc<dyn Peers>,
    /// The current time.
    pub clock: Rc<dyn Clock>,
    /// Randomness for ids, secrets and jitter.
    pub random: Rc<dyn Random>,
    /// Work that runs after the response.
    pub background: Rc<dyn Background>,
    /// The configuration, loaded once.
    pub config: Rc<Config>,
    /// Derived signing keys per audience (derivation costs a scalar multiplication).
    pub keys: Rc<KeyCache>,
}

impl Context {
    /// A context over the runtime's adapters; signing keys are derived from `config`.
    #[allow(clippy::too_many_arguments)] // One per port: a struct of them would only rename them.
    pub fn new(
        store: Rc<dyn SqlStore>,
        blobs: Rc<dyn BlobStore>,
        http: Rc<dyn HttpClient>,
        peers: Rc<dyn Peers>,
        clock: Rc<dyn Clock>,
        random: Rc<dyn Random>,
        background: Rc<dyn Background>,
        config: Config,
    ) -> Context {
        let keys = Rc::new(KeyCache::new(config.server_secret.clone()));
        Context { store, blobs, http, peers, clock, random, background, config: Rc::new(config), keys }
    }

    /// Now, in milliseconds since the Unix epoch.
    pub fn now(&self) -> i64 {
        self.clock.now_millis()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    impl ConfigSource for HashMap<&'static str, &'static str> {
        fn get(&self, key: &str) -> Option<String> {
            HashMap::get(self, key).map(std::string::ToString::to_string)
        }
    }

    #[test]
    fn loads_defaults_and_rejects_bad_values() {
        let mut env = HashMap::from([("STACK_SERVER_SECRET", "c2VjcmV0LXNlY3JldC1zZWNyZXQ")]);
        let config = Config::load(&env).unwrap();
        assert_eq!(config.access_token_lifetime_ms, 600_000);
        assert_eq!(config.environment, Environment::Production);
        env.insert("STACK_ACCESS_TOKEN_EXPIRATION_TIME", "60s");
        assert_eq!(Config::load(&env).unwrap().access_token_lifetime_ms, 60_000);
        env.insert("STACK_ACCESS_TOKEN_EXPIRATION_TIME", "soon");
        assert!(Config::load(&env).is_err());
        env.insert("STACK_ACCESS_TOKEN_EXPIRATION_TIME", "60s");
        env.insert("STACK_SERVER_SECRET", "not base64 !!");
        assert!(Config::load(&env).is_err());
    }

    /// Upstream's unit cases for the shared access-token block.
    #[test]
    fn shared_access_tokens_need_exactly_true() {
        assert!(shared_access_tokens_allowed(Some("true")));
        for value in [None, Some(""), Some("false"), Some("1"), Some("TRUE"), Some("yes"), Some(" true ")] {
            assert!(!shared_access_tokens_allowed(value), "{value:?}");
        }
        // The environment (NODE_ENV upstream, STACK_ENVIRONMENT here) makes no difference.
        for environment in ["production", "development", "test"] {
            let env = HashMap::from([
                ("STACK_SERVER_SECRET", "c2VjcmV0LXNlY3JldC1zZWNyZXQ"),
                ("STACK_ENVIRONMENT", environment),
                ("STACK_ALLOW_SHARED_OAUTH_ACCESS_TOKENS", "yes"),
            ]);
            assert!(!Config::load(&env).unwrap().allow_shared_oauth_access_tokens);
        }
    }

    /// Records the keys the loader asks for; every other key is unset.
    struct Recording(HashMap<&'static str, &'static str>, std::cell::RefCell<Vec<String>>);

    impl ConfigSource for Recording {
        fn get(&self, key: &str) -> Option<String> {
            self.1.borrow_mut().push(key.to_string());
            HashMap::get(&self.0, key).map(std::string::ToString::to_string)
        }
    }

    /// The component adapters read only `CONFIG_KEYS`: a key the loader reads outside it would
    /// be silently unset on Spin and `wasmtime serve`. Loaded bare and with the optional blocks
    /// on, so keys read only inside them are asked for too.
    #[test]
    fn config_keys_hold_every_key_the_loader_reads() {
        let bare = HashMap::from([("STACK_SERVER_SECRET", "c2VjcmV0LXNlY3JldC1zZWNyZXQ")]);
        let mut full = bare.clone();
        full.extend([
            ("STACK_EMAIL_HOST", "smtp.example.com"),
            ("STACK_COMPANION_URL", "http://127.0.0.1:1"),
            ("STACK_COMPANION_SECRET", "companion-secret-0123456789"),
            ("STACK_CLICKHOUSE_URL", "http://127.0.0.1:2"),
            ("STACK_ENVIRONMENT", "development"),
        ]);
        for values in [bare, full] {
            let source = Recording(values, Default::default());
            Config::load(&source).unwrap();
            for key in source.1.borrow().iter() {
                assert!(CONFIG_KEYS.contains(&key.as_str()), "Config::load reads {key}, which CONFIG_KEYS lacks");
            }
        }
    }
}
