//! OpenTelemetry traces (docs/observability.md): spans exported over OTLP
//! HTTP/protobuf to a collector made here (a mock that keeps what it is
//! sent, decoded with opentelemetry-proto), the client's `traceparent`
//! continued and each attempt's carried upstream, the GenAI attributes,
//! content events scrubbed; a collector that is down or silent costs no
//! request, and a full queue drops spans and counts them. The same against
//! a real receiver (Arize Phoenix) is tests/sdk/test_otel_phoenix.py.

use std::time::Duration;

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value as Any;
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message;
use serde_json::json;

use crate::support::{
    DONE, Mock, Reply, chunk, get_json, metric_value, metrics_text, post_with, proxy,
};

const SECRET: &str = "sk-upstream-secret-123456";

/// A collector: takes OTLP HTTP/protobuf on `/v1/traces`.
async fn collector() -> Mock {
    Mock::start(Reply::Raw(200, "application/x-protobuf", String::new())).await
}

/// Every span the collector was sent so far.
fn spans(c: &Mock) -> Vec<Span> {
    let mut out = Vec::new();
    for hit in c.hits() {
        assert_eq!(hit.path, "/v1/traces");
        assert_eq!(hit.headers["content-type"], "application/x-protobuf");
        assert_eq!(hit.headers["x-collector-key"], "collector-secret-42");
        let req = ExportTraceServiceRequest::decode(hit.raw.as_ref()).expect("OTLP protobuf");
        for rs in req.resource_spans {
            let service = rs
                .resource
                .iter()
                .flat_map(|r| r.attributes.iter())
                .find(|kv| kv.key == "service.name")
                .and_then(|kv| kv.value.as_ref()?.value.clone());
            assert_eq!(service, Some(Any::StringValue("yallmp-test".into())));
            for ss in rs.scope_spans {
                out.extend(ss.spans);
            }
        }
    }
    out
}

/// Waits (bounded) until `done` holds for the collected spans.
async fn collected(c: &Mock, done: impl Fn(&[Span]) -> bool) -> Vec<Span> {
    for _ in 0..300 {
        let s = spans(c);
        if done(&s) {
            return s;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the collector did not get the spans: {:#?}", spans(c));
}

fn attr(s: &Span, key: &str) -> Option<Any> {
    s.attributes
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref()?.value.clone())
}

fn text(s: &Span, key: &str) -> Option<String> {
    match attr(s, key)? {
        Any::StringValue(v) => Some(v),
        other => panic!("{key} is {other:?}"),
    }
}

fn int(s: &Span, key: &str) -> Option<i64> {
    match attr(s, key)? {
        Any::IntValue(v) => Some(v),
        other => panic!("{key} is {other:?}"),
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// The request span whose client sent this `x-request-id`, and its
/// attempts' spans in order.
fn request<'a>(all: &'a [Span], id: &str) -> Option<(&'a Span, Vec<&'a Span>)> {
    let root = all
        .iter()
        .find(|s| text(s, "yallmp.client_request_id").as_deref() == Some(id))?;
    let mut kids: Vec<&Span> = all
        .iter()
        .filter(|s| s.parent_span_id == root.span_id && s.trace_id == root.trace_id)
        .collect();
    kids.sort_by_key(|s| int(s, "yallmp.attempt_index"));
    Some((root, kids))
}

const SERVER: i32 = 2;
const CLIENT: i32 = 3;
const STATUS_ERROR: i32 = 2;

fn config(upstream: &Mock, collector: &Mock, extra: &str) -> String {
    format!(
        r#"
model_list:
  - model_name: m
    model_params:
      api_base: {up}
      api_key: {SECRET}
      target_model: up-m
  - model_name: flaky
    model_params:
      api_base: http://127.0.0.1:1/v1
      # Named by an id: fallbacks are told by the model, not the name.
      id: flaky-eu
      fallbacks: [m]
  - model_name: p
    model_params:
      api_base: {up}
    parsers:
      response: [parse_tags, swap_reasoning_content]
router_settings:
  num_retries: 1
  retry_backoff_ms: 1
proxy_settings:
  telemetry:
    endpoint: {c}
    service_name: yallmp-test
    headers: {{x-collector-key: collector-secret-42}}
    schedule_delay: 0.05
{extra}
"#,
        up = upstream.url,
        c = collector.url.trim_end_matches("/v1"),
    )
}

#[tokio::test]
async fn spans_follow_the_genai_conventions_and_the_trace_context() {
    let upstream = Mock::start(Reply::Echo).await;
    let c = collector().await;
    let server = proxy(&config(&upstream, &c, "    capture_content: true")).await;
    let parent_trace = "0af7651916cd43dd8448eb211c80319c";
    let parent_span = "b7ad6b7169203331";

    // A whole answer, in the client's trace.
    let traceparent = format!("00-{parent_trace}-{parent_span}-01");
    let (status, _, _) = post_with(
        &server,
        "/v1/chat/completions",
        &json!({"model": "m", "messages": [{"role": "user", "content": format!("my key is {SECRET}")}]}),
        &[
            ("x-request-id", "otel-json"),
            ("traceparent", &traceparent),
            ("tracestate", "congo=t61rcWkgMzE"),
        ],
    )
    .await;
    assert_eq!(status, 200);
    let hit = upstream.hits().pop().unwrap();
    let sent = hit.headers["traceparent"].to_str().unwrap().to_string();
    assert_eq!(hit.headers["tracestate"], "congo=t61rcWkgMzE");

    // A stream.
    upstream.push(Reply::Sse {
        frames: vec![
            chunk("Hel"),
            chunk("lo"),
            format!(
                "data: {}\n\n",
                json!({"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "up-m-2025",
                       "choices": [{"index": 0, "delta": {}, "finish_reason": "length"}],
                       "usage": {"prompt_tokens": 7, "completion_tokens": 5, "total_tokens": 12}})
            ),
            DONE.to_string(),
        ],
        gap: Duration::ZERO,
    });
    let (status, _, body) = post_with(
        &server,
        "/v1/chat/completions",
        &json!({"model": "m", "stream": true, "messages": [{"role": "user", "content": "hi"}]}),
        &[("x-request-id", "otel-stream")],
    )
    .await;
    assert_eq!(status, 200);
    assert!(body.contains("Hel"), "{body}");
    // A new trace: a traceparent upstream, and no empty tracestate.
    let hit = upstream.hits().pop().unwrap();
    assert!(hit.headers.contains_key("traceparent"));
    assert!(!hit.headers.contains_key("tracestate"));

    // A backend that is down, then its fallback.
    let (status, _, _) = post_with(
        &server,
        "/v1/chat/completions",
        &json!({"model": "flaky", "messages": [{"role": "user", "content": "hi"}]}),
        &[("x-request-id", "otel-fallback")],
    )
    .await;
    assert_eq!(status, 200);

    let all = collected(&c, |s| {
        ["otel-json", "otel-stream", "otel-fallback"]
            .iter()
            .all(|id| request(s, id).is_some_and(|(_, kids)| !kids.is_empty()))
    })
    .await;

    // The whole answer: the client's trace continued, its span the parent.
    let (root, kids) = request(&all, "otel-json").unwrap();
    assert_eq!(root.name, "chat m");
    assert_eq!(root.kind, SERVER);
    assert_eq!(hex(&root.trace_id), parent_trace);
    assert_eq!(hex(&root.parent_span_id), parent_span);
    assert_eq!(text(root, "gen_ai.operation.name").as_deref(), Some("chat"));
    assert_eq!(text(root, "gen_ai.request.model").as_deref(), Some("m"));
    assert_eq!(text(root, "gen_ai.response.model").as_deref(), Some("up-m"));
    assert_eq!(
        text(root, "gen_ai.response.id").as_deref(),
        Some("chatcmpl-mock")
    );
    assert_eq!(
        text(root, "gen_ai.provider.name").as_deref(),
        Some("openai")
    );
    assert_eq!(int(root, "gen_ai.usage.input_tokens"), Some(3));
    assert_eq!(int(root, "gen_ai.usage.output_tokens"), Some(2));
    assert_eq!(text(root, "server.address").as_deref(), Some("127.0.0.1"));
    assert_eq!(int(root, "http.response.status_code"), Some(200));
    assert_eq!(text(root, "yallmp.backend").as_deref(), Some("m#1"));
    assert!(text(root, "yallmp.request_id").is_some());
    match attr(root, "gen_ai.response.finish_reasons") {
        Some(Any::ArrayValue(a)) => assert_eq!(
            a.values[0].value,
            Some(Any::StringValue("stop".into())),
            "{a:?}"
        ),
        other => panic!("finish reasons: {other:?}"),
    }
    assert_eq!(kids.len(), 1);
    let attempt = kids[0];
    assert_eq!(attempt.kind, CLIENT);
    assert_eq!(attempt.name, "chat up-m");
    assert_eq!(
        text(attempt, "gen_ai.request.model").as_deref(),
        Some("up-m")
    );
    assert_eq!(int(attempt, "http.response.status_code"), Some(200));
    assert_eq!(
        int(attempt, "server.port"),
        upstream.url[17..].split('/').next().unwrap().parse().ok()
    );
    // The upstream got the attempt's own traceparent, in the same trace.
    assert_eq!(
        sent,
        format!("00-{parent_trace}-{}-01", hex(&attempt.span_id))
    );
    // Content as events, scrubbed of the backend's key.
    let prompt = root
        .events
        .iter()
        .find(|e| e.name == "gen_ai.content.prompt")
        .expect("prompt event");
    let Some(Any::StringValue(p)) = prompt.attributes[0].value.as_ref().unwrap().value.clone()
    else {
        panic!("{prompt:?}")
    };
    assert!(p.contains("my key is") && !p.contains(SECRET), "{p}");
    assert!(
        root.events
            .iter()
            .any(|e| e.name == "gen_ai.content.completion")
    );

    // The stream: a new trace; usage and finish reason from its frames.
    let (root, kids) = request(&all, "otel-stream").unwrap();
    assert!(root.parent_span_id.is_empty());
    assert_ne!(hex(&root.trace_id), parent_trace);
    assert_eq!(int(root, "gen_ai.usage.input_tokens"), Some(7));
    assert_eq!(int(root, "gen_ai.usage.output_tokens"), Some(5));
    assert_eq!(text(root, "gen_ai.response.model").as_deref(), Some("m"));
    assert_eq!(attr(root, "yallmp.stream"), Some(Any::BoolValue(true)));
    assert_eq!(kids.len(), 1);
    assert!(attr(kids[0], "yallmp.time_to_first_byte_ms").is_some());
    // The attempt of a stream lasts until the stream ends.
    assert!(kids[0].end_time_unix_nano <= root.end_time_unix_nano);

    // The fallback: the down backend's attempts failed, then m answered.
    let (root, kids) = request(&all, "otel-fallback").unwrap();
    assert_eq!(root.name, "chat flaky");
    assert_eq!(kids.len(), 3, "{kids:#?}");
    for failed in &kids[..2] {
        assert_eq!(text(failed, "yallmp.backend").as_deref(), Some("flaky-eu"));
        assert_eq!(text(failed, "error.type").as_deref(), Some("network"));
        assert_eq!(failed.status.as_ref().unwrap().code, STATUS_ERROR);
        assert_eq!(int(failed, "yallmp.fallback_index"), Some(0));
    }
    assert_eq!(int(kids[1], "yallmp.attempt"), Some(2));
    assert_eq!(text(kids[2], "yallmp.backend").as_deref(), Some("m#1"));
    assert_eq!(int(kids[2], "yallmp.fallback_index"), Some(1));
    assert_eq!(text(root, "yallmp.backend").as_deref(), Some("m#1"));

    // The effective config shows the settings, not the header's value.
    let effective = get_json(&server, "/admin/config").await;
    let t = &effective["telemetry"];
    assert_eq!(t["enabled"], true);
    assert_eq!(t["endpoint"], format!("{}/traces", c.url));
    assert_eq!(t["headers"], json!(["x-collector-key"]));
    assert!(!effective.to_string().contains("collector-secret-42"));
    server.shutdown().await;
}

/// Without `capture_content` no prompt or completion leaves; a trace the
/// client did not sample is not exported, and the upstream still gets the
/// trace context (not sampled).
#[tokio::test]
async fn no_content_by_default_and_unsampled_traces_stay_home() {
    let upstream = Mock::start(Reply::Echo).await;
    let c = collector().await;
    let server = proxy(&config(&upstream, &c, "")).await;
    let unsampled = "00-11111111111111111111111111111111-2222222222222222-00";
    for (id, tp, model) in [
        ("quiet", Some(unsampled), "m"),
        ("plain", None, "m"),
        ("parsed", None, "p"),
    ] {
        let mut headers = vec![("x-request-id", id)];
        if let Some(tp) = tp {
            headers.push(("traceparent", tp));
        }
        let (status, _, _) = post_with(
            &server,
            "/v1/chat/completions",
            &json!({"model": model, "messages": [{"role": "user", "content": "hi"}]}),
            &headers,
        )
        .await;
        assert_eq!(status, 200);
    }
    let sent = upstream.hits()[0].headers["traceparent"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        sent.starts_with("00-11111111111111111111111111111111-") && sent.ends_with("-00"),
        "{sent}"
    );
    let all = collected(&c, |s| {
        request(s, "plain").is_some() && request(s, "parsed").is_some()
    })
    .await;
    // The shutdown flushes what is left: nothing of "quiet" ever comes.
    server.shutdown().await;
    let all = spans(&c).into_iter().chain(all).collect::<Vec<_>>();
    assert!(request(&all, "quiet").is_none());
    let (root, _) = request(&all, "plain").unwrap();
    assert!(root.events.is_empty(), "{:?}", root.events);
    assert!(attr(root, "yallmp.parsers").is_none());
    // The response parsers that ran, in order.
    let (root, _) = request(&all, "parsed").unwrap();
    match attr(root, "yallmp.parsers") {
        Some(Any::ArrayValue(a)) => assert_eq!(
            a.values.iter().map(|v| v.value.clone()).collect::<Vec<_>>(),
            [
                Some(Any::StringValue("parse_tags".into())),
                Some(Any::StringValue("swap_reasoning_content".into()))
            ]
        ),
        other => panic!("parsers: {other:?}"),
    }
}

/// A collector on a closed port, or one that never answers: every request
/// is answered all the same, and the spans lost are counted.
#[tokio::test]
async fn a_collector_that_is_down_or_silent_costs_no_request() {
    let upstream = Mock::start(Reply::Echo).await;
    // Accepts connections and never answers.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let silent_addr = silent.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = silent.accept().await {
            held.push(s);
        }
    });
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let failed = |text: &str| {
        metric_value(
            text,
            "yallmp_telemetry_spans_dropped_total",
            &[("reason", "export_failed")],
        )
        .unwrap_or(0.0)
    };
    for endpoint in [format!("http://{closed}"), format!("http://{silent_addr}")] {
        let yaml = format!(
            r#"
model_list:
  - model_name: m
    model_params:
      api_base: {up}
proxy_settings:
  telemetry:
    endpoint: {endpoint}
    schedule_delay: 0.01
    export_timeout: 0.2
"#,
            up = upstream.url
        );
        let server = proxy(&yaml).await;
        let before = failed(&metrics_text(&server).await);
        for i in 0..20 {
            let stream = i % 2 == 1;
            if stream {
                upstream.push(Reply::Sse {
                    frames: vec![chunk("ok"), DONE.to_string()],
                    gap: Duration::ZERO,
                });
            }
            let (status, _, body) = post_with(
                &server,
                "/v1/chat/completions",
                &json!({"model": "m", "stream": stream, "messages": [{"role": "user", "content": "hi"}]}),
                &[],
            )
            .await;
            assert_eq!(status, 200, "{endpoint}: {body}");
            assert!(
                body.contains(if stream { "ok" } else { "model=m" }),
                "{body}"
            );
        }
        // The exports failed and were counted (waited for, bounded).
        let mut now = before;
        for _ in 0..300 {
            now = failed(&metrics_text(&server).await);
            if now > before {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(now > before, "{endpoint}: no failed export counted");
        server.shutdown().await;
    }
}

/// The export queue is bounded: with the collector silent, one batch in
/// flight and `max_queue_size` waiting, the rest are dropped and counted.
#[tokio::test]
async fn a_full_queue_drops_spans_and_counts_them() {
    let upstream = Mock::start(Reply::Echo).await;
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let silent_addr = silent.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = silent.accept().await {
            held.push(s);
        }
    });
    let yaml = format!(
        r#"
model_list:
  - model_name: m
    model_params:
      api_base: {up}
proxy_settings:
  telemetry:
    endpoint: http://{silent_addr}
    max_queue_size: 2
    export_timeout: 600
"#,
        up = upstream.url
    );
    let server = proxy(&yaml).await;
    let dropped = |text: &str| {
        metric_value(
            text,
            "yallmp_telemetry_spans_dropped_total",
            &[("reason", "queue_full")],
        )
        .unwrap_or(0.0)
    };
    let before = dropped(&metrics_text(&server).await);
    // 10 requests, 2 spans each: at most 2 in the export that never ends
    // and 2 waiting; at least 16 dropped.
    for _ in 0..10 {
        let (status, _, _) = post_with(
            &server,
            "/v1/chat/completions",
            &json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]}),
            &[],
        )
        .await;
        assert_eq!(status, 200);
    }
    let after = dropped(&metrics_text(&server).await);
    assert!(after - before >= 16.0, "dropped {}", after - before);
}

/// Off (the default): nothing is added upstream, and the client's own
/// `traceparent` goes on untouched like any other header.
#[tokio::test]
async fn off_by_default_the_trace_context_passes_untouched() {
    let upstream = Mock::start(Reply::Echo).await;
    let yaml = format!(
        "model_list:\n  - model_name: m\n    model_params:\n      api_base: {}\n",
        upstream.url
    );
    let server = proxy(&yaml).await;
    let tp = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    for headers in [vec![], vec![("traceparent", tp)]] {
        let (status, _, _) = post_with(
            &server,
            "/v1/chat/completions",
            &json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]}),
            &headers,
        )
        .await;
        assert_eq!(status, 200);
    }
    let hits = upstream.hits();
    assert!(!hits[0].headers.contains_key("traceparent"));
    assert_eq!(hits[1].headers["traceparent"], tp);
    server.shutdown().await;
}
