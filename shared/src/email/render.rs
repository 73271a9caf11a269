//! Renders an outbox template: upstream renders React email (TSX); this system has no JS
//! runtime, so `tsx_source` is HTML with `{{ variable }}` placeholders (HTML-escaped) and an
//! optional `<title>` giving the subject (docs/upstream-differences.md).

use serde_json::Value;

/// A rendered email: its subject and its HTML and text bodies.
#[derive(Debug, Clone, PartialEq)]
pub struct Rendered {
    pub subject: String,
    pub html: String,
    pub text: String,
}

impl Rendered {
    /// Appends the unsubscribe link to both bodies.
    pub fn with_unsubscribe_link(self, link: &str) -> Rendered {
        Rendered {
            subject: self.subject,
            html: format!("{}<p><a href=\"{}\">Unsubscribe</a></p>", self.html, escape_html(link)),
            text: format!("{}\n\nUnsubscribe: {link}", self.text),
        }
    }
}

/// Renders a template: `{{ name }}` placeholders from `variables` (HTML-escaped), the subject
/// from `override_subject` or the `<title>`. An unknown variable is a render error.
pub fn render(source: &str, variables: &Value, override_subject: Option<&str>) -> Result<Rendered, String> {
    let mut html = String::with_capacity(source.len());
    let mut rest = source;
    while let Some(start) = rest.find("{{") {
        html.push_str(&rest[..start]);
        let end = rest[start..].find("}}").ok_or("an unclosed {{ placeholder")? + start;
        let name = rest[start + 2..end].trim();
        let value = variables.get(name).ok_or_else(|| format!("the variable \"{name}\" is not set"))?;
        let text = match value {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        html.push_str(&escape_html(&text));
        rest = &rest[end + 2..];
    }
    html.push_str(rest);
    let title =
        html.find("<title>").and_then(|s| html[s + 7..].find("</title>").map(|e| html[s + 7..s + 7 + e].to_string()));
    let subject = override_subject.map(str::to_string).or(title).unwrap_or_default();
    let text = strip_tags(&html);
    Ok(Rendered { subject, html, text })
}

fn escape_html(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;").replace('\'', "&#39;")
}

/// The text version: tags removed, whitespace collapsed, the `<title>` left out.
fn strip_tags(html: &str) -> String {
    let body = match (html.find("<title>"), html.find("</title>")) {
        (Some(s), Some(e)) if e > s => format!("{}{}", &html[..s], &html[e + 8..]),
        _ => html.to_string(),
    };
    let mut out = String::new();
    let mut in_tag = false;
    for c in body.chars() {
        match c {
            '<' => in_tag = true,
            '>' => {
                in_tag = false;
                out.push(' ');
            }
            c if !in_tag => out.push(c),
            _ => {}
        }
    }
    out.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn templates_substitute_escape_and_take_the_title_as_subject() {
        let Rendered { subject, html, text } =
            render("<title>Hi {{ name }}</title><p>Code: {{code}}</p>", &json!({ "name": "A&B", "code": 42 }), None)
                .unwrap();
        assert_eq!(subject, "Hi A&amp;B");
        assert_eq!(html, "<title>Hi A&amp;B</title><p>Code: 42</p>");
        assert_eq!(text, "Code: 42");
        assert_eq!(render("x", &json!({}), Some("Override")).unwrap().subject, "Override");
        assert!(render("{{ missing }}", &json!({}), None).unwrap_err().contains("missing"));
    }
}
