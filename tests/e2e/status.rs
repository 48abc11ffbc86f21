//! `relocate status`: the imports a database holds, per model, from the
//! import-chunk tables: what a rerun with the same --import-uuid skips.

use crate::db_test;
use crate::support::{Run, Target, fixture, relocate};

const FRESH: &str = "sentry/backup/fresh-install.json";
const FIRST: &str = "6ba7b810-9dad-11d1-80b4-00c04fd430c8";
const SECOND: &str = "6ba7b811-9dad-11d1-80b4-00c04fd430c8";

fn status(t: &Target, args: &[&str]) -> Run {
    let mut all = vec!["status", "--db", t.url.as_str()];
    all.extend_from_slice(args);
    relocate(&all)
}

fn status_json(t: &Target, args: &[&str]) -> serde_json::Value {
    let mut all = vec!["--json"];
    all.extend_from_slice(args);
    let run = status(t, &all);
    run.success();
    serde_json::from_str(&run.stdout).unwrap_or_else(|e| panic!("not JSON ({e}):\n{}", run.stdout))
}

/// The entry of `model` in an import of the JSON output.
fn model<'a>(import: &'a serde_json::Value, name: &str) -> Option<&'a serde_json::Value> {
    import["models"].as_array().unwrap().iter().find(|m| m["model"] == name)
}

db_test!(no_chunk_tables_means_no_imports, |t| {
    // An existing, empty database (SQLite: the file is there).
    t.connect().await;
    let run = status(&t, &[]);
    run.success();
    assert_eq!(run.stdout.trim(), format!("no imports recorded in {}", t.url));
    let json = status_json(&t, &[]);
    assert_eq!(json["imports"], serde_json::json!([]));
});

db_test!(imports_are_listed_per_model, |t| {
    let src = fixture(FRESH);
    t.relocate(&["import", "organizations", src.to_str().unwrap(), "--import-uuid", FIRST]).success();
    // Same export again under another UUID: users and the org are suffixed copies.
    t.relocate(&["import", "users", src.to_str().unwrap(), "--import-uuid", SECOND, "--merge-users"]).success();

    let run = status(&t, &[]);
    run.success();
    assert!(run.stdout.starts_with(&format!("2 imports recorded in {}", t.url)), "{}", run.stdout);
    assert!(run.stdout.contains(&format!("import {FIRST}:")) && run.stdout.contains(&format!("import {SECOND}:")));
    let user_line = run.stdout.lines().find(|l| l.trim_start().starts_with("sentry.user ")).unwrap();
    // chunks, records, inserted, existing, overwritten
    assert_eq!(user_line.split_whitespace().skip(1).collect::<Vec<_>>(), ["1", "2", "2", "0", "0"], "{user_line}");

    let json = status_json(&t, &[]);
    let imports = json["imports"].as_array().unwrap();
    assert_eq!(imports.len(), 2);
    assert_eq!(imports[0]["import_uuid"], FIRST, "oldest first");
    let first = &imports[0];
    let user = model(first, "sentry.user").unwrap();
    assert_eq!(
        (user["chunks"].as_i64(), user["records"].as_i64(), user["inserted"].as_i64()),
        (Some(1), Some(2), Some(2))
    );
    assert_eq!(user["silo"], "control");
    assert_eq!(model(first, "sentry.project").unwrap()["silo"], "region");
    let total: i64 = first["models"].as_array().unwrap().iter().map(|m| m["records"].as_i64().unwrap()).sum();
    assert_eq!(first["records"].as_i64(), Some(total));
    // The chunk rows, counted straight from the tables.
    let chunks = t.count("sentry_regionimportchunk").await + t.count("sentry_controlimportchunk").await;
    let listed: i64 = imports.iter().map(|i| i["chunks"].as_i64().unwrap()).sum();
    assert_eq!(listed, chunks);
    // --merge-users reused both users.
    let merged = model(&imports[1], "sentry.user").unwrap();
    assert_eq!((merged["inserted"].as_i64(), merged["existing"].as_i64()), (Some(0), Some(2)));

    // One import by its UUID.
    let json = status_json(&t, &[SECOND]);
    assert_eq!(json["imports"].as_array().unwrap().len(), 1);
    assert_eq!(json["imports"][0]["import_uuid"], SECOND);
    let run = status(&t, &["0b0e6c1e-7d0b-4a57-9f07-3a1c1f1b9f03"]);
    run.success();
    assert!(run.stdout.contains("starts from the beginning"), "{}", run.stdout);
});

db_test!(an_interrupted_import_shows_what_a_rerun_skips, |t| {
    // A project key that cannot be read stops the import after the models before it.
    let mut records: Vec<serde_json::Value> =
        serde_json::from_str(&std::fs::read_to_string(fixture(FRESH)).unwrap()).unwrap();
    let key = records.iter_mut().find(|r| r["model"] == "sentry.projectkey").unwrap();
    key["fields"]["status"] = serde_json::Value::String("nope".into());
    let src = t.dir.path().join("bad-projectkey.json");
    std::fs::write(&src, serde_json::to_string(&records).unwrap()).unwrap();
    t.relocate(&["import", "organizations", src.to_str().unwrap(), "--import-uuid", FIRST]).failure(1);

    let json = status_json(&t, &[FIRST]);
    let import = &json["imports"][0];
    assert_eq!(model(import, "sentry.user").unwrap()["records"].as_i64(), Some(2));
    assert_eq!(model(import, "sentry.project").unwrap()["records"].as_i64(), Some(1));
    assert!(model(import, "sentry.projectkey").is_none(), "{import}");
});

#[test]
fn a_missing_sqlite_file_is_not_created() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("nope.db");
    let run = relocate(&["status", "--db", &format!("sqlite:{}", file.display())]);
    run.failure(6);
    assert!(run.stderr.contains("check the path"), "{}", run.stderr);
    assert!(!file.exists(), "status created {}", file.display());
}
