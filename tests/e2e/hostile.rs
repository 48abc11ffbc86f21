//! Hostile plugins (issue #9 item 6): plugins that attack the host on
//! purpose, each refused or contained with one clear error line (exit 5, or
//! 1 for a record the plugin made invalid), the limits holding, nothing of the
//! failed batch written, the models imported before it kept, and the next
//! import into the same database working.
//!
//! The guests are `plugins/test-plugins/hostile*`, `liar` and `std-user`.

use std::path::{Path, PathBuf};

use crate::db_test;
use crate::support::{Run, Target, relocate, test_plugin};

const IMPORT_FAILED: i32 = 1;
const PLUGIN_FAILED: i32 = 5;

/// An export of two `hostile.target` records, then three of `model` whose
/// second (ordinal 2) has the text `trigger`.
fn export(t: &Target, model: &str, trigger: &str) -> PathBuf {
    let mut records = vec![
        serde_json::json!({"model": "hostile.target", "pk": 1, "fields": {"text": "one"}}),
        serde_json::json!({"model": "hostile.target", "pk": 2, "fields": {"text": "two"}}),
    ];
    for (pk, text) in [(10, "fine"), (11, trigger), (12, "fine")] {
        records.push(serde_json::json!({"model": model, "pk": pk, "fields": {"text": text, "parent": 1}}));
    }
    let path = t.dir.path().join(format!("{}-{trigger}.json", model.replace('.', "-")));
    std::fs::write(&path, serde_json::Value::Array(records).to_string()).expect("write the export");
    path
}

/// `relocate import config SRC --plugin PLUGIN ARGS…` into `t`.
fn import(t: &Target, src: &Path, plugin: &str, args: &[&str]) -> Run {
    let plugin = test_plugin(plugin);
    let mut all = vec!["import", "config", src.to_str().unwrap(), "--plugin", plugin.to_str().unwrap(), "--no-prompt"];
    all.extend_from_slice(args);
    t.relocate(&all)
}

/// The one `error:` line of a failed run.
#[track_caller]
fn error_line(run: &Run) -> &str {
    let errors: Vec<&str> = run.stderr.lines().filter(|l| l.starts_with("error: ")).collect();
    assert_eq!(errors.len(), 1, "expected one error line:\n{}", run.stderr);
    errors[0]
}

/// Rows of `table` (0 when it does not exist) and import chunks of `model`.
async fn rows_and_chunks(t: &Target, table: &str, model: &str) -> (i64, i64) {
    let chunks = if t.count("sentry_regionimportchunk").await == 0 {
        0
    } else {
        t.i64s(&format!("SELECT COUNT(*) FROM sentry_regionimportchunk WHERE model = '{model}'")).await[0]
    };
    (t.count(table).await, chunks)
}

/// Runs `hostile.<mode>` on an export whose record #2 triggers it, and
/// checks what a user sees: the exit code, one error line naming the plugin,
/// the model and every needle (the record among them); `hostile.target`, imported before,
/// kept; nothing of `hostile.<mode>` written. Then the same plugin imports an
/// export without the trigger into the same database, completely.
async fn contained(t: &Target, mode: &str, args: &[&str], code: i32, needles: &[&str]) -> Run {
    let model = format!("hostile.{mode}");
    let table = format!("hostile_{mode}");
    let run = import(t, &export(t, &model, "go"), "hostile", args);
    run.failure(code);
    let line = error_line(&run);
    let named = if code == PLUGIN_FAILED { vec!["hostile@0.1.0", model.as_str()] } else { vec![model.as_str()] };
    for needle in named.iter().chain(needles) {
        assert!(line.contains(needle), "{needle:?} missing from: {line}");
    }
    assert_eq!(rows_and_chunks(t, "hostile_target", "hostile.target").await, (2, 1), "{mode}: the target model");
    assert_eq!(rows_and_chunks(t, &table, &model).await, (0, 0), "{mode}: the failed batch was written");

    // The next import into the same database is not affected.
    let again = import(t, &export(t, &model, "fine"), "hostile", args);
    again.success();
    assert_eq!(rows_and_chunks(t, &table, &model).await, (3, 1), "{mode}: the next import");
    assert_eq!(t.count("hostile_target").await, 4);
    run
}

db_test!(deep_recursion_is_a_trap, |t| {
    contained(&t, "recurse", &[], PLUGIN_FAILED, &["trapped", "record #2"]).await;
});

db_test!(flooding_random_bytes_hits_the_time_limit, |t| {
    contained(&t, "random_flood", &["--plugin-timeout", "0.5"], PLUGIN_FAILED, &["time limit of 500ms", "record #2"])
        .await;
});

db_test!(flooding_the_log_hits_the_time_limit_and_is_capped, |t| {
    let run =
        contained(&t, "log_flood", &["--plugin-timeout", "0.5"], PLUGIN_FAILED, &["time limit", "record #2"]).await;
    let logged = run.stderr.lines().filter(|l| l.contains("flooding the log")).count();
    assert_eq!(logged, 100, "log lines per call are capped:\n{}", run.stderr);
    assert!(run.stderr.contains("more log lines in this call were dropped"), "{}", run.stderr);
});

db_test!(flooding_stdout_hits_the_time_limit, |t| {
    let run =
        contained(&t, "print_flood", &["--plugin-timeout", "0.5"], PLUGIN_FAILED, &["time limit", "record #2"]).await;
    assert!(run.stderr.len() < 64 << 10, "stdout is captured, not passed on: {} bytes", run.stderr.len());
});

db_test!(exit_zero_is_a_failure_not_a_success, |t| {
    contained(&t, "exit", &[], PLUGIN_FAILED, &["called exit(0)", "record #2"]).await;
});

db_test!(asking_by_too_many_column_sets_is_refused_before_any_index, |t| {
    let needles = ["more than 32 different column sets", "record #2"];
    contained(&t, "index_flood", &[], PLUGIN_FAILED, &needles).await;
    // The import made auth_user (sentry-users describes it), and no index on it.
    assert!(t.connect().await.has_table("auth_user").await);
    let sql = if t.url.starts_with("sqlite:") {
        "SELECT COUNT(*) FROM sqlite_master WHERE type = 'index' AND tbl_name = 'auth_user' \
         AND name LIKE '%relocate_eq%'"
    } else {
        "SELECT COUNT(*) FROM pg_indexes WHERE tablename = 'auth_user' AND indexname LIKE '%relocate_eq%'"
    };
    assert_eq!(t.i64s(sql).await, [0], "indexes were made on another plugin's table");
});

// The result is refused as a whole, after the plugin named its last record
// (#3): the error blames the record the plugin last said it worked on.
db_test!(an_oversized_value_is_refused, |t| {
    contained(&t, "huge_text", &["--plugin-memory", "256"], PLUGIN_FAILED, &["too much data", "record #3"]).await;
});

db_test!(a_million_decisions_are_refused, |t| {
    contained(&t, "many_decisions", &["--plugin-memory", "256"], PLUGIN_FAILED, &["too much data", "record #3"]).await;
});

db_test!(a_value_of_the_wrong_kind_is_refused, |t| {
    contained(&t, "wrong_kind", &[], PLUGIN_FAILED, &["broke the contract", "`text`", "does not fit", "record #2"])
        .await;
});

db_test!(null_in_a_non_null_column_makes_the_record_invalid, |t| {
    contained(&t, "null", &[], IMPORT_FAILED, &["is invalid", "text: may not be null", "record #2"]).await;
});

db_test!(a_row_of_another_shape_is_refused, |t| {
    contained(&t, "wide_row", &[], PLUGIN_FAILED, &["3 values for a model of 2 columns", "record #2"]).await;
});

db_test!(a_foreign_key_to_a_pk_never_given_is_refused, |t| {
    contained(&t, "fk_unmapped", &[], PLUGIN_FAILED, &["987654", "no hostile.target this import mapped", "record #2"])
        .await;
});

db_test!(reusing_a_row_no_answer_named_is_refused, |t| {
    contained(&t, "reuse_unnamed", &[], PLUGIN_FAILED, &["reuse of pk 4242", "record #2"]).await;
});

db_test!(reusing_a_pk_found_in_another_models_table_is_refused, |t| {
    let needles = ["reuse of pk 1, which no answer for it found in hostile.reuse_foreign", "record #2"];
    contained(&t, "reuse_foreign", &[], PLUGIN_FAILED, &needles).await;
});

db_test!(writing_another_plugins_model_is_refused, |t| {
    contained(&t, "derive_foreign", &[], PLUGIN_FAILED, &["sentry.email", "does not describe", "record #2"]).await;
    assert_eq!(t.count("sentry_email").await, 0, "a row was planted in another plugin's table");
});

db_test!(writing_an_undescribed_model_is_refused, |t| {
    contained(&t, "derive_undescribed", &[], PLUGIN_FAILED, &["hostile.nowhere", "record #2"]).await;
});

/// A plugin refused at load: one error line with every needle, and the
/// database exactly as it was (nothing is written before plugins load).
async fn refused_at_load(t: &Target, plugins: &[PathBuf], needles: &[&str]) {
    let before = t.snapshot().await;
    let src = export(t, "hostile.target", "fine");
    let mut args = vec!["import", "config", src.to_str().unwrap(), "--no-prompt"];
    for plugin in plugins {
        args.extend(["--plugin", plugin.to_str().unwrap()]);
    }
    let run = t.relocate(&args);
    run.failure(PLUGIN_FAILED);
    let line = error_line(&run);
    for needle in needles {
        assert!(line.contains(needle), "{needle:?} missing from: {line}");
    }
    assert_eq!(t.snapshot().await, before, "a refused plugin changed the database");
}

db_test!(an_import_relocate_does_not_provide_is_refused_at_load, |t| {
    refused_at_load(
        &t,
        &[test_plugin("hostile-import")],
        &["test_plugin_hostile_import.wasm", "hostile:net/raw-socket"],
    )
    .await;
});

db_test!(a_model_on_another_plugins_table_is_refused_at_load, |t| {
    refused_at_load(&t, &[test_plugin("hostile-describe")], &["hostile.shadow", "sentry.user", "auth_user"]).await;
    assert_eq!(t.count("auth_user").await, 0);
});

db_test!(two_plugin_files_claiming_one_model_are_refused_at_load, |t| {
    let copy = t.dir.path().join("hostile-copy.wasm");
    std::fs::copy(test_plugin("hostile"), &copy).unwrap();
    refused_at_load(&t, &[test_plugin("hostile"), copy], &["both describe model hostile.", "load only one"]).await;
});

// std's clock, environment, files, network and sleep reach nothing: the
// plugin imports them, and each answers harmlessly (std-user reports what
// it saw as its skip reason).
db_test!(wasi_files_network_env_and_clocks_reach_nothing, |t| {
    let src = t.dir.path().join("std.json");
    std::fs::write(&src, r#"[{"model": "test.std", "pk": 1, "fields": {"text": "x"}}]"#).unwrap();
    let report = t.dir.path().join("report.jsonl");
    let run = import(&t, &src, "std-user", &["--report", report.to_str().unwrap()]);
    run.success();
    let report = std::fs::read_to_string(&report).unwrap();
    let line: serde_json::Value = serde_json::from_str(report.lines().next().expect("one report line")).unwrap();
    assert_eq!(line["outcome"], "skipped");
    let reason = line["reason"].as_str().unwrap();
    for needle in ["env=err:", "args=0", "fs=err", "net=err", "slept=3600"] {
        assert!(reason.contains(needle), "{needle:?} missing from: {reason}");
    }
    // The wall clock is the import's start: a time in milliseconds, not the
    // machine's clock moving while it slept an hour.
    assert!(reason.starts_with("std-user@0.1.0: now=16") || reason.contains("now=17"), "{reason}");
    assert_eq!(t.count("test_std").await, 0);
});

#[test]
fn inspect_marks_what_the_sandbox_denies_or_lacks() {
    let run = relocate(&["plugin", "inspect", test_plugin("std-user").to_str().unwrap(), "--json"]);
    run.success();
    let doc: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    let access = |prefix: &str| -> Vec<String> {
        doc["imports"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|i| i["name"].as_str().is_some_and(|n| n.starts_with(prefix)))
            .map(|i| i["access"].as_str().unwrap().to_string())
            .collect()
    };
    assert!(!access("wasi:filesystem/").is_empty(), "std-user imports the filesystem: {doc}");
    assert!(access("wasi:filesystem/").iter().all(|a| a == "denied"), "{doc}");
    assert!(access("wasi:sockets/").iter().all(|a| a == "denied"), "{doc}");
    assert!(access("wasi:clocks/").iter().all(|a| a == "stubbed"), "{doc}");

    // A plugin importing what relocate lacks does not load, so inspect
    // stops at the one line naming the import.
    let run = relocate(&["plugin", "inspect", test_plugin("hostile-import").to_str().unwrap()]);
    run.failure(PLUGIN_FAILED);
    assert!(error_line(&run).contains("hostile:net/raw-socket"), "{}", run.stderr);
}

// The plugin prepares batch 2 while batch 1 is written: a trap there stops
// the import after batch 1 committed, and what the user is told matches the
// database: batch 1's rows and chunk, its records in the report, and the
// failing batch (record #21 alone) captured for a replay.
db_test!(a_trap_while_the_previous_batch_commits_keeps_that_batch, |t| {
    let mut records = vec![serde_json::json!({"model": "hostile.target", "pk": 1, "fields": {"text": "one"}})];
    for pk in 1..=21 {
        let text = if pk == 21 { "go" } else { "fine" };
        records.push(serde_json::json!({"model": "hostile.recurse", "pk": pk, "fields": {"text": text, "parent": 1}}));
    }
    let src = t.dir.path().join("late-trap.json");
    std::fs::write(&src, serde_json::Value::Array(records).to_string()).expect("write the export");
    let report = t.dir.path().join("report.jsonl");
    let captures = t.dir.path().join("captured");
    let args = [
        "--batch-size",
        "20",
        "--report",
        report.to_str().unwrap(),
        "--report-inserted",
        "--capture-failures",
        captures.to_str().unwrap(),
    ];
    let run = import(&t, &src, "hostile", &args);
    run.failure(PLUGIN_FAILED);
    assert!(error_line(&run).contains("record #21"), "{}", run.stderr);
    assert_eq!(rows_and_chunks(&t, "hostile_recurse", "hostile.recurse").await, (20, 1));
    let reported = std::fs::read_to_string(&report).expect("the report");
    let inserted: Vec<&str> =
        reported.lines().filter(|l| l.contains("\"hostile.recurse\"") && l.contains("\"inserted\"")).collect();
    assert_eq!(inserted.len(), 20, "batch 1's records are reported:\n{reported}");
    let captured: Vec<_> = std::fs::read_dir(&captures).expect("the capture folder").collect();
    assert_eq!(captured.len(), 1, "one captured batch");
    let case: serde_json::Value =
        serde_json::from_slice(&std::fs::read(captured[0].as_ref().unwrap().path()).unwrap()).unwrap();
    let ordinals: Vec<u64> =
        case["records"].as_array().unwrap().iter().map(|r| r["ordinal"].as_u64().unwrap_or(0)).collect();
    assert_eq!(ordinals, [21], "the failing batch is captured: {case}");
});
