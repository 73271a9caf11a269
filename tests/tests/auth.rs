//! Request authentication (docs/api.md §0.2) and bad input: each refused request gets the
//! contract's code and status and changes nothing in the database.
//!
//! The cases run one after another in a single test against a host of their own, so the
//! whole-database snapshot taken around each is not disturbed by other tests.

use api_tests::{host, Call, Host, Project, UserSession};
use serde_json::json;

struct Case {
    name: &'static str,
    status: u16,
    code: &'static str,
    call: Box<dyn Fn(&Host) -> Call>,
}

fn case(name: &'static str, status: u16, code: &'static str, call: impl Fn(&Host) -> Call + 'static) -> Case {
    Case { name, status, code, call: Box::new(call) }
}

/// A request that would write (a new session) if it got through.
fn create_session(h: &Host, user: &str) -> Call {
    h.post("/api/v1/auth/sessions").json(&json!({ "user_id": user }))
}

fn cases(p: &Project, other: &Project, keyed: &Project, s: &UserSession, other_s: &UserSession) -> Vec<Case> {
    let (p, other, keyed, s, other_s) = (p.clone(), other.clone(), keyed.clone(), s.clone(), other_s.clone());
    let user = s.user_id.clone();
    let u = move || user.clone();
    vec![
        case("key without access type", 400, "PROJECT_KEY_WITHOUT_ACCESS_TYPE", {
            let (p, u) = (p.clone(), u.clone());
            move |h| {
                create_session(h, &u())
                    .header("x-stack-project-id", &p.id)
                    .header("x-stack-secret-server-key", &p.secret_server_key)
            }
        }),
        case("no access type", 400, "ACCESS_TYPE_REQUIRED", {
            let (p, u) = (p.clone(), u.clone());
            move |h| create_session(h, &u()).header("x-stack-project-id", &p.id)
        }),
        case("invalid access type", 400, "INVALID_ACCESS_TYPE", {
            let (p, u) = (p.clone(), u.clone());
            move |h| create_session(h, &u()).header("x-stack-project-id", &p.id).header("x-stack-access-type", "root")
        }),
        case("no project id", 400, "ACCESS_TYPE_WITHOUT_PROJECT_ID", {
            let u = u.clone();
            move |h| create_session(h, &u()).header("x-stack-access-type", "server")
        }),
        case("unparsable access token", 401, "UNPARSABLE_ACCESS_TOKEN", {
            let (p, u) = (p.clone(), u.clone());
            move |h| create_session(h, &u()).server(&p).access_token("not-a-jwt")
        }),
        case("access token of another project", 401, "INVALID_PROJECT_FOR_ACCESS_TOKEN", {
            let (p, u, t) = (p.clone(), u.clone(), other_s.access_token.clone());
            move |h| create_session(h, &u()).server(&p).access_token(&t)
        }),
        case("unknown project", 400, "CURRENT_PROJECT_NOT_FOUND", {
            let (p, u) = (p.clone(), u.clone());
            move |h| {
                create_session(h, &u())
                    .header("x-stack-access-type", "server")
                    .header("x-stack-project-id", "7d1a0c2e-0000-4000-8000-000000000000")
                    .header("x-stack-secret-server-key", &p.secret_server_key)
            }
        }),
        case("server without key", 401, "SERVER_AUTHENTICATION_REQUIRED", {
            let (p, u) = (p.clone(), u.clone());
            move |h| create_session(h, &u()).header("x-stack-access-type", "server").header("x-stack-project-id", &p.id)
        }),
        case("bad server key", 401, "INVALID_SECRET_SERVER_KEY", {
            let (p, u) = (p.clone(), u.clone());
            move |h| {
                create_session(h, &u())
                    .header("x-stack-access-type", "server")
                    .header("x-stack-project-id", &p.id)
                    .header("x-stack-secret-server-key", "ssk_wrong")
            }
        }),
        case("server key of another project", 401, "INVALID_SECRET_SERVER_KEY", {
            let (p, other, u) = (p.clone(), other.clone(), u.clone());
            move |h| {
                create_session(h, &u())
                    .header("x-stack-access-type", "server")
                    .header("x-stack-project-id", &p.id)
                    .header("x-stack-secret-server-key", &other.secret_server_key)
            }
        }),
        case("admin without key", 401, "ADMIN_AUTHENTICATION_REQUIRED", {
            let (p, u) = (p.clone(), u.clone());
            move |h| create_session(h, &u()).header("x-stack-access-type", "admin").header("x-stack-project-id", &p.id)
        }),
        case("bad admin key", 401, "INVALID_SUPER_SECRET_ADMIN_KEY", {
            let (p, u) = (p.clone(), u.clone());
            move |h| {
                create_session(h, &u())
                    .header("x-stack-access-type", "admin")
                    .header("x-stack-project-id", &p.id)
                    .header("x-stack-super-secret-admin-key", &p.secret_server_key)
            }
        }),
        case("bad client key", 401, "INVALID_PUBLISHABLE_CLIENT_KEY", {
            let (p, t) = (p.clone(), s.refresh_token.clone());
            move |h| {
                h.post("/api/v1/auth/sessions/current/refresh")
                    .header("x-stack-access-type", "client")
                    .header("x-stack-project-id", &p.id)
                    .header("x-stack-publishable-client-key", "pck_wrong")
                    .refresh_token(&t)
            }
        }),
        case("client without key where keys are required", 401, "PUBLISHABLE_CLIENT_KEY_REQUIRED_FOR_PROJECT", {
            let keyed = keyed.clone();
            move |h| {
                h.post("/api/v1/auth/sessions/current/refresh")
                    .header("x-stack-access-type", "client")
                    .header("x-stack-project-id", &keyed.id)
                    .refresh_token("whatever")
            }
        }),
        case("public sentinel where keys are required", 401, "PUBLISHABLE_CLIENT_KEY_REQUIRED_FOR_PROJECT", {
            let keyed = keyed.clone();
            move |h| {
                h.post("/api/v1/auth/sessions/current/refresh")
                    .header("x-stack-access-type", "client")
                    .header("x-stack-project-id", &keyed.id)
                    .header("x-stack-publishable-client-key", "__stack_public_client__")
                    .refresh_token("whatever")
            }
        }),
        case("unknown branch", 400, "BRANCH_DOES_NOT_EXIST", {
            let (p, u) = (p.clone(), u.clone());
            move |h| create_session(h, &u()).server(&p).header("x-stack-branch-id", "feature-x")
        }),
        case("client on a server endpoint", 401, "INSUFFICIENT_ACCESS_TYPE", {
            let (p, u) = (p.clone(), u.clone());
            move |h| create_session(h, &u()).client(&p)
        }),
        case("malformed JSON", 400, "BODY_PARSING_ERROR", {
            let p = p.clone();
            move |h| h.post("/api/v1/auth/sessions").server(&p).raw_body("application/json", "{\"user_id\": ")
        }),
        case("body of the wrong shape", 400, "SCHEMA_ERROR", {
            let p = p.clone();
            move |h| h.post("/api/v1/auth/sessions").server(&p).json(&json!(["not", "an", "object"]))
        }),
        case("user id that is not a UUID", 400, "SCHEMA_ERROR", {
            let p = p.clone();
            move |h| h.post("/api/v1/auth/sessions").server(&p).json(&json!({ "user_id": "123" }))
        }),
        case("unknown body field", 400, "SCHEMA_ERROR", {
            let (p, u) = (p.clone(), u.clone());
            move |h| h.post("/api/v1/auth/sessions").server(&p).json(&json!({ "user_id": u(), "admin": true }))
        }),
        case("negative lifetime", 400, "SCHEMA_ERROR", {
            let (p, u) = (p.clone(), u.clone());
            move |h| {
                h.post("/api/v1/auth/sessions").server(&p).json(&json!({ "user_id": u(), "expires_in_millis": -5 }))
            }
        }),
        case("invalid email on user create", 400, "SCHEMA_ERROR", {
            let p = p.clone();
            move |h| h.post("/api/v1/users").server(&p).json(&json!({ "primary_email": "not an email" }))
        }),
        case("project creation with a project admin key", 401, "EXPECTED_INTERNAL_PROJECT", {
            let p = p.clone();
            move |h| h.post("/api/v1/internal/projects").admin(&p).json(&json!({ "display_name": "x" }))
        }),
        case("project creation without a name", 400, "SCHEMA_ERROR", {
            move |h| {
                h.post("/api/v1/internal/projects")
                    .header("x-stack-access-type", "admin")
                    .header("x-stack-project-id", "internal")
                    .header("x-stack-super-secret-admin-key", &h.internal_admin_key)
                    .json(&json!({}))
            }
        }),
        case("anonymous token without the allow header", 401, "ANONYMOUS_AUTHENTICATION_NOT_ALLOWED", {
            let (p, u) = (p.clone(), u.clone());
            move |h| create_session(h, &u()).server(&p).access_token(&anonymous_token())
        }),
    ]
}

static ANONYMOUS: std::sync::OnceLock<String> = std::sync::OnceLock::new();
fn anonymous_token() -> String {
    ANONYMOUS.get().expect("set before the cases run").clone()
}

#[tokio::test]
async fn each_bad_request_is_a_clear_4xx_and_changes_nothing() {
    let own = Host::start(&[]);
    let h = &own;
    let p = h.create_project(false).await;
    let other = h.create_project(false).await;
    let keyed = h.create_project(true).await;
    let s = h.user_with_session(&p, json!({})).await;
    let other_s = h.user_with_session(&other, json!({})).await;
    let anon = h.user_with_session(&p, json!({ "is_anonymous": true })).await;
    ANONYMOUS.set(anon.access_token).unwrap();

    let all = cases(&p, &other, &keyed, &s, &other_s);
    assert!(all.len() >= 25);
    for c in all {
        let before = h.db_snapshot();
        let res = (c.call)(h).send().await;
        assert_eq!(res.status, c.status, "{}: {}", c.name, res.text);
        assert_eq!(res.header("x-stack-known-error"), Some(c.code), "{}: {}", c.name, res.text);
        assert_eq!(res.json()["code"], c.code, "{}", c.name);
        assert!(res.json()["error"].as_str().is_some_and(|e| !e.is_empty()), "{}", c.name);
        assert_eq!(h.db_snapshot(), before, "{} changed the database", c.name);
    }
}

#[tokio::test]
async fn messages_and_details_match_the_contract() {
    let h = host();
    let p = h.create_project(false).await;
    let res = h
        .get("/api/v1/auth/sessions?user_id=me")
        .header("x-stack-access-type", "Server")
        .header("x-stack-project-id", &p.id)
        .send()
        .await;
    let body = res.assert_known_error(400, "INVALID_ACCESS_TYPE");
    assert_eq!(
        body["error"],
        "The x-stack-access-type header must be 'client', 'server', or 'admin', but was 'Server'."
    );
    assert_eq!(body["details"], json!({ "accessType": "Server" }));

    let res = h.get("/api/v1/auth/sessions?user_id=me").header("x-stack-access-type", "admin").send().await;
    let body = res.assert_known_error(400, "ACCESS_TYPE_WITHOUT_PROJECT_ID");
    assert_eq!(body["details"], json!({ "request_type": "admin" }));

    let missing = "7d1a0c2e-0000-4000-8000-000000000000";
    let res = h
        .get("/api/v1/auth/sessions?user_id=me")
        .header("x-stack-access-type", "client")
        .header("x-stack-project-id", missing)
        .send()
        .await;
    let body = res.assert_known_error(400, "CURRENT_PROJECT_NOT_FOUND");
    assert_eq!(
        body["error"],
        format!("The current project with ID {missing} was not found. Please check the value of the x-stack-project-id header.")
    );

    let res = h.get("/api/v1/auth/sessions?user_id=me").server(&p).header("x-stack-branch-id", "dev").send().await;
    let body = res.assert_known_error(400, "BRANCH_DOES_NOT_EXIST");
    assert_eq!(body["details"], json!({ "branch_id": "dev" }));

    let res = h.post("/api/v1/auth/sessions").admin(&p).raw_body("application/json", "{").send().await;
    let body = res.assert_known_error(400, "BODY_PARSING_ERROR");
    assert_eq!(body["error"], "Invalid JSON in request body");

    // Header names are case-insensitive.
    let res = h
        .get("/api/v1/auth/sessions?user_id=me")
        .header("X-Stack-Access-Type", "server")
        .header("X-STACK-PROJECT-ID", &p.id)
        .header("x-stack-secret-SERVER-key", &p.secret_server_key)
        .send()
        .await;
    res.assert_known_error(400, "CANNOT_GET_OWN_USER_WITHOUT_USER");
}

#[tokio::test]
async fn a_restricted_user_needs_the_allow_header() {
    let h = host();
    let p = h.create_project(false).await;
    let s = h.user_with_session(&p, json!({ "restricted_by_admin": true })).await;
    let res = h.get("/api/v1/users/me").client(&p).access_token(&s.access_token).send().await;
    let body = res.assert_known_error(403, "RESTRICTED_USER_NOT_ALLOWED");
    assert_eq!(body["details"], json!({ "restricted_reason": { "type": "restricted_by_administrator" } }));
    let res = h
        .get("/api/v1/users/me")
        .client(&p)
        .access_token(&s.access_token)
        .header("x-stack-allow-restricted-user", "true")
        .send()
        .await;
    assert_eq!(res.status, 200, "{}", res.text);
    assert_eq!(res.json()["is_restricted"], true);
}

#[tokio::test]
async fn unknown_routes_and_methods_are_refused() {
    let h = host();
    let res = h.get("/api/v1/nothing-here").send().await;
    assert_eq!(res.status, 404);
    let res = h.request("PUT", "/api/v1/auth/sessions/current/refresh").send().await;
    assert_eq!(res.status, 405);
    let res = h.get("/health").send().await;
    assert_eq!(res.status, 200);
}
