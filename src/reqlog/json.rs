//! Writing JSON text straight into a `String`, for the request log's hot
//! path: no intermediate `serde_json::Value` (a map allocation and a hash per
//! key), the same text `serde_json` writes (escapes, number formats).

use std::fmt::Write as _;

/// Appends `s` as a JSON string, escaped as `serde_json` escapes it.
pub fn str(out: &mut String, s: &str) {
    out.reserve(s.len() + 2);
    out.push('"');
    let bytes = s.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let esc: &str = match b {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'\t' => "\\t",
            0x08 => "\\b",
            0x0c => "\\f",
            0x00..=0x1f => "",
            _ => continue,
        };
        // `i` is at an ASCII byte, so both cuts are on char boundaries.
        out.push_str(&s[start..i]);
        if esc.is_empty() {
            const HEX: &[u8; 16] = b"0123456789abcdef";
            out.push_str("\\u00");
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 0xf)]));
        } else {
            out.push_str(esc);
        }
        start = i + 1;
    }
    out.push_str(&s[start..]);
    out.push('"');
}

/// Appends bytes as a JSON string (invalid UTF-8 replaced by U+FFFD).
pub fn bytes(out: &mut String, b: &[u8]) {
    // `from_utf8` has a fast path for ASCII that `from_utf8_lossy` lacks.
    match std::str::from_utf8(b) {
        Ok(s) => str(out, s),
        Err(_) => str(out, &String::from_utf8_lossy(b)),
    }
}

/// A string, or `null`.
pub fn opt_str(out: &mut String, s: Option<&str>) {
    match s {
        Some(s) => str(out, s),
        None => out.push_str("null"),
    }
}

/// A float as `serde_json` writes it (`null` when not finite).
pub fn f64(out: &mut String, v: f64) {
    if v.is_finite() {
        out.push_str(ryu::Buffer::new().format_finite(v));
    } else {
        out.push_str("null");
    }
}

/// A float, or `null`.
pub fn opt_f64(out: &mut String, v: Option<f64>) {
    match v {
        Some(v) => f64(out, v),
        None => out.push_str("null"),
    }
}

/// An integer.
pub fn int(out: &mut String, v: impl itoa::Integer) {
    out.push_str(itoa::Buffer::new().format(v));
}

/// An integer, or `null`.
pub fn opt_int(out: &mut String, v: Option<impl itoa::Integer>) {
    match v {
        Some(v) => int(out, v),
        None => out.push_str("null"),
    }
}

pub fn bool(out: &mut String, v: bool) {
    out.push_str(if v { "true" } else { "false" });
}

/// Appends anything `Display` shows, as a JSON string.
pub fn display(out: &mut String, v: impl std::fmt::Display) {
    let mut s = String::new();
    // Writing into a String cannot fail.
    let _ = write!(s, "{v}");
    str(out, &s);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_match_serde_json() {
        let mut all = String::new();
        for c in 0u32..0x80 {
            all.push(char::from_u32(c).unwrap());
        }
        for s in [
            "",
            "plain",
            "quote \" and backslash \\",
            "lines\n\r\t tab",
            "\u{0}\u{1f}\u{7f}",
            "Résumé 🙂 naïve",
            "data: {\"a\":\"b\\n\"}\n\n",
            all.as_str(),
        ] {
            let mut out = String::new();
            str(&mut out, s);
            assert_eq!(out, serde_json::to_string(s).unwrap(), "{s:?}");
        }
    }

    #[test]
    fn lossy_bytes() {
        let mut out = String::new();
        bytes(&mut out, b"a\xffb");
        assert_eq!(out, "\"a\u{fffd}b\"");
    }

    #[test]
    fn numbers_match_serde_json() {
        for v in [0.0, 1.0, 0.21, 2.506, 1234.5678, 1e-7, 123456789.123] {
            let mut out = String::new();
            f64(&mut out, v);
            assert_eq!(out, serde_json::to_string(&v).unwrap());
        }
        let mut out = String::new();
        f64(&mut out, f64::NAN);
        opt_f64(&mut out, None);
        int(&mut out, 42u16);
        opt_int(&mut out, Some(-7i64));
        opt_int(&mut out, None::<u16>);
        assert_eq!(out, "nullnull42-7null");
    }
}
