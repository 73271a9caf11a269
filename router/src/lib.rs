//! The one list of functions, and the router Worker that forwards over it.
//!
//! [`FUNCTIONS`] is the list every host walks: the native host serves them all from one route
//! table, the companion's scheduler fires their crons, and the tests below hold the Workers'
//! `wrangler.toml` files and `spin.toml` to it.
//!
//! The router Worker exists because `wrangler dev` sends every request to the first Worker it
//! runs, and a deployment wants one origin for the API: it owns the routes and forwards each
//! request, unchanged, to the function Worker that serves its path (service bindings). It
//! needs only the paths, which [`ROUTE_PATHS`] copies out of the list at compile time, so the
//! router's wasm links no handler.

use shared::function::{binding_of, route_count, route_paths, Function};

/// Every function, in the order the README lists them.
pub const FUNCTIONS: &[&Function] = &[
    &refresh::FUNCTION,
    &analytics_query::FUNCTION,
    &metrics::FUNCTION,
    &replays::FUNCTION,
    &config::FUNCTION,
    &emails::FUNCTION,
    &mcp::FUNCTION,
];

/// `(function name, route path)` of every route of every function.
pub const ROUTE_PATHS: [(&str, &str); route_count(FUNCTIONS)] = route_paths(FUNCTIONS);

/// The function that serves `path` (`/api/latest` counts as `/api/v1`).
pub fn function_for(path: &str) -> Option<&'static str> {
    static ROUTER: std::sync::OnceLock<matchit::Router<&'static str>> = std::sync::OnceLock::new();
    let router = ROUTER.get_or_init(|| {
        let mut router = matchit::Router::new();
        for (name, path) in ROUTE_PATHS {
            router.insert(path, name).expect("function routes do not overlap");
        }
        router
    });
    router.at(&shared::http::canonicalize(path)).ok().map(|matched| *matched.value)
}

/// The service binding (see `wrangler.toml`) of the function that serves `path`.
pub fn binding_for(path: &str) -> Option<String> {
    function_for(path).map(binding_of)
}

#[cfg(feature = "cloudflare")]
#[worker::event(fetch)]
async fn fetch(req: worker::Request, env: worker::Env, _ctx: worker::Context) -> worker::Result<worker::Response> {
    let path = req.path();
    if path == "/health" {
        return worker::Response::from_json(&std::collections::BTreeMap::from([("status", "ok")]));
    }
    match binding_for(&path) {
        Some(binding) => env.service(&binding)?.fetch_request(req).await,
        None => Ok(worker::Response::error("Not found", 404)?
            .with_headers(worker::Headers::from_iter([("content-type", "text/plain; charset=utf-8")]))),
    }
}

#[cfg(test)]
mod tests {
    use super::{binding_for, function_for, FUNCTIONS};

    #[test]
    fn routes_by_path() {
        assert_eq!(binding_for("/api/v1/auth/sessions/current/refresh").as_deref(), Some("REFRESH"));
        assert_eq!(binding_for("/api/latest/users/me").as_deref(), Some("REFRESH"));
        assert_eq!(binding_for("/api/v1/internal/analytics/query").as_deref(), Some("ANALYTICS_QUERY"));
        assert_eq!(binding_for("/api/v1/internal/analytics/query/timing").as_deref(), Some("ANALYTICS_QUERY"));
        assert_eq!(binding_for("/api/v1/nothing"), None);
    }

    /// The binding names the router derives are the ones `Function::binding` gives.
    #[test]
    fn bindings_agree_with_the_functions() {
        for function in FUNCTIONS {
            let path = sample_path(function.routes[0].path);
            assert_eq!(binding_for(&path), Some(function.binding()), "{path}");
        }
    }

    /// A concrete path for a route pattern: each `{param}` a value, a `{*rest}` two segments.
    fn sample_path(pattern: &str) -> String {
        pattern
            .split('/')
            .map(|segment| match segment {
                s if s.starts_with("{*") => "a/b",
                s if s.starts_with('{') => "6f1d2c9e-3b7a-4c61-9d8e-0a1b2c3d4e5f",
                s => s,
            })
            .collect::<Vec<_>>()
            .join("/")
    }

    /// Spin routes are exact, or a prefix when they end in `/...` (which also matches the
    /// bare prefix).
    fn spin_route_matches(route: &str, path: &str) -> bool {
        match route.strip_suffix("/...") {
            Some(prefix) => path == prefix || path.starts_with(&format!("{prefix}/")),
            None => route == path,
        }
    }

    /// The Spin manifest must send a path of every route of every function (and its
    /// `/api/latest` twin) to that function's component, and to no other.
    #[test]
    fn spin_manifest_routes_every_route_to_its_function() {
        let manifest: toml::Table = include_str!("../../spin.toml").parse().unwrap();
        let triggers = manifest["trigger"]["http"].as_array().unwrap();
        let routes: Vec<(&str, &str)> =
            triggers.iter().map(|t| (t["component"].as_str().unwrap(), t["route"].as_str().unwrap())).collect();
        for function in FUNCTIONS {
            for route in function.routes {
                let path = sample_path(route.path);
                assert_eq!(function_for(&path), Some(function.name), "{path} is served by {}", function.name);
                for path in [path.clone(), path.replace("/api/v1/", "/api/latest/")] {
                    let serving: Vec<&str> =
                        routes.iter().filter(|(_, r)| spin_route_matches(r, &path)).map(|(c, _)| *c).collect();
                    assert_eq!(serving, [function.name], "spin.toml routes {path}");
                }
            }
        }
    }

    /// Spin has no cron trigger: the companion's scheduler role fires each function's
    /// scheduled route, which the manifest must send to that function alone.
    #[test]
    fn spin_manifest_routes_each_scheduled_route_to_its_function() {
        let manifest: toml::Table = include_str!("../../spin.toml").parse().unwrap();
        let triggers = manifest["trigger"]["http"].as_array().unwrap();
        for function in FUNCTIONS {
            let Some(path) = function.scheduled_path() else { continue };
            let serving: Vec<&str> = triggers
                .iter()
                .filter(|t| spin_route_matches(t["route"].as_str().unwrap(), &path))
                .map(|t| t["component"].as_str().unwrap())
                .collect();
            assert_eq!(serving, [function.name], "spin.toml routes {path}");
        }
    }

    fn toml_file(path: &str) -> toml::Table {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(path);
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display())).parse().unwrap()
    }

    /// Each function's Worker declares exactly its crons as cron triggers.
    #[test]
    fn wrangler_cron_triggers_match_each_functions_crons() {
        for function in FUNCTIONS {
            let config = toml_file(&format!("functions/{}/wrangler.toml", function.name));
            let crons: Vec<&str> = config
                .get("triggers")
                .and_then(|t| t.get("crons"))
                .and_then(|c| c.as_array())
                .map(|crons| crons.iter().map(|c| c.as_str().unwrap()).collect())
                .unwrap_or_default();
            assert_eq!(crons, function.crons, "functions/{}/wrangler.toml [triggers]", function.name);
            assert_eq!(function.scheduled.is_some(), !function.crons.is_empty(), "{}: crons need work", function.name);
        }
    }

    /// The router Worker binds every function's Worker, and nothing else.
    #[test]
    fn router_binds_every_function() {
        let config = toml_file("wrangler.toml");
        let bound: Vec<(String, String)> = config["services"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| (s["binding"].as_str().unwrap().to_string(), s["service"].as_str().unwrap().to_string()))
            .collect();
        let expected: Vec<(String, String)> =
            FUNCTIONS.iter().map(|f| (f.binding(), format!("stack-edge-{}", f.name))).collect();
        assert_eq!(bound, expected);
    }

    /// The scripts build and lint the same functions, in the same order.
    #[test]
    fn the_scripts_list_the_same_functions() {
        let lib = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/lib.sh")).unwrap();
        let line = lib.lines().find_map(|l| l.strip_prefix("FUNCTIONS=(")).expect("scripts/lib.sh sets FUNCTIONS");
        let listed: Vec<&str> = line.trim_end_matches(')').split_whitespace().collect();
        let names: Vec<&str> = FUNCTIONS.iter().map(|f| f.name).collect();
        assert_eq!(listed, names);
    }
}
