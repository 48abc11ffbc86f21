//! Importing Sentry's `fresh-install.json`, plain and encrypted, in every
//! scope, into both databases; retries and re-imports.

use crate::db_test;
use crate::support::{Kind, Target, example, fixture};

const FRESH: &str = "sentry/backup/fresh-install.json";

/// Rows per table after importing fresh-install.json into an empty database,
/// by scope: users, organizations, config, global. Sentry's semantics: each
/// scope takes in its models and User-scope ones (spec §3.2); Global-only
/// models (authenticator, apiapplication) come only with `global`.
const FRESH_INSTALL_COUNTS: &[(&str, [i64; 4])] = &[
    ("auth_user", [2, 2, 2, 2]),
    ("sentry_email", [2, 2, 2, 2]),
    ("sentry_useremail", [2, 2, 2, 2]),
    ("sentry_organization", [0, 1, 0, 1]),
    ("sentry_team", [0, 1, 0, 1]),
    ("sentry_organizationmember", [0, 2, 0, 2]),
    ("sentry_project", [0, 1, 0, 1]),
    ("sentry_projectkey", [0, 1, 0, 1]),
    ("sentry_rule", [0, 1, 0, 1]),
    ("sentry_projectteam", [0, 1, 0, 1]),
    ("sentry_organizationmember_teams", [0, 2, 0, 2]),
    ("sentry_projectoptions", [0, 4, 0, 4]),
    ("sentry_option", [0, 0, 4, 4]),
    ("sentry_relay", [0, 0, 1, 1]),
    ("sentry_relayusage", [0, 0, 1, 1]),
    ("sentry_userrole", [0, 0, 1, 1]),
    ("sentry_userrole_users", [0, 0, 1, 1]),
    ("auth_authenticator", [0, 0, 0, 2]),
    ("sentry_apiapplication", [0, 0, 0, 1]),
];

/// Rows Sentry's signals and outboxes write for the same imports: a
/// password-reset hash for every user imported outside Global scope, and the
/// control silo's mappings and slug reservation of organizations and members.
/// They have no import chunks.
const FRESH_INSTALL_SIGNAL_COUNTS: &[(&str, [i64; 4])] = &[
    ("sentry_lostpasswordhash", [2, 2, 2, 0]),
    ("sentry_organizationmapping", [0, 1, 0, 1]),
    ("sentry_organizationslugreservation", [0, 1, 0, 1]),
    ("sentry_organizationmembermapping", [0, 2, 0, 2]),
];

const SCOPES: [&str; 4] = ["users", "organizations", "config", "global"];

fn tables() -> Vec<&'static str> {
    FRESH_INSTALL_COUNTS.iter().map(|(t, _)| *t).collect()
}

async fn fresh_install_in_every_scope(kind: Kind, encrypted: bool) {
    for (s, scope) in SCOPES.iter().enumerate() {
        let t = Target::new(kind).await;
        let run = if encrypted {
            let tar = example("fresh-install.tar");
            let key = example("fresh-install.key.pem");
            t.relocate(&[
                "import",
                scope,
                tar.to_str().unwrap(),
                "--decrypt-with",
                key.to_str().unwrap(),
                "--no-prompt",
            ])
        } else {
            t.relocate(&["import", scope, fixture(FRESH).to_str().unwrap(), "--no-prompt"])
        };
        run.success();
        for (table, by_scope) in FRESH_INSTALL_COUNTS.iter().chain(FRESH_INSTALL_SIGNAL_COUNTS) {
            assert_eq!(
                t.count(table).await,
                by_scope[s],
                "{table} after `import {scope}` ({kind:?}, encrypted: {encrypted})"
            );
        }
        // The summary names each model with what happened to it.
        assert!(run.stdout.contains("sentry.user") && run.stdout.contains("import "), "{}", run.stdout);
        // One import UUID, and exactly the chunks Sentry would write: one per
        // model with rows (each has fewer than 20), control ones replicated.
        let uuids = t.i64s("SELECT COUNT(DISTINCT import_uuid) FROM sentry_controlimportchunk").await[0];
        assert_eq!(uuids, 1);
        let control = t.count("sentry_controlimportchunk").await;
        assert_eq!(control, t.count("sentry_controlimportchunkreplica").await);
        let models_with_rows = FRESH_INSTALL_COUNTS.iter().filter(|(_, c)| c[s] > 0).count() as i64;
        assert_eq!(
            control + t.count("sentry_regionimportchunk").await,
            models_with_rows,
            "chunks after `import {scope}`"
        );
    }
}

#[tokio::test]
async fn fresh_install_plain_sqlite() {
    fresh_install_in_every_scope(Kind::Sqlite, false).await;
}

#[tokio::test]
async fn fresh_install_plain_postgres() {
    fresh_install_in_every_scope(Kind::Postgres, false).await;
}

#[tokio::test]
async fn fresh_install_encrypted_sqlite() {
    fresh_install_in_every_scope(Kind::Sqlite, true).await;
}

#[tokio::test]
async fn fresh_install_encrypted_postgres() {
    fresh_install_in_every_scope(Kind::Postgres, true).await;
}

db_test!(users_are_sanitized_outside_global, |t| {
    t.relocate(&["import", "users", fixture(FRESH).to_str().unwrap()]).success();
    let admins = t.i64s("SELECT COUNT(*) FROM auth_user WHERE is_staff OR is_superuser").await;
    assert_eq!(admins, [0], "admin flags are stripped in User scope");
    let unclaimed = t.i64s("SELECT COUNT(*) FROM auth_user WHERE is_unclaimed").await;
    assert_eq!(unclaimed, [2]);
    for password in t.strings("SELECT password FROM auth_user").await {
        let password = password.unwrap_or_default();
        assert!(password.starts_with('!') && password.len() > 20, "password not replaced: {password}");
    }
    let verified = t.i64s("SELECT COUNT(*) FROM sentry_useremail WHERE validation_hash IN ('mCnWesSVvYQcq7qXQ36AZHwosAd6cghE', 'sJui890evYQcq7qXQ36AZHwochus8f0g')").await;
    assert_eq!(verified, [0], "validation hashes are regenerated outside Global scope");
});

db_test!(users_keep_privileges_in_global, |t| {
    t.relocate(&["import", "global", fixture(FRESH).to_str().unwrap(), "--no-prompt"]).success();
    let admins = t.i64s("SELECT COUNT(*) FROM auth_user WHERE is_staff AND is_superuser").await;
    assert_eq!(admins, [2], "Global scope keeps admin flags");
    let unclaimed = t.i64s("SELECT COUNT(*) FROM auth_user WHERE is_unclaimed").await;
    assert_eq!(unclaimed, [0]);
    let passwords = t.strings("SELECT password FROM auth_user ORDER BY username").await;
    assert!(passwords.iter().all(|p| p.as_deref().is_some_and(|p| p.starts_with("pbkdf2_sha256$"))), "{passwords:?}");
    // Project ids survive a Global import (spec §5.7).
    assert_eq!(t.i64s("SELECT id FROM sentry_project").await, [1]);
});

db_test!(foreign_keys_point_at_new_pks, |t| {
    t.relocate(&["import", "organizations", fixture(FRESH).to_str().unwrap()]).success();
    // Every member points at an imported user and the imported org.
    let orphans = t
        .i64s(
            "SELECT COUNT(*) FROM sentry_organizationmember m \
             WHERE m.user_id NOT IN (SELECT id FROM auth_user) \
             OR m.organization_id NOT IN (SELECT id FROM sentry_organization)",
        )
        .await;
    assert_eq!(orphans, [0]);
    let emails = t
        .strings("SELECT u.username FROM sentry_useremail e JOIN auth_user u ON u.id = e.user_id ORDER BY u.username")
        .await;
    assert_eq!(emails, [Some("admin@example.com".to_string()), Some("member@example.com".to_string())]);
});

db_test!(same_import_uuid_writes_nothing_twice, |t| {
    let uuid = "6ba7b810-9dad-11d1-80b4-00c04fd430c8";
    let src = fixture(FRESH);
    t.relocate(&["import", "organizations", src.to_str().unwrap(), "--import-uuid", uuid]).success();
    let before = t.counts(&tables()).await;
    let chunks = t.count("sentry_regionimportchunk").await + t.count("sentry_controlimportchunk").await;
    let again = t.relocate(&["import", "organizations", src.to_str().unwrap(), "--import-uuid", uuid]);
    again.success();
    assert_eq!(t.counts(&tables()).await, before, "a retry with the same UUID wrote rows");
    assert_eq!(t.count("sentry_regionimportchunk").await + t.count("sentry_controlimportchunk").await, chunks);
    // The summary reports the records as resumed, not inserted.
    let user_line = again.stdout.lines().find(|l| l.starts_with("sentry.user ")).unwrap_or_default().to_string();
    let numbers: Vec<&str> = user_line.split_whitespace().collect();
    assert_eq!(numbers.get(1), Some(&"0"), "inserted on retry: {user_line}");
    assert_eq!(numbers.get(6), Some(&"2"), "resumed on retry: {user_line}");
});

db_test!(new_import_uuid_suffixes_usernames_and_org_slug, |t| {
    let src = fixture(FRESH);
    t.relocate(&["import", "organizations", src.to_str().unwrap(), "--seed", "7"]).success();
    t.relocate(&["import", "organizations", src.to_str().unwrap(), "--seed", "8"]).success();
    let names: Vec<String> =
        t.strings("SELECT username FROM auth_user ORDER BY id").await.into_iter().flatten().collect();
    assert_eq!(names.len(), 4);
    assert_eq!(&names[..2], ["admin@example.com", "member@example.com"]);
    for (new, old) in names[2..].iter().zip(&names[..2]) {
        let suffix = new.strip_prefix(&format!("{old}-")).unwrap_or_else(|| panic!("{new} is not {old} with a suffix"));
        assert!(suffix.len() == 2 && suffix.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit()), "{new}");
    }
    let slugs: Vec<String> =
        t.strings("SELECT slug FROM sentry_organization ORDER BY id").await.into_iter().flatten().collect();
    assert_eq!(slugs[0], "testing");
    assert!(slugs[1].starts_with("testing-") && slugs[1].len() == "testing-".len() + 2, "{slugs:?}");
    // Sentry's scenario 5: the mapping and PRIMARY reservation carry each
    // org's final slug.
    let mapped: Vec<String> = t
        .strings("SELECT m.slug FROM sentry_organizationmapping m JOIN sentry_organization o ON o.id = m.organization_id ORDER BY o.id")
        .await
        .into_iter()
        .flatten()
        .collect();
    assert_eq!(mapped, slugs);
    let reserved: Vec<String> = t
        .strings("SELECT r.slug FROM sentry_organizationslugreservation r WHERE r.reservation_type = 0 ORDER BY r.organization_id")
        .await
        .into_iter()
        .flatten()
        .collect();
    assert_eq!(reserved, slugs);
    // The second org's members are the second import's users.
    let members = t
        .strings(
            "SELECT u.username FROM sentry_organizationmember m JOIN auth_user u ON u.id = m.user_id ORDER BY m.id",
        )
        .await;
    assert_eq!(members[2..].iter().flatten().collect::<Vec<_>>(), names[2..].iter().collect::<Vec<_>>());
});

db_test!(merge_users_reuses_existing_users, |t| {
    let src = fixture(FRESH);
    t.relocate(&["import", "organizations", src.to_str().unwrap()]).success();
    t.relocate(&["import", "organizations", src.to_str().unwrap(), "--merge-users"]).success();
    assert_eq!(t.count("auth_user").await, 2);
    assert_eq!(t.count("sentry_organization").await, 2);
    assert_eq!(t.count("sentry_organizationmember").await, 4);
    // A merged user's emails are not imported again.
    assert_eq!(t.count("sentry_useremail").await, 2);
    let distinct_users = t.i64s("SELECT COUNT(DISTINCT user_id) FROM sentry_organizationmember").await;
    assert_eq!(distinct_users, [2]);
});

db_test!(existing_configs_are_kept_or_overwritten, |t| {
    let src = fixture(FRESH);
    t.relocate(&["import", "config", src.to_str().unwrap()]).success();
    let mut c = t.connect().await;
    c.execute("UPDATE sentry_option SET value = '\"changed\"' WHERE key = 'sentry:latest_version'").await;
    drop(c);
    let latest = "SELECT value FROM sentry_option WHERE key = 'sentry:latest_version'";

    let keep = t.relocate(&["import", "config", src.to_str().unwrap()]);
    keep.success();
    assert_eq!(t.count("sentry_option").await, 4);
    assert_eq!(t.strings(latest).await, [Some("\"changed\"".to_string())], "kept without --overwrite-configs");
    let line = keep.stdout.lines().find(|l| l.starts_with("sentry.option ")).unwrap_or_default().to_string();
    assert_eq!(line.split_whitespace().nth(2), Some("4"), "options reported as existing: {line}");

    t.relocate(&["import", "config", src.to_str().unwrap(), "--overwrite-configs"]).success();
    assert_eq!(t.count("sentry_option").await, 4);
    assert_eq!(t.strings(latest).await, [Some("\"23.6.1\"".to_string())], "overwritten with --overwrite-configs");
    assert_eq!(t.count("sentry_relay").await, 1);
    assert_eq!(t.count("sentry_userrole").await, 1);
});

db_test!(global_import_clears_the_database_first, |t| {
    let src = fixture(FRESH);
    t.relocate(&["import", "global", src.to_str().unwrap(), "--no-prompt"]).success();
    let once = t.counts(&tables()).await;
    t.relocate(&["import", "global", src.to_str().unwrap(), "--no-prompt"]).success();
    assert_eq!(t.counts(&tables()).await, once, "a second Global import replaces, it does not add");
    let names = t.strings("SELECT username FROM auth_user ORDER BY id").await;
    assert_eq!(
        names,
        [Some("admin@example.com".to_string()), Some("member@example.com".to_string())],
        "no suffixes after a clear"
    );
    // Sequences restart: the cleared tables hand out pks from 1 again.
    assert_eq!(t.i64s("SELECT id FROM auth_user ORDER BY id").await, [1, 2]);
});

db_test!(declining_the_global_prompt_changes_nothing, |t| {
    let src = fixture(FRESH);
    t.relocate(&["import", "organizations", src.to_str().unwrap()]).success();
    let before = t.counts(&tables()).await;
    let run = t.relocate_with_input(&["import", "global", src.to_str().unwrap()], "n\n");
    run.failure(1);
    assert!(run.stderr.contains("irrecoverably delete") && run.stderr.contains("aborted"), "{}", run.stderr);
    // The question counts every row it would delete, across all the tables.
    let rows: i64 = FRESH_INSTALL_COUNTS.iter().chain(FRESH_INSTALL_SIGNAL_COUNTS).map(|(_, n)| n[1]).sum();
    assert!(run.stderr.contains(&format!("({rows} rows)")), "expected {rows} rows in: {}", run.stderr);
    assert_eq!(t.counts(&tables()).await, before);
    // Saying yes goes ahead.
    t.relocate_with_input(&["import", "global", src.to_str().unwrap()], "y\n").success();
    assert_eq!(t.count("sentry_organization").await, 1);
    assert_eq!(t.count("auth_authenticator").await, 2);
});

db_test!(resuming_a_global_import_does_not_clear, |t| {
    let uuid = "0b4f6a39-6a3f-4c55-9d8a-2d3e2f1d9c11";
    let src = fixture(FRESH);
    t.relocate(&["import", "global", src.to_str().unwrap(), "--import-uuid", uuid, "--no-prompt"]).success();
    let once = t.counts(&tables()).await;
    // Without --no-prompt: a resume has nothing to clear, so nothing is asked.
    t.relocate(&["import", "global", src.to_str().unwrap(), "--import-uuid", uuid]).success();
    assert_eq!(t.counts(&tables()).await, once);
});
