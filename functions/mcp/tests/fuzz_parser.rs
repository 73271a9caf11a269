//! A bounded fuzz test of the MCP request parser (`server::parse`): mutations of valid
//! messages and generated JSON built from the protocol's own keys. Every input must come back
//! either as a message or as a JSON-RPC error with a 4xx status; the parser must never panic.
//! Runs for `MCP_FUZZ_SECONDS` (default 10) or 500,000 inputs, whichever comes first; the seed
//! is printed, and `MCP_FUZZ_SEED` replays a run.
//!
//! The generator is a small xorshift PRNG rather than a fuzzing crate: cargo-fuzz needs a
//! nightly toolchain, and this keeps the test on stable in every CI run.

use std::time::{Duration, Instant};

use mcp::server::{parse, Incoming, MAX_BODY_BYTES};
use serde_json::{json, Value};

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

const KEYS: &[&str] = &[
    "jsonrpc",
    "id",
    "method",
    "params",
    "name",
    "arguments",
    "result",
    "error",
    "protocolVersion",
    "capabilities",
    "clientInfo",
    "_meta",
    "cursor",
];
const METHODS: &[&str] = &[
    "initialize",
    "ping",
    "tools/list",
    "tools/call",
    "notifications/initialized",
    "notifications/cancelled",
    "resources/list",
    "prompts/get",
    "completion/complete",
    "logging/setLevel",
    "server/discover",
    "",
    "x/y",
];

fn corpus() -> Vec<Value> {
    vec![
        json!({ "jsonrpc": "2.0", "id": 0, "method": "initialize", "params": { "protocolVersion": "2025-06-18",
            "capabilities": {}, "clientInfo": { "name": "c", "version": "1" } } }),
        json!({ "jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {} }),
        json!({ "jsonrpc": "2.0", "id": "a", "method": "tools/call", "params": { "name": "ask_stack_auth",
            "arguments": { "question": "q", "reason": "r", "userPrompt": "p" } } }),
        json!({ "jsonrpc": "2.0", "method": "notifications/initialized" }),
        json!({ "jsonrpc": "2.0", "id": 2, "method": "ping" }),
        json!({ "jsonrpc": "2.0", "id": 3, "result": {} }),
    ]
}

fn random_value(rng: &mut Rng, depth: usize) -> Value {
    match rng.below(if depth > 3 { 6 } else { 8 }) {
        0 => Value::Null,
        1 => Value::Bool(rng.below(2) == 0),
        2 => json!(rng.next() as i64),
        3 => json!([1.5e300, -0.0, 0.5, 1e-300][rng.below(4)]),
        4 => Value::String(METHODS[rng.below(METHODS.len())].to_string()),
        5 => Value::String("2.0".into()),
        6 => Value::Array((0..rng.below(4)).map(|_| random_value(rng, depth + 1)).collect()),
        _ => Value::Object(
            (0..rng.below(6))
                .map(|_| (KEYS[rng.below(KEYS.len())].to_string(), random_value(rng, depth + 1)))
                .collect(),
        ),
    }
}

fn mutate(rng: &mut Rng, bytes: &mut Vec<u8>) {
    for _ in 0..=rng.below(4) {
        let at = rng.below(bytes.len() + 1);
        match rng.below(5) {
            0 if !bytes.is_empty() => {
                let i = at.min(bytes.len() - 1);
                bytes[i] = rng.next() as u8;
            }
            1 if at < bytes.len() => {
                bytes.remove(at);
            }
            2 => {
                const PUNCTUATION: &[u8] = b"{}[]\":,\\0e-.u";
                bytes.insert(at, PUNCTUATION[rng.below(PUNCTUATION.len())]);
            }
            3 => bytes.truncate(at),
            _ => {
                let splice = random_value(rng, 0).to_string();
                bytes.splice(at..at, splice.bytes());
            }
        }
    }
}

fn check(input: &[u8]) {
    match parse(input) {
        Ok(Incoming::Request(id, _)) => assert!(id.is_string() || id.is_number(), "id {id} from {input:?}"),
        Ok(Incoming::Notification) => {}
        Err((status, error)) => {
            assert!(status == 400 || status == 413, "status {status} for {:?}", String::from_utf8_lossy(input));
            assert_eq!(error["jsonrpc"], "2.0");
            let code = error["error"]["code"].as_i64().expect("an error code");
            assert!(code == -32700 || code == -32600, "code {code}");
            assert!(error["error"]["message"].as_str().is_some_and(|m| !m.is_empty()));
        }
    }
}

#[test]
fn the_parser_answers_every_input_without_panicking() {
    let seconds = std::env::var("MCP_FUZZ_SECONDS").ok().and_then(|s| s.parse().ok()).unwrap_or(10);
    let seed = std::env::var("MCP_FUZZ_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64 | 1
    });
    println!("MCP_FUZZ_SEED={seed}");
    let mut rng = Rng(seed);
    let corpus = corpus();
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let mut runs = 0;
    // Edge cases first: empty, huge, deep nesting, a batch.
    check(b"");
    check(&vec![b' '; MAX_BODY_BYTES + 1]);
    check(&[b"[".repeat(10_000), b"]".repeat(10_000)].concat());
    check(format!("[{}]", corpus[1]).as_bytes());
    while runs < 500_000 && Instant::now() < deadline {
        let mut input = if rng.below(3) == 0 {
            random_value(&mut rng, 0).to_string().into_bytes()
        } else {
            corpus[rng.below(corpus.len())].to_string().into_bytes()
        };
        mutate(&mut rng, &mut input);
        check(&input);
        runs += 1;
    }
    println!("{runs} inputs");
    assert!(runs > 1000, "the fuzz loop ran ({runs} inputs)");
}
