//! Test harness: a scriptable mock upstream (axum on port 0) and the real
//! proxy on port 0, started in-process. No global ports, no sleeps for
//! readiness: both listeners are bound before the functions return. Every
//! module of the test binary uses it as `crate::support`.
#![allow(dead_code)]

pub mod anthropic;
pub mod browser;
pub mod child;
pub mod forward;
pub mod logged;
pub mod pg;
pub mod raw;
pub mod redis;
pub mod services;
pub mod tls;
pub mod vectors;
pub mod warnings;

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::Response;
use bytes::Bytes;
use futures::StreamExt;
use http::{HeaderMap, StatusCode};
use serde_json::{Value, json};
use yallmp::Server;
use yallmp::config::{Backend, Config, ConfigError, DatabaseTarget, Env};

/// What the mock answers to one request.
#[derive(Clone, Debug)]
pub enum Reply {
    /// A chat completion that says which model it was asked for and echoes
    /// the request's `echo` field.
    Echo,
    /// Status and JSON body.
    Json(u16, Value),
    /// Status, extra headers and a JSON body.
    JsonHeaders(u16, Vec<(&'static str, String)>, Value),
    /// Status, content type, raw body.
    Raw(u16, &'static str, String),
    /// Status, content type, a binary body (an AWS event stream).
    Binary(u16, &'static str, Bytes),
    /// An event stream: these frames (raw text, terminators included),
    /// `gap` apart; then the end.
    Sse { frames: Vec<String>, gap: Duration },
    /// An event stream that sends these frames then breaks the connection.
    SseCut(Vec<String>),
    /// An event stream that sends these frames then goes silent forever.
    SseStall(Vec<String>),
    /// An event stream whose first frame goes out at once and each later
    /// one only after the test adds a permit to `gate`: a test can prove
    /// frames reach the client one by one (nothing buffers them).
    SseGated {
        frames: Vec<String>,
        gate: Arc<tokio::sync::Semaphore>,
    },
    /// Waits before answering.
    Delay(Duration, Box<Reply>),
}

/// A request the mock received.
#[derive(Clone, Debug)]
pub struct Hit {
    pub method: http::Method,
    pub path: String,
    /// The query string (empty when there is none).
    pub query: String,
    pub headers: HeaderMap,
    pub raw: Bytes,
    /// When the request arrived.
    pub at: std::time::Instant,
    /// The connection it came on (the proxy's side of it).
    pub peer: Option<std::net::SocketAddr>,
}

impl Hit {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.raw).unwrap_or(Value::Null)
    }
}

#[derive(Default)]
struct MockState {
    script: Mutex<VecDeque<Reply>>,
    default: Mutex<Option<Reply>>,
    hits: Mutex<Vec<Hit>>,
}

/// A running mock upstream.
pub struct Mock {
    /// Base URL to use as `api_base`, ending in `/v1`.
    pub url: String,
    state: Arc<MockState>,
}

impl Mock {
    /// Starts a mock that answers `default` when its script is empty.
    pub async fn start(default: Reply) -> Mock {
        let state = Arc::new(MockState::default());
        *state.default.lock().unwrap() = Some(default);
        let app = Router::new().fallback(handle).with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let _ = axum::serve(
                listener,
                app.into_make_service_with_connect_info::<std::net::SocketAddr>(),
            )
            .await;
        });
        Mock {
            url: format!("http://{addr}/v1"),
            state,
        }
    }

    /// Answers the next requests with these, in order, before the default.
    pub fn push(&self, reply: Reply) -> &Self {
        self.state.script.lock().unwrap().push_back(reply);
        self
    }

    pub fn hits(&self) -> Vec<Hit> {
        self.state.hits.lock().unwrap().clone()
    }

    pub fn count(&self) -> usize {
        self.state.hits.lock().unwrap().len()
    }
}

async fn handle(State(state): State<Arc<MockState>>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let raw = axum::body::to_bytes(body, usize::MAX)
        .await
        .unwrap_or_default();
    let hit = Hit {
        method: parts.method.clone(),
        path: parts.uri.path().to_string(),
        query: parts.uri.query().unwrap_or_default().to_string(),
        headers: parts.headers.clone(),
        raw,
        at: std::time::Instant::now(),
        peer: parts
            .extensions
            .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
            .map(|c| c.0),
    };
    state.hits.lock().unwrap().push(hit.clone());
    let reply = state
        .script
        .lock()
        .unwrap()
        .pop_front()
        .or_else(|| state.default.lock().unwrap().clone())
        .unwrap_or(Reply::Echo);
    answer(reply, hit.json()).await
}

fn answer(reply: Reply, request: Value) -> futures::future::BoxFuture<'static, Response> {
    Box::pin(async move {
        match reply {
            Reply::Echo => {
                let model = request["model"].clone();
                json_response(
                    200,
                    vec![],
                    json!({
                        "id": "chatcmpl-mock", "object": "chat.completion", "created": 1, "model": model,
                        "choices": [{"index": 0, "message": {"role": "assistant", "content": format!("model={}", model.as_str().unwrap_or(""))}, "finish_reason": "stop"}],
                        "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5},
                        "echo": request.get("echo").cloned().unwrap_or(Value::Null),
                        "mock_extra": {"kept": true}
                    }),
                )
            }
            Reply::Json(status, body) => json_response(status, vec![], body),
            Reply::JsonHeaders(status, headers, body) => json_response(status, headers, body),
            Reply::Binary(status, ct, body) => Response::builder()
                .status(status)
                .header("content-type", ct)
                .body(Body::from(body))
                .unwrap(),
            Reply::Raw(status, ct, body) => Response::builder()
                .status(status)
                .header("content-type", ct)
                .body(Body::from(body))
                .unwrap(),
            Reply::Sse { frames, gap } => {
                let s = futures::stream::iter(frames).then(move |f| async move {
                    tokio::time::sleep(gap).await;
                    Ok::<_, Infallible>(Bytes::from(f))
                });
                sse_response(Body::from_stream(s))
            }
            Reply::SseCut(frames) => {
                // Frames are flushed one by one before the connection breaks.
                let s = futures::stream::iter(frames.into_iter().map(Some).chain([None])).then(
                    |f| async move {
                        tokio::time::sleep(Duration::from_millis(30)).await;
                        f.map(Bytes::from)
                            .ok_or_else(|| std::io::Error::other("cut"))
                    },
                );
                sse_response(Body::from_stream(s))
            }
            Reply::SseStall(frames) => {
                let s = futures::stream::iter(
                    frames
                        .into_iter()
                        .map(|f| Ok::<_, Infallible>(Bytes::from(f))),
                )
                .chain(futures::stream::pending());
                sse_response(Body::from_stream(s))
            }
            Reply::SseGated { frames, gate } => {
                let s =
                    futures::stream::iter(frames.into_iter().enumerate()).then(move |(i, f)| {
                        let gate = gate.clone();
                        async move {
                            if i > 0
                                && let Ok(permit) = gate.acquire().await
                            {
                                permit.forget();
                            }
                            Ok::<_, Infallible>(Bytes::from(f))
                        }
                    });
                sse_response(Body::from_stream(s))
            }
            Reply::Delay(d, inner) => {
                tokio::time::sleep(d).await;
                answer(*inner, request).await
            }
        }
    })
}

fn json_response(status: u16, headers: Vec<(&'static str, String)>, body: Value) -> Response {
    let mut b = Response::builder()
        .status(StatusCode::from_u16(status).unwrap())
        .header("content-type", "application/json");
    for (k, v) in headers {
        b = b.header(k, v);
    }
    b.body(Body::from(body.to_string())).unwrap()
}

fn sse_response(body: Body) -> Response {
    Response::builder()
        .status(200)
        .header("content-type", "text/event-stream")
        .body(body)
        .unwrap()
}

/// One `data:` frame of a chat completion chunk carrying `content`.
pub fn chunk(content: &str) -> String {
    format!(
        "data: {}\n\n",
        json!({"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "m",
               "choices": [{"index": 0, "delta": {"content": content}, "finish_reason": null}]})
    )
}

pub const DONE: &str = "data: [DONE]\n\n";

/// The config of this YAML text with no process environment (only
/// `vars`), serving on 127.0.0.1, port 0: the one way the tests make a
/// config, a backend or a model from YAML.
pub fn config_with_env(yaml: &str, vars: &[(&str, &str)]) -> Config {
    let env = Env::isolated(vars.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    let mut config = Config::from_yaml(yaml, None, &env).unwrap_or_else(|e| panic!("config: {e}"));
    config.server.host = "127.0.0.1".into();
    config.server.port = 0;
    config
}

/// [`config_with_env`] with no variables.
pub fn config(yaml: &str) -> Config {
    config_with_env(yaml, &[])
}

/// Why this YAML text is not a config (no process environment).
pub fn config_error(yaml: &str) -> ConfigError {
    match Config::from_yaml(yaml, None, &Env::isolated::<[(&str, &str); 0], _, _>([])) {
        Ok(_) => panic!("expected a config error for:\n{yaml}"),
        Err(e) => e,
    }
}

/// The first backend of the first model of this YAML text.
pub fn backend(yaml: &str) -> Backend {
    let config = config(yaml);
    (*config.models[0].backends[0]).clone()
}

/// Starts the proxy on port 0 with this config text and no process
/// environment (only `vars`).
pub async fn proxy_with_env(yaml: &str, vars: &[(&str, &str)]) -> Server {
    let mut config = config_with_env(yaml, vars);
    isolate_logs(&mut config);
    yallmp::serve(config).await.unwrap()
}

/// Starts the proxy for `yaml`, its log in a fresh SQLite database, or in
/// `target` when given.
pub async fn proxy_logging_to(yaml: &str, target: Option<DatabaseTarget>) -> Server {
    let mut config = config(yaml);
    isolate_logs(&mut config);
    if let Some(t) = target {
        config.database.target = t;
    }
    yallmp::serve(config).await.unwrap()
}

/// Points the request log's files and SQLite database at a fresh directory
/// under the target dir, so tests never share or litter the repo.
pub fn isolate_logs(config: &mut Config) -> std::path::PathBuf {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("test-logs")
        .join(uuid::Uuid::new_v4().simple().to_string());
    if config.logging.files_dir.is_some() {
        config.logging.files_dir = Some(dir.join("requests"));
    }
    if let DatabaseTarget::Sqlite { path } = &mut config.database.target {
        *path = dir.join("yallmp.db");
    }
    dir
}

pub async fn proxy(yaml: &str) -> Server {
    proxy_with_env(yaml, &[]).await
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder().build().unwrap()
}

/// POSTs JSON to the proxy; returns status, headers and body text.
pub async fn post(server: &Server, path: &str, body: &Value) -> (u16, HeaderMap, String) {
    let r = client()
        .post(format!("{}{path}", server.url()))
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    (status, headers, r.text().await.unwrap())
}

/// POSTs JSON to the proxy with these extra headers; returns status,
/// headers and body text.
pub async fn post_with(
    server: &Server,
    path: &str,
    body: &Value,
    headers: &[(&str, &str)],
) -> (u16, HeaderMap, String) {
    let mut req = client().post(format!("{}{path}", server.url())).json(body);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    (status, headers, r.text().await.unwrap())
}

/// The proxy's `/metrics` text (no password).
pub async fn metrics_text(server: &Server) -> String {
    client()
        .get(format!("{}/metrics", server.url()))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// GETs a path of the proxy and reads the JSON answer.
pub async fn get_json(server: &Server, path: &str) -> Value {
    client()
        .get(format!("{}{path}", server.url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// Data payloads of an SSE body, in order.
pub fn sse_data(body: &str) -> Vec<String> {
    body.split("\n\n")
        .filter_map(|f| {
            let data: Vec<&str> = f.lines().filter_map(|l| l.strip_prefix("data: ")).collect();
            (!data.is_empty()).then(|| data.join("\n"))
        })
        .collect()
}

/// The value of the Prometheus series `name` whose labels include all of
/// `labels`, in a `/metrics` text.
pub fn metric_value(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
        })
        .find(|l| {
            labels
                .iter()
                .all(|(k, v)| l.contains(&format!("{k}=\"{v}\"")))
        })
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}
