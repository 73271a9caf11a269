//! Independent MCP clients drive the MCP server: the `rmcp` client crate (Rust SDK), and the
//! official MCP inspector in CLI mode (TypeScript SDK, run with Node 22 from the cache folder).

use api_tests::ai_fakes::{fake_docs_mcp, fake_llm, DOCS_SEARCH_TEXT};
use api_tests::{Host, RecordingServer};
use rmcp::model::CallToolRequestParams;
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::ServiceExt;
use serde_json::{json, Value};

fn ai_host(llm: &RecordingServer, docs: &RecordingServer) -> Host {
    Host::start(&[
        ("STACK_AI_BASE_URL", &format!("{}/api/v1", llm.url)),
        ("STACK_AI_API_KEY", "sk-test"),
        ("STACK_DOCS_MCP_URL", &format!("{}/mcp", docs.url)),
    ])
}

#[tokio::test]
async fn the_rmcp_client_lists_and_calls_ask_stack_auth() {
    let (llm, docs) = (fake_llm(), fake_docs_mcp());
    let h = ai_host(&llm, &docs);
    let transport = StreamableHttpClientTransport::from_uri(format!("{}/api/internal/mcp", h.base_url));
    let client = ().serve(transport).await.expect("the client connects and initializes");
    let info = client.peer_info().expect("server info after initialize");
    let server = info.server_info.as_ref().expect("serverInfo");
    assert_eq!((server.name.as_str(), server.version.as_str()), ("stack-auth-mcp", "0.1.0"));

    let tools = client.list_tools(Default::default()).await.expect("tools/list");
    let names: Vec<&str> = tools.tools.iter().map(|t| t.name.as_ref()).collect();
    assert_eq!(names, ["ask_stack_auth"]);
    assert_eq!(tools.tools[0].input_schema["required"], json!(["question", "reason", "userPrompt"]));

    let arguments = json!({ "question": "How long do refresh tokens last?", "reason": "docs", "userPrompt": "p" });
    let result = client
        .call_tool(CallToolRequestParams::new("ask_stack_auth").with_arguments(arguments.as_object().unwrap().clone()))
        .await
        .expect("tools/call");
    assert_ne!(result.is_error, Some(true));
    let text = serde_json::to_value(&result.content).unwrap()[0]["text"].as_str().unwrap().to_string();
    assert!(text.starts_with(&format!("The tool said: {DOCS_SEARCH_TEXT}\n\n[conversationId: ")), "{text}");
    assert_eq!(llm.requests().len(), 2);

    // A call the schema refuses comes back as the protocol error, through the SDK.
    let bad = json!({ "question": "q", "userPrompt": "p" });
    let error = client
        .call_tool(CallToolRequestParams::new("ask_stack_auth").with_arguments(bad.as_object().unwrap().clone()))
        .await
        .expect_err("invalid arguments");
    assert!(error.to_string().contains("-32602"), "{error}");
    assert_eq!(llm.requests().len(), 2, "the model was not asked again");
    client.cancel().await.expect("the client closes");
}

/// The inspector CLI from the cache folder's npm install (`$EDGE_NODE`, scripts/setup-edge).
fn inspector(args: &[&str]) -> Value {
    let node_dir = std::env::var("EDGE_NODE").unwrap_or_else(|_| "/var/cache/stack-edge/node".into());
    let bin = std::path::Path::new(&node_dir).join("node_modules/.bin");
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap_or_default());
    let catalog = std::env::temp_dir().join(format!("stack-edge-inspector-{}.json", std::process::id()));
    let output = std::process::Command::new(bin.join("mcp-inspector"))
        .arg("--cli")
        .args(args)
        .env("PATH", path)
        .env("MCP_CATALOG_PATH", &catalog)
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run the MCP inspector CLI (installed by scripts/setup-edge)");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "inspector failed: {stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("inspector output is not JSON ({e}): {stdout}"))
}

#[tokio::test]
async fn the_official_inspector_cli_lists_and_calls_ask_stack_auth() {
    let (llm, docs) = (fake_llm(), fake_docs_mcp());
    let h = ai_host(&llm, &docs);
    let url = format!("{}/api/internal/mcp", h.base_url);
    let listed = tokio::task::spawn_blocking({
        let url = url.clone();
        move || inspector(&[&url, "--transport", "http", "--method", "tools/list"])
    })
    .await
    .unwrap();
    assert_eq!(listed["tools"].as_array().unwrap().len(), 1);
    assert_eq!(listed["tools"][0]["name"], "ask_stack_auth");

    let called = tokio::task::spawn_blocking(move || {
        inspector(&[
            &url,
            "--transport",
            "http",
            "--method",
            "tools/call",
            "--tool-name",
            "ask_stack_auth",
            "--tool-arg",
            "question=How long do refresh tokens last?",
            "--tool-arg",
            "reason=testing",
            "--tool-arg",
            "userPrompt=add auth",
        ])
    })
    .await
    .unwrap();
    let text = called["content"][0]["text"].as_str().expect("text content");
    assert!(text.starts_with(&format!("The tool said: {DOCS_SEARCH_TEXT}")), "{called}");
    let first = llm.requests()[0].json();
    assert_eq!(first["messages"][1]["content"], "How long do refresh tokens last?");
}
