//! Property tests of config rendering (bounded by case count; they run in CI): rendering is
//! deterministic, an override that is stored (JSON text) and read back renders identically, and
//! applying overrides is associative, so levels can be merged in any grouping.

use proptest::prelude::*;
use proptest::test_runner::Config;
use serde_json::{json, Map, Value};
use shared::config::{merge, render};

/// Keys from the schema and around it: dotted, nested parents, record entries, unknown keys.
const KEYS: &[&str] = &[
    "teams.allowClientTeamCreation",
    "teams",
    "users.allowClientUserDeletion",
    "payments.blockNewPurchases",
    "payments.testMode",
    "payments.productLines.line",
    "payments.productLines.line.customerType",
    "payments.products.p",
    "payments.products.p.productLineId",
    "payments.products.p.customerType",
    "payments.products.q.displayName",
    "payments",
    "domains.allowLocalhost",
    "domains.trustedDomains.t.baseUrl",
    "apps.installed.analytics.enabled",
    "unknownKey",
];

fn value() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(json!(true)),
        Just(json!(false)),
        Just(json!("team")),
        Just(json!("user")),
        Just(json!("line")),
        Just(json!(null)),
        Just(json!({})),
        Just(json!({ "customerType": "team" })),
        Just(json!({ "productLineId": "line", "customerType": "user" })),
        Just(json!({ "allowClientTeamCreation": true })),
    ]
}

fn override_() -> impl Strategy<Value = Map<String, Value>> {
    prop::collection::btree_map(prop::sample::select(KEYS.to_vec()), value(), 0..6)
        .prop_map(|m| m.into_iter().map(|(k, v)| (k.to_string(), v)).collect())
}

proptest! {
    #![proptest_config(Config { cases: 2000, failure_persistence: None, ..Config::default() })]

    #[test]
    fn rendering_is_deterministic_and_survives_storage(p in override_(), b in override_(), e in override_()) {
        let first = render(&[&p, &b, &e]);
        let again = render(&[&p, &b, &e]);
        prop_assert_eq!(&first.config, &again.config);
        prop_assert_eq!(&first.warnings, &again.warnings);
        // Stored as JSON text and read back, as the store does.
        let stored = |m: &Map<String, Value>| -> Map<String, Value> {
            serde_json::from_str(&Value::Object(m.clone()).to_string()).unwrap()
        };
        let (p2, b2, e2) = (stored(&p), stored(&b), stored(&e));
        let read_back = render(&[&p2, &b2, &e2]);
        prop_assert_eq!(&first.config, &read_back.config);
    }

    #[test]
    fn applying_overrides_is_associative(a in override_(), b in override_(), c in override_()) {
        prop_assert_eq!(merge(&a, &merge(&b, &c)), merge(&merge(&a, &b), &c));
    }
}
