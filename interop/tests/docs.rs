//! The documentation an outside implementer or operator reads must name everything the
//! code has: the README's server table every flag and environment variable of
//! `scrip-server --help` (read from the clap definitions, so no binary is run).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;

fn workspace_file(path: &str) -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(path)).unwrap()
}

/// Every `--flag` (fields under `#[arg(long …)]`) and every `env = "…"` variable of the
/// server's command line, in source order.
fn server_flags_and_variables() -> (Vec<String>, Vec<String>) {
    let source = workspace_file("issuer/src/bin/scrip-server.rs");
    let (mut flags, mut variables) = (Vec::new(), Vec::new());
    let mut attribute = String::new();
    let mut in_attribute = false;
    let mut long_pending = false;
    for line in source.lines().map(str::trim) {
        if line.starts_with("#[arg(") {
            in_attribute = true;
            attribute.clear();
        }
        if in_attribute {
            attribute.push_str(line);
            if line.ends_with(")]") {
                in_attribute = false;
                let words: Vec<&str> = attribute
                    .trim_start_matches("#[arg(")
                    .split(',')
                    .map(str::trim)
                    .collect();
                long_pending = words.contains(&"long");
                if let Some(env) = attribute.split("env = \"").nth(1) {
                    variables.push(env.split('"').next().unwrap().to_owned());
                }
            }
            continue;
        }
        if long_pending && !line.starts_with("///") && !line.starts_with("#[") {
            if let Some((field, _)) = line.split_once(':') {
                flags.push(format!("--{}", field.trim().replace('_', "-")));
            }
            long_pending = false;
        }
    }
    flags.dedup();
    variables.sort();
    variables.dedup();
    (flags, variables)
}

#[test]
fn readme_names_every_server_flag_and_variable() {
    let (flags, variables) = server_flags_and_variables();
    assert!(flags.len() >= 25, "flags not found: {flags:?}");
    assert!(variables.len() >= 20, "variables not found: {variables:?}");
    let readme = workspace_file("README.md");
    let server_section = readme
        .split("## The server")
        .nth(1)
        .and_then(|rest| rest.split("\n## ").next())
        .unwrap();
    let missing: Vec<&String> = flags
        .iter()
        .chain(&variables)
        .filter(|name| !server_section.contains(&format!("`{name}`")))
        .collect();
    assert!(
        missing.is_empty(),
        "README.md's server section does not name {missing:?}, which scrip-server --help lists"
    );
}
