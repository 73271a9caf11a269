//! The texts the AI endpoints put in front of the model: the shared base prompt with one
//! addition per `systemPrompt` name (docs/api.md §9.1), and the setup prompt for coding
//! agents with its web variant (§4.3), served at `GET /api/v1/ai/init-prompt`.

/// The `systemPrompt` names a request may choose.
pub const SYSTEM_PROMPTS: &[&str] = &[
    "command-center-ask-ai",
    "docs-ask-ai",
    "wysiwyg-edit",
    "email-wysiwyg-editor",
    "email-assistant-template",
    "email-assistant-theme",
    "email-assistant-draft",
    "create-dashboard",
    "run-query",
    "build-analytics-query",
    "rewrite-template-source",
];

const BASE: &str = "You are Stack Auth's assistant. Stack Auth is an open-source authentication and user management \
platform (https://stack-auth.com, docs at https://docs.stack-auth.com). Be accurate and brief; never invent APIs, \
options or prices: when unsure, say so. Never reveal secrets, keys or tokens.";

/// The system prompt for a name from [`SYSTEM_PROMPTS`].
pub fn system_prompt(name: &str) -> String {
    let specific = match name {
        "docs-ask-ai" | "command-center-ask-ai" => {
            "Answer questions about Stack Auth from its documentation. Search the docs with your tools before \
             answering, cite the pages you used by URL, and include short code samples where they help."
        }
        "wysiwyg-edit" | "email-wysiwyg-editor" => {
            "Edit the given content as the user asks, keeping everything else exactly as it is."
        }
        "email-assistant-template" => "Help write a React Email template; return it with createEmailTemplate.",
        "email-assistant-theme" => "Help write a React Email theme; return it with createEmailTheme.",
        "email-assistant-draft" => "Help write an email draft; return it with createEmailDraft.",
        "create-dashboard" => {
            "Build an analytics dashboard as a React component named Dashboard. Use updateDashboard to create it or \
             rewrite most of it, and patchDashboard for smaller changes."
        }
        "run-query" | "build-analytics-query" => {
            "Write ClickHouse SQL over the project's analytics tables (events, users, ...) and run it with \
             queryAnalytics when that tool is offered."
        }
        "rewrite-template-source" => "Rewrite the given email template source as asked, returning only the source.",
        _ => "",
    };
    format!("{BASE}\n\n{specific}")
}

/// The setup instructions a coding agent follows to add Stack Auth to an app. `web` adds the
/// advice to run the CLI when a terminal is at hand (the CLI itself asks without it).
pub fn init_prompt(web: bool) -> String {
    let cli = if web {
        "\nIf you have access to a terminal, run `npx @stackframe/stack-cli init` instead: it does all of this for you.\n"
    } else {
        ""
    };
    format!(
        "==============================\n\
STACK AUTH SETUP INSTRUCTIONS\n\
==============================\n{cli}
First, install the Stack Auth MCP server from https://mcp.stack-auth.com so you can ask it questions \
(Claude Code: ~/.claude.json, Codex: ~/.codex/config.toml, Cursor: ~/.cursor/mcp.json, \
opencode: ~/.config/opencode/opencode.json). The documentation is at https://docs.stack-auth.com.

1. Install the package for the framework: Next.js `@stackframe/stack`, React `@stackframe/react`, \
anything else `@stackframe/js`.
2. Create the client and server app files: `stack/client.ts` with a StackClientApp and `stack/server.ts` with a \
StackServerApp. Use tokenStore \"nextjs-cookie\" on Next.js and \"cookie\" elsewhere; outside Next.js also pass \
redirectMethod.
3. Wrap the app in StackProvider (and StackTheme). This is required for every React framework.
4. Add the StackHandler page that serves sign-in, sign-up and the account pages (Next.js: \
app/handler/[...stack]/page.tsx).
5. Add a loading component for Suspense boundaries (Next.js: app/loading.tsx).
6. Set the environment variables: the project id (with the framework's public prefix, such as \
NEXT_PUBLIC_STACK_PROJECT_ID), STACK_SECRET_SERVER_KEY, and the publishable client key only if the project \
requires one.
"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_prompt_name_has_its_own_text_on_the_base() {
        for name in SYSTEM_PROMPTS {
            let prompt = system_prompt(name);
            assert!(prompt.starts_with(BASE));
            assert!(prompt.len() > BASE.len() + 20, "{name} has no specific text");
        }
    }

    #[test]
    fn only_the_web_init_prompt_recommends_the_cli() {
        assert!(init_prompt(true).contains("npx @stackframe/stack-cli init"));
        assert!(!init_prompt(false).contains("npx @stackframe/stack-cli init"));
        assert!(init_prompt(false).contains("STACK AUTH SETUP INSTRUCTIONS"));
    }
}
