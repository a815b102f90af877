//! One request's part in interleaved thinking: the turns looked up on the
//! way in ([`ForRequest`], made by [`Thinking::for_request`]) and the
//! recorders that remember the answer on the way out ([`Recorder`] for a
//! JSON body, [`StreamRecorder`] for a stream).

use std::collections::HashMap;
use std::sync::Arc;

use super::{Entry, HEADER, TURNS, Thinking, capture, keys, restore, source_of, tags};
use crate::config::Backend;
use crate::config::thinking::{StoreKind, ThinkingSettings};

/// A think block form from the response parsers' `folded_form`.
pub fn wrap_of(form: Option<(&str, &str, bool)>) -> Option<tags::Wrap> {
    form.map(|(open, close, newline)| tags::Wrap {
        open: open.to_string(),
        close: close.to_string(),
        newline,
    })
}

/// One request's part: the turns restored on the way in, and who
/// remembers the answer on the way out.
pub struct ForRequest {
    thinking: Arc<Thinking>,
    scope: keys::Scope,
    /// The configured model the request resolved to (a wildcard's
    /// pattern, never the name the client sent): the memory store and the
    /// metric label are this model's, so client-chosen names cannot grow
    /// either.
    configured: Arc<str>,
    /// The snapshot and path the request runs with (the answering
    /// model's parsers say how reasoning is folded into content).
    live: Arc<crate::live::Live>,
    path: String,
    /// The assistant turns that came without reasoning, looked up.
    pub restore: Option<restore::Restore>,
}

impl Thinking {
    /// A chat completion's part, when a backend of its plan has
    /// interleaved thinking on: its turns without reasoning read and looked
    /// up. `Err` (the number of such turns) when the first backend's
    /// `on_miss` is `error` and some are missing.
    #[allow(clippy::too_many_arguments)]
    pub async fn for_request(
        self: &Arc<Self>,
        live: &Arc<crate::live::Live>,
        plan: &[Arc<Backend>],
        model: &str,
        body: &crate::pipeline::request::RequestBody<'_>,
        headers: &http::HeaderMap,
        endpoint: crate::endpoint::Endpoint,
        path: &str,
    ) -> Result<Option<ForRequest>, usize> {
        if endpoint != crate::endpoint::Endpoint::ChatCompletions
            || plan.iter().all(|b| b.thinking.is_none())
        {
            return Ok(None);
        }
        // The parsers are the configured model's (a wildcard's pattern).
        let configured = plan.first().map_or(model, |b| b.model_name.as_str());
        let fold = wrap_of(
            live.pipeline(configured, path)
                .and_then(|p| p.folded_form()),
        );
        let t = self
            .prepare(
                plan,
                model,
                body.get("messages"),
                crate::identity::presented(headers),
                fold.as_ref(),
                (live.clone(), path.to_string()),
                configured,
            )
            .await;
        if let (Some(t), Some(first)) = (&t, plan.first()) {
            t.check(first)?;
        }
        Ok(t)
    }

    /// Reads and looks up the request's turns, when a backend of the plan
    /// has interleaved thinking on. `fold` is the think block form of the
    /// requested model's parsers; `configured` the model it resolved to.
    #[allow(clippy::too_many_arguments)]
    async fn prepare(
        self: &Arc<Self>,
        plan: &[Arc<Backend>],
        model: &str,
        messages: Option<&serde_json::value::RawValue>,
        client_key: Option<&str>,
        fold: Option<&tags::Wrap>,
        (live, path): (Arc<crate::live::Live>, String),
        configured: &str,
    ) -> Option<ForRequest> {
        let settings: Vec<&ThinkingSettings> =
            plan.iter().filter_map(|b| b.thinking.as_deref()).collect();
        if settings.is_empty() {
            return None;
        }
        let scope = keys::Scope::new(model, client_key);
        let mut restore = messages.and_then(|m| restore::Restore::read(m, &scope, fold));
        if let Some(r) = &mut restore {
            let keys = r.keys();
            let mut found = HashMap::new();
            let mut seen: Vec<(StoreKind, u64)> = Vec::new();
            for s in settings {
                if seen.contains(&(s.store, s.max_entries)) {
                    continue;
                }
                seen.push((s.store, s.max_entries));
                for (k, e) in self.lookup(s, configured, &keys).await {
                    found.entry(k).or_insert(e);
                }
            }
            r.resolve(&found);
        }
        Some(ForRequest {
            thinking: self.clone(),
            scope,
            configured: Arc::from(configured),
            live,
            path,
            restore,
        })
    }
}

impl ForRequest {
    /// What the first backend gets, logged; `Err` with the number of turns
    /// without reasoning when its `on_miss` is `error`.
    pub fn check(&self, first: &Backend) -> Result<restore::Tally, usize> {
        let Some(r) = &self.restore else {
            return Ok(restore::Tally::default());
        };
        let tally = r.tally(first);
        for (result, n) in [
            ("restored", tally.restored),
            ("missing", tally.missing),
            ("foreign", tally.foreign),
        ] {
            if n > 0 {
                metrics::counter!(TURNS, "model" => self.configured.to_string(), "result" => result)
                    .increment(n as u64);
            }
        }
        if tally.restored + tally.missing + tally.foreign > 0 {
            tracing::info!(
                model = %self.scope.model,
                backend = %first.name,
                restored = tally.restored,
                missing = tally.missing,
                foreign = tally.foreign,
                "interleaved thinking: reasoning restored"
            );
        }
        let on_miss = first.thinking.as_deref().map(|s| s.on_miss);
        if on_miss == Some(crate::config::thinking::OnMiss::Error)
            && tally.missing + tally.foreign > 0
        {
            return Err(tally.missing + tally.foreign);
        }
        Ok(tally)
    }

    /// `x-yallmp-thinking: restored=N missing=N foreign=N`: what `backend`
    /// (the one that answered) was given; `None` when no turn was looked at.
    pub fn header(&self, backend: &Backend) -> Option<(http::HeaderName, http::HeaderValue)> {
        let t = self.restore.as_ref()?.tally(backend);
        if t.restored + t.missing + t.foreign == 0 {
            return None;
        }
        let v = format!(
            "restored={} missing={} foreign={}",
            t.restored, t.missing, t.foreign
        );
        Some((HEADER, http::HeaderValue::from_str(&v).ok()?))
    }

    /// Who remembers the answer of `backend` (when its setting is on).
    pub fn recorder(&self, backend: &Backend) -> Option<Recorder> {
        let settings = backend.thinking.clone()?;
        let fold = wrap_of(
            self.live
                .pipeline(&backend.model_name, &self.path)
                .and_then(|p| p.folded_form()),
        );
        Some(Recorder {
            thinking: self.thinking.clone(),
            scope: self.scope.clone(),
            configured: self.configured.clone(),
            settings,
            source: source_of(backend),
            fold,
        })
    }
}

/// Remembers the turns of one answer.
pub struct Recorder {
    thinking: Arc<Thinking>,
    scope: keys::Scope,
    /// The configured model whose store remembers the turns.
    configured: Arc<str>,
    settings: Arc<ThinkingSettings>,
    source: String,
    fold: Option<tags::Wrap>,
}

impl Recorder {
    /// A whole JSON answer (as the client gets it).
    pub async fn json(&self, body: &[u8]) {
        let turns = capture::from_body(body, self.fold.as_ref());
        self.store(turns).await;
    }

    /// A stream: feed it the frames the client gets, then `commit`.
    pub fn stream(self) -> StreamRecorder {
        StreamRecorder {
            recorder: self,
            turns: capture::StreamTurns::default(),
        }
    }

    async fn store(&self, turns: Vec<capture::Turn>) {
        use crate::config::thinking::Scope as TurnScope;
        for t in turns {
            if self.settings.scope == TurnScope::ToolTurns && t.calls.is_empty() {
                continue;
            }
            let keys = keys::turn_keys(&self.scope, &t.content, &t.calls);
            tracing::debug!(
                model = %self.scope.model,
                source = %self.source,
                bytes = t.reasoning.len(),
                keys = keys.len(),
                "interleaved thinking: turn remembered"
            );
            let entry = Entry {
                reasoning: t.reasoning,
                signature: t.signature,
                source: self.source.clone(),
            };
            self.thinking
                .remember(&self.settings, &self.configured, keys, entry)
                .await;
        }
    }
}

/// A stream's recorder: gathers the frames, remembers at the end.
pub struct StreamRecorder {
    recorder: Recorder,
    turns: capture::StreamTurns,
}

impl StreamRecorder {
    pub fn on_frame(&mut self, frame: &[u8]) {
        self.turns.on_frame(frame);
    }

    /// `[DONE]` went by: the turn is complete.
    pub fn done(&self) -> bool {
        self.turns.done
    }

    /// Remembers the stream's turns (call only for a stream that ended
    /// normally).
    pub async fn commit(self) {
        let turns = self.turns.turns(self.recorder.fold.as_ref());
        self.recorder.store(turns).await;
    }
}
