//! What a function is: a value with a name, a route table whose entries carry their handlers,
//! and cron triggers with the scheduled work they run.
//!
//! Each function crate exports one `const FUNCTION: Function`; every host walks a list of them
//! (the native host and the cron scheduler all of them, a function's own Worker or component
//! just its own), builds one [`Routes`] table and matches each request once: path first (404),
//! then method (405), then the handler.
//!
//! A function with crons also answers `POST /api/v1/internal/scheduled/<name>?cron=...`
//! (`Authorization: Bearer <CRON_SECRET>`), which runs that cron's work now: the runtimes
//! without cron triggers (Spin, `wasmtime serve`) are driven through it by the companion's
//! scheduler role. The route comes from the function's `crons`, so adding a cron touches one
//! place.
//!
//! The key decision: a function is a `const`, not a `static`. The router Worker needs only
//! the paths, and a `const` lets it copy them out at compile time ([`Function::routes`] is plain
//! data a `const fn` can walk), so it links no handler code. A `static` would drag every
//! handler of every function into the router's wasm.

use std::future::Future;
use std::pin::Pin;

use crate::context::Context;
use crate::http::error::{ApiError, ApiResult};
use crate::http::{canonicalize, Request, Response};

/// A future that borrows the request it answers. Not `Send`: wasm runtimes are single-threaded.
pub type LocalBoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + 'a>>;

/// Answers a matched request.
pub type Handler = for<'a> fn(&'a Call<'a>) -> LocalBoxFuture<'a, ApiResult<Response>>;

/// Runs the scheduled work of one cron trigger.
pub type Scheduled = for<'a> fn(&'a str, &'a Context) -> LocalBoxFuture<'a, ()>;

/// What a function adds to `/health`: fields of the answer's object (`None`: nothing now).
pub type Health = for<'a> fn(&'a Context) -> LocalBoxFuture<'a, Option<(&'static str, serde_json::Value)>>;

/// A matched request, as a handler sees it.
pub struct Call<'a> {
    /// The handler's context.
    pub ctx: &'a Context,
    /// The request.
    pub req: &'a Request,
    params: Vec<(String, String)>,
}

impl Call<'_> {
    /// The value of the path parameter `name` (empty when the route has none of that name).
    pub fn param(&self, name: &str) -> &str {
        self.params.iter().find(|(key, _)| key == name).map(|(_, value)| value.as_str()).unwrap_or_default()
    }
}

/// One path of a function (matchit syntax: `{id}`, `{*rest}`) and a handler per method.
#[derive(Clone, Copy)]
pub struct Route {
    /// The path pattern (`matchit` syntax: `{name}` segments).
    pub path: &'static str,
    get: Option<Handler>,
    post: Option<Handler>,
    put: Option<Handler>,
    patch: Option<Handler>,
    delete: Option<Handler>,
    any: Option<Handler>,
}

impl Route {
    /// A route at `path` that answers no method yet (every method gets 405).
    pub const fn at(path: &'static str) -> Route {
        Route { path, get: None, post: None, put: None, patch: None, delete: None, any: None }
    }

    /// Answers GET with `handler`.
    pub const fn get(mut self, handler: Handler) -> Route {
        self.get = Some(handler);
        self
    }

    /// Answers POST with `handler`.
    pub const fn post(mut self, handler: Handler) -> Route {
        self.post = Some(handler);
        self
    }

    /// Answers PUT with `handler`.
    pub const fn put(mut self, handler: Handler) -> Route {
        self.put = Some(handler);
        self
    }

    /// Answers PATCH with `handler`.
    pub const fn patch(mut self, handler: Handler) -> Route {
        self.patch = Some(handler);
        self
    }

    /// Answers DELETE with `handler`.
    pub const fn delete(mut self, handler: Handler) -> Route {
        self.delete = Some(handler);
        self
    }

    /// Answers every method with `handler`.
    pub const fn any(mut self, handler: Handler) -> Route {
        self.any = Some(handler);
        self
    }

    fn handler(&self, method: &http::Method) -> Option<Handler> {
        let by_method = match *method {
            http::Method::GET => self.get,
            http::Method::POST => self.post,
            http::Method::PUT => self.put,
            http::Method::PATCH => self.patch,
            http::Method::DELETE => self.delete,
            _ => None,
        };
        by_method.or(self.any)
    }
}

/// A function: what one Worker or component serves.
pub struct Function {
    /// Its crate's and component's name (`analytics-query`); the router's service binding is
    /// the same in upper case with `_` (`ANALYTICS_QUERY`).
    pub name: &'static str,
    /// Its routes, each with its handlers.
    pub routes: &'static [Route],
    /// Its cron triggers (its `wrangler.toml` lists the same; a test keeps them equal).
    pub crons: &'static [&'static str],
    /// The work its crons run; `None` when it has no crons.
    pub scheduled: Option<Scheduled>,
    /// What it adds to `/health` (every host's `/health` asks each function it serves).
    pub health: Option<Health>,
}

impl Function {
    /// The router Worker's service binding for this function.
    pub fn binding(&self) -> String {
        binding_of(self.name)
    }

    /// The path of its scheduled route (docs/api.md §0), when it has crons.
    pub fn scheduled_path(&self) -> Option<String> {
        (!self.crons.is_empty()).then(|| format!("{SCHEDULED_PREFIX}{}", self.name))
    }

    /// `/health`'s answer from a host serving `functions`: `status` and each function's fields.
    pub async fn health_of(functions: &[&Function], ctx: &Context) -> serde_json::Value {
        let mut answer = serde_json::json!({ "status": "ok" });
        for health in functions.iter().filter_map(|f| f.health) {
            if let Some((name, value)) = health(ctx).await {
                answer[name] = value;
            }
        }
        answer
    }

    /// Runs the scheduled work of `cron`. False when this function has no such cron.
    pub async fn run_scheduled(&self, cron: &str, ctx: &Context) -> bool {
        match self.scheduled {
            Some(scheduled) if self.crons.contains(&cron) => {
                scheduled(cron, ctx).await;
                true
            }
            _ => false,
        }
    }
}

/// Where the functions' scheduled routes live: `<prefix><function name>`.
pub const SCHEDULED_PREFIX: &str = "/api/v1/internal/scheduled/";

/// The router Worker's service binding of the function named `name`: upper case, `_` for `-`.
pub fn binding_of(name: &str) -> String {
    name.to_uppercase().replace('-', "_")
}

/// The number of routes of `functions` (for sizing [`route_paths`]).
pub const fn route_count(functions: &[&Function]) -> usize {
    let (mut count, mut i) = (0, 0);
    while i < functions.len() {
        count += functions[i].routes.len();
        i += 1;
    }
    count
}

/// Every `(function name, route path)` of `functions`, computed at compile time, so that a
/// router that only forwards links no handler.
pub const fn route_paths<const N: usize>(functions: &[&Function]) -> [(&'static str, &'static str); N] {
    let mut paths = [("", ""); N];
    let (mut next, mut i) = (0, 0);
    while i < functions.len() {
        let mut j = 0;
        while j < functions[i].routes.len() {
            paths[next] = (functions[i].name, functions[i].routes[j].path);
            next += 1;
            j += 1;
        }
        i += 1;
    }
    assert!(next == N, "N is route_count(functions)");
    paths
}

/// The route table of a set of functions: one match per request.
pub struct Routes {
    router: matchit::Router<&'static Route>,
    functions: Vec<&'static Function>,
}

impl Routes {
    /// The table of `functions`. Panics when two routes overlap: that is a programming error
    /// the first request in any test would hit.
    pub fn new(functions: &[&'static Function]) -> Routes {
        let mut router = matchit::Router::new();
        for function in functions {
            for route in function.routes {
                if let Err(e) = router.insert(route.path, route) {
                    panic!("{} route {}: {e}", function.name, route.path);
                }
            }
        }
        Routes { router, functions: functions.to_vec() }
    }

    /// Whether some route matches `path` (`/api/latest` counts as `/api/v1`).
    pub fn serves(&self, path: &str) -> bool {
        self.router.at(&canonicalize(path)).is_ok()
    }

    /// Answers `req`: its route's handler, or 404 / 405, with errors rendered as responses.
    pub async fn handle(&self, req: Request, ctx: &Context) -> Response {
        match self.call(&req, ctx).await {
            Ok(response) => response,
            Err(e) => e.into_response(ctx.config.shows_internal_errors()),
        }
    }

    async fn call(&self, req: &Request, ctx: &Context) -> ApiResult<Response> {
        let path = canonicalize(req.uri().path());
        if let Some(name) = path.strip_prefix(SCHEDULED_PREFIX) {
            if let Some(function) = self.functions.iter().find(|f| f.name == name && !f.crons.is_empty()) {
                return run_scheduled_route(function, req, ctx).await;
            }
        }
        let Ok(matched) = self.router.at(&path) else {
            return Err(ApiError::status(404, "Not found"));
        };
        let Some(handler) = matched.value.handler(req.method()) else {
            return Err(ApiError::status(405, "Method not allowed"));
        };
        let params = matched.params.iter().map(|(key, value)| (key.to_string(), value.to_string())).collect();
        handler(&Call { ctx, req, params }).await
    }
}

/// `POST <SCHEDULED_PREFIX><name>?cron=...`: the cron's work, now, behind `CRON_SECRET` (fails
/// closed: 503 without one).
async fn run_scheduled_route(function: &Function, req: &Request, ctx: &Context) -> ApiResult<Response> {
    if req.method() != http::Method::POST {
        return Err(ApiError::status(405, "Method not allowed"));
    }
    let Some(secret) = &ctx.config.email.cron_secret else {
        return Err(ApiError::status(503, "The scheduled route is not configured (CRON_SECRET)."));
    };
    let given = crate::http::header(req, "authorization").unwrap_or_default();
    if !crate::identity::crypto::ct_eq(given, &format!("Bearer {secret}")) {
        return Err(ApiError::status(401, "Unauthorized"));
    }
    let cron = crate::http::query_param(req, "cron").ok_or_else(|| ApiError::status(400, "cron is required"))?;
    if function.run_scheduled(&cron, ctx).await {
        Ok(crate::http::json(&serde_json::json!({ "ok": true })))
    } else {
        Err(ApiError::status(404, format!("{} has no cron {cron:?}", function.name)))
    }
}

/// The runtime entries of a function crate, one line in its `lib.rs`:
/// `shared::function_entries!(crate::FUNCTION);`. With the crate's `cloudflare` feature it
/// defines a Worker's `fetch` and `scheduled` handlers, with `spin-wasi` or `spin` a wasi:http
/// handler; natively nothing (the native host walks the list of functions). The `cfg`s are the
/// function crate's own features: a macro's attributes are evaluated where it expands.
#[macro_export]
macro_rules! function_entries {
    ($function:path) => {
        /// This function's route table, built on first use.
        #[cfg(any(feature = "cloudflare", feature = "spin-wasi", feature = "spin"))]
        fn routes() -> &'static $crate::function::Routes {
            static ROUTES: ::std::sync::OnceLock<$crate::function::Routes> = ::std::sync::OnceLock::new();
            ROUTES.get_or_init(|| $crate::function::Routes::new(&[&$function]))
        }
        #[cfg(feature = "cloudflare")]
        $crate::__cloudflare_entries!($function);
        #[cfg(any(feature = "spin-wasi", feature = "spin"))]
        $crate::__spin_entries!($function);
    };
}
