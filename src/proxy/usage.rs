//! Where an answer's token usage becomes known: counted in
//! `yallmp_tokens_total` (by the configured model of the backend that
//! answered) and charged to the tokens-per-minute limits.

use std::sync::Arc;

use crate::config::Backend;
use crate::limits::Ticket;
use crate::router::state::Registry;
use crate::usage::{StreamUsage, Usage};

/// A stream's token usage, observed when the relay ends however it ends
/// (done, broken, or the client gone).
pub struct Tokens {
    pub backends: Arc<Registry>,
    pub backend: Arc<Backend>,
    pub usage: StreamUsage,
    pub ticket: Option<Ticket>,
}

impl Drop for Tokens {
    fn drop(&mut self) {
        observe(
            &self.backends,
            &self.backend,
            self.usage.get(),
            self.ticket.take(),
        );
    }
}

/// Counts `usage` and charges it to the request's rate-limit ticket.
pub fn observe(
    backends: &Registry,
    backend: &Backend,
    usage: Option<Usage>,
    ticket: Option<Ticket>,
) {
    let Some(usage) = usage else { return };
    let model = backend.model_name.clone();
    let (input, output) = (usage.input(), usage.output());
    backends.add_tokens(&backend.name, input, output);
    if input > 0 {
        metrics::counter!(crate::metrics_names::TOKENS, "model" => model.clone(), "direction" => "in")
            .increment(input);
    }
    if output > 0 {
        metrics::counter!(crate::metrics_names::TOKENS, "model" => model, "direction" => "out")
            .increment(output);
    }
    if let Some(t) = ticket {
        t.charge(usage.total());
    }
}
