//! The config loader: YAML text (with `${VAR}` interpolation) to a
//! `Config`, or a `ConfigError` naming what is wrong.
//!
//! Input: the config text; after a NUL byte, an optional runtime overlay
//! (the admin API's `config.runtime.yaml`). Properties: no panic; an error
//! carries at least one message; a loaded config's own text loads again.

use yallmp::config::Config;
use yallmp::config::env::Env;
use yallmp::config::overlay::Overlay;

/// The variables a fuzzed config can refer to.
fn env() -> Env {
    Env::isolated([
        ("OPENAI_API_KEY", "sk-test"),
        ("ANTHROPIC_API_KEY", "sk-ant-test"),
        ("PORT", "8080"),
        ("EMPTY", ""),
        ("FLAG", "true"),
        ("NUM", "42"),
        ("FLOAT", "0.5"),
        ("NESTED", "${OPENAI_API_KEY}"),
        ("URL", "http://127.0.0.1:9/v1"),
        ("LIST", "[a, b]"),
    ])
}

pub fn run(data: &[u8]) {
    let (text, overlay) = match data.iter().position(|&b| b == 0) {
        Some(i) => (&data[..i], Some(&data[i + 1..])),
        None => (data, None),
    };
    let text = String::from_utf8_lossy(text);
    let overlay: Option<Overlay> =
        overlay.and_then(|o| serde_yaml::from_str(&String::from_utf8_lossy(o)).ok());
    let env = env();
    match Config::from_yaml_with(&text, None, &env, overlay.as_ref()) {
        Ok(c) => {
            // Loading is a function of the text: the same text loads again
            // to the same models.
            let again = Config::from_yaml_with(&text, None, &env, overlay.as_ref())
                .unwrap_or_else(|e| panic!("loaded once, not twice: {e}"));
            let names = |c: &Config| c.models.iter().map(|m| m.name.clone()).collect::<Vec<_>>();
            assert_eq!(names(&c), names(&again));
        }
        Err(e) => {
            assert!(!e.errors.is_empty(), "a config error names what is wrong");
            assert!(!e.to_string().is_empty());
        }
    }
}
