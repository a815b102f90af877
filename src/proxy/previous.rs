//! `previous_response_id` and `GET /v1/responses/{id}` for Responses answers
//! yallmp made itself: a `/v1/responses` request sent to a backend as chat
//! completions (`supports_responses: false`) or Anthropic Messages.
//!
//! Each such answer gets an id of yallmp's own (`resp_` and the record's
//! UUIDv7, hex) and its *turn* is kept with the request's record (columns
//! `response_id`, `response_turn`): the client scope, the previous response
//! id, the request's own input items and the Responses object. A request
//! that names a previous response has its conversation rebuilt by walking
//! that chain back (at most [`MAX_DEPTH`] turns, within [`LOOKUP_TIMEOUT`]):
//! every turn's input, then its output, oldest first, then the new input.
//! Each turn stores only its own input, so a long chain costs one row per
//! turn, not the whole conversation again.
//!
//! The log's writer runs in the background, so a client chaining at once may
//! ask before the row exists: turns are also kept in [`Recent`], a bounded
//! in-memory map (by count and bytes, oldest out first) looked at before the
//! database. Nothing is kept when the request log has no database, or the
//! request has no record: such ids are unknown (404), like ids that retention
//! pruned.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::HeaderMap;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use super::Proxy;
use super::error::ApiError;
use crate::config::Backend;
use crate::endpoint::Endpoint;
use crate::live::Live;
use crate::protocol::responses::stream::ChatToResponses;
use crate::protocol::{Convert, StreamFailure};
use crate::reqlog::{RecordGuard, TurnSlot};

/// The longest chain rebuilt (turns); a longer one is not found.
pub const MAX_DEPTH: usize = 256;
/// The whole walk back, database reads included.
pub const LOOKUP_TIMEOUT: Duration = Duration::from_secs(10);
/// [`Recent`]'s bounds.
const RECENT_ENTRIES: usize = 4096;
const RECENT_BYTES: usize = 64 << 20;

/// One translated Responses answer and what led to it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Turn {
    /// The client it belongs to (a hashed client key) when client keys are
    /// configured; `None` otherwise.
    pub scope: Option<String>,
    /// The `previous_response_id` the request named.
    pub previous: Option<String>,
    /// The request's own input items (a string input as a user message).
    pub input: Vec<Value>,
    /// The Responses object sent to the client.
    pub response: Value,
}

/// Recent turns in memory, so a chain works before the log's writer has
/// stored them: at most [`RECENT_ENTRIES`] and [`RECENT_BYTES`], the
/// oldest dropped first.
#[derive(Default)]
pub struct Recent {
    inner: Mutex<RecentInner>,
}

#[derive(Default)]
struct RecentInner {
    map: HashMap<String, (Arc<Turn>, usize)>,
    order: VecDeque<String>,
    bytes: usize,
}

impl Recent {
    pub fn insert(&self, id: String, turn: Arc<Turn>, weight: usize) {
        if weight > RECENT_BYTES {
            return;
        }
        let Ok(mut g) = self.inner.lock() else { return };
        if let Some((_, w)) = g.map.insert(id.clone(), (turn, weight)) {
            g.bytes -= w;
        } else {
            g.order.push_back(id);
        }
        g.bytes += weight;
        while g.map.len() > RECENT_ENTRIES || g.bytes > RECENT_BYTES {
            let Some(old) = g.order.pop_front() else {
                break;
            };
            if let Some((_, w)) = g.map.remove(&old) {
                g.bytes -= w;
            }
        }
    }

    pub fn get(&self, id: &str) -> Option<Arc<Turn>> {
        self.inner.lock().ok()?.map.get(id).map(|(t, _)| t.clone())
    }
}

/// Who may chain from a response: the hashed client key when client keys
/// are configured, else anyone (`None`).
pub fn scope(live: &Live, headers: &HeaderMap) -> Option<String> {
    let key = if live.config.auth.api_keys.is_empty() {
        None
    } else {
        crate::identity::presented(headers)
    };
    scope_of(live, key)
}

/// [`scope`] for a client already identified (`key`: the configured key
/// it presented, `None` without configured keys).
pub fn scope_of(live: &Live, key: Option<&str>) -> Option<String> {
    if live.config.auth.api_keys.is_empty() {
        return None;
    }
    Some(crate::limits::client_id(key, None))
}

/// Whether a Responses request to `backend` is translated (answered by
/// yallmp as a Responses object made from another dialect).
pub fn translated(backend: &Backend) -> bool {
    crate::protocol::wire(Endpoint::Responses, backend).is_ok_and(|w| w != Endpoint::Responses)
}

/// One Responses request's part in a chain: its id (made before anything
/// goes upstream) and what its turn will hold.
pub struct Chain {
    pub id: String,
    scope: Option<String>,
    previous: Option<String>,
    input: Vec<Value>,
    /// Where turns are remembered; `None` when the log has no database.
    recent: Option<Arc<Recent>>,
}

/// The request's input items as a list.
pub fn input_items(body: &Map<String, Value>) -> Vec<Value> {
    match body.get("input") {
        Some(Value::String(s)) => {
            vec![json!({"type": "message", "role": "user", "content": s})]
        }
        Some(Value::Array(items)) => items.clone(),
        _ => Vec::new(),
    }
}

/// For a Responses request whose plan has a translated backend: its
/// [`Chain`], and the body to send instead of `raw` when it names a
/// previous response yallmp made (the whole conversation as `input`,
/// `previous_response_id` gone). A previous response that is not known is
/// 404 when every backend of the plan is translated; with a native backend
/// in the plan the request goes on unchanged (that backend may know it).
/// `key`: the client's, as the proxy identified it (see [`scope_of`]).
pub async fn prepare(
    state: &Proxy,
    live: &Live,
    plan: &[Arc<Backend>],
    raw: &Bytes,
    key: Option<&str>,
    own_id: &str,
) -> Result<Option<(Chain, Option<Bytes>)>, ApiError> {
    if !plan.iter().any(|b| translated(b)) {
        return Ok(None);
    }
    let Ok(Value::Object(mut body)) = serde_json::from_slice::<Value>(raw) else {
        return Ok(None);
    };
    let scope = scope_of(live, key);
    let previous = body
        .get("previous_response_id")
        .and_then(Value::as_str)
        .map(str::to_string);
    let input = input_items(&body);
    let hex: String = own_id.chars().filter(|c| *c != '-').collect();
    let id = if hex.is_empty() || hex == "unknown" {
        format!("resp_{}", uuid::Uuid::now_v7().simple())
    } else {
        format!("resp_{hex}")
    };
    let recent = state
        .log_reader
        .as_ref()
        .map(|_| state.recent_responses.clone());
    let mut expanded = None;
    if let Some(prev) = &previous {
        match conversation(state, prev, scope.as_deref()).await? {
            Some(mut items) => {
                items.extend(input.iter().cloned());
                body.remove("previous_response_id");
                body.insert("input".into(), Value::Array(items));
                expanded = Some(Bytes::from(Value::Object(body).to_string()));
            }
            None if plan.iter().all(|b| translated(b)) => {
                return Err(ApiError::PreviousResponseNotFound(prev.clone()));
            }
            None => {}
        }
    }
    Ok(Some((
        Chain {
            id,
            scope,
            previous,
            input,
            recent,
        },
        expanded,
    )))
}

/// One turn by response id, from memory or the log's database; `None`
/// when unknown or another client's.
pub async fn turn(
    state: &Proxy,
    id: &str,
    scope: Option<&str>,
) -> Result<Option<Arc<Turn>>, String> {
    let found = match state.recent_responses.get(id) {
        Some(t) => Some(t),
        None => match &state.log_reader {
            Some(db) => db
                .fetch_response_turn(id)
                .await
                .map_err(|e| e.to_string())?
                .and_then(|text| serde_json::from_str::<Turn>(&text).ok())
                .map(Arc::new),
            None => None,
        },
    };
    Ok(found.filter(|t| t.scope.as_deref() == scope))
}

/// The conversation up to and including response `id`: each turn's input
/// and output items, oldest first; `None` when a turn of the chain is not
/// known (or not the client's, or the chain is too long).
async fn conversation(
    state: &Proxy,
    id: &str,
    scope: Option<&str>,
) -> Result<Option<Vec<Value>>, ApiError> {
    let walk = async {
        let mut turns = Vec::new();
        let mut cur = id.to_string();
        for _ in 0..MAX_DEPTH {
            let Some(t) = turn(state, &cur, scope).await? else {
                return Ok(None);
            };
            let prev = t.previous.clone();
            turns.push(t);
            match prev {
                Some(p) => cur = p,
                None => {
                    let mut items = Vec::new();
                    for t in turns.iter().rev() {
                        items.extend(t.input.iter().cloned());
                        if let Some(out) = t.response.get("output").and_then(Value::as_array) {
                            items.extend(out.iter().cloned());
                        }
                    }
                    return Ok(Some(items));
                }
            }
        }
        Ok(None)
    };
    match tokio::time::timeout(LOOKUP_TIMEOUT, walk).await {
        Ok(Ok(found)) => Ok(found),
        Ok(Err(e)) => Err(ApiError::ResponseStore(e)),
        Err(_) => Err(ApiError::ResponseStore(format!(
            "the request log's database did not answer within {}s",
            LOOKUP_TIMEOUT.as_secs()
        ))),
    }
}

impl Chain {
    /// The turn for `response`, kept in the record and in memory.
    fn keep(
        scope: &Option<String>,
        previous: &Option<String>,
        input: &[Value],
        recent: Option<&Arc<Recent>>,
        id: &str,
        response: Value,
        slot: &TurnSlot,
    ) {
        let turn = Turn {
            scope: scope.clone(),
            previous: previous.clone(),
            input: input.to_vec(),
            response,
        };
        let Ok(text) = serde_json::to_string(&turn) else {
            return;
        };
        let weight = text.len();
        let _ = slot.set(text);
        if let Some(r) = recent {
            r.insert(id.to_string(), Arc::new(turn), weight);
        }
    }

    /// A whole translated answer: its id made yallmp's, its turn kept (when
    /// the request has a record). Returns the body to send.
    pub fn json(&self, sent: &Bytes, guard: &mut RecordGuard) -> Bytes {
        let Ok(mut v) = serde_json::from_slice::<Value>(sent) else {
            return sent.clone();
        };
        v["id"] = json!(self.id);
        let body = Bytes::from(v.to_string());
        if let (Some(r), Some(recent)) = (guard.record(), &self.recent) {
            let slot = TurnSlot::default();
            Self::keep(
                &self.scope,
                &self.previous,
                &self.input,
                Some(recent),
                &self.id,
                v,
                &slot,
            );
            r.response_id = Some(self.id.clone());
            r.response_turn = Some(slot);
        }
        body
    }

    /// The chat → Responses stream translator for this request, with the
    /// id made here; the turn is kept when `response.completed` (or
    /// `response.incomplete`) passes; `model` (the requested one) names the
    /// response when the chunks do not.
    pub fn stream(self, guard: &mut RecordGuard, model: &str) -> Box<dyn Convert> {
        let inner = ChatToResponses::with_id(self.id.clone()).with_model(model);
        let slot = match (guard.record(), &self.recent) {
            (Some(r), Some(_)) => {
                let slot = TurnSlot::default();
                r.response_id = Some(self.id.clone());
                r.response_turn = Some(slot.clone());
                Some(slot)
            }
            _ => None,
        };
        match slot {
            Some(slot) => Box::new(Capture {
                inner,
                chain: self,
                slot,
            }),
            None => Box::new(inner),
        }
    }
}

/// A Responses stream translator that keeps the final response.
struct Capture {
    inner: ChatToResponses,
    chain: Chain,
    slot: TurnSlot,
}

impl Capture {
    fn scan(&mut self, out: &[Bytes]) {
        if self.slot.get().is_some() {
            return;
        }
        for f in out {
            let ev = crate::sse::parse(f);
            if !matches!(ev.event, Some("response.completed" | "response.incomplete")) {
                continue;
            }
            let Some(Ok(v)) = ev.data.as_deref().map(serde_json::from_str::<Value>) else {
                continue;
            };
            let c = &self.chain;
            Chain::keep(
                &c.scope,
                &c.previous,
                &c.input,
                c.recent.as_ref(),
                &c.id,
                v["response"].clone(),
                &self.slot,
            );
            return;
        }
    }
}

impl Convert for Capture {
    fn frame(&mut self, frame: &[u8], out: &mut Vec<Bytes>) {
        let start = out.len();
        self.inner.frame(frame, out);
        self.scan(&out[start..]);
    }

    fn end(&mut self, out: &mut Vec<Bytes>) {
        let start = out.len();
        self.inner.end(out);
        self.scan(&out[start..]);
    }

    /// The translator's own failed ending (numbered after its events, the
    /// response so far in `response.failed`), not the relay's fallback.
    fn fail(&mut self, failure: &StreamFailure, out: &mut Vec<Bytes>) -> bool {
        let start = out.len();
        let own = self.inner.fail(failure, out);
        self.scan(&out[start..]);
        own
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(n: usize) -> Arc<Turn> {
        Arc::new(Turn {
            scope: None,
            previous: None,
            input: vec![json!(n)],
            response: json!({}),
        })
    }

    #[test]
    fn recent_is_bounded_by_count_and_bytes() {
        let r = Recent::default();
        for i in 0..RECENT_ENTRIES + 10 {
            r.insert(format!("r{i}"), t(i), 10);
        }
        assert!(r.get("r0").is_none());
        assert!(r.get(&format!("r{}", RECENT_ENTRIES + 9)).is_some());
        r.insert("big".into(), t(0), RECENT_BYTES - 5);
        assert!(r.get("big").is_some());
        assert!(r.get(&format!("r{}", RECENT_ENTRIES + 9)).is_none());
        r.insert("too-big".into(), t(0), RECENT_BYTES + 1);
        assert!(r.get("too-big").is_none());
    }
}
