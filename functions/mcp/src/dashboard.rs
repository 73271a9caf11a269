//! The dashboard tools (docs/api.md §9.4). Both are client-side: the model's call is
//! returned to the dashboard, which applies it. `updateDashboard` replaces the source;
//! `patchDashboard` applies literal find/replace edits in order with upstream's rules, here as
//! the reference implementation (clients and tests use [`apply_edits`]).

use serde_json::{json, Value};

pub fn update_dashboard_tool() -> Value {
    json!({ "type": "function", "function": {
        "name": "updateDashboard",
        "description": "Replace the whole dashboard source: JSX defining a React component `Dashboard` with no props, \
            run in a sandbox with React, Recharts, DashboardUI and stackServerApp as globals; no imports, exports or \
            require. Use it to create a dashboard or for large rewrites; prefer patchDashboard for changes under ~30%.",
        "parameters": { "type": "object", "additionalProperties": false, "required": ["content"],
            "properties": { "content": { "type": "string" } } }
    } })
}

pub fn patch_dashboard_tool() -> Value {
    json!({ "type": "function", "function": {
        "name": "patchDashboard",
        "description": "Edit the dashboard source with literal find/replace edits, applied in order (later edits see \
            earlier results). oldText must occur exactly once, or give occurrenceIndex (0-based) to pick one.",
        "parameters": { "type": "object", "additionalProperties": false, "required": ["edits"], "properties": {
            "edits": { "type": "array", "minItems": 1, "maxItems": 20, "items": {
                "type": "object", "additionalProperties": false, "required": ["oldText", "newText"], "properties": {
                    "oldText": { "type": "string", "minLength": 1 },
                    "newText": { "type": "string" },
                    "occurrenceIndex": { "type": "integer", "minimum": 0 } } } } } }
    } })
}

#[derive(Debug, Clone, PartialEq)]
pub struct Edit {
    pub old_text: String,
    pub new_text: String,
    pub occurrence_index: Option<usize>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Failure {
    pub index: usize,
    /// `not-found` or `ambiguous`.
    pub reason: &'static str,
    pub old_text_preview: String,
}

/// The first 80 characters with whitespace runs collapsed.
fn preview(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ").chars().take(80).collect()
}

/// Applies `edits` in order; failed edits are skipped and reported, the others still apply.
/// Returns the updated source and the failures.
pub fn apply_edits(source: &str, edits: &[Edit]) -> (String, Vec<Failure>) {
    let mut source = source.to_string();
    let mut failures = Vec::new();
    for (index, edit) in edits.iter().enumerate() {
        let fail = |reason| Failure { index, reason, old_text_preview: preview(&edit.old_text) };
        // Non-overlapping occurrences: the scan advances by the match length.
        let step = edit.old_text.len().max(1);
        let mut at = Vec::new();
        let mut from = 0;
        while let Some(found) = source.get(from..).and_then(|rest| rest.find(&edit.old_text)) {
            at.push(from + found);
            from += found + step;
        }
        let chosen = match (edit.occurrence_index, at.len()) {
            (_, 0) => None,
            (Some(i), _) => at.get(i).copied(),
            (None, 1) => Some(at[0]),
            (None, _) => {
                failures.push(fail("ambiguous"));
                continue;
            }
        };
        match chosen {
            Some(start) => source.replace_range(start..start + edit.old_text.len(), &edit.new_text),
            None => failures.push(fail("not-found")),
        }
    }
    (source, failures)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn edit(old: &str, new: &str, index: Option<usize>) -> Edit {
        Edit { old_text: old.into(), new_text: new.into(), occurrence_index: index }
    }

    #[test]
    fn edits_apply_in_order_and_failures_do_not_stop_the_rest() {
        let source = "<A/>\n<B/>\n<B/>";
        let (out, failures) = apply_edits(
            source,
            &[
                edit("<A/>", "<C/>", None),
                edit("<B/>", "", None),
                edit("<B/>", "<D/>", Some(1)),
                edit("<C/>", "<E/>", None),
                edit("zzz", "", None),
                edit("<B/>", "x", Some(5)),
            ],
        );
        assert_eq!(out, "<E/>\n<B/>\n<D/>");
        assert_eq!(
            failures,
            vec![
                Failure { index: 1, reason: "ambiguous", old_text_preview: "<B/>".into() },
                Failure { index: 4, reason: "not-found", old_text_preview: "zzz".into() },
                Failure { index: 5, reason: "not-found", old_text_preview: "<B/>".into() },
            ]
        );
    }

    #[test]
    fn occurrences_do_not_overlap_and_previews_collapse_whitespace() {
        let (out, failures) = apply_edits("aaaa", &[edit("aa", "b", Some(1))]);
        assert_eq!((out.as_str(), failures.len()), ("aab", 0));
        let long = format!("a  \n\t b {}", "x".repeat(100));
        let (_, failures) = apply_edits("", &[edit(&long, "", None)]);
        assert_eq!(failures[0].old_text_preview, format!("a b {}", "x".repeat(76)));
        let (out, _) = apply_edits("héllo wörld", &[edit("wörld", "world", None)]);
        assert_eq!(out, "héllo world");
    }
}
