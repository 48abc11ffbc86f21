//! `relocate plugin test`: the first-party plugins' shipped cases pass, a
//! changed expectation fails with a diff naming the field and passes again
//! after `--bless`, budgets fail a case, and a batch `relocate import
//! --capture-failures` captured replays to the same error.

use std::path::{Path, PathBuf};

use crate::support::{relocate, test_plugin};

const CASES_FAILED: i32 = 1;

fn repo(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(rel)
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn the_first_party_plugins_pass_their_shipped_cases() {
    for (plugin, cases) in
        [("builtin:sentry-users", "plugins/sentry-users/cases"), ("builtin:sentry-orgs", "plugins/sentry-orgs/cases")]
    {
        let run = relocate(&["plugin", "test", plugin, path(&repo(cases))]);
        run.success();
        assert!(!run.stdout.contains("FAILED"), "{}", run.stdout);
        // Each case says what it cost.
        for needle in ["ok ", "instructions/record", "peak memory", "passed"] {
            assert!(run.stdout.contains(needle), "`{needle}` missing from: {}", run.stdout);
        }
    }
}

#[test]
fn a_changed_expectation_fails_with_a_diff_and_passes_again_after_bless() {
    let dir = tempfile::tempdir().unwrap();
    let case = dir.path().join("slug-collision.json");
    let original = std::fs::read_to_string(repo("plugins/sentry-orgs/cases/slug-collision.json")).unwrap();
    // One expectation changed: the second organization's final slug.
    let mut doc: serde_json::Value = serde_json::from_str(&original).unwrap();
    // The case pins the host calls too: the suffix's random draw.
    assert!(doc["expect"]["host_calls"].as_array().unwrap().contains(&"random-bytes 4".into()), "{doc}");
    let row = &mut doc["expect"]["decisions"][1]["row"];
    assert_eq!(row["slug"], "fresh-org", "the shipped case changed: {row}");
    row["slug"] = "fresh-orgs".into();
    std::fs::write(&case, serde_json::to_string_pretty(&doc).unwrap()).unwrap();

    let run = relocate(&["plugin", "test", "builtin:sentry-orgs", path(&case)]);
    run.failure(CASES_FAILED);
    for needle in [
        "FAILED",
        "the outcome differs from `expect`",
        r#"-        "slug": "fresh-orgs","#,
        r#"+        "slug": "fresh-org","#,
    ] {
        assert!(run.stdout.contains(needle), "`{needle}` missing from: {}", run.stdout);
    }
    assert!(run.stderr.contains("1 of 1 cases failed"), "{}", run.stderr);

    let blessed = relocate(&["plugin", "test", "builtin:sentry-orgs", path(&case), "--bless"]);
    blessed.success();
    assert!(blessed.stdout.contains("blessed"), "{}", blessed.stdout);
    // `--bless` rewrote `expect` only: the case is the shipped one again.
    let after: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&case).unwrap()).unwrap();
    assert_eq!(after, serde_json::from_str::<serde_json::Value>(&original).unwrap());
    let again = relocate(&["plugin", "test", "builtin:sentry-orgs", path(&case)]);
    again.success();
    assert!(!again.stdout.contains("blessed"), "{}", again.stdout);
}

#[test]
fn a_case_over_its_budget_fails() {
    let dir = tempfile::tempdir().unwrap();
    let case = dir.path().join("merge-users.json");
    let mut doc: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(repo("plugins/sentry-users/cases/merge-users.json")).unwrap())
            .unwrap();
    doc["budget"] = serde_json::json!({"fuel_per_record": 10, "memory_bytes": 4096});
    std::fs::write(&case, doc.to_string()).unwrap();
    let run = relocate(&["plugin", "test", "builtin:sentry-users", path(&case)]);
    run.failure(CASES_FAILED);
    for needle in ["over budget", "the budget is 10 (fuel_per_record)", "the budget is 4096 (memory_bytes)"] {
        assert!(run.stdout.contains(needle), "`{needle}` missing from: {}", run.stdout);
    }
    // The same as one JSON document.
    let run = relocate(&["plugin", "test", "builtin:sentry-users", path(&case), "--json"]);
    run.failure(CASES_FAILED);
    let doc: serde_json::Value = serde_json::from_str(&run.stdout).expect("--json prints one JSON document");
    assert_eq!(doc["failed"], 1, "{doc}");
    let case = &doc["cases"][0];
    assert_eq!(case["ok"], false, "{doc}");
    assert_eq!(case["problems"].as_array().unwrap().len(), 2, "{doc}");
    assert!(case["instructions_per_record"].as_u64().unwrap() > 10, "{doc}");
    assert!(case["peak_memory_bytes"].as_u64().unwrap() > 4096, "{doc}");
    assert_eq!(case["expected"], case["actual"], "only the budgets fail: {doc}");
}

/// Imports an export of `model` whose second record triggers the misbehave
/// plugin, with `--capture-failures`; replays the captured case as the error
/// output says to, and returns the error the case expects.
fn capture_and_replay(model: &str, trigger: &str, limits: &[&str]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let export = dir.path().join("export.json");
    let records = serde_json::json!([
        {"model": model, "pk": 10, "fields": {"text": "fine"}},
        {"model": model, "pk": 11, "fields": {"text": trigger}},
        {"model": model, "pk": 12, "fields": {"text": "fine"}},
    ]);
    std::fs::write(&export, records.to_string()).unwrap();
    let plugin = test_plugin("misbehave");
    let captures = dir.path().join("captures");
    let db = format!("sqlite:{}", dir.path().join("target.db").display());
    let mut args = vec!["import", "global", path(&export), "--plugin", path(&plugin), "--no-prompt", "--db", &db];
    args.extend(["--capture-failures", path(&captures)]);
    args.extend(limits);
    let run = relocate(&args);
    run.failure(5);
    let case = captures.join(format!("{model}-1.json"));
    // The error output says where the batch went and how to replay it.
    let replay_line = format!(
        "captured the failing batch as {case}: replay it with `relocate plugin test {plugin} {case}{limits}`",
        case = case.display(),
        plugin = plugin.display(),
        limits = limits.iter().map(|l| format!(" {l}")).collect::<String>(),
    );
    assert!(run.stderr.contains(&replay_line), "`{replay_line}` missing from: {}", run.stderr);
    let doc: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&case).unwrap()).unwrap();
    let error = doc["expect"]["error"].as_str().unwrap().to_string();
    // The import's own error line says the same, a stderr quote's line break aside.
    assert!(run.stderr.replace('\n', " ").contains(&error), "{error}\n--- stderr\n{}", run.stderr);

    let mut args = vec!["plugin", "test", path(&plugin), path(&case)];
    args.extend(limits);
    let replay = relocate(&args);
    replay.success();
    assert!(replay.stdout.contains("ok "), "{}", replay.stdout);
    error
}

#[test]
fn a_captured_trap_replays_to_the_same_error() {
    let error = capture_and_replay("test.panic", "boom", &[]);
    assert!(error.contains("record #2") && error.contains("blew up on old pk 11"), "{error}");
}

#[test]
fn a_captured_time_limit_replays_to_the_same_error() {
    let error = capture_and_replay("test.spin", "spin", &["--plugin-timeout", "0.5"]);
    assert!(error.contains("record #2") && error.contains("time limit"), "{error}");
}
