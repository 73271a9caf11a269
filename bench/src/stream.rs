//! `bench-stream`: a streamed AI answer (`POST /api/v1/ai/query/stream`) on the native host,
//! workerd (wrangler dev) and a WASI component (wasmtime serve), with a stand-in model that
//! writes `WORDS` words, each after `WORD_DELAY`. Per runtime, over `RUNS` answers one at a
//! time: time to the response head, to the first text piece and to the end, and the relay
//! delay: from the model writing its first word to the client reading it (the target:
//! within 5 ms natively). All clocks are this process's: the stand-in runs in it.

use std::time::{Duration, Instant};

use api_tests::ai_fakes::StreamingModel;
use api_tests::Host;
use serde_json::json;

const WORDS: usize = 20;
const WORD_DELAY: Duration = Duration::from_millis(10);
const RUNS: usize = 30;

/// One answer's timings, in milliseconds.
struct Timing {
    head: f64,
    first_piece: f64,
    total: f64,
    relay: f64,
}

async fn one_answer(client: &reqwest::Client, base_url: &str, model: &StreamingModel) -> Timing {
    let body = json!({ "quality": "smart", "speed": "fast", "tools": [], "systemPrompt": "docs-ask-ai",
        "messages": [{ "role": "user", "content": "Hello" }] });
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let started = Instant::now();
    let mut res = client.post(format!("{base_url}/api/v1/ai/query/stream")).json(&body).send().await.expect("send");
    assert_eq!(res.status(), 200);
    let head = started.elapsed();
    let (mut seen, mut first) = (String::new(), None);
    while let Some(chunk) = res.chunk().await.expect("read") {
        seen.push_str(&String::from_utf8_lossy(&chunk));
        if first.is_none() && seen.contains("\"type\":\"text-delta\"") {
            first = Some(Instant::now());
        }
    }
    let total = started.elapsed();
    assert!(seen.ends_with("data: [DONE]\n\n"), "a whole stream");
    let first = first.expect("a text piece");
    let model_first = model.first_word_at().expect("the model wrote");
    Timing {
        head: ms(head),
        first_piece: ms(first - started),
        total: ms(total),
        relay: ms(first.saturating_duration_since(model_first)),
    }
}

fn p50(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn max(values: &[f64]) -> f64 {
    values.iter().copied().fold(0.0, f64::max)
}

async fn measure(runtime: &str, host: &Host, model: &StreamingModel) {
    let client = reqwest::Client::new();
    one_answer(&client, &host.base_url, model).await; // warm-up
    let mut timings = Vec::new();
    for _ in 0..RUNS {
        timings.push(one_answer(&client, &host.base_url, model).await);
    }
    let column = |f: fn(&Timing) -> f64| timings.iter().map(f).collect::<Vec<_>>();
    let relay = column(|t| t.relay);
    println!(
        "| {runtime} | {RUNS} | {:.1} | {:.1} | {:.1} | {:.2} | {:.2} |",
        p50(column(|t| t.head)),
        p50(column(|t| t.first_piece)),
        p50(column(|t| t.total)),
        p50(relay.clone()),
        max(&relay)
    );
}

fn main() {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        println!(
            "stand-in model: {WORDS} words, one every {} ms (the first after {} ms)",
            WORD_DELAY.as_millis(),
            WORD_DELAY.as_millis()
        );
        println!();
        println!(
            "| runtime | answers | head p50 ms | first piece p50 ms | total p50 ms | relay p50 ms | relay max ms |"
        );
        println!("|---|---|---|---|---|---|---|");
        let model = StreamingModel::paced(WORDS, WORD_DELAY);
        // The budget of runs per caller is not what is measured here.
        let vars = [("STACK_AI_BASE_URL", model.url.as_str()), ("STACK_AI_RUNS_PER_MINUTE", "1000000")];
        let host = Host::launch(api_tests::Launch { env: &vars, ..Default::default() });
        measure("native (companion dev, release)", &host, &model).await;
        drop(host);
        std::env::set_var("STACK_EDGE_RUNTIME", "cloudflare");
        let host = Host::start(&vars);
        measure("workerd (wrangler dev --local)", &host, &model).await;
        drop(host);
        let host = Host::start_component_with("mcp", &vars);
        measure("wasmtime serve (component)", &host, &model).await;
    });
}
