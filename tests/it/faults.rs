//! Fault injection: upstreams (and the log's sinks) that misbehave, and the
//! proxy's exact behaviour for each: what the client gets, what the request
//! log records, and that nothing hangs (every case runs under a time limit
//! that fails it). docs/benchmarks.md ("Fault injection") lists the cases
//! and their defined answers.

use std::future::Future;
use std::time::Duration;

use http::HeaderMap;
use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::support;
use crate::support::logged::{
    Logged, attempts, chunks, logged_config, logged_proxy, outcome, record,
};
use crate::support::raw::{RawUpstream, SSE_HEAD, closed_by_peer, http_chunk, reset, write};
use crate::support::*;

/// No case takes this long unless something hangs.
const LIMIT: Duration = Duration::from_secs(60);

async fn within<F: Future>(case: F) -> F::Output {
    tokio::time::timeout(LIMIT, case)
        .await
        .expect("the case hung: no answer within the limit")
}

/// POSTs a chat completion with `x-request-id: id`; status, headers, body.
async fn send(server: &yallmp::Server, id: &str, body: Value) -> (u16, HeaderMap, String) {
    post_with(
        server,
        "/v1/chat/completions",
        &body,
        &[("x-request-id", id)],
    )
    .await
}

fn error_of(text: &str) -> Value {
    serde_json::from_str::<Value>(text).unwrap_or_else(|e| panic!("{e}: {text}"))["error"].clone()
}

fn header<'a>(h: &'a HeaderMap, name: &str) -> &'a str {
    h.get(name).map_or("", |v| v.to_str().unwrap())
}

/// The event a chat stream ends with when the upstream broke it.
fn error_frame(code: &str, message: &str) -> String {
    format!(
        "data: {}\n\n",
        json!({"error": {"message": message, "type": "upstream_error", "code": code}})
    )
}

/// A base URL nothing listens on.
async fn refused_url() -> String {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    drop(l);
    format!("http://{addr}/v1")
}

/// Model `m` on `faulty` falling back to `f` on `good`, and `lone` on
/// `faulty` alone; `extra` goes into the faulty backends' params.
fn with_fallback(faulty: &str, good: &str, extra: &str, router: &str) -> String {
    format!(
        r#"
model_list:
  - {{model_name: m, model_params: {{api_base: '{faulty}'{extra}}}}}
  - {{model_name: lone, model_params: {{api_base: '{faulty}'{extra}}}}}
  - {{model_name: f, model_params: {{api_base: '{good}'}}}}
router_settings: {{retry_backoff_ms: 1, allowed_fails: 100, fallbacks: {{m: [f]}}{router}}}
"#
    )
}

/// The attempts of a record that fell back to `f` after `n` failures at
/// `m#1`, each failing with an error that starts with `error`.
fn assert_fell_back(ev: &[Value], n: usize, status: Value, error: &str) {
    let att = attempts(ev);
    assert_eq!(att.len(), n + 1, "{att:?}");
    for (backend, s, e) in &att[..n] {
        assert_eq!((backend.as_str(), s), ("m#1", &status), "{att:?}");
        assert!(e.as_str().is_some_and(|e| e.starts_with(error)), "{att:?}");
    }
    assert_eq!(att[n], ("f#1".into(), json!(200), Value::Null));
    let out = outcome(ev);
    assert_eq!(
        (
            &out["outcome"],
            &out["status"],
            &out["backend"],
            &out["attempts"]
        ),
        (&json!("ok"), &json!(200), &json!("f#1"), &json!(n + 1))
    );
}

/// A record whose every attempt failed: outcome, status, and each attempt
/// at `lone#1` failing with an error that starts with `error`.
fn assert_all_failed(ev: &[Value], status: u16, tries: usize, error: &str) {
    let out = outcome(ev);
    assert_eq!(
        (&out["outcome"], &out["status"]),
        (&json!("all_failed"), &json!(status)),
        "{out}"
    );
    let att = attempts(ev);
    assert_eq!(att.len(), tries, "{att:?}");
    for (backend, _, e) in &att {
        assert_eq!(backend, "lone#1");
        assert!(e.as_str().is_some_and(|e| e.starts_with(error)), "{att:?}");
    }
}

#[tokio::test]
async fn connection_refused_falls_back_or_is_502() {
    within(async {
        let good = Mock::start(Reply::Echo).await;
        let dead = refused_url().await;
        let l = logged_proxy(
            &with_fallback(&dead, &good.url, "", ", num_retries: 1"),
            None,
        )
        .await;

        let (status, h, text) = send(&l.server, "refused-fb", json!({"model": "m"})).await;
        assert_eq!(status, 200, "{text}");
        assert_eq!(serde_json::from_str::<Value>(&text).unwrap()["model"], "m");
        assert_eq!(
            (
                header(&h, "x-yallmp-backend"),
                header(&h, "x-yallmp-attempts")
            ),
            ("f#1", "3")
        );
        let ev = record(&l.dir, "refused-fb").await;
        assert_fell_back(&ev, 2, Value::Null, "connection failed: ");

        let (status, h, text) = send(&l.server, "refused-lone", json!({"model": "lone"})).await;
        assert_eq!(status, 502, "{text}");
        assert_eq!(header(&h, "x-yallmp-attempts"), "2");
        let e = error_of(&text);
        assert_eq!(
            (&e["type"], &e["code"]),
            (&json!("upstream_error"), &Value::Null)
        );
        let msg = e["message"].as_str().unwrap();
        assert!(msg.starts_with("connection failed: "), "{msg}");
        assert!(
            msg.contains(" (attempts: lone#1 try 1: no response connection failed: "),
            "{msg}"
        );
        assert!(
            msg.contains("; lone#1 try 2: no response connection failed: "),
            "{msg}"
        );
        let ev = record(&l.dir, "refused-lone").await;
        assert_all_failed(&ev, 502, 2, "connection failed: ");
        l.server.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn reset_mid_body_falls_back_or_is_502() {
    within(async {
        let good = Mock::start(Reply::Echo).await;
        // Headers promise 400 bytes; a third of a body, then a TCP reset.
        let faulty = RawUpstream::start(|mut s, _| async move {
            write(
                &mut s,
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 400\r\n\r\n{\"id\":\"chatcmpl-1\",\"object\":\"chat.completion\",\"choices\":[",
            )
            .await;
            tokio::time::sleep(Duration::from_millis(20)).await;
            reset(s);
        })
        .await;
        let l = logged_proxy(&with_fallback(&faulty.url, &good.url, "", ""), None).await;

        let (status, h, text) = send(&l.server, "reset-fb", json!({"model": "m"})).await;
        assert_eq!(status, 200, "{text}");
        assert_eq!(header(&h, "x-yallmp-backend"), "f#1");
        let ev = record(&l.dir, "reset-fb").await;
        assert_fell_back(&ev, 1, Value::Null, "response body failed: ");
        // The upstream's headers came before the body broke: they are kept.
        assert_eq!(
            support::logged::of_kind(&ev, "attempt")[0]["headers"]["content-length"],
            "400"
        );

        let (status, _, text) = send(&l.server, "reset-lone", json!({"model": "lone"})).await;
        assert_eq!(status, 502, "{text}");
        let e = error_of(&text);
        assert_eq!((&e["type"], &e["code"]), (&json!("upstream_error"), &Value::Null));
        assert!(
            e["message"].as_str().unwrap().starts_with("response body failed: "),
            "{e}"
        );
        let ev = record(&l.dir, "reset-lone").await;
        assert_all_failed(&ev, 502, 1, "response body failed: ");
        assert_eq!(faulty.count(), 2);
        l.server.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn slow_headers_time_out_and_the_upstream_connection_is_dropped() {
    within(async {
        let good = Mock::start(Reply::Echo).await;
        let (closed_tx, mut closed) = mpsc::unbounded_channel();
        // Reads the request, never answers, and reports when the proxy
        // gives up on the connection.
        let silent = RawUpstream::start(move |mut s, _| {
            let closed_tx = closed_tx.clone();
            async move {
                closed_by_peer(&mut s).await;
                let _ = closed_tx.send(());
            }
        })
        .await;
        let l = logged_proxy(
            &with_fallback(&silent.url, &good.url, ", request_timeout: 0.5", ""),
            None,
        )
        .await;

        let (status, h, text) = send(&l.server, "slow-fb", json!({"model": "m"})).await;
        assert_eq!(status, 200, "{text}");
        assert_eq!(header(&h, "x-yallmp-backend"), "f#1");
        closed.recv().await.unwrap();
        let ev = record(&l.dir, "slow-fb").await;
        assert_fell_back(&ev, 1, Value::Null, "no response within 500ms");

        let (status, h, text) = send(&l.server, "slow-lone", json!({"model": "lone"})).await;
        assert_eq!(status, 504, "{text}");
        assert_eq!(header(&h, "x-yallmp-attempts"), "1");
        assert_eq!(
            error_of(&text),
            json!({"message": "no response within 500ms (attempts: lone#1 try 1: no response no response within 500ms)", "type": "upstream_error", "code": "upstream_timeout"})
        );
        closed.recv().await.unwrap();
        let ev = record(&l.dir, "slow-lone").await;
        assert_all_failed(&ev, 504, 1, "no response within 500ms");
        l.server.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn stalled_stream_ends_with_a_timeout_event_and_is_dropped() {
    within(async {
        let good = Mock::start(Reply::Sse {
            frames: vec![chunk("fine"), DONE.into()],
            gap: Duration::ZERO,
        })
        .await;
        let (closed_tx, mut closed) = mpsc::unbounded_channel();
        // The first request stalls after one event, the next before any.
        let stalls = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let stalling = RawUpstream::start(move |mut s, _| {
            let closed_tx = closed_tx.clone();
            let n = stalls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            async move {
                write(&mut s, SSE_HEAD).await;
                if n == 0 {
                    write(&mut s, &http_chunk(&chunk("tick"))).await;
                }
                closed_by_peer(&mut s).await;
                let _ = closed_tx.send(());
            }
        })
        .await;
        let l = logged_proxy(
            &with_fallback(&stalling.url, &good.url, ", request_timeout: 0.5", ""),
            None,
        )
        .await;

        // After the first event: the event, then the proxy's timeout event.
        let (status, h, text) = send(
            &l.server,
            "stall-mid",
            json!({"model": "lone", "stream": true}),
        )
        .await;
        assert_eq!(status, 200);
        assert_eq!(header(&h, "content-type"), "text/event-stream");
        let timeout = error_frame(
            "upstream_timeout",
            "upstream stream failed: no data for 500ms while reading the response",
        );
        assert_eq!(text, format!("{}{timeout}", chunk("tick")));
        closed.recv().await.unwrap();
        let ev = record(&l.dir, "stall-mid").await;
        let out = outcome(&ev);
        assert_eq!(
            (&out["outcome"], &out["status"], &out["backend"]),
            (&json!("upstream_error"), &json!(200), &json!("lone#1"))
        );
        assert_eq!(
            out["error"],
            "upstream stream failed: no data for 500ms while reading the response"
        );
        assert_eq!(chunks(&ev), vec![chunk("tick"), timeout]);

        // Before the first event: a failed attempt, so the fallback answers.
        let (status, _, text) = send(
            &l.server,
            "stall-first",
            json!({"model": "m", "stream": true}),
        )
        .await;
        assert_eq!(status, 200);
        assert_eq!(text, format!("{}{DONE}", chunk("fine")));
        closed.recv().await.unwrap();
        let ev = record(&l.dir, "stall-first").await;
        assert_fell_back(&ev, 1, Value::Null, "no data for 500ms");
        l.server.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn stream_cut_mid_frame_ends_with_an_error_event() {
    within(async {
        let partial = "data: {\"id\":\"c1\",\"choices\":[{\"delta\":{\"content\":\"half-ev";
        // 0: reset mid-frame; 1: a clean end mid-frame; 2: a clean end
        // whose last event lacks its blank line (complete, so relayed).
        let n = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let cut = RawUpstream::start(move |mut s, _| {
            let n = n.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            async move {
                write(&mut s, SSE_HEAD).await;
                write(&mut s, &http_chunk(&chunk("whole"))).await;
                tokio::time::sleep(Duration::from_millis(20)).await;
                match n {
                    0 => {
                        write(&mut s, &http_chunk(partial)).await;
                        tokio::time::sleep(Duration::from_millis(20)).await;
                        reset(s);
                    }
                    1 => {
                        write(&mut s, &format!("{}0\r\n\r\n", http_chunk(partial))).await;
                    }
                    _ => {
                        write(&mut s, &format!("{}0\r\n\r\n", http_chunk("data: [DONE]"))).await;
                    }
                }
            }
        })
        .await;
        let l = logged_proxy(
            &format!(
                "model_list:\n  - {{model_name: m, model_params: {{api_base: '{}'}}}}\n",
                cut.url
            ),
            None,
        )
        .await;

        for id in ["cut-reset", "cut-clean"] {
            let (status, _, text) =
                send(&l.server, id, json!({"model": "m", "stream": true})).await;
            assert_eq!(status, 200);
            // The whole event, then one error event; never the half event.
            let rest = text
                .strip_prefix(&chunk("whole"))
                .unwrap_or_else(|| panic!("{text}"));
            let data = sse_data(rest);
            assert_eq!(data.len(), 1, "{text}");
            assert!(
                rest.starts_with("data: {\"error\":") && rest.ends_with("}\n\n"),
                "{text}"
            );
            let e = serde_json::from_str::<Value>(&data[0]).unwrap()["error"].clone();
            assert_eq!(
                (&e["type"], &e["code"]),
                (&json!("upstream_error"), &json!("stream_interrupted"))
            );
            assert!(
                e["message"]
                    .as_str()
                    .unwrap()
                    .starts_with("upstream stream failed: response body failed: "),
                "{e}"
            );
            assert!(
                !text.contains("half-ev") && !text.contains("[DONE]"),
                "{text}"
            );
            let ev = record(&l.dir, id).await;
            let out = outcome(&ev);
            assert_eq!(
                (&out["outcome"], &out["status"]),
                (&json!("upstream_error"), &json!(200))
            );
            assert_eq!(chunks(&ev), vec![chunk("whole"), rest.to_string()]);
        }

        let (status, _, text) =
            send(&l.server, "cut-last", json!({"model": "m", "stream": true})).await;
        assert_eq!(status, 200);
        assert_eq!(text, format!("{}data: [DONE]", chunk("whole")));
        let ev = record(&l.dir, "cut-last").await;
        assert_eq!(outcome(&ev)["outcome"], "ok");
        l.server.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn invalid_json_and_html_answers_are_upstream_errors() {
    within(async {
        let good = Mock::start(Reply::Echo).await;
        let cases = [
            (
                "application/json",
                "{\"id\":\"chatcmpl-1\",\"choices\":[{\"index\":0,",
                "json",
            ),
            ("text/html", "<html>502 Bad Gateway</html>", "html"),
        ];
        for (content_type, body, name) in cases {
            let faulty = Mock::start(Reply::Raw(200, content_type, body.into())).await;
            let l = logged_proxy(&with_fallback(&faulty.url, &good.url, "", ""), None).await;
            let expected = format!(
                "the upstream answered 200 with a body that is not JSON ({content_type}): {body}"
            );

            let id = format!("{name}-fb");
            let (status, h, text) = send(&l.server, &id, json!({"model": "m"})).await;
            assert_eq!(status, 200, "{text}");
            assert_eq!(header(&h, "x-yallmp-backend"), "f#1");
            assert_eq!(serde_json::from_str::<Value>(&text).unwrap()["object"], "chat.completion");
            let ev = record(&l.dir, &id).await;
            assert_fell_back(&ev, 1, json!(200), &expected);

            // Alone, streamed or not: a 502 in OpenAI's shape, not the body.
            for stream in [false, true] {
                let id = format!("{name}-lone-{stream}");
                let (status, h, text) =
                    send(&l.server, &id, json!({"model": "lone", "stream": stream})).await;
                assert_eq!(status, 502, "{text}");
                assert_eq!(header(&h, "content-type"), "application/json");
                assert_eq!(
                    error_of(&text),
                    json!({"message": format!("{expected} (attempts: lone#1 try 1: 200 {expected})"), "type": "upstream_error", "code": null})
                );
                let ev = record(&l.dir, &id).await;
                assert_all_failed(&ev, 502, 1, &expected);
            }
            l.server.shutdown().await;
        }
    })
    .await;
}

#[tokio::test]
async fn sse_error_event_first_falls_back_or_is_502() {
    within(async {
        let overloaded = "data: {\"error\":{\"message\":\"model overloaded\",\"type\":\"server_error\",\"code\":\"overloaded\"}}\n\n";
        let faulty = Mock::start(Reply::Sse {
            frames: vec![": warming up\n\n".into(), overloaded.into()],
            gap: Duration::ZERO,
        })
        .await;
        let good = Mock::start(Reply::Sse {
            frames: vec![chunk("fine"), DONE.into()],
            gap: Duration::ZERO,
        })
        .await;
        let l = logged_proxy(&with_fallback(&faulty.url, &good.url, "", ""), None).await;

        let (status, h, text) = send(&l.server, "sse-first-fb", json!({"model": "m", "stream": true})).await;
        assert_eq!(status, 200);
        assert_eq!(header(&h, "x-yallmp-backend"), "f#1");
        // Nothing of the failed attempt reaches the client, comment included.
        assert_eq!(text, format!("{}{DONE}", chunk("fine")));
        let ev = record(&l.dir, "sse-first-fb").await;
        assert_fell_back(&ev, 1, json!(200), "error event: model overloaded");

        let (status, h, text) = send(&l.server, "sse-first-lone", json!({"model": "lone", "stream": true})).await;
        assert_eq!(status, 502);
        assert_eq!(header(&h, "content-type"), "application/json");
        assert_eq!(
            error_of(&text),
            json!({"message": "model overloaded (attempts: lone#1 try 1: 200 error event: model overloaded)", "type": "server_error", "code": "overloaded"})
        );
        let ev = record(&l.dir, "sse-first-lone").await;
        assert_all_failed(&ev, 502, 1, "error event: model overloaded");
        l.server.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn sse_error_event_mid_stream_is_relayed_and_recorded() {
    within(async {
        let overloaded = "data: {\"error\":{\"message\":\"model overloaded\",\"type\":\"server_error\",\"code\":\"overloaded\"}}\n\n";
        let frames = vec![chunk("Hel"), overloaded.to_string()];
        let faulty = Mock::start(Reply::Sse {
            frames: frames.clone(),
            gap: Duration::from_millis(5),
        })
        .await;
        let good = Mock::start(Reply::Echo).await;
        let l = logged_proxy(&with_fallback(&faulty.url, &good.url, "", ""), None).await;

        // Past the first event there is no switching: the client gets the
        // upstream's error event as it was sent, and no `[DONE]`.
        let (status, _, text) = send(&l.server, "sse-mid", json!({"model": "m", "stream": true})).await;
        assert_eq!(status, 200);
        assert_eq!(text, frames.concat());
        assert_eq!(good.count(), 0);
        let ev = record(&l.dir, "sse-mid").await;
        let out = outcome(&ev);
        assert_eq!(
            (&out["outcome"], &out["status"], &out["backend"]),
            (&json!("upstream_error"), &json!(200), &json!("m#1"))
        );
        assert_eq!(out["error"], "upstream error event mid-stream: model overloaded");
        assert_eq!(chunks(&ev), frames);
        l.server.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn rate_limit_storm_honours_capped_retry_after_then_falls_over() {
    within(async {
        let limited = || {
            Reply::JsonHeaders(
                429,
                vec![("retry-after", "120".into())],
                json!({"error": {"message": "slow down", "type": "rate_limit_error", "code": "rate_limit_exceeded"}}),
            )
        };
        let a = Mock::start(limited()).await;
        let b = Mock::start(limited()).await;
        let c = Mock::start(limited()).await;
        let good = Mock::start(Reply::Echo).await;
        let yaml = format!(
            r#"
model_list:
  - {{model_name: storm, model_params: {{api_base: '{}', order: 1}}}}
  - {{model_name: storm, model_params: {{api_base: '{}', order: 2}}}}
  - {{model_name: n, model_params: {{api_base: '{}'}}}}
  - {{model_name: f, model_params: {{api_base: '{}'}}}}
router_settings: {{routing_strategy: ordered, num_retries: 2, retry_backoff_ms: 1, max_retry_after: 0.3, fallbacks: {{n: [f]}}}}
"#,
            a.url, b.url, c.url, good.url
        );
        let l = logged_proxy(&yaml, None).await;

        // Every backend says 429: each is tried 1 + num_retries times,
        // alternating, with waits of max_retry_after (not 120 s); the
        // client gets the last 429 with the upstream's Retry-After.
        let (status, h, text) = send(&l.server, "storm-all", json!({"model": "storm"})).await;
        assert_eq!(status, 429, "{text}");
        assert_eq!(header(&h, "retry-after"), "120");
        assert_eq!(header(&h, "x-yallmp-attempts"), "6");
        let e = error_of(&text);
        assert_eq!((&e["type"], &e["code"]), (&json!("rate_limit_error"), &json!("rate_limit_exceeded")));
        assert_eq!(
            e["message"],
            "slow down (attempts: storm#1 try 1: 429 slow down; storm#2 try 1: 429 slow down; storm#1 try 2: 429 slow down; storm#2 try 2: 429 slow down; storm#1 try 3: 429 slow down; storm#2 try 3: 429 slow down)"
        );
        for m in [&a, &b] {
            let hits = m.hits();
            assert_eq!(hits.len(), 3);
            for w in hits.windows(2) {
                let gap = w[1].at - w[0].at;
                assert!(gap >= Duration::from_millis(300), "retried after {gap:?}");
            }
        }
        let ev = record(&l.dir, "storm-all").await;
        let out = outcome(&ev);
        assert_eq!((&out["outcome"], &out["status"], &out["attempts"]), (&json!("all_failed"), &json!(429), &json!(6)));
        for a in support::logged::of_kind(&ev, "attempt") {
            assert_eq!((&a["status"], &a["error"]), (&json!(429), &json!("slow down")));
            assert_eq!(a["headers"]["retry-after"], "120");
        }

        // A model with a fallback: its backend's tries, then the fallback.
        let (status, h, text) = send(&l.server, "storm-fb", json!({"model": "n"})).await;
        assert_eq!(status, 200, "{text}");
        assert_eq!((header(&h, "x-yallmp-backend"), header(&h, "retry-after")), ("f#1", ""));
        assert_eq!(c.count(), 3);
        let ev = record(&l.dir, "storm-fb").await;
        let att = attempts(&ev);
        assert_eq!(att.len(), 4, "{att:?}");
        assert!(att[..3].iter().all(|(b, s, e)| b == "n#1" && s == &json!(429) && e == &json!("slow down")), "{att:?}");
        assert_eq!(att[3], ("f#1".into(), json!(200), Value::Null));
        assert_eq!(outcome(&ev)["outcome"], "ok");
        l.server.shutdown().await;
    })
    .await;
}

/// An upstream that streams a frame every 20 ms until its peer goes away
/// (or, `stall`, sends one and goes silent); reports when the proxy
/// closed the connection.
async fn streaming_until_closed(stall: bool) -> (RawUpstream, mpsc::UnboundedReceiver<()>) {
    let (closed_tx, closed) = mpsc::unbounded_channel();
    let up = RawUpstream::start(move |mut s, _| {
        let closed_tx = closed_tx.clone();
        async move {
            write(&mut s, SSE_HEAD).await;
            write(&mut s, &http_chunk(&chunk("first"))).await;
            if stall {
                closed_by_peer(&mut s).await;
            } else {
                let mut i = 0;
                loop {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    i += 1;
                    if !write(&mut s, &http_chunk(&chunk(&i.to_string()))).await {
                        break;
                    }
                }
            }
            let _ = closed_tx.send(());
        }
    })
    .await;
    (up, closed)
}

/// A logging proxy (with `proxy_settings`, if any) in front of `up`, whose
/// timeout is far away (only the client or the proxy can end a stream), and
/// a stream request `id` through it with its first chunk read.
async fn stream_from(
    up: &RawUpstream,
    proxy_settings: &str,
    id: &str,
) -> (Logged, reqwest::Response, bytes::Bytes) {
    let l = logged_proxy(
        &format!(
            "model_list:\n  - {{model_name: m, model_params: {{api_base: '{}', request_timeout: 600}}}}\n{proxy_settings}",
            up.url
        ),
        None,
    )
    .await;
    let mut r = client()
        .post(format!("{}/v1/chat/completions", l.server.url()))
        .header("x-request-id", id)
        .json(&json!({"model": "m", "stream": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let first = r.chunk().await.unwrap().unwrap();
    (l, r, first)
}

#[tokio::test]
async fn client_disconnect_mid_stream_cancels_the_upstream_request() {
    within(async {
        for stall in [false, true] {
            let (up, mut closed) = streaming_until_closed(stall).await;
            // Only the disconnect can end the stream.
            let id = format!("gone-{stall}");
            let (l, r, first) = stream_from(&up, "", &id).await;
            assert!(first.starts_with(chunk("first").as_bytes()));
            drop(r);
            // The upstream sees its connection closed...
            closed.recv().await.unwrap();
            // ...and the record says the client went away.
            let ev = record(&l.dir, &id).await;
            let out = outcome(&ev);
            assert_eq!(
                (&out["outcome"], &out["status"], &out["backend"]),
                (&json!("client_disconnected"), &json!(200), &json!("m#1")),
                "stall: {stall}"
            );
            assert_eq!(
                out["error"],
                "the client disconnected before the answer was complete"
            );
            let got = chunks(&ev);
            assert_eq!(got[0], chunk("first"));
            assert!(got.iter().all(|c| !c.contains("\"error\"")), "{got:?}");
            l.server.shutdown().await;
        }
    })
    .await;
}

/// Shutdown with a stream still open past the grace period: the stream is
/// cut (the client's body ends early), the upstream connection is closed,
/// shutdown returns soon after the grace period, and the record, written
/// before the log is drained, says the proxy stopped. For either kind of
/// serving threads.
#[tokio::test]
async fn shutdown_past_the_grace_period_cuts_open_streams_and_records_them() {
    within(async {
        for workers in ["auto", "2", "shared"] {
            let (up, mut closed) = streaming_until_closed(false).await;
            let id = format!("cut-{workers}");
            let settings = format!(
                "proxy_settings:\n  server: {{shutdown_grace_period: 0.3, workers: {workers}}}\n"
            );
            let (l, mut r, _) = stream_from(&up, &settings, &id).await;
            let started = std::time::Instant::now();
            let dir = l.dir.clone();
            let shutdown = tokio::spawn(l.server.shutdown());
            // The client's body ends (cut, not completed: no [DONE]).
            let mut rest = Vec::new();
            while let Ok(Some(c)) = r.chunk().await {
                rest.extend_from_slice(&c);
            }
            assert!(
                !String::from_utf8_lossy(&rest).contains("[DONE]"),
                "workers {workers}"
            );
            shutdown.await.unwrap();
            let took = started.elapsed();
            assert!(
                took >= Duration::from_millis(300) && took < Duration::from_secs(5),
                "workers {workers}: shutdown took {took:?}"
            );
            closed.recv().await.unwrap();
            // Written before the log was drained: there now, complete.
            let ev = record(&dir, &id).await;
            let out = outcome(&ev);
            assert_eq!(out["outcome"], "cancelled", "workers {workers}: {out}");
            assert_eq!(
                out["error"],
                "the proxy stopped before the answer was complete"
            );
        }
    })
    .await;
}

/// Rows of the `requests` table on `url`: (client's x-request-id, outcome).
async fn pg_rows(url: &str) -> Vec<(String, String)> {
    use sqlx::Connection;
    let mut conn = sqlx::PgConnection::connect(url).await.unwrap();
    let rows: Vec<(String, String)> = sqlx::query_as(
        "SELECT client_request_id, outcome FROM requests ORDER BY client_request_id",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap();
    conn.close().await.ok();
    rows
}

async fn database_reachable(server: &yallmp::Server) -> Value {
    let r = client()
        .get(format!("{}/health", server.url()))
        .send()
        .await
        .unwrap();
    r.json::<Value>().await.unwrap()["database"]["reachable"].clone()
}

/// PostgreSQL behind a relay the test takes down: requests go on (their
/// files too), the rows wait, the health check says so, a warning is
/// logged, and once the database is back every held row is written.
#[tokio::test]
async fn database_going_away_and_returning_loses_no_row() {
    let Some(base) = support::pg::base_url() else {
        return;
    };
    support::warnings::capture();
    within(async {
        let url = support::pg::fresh_database(&base).await;
        let mut parsed = reqwest::Url::parse(&url).unwrap();
        let target = tokio::net::lookup_host((
            parsed.host_str().unwrap().to_string(),
            parsed.port().unwrap_or(5432),
        ))
        .await
        .unwrap()
        .next()
        .unwrap();
        let relay = support::raw::Relay::start(target).await;
        parsed.set_host(Some("127.0.0.1")).unwrap();
        parsed.set_port(Some(relay.addr.port())).unwrap();
        let mock = Mock::start(Reply::Echo).await;
        let l: Logged = logged_proxy(
            &format!(
                "model_list:\n  - {{model_name: m, model_params: {{api_base: '{}'}}}}\n",
                mock.url
            ),
            Some(parsed.as_str()),
        )
        .await;

        let (status, _, _) = send(&l.server, "db-before", json!({"model": "m"})).await;
        assert_eq!(status, 200);
        record(&l.dir, "db-before").await;
        while pg_rows(&url).await.is_empty() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }

        relay.down();
        for (i, stream) in [false, true, false].into_iter().enumerate() {
            let id = format!("db-down-{i}");
            let (status, _, text) =
                send(&l.server, &id, json!({"model": "m", "stream": stream})).await;
            assert_eq!(status, 200, "{text}");
            // The file is written while the database is away.
            assert_eq!(outcome(&record(&l.dir, &id).await)["outcome"], "ok");
        }
        while database_reachable(&l.server).await != json!(false) {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        support::warnings::wait_for(&["request log: database unavailable; will retry"]).await;
        assert_eq!(
            pg_rows(&url).await.len(),
            1,
            "rows written while the relay was down?"
        );

        relay.up();
        let rows = loop {
            let rows = pg_rows(&url).await;
            if rows.len() == 4 {
                break rows;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        let want: Vec<(String, String)> = ["db-before", "db-down-0", "db-down-1", "db-down-2"]
            .iter()
            .map(|id| (id.to_string(), "ok".to_string()))
            .collect();
        assert_eq!(rows, want);
        while database_reachable(&l.server).await != json!(true) {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        l.server.shutdown().await;
        support::pg::drop_database(&base, &url).await;
    })
    .await;
}

/// A tmpfs mounted for one test, unmounted when dropped.
struct Mounted(std::path::PathBuf);

impl Mounted {
    /// Mounts a tmpfs of `size` at `path`; the error says why not.
    fn tmpfs(path: &std::path::Path, size: &str) -> Result<Mounted, String> {
        std::fs::create_dir_all(path).map_err(|e| e.to_string())?;
        let out = std::process::Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size}"),
                "yallmp-faults",
            ])
            .arg(path)
            .output()
            .map_err(|e| format!("mount: {e}"))?;
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).trim().to_string());
        }
        Ok(Mounted(path.to_path_buf()))
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}

/// Writes `path` until the file system is full.
fn fill(path: &std::path::Path) {
    use std::io::Write;
    let mut f = std::fs::File::create(path).unwrap();
    let block = vec![b'x'; 4096];
    loop {
        match f.write_all(&block) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(28) => return, // ENOSPC
            Err(e) => panic!("filling {}: {e}", path.display()),
        }
    }
}

async fn file_write_failures(server: &yallmp::Server) -> f64 {
    let text = metrics_text(server).await;
    metric_value(
        &text,
        "yallmp_log_write_failures_total",
        &[("sink", "file")],
    )
    .unwrap_or(0.0)
}

/// The log directory on a full file system (a small tmpfs, so this needs
/// the right to mount: `.ci/run` sets YALLMP_FAULTS_MOUNT=1, which makes a
/// refused mount fail the test): requests are unaffected, each record's
/// file is dropped, counted and warned about, no partial file is left, the
/// database still gets the rows, and files come back once there is room.
#[tokio::test]
async fn full_disk_drops_log_files_with_a_metric_and_a_warning() {
    support::warnings::capture();
    within(async {
        let mock = Mock::start(Reply::Echo).await;
        let (config, dir) = logged_config(
            &format!(
                "model_list:\n  - {{model_name: m, model_params: {{api_base: '{}'}}}}\n",
                mock.url
            ),
            None,
        );
        let requests = dir.join("requests");
        let _mounted = match Mounted::tmpfs(&requests, "256k") {
            Ok(m) => m,
            Err(why) if std::env::var("YALLMP_FAULTS_MOUNT").as_deref() != Ok("1") => {
                eprintln!("cannot mount a tmpfs ({why}): full-disk fault test not run");
                return;
            }
            Err(why) => panic!("YALLMP_FAULTS_MOUNT=1 but mounting a tmpfs failed: {why}"),
        };
        let server = yallmp::serve(config).await.unwrap();
        let filler = requests.join("filler");
        fill(&filler);
        let before = file_write_failures(&server).await;

        for i in 0..4 {
            let (status, _, text) =
                send(&server, &format!("full-{i}"), json!({"model": "m"})).await;
            assert_eq!(status, 200, "{text}");
            assert_eq!(serde_json::from_str::<Value>(&text).unwrap()["model"], "m");
        }
        while file_write_failures(&server).await < before + 4.0 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(file_write_failures(&server).await, before + 4.0);
        let warning = support::warnings::wait_for(&[
            "request log file not written",
            &requests.display().to_string(),
        ])
        .await;
        assert!(warning.contains("No space left on device"), "{warning}");
        // No empty or partial record files are left behind.
        let names: Vec<String> = std::fs::read_dir(&requests)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, vec!["filler".to_string()]);

        // Room again: the next record's file is written.
        std::fs::remove_file(&filler).unwrap();
        let (status, _, _) = send(&server, "full-after", json!({"model": "m"})).await;
        assert_eq!(status, 200);
        assert_eq!(outcome(&record(&dir, "full-after").await)["outcome"], "ok");
        server.shutdown().await;
        // The database (elsewhere) has every record.
        let db = yallmp::reqlog::db::Db::connect(&yallmp::config::DatabaseTarget::Sqlite {
            path: dir.join("yallmp.db"),
        })
        .await
        .unwrap();
        assert_eq!(db.count().await.unwrap(), 5);
        db.close().await;
    })
    .await;
}

/// Every line of the log's segments (under `requests`), each parsed: a
/// segment must hold whole lines only.
fn segment_lines(requests: &std::path::Path) -> Vec<Value> {
    yallmp::reqlog::segments::list(requests)
        .iter()
        .flat_map(|p| {
            let text = std::fs::read_to_string(p).unwrap();
            assert!(
                text.is_empty() || text.ends_with('\n'),
                "{}: cut line",
                p.display()
            );
            text.lines()
                .map(|l| serde_json::from_str::<Value>(l).unwrap())
                .collect::<Vec<_>>()
        })
        .collect()
}

/// The `segments` layout on a full file system: requests are unaffected,
/// each record that could not be appended is counted, what a failed write
/// put in a segment is cut back (whole lines only), and once there is room
/// records are appended again (to a new segment).
#[tokio::test]
async fn full_disk_under_segments_leaves_whole_lines_only() {
    within(async {
        let mock = Mock::start(Reply::Echo).await;
        let (config, dir) = logged_config(
            &format!(
                "model_list:\n  - {{model_name: m, model_params: {{api_base: '{}'}}}}\nproxy_settings:\n  logging: {{files: {{layout: segments}}}}\n",
                mock.url
            ),
            None,
        );
        let requests = dir.join("requests");
        let _mounted = match Mounted::tmpfs(&requests, "256k") {
            Ok(m) => m,
            Err(why) if std::env::var("YALLMP_FAULTS_MOUNT").as_deref() != Ok("1") => {
                eprintln!("cannot mount a tmpfs ({why}): full-disk fault test not run");
                return;
            }
            Err(why) => panic!("YALLMP_FAULTS_MOUNT=1 but mounting a tmpfs failed: {why}"),
        };
        let server = yallmp::serve(config).await.unwrap();
        // One record in a segment first, then the disk fills.
        let (status, _, _) = send(&server, "seg-before", json!({"model": "m"})).await;
        assert_eq!(status, 200);
        while segment_lines(&requests).is_empty() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let filler = requests.join("filler");
        fill(&filler);
        let before = file_write_failures(&server).await;
        // Records larger than what is left, so no write can fit.
        let big = "y".repeat(64 << 10);
        for i in 0..4 {
            let (status, _, text) = send(
                &server,
                &format!("seg-full-{i}"),
                json!({"model": "m", "pad": big}),
            )
            .await;
            assert_eq!(status, 200, "{text}");
        }
        while file_write_failures(&server).await < before + 4.0 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(file_write_failures(&server).await, before + 4.0);
        let lines = segment_lines(&requests);
        assert_eq!(lines.len(), 1, "{lines:?}");
        assert_eq!(lines[0]["events"][0]["client_request_id"], "seg-before");

        // Room again: appended, after the whole lines that were there.
        std::fs::remove_file(&filler).unwrap();
        let (status, _, _) = send(&server, "seg-after", json!({"model": "m"})).await;
        assert_eq!(status, 200);
        while segment_lines(&requests).len() < 2 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        server.shutdown().await;
        let ids: Vec<Value> = segment_lines(&requests)
            .iter()
            .map(|l| l["events"][0]["client_request_id"].clone())
            .collect();
        assert_eq!(ids.len(), 2);
        assert!(ids.contains(&json!("seg-before")) && ids.contains(&json!("seg-after")));
    })
    .await;
}

async fn health(server: &yallmp::Server) -> Value {
    client()
        .get(format!("{}/health", server.url()))
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap()
}

async fn metric(server: &yallmp::Server, name: &str) -> f64 {
    let text = metrics_text(server).await;
    metric_value(&text, name, &[]).unwrap_or(0.0)
}

/// Rows in the log's SQLite database at `path` (a connection of the
/// test's own).
async fn sqlite_rows(path: &std::path::Path) -> i64 {
    use sqlx::ConnectOptions as _;
    let Ok(mut c) = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(path)
        .read_only(true)
        .connect()
        .await
    else {
        return -1;
    };
    let n = sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM requests")
        .fetch_one(&mut c)
        .await
        .unwrap_or(-1);
    let _ = sqlx::Connection::close(c).await;
    n
}

/// The whole log (files and the SQLite database) on a small tmpfs that
/// fills up. The SQLite sink used never to recover: every later row failed
/// `database is locked` after a 5 s wait, even once space was freed; file
/// writing was held to a record per 5 s; /health said the database was
/// fine; and shutdown took 23 s. Now: requests are served throughout, the
/// health check says the sinks are degraded (and why), a counter counts
/// the database's failures and one warning says so (not one per record),
/// files keep being tried at full speed, and once there is room again every
/// waiting row is written and /health recovers by itself. With the disk
/// full again, shutdown stays within the grace period.
#[tokio::test]
async fn a_full_disk_under_sqlite_is_survived_and_recovered_from() {
    support::warnings::capture();
    within(async {
        let mock = Mock::start(Reply::Echo).await;
        let (mut config, dir) = logged_config(
            &format!(
                "model_list:\n  - {{model_name: m, model_params: {{api_base: '{}'}}}}\n",
                mock.url
            ),
            None,
        );
        let _mounted = match Mounted::tmpfs(&dir, "2m") {
            Ok(m) => m,
            Err(why) if std::env::var("YALLMP_FAULTS_MOUNT").as_deref() != Ok("1") => {
                eprintln!("cannot mount a tmpfs ({why}): full-disk SQLite fault test not run");
                return;
            }
            Err(why) => panic!("YALLMP_FAULTS_MOUNT=1 but mounting a tmpfs failed: {why}"),
        };
        config.server.shutdown_grace = Duration::from_secs(2);
        let db_path = dir.join("yallmp.db");
        let server = yallmp::serve(config).await.unwrap();
        let big = "x".repeat(60_000);
        let body = |i: usize| json!({"model": "m", "messages": [{"role": "user", "content": format!("{i} {big}")}]});

        let (status, _, _) = send(&server, "disk-0", body(0)).await;
        assert_eq!(status, 200);
        while sqlite_rows(&db_path).await < 1 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(health(&server).await["database"]["status"], "ok");

        // Full: every request is still served.
        let filler = dir.join("filler");
        fill(&filler);
        let errors_before = metric(&server, "yallmp_log_database_errors_total").await;
        for i in 1..=10 {
            let (status, _, text) = send(&server, &format!("disk-{i}"), body(i)).await;
            assert_eq!(status, 200, "{text}");
        }
        let h = loop {
            let h = health(&server).await;
            if h["database"]["status"] == "degraded" {
                break h;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        assert_eq!(h["status"], "ready", "the log's trouble makes no instance unready: {h}");
        assert_eq!(h["database"]["reachable"], false);
        assert!(h["database"]["error"].as_str().is_some(), "{h}");
        assert_eq!(h["log_files"]["status"], "degraded", "{h}");
        while metric(&server, "yallmp_log_database_errors_total").await <= errors_before {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        support::warnings::wait_for(&["request log: database unavailable; will retry"]).await;
        // Files are tried at full speed meanwhile, each failure counted.
        while file_write_failures(&server).await < 10.0 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // A warning a while, not one per record.
        let warned = support::warnings::logged()
            .matches("request log: database unavailable; will retry")
            .count();
        assert!(warned <= 2, "{warned} warnings");

        // Room again: the waiting rows are written, health recovers by
        // itself, and new records are kept.
        std::fs::remove_file(&filler).unwrap();
        let (status, _, _) = send(&server, "disk-after", body(11)).await;
        assert_eq!(status, 200);
        let h = loop {
            let h = health(&server).await;
            if h["database"]["status"] == "ok" && h["log_files"]["status"] == "ok" {
                break h;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        assert_eq!(h["database"]["reachable"], true);
        while sqlite_rows(&db_path).await < 12 {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(sqlite_rows(&db_path).await, 12);
        assert_eq!(outcome(&record(&dir, "disk-after").await)["outcome"], "ok");
        // No write lock outlived the failure.
        assert!(
            !support::warnings::logged().contains("database is locked"),
            "{}",
            support::warnings::logged()
        );

        // Full again, with rows waiting: shutdown stays within the grace
        // period (2 s here; a generous bound against a hang).
        fill(&filler);
        for i in 12..16 {
            let (status, _, _) = send(&server, &format!("disk-{i}"), body(i)).await;
            assert_eq!(status, 200);
        }
        tokio::time::timeout(Duration::from_secs(12), server.shutdown())
            .await
            .expect("shutdown with a full disk took far past the grace period");
        let _ = std::fs::remove_file(&filler);
    })
    .await;
}

/// A database the log cannot write to (held by another connection: every
/// insert waits out SQLite's 5 s busy timeout) and a request still in
/// flight at shutdown. The whole shutdown, the in-flight request's grace
/// and then the log's drain, fits in the grace period counted from the
/// call (the signal), plus a small floor. It used to be the grace period
/// for the requests and then as long again for the log: about twice it.
#[tokio::test]
async fn shutdown_with_an_unwritable_database_and_a_request_in_flight_stays_within_the_grace() {
    use sqlx::ConnectOptions as _;
    within(async {
        let mock = Mock::start(Reply::Delay(
            Duration::from_secs(120),
            Box::new(Reply::Echo),
        ))
        .await;
        let (mut config, dir) = logged_config(
            &format!(
                "model_list:\n  - {{model_name: m, model_params: {{api_base: '{}'}}}}\n",
                mock.url
            ),
            None,
        );
        let grace = Duration::from_secs(5);
        config.server.shutdown_grace = grace;
        let db_path = dir.join("yallmp.db");
        let server = yallmp::serve(config).await.unwrap();
        // The database is taken (its write lock held by a connection of the
        // test's own) until the end of the test.
        let mut lock = sqlx::sqlite::SqliteConnectOptions::new()
            .filename(&db_path)
            .connect()
            .await
            .unwrap();
        sqlx::query("BEGIN EXCLUSIVE")
            .execute(&mut lock)
            .await
            .unwrap();
        // A request in flight (its upstream answers long after the grace).
        let url = format!("{}/v1/chat/completions", server.url());
        let in_flight = tokio::spawn(async move {
            client()
                .post(url)
                .header("x-request-id", "in-flight")
                .json(&json!({"model": "m"}))
                .send()
                .await
        });
        while mock.hits().is_empty() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let started = std::time::Instant::now();
        server.shutdown().await;
        let took = started.elapsed();
        // A bound against the old doubling, not a timing test: the grace,
        // the runtime's last second and the log's floor fit in grace + 3 s.
        assert!(
            took < grace + Duration::from_secs(3),
            "shutdown took {took:?} with a grace period of {grace:?}"
        );
        // The cut request's record still went to its file.
        let ev = record(&dir, "in-flight").await;
        assert_eq!(outcome(&ev)["outcome"], "cancelled", "{}", outcome(&ev));
        let _ = in_flight.await;
        let _ = sqlx::query("ROLLBACK").execute(&mut lock).await;
        let _ = sqlx::Connection::close(lock).await;
    })
    .await;
}
