//! `Live`: everything a request reads, built whole from a [`Config`] and
//! swapped in atomically (`ArcSwap`). A request loads one snapshot and keeps
//! it to the end, so a reload never changes a request half way.

pub mod revise;

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;

use bytes::Bytes;
use serde_json::json;

use crate::config::{Backend, Config, FallbackKind};
use crate::pipeline::response::Pipeline;

/// One immutable snapshot.
pub struct Live {
    pub config: Arc<Config>,
    /// Attempt order per model: its backends, then its fallbacks' backends.
    plans: HashMap<String, Arc<[Arc<Backend>]>>,
    /// The attempt order that replaces a model's plan on a failure of a
    /// kind with fallbacks of its own (models without them are absent).
    kind_plans: HashMap<(String, FallbackKind), Arc<[Arc<Backend>]>>,
    /// The `GET /v1/models` body.
    pub models_json: Bytes,
    /// Model names in config order.
    pub model_names: Vec<String>,
    /// When this snapshot was built (the models' `created`), Unix seconds.
    pub created: i64,
    /// Model order used when resolving fallbacks (for display).
    pub fallback_chains: HashMap<String, Vec<String>>,
    /// Response parsers per model (its own block, else the global one);
    /// models without parsers are absent.
    pipelines: HashMap<String, Arc<Pipeline>>,
    /// The wildcard model names, best first.
    patterns: crate::wildcard::Patterns,
    /// What the wildcard backends offer (`GET /v1/models`).
    catalog: Arc<crate::catalog::Catalog>,
    /// This config's secrets (backend keys, the admin password), scrubbed
    /// from upstream text before it reaches a client or stderr.
    pub scrubber: Arc<crate::reqlog::redact::Scrubber>,
}

impl Live {
    pub fn new(config: Config) -> Live {
        let created = chrono::Utc::now().timestamp();
        let model_names: Vec<String> = config.models.iter().map(|m| m.name.clone()).collect();
        let data: Vec<_> = model_names
            .iter()
            .filter(|name| !crate::wildcard::is_pattern(name))
            .map(|name| json!({"id": name, "object": "model", "created": created, "owned_by": "yallmp"}))
            .collect();
        let models_json = Bytes::from(json!({"object": "list", "data": data}).to_string());
        let mut plans = HashMap::new();
        let mut kind_plans = HashMap::new();
        let mut fallback_chains = HashMap::new();
        let mut pipelines = HashMap::new();
        let global = Pipeline::build(&config.parsers);
        for m in &config.models {
            let own = m.parsers.as_ref().map(Pipeline::build);
            if let Some(p) = own.unwrap_or_else(|| global.clone()) {
                pipelines.insert(m.name.clone(), p);
            }
            let chain = fallback_chain(&config, &m.name);
            let plan: Vec<Arc<Backend>> = chain
                .iter()
                .filter_map(|name| config.model(name))
                .flat_map(|mc| mc.backends.iter().cloned())
                .collect();
            plans.insert(m.name.clone(), plan.into());
            fallback_chains.insert(m.name.clone(), chain[1..].to_vec());
            for kind in FallbackKind::ALL {
                let targets = m.kind_fallbacks(kind);
                if targets.is_empty() {
                    continue;
                }
                let plan: Vec<Arc<Backend>> = kind_chain(&config, &m.name, targets)
                    .iter()
                    .filter_map(|name| config.model(name))
                    .flat_map(|mc| mc.backends.iter().cloned())
                    .collect();
                if !plan.is_empty() {
                    kind_plans.insert((m.name.clone(), kind), plan.into());
                }
            }
        }
        let patterns = crate::wildcard::Patterns::new(model_names.iter().map(String::as_str));
        Live {
            patterns,
            catalog: Default::default(),
            scrubber: Arc::new(crate::reqlog::redact::Scrubber::from_config(&config)),
            config: Arc::new(config),
            plans,
            kind_plans,
            models_json,
            model_names,
            created,
            fallback_chains,
            pipelines,
        }
    }

    /// The response parsers for answers of `model`'s backends to a request
    /// on `path`, if any apply.
    pub fn pipeline(&self, model: &str, path: &str) -> Option<&Arc<Pipeline>> {
        self.pipelines.get(model).filter(|p| p.applies_to(path))
    }

    /// The backends to try for `model`, in order.
    pub fn plan(&self, model: &str) -> Option<Arc<[Arc<Backend>]>> {
        self.plans.get(model).cloned()
    }

    /// The backends to try instead of answering when a request for `model`
    /// failed in a way of `kind` (`context_window_fallbacks`,
    /// `content_policy_fallbacks`), in order; `None` when it has none.
    pub fn kind_plan(&self, model: &str, kind: FallbackKind) -> Option<Arc<[Arc<Backend>]>> {
        self.kind_plans.get(&(model.to_string(), kind)).cloned()
    }

    /// The configured model serving a requested name: the exact entry, else
    /// the wildcard with the longest literal prefix (`*` last).
    pub fn resolve<'a>(&'a self, requested: &'a str) -> Option<&'a str> {
        if self.plans.contains_key(requested) {
            return Some(requested);
        }
        self.patterns.find(requested)
    }

    /// The `GET /v1/models` body: the exact names, then what the wildcard
    /// backends are known to offer (fetched in the background; never
    /// waited for).
    pub fn models_listing(&self, client: &reqwest::Client) -> Bytes {
        if self.patterns.is_empty() {
            return self.models_json.clone();
        }
        let mut seen: HashSet<String> = HashSet::new();
        let mut data = Vec::new();
        let exact = self
            .model_names
            .iter()
            .filter(|n| !crate::wildcard::is_pattern(n))
            .cloned();
        let offered = self.patterns.iter().flat_map(|p| {
            let backends = self
                .config
                .model(p)
                .map(|m| m.backends.as_slice())
                .unwrap_or_default();
            self.catalog.offered(backends, client)
        });
        for name in exact.chain(offered) {
            if seen.insert(name.clone()) {
                data.push(json!({"id": name, "object": "model", "created": self.created, "owned_by": "yallmp"}));
            }
        }
        Bytes::from(json!({"object": "list", "data": data}).to_string())
    }
}

/// `model`, then its fallbacks in order, then theirs (breadth first), each
/// model once: cycles end where they would repeat.
fn fallback_chain(config: &Config, model: &str) -> Vec<String> {
    walk(config, VecDeque::from([model]), HashSet::new())
}

/// The fallbacks for a kind of failure of `model`: `targets`, each followed
/// by its own generic fallbacks (breadth first, as [`fallback_chain`]), each
/// model once, `model` itself never (it just failed that way).
fn kind_chain(config: &Config, model: &str, targets: &[String]) -> Vec<String> {
    let queue = targets.iter().map(String::as_str).collect();
    walk(config, queue, HashSet::from([model]))
}

/// The models of `queue`, each followed by its generic fallbacks, breadth
/// first, skipping those `seen` holds (and each once).
fn walk<'a>(
    config: &'a Config,
    mut queue: VecDeque<&'a str>,
    mut seen: HashSet<&'a str>,
) -> Vec<String> {
    let mut order = Vec::new();
    while let Some(name) = queue.pop_front() {
        if !seen.insert(name) {
            continue;
        }
        order.push(name.to_string());
        if let Some(m) = config.model(name) {
            queue.extend(m.fallbacks.iter().map(String::as_str));
        }
    }
    order
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Env;

    #[test]
    fn plan_follows_fallbacks_of_fallbacks_without_cycles() {
        let yaml = r#"
model_list:
  - {model_name: a, model_params: {api_type: stub}}
  - {model_name: a, model_params: {api_type: stub}}
  - {model_name: b, model_params: {api_type: stub}}
  - {model_name: c, model_params: {api_type: stub}}
  - {model_name: d, model_params: {api_type: stub}}
router_settings:
  fallbacks: [{a: [b, c]}, {b: [d, a]}, {d: [a]}]
"#;
        let config =
            Config::from_yaml(yaml, None, &Env::isolated::<[(&str, &str); 0], _, _>([])).unwrap();
        let live = Live::new(config);
        let names: Vec<String> = live
            .plan("a")
            .unwrap()
            .iter()
            .map(|b| b.name.clone())
            .collect();
        assert_eq!(names, ["a#1", "a#2", "b#1", "c#1", "d#1"]);
        let names: Vec<String> = live
            .plan("d")
            .unwrap()
            .iter()
            .map(|b| b.name.clone())
            .collect();
        assert_eq!(names, ["d#1", "a#1", "a#2", "b#1", "c#1"]);
        assert!(live.plan("zzz").is_none());
    }

    #[test]
    fn kind_plans_follow_the_targets_own_fallbacks_without_the_model() {
        let yaml = r#"
model_list:
  - {model_name: a, model_params: {api_type: stub}}
  - {model_name: b, model_params: {api_type: stub}}
  - {model_name: b, model_params: {api_type: stub}}
  - {model_name: c, model_params: {api_type: stub}}
  - {model_name: d, model_params: {api_type: stub}}
router_settings:
  fallbacks: [{b: [a, d]}, {a: [c]}]
  context_window_fallbacks: [{a: [b]}]
  content_policy_fallbacks: {a: d, b: [c]}
"#;
        let config =
            Config::from_yaml(yaml, None, &Env::isolated::<[(&str, &str); 0], _, _>([])).unwrap();
        let live = Live::new(config);
        let names = |kind| -> Vec<String> {
            live.kind_plan("a", kind)
                .unwrap()
                .iter()
                .map(|b| b.name.clone())
                .collect()
        };
        // b's backends, then b's own fallbacks but not `a` itself.
        assert_eq!(names(FallbackKind::ContextWindow), ["b#1", "b#2", "d#1"]);
        assert_eq!(names(FallbackKind::ContentPolicy), ["d#1"]);
        let b: Vec<String> = live
            .kind_plan("b", FallbackKind::ContentPolicy)
            .unwrap()
            .iter()
            .map(|b| b.name.clone())
            .collect();
        assert_eq!(b, ["c#1"]);
        assert!(live.kind_plan("b", FallbackKind::ContextWindow).is_none());
        assert!(live.kind_plan("c", FallbackKind::ContentPolicy).is_none());
        // The generic plan is what it was.
        assert_eq!(live.plan("a").unwrap().len(), 2);
    }
}
