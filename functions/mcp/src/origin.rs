//! Who may reach the MCP endpoint (docs/api.md §8.2): DNS-rebinding protection, as the
//! Streamable HTTP transport requires. A page on `evil.example` whose name resolves to this
//! server makes the browser send `Host: evil.example` and `Origin: http://evil.example`; both
//! are refused with 403 before anything runs.
//!
//! The key decision: what is allowed is derived from what the deployment already says about
//! itself (`NEXT_PUBLIC_STACK_API_URL`), plus the local forms (`localhost`, `127.0.0.1`, `[::1]`,
//! any port) a rebinding page can never make a browser send, plus the origins an operator names
//! in `STACK_MCP_ALLOWED_ORIGINS`. A request without `Origin` is not from a browser page and
//! needs only a good `Host`.

use shared::context::Config;
use shared::http::{header, Request};

/// Why a request is refused, when it is.
pub fn refusal(config: &Config, req: &Request) -> Option<String> {
    // A browser always sends Host; a request without one (wasi:http keeps the authority apart
    // from the headers) cannot be a rebinding page's, and is judged by its Origin alone.
    let host = header(req, "host").map(str::to_string).or_else(|| req.uri().authority().map(ToString::to_string));
    if let Some(host) = host.filter(|h| !host_allowed(config, h)) {
        return Some(format!("Forbidden: Host {host:?} is not this server"));
    }
    let origin = header(req, "origin")?;
    (!origin_allowed(config, origin)).then(|| format!("Forbidden: Origin {origin:?} is not allowed"))
}

fn host_allowed(config: &Config, host: &str) -> bool {
    let host = host.trim().to_ascii_lowercase();
    is_local(&host)
        || origin_of(&config.api_url).is_some_and(|own| authority(&own) == host)
        || config.ai.mcp_allowed_origins.iter().filter_map(|o| origin_of(o)).any(|o| authority(&o) == host)
}

fn origin_allowed(config: &Config, origin: &str) -> bool {
    let Some(origin) = origin_of(origin) else { return false }; // "null" and other opaque origins
    is_local(authority(&origin))
        || origin_of(&config.api_url).as_ref() == Some(&origin)
        || config.ai.mcp_allowed_origins.iter().any(|o| origin_of(o).as_ref() == Some(&origin))
}

/// `scheme://host[:port]` of an `http(s)` URL, lower case.
fn origin_of(url: &str) -> Option<String> {
    let url = url.trim().to_ascii_lowercase();
    let (scheme, rest) = url.split_once("://")?;
    let authority = rest.split(['/', '?', '#']).next()?;
    let plain = !authority.is_empty() && !authority.contains('@');
    (matches!(scheme, "http" | "https") && plain).then(|| format!("{scheme}://{authority}"))
}

fn authority(origin: &str) -> &str {
    origin.split_once("://").map_or(origin, |(_, a)| a)
}

/// `localhost`, `127.0.0.1` or `[::1]`, with or without a port.
fn is_local(authority: &str) -> bool {
    let (host, port) = match authority.strip_prefix('[') {
        Some(v6) => match v6.split_once(']') {
            Some(("::1", rest)) => ("[::1]", rest.strip_prefix(':')),
            _ => return false,
        },
        None => match authority.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        },
    };
    port.is_none_or(|p| p.parse::<u16>().is_ok()) && matches!(host, "localhost" | "127.0.0.1" | "[::1]")
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Env(Vec<(&'static str, String)>);
    impl shared::store::ports::ConfigSource for Env {
        fn get(&self, key: &str) -> Option<String> {
            self.0.iter().find(|(k, _)| *k == key).map(|(_, v)| v.clone())
        }
    }

    fn config(api_url: &str, allowed: &str) -> Config {
        let env = Env(vec![
            ("STACK_SERVER_SECRET", "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LXNlY3JldA".into()),
            ("STACK_ENVIRONMENT", "test".into()),
            ("NEXT_PUBLIC_STACK_API_URL", api_url.into()),
            ("STACK_MCP_ALLOWED_ORIGINS", allowed.into()),
        ]);
        Config::load(&env).unwrap()
    }

    fn request(host: &str, origin: Option<&str>) -> Request {
        let mut builder = http::Request::builder().method("POST").uri("/api/internal/mcp").header("host", host);
        if let Some(origin) = origin {
            builder = builder.header("origin", origin);
        }
        builder.body(Vec::new()).unwrap()
    }

    #[test]
    fn rebinding_pages_are_refused_and_the_deployments_own_names_pass() {
        let c = config("https://api.example.com", "https://dashboard.example.org, https://other.example.org");
        for (host, origin) in [
            ("evil.example", None),
            ("evil.example", Some("http://evil.example")),
            ("api.example.com", Some("http://evil.example")),
            ("api.example.com", Some("null")),
            ("api.example.com", Some("http://api.example.com")), // another scheme is another origin
            ("localhost.evil.example", None),
            ("127.0.0.1.evil.example:80", None),
        ] {
            assert!(refusal(&c, &request(host, origin)).is_some(), "{host} {origin:?}");
        }
        for (host, origin) in [
            ("api.example.com", None),
            ("API.example.com", Some("https://api.example.com")),
            ("api.example.com", Some("https://dashboard.example.org")),
            ("dashboard.example.org", None),
            ("localhost:3000", Some("http://localhost:5173")),
            ("127.0.0.1:8080", Some("http://127.0.0.1:8080")),
            ("[::1]:8080", Some("http://[::1]:9")),
        ] {
            assert_eq!(refusal(&c, &request(host, origin)), None, "{host} {origin:?}");
        }
    }
}
