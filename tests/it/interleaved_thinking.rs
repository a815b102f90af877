//! Interleaved thinking end to end: a DeepSeek-like upstream that answers
//! 400 when an assistant tool-call turn comes back without the reasoning it
//! produced, and an agent loop that drops the reasoning every turn, as most
//! agent clients do.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::{Request, State};
use axum::response::Response;
use serde_json::{Map, Value, json};

use yallmp::Server;
use yallmp::config::{Config, Env};

use crate::support;
use crate::support::{pg, redis as sredis};

/// The upstream: remembers the reasoning of every tool call it made and
/// checks that each assistant tool-call turn brings it back byte for byte.
#[derive(Default)]
struct DeepState {
    /// name + canonical arguments → the reasoning of that turn.
    produced: Mutex<HashMap<String, String>>,
    turn: AtomicUsize,
    parallel: bool,
    /// Part of its tool call ids and arguments (two upstreams never make
    /// the same call).
    tag: String,
    hits: Mutex<Vec<Value>>,
    /// Answer 503 to everything (a backend that went down).
    down: std::sync::atomic::AtomicBool,
}

struct Deep {
    url: String,
    state: Arc<DeepState>,
}

impl Deep {
    async fn start(parallel: bool) -> Deep {
        let state = Arc::new(DeepState {
            parallel,
            tag: uuid::Uuid::new_v4().simple().to_string()[..6].to_string(),
            ..Default::default()
        });
        let app = Router::new().fallback(deep).with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Deep {
            url: format!("http://{addr}/v1"),
            state,
        }
    }

    fn hits(&self) -> Vec<Value> {
        self.state.hits.lock().unwrap().clone()
    }

    fn produced(&self) -> HashMap<String, String> {
        self.state.produced.lock().unwrap().clone()
    }
}

/// Objects with sorted keys, all the way down.
fn canon(v: &Value) -> Value {
    match v {
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            let mut out = Map::new();
            for k in keys {
                out.insert(k.clone(), canon(&m[k]));
            }
            Value::Object(out)
        }
        Value::Array(a) => Value::Array(a.iter().map(canon).collect()),
        other => other.clone(),
    }
}

fn call_key(call: &Value) -> String {
    let f = &call["function"];
    let args: Value = serde_json::from_str(f["arguments"].as_str().unwrap_or("null")).unwrap();
    format!("{}:{}", f["name"].as_str().unwrap_or(""), canon(&args))
}

fn reasoning_of(n: usize) -> String {
    // Multi-byte text, quotes, escapes, tags, blank lines, trailing spaces:
    // anything a careless round trip would change.
    format!("Turn {n}: 思考 — \"why\" \\path\\ <b>&amp;</b>\n\n  next: {{\"a\": 1}}  \t")
}

async fn deep(State(state): State<Arc<DeepState>>, req: Request) -> Response {
    let body = axum::body::to_bytes(req.into_body(), usize::MAX)
        .await
        .unwrap();
    let v: Value = serde_json::from_slice(&body).unwrap();
    state.hits.lock().unwrap().push(v.clone());
    if state.down.load(Ordering::SeqCst) {
        return json_reply(
            503,
            json!({"error": {"message": "overloaded", "type": "server_error"}}),
        );
    }
    for m in v["messages"].as_array().unwrap() {
        let Some(calls) = m["tool_calls"].as_array().filter(|c| !c.is_empty()) else {
            continue;
        };
        if m["role"] != "assistant" {
            continue;
        }
        let produced = state.produced.lock().unwrap();
        for c in calls {
            // Only its own turns must come back with their reasoning.
            let Some(want) = produced.get(&call_key(c)) else {
                continue;
            };
            if Some(want.as_str()) != m["reasoning_content"].as_str() {
                return json_reply(
                    400,
                    json!({"error": {"message": "The reasoning_content in the thinking mode must be passed back to the API.",
                        "type": "invalid_request_error", "param": null, "code": "invalid_request_error"}}),
                );
            }
        }
    }
    let n = state.turn.fetch_add(1, Ordering::SeqCst) + 1;
    let reasoning = reasoning_of(n);
    let tag = &state.tag;
    let mut calls = vec![
        json!({"id": format!("call_{tag}_{n}_a"), "type": "function", "function": {
        "name": "read_file",
        "arguments": format!("{{\"path\": \"/src/{tag}/{n}.rs\", \"opts\": {{\"lines\": [1, 2.0], \"follow\": true}}}}")}}),
    ];
    if state.parallel {
        calls.push(
            json!({"id": format!("call_{tag}_{n}_b"), "type": "function", "function": {
            "name": "list_dir", "arguments": format!("{{\"dir\":\"/d{tag}{n}\"}}")}}),
        );
    }
    {
        let mut produced = state.produced.lock().unwrap();
        for c in &calls {
            produced.insert(call_key(c), reasoning.clone());
        }
    }
    let content = format!("Step {n}.");
    if v["stream"] == true {
        return sse_reply(&reasoning, &content, &calls);
    }
    json_reply(
        200,
        json!({"id": format!("r{n}"), "object": "chat.completion", "created": 1, "model": "deepseek-reasoner",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": content,
                "reasoning_content": reasoning, "tool_calls": calls}, "finish_reason": "tool_calls"}],
            "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}}),
    )
}

fn json_reply(status: u16, v: Value) -> Response {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(axum::body::Body::from(v.to_string()))
        .unwrap()
}

/// The answer as a stream: reasoning a few characters at a time, the
/// content, each call's name then its arguments in two pieces.
fn sse_reply(reasoning: &str, content: &str, calls: &[Value]) -> Response {
    let chunk = |delta: Value, finish: Value| {
        format!(
            "data: {}\n\n",
            json!({"id": "s", "object": "chat.completion.chunk", "created": 1, "model": "deepseek-reasoner",
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})
        )
    };
    let mut frames = vec![chunk(
        json!({"role": "assistant", "content": ""}),
        Value::Null,
    )];
    let chars: Vec<char> = reasoning.chars().collect();
    for piece in chars.chunks(5) {
        let s: String = piece.iter().collect();
        frames.push(chunk(json!({"reasoning_content": s}), Value::Null));
    }
    frames.push(chunk(json!({"content": content}), Value::Null));
    for (i, c) in calls.iter().enumerate() {
        let args = c["function"]["arguments"].as_str().unwrap();
        let (a, b) = args.split_at(args.len() / 2);
        frames.push(chunk(
            json!({"tool_calls": [{"index": i, "id": c["id"], "type": "function",
                "function": {"name": c["function"]["name"], "arguments": ""}}]}),
            Value::Null,
        ));
        for part in [a, b] {
            frames.push(chunk(
                json!({"tool_calls": [{"index": i, "function": {"arguments": part}}]}),
                Value::Null,
            ));
        }
    }
    frames.push(chunk(json!({}), json!("tool_calls")));
    frames.push("data: [DONE]\n\n".into());
    Response::builder()
        .status(200)
        .header("content-type", "text/event-stream")
        .body(axum::body::Body::from(frames.concat()))
        .unwrap()
}

/// The assistant message a client assembles from a stream.
fn assemble(body: &str) -> Value {
    let mut reasoning = String::new();
    let mut content = String::new();
    let mut calls: Vec<Value> = Vec::new();
    for data in support::sse_data(body) {
        if data == "[DONE]" {
            continue;
        }
        let v: Value = serde_json::from_str(&data).unwrap();
        let d = &v["choices"][0]["delta"];
        if let Some(r) = d["reasoning_content"].as_str() {
            reasoning.push_str(r);
        }
        if let Some(c) = d["content"].as_str() {
            content.push_str(c);
        }
        for tc in d["tool_calls"].as_array().into_iter().flatten() {
            let i = tc["index"].as_u64().unwrap() as usize;
            if calls.len() <= i {
                calls.push(json!({"id": "", "type": "function", "function": {"name": "", "arguments": ""}}));
            }
            let slot = &mut calls[i];
            if let Some(id) = tc["id"].as_str() {
                slot["id"] = json!(id);
            }
            if let Some(n) = tc["function"]["name"].as_str() {
                slot["function"]["name"] = json!(n);
            }
            if let Some(a) = tc["function"]["arguments"].as_str() {
                let s = slot["function"]["arguments"].as_str().unwrap().to_string() + a;
                slot["function"]["arguments"] = json!(s);
            }
        }
    }
    let mut m = json!({"role": "assistant", "content": content, "tool_calls": calls});
    if !reasoning.is_empty() {
        m["reasoning_content"] = json!(reasoning);
    }
    m
}

/// How the client writes the assistant turn back.
#[derive(Clone, Copy, PartialEq)]
enum Resend {
    /// Without its reasoning.
    Dropped,
    /// Without reasoning, arguments re-serialized (keys reversed, spaces)
    /// and new tool call ids, as some clients do.
    Rewritten,
}

/// Reversed key order and spaces: the same JSON, written differently.
fn rewrite_args(args: &str) -> String {
    fn w(v: &Value) -> String {
        match v {
            Value::Object(m) => {
                let parts: Vec<String> = m
                    .iter()
                    .rev()
                    .map(|(k, v)| format!("{} : {}", Value::from(k.as_str()), w(v)))
                    .collect();
                format!("{{ {} }}", parts.join(" , "))
            }
            Value::Array(a) => format!("[ {} ]", a.iter().map(w).collect::<Vec<_>>().join(", ")),
            other => other.to_string(),
        }
    }
    w(&serde_json::from_str(args).unwrap())
}

struct Agent {
    url: String,
    key: Option<String>,
    stream: bool,
    resend: Resend,
    history: Vec<Value>,
    /// The assistant messages as received.
    received: Vec<Value>,
}

impl Agent {
    fn new(server: &Server, key: Option<&str>, stream: bool, resend: Resend) -> Agent {
        Agent {
            url: server.url(),
            key: key.map(String::from),
            stream,
            resend,
            history: vec![json!({"role": "user", "content": "Fix the bug."})],
            received: Vec::new(),
        }
    }

    /// One turn: Ok(assistant message) or Err((status, body)).
    async fn turn(&mut self) -> Result<Value, (u16, String)> {
        let body = json!({"model": "ds", "messages": self.history, "stream": self.stream,
            "tools": [{"type": "function", "function": {"name": "read_file", "parameters": {"type": "object"}}}]});
        let mut req = support::client()
            .post(format!("{}/v1/chat/completions", self.url))
            .header("content-type", "application/json")
            .body(body.to_string());
        if let Some(k) = &self.key {
            req = req.bearer_auth(k);
        }
        let r = req.send().await.unwrap();
        let status = r.status().as_u16();
        let text = r.text().await.unwrap();
        if status != 200 {
            return Err((status, text));
        }
        let message = if self.stream {
            assemble(&text)
        } else {
            serde_json::from_str::<Value>(&text).unwrap()["choices"][0]["message"].clone()
        };
        self.received.push(message.clone());
        let mut resent = message.clone();
        let obj = resent.as_object_mut().unwrap();
        obj.shift_remove("reasoning_content");
        obj.shift_remove("reasoning");
        let calls = obj["tool_calls"].as_array_mut().unwrap();
        let mut results = Vec::new();
        for c in calls.iter_mut() {
            if self.resend == Resend::Rewritten {
                let args = rewrite_args(c["function"]["arguments"].as_str().unwrap());
                c["function"]["arguments"] = json!(args);
                c["id"] = json!(format!("client_{}", c["id"].as_str().unwrap()));
            }
            results.push(json!({"role": "tool", "tool_call_id": c["id"], "content": "ok"}));
        }
        self.history.push(resent);
        self.history.extend(results);
        Ok(message)
    }
}

fn yaml(deep: &Deep, thinking: &str, extra: &str) -> String {
    format!(
        "model_list:\n  - model_name: ds\n    model_params:\n      api_base: '{}'\n      model: deepseek-reasoner\n{thinking}{extra}",
        deep.url
    )
}

const ON: &str = "      interleaved_thinking: {enabled: true}\n";

/// A DeepSeek-like upstream (answering calls in parallel or not) and the
/// proxy in front of it with this `interleaved_thinking` block.
async fn deep_proxy(parallel: bool, thinking: &str) -> (Deep, Server) {
    let deep = Deep::start(parallel).await;
    let proxy = support::proxy(&yaml(&deep, thinking, "")).await;
    (deep, proxy)
}

/// The last request's assistant turns carry exactly the reasoning the
/// upstream produced for them.
fn assert_restored(deep: &Deep, turns: usize) {
    let last = deep.hits().pop().unwrap();
    let produced = deep.produced();
    let assistants: Vec<&Value> = last["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["role"] == "assistant")
        .collect();
    assert_eq!(assistants.len(), turns);
    for (i, m) in assistants.iter().enumerate() {
        let want = reasoning_of(i + 1);
        assert_eq!(
            m["reasoning_content"].as_str(),
            Some(want.as_str()),
            "turn {}",
            i + 1
        );
        for c in m["tool_calls"].as_array().unwrap() {
            assert_eq!(produced[&call_key(c)], want);
        }
    }
}

#[tokio::test]
async fn agent_loop_succeeds_every_turn_with_reasoning_restored_byte_for_byte() {
    let (deep, proxy) = deep_proxy(false, ON).await;
    let mut agent = Agent::new(&proxy, None, false, Resend::Dropped);
    for n in 1..=4 {
        let m = agent
            .turn()
            .await
            .unwrap_or_else(|e| panic!("turn {n}: {e:?}"));
        assert_eq!(
            m["reasoning_content"].as_str(),
            Some(reasoning_of(n).as_str())
        );
    }
    assert_eq!(deep.hits().len(), 4);
    assert_restored(&deep, 3);
    // What was restored is said in a header (and so in the request log).
    let r = support::client()
        .post(format!("{}/v1/chat/completions", proxy.url()))
        .json(&json!({"model": "ds", "messages": agent.history}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.headers()["x-yallmp-thinking"],
        "restored=4 missing=0 foreign=0"
    );
    // And counted (one recorder per process: other tests add to it).
    let metrics = support::metrics_text(&proxy).await;
    let restored: f64 = metrics
        .lines()
        .find(|l| {
            l.starts_with("yallmp_thinking_turns_total")
                && l.contains("model=\"ds\"")
                && l.contains("result=\"restored\"")
        })
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap_or_else(|| panic!("no restored count in {metrics}"));
    assert!(restored >= 10.0, "{restored}");
    // Only the assistant turns changed: the rest went up as sent.
    let last = deep.hits().pop().unwrap();
    assert_eq!(
        last["messages"][0],
        json!({"role": "user", "content": "Fix the bug."})
    );
    assert_eq!(
        last["messages"][2],
        json!({"role": "tool", "tool_call_id": format!("call_{}_1_a", deep.state.tag), "content": "ok"})
    );
    proxy.shutdown().await;
}

#[tokio::test]
async fn without_the_feature_the_upstream_400_reaches_the_client() {
    let (deep, proxy) = deep_proxy(false, "").await;
    let mut agent = Agent::new(&proxy, None, false, Resend::Dropped);
    agent.turn().await.unwrap();
    let (status, body) = agent.turn().await.unwrap_err();
    assert_eq!(status, 400);
    assert!(body.contains("reasoning_content"), "{body}");
    let sent = &deep.hits()[1]["messages"][1];
    assert!(sent.get("reasoning_content").is_none());
    proxy.shutdown().await;
}

#[tokio::test]
async fn streams_are_remembered_and_restored() {
    let (deep, proxy) = deep_proxy(false, ON).await;
    let mut agent = Agent::new(&proxy, None, true, Resend::Dropped);
    for n in 1..=3 {
        let m = agent
            .turn()
            .await
            .unwrap_or_else(|e| panic!("turn {n}: {e:?}"));
        assert_eq!(
            m["reasoning_content"].as_str(),
            Some(reasoning_of(n).as_str())
        );
    }
    assert_restored(&deep, 2);
    proxy.shutdown().await;
}

#[tokio::test]
async fn parallel_calls_with_rewritten_arguments_and_ids_still_match() {
    let (deep, proxy) = deep_proxy(true, ON).await;
    for stream in [false, true] {
        let mut agent = Agent::new(&proxy, None, stream, Resend::Rewritten);
        for n in 1..=3 {
            agent
                .turn()
                .await
                .unwrap_or_else(|e| panic!("stream {stream} turn {n}: {e:?}"));
        }
        let last = deep.hits().pop().unwrap();
        let produced = deep.produced();
        let a = &last["messages"][1];
        assert_eq!(a["tool_calls"].as_array().unwrap().len(), 2);
        assert!(
            a["tool_calls"][0]["id"]
                .as_str()
                .unwrap()
                .starts_with("client_")
        );
        assert_eq!(
            a["reasoning_content"].as_str().unwrap(),
            produced[&call_key(&a["tool_calls"][0])]
        );
    }
    proxy.shutdown().await;
}

#[tokio::test]
async fn clients_with_different_keys_never_see_each_others_reasoning() {
    let deep = Deep::start(false).await;
    let proxy = support::proxy(&yaml(
        &deep,
        ON,
        "proxy_settings: {auth: {api_keys: [key-a, key-b]}}\n",
    ))
    .await;
    let mut a = Agent::new(&proxy, Some("key-a"), false, Resend::Dropped);
    a.turn().await.unwrap();
    // B sends A's conversation, same tool call ids, under its own key.
    let mut b = Agent::new(&proxy, Some("key-b"), false, Resend::Dropped);
    b.history = a.history.clone();
    let (status, _) = b.turn().await.unwrap_err();
    assert_eq!(
        status, 400,
        "the upstream refused B's turn without reasoning"
    );
    let sent = &deep.hits().pop().unwrap()["messages"][1];
    assert_eq!(
        sent["reasoning_content"], "",
        "on_miss: empty, not A's reasoning"
    );
    // A itself gets its reasoning back.
    a.turn().await.unwrap();
    assert_restored(&deep, 1);
    proxy.shutdown().await;
}

#[tokio::test]
async fn expired_reasoning_gets_on_miss() {
    let deep = Deep::start(false).await;
    let on = "      interleaved_thinking: {ttl: 0.3, on_miss: error}\n";
    let proxy = support::proxy(&yaml(&deep, on, "")).await;
    let mut agent = Agent::new(&proxy, None, false, Resend::Dropped);
    agent.turn().await.unwrap();
    // Waiting out the TTL is the point of this test.
    tokio::time::sleep(Duration::from_millis(700)).await;
    let (status, body) = agent.turn().await.unwrap_err();
    assert_eq!(status, 400);
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["error"]["code"], "reasoning_not_found", "{body}");
    assert_eq!(deep.hits().len(), 1, "nothing went upstream");
    proxy.shutdown().await;
}

#[tokio::test]
async fn think_tags_round_trip_with_swap_reasoning_content() {
    let deep = Deep::start(false).await;
    let parsers = "    parsers:\n      enabled: true\n      response: [swap_reasoning_content]\n      swap_reasoning_content: {mode: reasoning_to_content}\n";
    let proxy = support::proxy(&yaml(&deep, ON, parsers)).await;
    for stream in [false, true] {
        let mut agent = Agent::new(&proxy, None, stream, Resend::Dropped);
        for n in 1..=3 {
            let m = agent
                .turn()
                .await
                .unwrap_or_else(|e| panic!("stream {stream} turn {n}: {e:?}"));
            let content = m["content"].as_str().unwrap();
            assert!(m.get("reasoning_content").is_none());
            assert!(content.starts_with("<think>"), "{content}");
            assert!(
                content.ends_with("</think>\nStep ") || content.contains("</think>\nStep "),
                "{content}"
            );
        }
        let last = deep.hits().pop().unwrap();
        let a = &last["messages"][1];
        let key = call_key(&a["tool_calls"][0]);
        assert_eq!(
            a["reasoning_content"].as_str().unwrap(),
            deep.produced()[&key]
        );
        assert!(a["content"].as_str().unwrap().starts_with("Step "), "{a}");
        assert!(!a["content"].as_str().unwrap().contains("think>"));
    }
    proxy.shutdown().await;
}

/// A config whose database survives the proxy (no isolated log dir).
fn durable_config(yaml: &str) -> Config {
    let mut c = Config::from_yaml(yaml, None, &Env::default()).unwrap();
    c.server.host = "127.0.0.1".into();
    c.server.port = 0;
    c
}

/// Turn 1 on one proxy, turn 2 on a new one with the same config.
async fn survives_a_restart(yaml: &str) {
    let deep = Deep::start(false).await;
    let yaml = yaml.replace("DEEP", &deep.url);
    let first = yallmp::serve(durable_config(&yaml)).await.unwrap();
    let mut agent = Agent::new(&first, None, false, Resend::Dropped);
    agent.turn().await.unwrap();
    first.shutdown().await;
    let second = yallmp::serve(durable_config(&yaml)).await.unwrap();
    agent.url = second.url();
    agent
        .turn()
        .await
        .unwrap_or_else(|e| panic!("after restart: {e:?}"));
    assert_restored(&deep, 1);
    second.shutdown().await;
}

fn store_yaml(store: &str, tail: &str) -> String {
    format!(
        "model_list:\n  - model_name: ds\n    model_params:\n      api_base: 'DEEP'\n      interleaved_thinking: {{store: {store}}}\nproxy_settings: {{logging: {{files: {{enabled: false}}, database: {{enabled: false}}}}{tail}}}\n"
    )
}

#[tokio::test]
async fn database_store_survives_a_restart_sqlite() {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("thinking")
        .join(uuid::Uuid::new_v4().simple().to_string());
    let yaml = format!(
        "{}database: {{connection: {{sqlite: {{path: '{}'}}}}}}\n",
        store_yaml("database", ""),
        dir.join("t.db").display()
    );
    survives_a_restart(&yaml).await;
}

#[tokio::test]
async fn database_store_survives_a_restart_postgres() {
    pg::with_fresh_database(|url| async move {
        let yaml = format!("{}database: {{url: '{url}'}}\n", store_yaml("database", ""));
        survives_a_restart(&yaml).await;
    })
    .await;
}

#[tokio::test]
async fn redis_store_survives_a_restart() {
    let Some(url) = sredis::redis_url().await else {
        return;
    };
    let tail = format!(
        ", redis_url: '{url}', redis_key_prefix: '{}'",
        sredis::unique_prefix()
    );
    survives_a_restart(&store_yaml("redis", &tail)).await;
}

#[tokio::test]
async fn unknown_keys_in_the_block_are_config_errors() {
    let deep = Deep::start(false).await;
    let bad = yaml(
        &deep,
        "      interleaved_thinking: {enabled: true, feild: reasoning}\n",
        "",
    );
    let err = Config::from_yaml(&bad, None, &Env::default())
        .unwrap_err()
        .to_string();
    assert!(err.contains("interleaved_thinking"), "{err}");
    let redis = yaml(&deep, "      interleaved_thinking: {store: redis}\n", "");
    let err = Config::from_yaml(&redis, None, &Env::default())
        .unwrap_err()
        .to_string();
    assert!(err.contains("redis_url"), "{err}");
}

#[tokio::test]
async fn a_fallback_to_another_provider_never_gets_foreign_reasoning() {
    let primary = Deep::start(false).await;
    let fallback = Deep::start(false).await;
    let yaml = format!(
        "model_list:\n  - model_name: ds\n    model_params: {{api_base: '{}', interleaved_thinking: {{}}}}\n    fallbacks: [other]\n  - model_name: other\n    model_params: {{api_base: '{}', interleaved_thinking: {{on_miss: drop}}}}\nrouter_settings: {{num_retries: 0}}\n",
        primary.url, fallback.url
    );
    let proxy = support::proxy(&yaml).await;
    let mut agent = Agent::new(&proxy, None, false, Resend::Dropped);
    agent.turn().await.unwrap();
    primary.state.down.store(true, Ordering::SeqCst);
    agent
        .turn()
        .await
        .unwrap_or_else(|e| panic!("fallback turn: {e:?}"));
    let sent = &fallback.hits()[0]["messages"][1];
    assert_eq!(
        sent["tool_calls"][0]["id"],
        format!("call_{}_1_a", primary.state.tag)
    );
    assert!(
        sent.get("reasoning_content").is_none(),
        "the primary's reasoning went to the fallback: {sent}"
    );
    // Back on the primary, its own reasoning returns.
    primary.state.down.store(false, Ordering::SeqCst);
    agent
        .turn()
        .await
        .unwrap_or_else(|e| panic!("back on the primary: {e:?}"));
    let last = primary.hits().pop().unwrap();
    assert_eq!(
        last["messages"][1]["reasoning_content"].as_str(),
        Some(reasoning_of(1).as_str())
    );
    proxy.shutdown().await;
}

#[tokio::test]
async fn runtime_models_take_the_block_too() {
    let deep = Deep::start(false).await;
    let proxy = support::proxy("model_list: []\n").await;
    let register = |body: Value| {
        let url = format!("{}/admin/models", proxy.url());
        async move {
            let r = support::client()
                .post(url)
                .json(&body)
                .send()
                .await
                .unwrap();
            (r.status().as_u16(), r.text().await.unwrap())
        }
    };
    let (status, text) = register(json!({"model_name": "ds", "api_base": deep.url,
        "interleaved_thinking": {"feild": "reasoning"}}))
    .await;
    assert_eq!(status, 400, "{text}");
    assert!(text.contains("did you mean `field`"), "{text}");
    assert!(text.contains("interleaved_thinking"), "{text}");
    let (status, text) = register(json!({"model_name": "ds", "api_base": deep.url,
        "interleaved_thinking": {"enabled": true, "ttl": "1h"}}))
    .await;
    assert_eq!(status, 201, "{text}");
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(
        v["model"]["backends"][0]["interleaved_thinking"]["ttl"],
        3600.0
    );
    let mut agent = Agent::new(&proxy, None, false, Resend::Dropped);
    for n in 1..=3 {
        agent
            .turn()
            .await
            .unwrap_or_else(|e| panic!("turn {n}: {e:?}"));
    }
    assert_restored(&deep, 2);
    proxy.shutdown().await;
}

#[tokio::test]
async fn all_turns_with_think_tags_for_minimax_style_models() {
    use support::{Mock, Reply};
    let answer = |reasoning: &str| {
        Reply::Json(
            200,
            json!({"id": "x", "object": "chat.completion", "created": 1, "model": "m",
                "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hello there.",
                    "reasoning_content": reasoning}, "finish_reason": "stop"}]}),
        )
    };
    let mock = Mock::start(answer("R <x>\n")).await;
    let yaml = format!(
        "model_list:\n  - model_name: mm\n    model_params: {{api_base: '{0}', interleaved_thinking: {{field: think_tags, scope: all_turns}}}}\n  - model_name: tools-only\n    model_params: {{api_base: '{0}', interleaved_thinking: {{}}}}\n",
        mock.url
    );
    let proxy = support::proxy(&yaml).await;
    for model in ["mm", "tools-only"] {
        let first = json!({"model": model, "messages": [{"role": "user", "content": "hi"}]});
        let (status, _, _) = support::post(&proxy, "/v1/chat/completions", &first).await;
        assert_eq!(status, 200);
        let second = json!({"model": model, "messages": [
            {"role": "user", "content": "hi"},
            {"role": "assistant", "content": "Hello there."},
            {"role": "user", "content": "and?"}]});
        let (status, _, _) = support::post(&proxy, "/v1/chat/completions", &second).await;
        assert_eq!(status, 200);
    }
    let hits = mock.hits();
    let sent = hits[1].json();
    assert_eq!(
        sent["messages"][1],
        json!({"role": "assistant", "content": "<think>\nR <x>\n\n</think>\n\nHello there."}),
        "all_turns: a turn without tool calls gets its reasoning back, as think tags"
    );
    assert_eq!(
        hits[3].json()["messages"][1],
        json!({"role": "assistant", "content": "Hello there."}),
        "tool_turns: a turn without tool calls is left alone"
    );
    proxy.shutdown().await;
}

#[tokio::test]
async fn redis_away_keeps_turns_in_memory() {
    let Some(url) = sredis::redis_url().await else {
        return;
    };
    let gate = sredis::Gate::start(&url).await;
    gate.cut();
    let deep = Deep::start(false).await;
    let tail = format!(
        "proxy_settings: {{redis_url: '{}', redis_key_prefix: '{}'}}\n",
        gate.url,
        sredis::unique_prefix()
    );
    let on = "      interleaved_thinking: {store: redis}\n";
    let proxy = support::proxy(&yaml(&deep, on, &tail)).await;
    let mut agent = Agent::new(&proxy, None, false, Resend::Dropped);
    for n in 1..=3 {
        agent
            .turn()
            .await
            .unwrap_or_else(|e| panic!("turn {n} with redis away: {e:?}"));
    }
    assert_restored(&deep, 2);
    proxy.shutdown().await;
}

#[tokio::test]
async fn an_unusable_database_store_stops_the_start() {
    let yaml = "model_list:\n  - model_name: ds\n    model_params: {api_base: 'http://127.0.0.1:9/v1', interleaved_thinking: {store: database}}\nproxy_settings: {logging: {files: {enabled: false}, database: {enabled: false}}}\ndatabase: {url: 'postgres://nobody@127.0.0.1:9/none'}\n";
    let err = yallmp::serve(durable_config(yaml))
        .await
        .err()
        .expect("the start must fail")
        .to_string();
    assert!(
        err.contains("interleaved_thinking store `database` (postgres 127.0.0.1:9/none)"),
        "{err}"
    );
}

#[tokio::test]
async fn names_clients_choose_under_a_wildcard_share_one_store_and_one_series() {
    // Every request names a new model under `wildthink-*`: the stores and
    // the metric series are the configured model's, so they stay one.
    let mock = support::Mock::start(support::Reply::Echo).await;
    let yaml = format!(
        "model_list:\n  - model_name: 'wildthink-*'\n    model_params:\n      api_base: '{}'\n{ON}",
        mock.url
    );
    let proxy = support::proxy(&yaml).await;
    let n = 300;
    for i in 0..n {
        let call = format!("call_{i}");
        let body = json!({"model": format!("wildthink-{i}"), "messages": [
            {"role": "user", "content": "go"},
            {"role": "assistant", "content": null, "tool_calls": [
                {"id": call, "type": "function", "function": {"name": "f", "arguments": "{}"}}]},
            {"role": "tool", "tool_call_id": call, "content": "ok"}]});
        let (status, headers, text) = support::post(&proxy, "/v1/chat/completions", &body).await;
        assert_eq!(status, 200, "{text}");
        assert_eq!(
            headers["x-yallmp-thinking"], "restored=0 missing=1 foreign=0",
            "request {i}"
        );
    }
    assert_eq!(proxy.state().thinking.memory_stores(), 1);
    let metrics = support::metrics_text(&proxy).await;
    let ours: Vec<&str> = metrics
        .lines()
        .filter(|l| !l.starts_with('#') && l.contains("wildthink-"))
        .collect();
    assert!(
        ours.iter().all(|l| l.contains("model=\"wildthink-*\"")),
        "a client's name became a label: {ours:?}"
    );
    let missing = support::metric_value(
        &metrics,
        "yallmp_thinking_turns_total",
        &[("model", "wildthink-*"), ("result", "missing")],
    )
    .unwrap_or_else(|| panic!("no series in {metrics}"));
    assert_eq!(missing, n as f64);
    proxy.shutdown().await;
}

/// A tool-call turn for `model` (its assistant turn has no reasoning, so
/// the proxy looks it up: the configured model's memory store exists).
async fn tool_turn(proxy: &Server, model: &str) {
    let body = json!({"model": model, "messages": [
        {"role": "user", "content": "go"},
        {"role": "assistant", "content": null, "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "ok"}]});
    let (status, _, text) = support::post(proxy, "/v1/chat/completions", &body).await;
    assert_eq!(status, 200, "{model}: {text}");
}

async fn admin_call(proxy: &Server, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    let mut req =
        support::client().request(method.parse().unwrap(), format!("{}{path}", proxy.url()));
    if let Some(b) = body {
        req = req.json(&b);
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// A model a reload removes (or whose thinking it turns off), or that the
/// admin API deletes, no longer keeps its in-memory store until a restart:
/// after the change only the configured models' stores are left.
#[tokio::test]
async fn stores_of_models_no_longer_configured_are_dropped_at_a_reload_and_a_model_change() {
    let mock = support::Mock::start(support::Reply::Echo).await;
    let model = |name: &str, thinking: bool| {
        format!(
            "  - model_name: {name}\n    model_params:\n      api_base: '{}'\n{}",
            mock.url,
            if thinking { ON } else { "" }
        )
    };
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("config.yaml");
    std::fs::write(
        &file,
        format!(
            "model_list:\n{}{}{}",
            model("keep", true),
            model("gone", true),
            model("off", true)
        ),
    )
    .unwrap();
    let mut config = Config::load(&file).unwrap();
    config.server.host = "127.0.0.1".into();
    config.server.port = 0;
    support::isolate_logs(&mut config);
    let proxy = yallmp::serve(config).await.unwrap();
    for m in ["keep", "gone", "off"] {
        tool_turn(&proxy, m).await;
    }
    assert_eq!(proxy.state().thinking.memory_stores(), 3);

    // A reload: `gone` removed, `off` without interleaved thinking.
    std::fs::write(
        &file,
        format!(
            "model_list:\n{}{}",
            model("keep", true),
            model("off", false)
        ),
    )
    .unwrap();
    let (status, v) = admin_call(&proxy, "POST", "/admin/config/reload", None).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(proxy.state().thinking.memory_stores(), 1);
    tool_turn(&proxy, "keep").await;
    assert_eq!(proxy.state().thinking.memory_stores(), 1);

    // A runtime model with interleaved thinking, then deleted through the
    // admin API: its store goes with it.
    let (status, v) = admin_call(
        &proxy,
        "POST",
        "/admin/models",
        Some(json!({"model_name": "rt", "api_base": mock.url, "interleaved_thinking": {"enabled": true}})),
    )
    .await;
    assert!(status == 200 || status == 201, "{status} {v}");
    tool_turn(&proxy, "rt").await;
    assert_eq!(proxy.state().thinking.memory_stores(), 2);
    let (status, v) = admin_call(&proxy, "DELETE", "/admin/models/rt", None).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(proxy.state().thinking.memory_stores(), 1);
    proxy.shutdown().await;
}
