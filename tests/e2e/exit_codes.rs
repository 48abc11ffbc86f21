//! Every exit code the README documents, each with the message an operator
//! reads: printed once, naming what went wrong and saying what to do next.

use std::path::{Path, PathBuf};

use crate::db_test;
use crate::support::{Kind, Run, Target, example, fixture, pg_admin_url, relocate, test_plugin};

const OK: i32 = 0;
const IMPORT_FAILED: i32 = 1;
const USAGE: i32 = 2;
const BAD_INPUT: i32 = 3;
const DECRYPTION: i32 = 4;
const PLUGIN: i32 = 5;
const DATABASE: i32 = 6;

const FRESH: &str = "sentry/backup/fresh-install.json";
const RESUME_HINT: &str = "to resume";

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// `needle` is in stderr exactly once.
#[track_caller]
fn once(run: &Run, needle: &str) {
    let n = run.stderr.matches(needle).count();
    assert_eq!(n, 1, "`{needle}` is in stderr {n} times, not once:\n{}", run.stderr);
}

/// Stderr has one `error:` line (after any progress).
#[track_caller]
fn one_error_line(run: &Run) {
    let errors = run.stderr.lines().filter(|l| l.starts_with("error: ")).count();
    assert_eq!(errors, 1, "expected one error line:\n{}", run.stderr);
}

/// The fixture export with one record changed by `change`.
fn changed_export(dir: &Path, name: &str, change: impl FnOnce(&mut Vec<serde_json::Value>)) -> PathBuf {
    let mut records: Vec<serde_json::Value> =
        serde_json::from_str(&std::fs::read_to_string(fixture(FRESH)).unwrap()).unwrap();
    change(&mut records);
    let out = dir.join(name);
    std::fs::write(&out, serde_json::to_string(&records).unwrap()).unwrap();
    out
}

/// A project key whose `status` is not an integer: the import stops at it,
/// after the models before it were written.
fn bad_project_key(dir: &Path) -> PathBuf {
    changed_export(dir, "bad-projectkey.json", |records| {
        let key = records.iter_mut().find(|r| r["model"] == "sentry.projectkey").unwrap();
        key["fields"]["status"] = serde_json::Value::String("nope".into());
    })
}

// 0

db_test!(exit_0_import_done, |t| {
    let run = t.relocate(&["import", "users", path(&fixture(FRESH))]);
    run.failure(OK);
    assert!(run.stdout.contains("done"), "{}", run.stdout);
    assert!(!run.stderr.contains("error"), "{}", run.stderr);
});

// 1

db_test!(exit_1_bad_record_names_it_and_says_what_to_do, |t| {
    let src = bad_project_key(t.dir.path());
    let run = t.relocate(&["import", "organizations", path(&src)]);
    run.failure(IMPORT_FAILED);
    one_error_line(&run);
    once(&run, "sentry.projectkey record #1 (pk 1) cannot be read");
    once(&run, "status");
    once(&run, "fix the record in the export, or filter it out");
    // A rerun would stop at the same record: no resume hint.
    assert!(!run.stderr.contains(RESUME_HINT), "{}", run.stderr);
});

// 2

#[test]
fn exit_2_plugin_memory_over_the_runtime_limit() {
    let run = relocate(&["import", "users", path(&fixture(FRESH)), "--plugin-memory", "2048", "--db", "sqlite:x.db"]);
    run.failure(USAGE);
    once(&run, "--plugin-memory must be between 1 and 1024 MiB");
    // The runtime's own limit is accepted.
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite:{}", dir.path().join("t.db").display());
    relocate(&["import", "users", path(&fixture(FRESH)), "--plugin-memory", "1024", "--db", &db]).success();
}

#[test]
fn exit_2_sqlite_url_without_a_file() {
    for url in ["sqlite:", "sqlite://", "sqlite::memory:"] {
        let run = relocate(&["import", "users", path(&fixture(FRESH)), "--db", url]);
        run.failure(USAGE);
        once(&run, "names no file");
    }
}

#[test]
fn exit_2_unknown_database_url_said_once() {
    let run = relocate(&["import", "users", path(&fixture(FRESH)), "--db", "mysql://x/y"]);
    run.failure(USAGE);
    once(&run, "is not a database URL");
}

#[test]
fn exit_2_unreadable_key_file() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite:{}", dir.path().join("t.db").display());
    let missing = dir.path().join("missing.pem");
    let run = relocate(&[
        "import",
        "users",
        path(&example("fresh-install.tar")),
        "--decrypt-with",
        path(&missing),
        "--db",
        &db,
    ]);
    run.failure(USAGE);
    one_error_line(&run);
    once(&run, "cannot read the private key");
    once(&run, "No such file or directory");
    let out = dir.path().join("out.json");
    let run = relocate(&[
        "decrypt",
        path(&out),
        "--src",
        path(&example("fresh-install.tar")),
        "--decrypt-with",
        path(&missing),
    ]);
    run.failure(USAGE);
    once(&run, "cannot read the private key");
}

// 3

#[test]
fn exit_3_missing_export_said_once() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite:{}", dir.path().join("t.db").display());
    let run = relocate(&["import", "users", "nope.json", "--db", &db]);
    run.failure(BAD_INPUT);
    one_error_line(&run);
    once(&run, "nope.json");
    once(&run, "No such file or directory");
}

// 4

db_test!(exit_4_wrong_key_blames_the_key_once, |t| {
    let tar = example("fresh-install.tar");
    let key = fixture("crypto/other-private.pem");
    let run = t.relocate(&["import", "users", path(&tar), "--decrypt-with", path(&key)]);
    run.failure(DECRYPTION);
    one_error_line(&run);
    once(&run, "The public key does not match");
    once(&run, "check the key pair");
});

#[test]
fn exit_4_decrypt_with_the_wrong_key_blames_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("x.json");
    let run = relocate(&[
        "decrypt",
        path(&out),
        "--src",
        path(&example("fresh-install.tar")),
        "--decrypt-with",
        path(&fixture("crypto/other-private.pem")),
    ]);
    run.failure(DECRYPTION);
    one_error_line(&run);
    once(&run, "The public key does not match");
    once(&run, "check the key pair");
    assert!(!run.stderr.contains("invalid tarball"), "{}", run.stderr);
}

// 5

/// An export of `model` whose second record sets off the misbehaving test plugin.
fn misbehaving(dir: &Path, model: &str, trigger: &str) -> PathBuf {
    let records = serde_json::json!([
        {"model": model, "pk": 10, "fields": {"text": "fine"}},
        {"model": model, "pk": 11, "fields": {"text": trigger}},
    ]);
    let out = dir.join("misbehave.json");
    std::fs::write(&out, records.to_string()).unwrap();
    out
}

db_test!(exit_5_trap_has_no_resume_hint, |t| {
    let src = misbehaving(t.dir.path(), "test.panic", "boom");
    let plugin = test_plugin("misbehave");
    let run = t.relocate(&["import", "global", path(&src), "--plugin", path(&plugin), "--no-prompt"]);
    run.failure(PLUGIN);
    one_error_line(&run);
    once(&run, "test.panic record #2");
    once(&run, "trapped");
    assert!(!run.stderr.contains(RESUME_HINT), "a rerun would trap again: {}", run.stderr);
});

db_test!(exit_5_timeout_can_be_resumed, |t| {
    let src = misbehaving(t.dir.path(), "test.spin", "spin");
    let plugin = test_plugin("misbehave");
    let uuid = "0b0e6c1e-7d0b-4a57-9f07-3a1c1f1b9f01";
    let run = t.relocate(&[
        "import",
        "global",
        path(&src),
        "--plugin",
        path(&plugin),
        "--plugin-timeout",
        "0.5",
        "--import-uuid",
        uuid,
        "--no-prompt",
    ]);
    run.failure(PLUGIN);
    one_error_line(&run);
    once(&run, "time limit");
    once(&run, "raise --plugin-timeout");
    once(&run, &format!("rerun with --import-uuid {uuid} to resume"));
});

// 6

#[tokio::test]
async fn exit_6_missing_postgres_database_says_how_to_create_it() {
    let admin = pg_admin_url();
    let (base, _) = admin.rsplit_once('/').unwrap();
    let url = format!("{base}/relocate_doesnotexist");
    let run = relocate(&["import", "users", path(&fixture(FRESH)), "--db", &url]);
    run.failure(DATABASE);
    one_error_line(&run);
    once(&run, "\"relocate_doesnotexist\" does not exist");
    once(&run, "createdb ");
    once(&run, "CREATE DATABASE");
}

#[test]
fn exit_6_postgres_not_listening() {
    // Port 1: nothing listens there.
    let run = relocate(&["import", "users", path(&fixture(FRESH)), "--db", "postgres://postgres@127.0.0.1:1/x"]);
    run.failure(DATABASE);
    one_error_line(&run);
    once(&run, "cannot open database");
    once(&run, "is PostgreSQL running");
}

/// The database refuses a statement for a reason of its own (a lock held
/// too long): the batch is lost, the import can be resumed, and the rerun
/// finishes it without writing anything twice.
#[tokio::test]
async fn exit_6_lock_timeout_can_be_resumed() {
    let t = Target::new(Kind::Postgres).await;
    t.relocate(&["db", "init"]).success();
    let url = format!("{}?options=-c%20lock_timeout%3D300", t.url);
    let uuid = "0b0e6c1e-7d0b-4a57-9f07-3a1c1f1b9f02";
    let src = fixture(FRESH);
    let args = ["import", "organizations", path(&src), "--import-uuid", uuid, "--db", &url];
    {
        let mut holder = t.connect().await;
        holder.execute("BEGIN").await;
        // Project keys come last: users and organizations are written first.
        holder.execute("LOCK TABLE sentry_projectkey IN ACCESS EXCLUSIVE MODE").await;
        let run = relocate(&args);
        run.failure(DATABASE);
        one_error_line(&run);
        once(&run, "lock timeout");
        once(&run, &format!("rerun with --import-uuid {uuid} to resume"));
        holder.execute("ROLLBACK").await;
    }
    assert_eq!(t.count("auth_user").await, 2, "the users were written before the lock stopped the import");
    let rerun = relocate(&args);
    rerun.success();
    assert_eq!(t.count("auth_user").await, 2, "the rerun wrote the users again");
    assert_eq!(t.count("sentry_projectkey").await, 1);
    let user = rerun.stdout.lines().find(|l| l.starts_with("sentry.user ")).unwrap_or_default().to_string();
    assert_eq!(user.split_whitespace().nth(6), Some("2"), "the users were resumed: {user}");
}
