//! `previous_response_id` and `GET /v1/responses/{id}` on translated
//! backends (a chat-only mock): turns rebuilt from the request log's
//! database (SQLite and PostgreSQL), right after the answer (the in-memory
//! map) and after a restart (the database alone), JSON and streams; unknown
//! ids, another client's ids and a log without a database answer 404.

use serde_json::{Value, json};

use yallmp::config::{Config, Env};

use crate::support;
use crate::support::*;

fn completion(id: &str, text: &str) -> Value {
    json!({"id": id, "object": "chat.completion", "created": 7, "model": "up",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 9, "completion_tokens": 3, "total_tokens": 12}})
}

fn yaml(mock: &Mock, tail: &str) -> String {
    format!(
        "model_list:\n  - {{model_name: m, model_params: {{api_base: '{}', supports_responses: false}}}}\n\
         proxy_settings: {{enable_responses_endpoint: true, logging: {{files: {{enabled: false}}}}{tail}}}\n",
        mock.url
    )
}

fn sqlite_db(yaml: &str) -> String {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("previous-response")
        .join(uuid::Uuid::new_v4().simple().to_string());
    format!(
        "{yaml}database: {{connection: {{sqlite: {{path: '{}'}}}}}}\n",
        dir.join("log.db").display()
    )
}

/// The proxy on this config as written (the database where it says).
async fn start(yaml: &str) -> yallmp::Server {
    let mut c = Config::from_yaml(yaml, None, &Env::default()).unwrap();
    c.server.host = "127.0.0.1".into();
    c.server.port = 0;
    yallmp::serve(c).await.unwrap()
}

async fn post_key(
    server: &yallmp::Server,
    key: Option<&str>,
    path: &str,
    body: &Value,
) -> (u16, String) {
    let mut r = client()
        .post(format!("{}{path}", server.url()))
        .header("content-type", "application/json")
        .body(body.to_string());
    if let Some(k) = key {
        r = r.bearer_auth(k);
    }
    let r = r.send().await.unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

async fn get_key(server: &yallmp::Server, key: Option<&str>, path: &str) -> (u16, Value) {
    let mut r = client().get(format!("{}{path}", server.url()));
    if let Some(k) = key {
        r = r.bearer_auth(k);
    }
    let r = r.send().await.unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

/// The `response` of a stream's `response.completed` event.
fn completed(body: &str) -> Value {
    sse_data(body)
        .iter()
        .filter_map(|d| serde_json::from_str::<Value>(d).ok())
        .find(|v| v["type"] == "response.completed")
        .map(|v| v["response"].clone())
        .unwrap_or_else(|| panic!("no response.completed in {body}"))
}

fn not_found(id: &str) -> Value {
    json!({"error": {"message": format!("Previous response with id '{id}' not found."),
        "type": "invalid_request_error", "param": "previous_response_id",
        "code": "previous_response_not_found"}})
}

/// Turn 1 (JSON or stream), turn 2 chained at once, GET of turn 1; then a
/// restart and turn 3 chained from turn 2 out of the database alone.
async fn chain_survives_a_restart(yaml: &str, stream_first: bool) {
    let mock = Mock::start(Reply::Echo).await;
    let yaml = yaml.replace("MOCK", &mock.url);
    let first = start(&yaml).await;
    if stream_first {
        mock.push(Reply::Sse {
            frames: vec![chunk("Hi "), chunk("there."), DONE.to_string()],
            gap: std::time::Duration::ZERO,
        });
    } else {
        mock.push(Reply::Json(200, completion("chatcmpl-1", "Hi there.")));
    }
    mock.push(Reply::Json(200, completion("chatcmpl-1", "Fine.")));
    mock.push(Reply::Json(200, completion("chatcmpl-1", "Bye.")));
    let req =
        json!({"model": "m", "instructions": "Be nice.", "input": "Hello", "stream": stream_first});
    let (status, body) = post_key(&first, None, "/v1/responses", &req).await;
    assert_eq!(status, 200, "{body}");
    let r1 = if stream_first {
        completed(&body)
    } else {
        serde_json::from_str::<Value>(&body).unwrap()
    };
    let id1 = r1["id"].as_str().unwrap().to_string();
    assert!(
        id1.starts_with("resp_") && id1 != "resp_chatcmpl-1",
        "{id1}"
    );
    assert_eq!(r1["output"][0]["content"][0]["text"], "Hi there.");
    // Chained at once: the writer may not have stored turn 1 yet.
    let req = json!({"model": "m", "previous_response_id": id1,
        "input": [{"role": "user", "content": [{"type": "input_text", "text": "How are you?"}]}]});
    let (status, body) = post_key(&first, None, "/v1/responses", &req).await;
    assert_eq!(status, 200, "{body}");
    let r2: Value = serde_json::from_str(&body).unwrap();
    let id2 = r2["id"].as_str().unwrap().to_string();
    assert_ne!(id1, id2);
    assert_eq!(
        mock.hits()[1].json()["messages"],
        json!([
            {"role": "user", "content": "Hello"},
            {"role": "assistant", "content": "Hi there."},
            {"role": "user", "content": "How are you?"}
        ]),
        "turn 2 carries turn 1 (instructions are not carried over, as in OpenAI's API)"
    );
    let (status, got) = get_key(&first, None, &format!("/v1/responses/{id1}")).await;
    assert_eq!(status, 200, "{got}");
    assert_eq!(got, r1);
    first.shutdown().await;

    // A new process: nothing in memory, only the database.
    let second = start(&yaml).await;
    let req = json!({"model": "m", "previous_response_id": id2, "input": "Bye?"});
    let (status, body) = post_key(&second, None, "/v1/responses", &req).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        mock.hits()[2].json()["messages"],
        json!([
            {"role": "user", "content": "Hello"},
            {"role": "assistant", "content": "Hi there."},
            {"role": "user", "content": "How are you?"},
            {"role": "assistant", "content": "Fine."},
            {"role": "user", "content": "Bye?"}
        ])
    );
    let (status, got) = get_key(&second, None, &format!("/v1/responses/{id1}")).await;
    assert_eq!(status, 200, "{got}");
    assert_eq!(got, r1);
    let (status, body) = post_key(
        &second,
        None,
        "/v1/responses",
        &json!({"model": "m", "previous_response_id": "resp_nope", "input": "x"}),
    )
    .await;
    assert_eq!(status, 404, "{body}");
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap(),
        not_found("resp_nope")
    );
    second.shutdown().await;
}

#[tokio::test]
async fn json_turns_chain_on_sqlite_across_a_restart() {
    chain_survives_a_restart(&sqlite_db(&yaml_placeholder("")), false).await;
}

#[tokio::test]
async fn stream_turns_chain_on_sqlite_across_a_restart() {
    chain_survives_a_restart(&sqlite_db(&yaml_placeholder("")), true).await;
}

#[tokio::test]
async fn turns_chain_on_postgres_across_a_restart() {
    let Some(base) = pg::base_url() else {
        return;
    };
    for stream in [false, true] {
        let url = pg::fresh_database(&base).await;
        let yaml = format!("{}database: {{url: '{url}'}}\n", yaml_placeholder(""));
        chain_survives_a_restart(&yaml, stream).await;
        pg::drop_database(&base, &url).await;
    }
}

/// The config with `MOCK` for the mock's URL (the mock starts later).
fn yaml_placeholder(tail: &str) -> String {
    format!(
        "model_list:\n  - {{model_name: m, model_params: {{api_base: 'MOCK', supports_responses: false}}}}\n\
         proxy_settings: {{enable_responses_endpoint: true, logging: {{files: {{enabled: false}}}}{tail}}}\n"
    )
}

#[tokio::test]
async fn another_clients_response_is_not_found() {
    let mock = Mock::start(Reply::Json(200, completion("c", "Hi."))).await;
    let server = proxy(&yaml(&mock, ", auth: {api_keys: ['ck-one', 'ck-two']}")).await;
    let (status, body) = post_key(
        &server,
        Some("ck-one"),
        "/v1/responses",
        &json!({"model": "m", "input": "Hello"}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let id = serde_json::from_str::<Value>(&body).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let chained = json!({"model": "m", "previous_response_id": id, "input": "More"});
    let (status, body) = post_key(&server, Some("ck-two"), "/v1/responses", &chained).await;
    assert_eq!(status, 404, "{body}");
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap(),
        not_found(&id)
    );
    let (status, _) = get_key(&server, Some("ck-two"), &format!("/v1/responses/{id}")).await;
    assert_eq!(status, 404);
    assert_eq!(
        mock.count(),
        1,
        "nothing went upstream for the other client"
    );
    let (status, body) = post_key(&server, Some("ck-one"), "/v1/responses", &chained).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(mock.hits()[1].json()["messages"][1]["content"], "Hi.");
    let (status, got) = get_key(&server, Some("ck-one"), &format!("/v1/responses/{id}")).await;
    assert_eq!(status, 200);
    assert_eq!(got["id"], id);
    server.shutdown().await;
}

#[tokio::test]
async fn without_a_log_database_responses_are_not_kept() {
    let mock = Mock::start(Reply::Json(200, completion("c", "Hi."))).await;
    let server = proxy(&format!(
        "model_list:\n  - {{model_name: m, model_params: {{api_base: '{}', supports_responses: false}}}}\n\
         proxy_settings: {{enable_responses_endpoint: true, logging: {{files: {{enabled: false}}, database: {{enabled: false}}}}}}\n",
        mock.url
    ))
    .await;
    let (status, _, body) = post(
        &server,
        "/v1/responses",
        &json!({"model": "m", "input": "Hello"}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let id = serde_json::from_str::<Value>(&body).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let (status, _, body) = post(
        &server,
        "/v1/responses",
        &json!({"model": "m", "previous_response_id": id, "input": "More"}),
    )
    .await;
    assert_eq!(status, 404, "{body}");
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap(),
        not_found(&id)
    );
    let (status, got) = get_key(&server, None, &format!("/v1/responses/{id}")).await;
    assert_eq!(status, 404, "{got}");
    assert_eq!(
        got["error"]["message"],
        format!("No response found with id '{id}'.")
    );
    server.shutdown().await;
}

/// A tool call in turn 1; turn 2 sends only the tool's output: the backend
/// gets the call as an assistant `tool_calls` turn, then the `tool` message.
#[tokio::test]
async fn a_tool_round_trip_chains() {
    let call = json!({"id": "c", "object": "chat.completion", "created": 7, "model": "up",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": null,
            "tool_calls": [{"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}}]},
            "finish_reason": "tool_calls"}]});
    let mock = Mock::start(Reply::Json(200, completion("c", "18C in Paris."))).await;
    mock.push(Reply::Json(200, call));
    let server = proxy(&yaml(&mock, "")).await;
    let tools =
        json!([{"type": "function", "name": "get_weather", "parameters": {"type": "object"}}]);
    let (status, _, body) = post(
        &server,
        "/v1/responses",
        &json!({"model": "m", "input": "Weather in Paris?", "tools": tools}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let r1: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(r1["output"][0]["type"], "function_call");
    let (status, _, body) = post(
        &server,
        "/v1/responses",
        &json!({"model": "m", "previous_response_id": r1["id"], "tools": tools,
            "input": [{"type": "function_call_output", "call_id": "call_1", "output": "18C"}]}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        mock.hits()[1].json()["messages"],
        json!([
            {"role": "user", "content": "Weather in Paris?"},
            {"role": "assistant", "content": null, "tool_calls": [{"id": "call_1", "type": "function",
                "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}}]},
            {"role": "tool", "tool_call_id": "call_1", "content": "18C"}
        ])
    );
    server.shutdown().await;
}

/// An `api_type: anthropic` backend: turn 1's tool call comes back to it as
/// a `tool_use` block before turn 2's `tool_result`.
#[tokio::test]
async fn an_anthropic_backend_chains() {
    let mock = Mock::start(Reply::Raw(
        200,
        "application/json",
        support::anthropic::fixture("message_response.json"),
    ))
    .await;
    let server = proxy(&format!(
        "model_list:\n  - {{model_name: m, model_params: {{api_base: '{}', api_type: anthropic, api_key: k}}}}\n\
         proxy_settings: {{enable_responses_endpoint: true, logging: {{files: {{enabled: false}}}}}}\n",
        mock.url
    ))
    .await;
    let (status, _, body) = post(
        &server,
        "/v1/responses",
        &json!({"model": "m", "input": "weather in Paris?", "max_output_tokens": 100}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let r1: Value = serde_json::from_str(&body).unwrap();
    let (status, _, body) = post(
        &server,
        "/v1/responses",
        &json!({"model": "m", "previous_response_id": r1["id"], "max_output_tokens": 100,
            "input": [{"type": "function_call_output", "call_id": "toolu_01A", "output": "18C"}]}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let sent = mock.hits()[1].json();
    let msgs = sent["messages"].as_array().unwrap();
    assert_eq!(msgs[0]["role"], "user");
    assert_eq!(msgs[1]["role"], "assistant");
    assert!(
        msgs[1]["content"]
            .as_array()
            .unwrap()
            .iter()
            .any(|b| b["type"] == "tool_use" && b["id"] == "toolu_01A"),
        "{sent}"
    );
    assert_eq!(msgs[2]["content"][0]["type"], "tool_result", "{sent}");
    assert_eq!(msgs[2]["content"][0]["tool_use_id"], "toolu_01A");
    server.shutdown().await;
}
