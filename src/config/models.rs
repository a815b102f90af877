//! `model_list`: entries grouped into models with `#n`-named backends,
//! their parameters, parsers and flags, and the fallbacks from every place
//! they can be written, checked against the models that exist.

use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::sync::Arc;

use super::backend::backend;
use super::errors::{Errors, KeyPath};
use super::raw::{RawFallbacks, RawModelEntry, RawParameter};
use super::resolve::Sources;
use super::{ModelConfig, ModelSource, Parameter, nearest, parsers};

/// The fallbacks of `router_settings`: `fallbacks`, and those for a kind
/// of failure.
pub(super) struct RouterFallbacks {
    pub generic: Option<RawFallbacks>,
    pub context_window: Option<RawFallbacks>,
    pub content_policy: Option<RawFallbacks>,
}

/// The models of `model_list`, with `router_settings.fallbacks` (which
/// come before each model's own) and the fallbacks per kind of failure
/// linked in.
#[allow(clippy::too_many_arguments)]
pub(super) fn resolve(
    model_list: Vec<RawModelEntry>,
    router_fallbacks: RouterFallbacks,
    sources: &Sources,
    env: &super::Env,
    has_redis: bool,
    _path: Option<&Path>,
    errors: &mut Errors,
    warnings: &mut Vec<String>,
) -> Vec<ModelConfig> {
    let mut models: Vec<ModelConfig> = Vec::new();
    // (key path, model, its fallbacks) from every place fallbacks are written.
    let mut fallback_refs: Vec<(KeyPath, String, Vec<String>)> = Vec::new();
    for (i, entry) in model_list.into_iter().enumerate() {
        let at = KeyPath::new("model_list").index(i);
        let protected = entry.protected();
        let name = entry.model_name.trim().to_string();
        if name.is_empty() {
            errors.at(at.key("model_name"), "must not be empty");
            continue;
        }
        if name.chars().any(char::is_control) {
            errors.at(
                at.key("model_name"),
                "must not contain control characters (CR, LF, tab, NUL, ...)",
            );
            continue;
        }
        let (params, key, litellm) = match (entry.model_params, entry.litellm_params) {
            (Some(p), None) => (p, "model_params", false),
            (None, Some(p)) => (p, "litellm_params", true),
            (Some(_), Some(_)) => {
                errors.at(at, "has both model_params and litellm_params; keep one");
                continue;
            }
            (None, None) => {
                errors.at(at, "needs model_params (or litellm_params)");
                continue;
            }
        };
        if let Some(f) = entry.fallbacks {
            fallback_refs.push((at.key("fallbacks"), name.clone(), f.into_vec()));
        }
        let parameters = parameters(entry.parameters);
        let own_parsers = entry
            .parsers
            .map(|p| parsers::resolve(p, &at.key("parsers"), true, _path, errors));
        let idx = match models.iter().position(|m| m.name == name) {
            Some(idx) => idx,
            None => {
                let source = if sources.runtime.contains(&name) {
                    ModelSource::Runtime
                } else if sources.derived.contains(&name) {
                    ModelSource::Derived
                } else {
                    ModelSource::Config
                };
                models.push(ModelConfig {
                    name: name.clone(),
                    source,
                    protected: false,
                    backends: Vec::new(),
                    fallbacks: Vec::new(),
                    context_window_fallbacks: Vec::new(),
                    content_policy_fallbacks: Vec::new(),
                    parsers: None,
                });
                models.len() - 1
            }
        };
        let n = models[idx].backends.len() + 1;
        let at = at.key(key);
        if let Some(f) = &params.fallbacks {
            fallback_refs.push((at.key("fallbacks"), name.clone(), f.clone().into_vec()));
        }
        models[idx].protected |= protected;
        if let Some(p) = own_parsers {
            match &models[idx].parsers {
                Some(prev) if *prev != p => errors.at(
                    &at,
                    format!("model `{name}` already has a different `parsers` block; give it once"),
                ),
                _ => models[idx].parsers = Some(p),
            }
        }
        let mut params = params;
        let thinking = params.interleaved_thinking.take().and_then(|t| {
            super::thinking::resolve(t, &at.key("interleaved_thinking"), has_redis, errors)
        });
        if let Some(mut backend) = backend(&name, n, params, &at, litellm, parameters, env, errors)
        {
            backend.thinking = thinking.map(Arc::new);
            models[idx].backends.push(Arc::new(backend));
        }
    }

    // Backend names (an `id`, else `MODEL#N`) key the runtime state, the
    // log and the admin API: each names one backend.
    let mut seen_backends: HashSet<&str> = HashSet::new();
    for b in models.iter().flat_map(|m| m.backends.iter()) {
        if !seen_backends.insert(b.name.as_str()) {
            errors.at(
                "model_list",
                format!(
                    "two backends are named `{}`; give each `id` (model_info.id) a name of its own",
                    b.name
                ),
            );
        }
    }
    // Router-level fallbacks come first, then per-model ones (only the
    // generic kind has per-model ones).
    let generic = refs(router_fallbacks.generic, "router_settings.fallbacks")
        .into_iter()
        .chain(fallback_refs)
        .collect();
    let kinds: [(_, FallbackList); 3] = [
        (generic, |m| &mut m.fallbacks),
        (
            refs(
                router_fallbacks.context_window,
                "router_settings.context_window_fallbacks",
            ),
            |m| &mut m.context_window_fallbacks,
        ),
        (
            refs(
                router_fallbacks.content_policy,
                "router_settings.content_policy_fallbacks",
            ),
            |m| &mut m.content_policy_fallbacks,
        ),
    ];
    for (list, field) in kinds {
        link(&mut models, list, field, errors, warnings);
    }

    models
}

/// Which fallback list of a model a kind of fallbacks fills.
type FallbackList = fn(&mut ModelConfig) -> &mut Vec<String>;

/// (key path, model, its fallbacks) of a `fallbacks`-shaped value at `at`:
/// LiteLLM's list of single-key maps, or a plain map.
fn refs(raw: Option<RawFallbacks>, at: &str) -> Vec<(KeyPath, String, Vec<String>)> {
    let mut out = Vec::new();
    match raw {
        Some(RawFallbacks::List(list)) => {
            for (i, map) in list.into_iter().enumerate() {
                for (k, v) in map {
                    out.push((KeyPath::new(at).index(i).key(&k), k, v.into_vec()));
                }
            }
        }
        Some(RawFallbacks::Map(map)) => {
            for (k, v) in map {
                out.push((KeyPath::new(at).key(&k), k, v.into_vec()));
            }
        }
        None => {}
    }
    out
}

/// Adds each model's fallbacks to the list `list` picks, in order, once
/// each: unknown models are errors (with the nearest name), a model naming
/// itself is a warning.
fn link(
    models: &mut [ModelConfig],
    refs: impl IntoIterator<Item = (KeyPath, String, Vec<String>)>,
    list: FallbackList,
    errors: &mut Errors,
    warnings: &mut Vec<String>,
) {
    let names: Vec<String> = models.iter().map(|m| m.name.clone()).collect();
    let name_refs: Vec<&str> = names.iter().map(String::as_str).collect();
    for (at, from, to) in refs {
        let Some(m) = models.iter_mut().find(|m| m.name == from) else {
            unknown_model(errors, &at, &from, &name_refs);
            continue;
        };
        let mut valid = Vec::with_capacity(to.len());
        for (j, target) in to.into_iter().enumerate() {
            if !names.contains(&target) {
                unknown_model(errors, &at.index(j), &target, &name_refs);
            } else if target == from {
                warnings.push(format!(
                    "{at}: model `{from}` lists itself as a fallback; ignored"
                ));
            } else {
                valid.push(target);
            }
        }
        push_unique(list(m), valid);
    }
}

fn parameters(raw: BTreeMap<String, RawParameter>) -> Arc<[Parameter]> {
    raw.into_iter()
        .map(|(name, p)| match p {
            RawParameter::Full(f) => Parameter {
                name,
                allow_override: f.allow_override(),
                default: f.default,
            },
            RawParameter::Bare(v) => Parameter {
                name,
                default: v,
                allow_override: true,
            },
        })
        .collect()
}

/// A fallback naming a model that does not exist.
fn unknown_model(errors: &mut Errors, at: &KeyPath, name: &str, known: &[&str]) {
    let hint = nearest(name, known)
        .map(|s| format!("; did you mean `{s}`?"))
        .unwrap_or_default();
    errors.at(
        at,
        format!(
            "unknown model `{name}` (models: {}){hint}",
            known.join(", ")
        ),
    );
}

fn push_unique(into: &mut Vec<String>, items: Vec<String>) {
    let mut seen: HashSet<String> = into.iter().cloned().collect();
    for item in items {
        if seen.insert(item.clone()) {
            into.push(item);
        }
    }
}
