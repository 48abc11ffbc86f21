//! Plugins that misbehave: each failure is a clear import error naming the
//! plugin, the model and the record, a non-zero exit, and nothing written.

use crate::db_test;
use crate::support::{Target, test_plugin};

const PLUGIN_FAILED: i32 = 5;

/// An export of `model` whose second record triggers the test plugin.
fn export(t: &Target, model: &str, trigger: &str) -> std::path::PathBuf {
    let records = serde_json::json!([
        {"model": model, "pk": 10, "fields": {"text": "fine"}},
        {"model": model, "pk": 11, "fields": {"text": trigger}},
        {"model": model, "pk": 12, "fields": {"text": "fine"}},
    ]);
    let path = t.dir.path().join(format!("{}.json", model.replace('.', "-")));
    std::fs::write(&path, records.to_string()).expect("write the export");
    path
}

async fn assert_nothing_written(t: &Target, table: &str) {
    assert_eq!(t.count(table).await, 0, "{table} was written");
    assert_eq!(t.count("sentry_regionimportchunk").await, 0);
}

db_test!(a_panicking_plugin_is_a_clear_error, |t| {
    let src = export(&t, "test.panic", "boom");
    let plugin = test_plugin("misbehave");
    let run =
        t.relocate(&["import", "global", src.to_str().unwrap(), "--plugin", plugin.to_str().unwrap(), "--no-prompt"]);
    run.failure(PLUGIN_FAILED);
    for needle in ["plugin misbehave", "test.panic", "record #2", "blew up on old pk 11"] {
        assert!(run.stderr.contains(needle), "`{needle}` missing from: {}", run.stderr);
    }
    assert_nothing_written(&t, "test_panic").await;
});

db_test!(a_plugin_that_loops_forever_is_stopped, |t| {
    let src = export(&t, "test.spin", "spin");
    let plugin = test_plugin("misbehave");
    let started = std::time::Instant::now();
    let run = t.relocate(&[
        "import",
        "global",
        src.to_str().unwrap(),
        "--plugin",
        plugin.to_str().unwrap(),
        "--plugin-timeout",
        "0.5",
        "--no-prompt",
    ]);
    run.failure(PLUGIN_FAILED);
    for needle in ["plugin misbehave", "test.spin", "record #2", "time limit"] {
        assert!(run.stderr.contains(needle), "`{needle}` missing from: {}", run.stderr);
    }
    // Not a timing assertion on the limit itself: the process did not hang.
    assert!(started.elapsed() < std::time::Duration::from_secs(120));
    assert_nothing_written(&t, "test_spin").await;
});

db_test!(a_plugin_that_allocates_without_bound_is_stopped, |t| {
    let src = export(&t, "test.oom", "oom");
    let plugin = test_plugin("misbehave");
    let run = t.relocate(&[
        "import",
        "global",
        src.to_str().unwrap(),
        "--plugin",
        plugin.to_str().unwrap(),
        "--plugin-memory",
        "16",
        "--no-prompt",
    ]);
    run.failure(PLUGIN_FAILED);
    for needle in ["plugin misbehave", "test.oom", "record #2", "memory limit of 16 MiB"] {
        assert!(run.stderr.contains(needle), "`{needle}` missing from: {}", run.stderr);
    }
    assert_nothing_written(&t, "test_oom").await;
});
