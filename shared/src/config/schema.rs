//! The config schema (docs/api.md §4): which keys each override level may hold and what
//! their values look like. It is data (a tree of [`Schema`] nodes), walked by validation and
//! by rendering; it covers the keys this system uses and upstream's tests name.

use std::sync::OnceLock;

/// One node of the schema.
#[derive(Debug)]
pub enum Schema {
    /// `true` or `false`.
    Bool,
    /// A JSON string.
    String,
    /// A JSON number.
    Number,
    /// One of these strings.
    OneOf(&'static [&'static str]),
    /// A duration `[count, unit]`, count an integer >= 0.
    Interval,
    /// A money amount: `<digits>` or `<digits>.<digits>`.
    Money,
    /// Fixed keys.
    Object(Vec<(&'static str, Schema)>),
    /// Any id (`^[a-zA-Z0-9_][a-zA-Z0-9_-]*$`, at most 63 characters) mapping to the value schema.
    Record(Box<Schema>),
    /// The first matching alternative.
    Either(Box<Schema>, Box<Schema>),
    /// Exactly this string.
    Literal(&'static str),
    /// Any JSON value (checked elsewhere, if at all).
    Any,
}

use Schema::*;

fn object(fields: Vec<(&'static str, Schema)>) -> Schema {
    Object(fields)
}

fn record(value: Schema) -> Schema {
    Record(Box::new(value))
}

/// The customer types a product may have.
pub const CUSTOMER_TYPES: &[&str] = &["user", "team", "custom"];
/// The apps a project can install (`apps.installed.<app>.enabled`): a fixed set, so dotted
/// keys into them are never dropped.
pub const APPS: &[&str] = &[
    "authentication",
    "teams",
    "rbac",
    "api-keys",
    "payments",
    "emails",
    "email-api",
    "data-vault",
    "webhooks",
    "tv-mode",
    "launch-checklist",
    "catalyst",
    "neon",
    "convex",
    "vercel",
    "analytics",
];
/// The currencies prices may be in, with their decimal places.
pub const CURRENCIES: &[(&str, u32)] =
    &[("USD", 2), ("EUR", 2), ("GBP", 2), ("JPY", 0), ("INR", 2), ("AUD", 2), ("CAD", 2)];

/// The override levels, lowest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    /// The project-wide level.
    Project,
    /// A branch's level.
    Branch,
    /// An environment's level (secrets and per-deployment values).
    Environment,
}

impl Level {
    /// The level named `s` (`project`, `branch`, `environment`).
    pub fn parse(s: &str) -> Option<Level> {
        match s {
            "project" => Some(Level::Project),
            "branch" => Some(Level::Branch),
            "environment" => Some(Level::Environment),
            _ => None,
        }
    }
    /// The level's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Project => "project",
            Level::Branch => "branch",
            Level::Environment => "environment",
        }
    }
}

fn payments(environment: bool) -> Schema {
    let price = record_or_money_price();
    let mut fields = vec![
        ("blockNewPurchases", Bool),
        ("autoPay", object(vec![("interval", Interval)])),
        ("productLines", record(object(vec![("displayName", String), ("customerType", OneOf(CUSTOMER_TYPES))]))),
        (
            "products",
            record(object(vec![
                ("displayName", String),
                ("productLineId", String),
                ("isAddOnTo", Either(Box::new(Bool), Box::new(record(Bool)))),
                ("customerType", OneOf(CUSTOMER_TYPES)),
                ("freeTrial", Interval),
                ("serverOnly", Bool),
                ("stackable", Bool),
                ("prices", Either(Box::new(Literal("include-by-default")), Box::new(record(price)))),
                (
                    "includedItems",
                    record(object(vec![
                        ("quantity", Number),
                        ("repeat", Either(Box::new(Literal("never")), Box::new(Interval))),
                        ("expires", OneOf(&["never", "when-purchase-expires", "when-repeated"])),
                    ])),
                ),
            ])),
        ),
        ("items", record(object(vec![("displayName", String), ("customerType", OneOf(CUSTOMER_TYPES))]))),
    ];
    if environment {
        fields.push(("testMode", Bool));
    }
    object(fields)
}

fn record_or_money_price() -> Schema {
    let mut fields: Vec<(&'static str, Schema)> = CURRENCIES.iter().map(|(code, _)| (*code, Money)).collect();
    fields.extend([("interval", Interval), ("serverOnly", Bool), ("freeTrial", Interval)]);
    object(fields)
}

/// The keys of a level's schema (the environment schema is a superset of the branch schema).
fn level_schema(level: Level) -> Schema {
    if level == Level::Project {
        return object(vec![("sourceOfTruth", Any), ("project", object(vec![("requirePublishableClientKey", Bool)]))]);
    }
    let env = level == Level::Environment;
    let mut provider = vec![("type", String), ("allowSignIn", Bool), ("allowConnectedAccounts", Bool)];
    if env {
        provider.extend([
            ("isShared", Bool),
            ("clientId", String),
            ("clientSecret", String),
            ("facebookConfigId", String),
            ("microsoftTenantId", String),
            ("appleBundles", Any),
            // Ours: a generic OpenID Connect provider's endpoints (type `oidc`).
            ("authorizationEndpoint", String),
            ("tokenEndpoint", String),
            ("userinfoEndpoint", String),
        ]);
    }
    let mut fields = vec![
        (
            "apps",
            object(vec![(
                "installed",
                object(APPS.iter().map(|app| (*app, object(vec![("enabled", Bool)]))).collect()),
            )]),
        ),
        (
            "auth",
            object(vec![
                ("allowSignUp", Bool),
                ("refreshTokenRotation", object(vec![("enabled", Bool)])),
                ("password", object(vec![("allowSignIn", Bool)])),
                ("otp", object(vec![("allowSignIn", Bool)])),
                ("oauth", object(vec![("accountMergeStrategy", String), ("providers", record(object(provider)))])),
                (
                    "signUpRules",
                    record(object(vec![("enabled", Bool), ("displayName", String), ("condition", String)])),
                ),
            ]),
        ),
        (
            "rbac",
            object(vec![(
                "permissions",
                record(object(vec![
                    ("description", String),
                    ("scope", OneOf(&["team", "project"])),
                    ("containedPermissionIds", record(Bool)),
                ])),
            )]),
        ),
        ("teams", object(vec![("createPersonalTeamOnSignUp", Bool), ("allowClientTeamCreation", Bool)])),
        ("users", object(vec![("allowClientUserDeletion", Bool)])),
        ("emails", object(vec![("selectedThemeId", String), ("themes", record(object(vec![("tsxSource", String)])))])),
        ("payments", payments(env)),
    ];
    if env {
        fields.push((
            "domains",
            object(vec![
                ("allowLocalhost", Bool),
                ("trustedDomains", record(object(vec![("baseUrl", String), ("handlerPath", String)]))),
            ]),
        ));
        // Extend `emails` with the server settings.
        for (name, schema) in &mut fields {
            if *name == "emails" {
                if let Object(inner) = schema {
                    inner.push((
                        "server",
                        object(vec![
                            ("isShared", Bool),
                            ("provider", OneOf(&["smtp", "resend", "managed"])),
                            ("host", String),
                            ("port", Number),
                            ("username", String),
                            ("password", String),
                            ("senderName", String),
                            ("senderEmail", String),
                            ("managedSubdomain", String),
                            ("managedSenderLocalPart", String),
                        ]),
                    ));
                }
            }
        }
        fields.push(("analytics", Any));
        fields.push(("customDashboards", Any));
        fields.push((
            "dbSync",
            object(vec![("externalDatabases", record(object(vec![("type", String), ("connectionString", String)])))]),
        ));
    }
    object(fields)
}

/// The schema of `level` (built once).
pub fn schema(level: Level) -> &'static Schema {
    static PROJECT: OnceLock<Schema> = OnceLock::new();
    static BRANCH: OnceLock<Schema> = OnceLock::new();
    static ENVIRONMENT: OnceLock<Schema> = OnceLock::new();
    match level {
        Level::Project => PROJECT.get_or_init(|| level_schema(Level::Project)),
        Level::Branch => BRANCH.get_or_init(|| level_schema(Level::Branch)),
        Level::Environment => ENVIRONMENT.get_or_init(|| level_schema(Level::Environment)),
    }
}

/// Whether `id` may name a record entry.
pub fn is_valid_id(id: &str) -> bool {
    let mut chars = id.chars();
    id.len() <= 63
        && chars.next().is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}
