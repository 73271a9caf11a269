//! The preview dummy payments setup (upstream's `buildDummyPaymentsSetup`, fixed as the seed PR
//! fixes it): the products and items of the team-scoped product lines are team-scoped too.
//! `companion seed-demo` writes it to a project's branch and environment overrides.

use serde_json::{json, Value};

/// The branch override: product lines, products with prices and included items, and items.
pub fn payments_branch_override() -> Value {
    json!({
        "payments": {
            "blockNewPurchases": false,
            "productLines": {
                "workspace": { "displayName": "Workspace plans", "customerType": "team" },
                "add_ons": { "displayName": "Add-ons", "customerType": "team" }
            },
            "products": {
                "starter": {
                    "displayName": "Starter",
                    "productLineId": "workspace",
                    "customerType": "team",
                    "prices": { "monthly": { "USD": "19", "EUR": "18", "interval": [1, "month"] } },
                    "includedItems": { "seats": { "quantity": 3, "repeat": "never", "expires": "when-purchase-expires" } }
                },
                "growth": {
                    "displayName": "Growth",
                    "productLineId": "workspace",
                    "customerType": "team",
                    "freeTrial": [14, "day"],
                    "prices": { "monthly": { "USD": "49", "interval": [1, "month"] }, "yearly": { "USD": "490", "interval": [1, "year"] } },
                    "includedItems": {
                        "seats": { "quantity": 10, "repeat": "never", "expires": "when-purchase-expires" },
                        "api_credits": { "quantity": 10000, "repeat": [1, "month"], "expires": "when-repeated" }
                    }
                },
                "regression-addon": {
                    "displayName": "Regression add-on",
                    "productLineId": "add_ons",
                    "customerType": "team",
                    "isAddOnTo": { "starter": true, "growth": true },
                    "stackable": true,
                    "prices": { "monthly": { "USD": "5", "interval": [1, "month"] } },
                    "includedItems": { "api_credits": { "quantity": 1000, "repeat": "never", "expires": "never" } }
                }
            },
            "items": {
                "seats": { "displayName": "Seats", "customerType": "team" },
                "api_credits": { "displayName": "API credits", "customerType": "team" }
            }
        }
    })
}

/// The environment override the seed writes with it.
pub fn payments_environment_override() -> Value {
    json!({ "payments.testMode": true })
}

/// Where the seeded branch config says it came from.
pub fn seed_source() -> Value {
    json!({ "type": "pushed-from-github", "owner": "stack-auth", "repo": "demo", "branch": "main",
            "commit_hash": "0000000000000000000000000000000000000000", "config_file_path": "stack.config.ts" })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::schema::Level;
    use crate::config::{override_errors, render};

    /// The seed PR's regression: the seeded overrides have no errors, and the rendered config
    /// (with an environment override on top) has no warnings.
    #[test]
    fn the_demo_payments_config_is_clean() {
        let branch = payments_branch_override();
        let env = payments_environment_override();
        assert_eq!(override_errors(Level::Branch, &branch), None);
        assert_eq!(override_errors(Level::Environment, &env), None);
        let rendered = render(&[&Default::default(), branch.as_object().unwrap(), env.as_object().unwrap()]);
        assert_eq!(rendered.warnings, vec![]);
        assert_eq!(rendered.config["payments"]["products"]["starter"]["customerType"], "team");
        assert_eq!(rendered.config["payments"]["testMode"], true);
    }

    /// And the check that protects it: upstream's inconsistent seed is warned about.
    #[test]
    fn the_old_inconsistent_seed_would_be_warned_about() {
        let mut branch = payments_branch_override();
        branch["payments"]["products"]["starter"]["customerType"] = json!("user");
        let rendered = render(&[branch.as_object().unwrap()]);
        assert_eq!(rendered.warnings.len(), 1);
        assert!(rendered.warnings[0].to_string().contains("Product \"starter\" has customer type \"user\""));
    }
}
