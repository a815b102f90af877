//! `proxy_settings.telemetry`: OpenTelemetry traces (docs/observability.md),
//! as written (serde), checked, and resolved with the standard `OTEL_*`
//! variables filling in what the file leaves out. Read at start-up only.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;

use super::errors::Errors;

/// `proxy_settings.telemetry` as written.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct RawTelemetry {
    /// On or off; absent: on exactly when `OTEL_EXPORTER_OTLP_ENDPOINT`
    /// or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` is set (or `endpoint` here).
    pub enabled: Option<bool>,
    /// The collector's base URL (`/v1/traces` is appended unless the URL
    /// already ends with it).
    pub endpoint: Option<String>,
    /// `http/protobuf`, the only one yallmp speaks.
    pub protocol: Option<String>,
    /// Headers sent with every export (an API key); env-substituted.
    pub headers: Option<BTreeMap<String, String>>,
    /// `service.name` (default `yallmp`).
    pub service_name: Option<String>,
    /// Prompts and completions as span events (scrubbed); default false.
    pub capture_content: Option<bool>,
    /// The share of new traces kept, 0 to 1 (a client's sampled
    /// `traceparent` decides for its own trace).
    pub sample_ratio: Option<f64>,
    /// Spans waiting for export past which new ones are dropped (2048).
    pub max_queue_size: Option<usize>,
    /// Spans in one export (512).
    pub max_export_batch_size: Option<usize>,
    /// Seconds between exports (5).
    pub schedule_delay: Option<f64>,
    /// Seconds one export may take (10).
    pub export_timeout: Option<f64>,
}

/// How new traces are sampled (`OTEL_TRACES_SAMPLER[_ARG]`, or the
/// config's `sample_ratio` as `parentbased_traceidratio`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum SamplerSetting {
    AlwaysOn,
    AlwaysOff,
    Ratio(f64),
    /// The client's sampled flag decides for its trace; new traces by
    /// the inner setting.
    ParentBased(ParentlessRule),
}

/// What a parent-based sampler does for a trace that starts here.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ParentlessRule {
    AlwaysOn,
    AlwaysOff,
    Ratio(f64),
}

/// The resolved settings: the file's, else the standard `OTEL_*`
/// variables' (process environment and `.env`), else the defaults.
#[derive(Debug, Clone, PartialEq)]
pub struct TelemetrySettings {
    /// On: `enabled`, else whether an endpoint is set (here or in
    /// `OTEL_EXPORTER_OTLP_[TRACES_]ENDPOINT`); off with `OTEL_SDK_DISABLED=true`.
    pub enabled: bool,
    /// The traces URL (`.../v1/traces`).
    pub endpoint: String,
    pub headers: Vec<(String, String)>,
    pub service_name: String,
    pub capture_content: bool,
    pub sampler: SamplerSetting,
    pub max_queue_size: usize,
    pub max_export_batch_size: usize,
    pub schedule_delay: Duration,
    pub export_timeout: Duration,
}

impl Default for TelemetrySettings {
    fn default() -> Self {
        TelemetrySettings {
            enabled: false,
            endpoint: "http://localhost:4318/v1/traces".into(),
            headers: Vec::new(),
            service_name: "yallmp".into(),
            capture_content: false,
            sampler: SamplerSetting::ParentBased(ParentlessRule::AlwaysOn),
            max_queue_size: 2048,
            max_export_batch_size: 512,
            schedule_delay: Duration::from_secs(5),
            export_timeout: Duration::from_secs(10),
        }
    }
}

/// A base URL with `/v1/traces` appended (unless it ends with it already).
pub fn traces_url(base: &str) -> String {
    let base = base.trim().trim_end_matches('/');
    if base.ends_with("/v1/traces") {
        base.to_string()
    } else {
        format!("{base}/v1/traces")
    }
}

/// `OTEL_EXPORTER_OTLP_HEADERS`' form: `k=v,k2=v2`, values percent-encoded.
fn parse_headers(text: &str) -> Vec<(String, String)> {
    text.split(',')
        .filter_map(|pair| {
            let (k, v) = pair.split_once('=')?;
            let v = percent_decode(v.trim());
            Some((k.trim().to_string(), v))
        })
        .filter(|(k, _)| !k.is_empty())
        .collect()
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| char::from(b).to_digit(16);
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2]))
        {
            out.push((h * 16 + l) as u8);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Checks and resolves the block, with the `OTEL_*` variables of `env`.
pub fn resolve(
    raw: RawTelemetry,
    env: &super::Env,
    errors: &mut Errors,
    warnings: &mut Vec<String>,
) -> TelemetrySettings {
    const AT: &str = "proxy_settings.telemetry";
    let var = |name: &str| env.get(name).filter(|v| !v.trim().is_empty());
    // A variable yallmp cannot use is warned about and left out (it may
    // be meant for other programs of the same environment).
    let number = |name: &str, warnings: &mut Vec<String>| -> Option<u64> {
        let v = var(name)?;
        match v.trim().parse::<u64>() {
            Ok(n) => Some(n),
            Err(_) => {
                warnings.push(format!("{name}={v:?} is not a whole number: ignored"));
                None
            }
        }
    };
    let mut s = TelemetrySettings {
        capture_content: raw.capture_content.unwrap_or(false),
        ..TelemetrySettings::default()
    };
    // The endpoint: the file's base URL, else the traces variable as it
    // is, else the general one with /v1/traces.
    let endpoint = raw.endpoint.filter(|e| !e.trim().is_empty());
    if let Some(e) = &endpoint
        && !(e.starts_with("http://") || e.starts_with("https://"))
    {
        errors.at(
            format!("{AT}.endpoint"),
            format!("expected an http:// or https:// URL, got {e:?}"),
        );
    }
    let traces_var = var("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT");
    let base_var = var("OTEL_EXPORTER_OTLP_ENDPOINT");
    let any_endpoint = endpoint.is_some() || traces_var.is_some() || base_var.is_some();
    if let Some(url) = endpoint
        .as_deref()
        .map(traces_url)
        .or_else(|| traces_var.map(|t| t.trim().to_string()))
        .or_else(|| base_var.as_deref().map(traces_url))
    {
        s.endpoint = url;
    }
    let disabled = var("OTEL_SDK_DISABLED").is_some_and(|v| v.trim().eq_ignore_ascii_case("true"));
    s.enabled = !disabled && raw.enabled.unwrap_or(any_endpoint);

    if let Some(p) = raw.protocol
        && p != "http/protobuf"
    {
        errors.at(
            format!("{AT}.protocol"),
            format!("only http/protobuf is supported, got {p:?}"),
        );
    }
    for name in [
        "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
        "OTEL_EXPORTER_OTLP_PROTOCOL",
    ] {
        if let Some(p) = var(name)
            && p.trim() != "http/protobuf"
        {
            warnings.push(format!(
                "{name}={p}: yallmp exports traces over http/protobuf only (the endpoint must take OTLP over HTTP, usually port 4318)"
            ));
        }
    }
    // Headers: the variables', then the file's on top.
    for name in [
        "OTEL_EXPORTER_OTLP_HEADERS",
        "OTEL_EXPORTER_OTLP_TRACES_HEADERS",
    ] {
        if let Some(text) = var(name) {
            for (k, v) in parse_headers(&text) {
                s.headers.retain(|(n, _)| !n.eq_ignore_ascii_case(&k));
                s.headers.push((k, v));
            }
        }
    }
    for (k, v) in raw.headers.unwrap_or_default() {
        s.headers.retain(|(n, _)| !n.eq_ignore_ascii_case(&k));
        s.headers.push((k, v));
    }
    for (name, value) in &s.headers {
        if http::HeaderName::from_bytes(name.as_bytes()).is_err()
            || http::HeaderValue::from_str(value).is_err()
        {
            errors.at(format!("{AT}.headers.{name}"), "not a valid HTTP header");
        }
    }
    if let Some(n) = raw
        .service_name
        .filter(|n| !n.trim().is_empty())
        .or_else(|| var("OTEL_SERVICE_NAME"))
    {
        s.service_name = n;
    }
    // The sampler.
    let arg = var("OTEL_TRACES_SAMPLER_ARG").and_then(|a| a.trim().parse::<f64>().ok());
    let ratio = arg.filter(|r| (0.0..=1.0).contains(r)).unwrap_or(1.0);
    match raw.sample_ratio {
        Some(r) if (0.0..=1.0).contains(&r) => {
            s.sampler = SamplerSetting::ParentBased(ParentlessRule::Ratio(r));
        }
        Some(r) => errors.at(
            format!("{AT}.sample_ratio"),
            format!("must be between 0 and 1, got {r}"),
        ),
        None => match var("OTEL_TRACES_SAMPLER").as_deref().map(str::trim) {
            None => {}
            Some("always_on") => s.sampler = SamplerSetting::AlwaysOn,
            Some("always_off") => s.sampler = SamplerSetting::AlwaysOff,
            Some("traceidratio") => s.sampler = SamplerSetting::Ratio(ratio),
            Some("parentbased_always_on") => {
                s.sampler = SamplerSetting::ParentBased(ParentlessRule::AlwaysOn);
            }
            Some("parentbased_always_off") => {
                s.sampler = SamplerSetting::ParentBased(ParentlessRule::AlwaysOff);
            }
            Some("parentbased_traceidratio") => {
                s.sampler = SamplerSetting::ParentBased(ParentlessRule::Ratio(ratio));
            }
            Some(other) => warnings.push(format!(
                "OTEL_TRACES_SAMPLER={other}: not one yallmp knows (always_on, always_off, traceidratio, parentbased_always_on, parentbased_always_off, parentbased_traceidratio); using parentbased_always_on"
            )),
        },
    }
    // The batching: the file's, else OTEL_BSP_*.
    let at_least_one = |key: &str, v: Option<usize>, errors: &mut Errors| match v {
        Some(0) => {
            errors.at(format!("{AT}.{key}"), "must be at least 1");
            None
        }
        v => v,
    };
    let env_count = |name: &str, warnings: &mut Vec<String>| {
        number(name, warnings)
            .filter(|&n| n > 0)
            .map(|n| usize::try_from(n).unwrap_or(usize::MAX))
    };
    if let Some(n) = at_least_one("max_queue_size", raw.max_queue_size, errors)
        .or_else(|| env_count("OTEL_BSP_MAX_QUEUE_SIZE", warnings))
    {
        s.max_queue_size = n;
    }
    if let Some(n) = at_least_one("max_export_batch_size", raw.max_export_batch_size, errors)
        .or_else(|| env_count("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", warnings))
    {
        s.max_export_batch_size = n;
    }
    s.max_export_batch_size = s.max_export_batch_size.min(s.max_queue_size);
    let seconds = |key: &str, v: Option<f64>, errors: &mut Errors| match v {
        Some(t) if t.is_finite() && t > 0.0 && t < 1e6 => Some(Duration::from_secs_f64(t)),
        Some(t) => {
            errors.at(
                format!("{AT}.{key}"),
                format!("must be a positive number of seconds, got {t}"),
            );
            None
        }
        None => None,
    };
    let env_ms = |name: &str, warnings: &mut Vec<String>| {
        number(name, warnings)
            .filter(|&n| n > 0)
            .map(Duration::from_millis)
    };
    if let Some(d) = seconds("schedule_delay", raw.schedule_delay, errors)
        .or_else(|| env_ms("OTEL_BSP_SCHEDULE_DELAY", warnings))
    {
        s.schedule_delay = d;
    }
    if let Some(d) = seconds("export_timeout", raw.export_timeout, errors)
        .or_else(|| env_ms("OTEL_BSP_EXPORT_TIMEOUT", warnings))
        .or_else(|| env_ms("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", warnings))
        .or_else(|| env_ms("OTEL_EXPORTER_OTLP_TIMEOUT", warnings))
    {
        s.export_timeout = d;
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(vars: &[(&str, &str)]) -> crate::config::Env {
        crate::config::Env::isolated(vars.iter().map(|(k, v)| (k.to_string(), v.to_string())))
    }

    #[test]
    fn defaults_and_checks() {
        let mut errors = Errors::default();
        let s = resolve(
            RawTelemetry::default(),
            &env(&[]),
            &mut errors,
            &mut Vec::new(),
        );
        assert_eq!(s, TelemetrySettings::default());
        assert!(!s.enabled && !s.capture_content);
        assert!(errors.is_empty());
        let raw = RawTelemetry {
            endpoint: Some("collector:4318".into()),
            protocol: Some("grpc".into()),
            sample_ratio: Some(1.5),
            max_queue_size: Some(0),
            schedule_delay: Some(-1.0),
            ..RawTelemetry::default()
        };
        resolve(raw, &env(&[]), &mut errors, &mut Vec::new());
        assert_eq!(errors.len(), 5, "{errors:?}");
        assert!(errors[0].contains("proxy_settings.telemetry.endpoint"));
        assert!(errors[1].contains("proxy_settings.telemetry.protocol"));
    }

    #[test]
    fn the_otel_variables() {
        let mut errors = Errors::default();
        let s = resolve(
            RawTelemetry::default(),
            &env(&[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318/"),
                ("OTEL_EXPORTER_OTLP_HEADERS", "api-key=a%20b,x=1"),
                ("OTEL_SERVICE_NAME", "gateway"),
                ("OTEL_TRACES_SAMPLER", "parentbased_traceidratio"),
                ("OTEL_TRACES_SAMPLER_ARG", "0.25"),
                ("OTEL_BSP_MAX_QUEUE_SIZE", "100"),
                ("OTEL_BSP_SCHEDULE_DELAY", "250"),
            ]),
            &mut errors,
            &mut Vec::new(),
        );
        assert!(errors.is_empty(), "{errors:?}");
        assert!(s.enabled);
        assert_eq!(s.endpoint, "http://c:4318/v1/traces");
        assert_eq!(
            s.headers,
            [("api-key".into(), "a b".into()), ("x".into(), "1".into())]
        );
        assert_eq!(s.service_name, "gateway");
        assert_eq!(
            s.sampler,
            SamplerSetting::ParentBased(ParentlessRule::Ratio(0.25))
        );
        assert_eq!(s.max_queue_size, 100);
        assert_eq!(s.max_export_batch_size, 100);
        assert_eq!(s.schedule_delay, Duration::from_millis(250));
        // The traces variable is taken as it is; the file's endpoint wins.
        let s = resolve(
            RawTelemetry::default(),
            &env(&[("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://t:1/x")]),
            &mut errors,
            &mut Vec::new(),
        );
        assert_eq!(s.endpoint, "http://t:1/x");
        let raw = RawTelemetry {
            endpoint: Some("http://file:4318".into()),
            ..RawTelemetry::default()
        };
        let s = resolve(
            raw,
            &env(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318")]),
            &mut errors,
            &mut Vec::new(),
        );
        assert_eq!(s.endpoint, "http://file:4318/v1/traces");
        // Off when told, whatever the variables say.
        let raw = RawTelemetry {
            enabled: Some(false),
            ..RawTelemetry::default()
        };
        let s = resolve(
            raw,
            &env(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318")]),
            &mut errors,
            &mut Vec::new(),
        );
        assert!(!s.enabled);
        let s = resolve(
            RawTelemetry::default(),
            &env(&[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318"),
                ("OTEL_SDK_DISABLED", "true"),
            ]),
            &mut errors,
            &mut Vec::new(),
        );
        assert!(!s.enabled);
        assert!(errors.is_empty(), "{errors:?}");
    }
}
