//! The Jinja environment templates render in: Hugging Face's settings
//! (`trim_blocks`, `lstrip_blocks`, Python string methods) and the globals
//! and filters chat templates call (`tojson` as Python writes JSON,
//! `raise_exception`, `strftime_now`).

use std::fmt::Write as _;

use minijinja::value::Kwargs;
use minijinja::{Environment, Error, ErrorKind, Value as JValue};
use serde_json::Value;

/// An environment like the one Hugging Face renders chat templates in.
pub(super) fn environment() -> Environment<'static> {
    let mut env = Environment::new();
    // Hugging Face's environment: `trim_blocks`, `lstrip_blocks`.
    if let Ok(syntax) = minijinja::syntax::SyntaxConfig::builder()
        .trim_blocks(true)
        .lstrip_blocks(true)
        .build()
    {
        env.set_syntax(syntax);
    }
    env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
    env.add_filter("tojson", tojson);
    env.add_function("raise_exception", raise_exception);
    env.add_function("strftime_now", strftime_now);
    env
}

fn raise_exception(message: String) -> Result<JValue, Error> {
    Err(Error::new(
        ErrorKind::InvalidOperation,
        format!("the template raised: {message}"),
    ))
}

/// A fixed date, so the probe renders the same every time.
fn strftime_now(format: String) -> String {
    let Some(t) =
        chrono::NaiveDate::from_ymd_opt(2025, 1, 15).and_then(|d| d.and_hms_opt(12, 0, 0))
    else {
        return String::new();
    };
    let mut out = String::new();
    match write!(out, "{}", t.format(&format)) {
        Ok(()) => out,
        Err(_) => format,
    }
}

/// Python's `json.dumps` as Hugging Face's `tojson` calls it: `", "` and
/// `": "` separators, non-ASCII kept; `indent`, `separators`, `sort_keys`
/// and `ensure_ascii` accepted.
fn tojson(value: &JValue, indent: Option<JValue>, kwargs: Kwargs) -> Result<JValue, Error> {
    let indent = match indent {
        Some(i) => Some(i),
        None => kwargs.get::<Option<JValue>>("indent")?,
    };
    let separators: Option<JValue> = kwargs.get("separators")?;
    let sort_keys: Option<bool> = kwargs.get("sort_keys")?;
    let _: Option<JValue> = kwargs.get("ensure_ascii")?;
    kwargs.assert_all_used()?;
    let invalid = |e: String| Error::new(ErrorKind::InvalidOperation, format!("tojson: {e}"));
    let v = serde_json::to_value(value).map_err(|e| invalid(e.to_string()))?;
    let unit = match indent {
        None => None,
        Some(i) if i.is_none() || i.is_undefined() => None,
        Some(i) => match i.as_str() {
            Some(s) => Some(s.to_string()),
            None => Some(" ".repeat(usize::try_from(i).map_err(|e| invalid(e.to_string()))?)),
        },
    };
    let (mut item, mut key) = match unit {
        Some(_) => (",".to_string(), ": ".to_string()),
        None => (", ".to_string(), ": ".to_string()),
    };
    if let Some(sep) = separators.filter(|s| !s.is_none() && !s.is_undefined()) {
        let seps = serde_json::to_value(&sep).map_err(|e| invalid(e.to_string()))?;
        match seps.as_array().map(Vec::as_slice) {
            Some([Value::String(i), Value::String(k)]) => {
                item = i.clone();
                key = k.clone();
            }
            _ => return Err(invalid("separators must be two strings".into())),
        }
    }
    let style = JsonStyle {
        item,
        key,
        unit,
        sort: sort_keys.unwrap_or(false),
    };
    let mut out = String::new();
    write_json(&mut out, &v, &style, 0);
    Ok(JValue::from_safe_string(out))
}

struct JsonStyle {
    item: String,
    key: String,
    unit: Option<String>,
    sort: bool,
}

fn write_json(out: &mut String, v: &Value, st: &JsonStyle, depth: usize) {
    let newline = |out: &mut String, depth: usize| {
        if let Some(unit) = &st.unit {
            out.push('\n');
            for _ in 0..depth {
                out.push_str(unit);
            }
        }
    };
    match v {
        Value::Array(a) if !a.is_empty() => {
            out.push('[');
            for (i, x) in a.iter().enumerate() {
                if i > 0 {
                    out.push_str(&st.item);
                }
                newline(out, depth + 1);
                write_json(out, x, st, depth + 1);
            }
            newline(out, depth);
            out.push(']');
        }
        Value::Object(m) if !m.is_empty() => {
            let mut entries: Vec<_> = m.iter().collect();
            if st.sort {
                entries.sort_by(|a, b| a.0.cmp(b.0));
            }
            out.push('{');
            for (i, (k, x)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push_str(&st.item);
                }
                newline(out, depth + 1);
                out.push_str(&Value::String(k.clone()).to_string());
                out.push_str(&st.key);
                write_json(out, x, st, depth + 1);
            }
            newline(out, depth);
            out.push('}');
        }
        other => out.push_str(&other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tojson_is_pythons() {
        let env = environment();
        let render = |src: &str| {
            env.template_from_str(src)
                .unwrap()
                .render(JValue::from(()))
                .unwrap()
        };
        assert_eq!(
            render(r#"{{ {"a": 1, "b": [1, "é"], "c": {}} | tojson }}"#),
            r#"{"a": 1, "b": [1, "é"], "c": {}}"#
        );
        assert_eq!(
            render(
                r#"{{ {"b": 1, "a": [2]} | tojson(separators=(',', ':'), sort_keys=true, ensure_ascii=False) }}"#
            ),
            r#"{"a":[2],"b":1}"#
        );
        assert_eq!(
            render(r#"{{ {"a": [1]} | tojson(indent=2) }}"#),
            "{\n  \"a\": [\n    1\n  ]\n}"
        );
        assert_eq!(render(r#"{{ strftime_now("%Y-%m-%d") }}"#), "2025-01-15");
        assert!(
            env.template_from_str("{{ raise_exception('no') }}")
                .unwrap()
                .render(JValue::from(()))
                .is_err()
        );
    }
}
