//! The response chain: the stages a backend's answer passes on its way to
//! the client, written down once ([`ORDER`]) and walked by both forms of an
//! answer, so that a whole answer and a stream cannot disagree on what
//! happens to them or in which order.
//!
//! 1. **to chat**: the backend's dialect as chat completions (an Anthropic
//!    backend), when the answer passes through chat;
//! 2. **parsers**: the configured response parsers (`Session`);
//! 3. **recorder**: interleaved thinking reads the turn's reasoning (chat,
//!    after the parsers);
//! 4. **from chat**: chat completions as the client's dialect (an Anthropic
//!    or Responses client), with `previous_response_id`'s turn kept.
//!
//! A whole answer ([`Whole`]) is one piece through the stages; a stream
//! ([`Frames`]) is batches of frames, each stage reading the previous one's
//! output from a scratch vector reused for the life of the stream (no
//! allocation per frame). Around the chain, not in it: the request log's
//! raw copy and the usage count read what the upstream sent; the cache
//! stores what the client got.

use bytes::Bytes;

use super::error::ApiError;
use super::previous;
use crate::endpoint::Endpoint;
use crate::pipeline::response::Session;
use crate::protocol::{self, Convert, StreamFailure};
use crate::reqlog::RecordGuard;
use crate::thinking::{Recorder, StreamRecorder};

/// A stage of the chain.
#[derive(Clone, Copy)]
enum Stage {
    ToChat,
    Parsers,
    Recorder,
    FromChat,
}

/// The order of the stages, for both forms of an answer.
const ORDER: [Stage; 4] = [
    Stage::ToChat,
    Stage::Parsers,
    Stage::Recorder,
    Stage::FromChat,
];

/// A whole (successful) answer's stages: the answer is one piece.
pub struct Whole<'a> {
    pub endpoint: Endpoint,
    pub wire: Endpoint,
    /// The requested model (names a Responses answer that has none).
    pub model: &'a str,
    pub parsers: Option<Session>,
    pub recorder: Option<Recorder>,
    /// `previous_response_id`: the turn kept, the answer's id set.
    pub previous: Option<&'a previous::Chain>,
    pub scrubber: &'a crate::reqlog::redact::Scrubber,
}

impl Whole<'_> {
    /// The answer through every stage; the parsers' notes go to the record.
    pub async fn run(
        mut self,
        mut sent: Bytes,
        guard: &mut RecordGuard,
    ) -> Result<Bytes, ApiError> {
        for stage in ORDER {
            match stage {
                Stage::ToChat => {
                    if let Some(chat) = protocol::to_chat(self.endpoint, self.wire, &sent) {
                        sent = chat.map_err(|e| translation_failed(&e, self.scrubber))?;
                    }
                }
                Stage::Parsers => {
                    if let Some(session) = &mut self.parsers {
                        if let Some(new) = session.apply_json(&sent) {
                            sent = new;
                        }
                        note_parsed(guard, session);
                    }
                }
                Stage::Recorder => {
                    if let Some(r) = &self.recorder {
                        r.json(&sent).await;
                    }
                }
                Stage::FromChat => {
                    if let Some(out) =
                        protocol::from_chat(self.endpoint, self.wire, &sent, self.model)
                    {
                        sent = out.map_err(|e| translation_failed(&e, self.scrubber))?;
                    }
                    if let Some(c) = self.previous {
                        sent = c.json(&sent, guard);
                    }
                }
            }
        }
        Ok(sent)
    }
}

/// A stream's stages, fed batches of upstream frames.
pub struct Frames {
    /// Backend dialect → chat chunks.
    pub to_chat: Option<Box<dyn Convert>>,
    pub parsers: Option<Session>,
    /// Interleaved thinking: the turn's reasoning, remembered at the end.
    pub recorder: Option<StreamRecorder>,
    /// Chat chunks → client dialect.
    pub from_chat: Option<Box<dyn Convert>>,
    /// Scratch space between the stages.
    spare: Vec<Bytes>,
}

impl Frames {
    pub fn new(
        to_chat: Option<Box<dyn Convert>>,
        parsers: Option<Session>,
        recorder: Option<StreamRecorder>,
        from_chat: Option<Box<dyn Convert>>,
    ) -> Frames {
        Frames {
            to_chat,
            parsers,
            recorder,
            from_chat,
            spare: Vec::new(),
        }
    }

    /// Whether the frames pass unchanged (the recorder only reads them):
    /// then a batch leaves as it came, without being joined again.
    pub fn passes_through(&self) -> bool {
        self.to_chat.is_none() && self.parsers.is_none() && self.from_chat.is_none()
    }

    /// Whether the client's dialect is not the backend's (its stream gets
    /// an SSE content type of the proxy's choosing).
    pub fn translates(&self) -> bool {
        self.to_chat.is_some() || self.from_chat.is_some()
    }

    /// `frames` (upstream frames) through every stage; `frames` holds the
    /// output after. `end`: the stream is over, each stage gives what it
    /// still holds (the last translator closes the client's dialect only
    /// when `clean`: a broken stream is not closed as if finished).
    pub fn run(&mut self, frames: &mut Vec<Bytes>, end: Option<(bool, &mut RecordGuard)>) {
        let (ending, clean, mut guard) = match end {
            Some((clean, g)) => (true, clean, Some(g)),
            None => (false, false, None),
        };
        for stage in ORDER {
            let out = &mut self.spare;
            out.clear();
            match stage {
                Stage::ToChat => match &mut self.to_chat {
                    Some(conv) => {
                        for f in frames.iter() {
                            conv.frame(f, out);
                        }
                        if ending {
                            conv.end(out);
                        }
                    }
                    None => continue,
                },
                Stage::Parsers => match &mut self.parsers {
                    Some(s) => {
                        for f in frames.iter() {
                            s.on_frame(f, out);
                        }
                        if ending {
                            s.end(out);
                            if let Some(g) = guard.take() {
                                note_parsed(g, s);
                            }
                        }
                    }
                    None => continue,
                },
                Stage::Recorder => {
                    if let Some(r) = &mut self.recorder {
                        for f in frames.iter() {
                            r.on_frame(f);
                        }
                    }
                    continue;
                }
                Stage::FromChat => match &mut self.from_chat {
                    Some(conv) => {
                        for f in frames.iter() {
                            conv.frame(f, out);
                        }
                        if ending && clean {
                            conv.end(out);
                        }
                    }
                    None => continue,
                },
            }
            std::mem::swap(frames, out);
        }
        if ending {
            // The parsers are done; their session leaves with its notes.
            self.parsers = None;
        }
    }

    /// The client's dialect's own ending of a broken stream (numbered after
    /// the events before it), when its translator has one.
    pub fn fail(&mut self, failure: &StreamFailure, out: &mut Vec<Bytes>) -> bool {
        match &mut self.from_chat {
            Some(conv) => conv.fail(failure, out),
            None => false,
        }
    }

    /// Whether the chain ends in a translator to the client's dialect.
    pub fn has_from_chat(&self) -> bool {
        self.from_chat.is_some()
    }
}

/// A backend answer that could not be translated for the client (the
/// parser's message may quote the answer: scrubbed like any upstream text).
fn translation_failed(
    e: &protocol::TranslateError,
    scrubber: &crate::reqlog::redact::Scrubber,
) -> ApiError {
    ApiError::Internal(
        scrubber.scrub_upstream(format!("cannot translate the backend's answer: {e}")),
    )
}

/// The parsers' output and failures, into the record.
fn note_parsed(guard: &mut RecordGuard, session: &Session) {
    let Some(r) = guard.record() else { return };
    if let Some(p) = session.parsed() {
        r.parsed = Some(p);
    }
    // Telemetry hook: the parsers that ran, for the span.
    if r.trace.is_some() {
        r.parsers = Some(session.parsers());
    }
    let errors = session.errors();
    if !errors.is_empty() {
        let msg = format!("response parsers: {}", errors.join("; "));
        r.error = Some(match r.error.take() {
            Some(e) => format!("{e}; {msg}"),
            None => msg,
        });
    }
}
