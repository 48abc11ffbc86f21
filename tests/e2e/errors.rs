//! Bad keys, bad tarballs and bad records: a clear message, a documented
//! exit code, and a database left as it was.

use relocate::crypto::Tarball;

use crate::db_test;
use crate::support::{Target, example, fixture};

const DECRYPTION: i32 = 4;
const BAD_INPUT: i32 = 3;
const IMPORT_FAILED: i32 = 1;

/// No table was created and nothing written.
async fn assert_untouched(t: &Target) {
    for table in ["auth_user", "sentry_option", "sentry_regionimportchunk", "sentry_controlimportchunk"] {
        assert_eq!(t.count(table).await, 0, "{table} was written");
    }
    let mut c = t.connect().await;
    assert!(!c.has_table("auth_user").await, "the schema was created although the import could not start");
}

fn rewrite_tarball(dir: &std::path::Path, change: impl FnOnce(&mut Tarball)) -> std::path::PathBuf {
    let mut tarball = Tarball::read_file(example("fresh-install.tar")).expect("read the example tarball");
    change(&mut tarball);
    let path = dir.join("changed.tar");
    tarball.write_file(&path).expect("write the changed tarball");
    path
}

db_test!(tampered_ciphertext_is_refused, |t| {
    let tar = rewrite_tarball(t.dir.path(), |tb| {
        // Flip one base64 character in the middle of the Fernet token.
        let mid = tb.export.len() / 2;
        tb.export[mid] = if tb.export[mid] == b'A' { b'B' } else { b'A' };
    });
    let key = example("fresh-install.key.pem");
    let run = t.relocate(&[
        "import",
        "global",
        tar.to_str().unwrap(),
        "--decrypt-with",
        key.to_str().unwrap(),
        "--no-prompt",
    ]);
    run.failure(DECRYPTION);
    assert!(run.stderr.contains("export.json") && run.stderr.contains("tampered"), "{}", run.stderr);
    assert!(run.stderr.contains("changed.tar"), "the message names the file: {}", run.stderr);
    assert_untouched(&t).await;
});

db_test!(wrong_key_is_refused, |t| {
    let key = fixture("crypto/other-private.pem");
    let tar = example("fresh-install.tar");
    let run = t.relocate(&["import", "users", tar.to_str().unwrap(), "--decrypt-with", key.to_str().unwrap()]);
    run.failure(DECRYPTION);
    assert!(run.stderr.contains("The public key does not match"), "{}", run.stderr);
    assert_untouched(&t).await;
});

db_test!(mismatched_key_pub_is_refused, |t| {
    // The right private key, but key.pub names another key.
    let other = std::fs::read_to_string(fixture("crypto/public.pem")).expect("read a public key");
    let tar = rewrite_tarball(t.dir.path(), |tb| tb.public_key_pem = other.into_bytes());
    let key = example("fresh-install.key.pem");
    let run = t.relocate(&["import", "config", tar.to_str().unwrap(), "--decrypt-with", key.to_str().unwrap()]);
    run.failure(DECRYPTION);
    assert!(run.stderr.contains("The public key does not match"), "{}", run.stderr);
    assert_untouched(&t).await;
});

db_test!(encrypted_export_without_key_says_so, |t| {
    let run = t.relocate(&["import", "global", example("fresh-install.tar").to_str().unwrap(), "--no-prompt"]);
    run.failure(DECRYPTION);
    assert!(run.stderr.contains("--decrypt-with"), "{}", run.stderr);
    assert_untouched(&t).await;
});

db_test!(malformed_json_names_file_and_place, |t| {
    let path = t.dir.path().join("broken.json");
    std::fs::write(&path, r#"[{"model": "sentry.option", "pk": 1, "fields": {"key": "a"}} {"model": "#).unwrap();
    let run = t.relocate(&["import", "config", path.to_str().unwrap()]);
    run.failure(BAD_INPUT);
    assert!(run.stderr.contains("broken.json") && run.stderr.contains("byte"), "{}", run.stderr);
    assert_untouched(&t).await;
});

db_test!(invalid_record_stops_with_a_finding, |t| {
    // Sentry's test_bad_invalid_user: a username over 128 characters.
    let mut records: Vec<serde_json::Value> =
        serde_json::from_str(&std::fs::read_to_string(fixture("sentry/backup/fresh-install.json")).unwrap()).unwrap();
    let user = records.iter_mut().filter(|r| r["model"] == "sentry.user").nth(1).unwrap();
    user["fields"]["username"] = serde_json::Value::String("x".repeat(129));
    let path = t.dir.path().join("long-username.json");
    std::fs::write(&path, serde_json::to_string(&records).unwrap()).unwrap();
    let findings = t.dir.path().join("findings.json");
    let run = t.relocate(&["import", "users", path.to_str().unwrap(), "--findings-file", findings.to_str().unwrap()]);
    run.failure(IMPORT_FAILED);
    assert!(run.stderr.contains("sentry.user record #2 (pk 2)") && run.stderr.contains("username"), "{}", run.stderr);
    let found: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&findings).unwrap()).unwrap();
    assert_eq!(found[0]["kind"], "ValidationError");
    assert_eq!(found[0]["on"]["model"], "sentry.user");
    assert_eq!(found[0]["on"]["ordinal"], 2);
    assert_eq!(found[0]["left_pk"], 2);
    // The batch with the bad record was not written; the database is consistent.
    assert_eq!(t.count("auth_user").await, 0);
    assert_eq!(t.count("sentry_controlimportchunk").await, 0);
});

db_test!(success_writes_empty_findings, |t| {
    let findings = t.dir.path().join("findings.json");
    t.relocate(&[
        "import",
        "users",
        fixture("sentry/backup/fresh-install.json").to_str().unwrap(),
        "--findings-file",
        findings.to_str().unwrap(),
    ])
    .success();
    assert_eq!(std::fs::read_to_string(&findings).unwrap().trim(), "[]");
});

db_test!(out_of_order_input_loses_nothing, |t| {
    // Users after their emails and members: Sentry would drop the dependents.
    let mut records: Vec<serde_json::Value> =
        serde_json::from_str(&std::fs::read_to_string(fixture("sentry/backup/fresh-install.json")).unwrap()).unwrap();
    records.reverse();
    let path = t.dir.path().join("reversed.json");
    std::fs::write(&path, serde_json::to_string_pretty(&records).unwrap()).unwrap();
    t.relocate(&["import", "organizations", path.to_str().unwrap()]).success();
    assert_eq!(t.count("auth_user").await, 2);
    assert_eq!(t.count("sentry_useremail").await, 2);
    assert_eq!(t.count("sentry_organizationmember").await, 2);
    assert_eq!(t.count("sentry_organizationmember_teams").await, 2);
});

db_test!(dangling_references_are_dropped_and_counted, |t| {
    // org-and-project.json: a member invited by user 1, who is not in the file.
    let run = t.relocate(&["import", "organizations", fixture("sentry/backup/org-and-project.json").to_str().unwrap()]);
    run.success();
    assert_eq!(t.count("sentry_organizationmember").await, 1, "the invite is kept; only its inviter is nulled");
    assert_eq!(t.i64s("SELECT COUNT(*) FROM sentry_organizationmember WHERE inviter_id IS NULL").await, [1]);
    // Now a member whose user is missing: dropped and counted.
    let path = t.dir.path().join("dangling.json");
    let records = serde_json::json!([
        {"model": "sentry.organization", "pk": 5, "fields": {"name": "Other", "slug": "other", "status": 0, "date_added": "2023-06-22T22:54:28.773Z", "default_role": "member", "is_test": false, "flags": "1"}},
        {"model": "sentry.organizationmember", "pk": 9, "fields": {"organization": 5, "user_id": 77, "email": null, "role": "member", "flags": "0", "token": null, "date_added": "2023-06-22T22:59:55.561Z", "token_expires_at": null, "has_global_access": true, "inviter_id": null, "invite_status": 0, "type": 50, "user_is_active": true, "user_email": "x@example.com"}}
    ]);
    std::fs::write(&path, records.to_string()).unwrap();
    let run = t.relocate(&["import", "organizations", path.to_str().unwrap()]);
    run.success();
    let line = run.stdout.lines().find(|l| l.starts_with("sentry.organizationmember ")).unwrap_or_default().to_string();
    assert_eq!(line.split_whitespace().nth(4), Some("1"), "the dropped member is counted: {line}");
    assert_eq!(t.count("sentry_organizationmember").await, 1);
});
