//! The Responses API's WebSocket mode (`GET /v1/responses` upgraded): turns
//! as `response.create` messages through the POST pipeline to a chat-only
//! mock, events back as messages, `previous_response_id` within the socket,
//! errors as `error` messages on a socket that stays usable, client keys on
//! the upgrade. A real WebSocket client (tokio-tungstenite), the real proxy.

use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use crate::support;
use crate::support::*;

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

fn yaml(mock: &Mock, tail: &str) -> String {
    format!(
        "model_list:\n  - {{model_name: m, model_params: {{api_base: '{}', supports_responses: false}}}}\n\
         proxy_settings: {{enable_responses_endpoint: true{tail}}}\n\
         database: {{connection: {{sqlite: {{path: 'unused.db'}}}}}}\n",
        mock.url
    )
}

fn ws_url(server: &yallmp::Server, path: &str) -> String {
    format!("{}{path}", server.url().replacen("http://", "ws://", 1))
}

async fn connect(server: &yallmp::Server, path: &str, key: Option<&str>) -> Socket {
    let mut req = ws_url(server, path).into_client_request().unwrap();
    if let Some(k) = key {
        req.headers_mut()
            .insert("authorization", format!("Bearer {k}").parse().unwrap());
    }
    let (socket, response) = tokio_tungstenite::connect_async(req).await.unwrap();
    assert_eq!(response.status().as_u16(), 101);
    socket
}

async fn send(socket: &mut Socket, event: Value) {
    socket
        .send(Message::Text(event.to_string().into()))
        .await
        .unwrap();
}

/// The next text message, as JSON (a generous deadline against a hang).
async fn next(socket: &mut Socket) -> Value {
    loop {
        let m = tokio::time::timeout(std::time::Duration::from_secs(30), socket.next())
            .await
            .expect("no message within 30 s")
            .expect("the socket closed")
            .unwrap();
        match m {
            Message::Text(t) => return serde_json::from_str(&t).unwrap(),
            Message::Ping(_) | Message::Pong(_) => continue,
            other => panic!("unexpected message {other:?}"),
        }
    }
}

/// A turn's events up to and including `response.completed` (or `error`).
async fn turn(socket: &mut Socket) -> Vec<Value> {
    let mut events = Vec::new();
    loop {
        let v = next(socket).await;
        let end = v["type"] == "response.completed" || v["type"] == "error";
        events.push(v);
        if end {
            return events;
        }
    }
}

fn stream(parts: &[&str]) -> Reply {
    let mut frames: Vec<String> = parts.iter().map(|p| chunk(p)).collect();
    frames.push(DONE.to_string());
    Reply::Sse {
        frames,
        gap: std::time::Duration::ZERO,
    }
}

fn text_of(events: &[Value]) -> String {
    events
        .iter()
        .filter(|e| e["type"] == "response.output_text.delta")
        .map(|e| e["delta"].as_str().unwrap_or_default())
        .collect()
}

async fn server_with_db(yaml: &str) -> yallmp::Server {
    // `proxy` points the SQLite file at a fresh directory.
    proxy(yaml).await
}

/// A mock that streams these answers in turn, a proxy (with a log
/// database) in front of it, and a client socket on `path`.
async fn socket_to(answers: &[&[&str]], path: &str) -> (Mock, yallmp::Server, Socket) {
    let mock = Mock::start(Reply::Echo).await;
    for parts in answers {
        mock.push(stream(parts));
    }
    let server = server_with_db(&yaml(&mock, "")).await;
    let socket = connect(&server, path, None).await;
    (mock, server, socket)
}

#[tokio::test]
async fn two_turns_on_one_socket_chain_with_previous_response_id() {
    let (mock, server, mut socket) =
        socket_to(&[&["Hi ", "there."], &["Fine."]], "/v1/responses").await;
    // Turn 1: the request's fields at the top level, as OpenAI sends them.
    send(
        &mut socket,
        json!({"type": "response.create", "model": "m", "input": "Hello"}),
    )
    .await;
    let first = turn(&mut socket).await;
    assert_eq!(first[0]["type"], "response.created", "{first:?}");
    let last = first.last().unwrap();
    assert_eq!(last["type"], "response.completed", "{first:?}");
    for (i, e) in first.iter().enumerate() {
        assert_eq!(e["sequence_number"], json!(i), "every event numbered: {e}");
    }
    assert_eq!(text_of(&first), "Hi there.");
    let id1 = last["response"]["id"].as_str().unwrap().to_string();
    assert_eq!(mock.hits()[0].path, "/v1/chat/completions");
    assert_eq!(mock.hits()[0].json()["stream"], true);

    // Turn 2: only the new input and the previous id, nested under
    // `response` (the other accepted shape).
    send(
        &mut socket,
        json!({"type": "response.create", "response": {"model": "m", "previous_response_id": id1,
            "input": [{"role": "user", "content": [{"type": "input_text", "text": "How are you?"}]}]}}),
    )
    .await;
    let second = turn(&mut socket).await;
    let last = second.last().unwrap();
    assert_eq!(last["type"], "response.completed", "{second:?}");
    assert_eq!(text_of(&second), "Fine.");
    assert_ne!(last["response"]["id"].as_str().unwrap(), id1);
    assert_eq!(
        mock.hits()[1].json()["messages"],
        json!([
            {"role": "user", "content": "Hello"},
            {"role": "assistant", "content": "Hi there."},
            {"role": "user", "content": "How are you?"}
        ]),
        "the backend saw the whole conversation"
    );
    socket.close(None).await.unwrap();
    server.shutdown().await;
}

#[tokio::test]
async fn an_error_before_streaming_is_a_message_and_the_socket_stays_usable() {
    let (mock, server, mut socket) = socket_to(&[&["ok"]], "/responses").await;
    send(
        &mut socket,
        json!({"type": "response.create", "model": "nope", "input": "Hello"}),
    )
    .await;
    let e = next(&mut socket).await;
    assert_eq!(e["type"], "error", "{e}");
    assert_eq!(e["status"], 404, "{e}");
    assert_eq!(e["error"]["code"], "model_not_found", "{e}");
    // Not a `response.create`: an error too.
    send(&mut socket, json!({"type": "response.cancel"})).await;
    let e = next(&mut socket).await;
    assert_eq!(e["type"], "error", "{e}");
    assert_eq!(e["status"], 400, "{e}");
    // An unknown previous response: OpenAI's 404.
    send(
        &mut socket,
        json!({"type": "response.create", "model": "m", "input": "x", "previous_response_id": "resp_nope"}),
    )
    .await;
    let e = next(&mut socket).await;
    assert_eq!(e["type"], "error", "{e}");
    assert_eq!(e["status"], 404, "{e}");
    assert_eq!(e["error"]["code"], "previous_response_not_found", "{e}");
    // Still usable.
    send(
        &mut socket,
        json!({"type": "response.create", "model": "m", "input": "Hello"}),
    )
    .await;
    let events = turn(&mut socket).await;
    assert_eq!(events.last().unwrap()["type"], "response.completed");
    assert_eq!(text_of(&events), "ok");
    assert_eq!(mock.count(), 1);
    socket.close(None).await.unwrap();
    server.shutdown().await;
}

#[tokio::test]
async fn the_upgrade_needs_a_client_key_when_keys_are_configured() {
    let mock = Mock::start(Reply::Echo).await;
    mock.push(stream(&["ok"]));
    let server = server_with_db(&yaml(&mock, ", auth: {api_keys: ['ck-1']}")).await;
    for key in [None, Some("wrong")] {
        let mut req = ws_url(&server, "/v1/responses")
            .into_client_request()
            .unwrap();
        if let Some(k) = key {
            req.headers_mut()
                .insert("authorization", format!("Bearer {k}").parse().unwrap());
        }
        match tokio_tungstenite::connect_async(req).await {
            Err(tokio_tungstenite::tungstenite::Error::Http(r)) => {
                assert_eq!(r.status().as_u16(), 401, "{key:?}");
            }
            other => panic!("expected 401 for {key:?}, got {other:?}"),
        }
    }
    let mut socket = connect(&server, "/v1/responses", Some("ck-1")).await;
    send(
        &mut socket,
        json!({"type": "response.create", "model": "m", "input": "Hello"}),
    )
    .await;
    let events = turn(&mut socket).await;
    assert_eq!(events.last().unwrap()["type"], "response.completed");
    // The turn went upstream without the client's key.
    assert!(
        mock.hits()[0]
            .headers
            .get("authorization")
            .is_none_or(|v| v != "Bearer ck-1")
    );
    socket.close(None).await.unwrap();
    server.shutdown().await;
}

#[tokio::test]
async fn the_upgrade_follows_the_responses_switch_and_plain_get_is_426() {
    let mock = Mock::start(Reply::Echo).await;
    let off = proxy(&format!(
        "model_list:\n  - {{model_name: m, model_params: {{api_base: '{}'}}}}\n",
        mock.url
    ))
    .await;
    let req = ws_url(&off, "/v1/responses").into_client_request().unwrap();
    match tokio_tungstenite::connect_async(req).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(r)) => {
            assert_eq!(r.status().as_u16(), 404);
        }
        other => panic!("expected 404, got {other:?}"),
    }
    off.shutdown().await;
    let on = proxy(&yaml(&mock, "")).await;
    let r = client()
        .get(format!("{}/v1/responses", on.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 426);
    assert_eq!(r.headers()["upgrade"], "websocket");
    on.shutdown().await;
}

/// Without a database the log keeps no turns: the socket itself keeps its
/// last answer, so chaining on it works within the socket (and an older
/// id, or one from another socket, is OpenAI's 404).
#[tokio::test]
async fn without_a_database_the_socket_keeps_its_last_answer() {
    let mock = Mock::start(Reply::Echo).await;
    mock.push(stream(&["Hi there."]));
    mock.push(stream(&["Fine."]));
    mock.push(stream(&["Bye."]));
    let server = proxy(&format!(
        "model_list:\n  - {{model_name: m, model_params: {{api_base: '{}', supports_responses: false}}}}\n\
         proxy_settings: {{enable_responses_endpoint: true, logging: {{files: {{enabled: false}}, database: {{enabled: false}}}}}}\n",
        mock.url
    ))
    .await;
    let mut socket = connect(&server, "/v1/responses", None).await;
    let mut ids = Vec::new();
    let mut previous: Option<String> = None;
    for input in ["Hello", "How are you?", "Bye?"] {
        let mut event = json!({"type": "response.create", "model": "m", "input": input});
        if let Some(p) = &previous {
            event["previous_response_id"] = json!(p);
        }
        send(&mut socket, event).await;
        let events = turn(&mut socket).await;
        let last = events.last().unwrap();
        assert_eq!(last["type"], "response.completed", "{events:?}");
        let id = last["response"]["id"].as_str().unwrap().to_string();
        ids.push(id.clone());
        previous = Some(id);
    }
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
    // Only the last answer is kept.
    send(
        &mut socket,
        json!({"type": "response.create", "model": "m", "input": "x", "previous_response_id": ids[0]}),
    )
    .await;
    let e = next(&mut socket).await;
    assert_eq!(e["type"], "error", "{e}");
    assert_eq!(e["error"]["code"], "previous_response_not_found", "{e}");
    // Another socket does not see this one's answers.
    let mut other = connect(&server, "/v1/responses", None).await;
    send(
        &mut other,
        json!({"type": "response.create", "model": "m", "input": "x", "previous_response_id": ids[2]}),
    )
    .await;
    let e = next(&mut other).await;
    assert_eq!(e["error"]["code"], "previous_response_not_found", "{e}");
    // The failed turn left the last answer in place.
    mock.push(stream(&["Again."]));
    send(
        &mut socket,
        json!({"type": "response.create", "model": "m", "input": "More?", "previous_response_id": ids[2]}),
    )
    .await;
    let events = turn(&mut socket).await;
    assert_eq!(
        events.last().unwrap()["type"],
        "response.completed",
        "{events:?}"
    );
    assert_eq!(
        mock.hits()[3].json()["messages"].as_array().unwrap().len(),
        7
    );
    assert_eq!(mock.count(), 4);
    socket.close(None).await.unwrap();
    other.close(None).await.unwrap();
    server.shutdown().await;
}

/// Each turn is one record of the request log, like a `POST /v1/responses`
/// with `stream: true`: its own id (the answer's `resp_` id), the socket's
/// client address and redacted headers, its body, its outcome.
#[tokio::test]
async fn each_turn_is_logged_as_its_own_request() {
    let mock = Mock::start(Reply::Echo).await;
    mock.push(stream(&["one"]));
    mock.push(stream(&["two"]));
    let logged = support::logged::logged_proxy(
        &format!(
            "model_list:\n  - {{model_name: m, model_params: {{api_base: '{}', supports_responses: false}}}}\n\
             proxy_settings: {{enable_responses_endpoint: true, auth: {{api_keys: ['ck-1']}}}}\n\
             database: {{connection: {{sqlite: {{path: 'unused.db'}}}}}}\n",
            mock.url
        ),
        None,
    )
    .await;
    let mut socket = connect(&logged.server, "/v1/responses", Some("ck-1")).await;
    let mut own_ids = Vec::new();
    for input in ["first", "second"] {
        send(
            &mut socket,
            json!({"type": "response.create", "model": "m", "input": input}),
        )
        .await;
        let events = turn(&mut socket).await;
        let id = events.last().unwrap()["response"]["id"]
            .as_str()
            .unwrap()
            .to_string();
        let hex = id.strip_prefix("resp_").unwrap();
        own_ids.push(uuid::Uuid::parse_str(hex).unwrap().hyphenated().to_string());
    }
    assert_ne!(own_ids[0], own_ids[1]);
    for (own, input) in own_ids.iter().zip(["first", "second"]) {
        let ev = support::logged::record(&logged.dir, own).await;
        let req = support::logged::of_kind(&ev, "request")[0];
        assert_eq!(req["id"], json!(own));
        assert_eq!(req["method"], "POST");
        assert_eq!(req["path"], "/v1/responses");
        assert_eq!(req["headers"]["authorization"], "***");
        assert!(req["headers"].get("sec-websocket-key").is_none(), "{req}");
        assert!(req["client"].as_str().unwrap().starts_with("127.0.0.1:"));
        assert_eq!(req["body"]["input"], input);
        assert_eq!(req["body"]["stream"], true);
        assert_eq!(support::logged::outcome(&ev)["outcome"], "ok");
    }
    socket.close(None).await.unwrap();
    logged.server.shutdown().await;
}

/// Codex's prewarm: `generate: false` runs no model and sends nothing
/// upstream; its completed, empty response's id chains the next turn,
/// which carries the warm-up's input.
#[tokio::test]
async fn a_generate_false_warm_up_is_answered_here_and_chains() {
    let (mock, server, mut socket) = socket_to(&[&["Hi."]], "/v1/responses").await;
    send(
        &mut socket,
        json!({"type": "response.create", "model": "m", "generate": false,
            "input": [{"type": "message", "role": "user", "content": "Context."}]}),
    )
    .await;
    let warm = turn(&mut socket).await;
    assert_eq!(warm.len(), 2, "{warm:?}");
    assert_eq!(warm[0]["type"], "response.created");
    assert_eq!(warm[1]["sequence_number"], 1);
    let done = &warm[1]["response"];
    assert_eq!(done["status"], "completed");
    assert_eq!(done["output"], json!([]));
    let id = done["id"].as_str().unwrap().to_string();
    assert_eq!(mock.count(), 0, "nothing went upstream");
    send(
        &mut socket,
        json!({"type": "response.create", "model": "m", "previous_response_id": id, "input": "Hello"}),
    )
    .await;
    let events = turn(&mut socket).await;
    assert_eq!(
        events.last().unwrap()["type"],
        "response.completed",
        "{events:?}"
    );
    let sent = mock.hits()[0].json();
    assert_eq!(
        sent["messages"],
        json!([{"role": "user", "content": "Context."}, {"role": "user", "content": "Hello"}]),
        "{sent}"
    );
    assert!(sent.get("generate").is_none());
    // A warm-up for an unknown model is refused like a turn.
    send(
        &mut socket,
        json!({"type": "response.create", "model": "nope", "generate": false, "input": "x"}),
    )
    .await;
    let e = next(&mut socket).await;
    assert_eq!(e["error"]["code"], "model_not_found", "{e}");
    socket.close(None).await.unwrap();
    server.shutdown().await;
}

/// An open socket does not outlive the proxy: at shutdown it ends (the
/// serving runtime goes, and the connection with it; upgraded sockets are
/// outside the server's tracking of requests in flight).
#[tokio::test]
async fn shutdown_ends_an_idle_socket() {
    let (_mock, server, mut socket) = socket_to(&[&["ok"]], "/v1/responses").await;
    send(
        &mut socket,
        json!({"type": "response.create", "model": "m", "input": "Hello"}),
    )
    .await;
    let events = turn(&mut socket).await;
    assert_eq!(events.last().unwrap()["type"], "response.completed");
    server.shutdown().await;
    let m = tokio::time::timeout(std::time::Duration::from_secs(30), socket.next())
        .await
        .expect("the socket stayed open after shutdown");
    assert!(
        !matches!(m, Some(Ok(Message::Text(_)))),
        "nothing but the end: {m:?}"
    );
}

/// Sockets are bounded like connections: an upgraded socket leaves the
/// server's connection count, so sockets have `max_connections` slots of
/// their own (past them the upgrade gets 503), and a socket with no client
/// message for `idle_timeout` between turns is closed, freeing its slot.
#[tokio::test]
async fn sockets_are_capped_and_an_idle_one_is_closed() {
    let mock = Mock::start(Reply::Echo).await;
    let server = proxy(&yaml(
        &mock,
        ", server: {max_connections: 2, idle_timeout: 1}",
    ))
    .await;
    let mut first = connect(&server, "/v1/responses", None).await;
    let _second = connect(&server, "/v1/responses", None).await;
    let req = ws_url(&server, "/v1/responses")
        .into_client_request()
        .unwrap();
    match tokio_tungstenite::connect_async(req).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(r)) => {
            assert_eq!(r.status().as_u16(), 503)
        }
        other => panic!("a third socket was not refused: {other:?}"),
    }
    // Idle past 1 s: closed by the proxy (a generous deadline, not a timing).
    let end = tokio::time::timeout(std::time::Duration::from_secs(30), async {
        loop {
            match first.next().await {
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
                Some(Ok(_)) => {}
            }
        }
    })
    .await;
    assert!(end.is_ok(), "the idle socket stayed open");
    // Its slot is free again.
    tokio::time::timeout(std::time::Duration::from_secs(30), async {
        loop {
            let req = ws_url(&server, "/v1/responses")
                .into_client_request()
                .unwrap();
            if tokio_tungstenite::connect_async(req).await.is_ok() {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    })
    .await
    .expect("the closed socket's slot never came back");
}

/// A backend that serves the Responses API natively, over WebSocket (when
/// `websocket` is on; else it answers the upgrade 404) and over HTTP POST.
/// It records each socket it accepted, each `response.create` it got, the
/// `authorization` of each upgrade, and the POSTs.
#[derive(Clone, Default)]
struct NativeBackend {
    websocket: bool,
    sockets: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    turns: std::sync::Arc<std::sync::Mutex<Vec<Value>>>,
    auth: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    posts: std::sync::Arc<std::sync::Mutex<Vec<Value>>>,
}

impl NativeBackend {
    async fn start(websocket: bool) -> (Self, String) {
        use axum::routing::get;
        let backend = NativeBackend {
            websocket,
            ..Default::default()
        };
        let app = axum::Router::new()
            .route("/v1/responses", get(Self::upgrade).post(Self::post))
            .with_state(backend.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/v1", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        (backend, url)
    }

    async fn upgrade(
        axum::extract::State(b): axum::extract::State<NativeBackend>,
        headers: http::HeaderMap,
        ws: axum::extract::ws::WebSocketUpgrade,
    ) -> axum::response::Response {
        use axum::response::IntoResponse;
        if !b.websocket {
            return (http::StatusCode::NOT_FOUND, "no websocket here").into_response();
        }
        let auth = headers
            .get("authorization")
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default();
        b.auth.lock().unwrap().push(auth);
        b.sockets.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        ws.on_upgrade(move |socket| b.serve(socket))
    }

    async fn serve(self, mut socket: axum::extract::ws::WebSocket) {
        use axum::extract::ws::Message as M;
        while let Some(Ok(m)) = socket.recv().await {
            let M::Text(t) = m else { continue };
            let event: Value = serde_json::from_str(&t).unwrap();
            let n = {
                let mut turns = self.turns.lock().unwrap();
                turns.push(event.clone());
                turns.len()
            };
            let input = event["input"].to_string();
            if input.contains("refuse") {
                let e = json!({"type": "error", "status": 400, "error": {"type": "invalid_request_error",
                    "code": "bad_input", "message": "refused: sk-upstream-secret-key is not welcome"}});
                socket.send(M::Text(e.to_string().into())).await.unwrap();
                continue;
            }
            for e in Self::events(&format!("resp_up_{n}"), &event) {
                if socket.send(M::Text(e.to_string().into())).await.is_err() {
                    return;
                }
            }
            if input.contains("hang up") {
                return;
            }
        }
    }

    fn events(id: &str, request: &Value) -> Vec<Value> {
        let response = |status: &str| {
            json!({"id": id, "object": "response", "status": status, "model": request["model"],
                "previous_response_id": request.get("previous_response_id").cloned().unwrap_or(Value::Null),
                "output": [], "usage": {"input_tokens": 3, "output_tokens": 2, "total_tokens": 5}})
        };
        vec![
            json!({"type": "response.created", "sequence_number": 0, "response": response("in_progress")}),
            json!({"type": "response.output_text.delta", "sequence_number": 1, "item_id": "msg_1",
                "output_index": 0, "content_index": 0, "delta": format!("over the socket to {}", request["model"].as_str().unwrap_or_default())}),
            json!({"type": "response.completed", "sequence_number": 2, "response": response("completed")}),
        ]
    }

    async fn post(
        axum::extract::State(b): axum::extract::State<NativeBackend>,
        axum::Json(body): axum::Json<Value>,
    ) -> axum::response::Response {
        use axum::response::IntoResponse;
        b.posts.lock().unwrap().push(body.clone());
        let frames: String = Self::events("resp_http_1", &body)
            .iter()
            .map(|e| format!("event: {}\ndata: {e}\n\n", e["type"].as_str().unwrap()))
            .collect();
        ([("content-type", "text/event-stream")], frames).into_response()
    }
}

fn native_yaml(url: &str) -> String {
    format!(
        "model_list:\n  - {{model_name: m, model_params: {{api_base: '{url}', api_key: sk-upstream-secret-key, \
         target_model: up-model, responses_websocket: true}}}}\n\
         proxy_settings: {{enable_responses_endpoint: true}}\n\
         database: {{connection: {{sqlite: {{path: 'unused.db'}}}}}}\n"
    )
}

/// A backend with `responses_websocket: true` gets a client socket's turns
/// over one upstream socket: the `response.create` messages as the client
/// sent them (the upstream model, its own key on the upgrade, no HTTP
/// transport fields, `previous_response_id` passed on), its events back as
/// they came. An `error` message from it is a turn's error (its status, the
/// key masked) and the sockets stay usable.
#[tokio::test]
async fn a_backend_with_websocket_mode_gets_the_turns_over_one_socket() {
    let (backend, url) = NativeBackend::start(true).await;
    let server = server_with_db(&native_yaml(&url)).await;
    let mut socket = connect(&server, "/v1/responses", None).await;
    send(
        &mut socket,
        json!({"type": "response.create", "model": "m", "input": "Hello", "store": false}),
    )
    .await;
    let first = turn(&mut socket).await;
    assert_eq!(first.len(), 3, "{first:?}");
    assert_eq!(text_of(&first), "over the socket to up-model");
    let id1 = first[2]["response"]["id"].as_str().unwrap().to_string();
    assert_eq!(id1, "resp_up_1", "the backend's own id");

    // The second turn chains on the backend's id (its socket's cache).
    send(
        &mut socket,
        json!({"type": "response.create", "model": "m", "previous_response_id": id1,
            "input": [{"role": "user", "content": [{"type": "input_text", "text": "more"}]}]}),
    )
    .await;
    let second = turn(&mut socket).await;
    assert_eq!(second.last().unwrap()["type"], "response.completed");
    assert_eq!(second[2]["response"]["previous_response_id"], "resp_up_1");

    // A refused turn: an `error` message with the backend's status.
    send(
        &mut socket,
        json!({"type": "response.create", "model": "m", "input": "refuse this"}),
    )
    .await;
    let e = next(&mut socket).await;
    assert_eq!(e["type"], "error", "{e}");
    assert_eq!(e["status"], 400, "{e}");
    let message = e["error"]["message"].as_str().unwrap();
    assert!(message.starts_with("refused: "), "{e}");
    assert!(!message.contains("sk-upstream-secret-key"), "{e}");

    // Still one socket to the backend, for a turn after the error too.
    send(
        &mut socket,
        json!({"type": "response.create", "model": "m", "input": "again"}),
    )
    .await;
    assert_eq!(
        turn(&mut socket).await.last().unwrap()["type"],
        "response.completed"
    );
    assert_eq!(backend.sockets.load(std::sync::atomic::Ordering::SeqCst), 1);
    assert_eq!(
        backend.auth.lock().unwrap().as_slice(),
        ["Bearer sk-upstream-secret-key"]
    );
    let turns = backend.turns.lock().unwrap().clone();
    assert_eq!(turns.len(), 4);
    assert_eq!(
        turns[0],
        json!({"type": "response.create", "model": "up-model", "input": "Hello", "store": false})
    );
    assert_eq!(turns[1]["previous_response_id"], "resp_up_1");
    assert!(turns.iter().all(|t| t.get("stream").is_none()), "{turns:?}");
    assert!(backend.posts.lock().unwrap().is_empty());

    // A second client socket gets its own upstream socket.
    let mut other = connect(&server, "/v1/responses", None).await;
    send(
        &mut other,
        json!({"type": "response.create", "model": "m", "input": "Hello"}),
    )
    .await;
    assert_eq!(
        turn(&mut other).await.last().unwrap()["type"],
        "response.completed"
    );
    assert_eq!(backend.sockets.load(std::sync::atomic::Ordering::SeqCst), 2);
    socket.close(None).await.unwrap();
    other.close(None).await.unwrap();
    server.shutdown().await;
}

/// The backend closed its socket after a turn: the next turn opens a new
/// one and goes through.
#[tokio::test]
async fn a_closed_upstream_socket_is_opened_again() {
    let (backend, url) = NativeBackend::start(true).await;
    let server = server_with_db(&native_yaml(&url)).await;
    let mut socket = connect(&server, "/v1/responses", None).await;
    for input in ["then hang up", "Hello"] {
        send(
            &mut socket,
            json!({"type": "response.create", "model": "m", "input": input}),
        )
        .await;
        let events = turn(&mut socket).await;
        assert_eq!(
            events.last().unwrap()["type"],
            "response.completed",
            "{events:?}"
        );
    }
    assert_eq!(backend.sockets.load(std::sync::atomic::Ordering::SeqCst), 2);
    socket.close(None).await.unwrap();
    server.shutdown().await;
}

/// A backend marked `responses_websocket` that refuses the upgrade is
/// reached over HTTP, for that turn and the socket's next ones.
#[tokio::test]
async fn a_backend_that_refuses_the_upgrade_gets_http_turns() {
    let (backend, url) = NativeBackend::start(false).await;
    let server = server_with_db(&native_yaml(&url)).await;
    let mut socket = connect(&server, "/v1/responses", None).await;
    for _ in 0..2 {
        send(
            &mut socket,
            json!({"type": "response.create", "model": "m", "input": "Hello"}),
        )
        .await;
        let events = turn(&mut socket).await;
        assert_eq!(
            events.last().unwrap()["type"],
            "response.completed",
            "{events:?}"
        );
        assert_eq!(text_of(&events), "over the socket to up-model");
    }
    let posts = backend.posts.lock().unwrap().clone();
    assert_eq!(posts.len(), 2);
    assert_eq!(posts[0]["stream"], true);
    assert_eq!(posts[0]["model"], "up-model");
    assert_eq!(backend.sockets.load(std::sync::atomic::Ordering::SeqCst), 0);
    socket.close(None).await.unwrap();
    server.shutdown().await;
}
