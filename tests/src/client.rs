//! The HTTP client the suites speak through: a request builder with the project's keys and
//! tokens, and the answer with its status, headers and text.

use serde_json::Value;

thread_local! {
    /// One client per test thread: each `#[tokio::test]` has its own runtime, and pooled
    /// connections must not outlive the runtime that opened them.
    static CLIENT: reqwest::Client =
        reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().expect("HTTP client");
}

/// A project and its keys.
#[derive(Debug, Clone)]
pub struct Project {
    pub id: String,
    pub publishable_client_key: String,
    pub secret_server_key: String,
    pub super_secret_admin_key: String,
}

#[derive(Debug, Clone)]
pub struct UserSession {
    pub user_id: String,
    pub refresh_token: String,
    pub access_token: String,
}

/// A request being built.
pub struct Call {
    builder: reqwest::RequestBuilder,
}

impl Call {
    /// A request on this thread's client.
    pub(crate) fn new(method: reqwest::Method, url: String) -> Call {
        Call { builder: CLIENT.with(|c| c.request(method, url)) }
    }
}

impl Call {
    pub fn header(self, name: &str, value: &str) -> Call {
        Call { builder: self.builder.header(name, value) }
    }
    pub fn json(self, body: &Value) -> Call {
        Call { builder: self.builder.json(body) }
    }
    pub fn raw_body(self, content_type: &str, body: &str) -> Call {
        Call { builder: self.builder.header("content-type", content_type).body(body.to_string()) }
    }
    pub fn client(self, p: &Project) -> Call {
        self.header("x-stack-access-type", "client")
            .header("x-stack-project-id", &p.id)
            .header("x-stack-publishable-client-key", &p.publishable_client_key)
    }
    pub fn server(self, p: &Project) -> Call {
        self.header("x-stack-access-type", "server")
            .header("x-stack-project-id", &p.id)
            .header("x-stack-secret-server-key", &p.secret_server_key)
    }
    pub fn admin(self, p: &Project) -> Call {
        self.header("x-stack-access-type", "admin")
            .header("x-stack-project-id", &p.id)
            .header("x-stack-super-secret-admin-key", &p.super_secret_admin_key)
    }
    pub fn access_token(self, token: &str) -> Call {
        self.header("x-stack-access-token", token)
    }
    pub fn refresh_token(self, token: &str) -> Call {
        self.header("x-stack-refresh-token", token)
    }
    pub async fn send(self) -> Res {
        let response = self.builder.send().await.expect("request reaches the host");
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let text = response.text().await.expect("read body");
        Res { status, headers, text }
    }
}

/// A received response.
#[derive(Debug)]
pub struct Res {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub text: String,
}

impl Res {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text))
    }
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
    /// Asserts a KnownError response: status, code in body and header; returns the body.
    pub fn assert_known_error(&self, status: u16, code: &str) -> Value {
        assert_eq!(self.status, status, "expected {status} {code}, got: {}", self.text);
        assert_eq!(self.header("x-stack-known-error"), Some(code), "header of {}", self.text);
        let body = self.json();
        assert_eq!(body["code"], code);
        body
    }
}
