//! Tool-call blocks: how each format writes a call, read into a name and an
//! arguments JSON string. Arguments written as text (the XML-style formats)
//! take their JSON types from the request's `tools` schema.

use std::collections::HashMap;
use std::sync::OnceLock;

use serde_json::{Map, Value};

/// How the body of a tool block reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlockKind {
    /// `<tool_call>` of unknown format: JSON (Hermes), `<function=` (Qwen3
    /// Coder), `<invoke` (MiniMax style) or GLM, by what the body holds.
    Sniff,
    /// `{"name": ..., "arguments": {...}}` (or a list of them).
    Hermes,
    /// `<function=NAME><parameter=K>v</parameter></function>`.
    Qwen3Coder,
    /// Qwen3 Coder's function block without `<tool_call>`: the body follows
    /// `<function=`.
    Qwen3Bare,
    /// `NAME<arg_key>k</arg_key><arg_value>v</arg_value>`.
    Glm,
    /// `<|tool_call_begin|>functions.NAME:0<|tool_call_argument_begin|>{json}<|tool_call_end|>`.
    KimiK2,
    /// `<invoke name="N"><parameter name="K">v</parameter></invoke>`.
    MinimaxM2,
    /// `<｜tool▁call▁begin｜>NAME<｜tool▁sep｜>{json}<｜tool▁call▁end｜>`.
    DeepseekV31,
    /// Configured markers with XML-style arguments: any of the XML bodies
    /// above, or `<name>N</name><arguments>{json}</arguments>`, or
    /// `<name>N</name><K>v</K>...`.
    GenericXml,
}

/// One call read from a block.
#[derive(Debug, Clone, PartialEq)]
pub struct ParsedCall {
    /// Set where the format carries one (Kimi K2).
    pub id: Option<String>,
    pub name: String,
    /// The arguments as a JSON object, serialized.
    pub arguments: String,
}

/// Argument types by function and parameter name, from the request's
/// `tools`; read the first time a call needs them.
#[derive(Debug, Default)]
pub struct Schemas {
    raw: Option<Box<serde_json::value::RawValue>>,
    by_function: OnceLock<HashMap<String, Map<String, Value>>>,
}

impl Schemas {
    /// Keeps the request's `tools` array (missing or malformed: no types).
    pub fn from_tools(tools: Option<&serde_json::value::RawValue>) -> Schemas {
        Schemas {
            raw: tools.map(ToOwned::to_owned),
            by_function: OnceLock::new(),
        }
    }

    fn functions(&self) -> &HashMap<String, Map<String, Value>> {
        self.by_function.get_or_init(|| {
            let mut by_function = HashMap::new();
            let Some(raw) = &self.raw else {
                return by_function;
            };
            let Ok(Value::Array(list)) = serde_json::from_str::<Value>(raw.get()) else {
                return by_function;
            };
            for t in list {
                let f = t.get("function").unwrap_or(&t);
                let Some(name) = f.get("name").and_then(Value::as_str) else {
                    continue;
                };
                let props = f
                    .get("parameters")
                    .or_else(|| f.get("input_schema"))
                    .and_then(|p| p.get("properties"))
                    .and_then(Value::as_object)
                    .cloned()
                    .unwrap_or_default();
                by_function.insert(name.to_string(), props);
            }
            by_function
        })
    }

    /// `text` typed by the schema of `function`'s parameter `param`.
    pub fn typed(&self, function: &str, param: &str, text: &str) -> Value {
        match self.functions().get(function).and_then(|p| p.get(param)) {
            Some(schema) => typed(schema, text),
            None => Value::String(text.to_string()),
        }
    }
}

/// A value written as text, as the schema types it; the text itself when it
/// does not fit.
fn typed(schema: &Value, text: &str) -> Value {
    let mut types: Vec<&str> = match schema.get("type") {
        Some(Value::String(t)) => vec![t.as_str()],
        Some(Value::Array(ts)) => ts.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    };
    for key in ["anyOf", "oneOf"] {
        if let Some(Value::Array(options)) = schema.get(key) {
            for o in options {
                if let Some(t) = o.get("type").and_then(Value::as_str) {
                    types.push(t);
                }
            }
        }
    }
    let t = text.trim();
    for ty in types {
        let v = match ty {
            "integer" => t
                .parse::<i64>()
                .ok()
                .map(Value::from)
                .or_else(|| t.parse::<u64>().ok().map(Value::from)),
            "number" => t.parse::<i64>().ok().map(Value::from).or_else(|| {
                t.parse::<f64>()
                    .ok()
                    .filter(|f| f.is_finite())
                    .and_then(|f| serde_json::Number::from_f64(f).map(Value::Number))
            }),
            "boolean" => match t.to_ascii_lowercase().as_str() {
                "true" => Some(Value::Bool(true)),
                "false" => Some(Value::Bool(false)),
                _ => None,
            },
            "object" => serde_json::from_str::<Value>(t)
                .ok()
                .filter(Value::is_object),
            "array" => serde_json::from_str::<Value>(t)
                .ok()
                .filter(Value::is_array),
            "null" => (t == "null").then_some(Value::Null),
            "string" => return Value::String(text.to_string()),
            _ => None,
        };
        if let Some(v) = v {
            return v;
        }
    }
    Value::String(text.to_string())
}

/// A fresh OpenAI-style call id.
pub fn new_call_id() -> String {
    let mut id = String::with_capacity(29);
    id.push_str("call_");
    for _ in 0..24 {
        id.push(fastrand::alphanumeric());
    }
    id
}

/// Reads a block body.
pub fn parse_block(
    kind: BlockKind,
    body: &str,
    schemas: &Schemas,
) -> Result<Vec<ParsedCall>, String> {
    match kind {
        BlockKind::Sniff => {
            let t = body.trim_start();
            if t.starts_with('{') || t.starts_with('[') {
                hermes(body)
            } else if t.contains("<function=") {
                qwen3_coder(body, schemas)
            } else if t.contains("<invoke") {
                minimax(body, schemas)
            } else {
                glm(body, schemas)
            }
        }
        BlockKind::Hermes => hermes(body),
        BlockKind::Qwen3Coder => qwen3_coder(body, schemas),
        BlockKind::Qwen3Bare => qwen3_coder(&format!("<function={body}</function>"), schemas),
        BlockKind::Glm => glm(body, schemas),
        BlockKind::KimiK2 => kimi(body),
        BlockKind::MinimaxM2 => minimax(body, schemas),
        BlockKind::DeepseekV31 => deepseek(body),
        BlockKind::GenericXml => generic_xml(body, schemas),
    }
}

/// The arguments of a JSON format: an object (serialized compactly) or a
/// string holding one (kept as written).
fn json_arguments(v: Option<&Value>) -> Result<String, String> {
    match v {
        None | Some(Value::Null) => Ok("{}".into()),
        Some(Value::Object(_)) => Ok(v.map(Value::to_string).unwrap_or_default()),
        Some(Value::String(s)) => match serde_json::from_str::<Value>(s) {
            Ok(Value::Object(_)) => Ok(s.trim().to_string()),
            _ => Err("arguments string is not a JSON object".into()),
        },
        Some(_) => Err("arguments are not an object".into()),
    }
}

fn hermes(body: &str) -> Result<Vec<ParsedCall>, String> {
    let v: Value = serde_json::from_str(body.trim()).map_err(|e| format!("invalid JSON: {e}"))?;
    let items = match v {
        Value::Array(items) => items,
        v => vec![v],
    };
    items
        .iter()
        .map(|item| {
            let name = item
                .get("name")
                .and_then(Value::as_str)
                .filter(|n| !n.trim().is_empty())
                .ok_or("no `name`")?;
            let args = item.get("arguments").or_else(|| item.get("parameters"));
            Ok(ParsedCall {
                id: None,
                name: name.trim().to_string(),
                arguments: json_arguments(args)?,
            })
        })
        .collect()
}

/// JSON text that must be an object (Kimi, DeepSeek): kept as written.
fn json_object_text(text: &str) -> Result<String, String> {
    let t = text.trim();
    match serde_json::from_str::<Value>(t) {
        Ok(Value::Object(_)) => Ok(t.to_string()),
        Ok(_) => Err("arguments are not a JSON object".into()),
        Err(e) => Err(format!("invalid JSON arguments: {e}")),
    }
}

/// A text value between tags: one newline each side is layout, not value.
fn xml_value(v: &str) -> &str {
    let v = v
        .strip_prefix("\r\n")
        .or_else(|| v.strip_prefix('\n'))
        .unwrap_or(v);
    v.strip_suffix("\r\n")
        .or_else(|| v.strip_suffix('\n'))
        .unwrap_or(v)
}

/// Sections of `text` between `open` and `close`, in order; the text after
/// the last close is returned too (trailing junk check).
fn sections<'a>(text: &'a str, open: &str, close: &str) -> Result<Vec<&'a str>, String> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(i) = rest.find(open) {
        let after = &rest[i + open.len()..];
        let j = after
            .find(close)
            .ok_or_else(|| format!("`{open}` without `{close}`"))?;
        out.push(&after[..j]);
        rest = &after[j + close.len()..];
    }
    Ok(out)
}

fn arguments_text(args: Map<String, Value>) -> String {
    Value::Object(args).to_string()
}

fn qwen3_coder(body: &str, schemas: &Schemas) -> Result<Vec<ParsedCall>, String> {
    let mut calls = Vec::new();
    let mut rest = body;
    while let Some(i) = rest.find("<function=") {
        let after = &rest[i + "<function=".len()..];
        let gt = after.find('>').ok_or("`<function=` without `>`")?;
        let name = after[..gt].trim();
        if name.is_empty() {
            return Err("empty function name".into());
        }
        let inner_all = &after[gt + 1..];
        let (inner, next) = match inner_all.find("</function>") {
            Some(j) => (&inner_all[..j], &inner_all[j + "</function>".len()..]),
            None => (inner_all, ""),
        };
        let mut args = Map::new();
        let mut p = inner;
        while let Some(k) = p.find("<parameter=") {
            let after = &p[k + "<parameter=".len()..];
            let gt = after.find('>').ok_or("`<parameter=` without `>`")?;
            let key = after[..gt].trim();
            let v_all = &after[gt + 1..];
            // A missing close tag ends the value at the next parameter.
            let end = v_all
                .find("</parameter>")
                .or_else(|| v_all.find("<parameter="))
                .unwrap_or(v_all.len());
            let value = xml_value(&v_all[..end]);
            args.insert(key.to_string(), schemas.typed(name, key, value));
            p = &v_all[end..];
            p = p.strip_prefix("</parameter>").unwrap_or(p);
        }
        calls.push(ParsedCall {
            id: None,
            name: name.to_string(),
            arguments: arguments_text(args),
        });
        rest = next;
    }
    if calls.is_empty() {
        return Err("no `<function=` in the block".into());
    }
    Ok(calls)
}

fn glm(body: &str, schemas: &Schemas) -> Result<Vec<ParsedCall>, String> {
    let name_end = body.find("<arg_key>").unwrap_or(body.len());
    let name = body[..name_end].trim();
    if name.is_empty() || name.contains(['<', '>', '{', '\n']) {
        return Err("no function name".into());
    }
    let mut args = Map::new();
    let keys = sections(&body[name_end..], "<arg_key>", "</arg_key>")?;
    let values = sections(&body[name_end..], "<arg_value>", "</arg_value>")?;
    if keys.len() != values.len() {
        return Err("arg_key and arg_value do not pair up".into());
    }
    for (k, v) in keys.iter().zip(values) {
        let k = k.trim();
        args.insert(k.to_string(), schemas.typed(name, k, xml_value(v)));
    }
    Ok(vec![ParsedCall {
        id: None,
        name: name.to_string(),
        arguments: arguments_text(args),
    }])
}

fn kimi(body: &str) -> Result<Vec<ParsedCall>, String> {
    let mut calls = Vec::new();
    for call in sections(body, "<|tool_call_begin|>", "<|tool_call_end|>")? {
        let (id, args) = call
            .split_once("<|tool_call_argument_begin|>")
            .ok_or("no `<|tool_call_argument_begin|>`")?;
        let id = id.trim();
        let name = id.strip_prefix("functions.").unwrap_or(id);
        let name = name.rsplit_once(':').map_or(name, |(n, _)| n).trim();
        if name.is_empty() {
            return Err("empty function name".into());
        }
        calls.push(ParsedCall {
            id: Some(id.to_string()),
            name: name.to_string(),
            arguments: json_object_text(args)?,
        });
    }
    if calls.is_empty() {
        return Err("no `<|tool_call_begin|>` in the section".into());
    }
    Ok(calls)
}

fn minimax(body: &str, schemas: &Schemas) -> Result<Vec<ParsedCall>, String> {
    let mut calls = Vec::new();
    for inv in sections(body, "<invoke", "</invoke>")? {
        let gt = inv.find('>').ok_or("`<invoke` without `>`")?;
        let name = attr_name(&inv[..gt]).ok_or("`<invoke>` without a name")?;
        let mut args = Map::new();
        for p in sections(&inv[gt + 1..], "<parameter", "</parameter>")? {
            let gt = p.find('>').ok_or("`<parameter` without `>`")?;
            let key = attr_name(&p[..gt]).ok_or("`<parameter>` without a name")?;
            args.insert(
                key.clone(),
                schemas.typed(&name, &key, xml_value(&p[gt + 1..])),
            );
        }
        calls.push(ParsedCall {
            id: None,
            name,
            arguments: arguments_text(args),
        });
    }
    if calls.is_empty() {
        return Err("no `<invoke` in the block".into());
    }
    Ok(calls)
}

/// `name="x"` (or `name='x'`, or `=x`) in a tag's attributes.
fn attr_name(attrs: &str) -> Option<String> {
    let a = attrs.trim();
    let v = if let Some(i) = a.find("name=") {
        &a[i + 5..]
    } else {
        a.strip_prefix('=')?
    };
    let v = v.trim();
    let v = match v.chars().next()? {
        q @ ('"' | '\'') => {
            let rest = &v[1..];
            &rest[..rest.find(q)?]
        }
        _ => v.split_whitespace().next()?,
    };
    (!v.is_empty()).then(|| v.to_string())
}

fn deepseek(body: &str) -> Result<Vec<ParsedCall>, String> {
    let mut calls = Vec::new();
    for call in sections(body, "<｜tool▁call▁begin｜>", "<｜tool▁call▁end｜>")? {
        let (name, args) = call
            .split_once("<｜tool▁sep｜>")
            .ok_or("no `<｜tool▁sep｜>`")?;
        let (mut name, mut args) = (name.trim(), args);
        // DeepSeek V3 wrote `function<｜tool▁sep｜>NAME\n```json\n{...}\n```.
        if name == "function"
            && let Some((n, rest)) = args.split_once('\n')
        {
            name = n.trim();
            args = rest
                .trim()
                .trim_start_matches("```json")
                .trim_end_matches("```");
        }
        if name.is_empty() {
            return Err("empty function name".into());
        }
        calls.push(ParsedCall {
            id: None,
            name: name.to_string(),
            arguments: json_object_text(args)?,
        });
    }
    if calls.is_empty() {
        return Err("no `<｜tool▁call▁begin｜>` in the block".into());
    }
    Ok(calls)
}

fn generic_xml(body: &str, schemas: &Schemas) -> Result<Vec<ParsedCall>, String> {
    if body.contains("<function=") {
        return qwen3_coder(body, schemas);
    }
    if body.contains("<invoke") {
        return minimax(body, schemas);
    }
    if body.contains("<arg_key>") {
        return glm(body, schemas);
    }
    let Some(name) = sections(body, "<name>", "</name>")?
        .first()
        .map(|n| n.trim())
    else {
        return glm(body, schemas);
    };
    if name.is_empty() {
        return Err("empty <name>".into());
    }
    if let Some(a) = sections(body, "<arguments>", "</arguments>")?.first() {
        if a.trim_start().starts_with('{') {
            return Ok(vec![ParsedCall {
                id: None,
                name: name.to_string(),
                arguments: json_object_text(a)?,
            }]);
        }
        return Ok(vec![ParsedCall {
            id: None,
            name: name.to_string(),
            arguments: arguments_text(xml_children(a, name, schemas)?),
        }]);
    }
    let rest = body.replacen(&format!("<name>{}</name>", name), "", 1);
    Ok(vec![ParsedCall {
        id: None,
        name: name.to_string(),
        arguments: arguments_text(xml_children(&rest, name, schemas)?),
    }])
}

/// `<k>v</k><k2>v2</k2>` as arguments.
fn xml_children(
    text: &str,
    function: &str,
    schemas: &Schemas,
) -> Result<Map<String, Value>, String> {
    let mut args = Map::new();
    let mut rest = text;
    while let Some(i) = rest.find('<') {
        let after = &rest[i + 1..];
        let gt = after.find('>').ok_or("unclosed tag")?;
        let key = after[..gt].trim();
        if key.is_empty() || key.starts_with('/') {
            return Err(format!("unexpected `<{key}>`"));
        }
        let close = format!("</{key}>");
        let inner = &after[gt + 1..];
        let j = inner
            .find(&close)
            .ok_or_else(|| format!("`<{key}>` without `{close}`"))?;
        args.insert(
            key.to_string(),
            schemas.typed(function, key, xml_value(&inner[..j])),
        );
        rest = &inner[j + close.len()..];
    }
    Ok(args)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schemas(json: &str) -> Schemas {
        let raw: Box<serde_json::value::RawValue> = serde_json::from_str(json).unwrap();
        Schemas::from_tools(Some(&raw))
    }

    #[test]
    fn typed_by_schema() {
        let s = schemas(
            r#"[{"type":"function","function":{"name":"f","parameters":{"type":"object","properties":{
                "i":{"type":"integer"},"n":{"type":"number"},"b":{"type":"boolean"},
                "o":{"type":"object"},"a":{"type":"array"},"s":{"type":"string"},
                "u":{"type":["integer","null"]},"any":{"anyOf":[{"type":"number"},{"type":"string"}]}}}}}]"#,
        );
        assert_eq!(s.typed("f", "i", " 42 "), Value::from(42));
        assert_eq!(s.typed("f", "i", "4.5"), Value::from("4.5"));
        assert_eq!(s.typed("f", "n", "4.5"), serde_json::json!(4.5));
        assert_eq!(s.typed("f", "n", "3"), Value::from(3));
        assert_eq!(s.typed("f", "b", "True"), Value::Bool(true));
        assert_eq!(s.typed("f", "b", "maybe"), Value::from("maybe"));
        assert_eq!(s.typed("f", "o", r#"{"k":1}"#), serde_json::json!({"k":1}));
        assert_eq!(s.typed("f", "a", "[1,2]"), serde_json::json!([1, 2]));
        assert_eq!(s.typed("f", "a", "nope"), Value::from("nope"));
        assert_eq!(s.typed("f", "s", "007"), Value::from("007"));
        assert_eq!(s.typed("f", "u", "7"), Value::from(7));
        assert_eq!(s.typed("f", "any", "1.5"), serde_json::json!(1.5));
        assert_eq!(s.typed("f", "missing", "1"), Value::from("1"));
        assert_eq!(s.typed("g", "i", "1"), Value::from("1"));
    }

    #[test]
    fn hermes_forms() {
        let none = Schemas::default();
        let c = parse_block(
            BlockKind::Hermes,
            r#"{"name":"f","arguments":"{\"a\": 1}"}"#,
            &none,
        )
        .unwrap();
        assert_eq!(c[0].arguments, r#"{"a": 1}"#);
        let c = parse_block(BlockKind::Hermes, r#"{"name":"f"}"#, &none).unwrap();
        assert_eq!(c[0].arguments, "{}");
        let c = parse_block(
            BlockKind::Hermes,
            r#"[{"name":"f","arguments":{}},{"name":"g","parameters":{"x":1}}]"#,
            &none,
        )
        .unwrap();
        assert_eq!(
            (c[1].name.as_str(), c[1].arguments.as_str()),
            ("g", r#"{"x":1}"#)
        );
        assert!(parse_block(BlockKind::Hermes, r#"{"arguments":{}}"#, &none).is_err());
        assert!(parse_block(BlockKind::Hermes, r#"{"name":"f","arguments":3}"#, &none).is_err());
    }

    #[test]
    fn generic_xml_forms() {
        let none = Schemas::default();
        let c = parse_block(
            BlockKind::GenericXml,
            "<name>f</name><arguments>{\"a\":1}</arguments>",
            &none,
        )
        .unwrap();
        assert_eq!(c[0].arguments, "{\"a\":1}");
        let c = parse_block(
            BlockKind::GenericXml,
            "<name>f</name>\n<city>Paris</city>",
            &none,
        )
        .unwrap();
        assert_eq!(c[0].arguments, r#"{"city":"Paris"}"#);
        let c = parse_block(
            BlockKind::GenericXml,
            "f<arg_key>k</arg_key><arg_value>v</arg_value>",
            &none,
        )
        .unwrap();
        assert_eq!(c[0].arguments, r#"{"k":"v"}"#);
    }

    #[test]
    fn qwen3_without_closing_tags() {
        let none = Schemas::default();
        let c = parse_block(
            BlockKind::Qwen3Coder,
            "<function=f>\n<parameter=a>\nx\n<parameter=b>\ny\n</parameter>\n",
            &none,
        )
        .unwrap();
        assert_eq!(c[0].arguments, r#"{"a":"x\n","b":"y"}"#);
    }

    #[test]
    fn deepseek_v3_markdown_form() {
        let none = Schemas::default();
        let c = parse_block(BlockKind::DeepseekV31, "<｜tool▁call▁begin｜>function<｜tool▁sep｜>get\n```json\n{\"a\":1}\n```<｜tool▁call▁end｜>", &none).unwrap();
        assert_eq!(
            (c[0].name.as_str(), c[0].arguments.as_str()),
            ("get", "{\"a\":1}")
        );
    }
}
