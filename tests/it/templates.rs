//! Chat templates: `parse_tags.template_path` in the config, and the
//! `inspect-template` command.

use std::path::{Path, PathBuf};
use std::process::Command;

use yallmp::config::parsers::{Affix, ToolFormat};
use yallmp::config::{Config, Env};

fn shipped(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("configs/jinja_templates")
        .join(name)
}

const MODEL: &str = "model_list:\n  - model_name: m\n    model_params: {api_type: stub}\n";

#[test]
fn template_path_is_relative_to_the_config_file() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("tpl")).unwrap();
    std::fs::copy(
        shipped("minimax_m2.jinja"),
        dir.path().join("tpl/model.jinja"),
    )
    .unwrap();
    let config = dir.path().join("config.yaml");
    // The tests run in the crate's root, where `tpl/` does not exist.
    std::fs::write(
        &config,
        format!(
            "{MODEL}    parsers:\n      parse_tags: {{template_path: tpl/model.jinja, tool_format: hermes}}\n\
             proxy_settings:\n  parsers:\n    parse_tags:\n      template_path: tpl/model.jinja\n"
        ),
    )
    .unwrap();
    let c = Config::load(&config).unwrap_or_else(|e| panic!("{e}"));
    let global = &c.parsers.parse_tags;
    assert_eq!(global.tool_format, ToolFormat::MinimaxM2);
    assert!(global.starts_in_reasoning);
    assert_eq!(global.think_tag, "think");
    // A format set by hand stays; the think settings still come through.
    let own = c.model("m").unwrap().parsers.as_ref().unwrap();
    assert_eq!(own.parse_tags.tool_format, ToolFormat::Hermes);
    assert!(own.parse_tags.starts_in_reasoning);

    // Without a config path, relative to the working directory.
    let yaml = "proxy_settings:\n  parsers:\n    parse_tags: {template_path: configs/jinja_templates/glm4.5.jinja}\n";
    let c = Config::from_yaml(yaml, None, &Env::isolated(Vec::<(String, String)>::new()))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(c.parsers.parse_tags.tool_format, ToolFormat::Glm);
}

#[test]
fn unreadable_template_path_is_an_error_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.yaml");
    std::fs::write(
        &config,
        format!(
            "{MODEL}    parsers:\n      parse_tags: {{template_path: nowhere/own.jinja}}\n\
             proxy_settings:\n  parsers:\n    parse_tags:\n      template_path: nowhere/missing.jinja\n"
        ),
    )
    .unwrap();
    let Err(e) = Config::load(&config) else {
        panic!("an unreadable template is an error");
    };
    let text = e.to_string();
    assert!(
        e.errors.iter().any(|e| e
            .starts_with("proxy_settings.parsers.parse_tags.template_path: cannot read")
            && e.contains("missing.jinja")),
        "{text}"
    );
    assert!(
        e.errors.iter().any(|e| e
            .starts_with("model_list[0].parsers.parse_tags.template_path: cannot read")
            && e.contains("own.jinja")),
        "{text}"
    );
}

fn inspect(file: &Path) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_yallmp"))
        .arg("inspect-template")
        .arg(file)
        .output()
        .unwrap()
}

#[test]
fn inspect_template_prints_the_detection_and_a_config_that_loads() {
    let out = inspect(&shipped("qwen3_thinking.jinja"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("method: rendered"), "{stdout}");
    assert!(stdout.contains("think tag: <think>"), "{stdout}");
    assert!(stdout.contains("starts in reasoning: yes"), "{stdout}");
    assert!(stdout.contains("tool calls: hermes"), "{stdout}");

    // The suggested settings are a valid config with those values.
    let yaml = &stdout[stdout.find("proxy_settings:").expect("a YAML snippet")..];
    let c = Config::from_yaml(yaml, None, &Env::isolated(Vec::<(String, String)>::new()))
        .unwrap_or_else(|e| panic!("{e}\n{yaml}"));
    let p = &c.parsers;
    assert_eq!(p.parse_tags.tool_format, ToolFormat::Hermes);
    assert!(p.parse_tags.starts_in_reasoning);
    assert_eq!(
        p.swap_reasoning_content.think_open,
        Affix {
            prefix: "".into(),
            suffix: "\n".into()
        }
    );
    assert_eq!(
        p.swap_reasoning_content.think_close,
        Affix {
            prefix: "\n".into(),
            suffix: "\n\n".into()
        }
    );
}

#[test]
fn inspect_template_falls_back_and_fails_on_unreadable_files() {
    let dir = tempfile::tempdir().unwrap();
    let odd = dir.path().join("odd.jinja");
    let text = std::fs::read_to_string(shipped("glm4.5.jinja")).unwrap();
    std::fs::write(
        &odd,
        format!("{{% generation %}}{{% endgeneration %}}{text}"),
    )
    .unwrap();
    let out = inspect(&odd);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(
        stdout.contains("method: scanned the template's literal text"),
        "{stdout}"
    );
    assert!(stdout.contains("render error:"), "{stdout}");
    assert!(stdout.contains("tool_format: glm"), "{stdout}");

    let out = inspect(&dir.path().join("missing.jinja"));
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("error: cannot read") && stderr.contains("missing.jinja"),
        "{stderr}"
    );
    assert!(out.stdout.is_empty());
}
