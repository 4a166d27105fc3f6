//! The runbook's offline scenarios: every file under `tests/scenarios/` passes against the embedded
//! runbook; the `test` command reports failures and bad files; a broken runbook is refused by name.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use harven_watchdog::runbook::Runbook;
use harven_watchdog::scenario;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn scenario_files() -> Vec<PathBuf> {
    let mut files: Vec<_> = std::fs::read_dir(root().join("tests/scenarios"))
        .expect("tests/scenarios")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    files.sort();
    files
}

#[test]
fn every_shipped_scenario_passes() {
    let runbook = Arc::new(Runbook::embedded());
    let config = harven_watchdog::config::Config::load_with_env(&[], Vec::new()).expect("defaults");
    let policy = harven_watchdog::incident::Policy::from_config(&config.escalation);
    let files = scenario_files();
    assert!(files.len() >= 2, "scenarios missing: {files:?}");
    let mut report = Vec::new();
    for file in &files {
        match scenario::run_file(file, &runbook, &policy) {
            Ok(o) if o.failures.is_empty() => {}
            Ok(o) => report.push(format!(
                "{}:\n  {}",
                file.display(),
                o.failures.join("\n  ")
            )),
            Err(e) => report.push(e.to_string()),
        }
    }
    assert!(
        report.is_empty(),
        "failing scenarios:\n{}",
        report.join("\n")
    );
}

#[test]
fn the_test_command_passes_good_files_and_names_what_failed() {
    let bin = env!("CARGO_BIN_EXE_harven-watchdog");
    let ok = Command::new(bin)
        .arg("test")
        .args(scenario_files())
        .output()
        .expect("run");
    let stdout = String::from_utf8_lossy(&ok.stdout);
    assert!(ok.status.success(), "{stdout}");
    assert!(
        stdout.contains(&format!(
            "scenarios: {} passed, 0 failed",
            scenario_files().len()
        )),
        "{stdout}"
    );

    let bad = Command::new(bin)
        .args([
            "test",
            "tests/fixtures/scenarios/wrong-expectation.toml",
            "tests/fixtures/scenarios/unknown-observation.toml",
            "tests/fixtures/scenarios/wrong-label.toml",
            "tests/fixtures/scenarios/wrong-kind.toml",
        ])
        .current_dir(root())
        .output()
        .expect("run");
    assert_eq!(bad.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&bad.stdout);
    assert!(
        stdout.contains("at 5m: errors.ratio_high should be firing"),
        "{stdout}"
    );
    assert!(
        stdout.contains("unknown observation \"prometheus.p99_seconds\""),
        "{stdout}"
    );
    assert!(
        stdout.contains("docker.running has no label \"containr\""),
        "{stdout}"
    );
    assert!(
        stdout.contains("docker.running takes a Bool value"),
        "{stdout}"
    );
    assert!(stdout.contains("scenarios: 0 passed, 4 failed"), "{stdout}");
}

#[test]
fn check_config_refuses_a_broken_runbook_naming_every_key() {
    let bin = env!("CARGO_BIN_EXE_harven-watchdog");
    let out = Command::new(bin)
        .arg("check-config")
        .env(
            "HARVEN_WATCHDOG__RUNBOOK__PATH",
            "tests/fixtures/runbook/invalid.toml",
        )
        .current_dir(root())
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    for want in [
        "tests/fixtures/runbook/invalid.toml: sections[1] (errors).rules[0].when.value: operator in does not fit",
        "sections[0] (latency).causes[0].evidence[1].labels.patern: docker.log_lines_per_minute has no label \"patern\"",
        "duplicate ID \"database.slow_query\"",
        "the stable cause ID \"database.rls_blocking\" is missing",
    ] {
        assert!(stderr.contains(want), "missing {want:?} in:\n{stderr}");
    }

    let ok = Command::new(bin)
        .arg("check-config")
        .env("HARVEN_WATCHDOG__RUNBOOK__PATH", "config/runbook.toml")
        .current_dir(root())
        .output()
        .expect("run");
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert!(String::from_utf8_lossy(&ok.stdout).contains("6 sections"));
}
