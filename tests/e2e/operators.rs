//! What an operator relies on around an import: a dry run that changes
//! nothing, an all-or-nothing mode, a JSON summary, a report of every record
//! that was not inserted, and progress where a person is watching.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use crate::db_test;
use crate::support::{Run, fixture};

const FRESH: &str = "sentry/backup/fresh-install.json";

/// Two snapshots are equal; on a difference, names the tables that differ.
#[track_caller]
fn assert_same(
    after: &Option<BTreeMap<String, Vec<String>>>,
    before: &Option<BTreeMap<String, Vec<String>>>,
    what: &str,
) {
    if after == before {
        return;
    }
    let (Some(a), Some(b)) = (after, before) else {
        panic!("{what}: one of the two has no database: {after:?} / {before:?}")
    };
    let keys: BTreeSet<&String> = a.keys().chain(b.keys()).collect();
    let diffs: Vec<String> = keys
        .into_iter()
        .filter(|k| a.get(*k) != b.get(*k))
        .map(|k| {
            let (x, y) = (a.get(k).cloned().unwrap_or_default(), b.get(k).cloned().unwrap_or_default());
            let only_after: Vec<&String> = x.iter().filter(|r| !y.contains(r)).collect();
            let only_before: Vec<&String> = y.iter().filter(|r| !x.contains(r)).collect();
            format!("{k}: now also {only_after:?}; no longer {only_before:?}")
        })
        .collect();
    panic!("{what}:\n{}", diffs.join("\n"));
}

fn fresh() -> String {
    fixture(FRESH).to_str().unwrap().to_string()
}

/// The `--json` summary's counts: model → [inserted, existing, overwritten,
/// dropped, skipped, resumed], and the derived rows.
fn counts(run: &Run) -> (BTreeMap<String, [u64; 6]>, BTreeMap<String, u64>) {
    let json: serde_json::Value = serde_json::from_str(&run.stdout)
        .unwrap_or_else(|e| panic!("--json prints one JSON document ({e}):\n{}", run.stdout));
    let models = json["models"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            let n = |k: &str| m[k].as_u64().unwrap();
            let line = [n("inserted"), n("existing"), n("overwritten"), n("dropped"), n("skipped"), n("resumed")];
            (m["model"].as_str().unwrap().to_string(), line)
        })
        .collect();
    let derived = json["derived"].as_object().unwrap().iter().map(|(k, v)| (k.clone(), v.as_u64().unwrap())).collect();
    (models, derived)
}

db_test!(a_dry_run_changes_nothing_and_counts_what_a_real_run_writes, |t| {
    // Into an empty target: nothing is created, not even the SQLite file.
    let empty = t.snapshot().await;
    let run = t.relocate(&["import", "organizations", &fresh(), "--dry-run", "--json", "--seed", "3"]);
    run.success();
    assert!(serde_json::from_str::<serde_json::Value>(&run.stdout).unwrap()["dry_run"].as_bool().unwrap());
    assert_same(&t.snapshot().await, &empty, "a dry run into an empty target changed it");
    let (first, _) = counts(&run);
    assert_eq!(first["sentry.user"][0], 2, "{first:?}");

    // Into a database with rows: usernames and slugs collide, so the plugins'
    // questions and the suffixes they choose are rehearsed against real rows.
    t.relocate(&["import", "organizations", &fresh(), "--seed", "1"]).success();
    let before = t.snapshot().await;
    let uuid = "0b5e4a8e-1d7c-4b8e-9d51-3f3f0d6c2a10";
    let dry = t.relocate(&["import", "organizations", &fresh(), "--dry-run", "--json", "--import-uuid", uuid]);
    dry.success();
    assert_same(&t.snapshot().await, &before, "the dry run changed the database");
    let real = t.relocate(&["import", "organizations", &fresh(), "--json", "--import-uuid", uuid]);
    real.success();
    assert_eq!(counts(&dry), counts(&real), "the dry run's summary differs from what the real run wrote");
    assert_ne!(t.snapshot().await, before, "the real run wrote nothing");
    assert_eq!(t.count("auth_user").await, 4);
});

db_test!(a_dry_run_of_a_global_import_asks_nothing_and_deletes_nothing, |t| {
    t.relocate(&["import", "organizations", &fresh()]).success();
    let before = t.snapshot().await;
    // No --no-prompt and nothing on stdin: a dry run clears nothing, so it does not ask.
    let run = t.relocate(&["import", "global", &fresh(), "--dry-run"]);
    run.success();
    assert!(!run.stderr.contains("are you sure"), "{}", run.stderr);
    assert!(run.stdout.contains("rolled back, nothing was written"), "{}", run.stdout);
    assert_same(&t.snapshot().await, &before, "the dry run changed the database");
});

/// fresh-install.json with the project's name made an object: the import
/// stops at `sentry.project`, after users and organizations went through.
fn broken_late(dir: &Path) -> PathBuf {
    let mut records: Vec<serde_json::Value> =
        serde_json::from_str(&std::fs::read_to_string(fixture(FRESH)).unwrap()).unwrap();
    let project = records.iter_mut().find(|r| r["model"] == "sentry.project").unwrap();
    project["fields"]["name"] = serde_json::json!({"not": "text"});
    let path = dir.join("broken-late.json");
    std::fs::write(&path, serde_json::to_string(&records).unwrap()).unwrap();
    path
}

db_test!(an_atomic_import_that_fails_leaves_the_database_as_it_was, |t| {
    let src = broken_late(t.dir.path());
    let src = src.to_str().unwrap();
    let empty = t.snapshot().await;
    let run = t.relocate(&["import", "organizations", src, "--atomic"]);
    run.failure(1);
    assert!(run.stderr.contains("sentry.project"), "the error names the model: {}", run.stderr);
    assert!(run.stderr.contains("rolled back"), "{}", run.stderr);
    assert!(!run.stderr.contains("to resume"), "an atomic import is not resumable: {}", run.stderr);
    assert_same(&t.snapshot().await, &empty, "the failed atomic import left something behind");

    // The same failure without --atomic keeps the batches before it.
    t.relocate(&["import", "organizations", src]).failure(1);
    assert_eq!(t.count("auth_user").await, 2);
    assert_eq!(t.count("sentry_project").await, 0);
});

db_test!(an_atomic_import_writes_what_a_batched_one_does, |t| {
    let run = t.relocate(&["import", "organizations", &fresh(), "--atomic", "--json"]);
    run.success();
    let (models, _) = counts(&run);
    assert_eq!(t.count("auth_user").await, 2);
    assert_eq!(t.count("sentry_organizationmember").await, 2);
    assert_eq!(models["sentry.organizationmember"][0], 2);
    // A second atomic run with the same UUID resumes like any other.
    let uuid =
        serde_json::from_str::<serde_json::Value>(&run.stdout).unwrap()["import_uuid"].as_str().unwrap().to_string();
    let again = t.relocate(&["import", "organizations", &fresh(), "--atomic", "--json", "--import-uuid", &uuid]);
    again.success();
    assert_eq!(counts(&again).0["sentry.user"], [0, 0, 0, 0, 0, 2]);
    assert_eq!(t.count("auth_user").await, 2);
});

db_test!(the_json_summary_matches_the_database, |t| {
    let run = t.relocate(&["import", "organizations", &fresh(), "--json"]);
    run.success();
    assert!(run.stderr.lines().all(|l| !l.starts_with('{')), "JSON goes to stdout only");
    let json: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    let (models, derived) = counts(&run);
    for (model, table) in [
        ("sentry.user", "auth_user"),
        ("sentry.organization", "sentry_organization"),
        ("sentry.organizationmember", "sentry_organizationmember"),
        ("sentry.project", "sentry_project"),
        ("sentry.projectkey", "sentry_projectkey"),
    ] {
        assert_eq!(models[model][0] as i64, t.count(table).await, "{model}");
    }
    assert_eq!(derived["sentry.organizationmapping"] as i64, t.count("sentry_organizationmapping").await);
    assert_eq!(derived["sentry.lostpasswordhash"] as i64, t.count("sentry_lostpasswordhash").await);
    let uuid = json["import_uuid"].as_str().unwrap();
    let chunk_uuids: BTreeSet<Option<String>> = t
        .strings("SELECT DISTINCT CAST(import_uuid AS TEXT) FROM sentry_controlimportchunk")
        .await
        .into_iter()
        .map(|u| u.map(|u| u.replace('-', "")))
        .collect();
    assert_eq!(chunk_uuids, BTreeSet::from([Some(uuid.replace('-', ""))]));
    let total: u64 = models.values().map(|c| c.iter().sum::<u64>()).sum();
    assert_eq!(total, 31, "every record of the export is accounted for");
    assert!(json["seconds"].as_f64().unwrap() >= 0.0);
});

/// The `--report` file's lines.
fn report_lines(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not a JSON line ({e}): {l}")))
        .collect()
}

db_test!(the_report_lists_every_record_not_inserted_with_its_reason, |t| {
    // A user filter: the other user, its emails and the models outside the
    // Users scope are not inserted.
    let report = t.dir.path().join("report.jsonl");
    let args = [
        "import",
        "users",
        &fresh(),
        "--filter-usernames",
        "admin@example.com",
        "--json",
        "--report",
        report.to_str().unwrap(),
    ];
    let run = t.relocate(&args);
    run.success();
    let (models, _) = counts(&run);
    let lines = report_lines(&report);
    let not_inserted: u64 = models.values().map(|c| c[1..].iter().sum::<u64>()).sum();
    assert_eq!(lines.len() as u64, not_inserted, "one line per record not inserted");
    let inserted: u64 = models.values().map(|c| c[0]).sum();
    assert_eq!(lines.len() as u64 + inserted, 31);
    let keys: BTreeSet<(String, u64)> =
        lines.iter().map(|l| (l["model"].as_str().unwrap().to_string(), l["ordinal"].as_u64().unwrap())).collect();
    assert_eq!(keys.len(), lines.len(), "no record is reported twice");
    for l in &lines {
        assert!(
            ["existing", "overwritten", "dropped", "skipped", "resumed"].contains(&l["outcome"].as_str().unwrap()),
            "{l}"
        );
        assert!(!l["reason"].as_str().unwrap().is_empty(), "{l}");
        assert!(l["old_pk"].is_i64(), "{l}");
    }
    let filtered = lines.iter().find(|l| l["model"] == "sentry.user").expect("the filtered user is reported");
    assert_eq!(filtered["outcome"], "skipped");
    assert!(filtered["reason"].as_str().unwrap().contains("--filter-usernames"), "{filtered}");
    let org = lines.iter().find(|l| l["model"] == "sentry.organization").expect("the organization is reported");
    assert!(org["reason"].as_str().unwrap().contains("scope"), "{org}");

    // With --report-inserted, every record, and the inserted ones carry their new pk.
    let all = t.dir.path().join("all.jsonl");
    let args = ["import", "users", &fresh(), "--report", all.to_str().unwrap(), "--report-inserted"];
    t.relocate(&args).success();
    let lines = report_lines(&all);
    assert_eq!(lines.len(), 31);
    let users: Vec<i64> = lines
        .iter()
        .filter(|l| l["model"] == "sentry.user" && l["outcome"] == "inserted")
        .map(|l| l["new_pk"].as_i64().unwrap())
        .collect();
    assert_eq!(users.len(), 2);
    for pk in users {
        assert_eq!(t.i64s(&format!("SELECT COUNT(*) FROM auth_user WHERE id = {pk}")).await, [1], "new pk {pk}");
    }
});

db_test!(the_report_names_dropped_records_and_their_missing_target, |t| {
    let path = t.dir.path().join("dangling.json");
    let records = serde_json::json!([
        {"model": "sentry.organization", "pk": 5, "fields": {"name": "Other", "slug": "other", "status": 0, "date_added": "2023-06-22T22:54:28.773Z", "default_role": "member", "is_test": false, "flags": "1"}},
        {"model": "sentry.organizationmember", "pk": 9, "fields": {"organization": 5, "user_id": 77, "email": null, "role": "member", "flags": "0", "token": null, "date_added": "2023-06-22T22:59:55.561Z", "token_expires_at": null, "has_global_access": true, "inviter_id": null, "invite_status": 0, "type": 50, "user_is_active": true, "user_email": "x@example.com"}}
    ]);
    std::fs::write(&path, records.to_string()).unwrap();
    let report = t.dir.path().join("report.jsonl");
    t.relocate(&["import", "organizations", path.to_str().unwrap(), "--report", report.to_str().unwrap()]).success();
    let lines = report_lines(&report);
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert_eq!(lines[0]["outcome"], "dropped");
    assert_eq!(lines[0]["old_pk"], 9);
    let reason = lines[0]["reason"].as_str().unwrap();
    assert!(reason.contains("user_id") && reason.contains("sentry.user pk 77"), "{reason}");
});

#[test]
fn an_unwritable_report_file_is_a_usage_error() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite:{}", dir.path().join("t.db").display());
    let report = dir.path().join("no-such-dir").join("report.jsonl");
    let run =
        crate::support::relocate(&["import", "users", &fresh(), "--db", &db, "--report", report.to_str().unwrap()]);
    run.failure(2);
    assert!(run.stderr.contains("report.jsonl"), "{}", run.stderr);
}

/// `relocate import users FRESH` into a fresh SQLite file, run under a
/// pseudo-terminal by `script` (util-linux); returns what the terminal got.
fn under_a_terminal(dir: &Path) -> String {
    let db = format!("sqlite:{}", dir.join("t.db").display());
    let command = [env!("CARGO_BIN_EXE_relocate"), "import", "users", &fresh(), "--db", &db]
        .iter()
        .map(|a| format!("'{}'", a.replace('\'', r"'\''")))
        .collect::<Vec<_>>()
        .join(" ");
    let out = std::process::Command::new("script")
        .args(["-q", "-e", "-c", &command, "/dev/null"])
        .env("XDG_CACHE_HOME", Path::new(env!("CARGO_TARGET_TMPDIR")).join("cache"))
        .env("TERM", "xterm")
        .env_remove("RELOCATE_DB")
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run script(1) from util-linux");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn progress_bars_show_on_a_terminal_and_not_in_a_pipe() {
    let dir = tempfile::tempdir().unwrap();
    let terminal = under_a_terminal(dir.path());
    assert!(terminal.contains("all models"), "the overall bar: {terminal}");
    assert!(terminal.contains("records") && terminal.contains("ETA"), "{terminal}");
    assert!(terminal.contains("\u{1b}["), "drawn with terminal escapes: {terminal}");

    let db = format!("sqlite:{}", dir.path().join("piped.db").display());
    let piped = crate::support::relocate(&["import", "users", &fresh(), "--db", &db]);
    piped.success();
    assert!(!piped.stderr.contains('\u{1b}') && !piped.stderr.contains('\r'), "{:?}", piped.stderr);
    assert!(!piped.stderr.contains("ETA"), "{}", piped.stderr);
}

#[test]
fn plain_progress_lines_when_not_a_terminal_and_none_with_silent() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite:{}", dir.path().join("t.db").display());
    let run = crate::support::relocate_with_env(
        &["import", "users", &fresh(), "--db", &db],
        &[("RELOCATE_PROGRESS_INTERVAL", "0")],
    );
    run.success();
    assert!(run.stderr.lines().any(|l| l.starts_with("progress: ") && l.contains("records/s")), "{}", run.stderr);
    let db = format!("sqlite:{}", dir.path().join("silent.db").display());
    let silent = crate::support::relocate_with_env(
        &["import", "users", &fresh(), "--db", &db, "--silent"],
        &[("RELOCATE_PROGRESS_INTERVAL", "0")],
    );
    silent.success();
    assert_eq!(silent.stderr, "", "--silent prints nothing but errors");
}

fn verify(t: &crate::support::Target, uuid: &str, scope: &str) -> Run {
    crate::support::relocate(&["verify", &fresh(), "--db", &t.url, "--import-uuid", uuid, "--scope", scope, "--json"])
}

db_test!(verify_passes_after_an_import_and_finds_a_changed_row, |t| {
    let (first, second) = ("6f1c2a3b-0000-4000-8000-000000000001", "6f1c2a3b-0000-4000-8000-000000000002");
    t.relocate(&["import", "global", &fresh(), "--no-prompt", "--import-uuid", first]).success();
    verify(&t, first, "global").success();
    // A second import collides on every username and slug: suffixes are expected changes.
    t.relocate(&["import", "organizations", &fresh(), "--import-uuid", second]).success();
    let run = verify(&t, second, "organizations");
    run.success();
    let json: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    assert!(json["models"]["sentry.user"]["compared"].as_u64().unwrap() == 2, "{json}");
    assert!(json["findings"].as_array().unwrap().is_empty());

    // One changed column of one row, one foreign key pointing elsewhere.
    let project = t.i64s("SELECT max(id) FROM sentry_project").await[0];
    let mut c = t.connect().await;
    c.execute(&format!("UPDATE sentry_project SET name = 'Changed' WHERE id = {project}")).await;
    let run = verify(&t, second, "organizations");
    run.failure(1);
    let json: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    let findings = json["findings"].as_array().unwrap();
    assert_eq!(findings.len(), 1, "{findings:?}");
    assert_eq!(findings[0]["model"], "sentry.project");
    assert_eq!(findings[0]["column"], "name");
    assert_eq!(findings[0]["found"], "Changed");
    assert_eq!(findings[0]["expected"], "Internal");
    assert!(run.stderr.contains("differs from the export in 1 place"), "{}", run.stderr);
    // The first import is untouched by the change.
    verify(&t, first, "global").success();
});

db_test!(verify_of_an_unknown_import_is_a_usage_error, |t| {
    t.relocate(&["import", "users", &fresh()]).success();
    let run = verify(&t, "6f1c2a3b-0000-4000-8000-0000000000ff", "users");
    run.failure(2);
    assert!(run.stderr.contains("no import 6f1c2a3b-0000-4000-8000-0000000000ff"), "{}", run.stderr);
});
