//! Where an answer's token usage becomes known: counted in
//! `yallmp_tokens_total` (by the configured model of the backend that
//! answered), charged to the tokens-per-minute limits, priced, and the
//! cost charged to the virtual key's and team's budgets ([`Bill`]).

use std::sync::Arc;

use crate::config::Backend;
use crate::keys::spend::{Counter, Spend};
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
    /// The answering backend's price, when known.
    pub price: Option<crate::price::Price>,
    pub bill: Bill,
}

impl Drop for Tokens {
    fn drop(&mut self) {
        observe(
            &self.backends,
            &self.backend,
            self.price,
            self.usage.get(),
            self.ticket.take(),
            &self.bill,
        );
    }
}

/// Who pays for an answer: the virtual key's (and team's) budget counters
/// for the current period, and the key's name for the metrics.
#[derive(Clone, Default)]
pub struct Bill {
    pub spend: Option<Arc<Spend>>,
    pub counters: Vec<Counter>,
    /// The key's name (`(none)` without a virtual key).
    pub key: Option<Arc<str>>,
}

/// Counts `usage`, charges it to the request's rate-limit ticket, and its
/// cost to the bill; returns the cost when the price is known.
pub fn observe(
    backends: &Registry,
    backend: &Backend,
    price: Option<crate::price::Price>,
    usage: Option<Usage>,
    ticket: Option<Ticket>,
    bill: &Bill,
) -> Option<f64> {
    let usage = usage?;
    let cost = price.map(|p| p.cost(&usage));
    let key = || bill.key.as_deref().unwrap_or("(none)").to_string();
    if let Some(usd) = cost {
        let micro = (usd * 1e6).round();
        if micro >= 1.0 {
            metrics::counter!(crate::metrics_names::SPEND, "model" => backend.model_name.clone(), "key" => key())
                .increment(micro as u64);
        }
        if let Some(spend) = &bill.spend {
            spend.charge(bill.counters.clone(), usd);
        }
    }
    if bill.key.is_some() {
        for (kind, n) in [("input", usage.input()), ("output", usage.output())] {
            if n > 0 {
                metrics::counter!(crate::metrics_names::KEY_TOKENS, "model" => backend.model_name.clone(), "key" => key(), "kind" => kind)
                    .increment(n);
            }
        }
    }
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
    cost
}
