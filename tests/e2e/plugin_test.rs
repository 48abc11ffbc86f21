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
}

#[test]
fn a_captured_failure_replays_to_the_same_error() {
    let dir = tempfile::tempdir().unwrap();
    let export = dir.path().join("export.json");
    let records = serde_json::json!([
        {"model": "test.panic", "pk": 10, "fields": {"text": "fine"}},
        {"model": "test.panic", "pk": 11, "fields": {"text": "boom"}},
        {"model": "test.panic", "pk": 12, "fields": {"text": "fine"}},
    ]);
    std::fs::write(&export, records.to_string()).unwrap();
    let plugin = test_plugin("misbehave");
    let captures = dir.path().join("captures");
    let db = format!("sqlite:{}", dir.path().join("target.db").display());
    let run = relocate(&[
        "import",
        "global",
        path(&export),
        "--plugin",
        path(&plugin),
        "--no-prompt",
        "--db",
        &db,
        "--capture-failures",
        path(&captures),
    ]);
    run.failure(5);
    let case = captures.join("test.panic-1.json");
    assert!(
        run.stderr.contains(&format!("captured the failing batch as {}", case.display())),
        "the error output does not say where the batch went: {}",
        run.stderr
    );
    let doc: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&case).unwrap()).unwrap();
    let error = doc["expect"]["error"].as_str().unwrap();
    assert!(error.contains("record #2") && error.contains("blew up on old pk 11"), "{error}");
    // The import's own error line says the same, the stderr quote's line break aside.
    assert!(run.stderr.replace('\n', " ").contains(error), "{error}\n--- stderr\n{}", run.stderr);

    let replay = relocate(&["plugin", "test", path(&plugin), path(&captures)]);
    replay.success();
    assert!(replay.stdout.contains("ok "), "{}", replay.stdout);
}
