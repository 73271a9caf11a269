//! Project config (docs/api.md §4): three override levels (project, branch, environment),
//! rendered into one config, and the checks an override write goes through.
//!
//! An override is a JSON object whose keys may be dotted (`"payments.testMode": true`). Later
//! levels win: a key replaces the same key and every key under it in earlier levels. Rendering
//! then turns dotted keys into nested objects (a dotted key into a record entry that does not
//! exist is dropped, with a warning) and fills in defaults.
//!
//! Problems come in upstream's three classes: `[FORMAT ERROR]` (not a config override at all),
//! `[ERROR]` (a key or value the level's schema does not allow) and `[WARNING]` (the rendered
//! config is incomplete or inconsistent, e.g. a product whose customer type differs from its
//! product line's).

pub mod demo;
pub mod schema;
pub mod store;

use serde_json::{Map, Value};

use schema::{is_valid_id, Level, Schema, CURRENCIES};

/// One problem of an override or a rendered config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    /// `[FORMAT ERROR]`: the override is not valid JSON of the right shape.
    Format(String),
    /// `[ERROR]`: the override breaks its level's schema.
    Error(String),
    /// `[WARNING]`: the rendered config has a questionable value.
    Warning(String),
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Problem::Format(m) => write!(f, "[FORMAT ERROR]{m}"),
            Problem::Error(m) => write!(f, "[ERROR] {m}"),
            Problem::Warning(m) => write!(f, "[WARNING] {m}"),
        }
    }
}

// --- override errors --------------------------------------------------------------------------

/// The first format error or error of `override_` for `level` (upstream's
/// `getConfigOverrideErrors`): plain object, key syntax, known keys, value types.
pub fn override_errors(level: Level, override_: &Value) -> Option<Problem> {
    let Value::Object(map) = override_ else {
        return Some(Problem::Format("The config override must be a JSON object.".into()));
    };
    for (key, value) in map {
        if !is_valid_key(key) {
            return Some(Problem::Format(format!("The key \"{key}\" is not a valid config key.")));
        }
        if let Some(problem) = nested_format_error(key, value) {
            return Some(problem);
        }
        match resolve(schema::schema(level), key) {
            Err(problem) => return Some(problem),
            Ok(node) => {
                if let Some(problem) = check_value(node, key, value) {
                    return Some(problem);
                }
            }
        }
    }
    None
}

/// `^[a-zA-Z0-9_:$][a-zA-Z_:$0-9-]*(\.[a-zA-Z0-9_:$][a-zA-Z_:$0-9-]*)*$`
fn is_valid_key(key: &str) -> bool {
    key.split('.').all(|part| {
        let mut chars = part.chars();
        let ok = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == ':' || c == '$';
        chars.next().is_some_and(ok) && chars.all(|c| ok(c) || c == '-')
    })
}

/// Nested keys may not contain dots, and tuple elements may not be null.
fn nested_format_error(path: &str, value: &Value) -> Option<Problem> {
    match value {
        Value::Object(map) => map.iter().find_map(|(k, v)| {
            if k.contains('.') {
                Some(Problem::Format(format!("The nested key \"{path}.{k}\" contains a dot; only top-level keys may.")))
            } else if !is_valid_key(k) {
                Some(Problem::Format(format!("The key \"{path}.{k}\" is not a valid config key.")))
            } else {
                nested_format_error(&format!("{path}.{k}"), v)
            }
        }),
        Value::Array(items) => items.iter().enumerate().find_map(|(i, v)| match v {
            Value::Null => Some(Problem::Format(format!("{path}[{i}] is null; tuple elements may not be."))),
            other => nested_format_error(&format!("{path}[{i}]"), other),
        }),
        _ => None,
    }
}

/// The schema node of a dotted key, or the error upstream gives for an unknown one.
fn resolve<'a>(root: &'a Schema, key: &str) -> Result<&'a Schema, Problem> {
    let mut node = root;
    let mut walked: Vec<&str> = Vec::new();
    let mut in_record_entry = false;
    for part in key.split('.') {
        // Of two alternatives, keys lead into the one with keys.
        if let Schema::Either(a, b) = node {
            node = if matches!(**b, Schema::Object(_) | Schema::Record(_)) { b } else { a };
        }
        node = match node {
            Schema::Any => return Ok(node),
            Schema::Object(fields) => match fields.iter().find(|(name, _)| *name == part) {
                Some((_, child)) => child,
                None if in_record_entry => {
                    return Err(Problem::Error(format!("{} contains unknown properties: {part}", walked.join("."))));
                }
                None => {
                    walked.push(part);
                    return Err(Problem::Error(format!(
                        "The key \"{key}\" is not valid (nested object not found in schema: \"{}\").",
                        walked.join(".")
                    )));
                }
            },
            Schema::Record(value) => {
                if !is_valid_id(part) {
                    return Err(Problem::Error(format!(
                        "\"{part}\" in \"{key}\" must contain only letters, numbers, underscores, and hyphens, and not start with a hyphen"
                    )));
                }
                walked.push(part);
                in_record_entry = true;
                node = value;
                continue;
            }
            _ => {
                walked.push(part);
                return Err(Problem::Error(format!(
                    "The key \"{key}\" is not valid (nested object not found in schema: \"{}\").",
                    walked.join(".")
                )));
            }
        };
        walked.push(part);
        in_record_entry = false;
    }
    Ok(node)
}

fn type_error(path: &str, kind: &str, value: &Value) -> Option<Problem> {
    Some(Problem::Error(format!("{path} must be a `{kind}` type, but the final value was: `{value}`.")))
}

/// A loose check of `value` against `node` (null is allowed everywhere).
fn check_value(node: &Schema, path: &str, value: &Value) -> Option<Problem> {
    if value.is_null() {
        return None;
    }
    match node {
        Schema::Any => None,
        Schema::Bool => (!value.is_boolean()).then(|| type_error(path, "boolean", value)).flatten(),
        Schema::String => (!value.is_string()).then(|| type_error(path, "string", value)).flatten(),
        Schema::Number => (!value.is_number()).then(|| type_error(path, "number", value)).flatten(),
        Schema::Literal(s) => (value.as_str() != Some(s)).then(|| Problem::Error(format!("{path} must be \"{s}\""))),
        Schema::OneOf(options) => match value.as_str() {
            Some(s) if options.contains(&s) => None,
            _ => Some(Problem::Error(format!("{path} must be one of the following values: {}", options.join(", ")))),
        },
        Schema::Interval => {
            let ok = value.as_array().is_some_and(|a| {
                a.len() == 2
                    && a[0].as_u64().is_some()
                    && a[1].as_str().is_some_and(|u| ["day", "week", "month", "year"].contains(&u))
            });
            (!ok).then(|| Problem::Error(format!("{path} must be an interval like [1, \"month\"]")))
        }
        Schema::Money => money_error(path, value),
        Schema::Either(a, b) => {
            if check_value(a, path, value).is_none() || check_value(b, path, value).is_none() {
                None
            } else {
                check_value(b, path, value)
            }
        }
        Schema::Object(fields) => {
            let Value::Object(map) = value else { return type_error(path, "object", value) };
            for (k, v) in map {
                match fields.iter().find(|(name, _)| name == k) {
                    Some((_, child)) => {
                        if let Some(p) = check_value(child, &format!("{path}.{k}"), v) {
                            return Some(p);
                        }
                    }
                    None => return Some(Problem::Error(format!("{path} contains unknown properties: {k}"))),
                }
            }
            // A price needs a currency.
            if fields.iter().any(|(name, _)| *name == "USD")
                && !CURRENCIES.iter().any(|(code, _)| map.get(*code).is_some_and(|v| !v.is_null()))
            {
                return Some(Problem::Error(format!("{path}: At least one currency is required")));
            }
            None
        }
        Schema::Record(child) => {
            let Value::Object(map) = value else { return type_error(path, "object", value) };
            map.iter().find_map(|(id, v)| {
                if !is_valid_id(id) {
                    return Some(Problem::Error(format!(
                        "\"{id}\" in {path} must contain only letters, numbers, underscores, and hyphens, and not start with a hyphen"
                    )));
                }
                check_value(child, &format!("{path}.{id}"), v)
            })
        }
    }
}

/// Money: `<digits>` or `<digits>.<digits>`, no leading zeros, at most the currency's decimals.
fn money_error(path: &str, value: &Value) -> Option<Problem> {
    let Some(text) = value.as_str() else { return type_error(path, "string", value) };
    let code = path.rsplit('.').next().unwrap_or_default();
    let (whole, fraction) = text.split_once('.').map_or((text, None), |(w, f)| (w, Some(f)));
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(whole) || fraction.is_some_and(|f| !digits(f)) {
        return Some(Problem::Error("Money amount must be in the format of <number> or <number>.<number>".into()));
    }
    if whole.len() > 1 && whole.starts_with('0') {
        return Some(Problem::Error("Money amount must not have leading zeros".into()));
    }
    let decimals = CURRENCIES.iter().find(|(c, _)| *c == code).map_or(2, |(_, d)| *d);
    if fraction.is_some_and(|f| f.len() > decimals as usize) {
        return Some(Problem::Error(format!("Too many decimals; {code} only has {decimals} decimals")));
    }
    None
}

// --- merging and rendering ------------------------------------------------------------------

/// `later` applied over `earlier`: each key of `later` replaces the same key and every key
/// under it (`"a.b"` removes `"a.b"` and `"a.b.*"`). Keys are kept sorted, so within one
/// override a parent (`"a"`) is always set before its dotted children (`"a.b"`).
pub fn merge(earlier: &Map<String, Value>, later: &Map<String, Value>) -> Map<String, Value> {
    let mut out: Map<String, Value> = earlier
        .iter()
        .filter(|(k, _)| !later.keys().any(|l| *k == l || k.starts_with(&format!("{l}."))))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    for (k, v) in later {
        out.insert(k.clone(), v.clone());
    }
    out
}

/// Old key names, renamed when an override is read or written (docs/api.md §4.2).
pub fn migrate(override_: &mut Map<String, Value>) {
    let renames = [
        ("payments.offers", "payments.products"),
        ("payments.groups", "payments.productLines"),
        ("payments.catalogs", "payments.productLines"),
    ];
    let keys: Vec<String> = override_.keys().cloned().collect();
    for key in keys {
        for (old, new) in renames {
            if key == old || key.starts_with(&format!("{old}.")) {
                let value = override_.remove(&key).expect("present");
                override_.insert(format!("{new}{}", &key[old.len()..]), value);
            }
        }
    }
    // Nested forms, and products' `groupId`/`catalogId`.
    if let Some(Value::Object(payments)) = override_.get_mut("payments") {
        for (old, new) in [("offers", "products"), ("groups", "productLines"), ("catalogs", "productLines")] {
            if let Some(value) = payments.remove(old) {
                payments.insert(new.into(), value);
            }
        }
        if let Some(Value::Object(products)) = payments.get_mut("products") {
            for product in products.values_mut() {
                if let Value::Object(p) = product {
                    for old in ["groupId", "catalogId"] {
                        if let Some(v) = p.remove(old) {
                            p.insert("productLineId".into(), v);
                        }
                    }
                }
            }
        }
        for old in ["stripeAccountId", "stripeAccountSetupComplete"] {
            payments.remove(old);
        }
    }
}

/// A rendered config, and the dotted keys rendering had to drop.
pub struct Rendered {
    /// The rendered config.
    pub config: Value,
    /// What rendering found questionable.
    pub warnings: Vec<Problem>,
}

/// Renders overrides given lowest level first.
pub fn render(levels: &[&Map<String, Value>]) -> Rendered {
    let merged = levels.iter().fold(Map::new(), |acc, level| merge(&acc, level));
    let mut config = Map::new();
    let mut warnings = Vec::new();
    for (key, value) in merged {
        set_dotted(&mut config, &key, value, &mut warnings);
    }
    let mut config = Value::Object(config);
    apply_defaults(&mut config);
    warnings.extend(consistency_warnings(&config));
    Rendered { config, warnings }
}

/// Sets `value` at dotted `key`. Missing static objects along the way are created; a missing
/// record entry is not (the key is dropped, with a warning, as upstream does).
fn set_dotted(config: &mut Map<String, Value>, key: &str, value: Value, warnings: &mut Vec<Problem>) {
    let parts: Vec<&str> = key.split('.').collect();
    if let Some(missing) = missing_record_entry(config, &parts) {
        let parent = parts[..=missing].join(".");
        let child = parts[missing + 1..].join(".");
        warnings.push(Problem::Warning(format!(
            "Dot-notation key \"{key}\" will be silently ignored because it references non-existent parent \"{parent}\". Instead of dot notation, use nested object notation like this: {{ \"{parent}\": {{ \"{child}\": ... }} }}"
        )));
        return;
    }
    let mut target = config;
    for part in &parts[..parts.len() - 1] {
        if !target.get(*part).is_some_and(Value::is_object) {
            target.insert(part.to_string(), Value::Object(Map::new()));
        }
        target = target.get_mut(*part).and_then(Value::as_object_mut).expect("an object");
    }
    target.insert(parts[parts.len() - 1].to_string(), value);
}

/// The index of the first record entry on the way to the last part of `parts` that does not
/// exist in `config` (static objects do not count: they are created).
fn missing_record_entry(config: &Map<String, Value>, parts: &[&str]) -> Option<usize> {
    let mut node: Option<&Schema> = Some(schema::schema(Level::Environment));
    let mut current: Option<&Map<String, Value>> = Some(config);
    for (i, part) in parts[..parts.len() - 1].iter().enumerate() {
        if let Some(Schema::Either(a, b)) = node {
            node = Some(if matches!(**b, Schema::Object(_) | Schema::Record(_)) { b } else { a });
        }
        let (child, is_entry) = match node {
            Some(Schema::Object(fields)) => (fields.iter().find(|(n, _)| n == part).map(|(_, s)| s), false),
            Some(Schema::Record(value)) => (Some(value.as_ref()), true),
            _ => (None, false),
        };
        let existing = current.and_then(|m| m.get(*part)).and_then(Value::as_object);
        if is_entry && existing.is_none() {
            return Some(i);
        }
        node = child;
        current = existing;
    }
    None
}

/// Upstream's rendered defaults for payments.
fn apply_defaults(config: &mut Value) {
    let Some(payments) = config.get_mut("payments").and_then(Value::as_object_mut) else { return };
    payments.entry("blockNewPurchases").or_insert(Value::Bool(false));
    payments.entry("testMode").or_insert(Value::Bool(true));
    for section in ["products", "items"] {
        if let Some(Value::Object(entries)) = payments.get_mut(section) {
            for (id, entry) in entries.iter_mut() {
                if let Value::Object(e) = entry {
                    e.entry("displayName").or_insert_with(|| Value::String(id.clone()));
                    e.entry("customerType").or_insert_with(|| Value::String("user".into()));
                    if let Some(Value::Object(items)) = e.get_mut("includedItems") {
                        for item in items.values_mut().filter_map(Value::as_object_mut) {
                            item.entry("quantity").or_insert(Value::from(0));
                            item.entry("repeat").or_insert_with(|| Value::String("never".into()));
                            item.entry("expires").or_insert_with(|| Value::String("when-repeated".into()));
                        }
                    }
                }
            }
        }
    }
}

/// The whole-config rules upstream checks on the rendered config.
pub fn consistency_warnings(config: &Value) -> Vec<Problem> {
    let mut warnings = Vec::new();
    if let Some(problem) = source_of_truth_warning(&config["sourceOfTruth"]) {
        warnings.push(problem);
    }
    warnings.extend(payments_warnings(config));
    warnings.extend(managed_email_server_warning(&config["emails"]["server"]));
    warnings
}

/// A managed email server (not shared) needs its key and its sender address (docs/api.md §5.6).
fn managed_email_server_warning(server: &Value) -> Option<Problem> {
    if server["isShared"].as_bool().unwrap_or(true) || server["provider"].as_str() != Some("managed") {
        return None;
    }
    let missing: Vec<&str> = ["password", "managedSubdomain", "managedSenderLocalPart"]
        .into_iter()
        .filter(|key| server[*key].as_str().is_none_or(str::is_empty))
        .collect();
    (!missing.is_empty()).then(|| {
        Problem::Warning(format!(
            "emails.server uses the managed provider but does not define {}",
            missing.iter().map(|k| format!("emails.server.{k}")).collect::<Vec<_>>().join(", ")
        ))
    })
}

/// `sourceOfTruth` is one of three shapes (a union upstream checks on the rendered config).
fn source_of_truth_warning(source: &Value) -> Option<Problem> {
    let matches = match source["type"].as_str() {
        _ if source.is_null() => true,
        Some("hosted") => true,
        Some("postgres") => source["connectionString"].is_string(),
        Some("neon") => source["connectionStrings"].is_object(),
        _ => false,
    };
    (!matches).then(|| {
        Problem::Warning(
            "sourceOfTruth is not matched by any of the provided schemas: { type: \"hosted\" }, \
             { type: \"neon\", connectionStrings: { [id]: string } }, { type: \"postgres\", connectionString: string }"
                .into(),
        )
    })
}

/// A product's line must exist and share its customer type (the first failing product only,
/// as upstream).
fn payments_warnings(config: &Value) -> Vec<Problem> {
    let payments = &config["payments"];
    let Some(products) = payments["products"].as_object() else { return Vec::new() };
    for (id, product) in products {
        let Some(line_id) = product["productLineId"].as_str() else { continue };
        let line = &payments["productLines"][line_id];
        if line.is_null() {
            return vec![Problem::Warning(format!(
                "Product \"{id}\" specifies product line ID \"{line_id}\", but that product line does not exist"
            ))];
        }
        let (p, l) = (product["customerType"].as_str().unwrap_or("user"), line["customerType"].as_str());
        if Some(p) != l {
            return vec![Problem::Warning(format!(
                "Product \"{id}\" has customer type \"{p}\" but its product line \"{line_id}\" has customer type \"{}\"",
                l.unwrap_or("undefined")
            ))];
        }
    }
    Vec::new()
}

/// Whether `url` is a trusted place to send the user back to: a trusted domain of the config,
/// or localhost unless `domains.allowLocalhost` is false.
pub fn is_trusted_redirect(config: &Value, url: &str) -> bool {
    let Ok(parsed) = url::Url::parse(url) else { return false };
    let localhost = matches!(parsed.host_str(), Some("localhost" | "127.0.0.1" | "[::1]"));
    if localhost && config["domains"]["allowLocalhost"].as_bool() != Some(false) {
        return true;
    }
    let trusted = config["domains"]["trustedDomains"].as_object();
    trusted.is_some_and(|domains| {
        domains.values().filter_map(|d| d["baseUrl"].as_str()).any(|base| {
            url::Url::parse(base).is_ok_and(|b| {
                b.scheme() == parsed.scheme() && b.host_str() == parsed.host_str() && b.port() == parsed.port()
            })
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn trusted_redirects_are_localhost_or_a_trusted_domain() {
        let config = json!({ "domains": { "trustedDomains": { "a": { "baseUrl": "https://app.example.com" } } } });
        assert!(is_trusted_redirect(&config, "https://app.example.com/after"));
        assert!(is_trusted_redirect(&config, "http://localhost:3000/x"));
        assert!(!is_trusted_redirect(&config, "https://evil.example.com/"));
        assert!(!is_trusted_redirect(&config, "http://app.example.com/"), "scheme differs");
        let no_localhost = json!({ "domains": { "allowLocalhost": false } });
        assert!(!is_trusted_redirect(&no_localhost, "http://localhost:3000/x"));
    }

    fn obj(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn later_keys_replace_the_key_and_everything_under_it() {
        let base = obj(json!({ "a.b": 1, "a.b.c": 2, "a.d": 3, "x": { "y": 1 } }));
        let over = obj(json!({ "a.b": 9, "x": { "z": 2 } }));
        assert_eq!(Value::Object(merge(&base, &over)), json!({ "a.d": 3, "a.b": 9, "x": { "z": 2 } }));
    }

    #[test]
    fn rendering_nests_dotted_keys_and_environment_wins() {
        let branch = obj(json!({ "teams": { "allowClientTeamCreation": false }, "payments.blockNewPurchases": true }));
        let env = obj(json!({ "teams.allowClientTeamCreation": true }));
        let r = render(&[&obj(json!({ "apps.installed.analytics.enabled": true })), &branch, &env]);
        assert_eq!(r.config["apps"]["installed"]["analytics"]["enabled"], true, "a fixed app: never dropped");
        assert_eq!(r.config["teams"]["allowClientTeamCreation"], true);
        assert_eq!(r.config["payments"]["blockNewPurchases"], true);
        assert_eq!(r.config["payments"]["testMode"], true, "default");
        assert!(r.warnings.is_empty());
    }

    #[test]
    fn a_managed_email_server_needs_its_key_and_sender() {
        let managed = |extra: Value| {
            let mut server = json!({"isShared": false, "provider": "managed"});
            server.as_object_mut().unwrap().extend(obj(extra));
            consistency_warnings(&json!({ "emails": { "server": server } }))
                .into_iter()
                .map(|p| p.to_string())
                .collect::<Vec<_>>()
        };
        assert_eq!(
            managed(json!({"managedSubdomain": "m.acme.com"})),
            ["[WARNING] emails.server uses the managed provider but does not define emails.server.password, emails.server.managedSenderLocalPart"]
        );
        assert!(managed(json!({"password": "k", "managedSubdomain": "m.acme.com", "managedSenderLocalPart": "hi"}))
            .is_empty());
        let shared = json!({ "emails": { "server": { "isShared": true, "provider": "managed" } } });
        assert!(consistency_warnings(&shared).is_empty());
    }

    #[test]
    fn dotted_keys_into_missing_record_entries_are_dropped_with_a_warning() {
        let env =
            obj(json!({ "payments.products.X.displayName": "x", "domains.trustedDomains.t.baseUrl": "https://a" }));
        let r = render(&[&env]);
        assert!(r.config["payments"]["products"].is_null());
        assert_eq!(r.warnings.len(), 2);
        assert_eq!(
            r.warnings[1].to_string(),
            "[WARNING] Dot-notation key \"payments.products.X.displayName\" will be silently ignored because it references non-existent parent \"payments.products.X\". Instead of dot notation, use nested object notation like this: { \"payments.products.X\": { \"displayName\": ... } }"
        );
        // No warning when the entry exists (created in the same override).
        let env = obj(json!({ "payments": { "products": { "X": {} } }, "payments.products.X.displayName": "x" }));
        let r = render(&[&env]);
        assert_eq!((r.config["payments"]["products"]["X"]["displayName"].clone(), r.warnings.len()), (json!("x"), 0));
    }

    /// Upstream's unit cases: each of these dotted keys reaches into a record entry that does
    /// not exist, and each is listed as its own warning.
    #[test]
    fn every_dotted_key_into_a_missing_entry_is_warned_about() {
        let keys = [
            "domains.trustedDomains.X.baseUrl",
            "auth.oauth.providers.google.clientId",
            "rbac.permissions.X.description",
            "auth.signUpRules.X.enabled",
            "payments.products.X.displayName",
            "payments.products.P.prices.monthly.USD",
            "dbSync.externalDatabases.X.type",
        ];
        let env: Map<String, Value> = keys.iter().map(|k| (k.to_string(), json!("v"))).collect();
        let warnings: Vec<String> = render(&[&env]).warnings.iter().map(Problem::to_string).collect();
        assert_eq!(warnings.len(), keys.len(), "{warnings:#?}");
        for key in keys {
            assert!(warnings.iter().any(|w| w.contains(&format!("Dot-notation key \"{key}\""))), "{key}");
        }
        // Dotted keys into static objects and an empty override warn about nothing.
        let fine = obj(json!({ "payments.blockNewPurchases": true, "domains.allowLocalhost": false }));
        assert!(render(&[&fine]).warnings.is_empty());
        assert!(render(&[&Map::new()]).warnings.is_empty());
        // An unknown field of an existing kind of entry is an error, not a warning.
        assert_eq!(
            override_errors(Level::Environment, &json!({ "emails.themes.X.displayName": "x" })).map(|p| p.to_string()),
            Some("[ERROR] emails.themes.X contains unknown properties: displayName".into())
        );
    }

    #[test]
    fn override_errors_use_upstreams_wording() {
        let cases = [
            (Level::Environment, json!({ "nonExistentField": 1 }), "[ERROR] The key \"nonExistentField\" is not valid (nested object not found in schema: \"nonExistentField\")."),
            (Level::Branch, json!({ "emails.server": {} }), "[ERROR] The key \"emails.server\" is not valid (nested object not found in schema: \"emails.server\")."),
            (Level::Branch, json!({ "domains.trustedDomains.a.baseUrl": "x" }), "[ERROR] The key \"domains.trustedDomains.a.baseUrl\" is not valid (nested object not found in schema: \"domains\")."),
            (Level::Branch, json!({ "auth.oauth.providers.google.isShared": true }), "[ERROR] auth.oauth.providers.google contains unknown properties: isShared"),
            (Level::Branch, json!({ "teams.allowClientTeamCreation": 123 }), "[ERROR] teams.allowClientTeamCreation must be a `boolean` type, but the final value was: `123`."),
            (Level::Environment, json!([1]), "[FORMAT ERROR]The config override must be a JSON object."),
            (Level::Environment, json!({ "a": { "b.c": 1 } }), "[FORMAT ERROR]The nested key \"a.b.c\" contains a dot; only top-level keys may."),
            (Level::Environment, json!({ "payments.products.p.prices.m.USD": "01" }), "[ERROR] Money amount must not have leading zeros"),
            (Level::Environment, json!({ "payments.products.p.prices.m.JPY": "1.5" }), "[ERROR] Too many decimals; JPY only has 0 decimals"),
            (Level::Environment, json!({ "payments.products.p.prices.m.USD": "1,5" }), "[ERROR] Money amount must be in the format of <number> or <number>.<number>"),
        ];
        for (level, value, expected) in cases {
            assert_eq!(override_errors(level, &value).map(|p| p.to_string()).as_deref(), Some(expected), "{value}");
        }
        for ok in [
            json!({}),
            json!({ "auth.oauth.providers.google.isShared": true, "domains.allowLocalhost": true }),
            json!({ "payments": { "products": { "p": { "prices": { "m": { "USD": "39.50", "interval": [1, "month"] } } } } } }),
            json!({ "teams.allowClientTeamCreation": null }),
        ] {
            assert_eq!(override_errors(Level::Environment, &ok), None, "{ok}");
        }
    }

    #[test]
    fn a_product_must_share_its_lines_customer_type() {
        let branch = obj(json!({ "payments": {
            "productLines": { "workspace": { "customerType": "team" } },
            "products": { "starter": { "productLineId": "workspace", "customerType": "user" } } } }));
        let r = render(&[&branch]);
        assert_eq!(
            r.warnings,
            vec![Problem::Warning("Product \"starter\" has customer type \"user\" but its product line \"workspace\" has customer type \"team\"".into())]
        );
        let missing = obj(json!({ "payments": { "products": { "p": { "productLineId": "nope" } } } }));
        assert_eq!(
            render(&[&missing]).warnings[0].to_string(),
            "[WARNING] Product \"p\" specifies product line ID \"nope\", but that product line does not exist"
        );
    }

    #[test]
    fn source_of_truth_must_be_one_of_three_shapes() {
        let warned = |v: Value| !render(&[&obj(json!({ "sourceOfTruth": v }))]).warnings.is_empty();
        assert!(warned(json!({ "type": "postgres" })));
        assert!(warned(json!({ "type": "mysql" })));
        assert!(!warned(json!({ "type": "hosted" })));
        assert!(!warned(json!({ "type": "postgres", "connectionString": "postgres://x" })));
        let text = render(&[&obj(json!({ "sourceOfTruth": { "type": "postgres" } }))]).warnings[0].to_string();
        assert!(text.starts_with("[WARNING] sourceOfTruth is not matched by any of the provided schemas"), "{text}");
    }

    #[test]
    fn old_payment_names_are_migrated() {
        let mut o = obj(
            json!({ "payments.offers.a.displayName": "A", "payments": { "groups": { "g": {} }, "products": { "p": { "catalogId": "g" } } } }),
        );
        migrate(&mut o);
        assert_eq!(o["payments.products.a.displayName"], "A");
        assert_eq!(o["payments"]["productLines"], json!({ "g": {} }));
        assert_eq!(o["payments"]["products"]["p"]["productLineId"], "g");
    }
}
