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
        assert_eq!(super::binding_for("/api/v1/nothing"), None);
    }
}
