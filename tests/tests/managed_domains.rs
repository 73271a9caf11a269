//! Managed email domains (docs/api.md §5.7, mock mode): setup, verification about a
//! second later, check, list, apply writing the email server into the config, and exactly one
//! applied domain per project, also under 20 concurrent applies.

use api_tests::{Host, Project};
use serde_json::{json, Value};

const BASE: &str = "/api/v1/internal/emails/managed-onboarding";

async fn post(h: &Host, p: &Project, action: &str, body: Value) -> api_tests::Res {
    h.post(&format!("{BASE}/{action}")).admin(p).json(&body).send().await
}

async fn email_server(h: &Host, p: &Project) -> Value {
    let res = h.get("/api/v1/internal/config").admin(p).send().await;
    let config: Value = serde_json::from_str(res.json()["config_string"].as_str().unwrap()).unwrap();
    config["emails"]["server"].clone()
}

async fn applied(h: &Host, p: &Project) -> Vec<String> {
    let list = h.get(&format!("{BASE}/list")).admin(p).send().await.json();
    list["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["status"] == "applied")
        .map(|i| i["subdomain"].as_str().unwrap().to_string())
        .collect()
}

async fn verified_domain(h: &Host, p: &Project, subdomain: &str) -> String {
    let res = post(h, p, "setup", json!({ "subdomain": subdomain, "sender_local_part": "noreply" })).await;
    assert_eq!(res.status, 200, "{}", res.text);
    let body = res.json();
    assert_eq!(body["status"], "pending_verification");
    tokio::time::sleep(std::time::Duration::from_millis(1_200)).await;
    body["domain_id"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn setup_verify_and_apply_a_managed_domain() {
    let h = Host::start(&[]);
    let p = h.create_project(false).await;
    let res = h
        .post(&format!("{BASE}/setup"))
        .client(&p)
        .json(&json!({ "subdomain": "mail.example.com", "sender_local_part": "noreply" }))
        .send()
        .await;
    let body = res.assert_known_error(401, "INSUFFICIENT_ACCESS_TYPE");
    assert_eq!(body["details"]["allowed_access_types"], json!(["admin"]));

    for (body, status, text) in [
        (
            json!({ "subdomain": "localhost", "sender_local_part": "noreply" }),
            400,
            "subdomain must be a fully-qualified domain name like mail.example.com",
        ),
        (
            json!({ "subdomain": "mail.example.com", "sender_local_part": "no reply" }),
            400,
            "sender_local_part is invalid",
        ),
    ] {
        let res = post(&h, &p, "setup", body).await;
        assert_eq!((res.status, res.text.as_str()), (status, text));
    }

    let res =
        post(&h, &p, "setup", json!({ "subdomain": " Mail.Example.com. ", "sender_local_part": "noreply" })).await;
    assert_eq!(res.status, 200, "{}", res.text);
    let setup = res.json();
    let domain_id = setup["domain_id"].as_str().unwrap().to_string();
    assert_eq!((&setup["subdomain"], &setup["status"]), (&json!("mail.example.com"), &json!("pending_verification")));
    assert_eq!(setup["name_server_records"], json!(["ns1.dnsimple.com", "ns2.dnsimple.com"]));
    // Idempotent; a different local part conflicts.
    let again =
        post(&h, &p, "setup", json!({ "subdomain": "mail.example.com", "sender_local_part": "noreply" })).await.json();
    assert_eq!(again["domain_id"], setup["domain_id"]);
    let res = post(&h, &p, "setup", json!({ "subdomain": "mail.example.com", "sender_local_part": "hello" })).await;
    assert_eq!(
        (res.status, res.text.as_str()),
        (409, "This subdomain is already tracked with a different sender local part")
    );
    let res = post(&h, &p, "apply", json!({ "domain_id": domain_id })).await;
    assert_eq!((res.status, res.text.as_str()), (409, "Managed domain is not verified yet"));

    tokio::time::sleep(std::time::Duration::from_millis(1_200)).await;
    let list = h.get(&format!("{BASE}/list")).admin(&p).send().await.json();
    assert_eq!(list["items"].as_array().unwrap().len(), 1);
    assert_eq!(list["items"][0]["status"], "verified");
    let check = post(
        &h,
        &p,
        "check",
        json!({ "domain_id": domain_id, "subdomain": "mail.example.com", "sender_local_part": "noreply" }),
    )
    .await;
    assert_eq!(check.json(), json!({ "status": "verified" }));
    let res = post(
        &h,
        &p,
        "check",
        json!({ "domain_id": domain_id, "subdomain": "other.example.com", "sender_local_part": "noreply" }),
    )
    .await;
    assert_eq!((res.status, res.text.as_str()), (404, "Managed domain setup not found for this project/branch"));
    assert_ne!(email_server(&h, &p).await["provider"], "managed", "not applied yet");

    let res = post(&h, &p, "apply", json!({ "domain_id": domain_id })).await;
    assert_eq!(res.json(), json!({ "status": "applied" }));
    let server = email_server(&h, &p).await;
    assert_eq!(
        (
            &server["isShared"],
            &server["provider"],
            &server["managedSubdomain"],
            &server["managedSenderLocalPart"],
            &server["senderEmail"]
        ),
        (
            &json!(false),
            &json!("managed"),
            &json!("mail.example.com"),
            &json!("noreply"),
            &json!("noreply@mail.example.com")
        )
    );
    assert!(server["password"].as_str().unwrap().starts_with("managed_mock_key_"));
    assert_eq!(post(&h, &p, "apply", json!({ "domain_id": domain_id })).await.json(), json!({ "status": "applied" }));
    let res = post(&h, &p, "apply", json!({ "domain_id": "managed_mock_nope" })).await;
    assert_eq!((res.status, res.text.as_str()), (404, "Managed domain not found for this project/branch"));
}

#[tokio::test]
async fn exactly_one_domain_is_applied_even_under_concurrent_applies() {
    let h = Host::start(&[]);
    let p = h.create_project(false).await;
    let a = verified_domain(&h, &p, "a.example.com").await;
    let b = verified_domain(&h, &p, "b.example.com").await;
    assert_eq!(post(&h, &p, "apply", json!({ "domain_id": a })).await.status, 200);
    assert_eq!(post(&h, &p, "apply", json!({ "domain_id": b })).await.status, 200);
    assert_eq!(applied(&h, &p).await, ["b.example.com"], "applying B demotes A");
    assert_eq!(email_server(&h, &p).await["managedSubdomain"], "b.example.com");

    let calls = (0..20).map(|i| {
        let id = if i % 2 == 0 { a.clone() } else { b.clone() };
        let call = h.post(&format!("{BASE}/apply")).admin(&p).json(&json!({ "domain_id": id }));
        async move { call.send().await.status }
    });
    for status in futures::future::join_all(calls).await {
        assert_eq!(status, 200);
    }
    let winners = applied(&h, &p).await;
    assert_eq!(winners.len(), 1, "{winners:?}");
    assert_eq!(
        email_server(&h, &p).await["managedSubdomain"],
        winners[0].as_str(),
        "the config names the applied domain"
    );
}
