//! The Prometheus alert rules shipped in examples/prometheus: valid (`promtool check rules`),
//! each rule tested firing and not firing (`promtool test rules`), and every metric they use
//! one the daemon sends (the docs' table, which `observe` checks against the daemon).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/prometheus")
}

fn promtool(args: &[&str]) -> String {
    let out = Command::new("promtool")
        .args(args)
        .current_dir(dir())
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run promtool ({e}): install Debian's 'prometheus' package (make deps)")
        });
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "promtool {args:?} failed:\n{text}");
    text
}

/// The values of `key: VALUE` lines of a YAML file (the rule files are flat enough).
fn values_of(text: &str, key: &str) -> Vec<String> {
    text.lines()
        .filter_map(|l| l.trim_start().strip_prefix(key))
        .map(|v| v.trim().to_string())
        .collect()
}

#[test]
fn alert_rules_are_valid_and_each_is_tested_firing_and_quiet() {
    let rules = std::fs::read_to_string(dir().join("psentinel-alerts.yml")).unwrap();
    let tests = std::fs::read_to_string(dir().join("psentinel-alerts.test.yml")).unwrap();
    let out = promtool(&["check", "rules", "psentinel-alerts.yml"]);
    assert!(out.contains("SUCCESS: 5 rules found"), "{out}");
    let out = promtool(&["test", "rules", "psentinel-alerts.test.yml"]);
    assert!(out.contains("SUCCESS"), "{out}");

    let alerts: BTreeSet<String> = values_of(&rules, "- alert:").into_iter().collect();
    assert_eq!(alerts.len(), 5, "{alerts:?}");
    // Each rule has a case where it stays quiet and one where it fires.
    let mut quiet = BTreeSet::new();
    let mut fires = BTreeSet::new();
    let lines: Vec<&str> = tests.lines().collect();
    for (i, l) in lines.iter().enumerate() {
        if let Some(name) = l.trim_start().strip_prefix("alertname:") {
            let next = lines.get(i + 1).map_or("", |n| n.trim());
            if next == "exp_alerts: []" {
                quiet.insert(name.trim().to_string());
            } else {
                fires.insert(name.trim().to_string());
            }
        }
    }
    assert_eq!(quiet, alerts, "rules with a case where they do not fire");
    assert_eq!(fires, alerts, "rules with a case where they fire");

    // Every metric the rules read is one the daemon sends.
    let documented: BTreeSet<String> = crate::observe::documented_families().into_iter().collect();
    let mut used = BTreeSet::new();
    for expr in values_of(&rules, "expr:") {
        let mut rest = expr.as_str();
        while let Some(i) = rest.find("psentinel_") {
            let name: String = rest[i..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            rest = &rest[i + name.len()..];
            used.insert(name);
        }
    }
    assert!(used.len() >= 5, "{used:?}");
    for m in &used {
        assert!(
            documented.contains(m),
            "{m} is not a metric psentinel sends"
        );
    }
}
