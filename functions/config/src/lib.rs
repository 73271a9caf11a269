//! The config function (docs/api.md §4.4): the rendered config of a project's branch, and
//! reads and writes of its project, branch and environment overrides.
//!
//! A write is checked before it is stored: the JSON must parse, the override must fit its
//! level's schema (`[FORMAT ERROR]`, `[ERROR]`), and it may not make the rendered config worse:
//! a `[WARNING]` the write would introduce (a product whose customer type differs from its
//! product line's, a dotted key that would be ignored) refuses it, while warnings already there
//! do not block unrelated writes (upstream failed those: the bug the seed data fix worked
//! around). A refused write changes nothing.

shared::function_entries!(crate::FUNCTION);

use serde_json::{json, Map, Value};

use shared::config::schema::Level;
use shared::config::{merge, migrate, override_errors, render, store, Problem};
use shared::function::{Function, Route};
use shared::http::error::{ApiError, ApiResult};
use shared::http::validate::{parse_body, Validator};
use shared::http::{json, Request, Response};
use shared::identity::auth::{authenticate, AccessType, AuthRule, RequestAuth, ADMIN_ONLY, SERVER_OR_ADMIN};
use shared::Context;

/// The config function: the rendered config, and each level's override and source.
pub const FUNCTION: Function = Function {
    name: "config",
    routes: &[
        Route::at("/api/v1/internal/config").get(|c| Box::pin(rendered(c.ctx, c.req))),
        Route::at("/api/v1/internal/config/override/{level}")
            .get(|c| Box::pin(read_override(c.ctx, c.req, c.param("level"))))
            .put(|c| Box::pin(write_override(c.ctx, c.req, c.param("level"), Write::Replace)))
            .patch(|c| Box::pin(write_override(c.ctx, c.req, c.param("level"), Write::Patch))),
        Route::at("/api/v1/internal/config/override/{level}/reset-keys")
            .post(|c| Box::pin(reset_keys(c.ctx, c.req, c.param("level")))),
        Route::at("/api/v1/internal/config/source")
            .get(|c| Box::pin(read_source(c.ctx, c.req)))
            .delete(|c| Box::pin(unlink_source(c.ctx, c.req))),
    ],
    crons: &[],
    scheduled: None,
    health: None,
};

fn success() -> Response {
    json(&json!({ "success": true }))
}

/// `GET /internal/config`: the rendered config (admin).
async fn rendered(ctx: &Context, req: &Request) -> ApiResult<Response> {
    let auth = authenticate(ctx, req, AuthRule::allow(ADMIN_ONLY)).await?;
    let overrides = store::load(ctx, &auth.tenancy).await?;
    let rendered = render(&overrides.up_to(Level::Environment));
    Ok(json(&json!({ "config_string": rendered.config.to_string() })))
}

/// The level of the path, and the caller's right to it: a server key manages the branch
/// level only.
async fn level_access(ctx: &Context, req: &Request, level: &str) -> ApiResult<(RequestAuth, Level)> {
    let auth = authenticate(ctx, req, AuthRule::allow(SERVER_OR_ADMIN)).await?;
    let Some(level) = Level::parse(level) else {
        let mut v = Validator::new(req);
        v.fail("params.level must be one of the following values: project, branch, environment".into());
        v.finish()?;
        unreachable!("a failed validation is an error");
    };
    if auth.access_type == AccessType::Server && level != Level::Branch {
        return Err(ApiError::status(403, "Server access can only manage branch config overrides."));
    }
    Ok((auth, level))
}

async fn read_override(ctx: &Context, req: &Request, level: &str) -> ApiResult<Response> {
    let (auth, level) = level_access(ctx, req, level).await?;
    let overrides = store::load(ctx, &auth.tenancy).await?;
    Ok(json(&json!({ "config_string": Value::Object(overrides.level(level).clone()).to_string() })))
}

#[derive(Clone, Copy, PartialEq)]
enum Write {
    /// PUT: the body's override replaces the stored one.
    Replace,
    /// PATCH: the body's override is merged into the stored one.
    Patch,
}

/// A branch config's source: where it was pushed from.
fn valid_source(source: &Value) -> bool {
    match source["type"].as_str() {
        Some("pushed-from-github") => {
            ["owner", "repo", "branch", "commit_hash", "config_file_path"].iter().all(|k| source[*k].is_string())
        }
        Some("pushed-from-unknown" | "unlinked") => source.as_object().is_some_and(|o| o.len() == 1),
        _ => false,
    }
}

async fn write_override(ctx: &Context, req: &Request, level: &str, write: Write) -> ApiResult<Response> {
    let (auth, level) = level_access(ctx, req, level).await?;
    let body = parse_body(req)?;
    let mut v = Validator::new(req);
    let (field, known): (&str, &[&str]) = match write {
        Write::Replace => ("config_string", &["config_string", "source"]),
        Write::Patch => ("config_override_string", &["config_override_string"]),
    };
    let obj = v.body_object(&body, known);
    let text = v.string(obj, field, &format!("body.{field}"), true);
    let source = obj.and_then(|o| o.get("source")).filter(|s| !s.is_null()).cloned();
    v.finish()?;

    let Ok(mut override_) = serde_json::from_str::<Value>(&text.expect("validated")) else {
        return Err(ApiError::status(400, "Invalid config JSON"));
    };
    if let Value::Object(map) = &mut override_ {
        migrate(map);
    }
    if let Some(problem) = override_errors(level, &override_) {
        return Err(ApiError::status(400, problem.to_string()));
    }
    let override_ = override_.as_object().expect("checked: an object").clone();
    if write == Write::Replace && level == Level::Branch && source.is_none() {
        return Err(ApiError::status(400, "source is required for branch level config"));
    }
    if let Some(source) = &source {
        if level != Level::Branch || !valid_source(source) {
            return Err(ApiError::status(
                400,
                "source must be {type: \"pushed-from-github\", owner, repo, branch, commit_hash, config_file_path}, \
                 {type: \"pushed-from-unknown\"} or {type: \"unlinked\"}, and only for the branch level",
            ));
        }
    }

    let overrides = store::load(ctx, &auth.tenancy).await?;
    let new = match write {
        Write::Replace => override_,
        Write::Patch => merge(overrides.level(level), &override_),
    };
    if let Some(introduced) = introduced_warning(&overrides, level, &new) {
        return Err(ApiError::status(400, introduced.to_string()));
    }
    store::save(ctx, &auth.tenancy, level, &new, source.as_ref()).await?;
    Ok(success())
}

/// A warning the rendered config would have with `new` at `level` and does not have now.
fn introduced_warning(overrides: &store::Overrides, level: Level, new: &Map<String, Value>) -> Option<Problem> {
    let before = render(&overrides.up_to(Level::Environment)).warnings;
    let mut levels = overrides.up_to(Level::Environment);
    let index = match level {
        Level::Project => 0,
        Level::Branch => 1,
        Level::Environment => 2,
    };
    levels[index] = new;
    render(&levels).warnings.into_iter().find(|w| !before.contains(w))
}

/// Removes `key` and every key under it, in dotted and nested form.
fn remove_key(map: &mut Map<String, Value>, key: &str) {
    map.retain(|k, _| k != key && !k.starts_with(&format!("{key}.")));
    for (k, value) in map.iter_mut() {
        if let (Some(rest), Value::Object(inner)) = (key.strip_prefix(&format!("{k}.")), value) {
            remove_key(inner, rest);
        }
    }
}

/// `POST /internal/config/override/{level}/reset-keys` (admin; branch or environment).
async fn reset_keys(ctx: &Context, req: &Request, level: &str) -> ApiResult<Response> {
    let auth = authenticate(ctx, req, AuthRule::allow(ADMIN_ONLY)).await?;
    let Some(level @ (Level::Branch | Level::Environment)) = Level::parse(level) else {
        let mut v = Validator::new(req);
        v.fail("params.level must be one of the following values: branch, environment".into());
        v.finish()?;
        unreachable!("a failed validation is an error");
    };
    let body = parse_body(req)?;
    let mut v = Validator::new(req);
    let obj = v.body_object(&body, &["keys"]);
    let keys = match obj.and_then(|o| o.get("keys")) {
        Some(Value::Array(items)) if items.iter().all(Value::is_string) => {
            items.iter().filter_map(Value::as_str).map(str::to_string).collect()
        }
        _ => {
            v.fail("body.keys must be an array of strings".into());
            Vec::new()
        }
    };
    v.finish()?;
    let overrides = store::load(ctx, &auth.tenancy).await?;
    let mut new = overrides.level(level).clone();
    for key in &keys {
        remove_key(&mut new, key);
    }
    store::save(ctx, &auth.tenancy, level, &new, None).await?;
    Ok(success())
}

async fn read_source(ctx: &Context, req: &Request) -> ApiResult<Response> {
    let auth = authenticate(ctx, req, AuthRule::allow(ADMIN_ONLY)).await?;
    let overrides = store::load(ctx, &auth.tenancy).await?;
    Ok(json(&json!({ "source": overrides.source })))
}

async fn unlink_source(ctx: &Context, req: &Request) -> ApiResult<Response> {
    let auth = authenticate(ctx, req, AuthRule::allow(ADMIN_ONLY)).await?;
    store::save_source(ctx, &auth.tenancy, &json!({ "type": "unlinked" })).await?;
    Ok(success())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reset_removes_dotted_and_nested_keys_and_their_children() {
        let mut map =
            json!({ "a.b": 1, "a.b.c": 2, "a.d": 3, "x": { "y": { "z": 1 }, "w": 2 } }).as_object().unwrap().clone();
        remove_key(&mut map, "a.b");
        remove_key(&mut map, "x.y");
        remove_key(&mut map, "nothing.here");
        assert_eq!(Value::Object(map), json!({ "a.d": 3, "x": { "w": 2 } }));
    }

    #[test]
    fn sources_are_one_of_three_shapes() {
        let github = json!({ "type": "pushed-from-github", "owner": "o", "repo": "r", "branch": "main",
                              "commit_hash": "abc", "config_file_path": "stack.config.ts" });
        assert!(valid_source(&github));
        assert!(valid_source(&json!({ "type": "pushed-from-unknown" })));
        assert!(valid_source(&json!({ "type": "unlinked" })));
        assert!(!valid_source(&json!({ "type": "pushed-from-github", "owner": "o" })));
        assert!(!valid_source(&json!({ "type": "from-a-floppy" })));
    }
}
