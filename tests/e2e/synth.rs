//! The bench's export generator (`relocate::synth`) against the real binary:
//! a generated export imports cleanly in Global scope with the counts the
//! generator reports, and a second export whose names partly collide with
//! it imports beside it, the colliding usernames and slugs suffixed.

use std::collections::BTreeSet;
use std::path::Path;

use relocate::synth::{self, Config, Generated};

use crate::db_test;
use crate::support::Target;

fn generate(dir: &Path, name: &str, config: Config) -> (Generated, serde_json::Value) {
    let path = dir.join(name);
    let generated = synth::write(&config, &path).expect("generate an export");
    let records = serde_json::from_slice(&std::fs::read(&path).expect("read the export")).expect("a JSON array");
    (generated, records)
}

/// The values of `field` of every `model` record.
fn names(records: &serde_json::Value, model: &str, field: &str) -> BTreeSet<String> {
    let all = records.as_array().expect("an array");
    all.iter()
        .filter(|r| r["model"] == model)
        .map(|r| r["fields"][field].as_str().expect("a name").to_string())
        .collect()
}

async fn assert_distinct_and_suffixed(
    t: &Target,
    sql: &str,
    first: &BTreeSet<String>,
    second: &BTreeSet<String>,
    what: &str,
) {
    let stored: Vec<String> = t.strings(sql).await.into_iter().map(|s| s.expect("a name")).collect();
    let distinct: BTreeSet<&String> = stored.iter().collect();
    assert_eq!(distinct.len(), stored.len(), "{what}s are distinct");
    assert_eq!(stored.len(), first.len() + second.len(), "one row per exported {what}");
    let shared: Vec<&String> = first.intersection(second).collect();
    assert!(!shared.is_empty(), "the second export shares some {what}s with the first");
    let renamed: Vec<&String> = stored.iter().filter(|s| !first.contains(*s) && !second.contains(*s)).collect();
    assert_eq!(renamed.len(), shared.len(), "each colliding {what} was renamed once: {renamed:?}");
    for name in renamed {
        assert!(
            shared.iter().any(|base| name.starts_with(&format!("{base}-"))),
            "{name} is a colliding {what} with a suffix"
        );
    }
}

db_test!(generated_exports_import_and_collide, |t| {
    let dir = t.dir.path().to_path_buf();
    let (first, first_records) = generate(&dir, "first.json", Config { records: 400, ..Config::default() });
    let (second, second_records) = generate(
        &dir,
        "second.json",
        Config { records: 400, seed: 1, collide_fraction: 0.5, collide_with: 0, encrypt_to: None },
    );
    assert!(first.records >= 400);
    assert_eq!(first.models.len(), 14);

    t.relocate(&["import", "global", dir.join("first.json").to_str().expect("a UTF-8 path"), "--no-prompt"]).success();
    for m in &first.models {
        assert_eq!(t.count(m.table).await, m.records as i64, "{} after the first import", m.table);
    }

    // Organization scope adds to what is there (Global would empty it first).
    t.relocate(&["import", "organizations", dir.join("second.json").to_str().expect("a UTF-8 path")]).success();
    let users = |records| names(records, "sentry.user", "username");
    let shared_emails = users(&first_records).intersection(&users(&second_records)).count() as u64;
    for m in &first.models {
        let expected = match m.model {
            // Config scope: not part of an organization import.
            "sentry.option" => m.records,
            // Addresses are shared: the colliding users' ones exist already.
            "sentry.email" => m.records + second.count(m.model) - shared_emails,
            _ => m.records + second.count(m.model),
        };
        assert_eq!(t.count(m.table).await, expected as i64, "{} after the second import", m.table);
    }
    let slugs = |records| names(records, "sentry.organization", "slug");
    assert_distinct_and_suffixed(
        &t,
        "SELECT username FROM auth_user",
        &users(&first_records),
        &users(&second_records),
        "username",
    )
    .await;
    assert_distinct_and_suffixed(
        &t,
        "SELECT slug FROM sentry_organization",
        &slugs(&first_records),
        &slugs(&second_records),
        "slug",
    )
    .await;
});
