//! The router Worker. `wrangler dev` sends every request to the first Worker it runs, and a
//! deployment wants one origin for the API, so this Worker owns the routes and forwards each
//! request, unchanged, to the function Worker that serves its path (service bindings). The
//! native host does the same dispatch in-process (`companion/src/host.rs`).

/// The service binding (see `wrangler.toml`) of the function that serves `path`.
pub fn binding_for(path: &str) -> Option<&'static str> {
    if refresh::serves(path) {
        return Some("REFRESH");
    }
    if analytics_query::serves(path) {
        return Some("ANALYTICS_QUERY");
    }
    if metrics::serves(path) {
        return Some("METRICS");
    }
    if replays::serves(path) {
        return Some("REPLAYS");
    }
    if config::serves(path) {
        return Some("CONFIG");
    }
    if emails::serves(path) {
        return Some("EMAILS");
    }
    if mcp::serves(path) {
        return Some("MCP");
    }
    None
}

#[cfg(feature = "cloudflare")]
#[worker::event(fetch)]
async fn fetch(req: worker::Request, env: worker::Env, _ctx: worker::Context) -> worker::Result<worker::Response> {
    let path = req.path();
    if path == "/health" {
        return worker::Response::from_json(&serde_json_health());
    }
    match binding_for(&path) {
        Some(binding) => env.service(binding)?.fetch_request(req).await,
        None => Ok(worker::Response::error("Not found", 404)?
            .with_headers(worker::Headers::from_iter([("content-type", "text/plain; charset=utf-8")]))),
    }
}

#[cfg(feature = "cloudflare")]
fn serde_json_health() -> std::collections::BTreeMap<&'static str, &'static str> {
    std::collections::BTreeMap::from([("status", "ok")])
}

#[cfg(test)]
mod tests {
    #[test]
    fn routes_by_path() {
        assert_eq!(super::binding_for("/api/v1/auth/sessions/current/refresh"), Some("REFRESH"));
        assert_eq!(super::binding_for("/api/latest/users/me"), Some("REFRESH"));
        assert_eq!(super::binding_for("/api/v1/internal/analytics/query"), Some("ANALYTICS_QUERY"));
        assert_eq!(super::binding_for("/api/v1/internal/analytics/query/timing"), Some("ANALYTICS_QUERY"));
        assert_eq!(super::binding_for("/api/v1/nothing"), None);
    }

    /// One path of every route of every function, by its Spin component name.
    const SAMPLE_PATHS: &[(&str, &str)] = &[
        ("refresh", "/api/v1/auth/sessions"),
        ("refresh", "/api/v1/auth/sessions/current"),
        ("refresh", "/api/v1/auth/sessions/current/refresh"),
        ("refresh", "/api/v1/auth/sessions/6f1d2c9e-3b7a-4c61-9d8e-0a1b2c3d4e5f"),
        ("refresh", "/api/v1/auth/oauth/token"),
        ("refresh", "/api/v1/projects/p/.well-known/jwks.json"),
        ("refresh", "/api/v1/projects-anonymous-users/p/.well-known/jwks.json"),
        ("refresh", "/api/v1/users"),
        ("refresh", "/api/v1/users/me"),
        ("refresh", "/api/v1/internal/projects"),
        ("refresh", "/api/v1/internal/projects/p/key-sets"),
        ("analytics-query", "/api/v1/internal/analytics/query"),
        ("analytics-query", "/api/v1/internal/analytics/query/timing"),
        ("metrics", "/api/v1/internal/metrics"),
        ("replays", "/api/v1/session-replays/batch"),
        ("replays", "/api/v1/internal/session-replays"),
        ("replays", "/api/v1/internal/session-replays/6f1d2c9e-3b7a-4c61-9d8e-0a1b2c3d4e5f/chunks/c/events"),
        ("refresh", "/api/v1/auth/oauth/authorize/google"),
        ("refresh", "/api/v1/connected-accounts/me/google/access-token"),
        ("refresh", "/api/v1/connected-accounts/me/google/123/access-token"),
        ("config", "/api/v1/internal/config"),
        ("config", "/api/v1/internal/config/override/branch"),
        ("config", "/api/v1/internal/config/override/environment/reset-keys"),
        ("config", "/api/v1/internal/config/source"),
        ("emails", "/api/v1/emails/outbox"),
        ("emails", "/api/v1/emails/outbox/6f1d2c9e-3b7a-4c61-9d8e-0a1b2c3d4e5f"),
        ("emails", "/api/v1/emails/delivery-info"),
        ("emails", "/api/v1/emails/capacity-boost"),
        ("emails", "/api/v1/emails/notification-preference/me/4f6f8873-3d04-46bd-8bef-18338b1a1b4c"),
        ("emails", "/api/v1/emails/unsubscribe-link"),
        ("emails", "/api/v1/emails/send-email"),
        ("emails", "/api/v1/internal/emails/managed-onboarding/apply"),
        ("mcp", "/api/internal/mcp"),
        ("mcp", "/api/v1/ai/query/generate"),
        ("mcp", "/api/v1/ai/init-prompt"),
        ("mcp", "/api/v1/integrations/ai-proxy/v1/chat/completions"),
    ];

    /// Spin routes are exact, or a prefix when they end in `/...` (which also matches the
    /// bare prefix).
    fn spin_route_matches(route: &str, path: &str) -> bool {
        match route.strip_suffix("/...") {
            Some(prefix) => path == prefix || path.starts_with(&format!("{prefix}/")),
            None => route == path,
        }
    }

    /// The Spin manifest must send each path (and its `/api/latest` twin) to the component of
    /// the function that serves it here, and to no other.
    #[test]
    fn spin_manifest_routes_every_path_to_its_function() {
        let manifest: toml::Table = include_str!("../../spin.toml").parse().unwrap();
        let triggers = manifest["trigger"]["http"].as_array().unwrap();
        let routes: Vec<(&str, &str)> =
            triggers.iter().map(|t| (t["component"].as_str().unwrap(), t["route"].as_str().unwrap())).collect();
        for (component, path) in SAMPLE_PATHS {
            let binding = component.to_uppercase().replace('-', "_");
            assert_eq!(super::binding_for(path), Some(binding.as_str()), "{path} is served by {component}");
            for path in [path.to_string(), path.replace("/api/v1/", "/api/latest/")] {
                let serving: Vec<&str> =
                    routes.iter().filter(|(_, r)| spin_route_matches(r, &path)).map(|(c, _)| *c).collect();
                assert_eq!(serving, [*component], "spin.toml routes {path}");
            }
        }
    }
}
