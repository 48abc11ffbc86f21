//! Sentry's RPC error scenarios (59–65, `test_rpc.py::RpcImportErrorTests`),
//! mapped onto the CLI, where the orchestrator and the batch importer are
//! one process: what Sentry reports as an `RpcImportErrorKind` becomes a
//! finding in `--findings-file` and an exit code, or cannot happen and is
//! checked where it would.

use serde_json::{Value, json};

use super::{chunks, load, path, write};
use crate::db_test;
use crate::support::{Target, fixture};

/// Runs `args` with a findings file, expecting `code`; returns the findings.
fn findings(t: &Target, args: &[&str], code: i32) -> Value {
    let file = t.dir.path().join("findings.json");
    let mut all = args.to_vec();
    all.extend(["--findings-file", path(&file), "--no-prompt"]);
    t.relocate(&all).failure(code);
    serde_json::from_str(&std::fs::read_to_string(&file).expect("findings written")).expect("findings JSON")
}

// Sentry: tests/sentry/backup/test_rpc.py::RpcImportErrorTests::test_bad_unknown_model
//
// Adapted: Sentry's batch importer refuses an unknown model name, but its
// orchestrator never sends one: unknown names in an export are ignored. The
// CLI is the orchestrator: the records are left out and reported, and the
// rest of the export is imported.
db_test!(bad_unknown_model, |t| {
    let mut records = load("backup/fresh-install.json");
    records.push(json!({"model": "sentry.doesnotexist", "pk": 1, "fields": {"name": "x"}}));
    let src = write(&t, "unknown.json", &records);
    let run = t.relocate(&["import", "users", path(&src)]);
    run.success();
    assert!(
        run.stdout.contains("skipped 1 records of sentry.doesnotexist: no plugin describes this model"),
        "{}",
        run.stdout
    );
    assert_eq!(t.count("auth_user").await, 2);
});

// Sentry: tests/sentry/backup/test_rpc.py::RpcImportErrorTests::test_bad_incorrect_silo_mode_for_model
//
// Adapted: relocate writes every silo's models into one database, so no
// model can reach the wrong silo's importer. What the silo still decides is
// where a model's chunks go: every control model's chunks (with identical
// replicas) and every region model's, per Sentry's registry.
db_test!(bad_incorrect_silo_mode_for_model, |t| {
    let records = load("backup/fresh-install.json");
    let src = write(&t, "fresh.json", &records);
    t.relocate(&["import", "global", path(&src), "--no-prompt"]).success();
    let mut models: Vec<&str> = records.iter().filter_map(|r| r["model"].as_str()).collect();
    models.dedup();
    for model in models {
        // `chunks` asserts the silo's table, and no chunk in the other.
        assert_eq!(chunks(&t, model).await.len(), 1, "{model}");
    }
});

// Sentry: tests/sentry/backup/test_rpc.py::RpcImportErrorTests::test_bad_unspecified_scope
//
// Adapted: the scope is the subcommand, so the CLI cannot run without one;
// leaving it out is a usage error that touches nothing.
db_test!(bad_unspecified_scope, |t| {
    let src = fixture("sentry/backup/fresh-install.json");
    let run = t.relocate(&["import", path(&src)]);
    run.failure(2);
    let mut c = t.connect().await;
    assert!(!c.has_table("auth_user").await);
});

// Sentry: tests/sentry/backup/test_rpc.py::RpcImportErrorTests::test_bad_missing_import_uuid
//
// Adapted: the CLI assigns a UUID when none is given, as Sentry's `_import`
// does, so every chunk has one and the same; a given UUID that is not one is
// a usage error that touches nothing.
db_test!(bad_missing_import_uuid, |t| {
    let src = fixture("sentry/backup/fresh-install.json");
    let bad = t.relocate(&["import", "users", path(&src), "--import-uuid", "not-a-uuid"]);
    bad.failure(2);
    assert!(bad.stderr.contains("--import-uuid"), "{}", bad.stderr);
    assert_eq!(t.count("auth_user").await, 0);
    let run = t.relocate(&["import", "users", path(&src)]);
    run.success();
    let uuids = t.strings("SELECT DISTINCT CAST(import_uuid AS TEXT) FROM sentry_controlimportchunk").await;
    assert_eq!(uuids.len(), 1);
    let uuid = uuids[0].clone().unwrap_or_default();
    assert!(
        run.stdout.contains(&format!("import {uuid} done")),
        "the assigned UUID {uuid} is printed:\n{}",
        run.stdout
    );
});

// Sentry: tests/sentry/backup/test_rpc.py::RpcImportErrorTests::test_bad_invalid_json
db_test!(bad_invalid_json, |t| {
    let src = t.dir.path().join("invalid.json");
    std::fs::write(&src, "_").expect("write");
    let found = findings(&t, &["import", "global", path(&src)], 3);
    assert_eq!(found[0]["kind"], "DeserializationFailed");
    let mut c = t.connect().await;
    assert!(!c.has_table("auth_user").await);
});

// Sentry: tests/sentry/backup/test_rpc.py::RpcImportErrorTests::test_bad_validation
db_test!(bad_validation, |t| {
    // The minimum-privileges user alone, with a username too long.
    let mut users: Vec<Value> =
        load("backup/user-with-minimum-privileges.json").into_iter().filter(|r| r["model"] == "sentry.user").collect();
    users[0]["fields"]["username"] = json!("a".repeat(129));
    let src = write(&t, "long.json", &users);
    let found = findings(&t, &["import", "global", path(&src)], 1);
    assert_eq!(found[0]["kind"], "ValidationError");
    assert_eq!(found[0]["on"]["model"], "sentry.user");
    assert_eq!(t.count("auth_user").await, 0);
});

// Sentry: tests/sentry/backup/test_rpc.py::RpcImportErrorTests::test_bad_unexpected_model
//
// Adapted: Sentry sends a user's records as a batch of `sentry.option`. The
// reader batches records by the model they name, so a batch cannot hold
// another model's records; the nearest case is a record that names one
// model and carries another's fields. It must be refused, not written as
// an empty option.
db_test!(bad_unexpected_model, |t| {
    let mut users: Vec<Value> =
        load("backup/user-with-minimum-privileges.json").into_iter().filter(|r| r["model"] == "sentry.user").collect();
    users[0]["model"] = json!("sentry.option");
    let src = write(&t, "mislabelled.json", &users);
    let found = findings(&t, &["import", "global", path(&src)], 1);
    assert_eq!(found[0]["on"]["model"], "sentry.option");
    // An option's own fields are missing: it cannot be an option.
    assert_eq!(found[0]["kind"], "ValidationError");
    assert!(found[0]["reason"].as_str().is_some_and(|r| r.contains("key")), "{found}");
    assert_eq!(t.count("sentry_option").await, 0);
});
