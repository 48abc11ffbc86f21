//! One case-folding rule for every case-insensitive question: a suffixed
//! username (or slug) is taken when a stored one equals it under Python's
//! `str.lower()`, as Sentry's `unique_db_instance` checks (`iexact`), on
//! SQLite and on PostgreSQL whatever the database's locale (plain `lower()`
//! folds only ASCII on SQLite and under a `C` ctype).
//!
//! Sentry renames an imported user only when its username is taken
//! exactly (`User.objects.filter(username=…)`): `JÜRGEN` is imported beside
//! `Jürgen` unchanged. Only then does case matter, for the suffixed
//! candidates. With `--seed`, the first candidate for a record is known (it
//! depends on the seed, the model and the record alone), so the test learns
//! it from a scratch import, stores it in upper case beforehand, and checks
//! that the import counts it as taken (a 3-character suffix instead of 2)
//! exactly when Python's `str.lower()` makes the two equal.

use crate::support::{Conn, Kind, Target};

const SEED: &str = "77";

/// (name taken exactly beforehand, its upper case, whether Python's
/// `str.lower()` folds the upper case back to the name).
const NAMES: [(&str, &str, bool); 4] = [
    ("élodie", "ÉLODIE", true),
    // `İ`.lower() is `i` + U+0307 COMBINING DOT ABOVE.
    ("özi\u{307}l", "ÖZİL", true),
    // Final sigma: `ΟΔΟΣ-`.lower() is `οδος-`.
    ("οδος", "ΟΔΟΣ", true),
    // `ß`.lower() stays `ß` (only `casefold()` makes it `ss`).
    ("straße", "STRASSE", false),
];

/// Taken beforehand as `Jürgen`, imported as `JÜRGEN`: no exact match.
const NOT_EXACT: (&str, &str) = ("Jürgen", "JÜRGEN");

/// A users export of `names`, pks from `first_pk`.
fn users(t: &Target, file: &str, names: &[String], first_pk: usize) -> String {
    let records: Vec<serde_json::Value> = names
        .iter()
        .enumerate()
        .map(|(i, name)| {
            serde_json::json!({
                "model": "sentry.user",
                "pk": first_pk + i,
                "fields": {
                    "password": "pbkdf2_sha256$150000$iEvdIknqYjTr$+QsGn0tfIJ1FZLxQI37mVU1gL2KbL/wqjMtG/dFhsMA=",
                    "last_login": null, "username": name, "name": "", "email": format!("u{}@example.com", first_pk + i),
                    "is_staff": false, "is_active": true, "is_superuser": false, "is_managed": false,
                    "is_sentry_app": null, "is_password_expired": false, "is_unclaimed": false,
                    "last_password_change": "2023-06-22T22:59:57.023Z", "flags": "0", "session_nonce": null,
                    "date_joined": "2023-06-22T22:59:55.488Z", "last_active": "2023-06-22T22:59:55.489Z",
                    "avatar_type": 0, "avatar_url": null
                }
            })
        })
        .collect();
    let path = t.dir.path().join(file);
    std::fs::write(&path, serde_json::to_vec(&records).expect("serialize")).expect("write the export");
    path.to_str().expect("a UTF-8 path").to_string()
}

/// The usernames `t` holds, in insertion order.
async fn usernames(t: &Target) -> Vec<String> {
    t.strings("SELECT username FROM auth_user ORDER BY id").await.into_iter().map(Option::unwrap).collect()
}

fn import(t: &Target, export: &str, seeded: bool) {
    let mut args = vec!["import", "users", export, "--no-prompt", "--silent"];
    if seeded {
        args.extend(["--seed", SEED]);
    }
    t.relocate(&args).success();
}

/// The second import's users: every name of [`NAMES`] again, then `JÜRGEN`.
fn second_names() -> Vec<String> {
    NAMES.iter().map(|n| n.0.to_string()).chain([NOT_EXACT.1.to_string()]).collect()
}

/// The suffix the seeded second import gives each of [`NAMES`] when
/// nothing but the name itself is taken (learned on SQLite: the draw does
/// not depend on the database).
async fn first_candidates() -> Vec<String> {
    let t = Target::new(Kind::Sqlite).await;
    let taken: Vec<String> = NAMES.iter().map(|n| n.0.to_string()).collect();
    import(&t, &users(&t, "taken.json", &taken, 1), false);
    import(&t, &users(&t, "second.json", &second_names(), 100), true);
    let stored = usernames(&t).await;
    NAMES
        .iter()
        .zip(&stored[NAMES.len()..])
        .map(|((name, ..), got)| {
            let suffix = got.strip_prefix(&format!("{name}-")).unwrap_or_else(|| panic!("{name} became {got}"));
            assert_eq!(suffix.chars().count(), 2, "Sentry's first try is 2 characters: {got}");
            suffix.to_string()
        })
        .collect()
}

async fn suffixes_taken_in_another_case_count_as_python_folds(t: Target) {
    let candidates = first_candidates().await;
    // Taken beforehand: each name exactly, its first candidate in upper case,
    // and Jürgen.
    let mut taken: Vec<String> = NAMES.iter().map(|n| n.0.to_string()).collect();
    for ((_, upper, _), suffix) in NAMES.iter().zip(&candidates) {
        taken.push(format!("{upper}-{}", suffix.to_uppercase()));
    }
    taken.push(NOT_EXACT.0.to_string());
    import(&t, &users(&t, "taken.json", &taken, 1), false);
    import(&t, &users(&t, "second.json", &second_names(), 100), true);

    let stored = usernames(&t).await;
    assert_eq!(&stored[..taken.len()], taken.as_slice(), "what was taken is kept");
    let got = &stored[taken.len()..];
    for (((name, upper, folds_equal), suffix), got) in NAMES.iter().zip(&candidates).zip(got) {
        let first = format!("{name}-{suffix}");
        if *folds_equal {
            let rest = got.strip_prefix(&format!("{name}-")).unwrap_or_else(|| panic!("{name} became {got}"));
            assert_eq!(
                rest.chars().count(),
                3,
                "{first} is taken as {upper}-{}, so the next try (3 characters) wins; got {got}",
                suffix.to_uppercase()
            );
        } else {
            assert_eq!(got, &first, "{upper}-… is another name than {first}");
        }
    }
    assert_eq!(got[NAMES.len()], NOT_EXACT.1, "Sentry renames only on an exact match");

    // PostgreSQL: the suffix search used the folded-column index (SQLite's
    // plan is checked in db.rs's unit tests).
    if let Conn::Postgres(mut c) = t.connect().await {
        let sql = "SELECT COALESCE(SUM(idx_scan), 0)::bigint FROM pg_stat_user_indexes \
                   WHERE indexrelname = 'auth_user_relocate_lower_username'";
        // The importer's backend reports its statistics as it exits.
        let mut used = 0;
        for _ in 0..50 {
            used = sqlx::query_scalar::<_, i64>(sql).fetch_one(&mut c).await.expect("index statistics");
            if used > 0 {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        assert!(used > 0, "the username suffix search did not use its index");
    }
}

#[tokio::test]
async fn sqlite() {
    suffixes_taken_in_another_case_count_as_python_folds(Target::new(Kind::Sqlite).await).await;
}

#[tokio::test]
async fn postgres() {
    suffixes_taken_in_another_case_count_as_python_folds(Target::new(Kind::Postgres).await).await;
}

/// `lower()` under a `C` ctype folds ASCII only: relocate's rule must not.
#[tokio::test]
async fn postgres_with_a_c_ctype() {
    let t = Target::postgres_with("TEMPLATE template0 ENCODING 'UTF8' LC_CTYPE 'C' LC_COLLATE 'C'").await;
    let plain: Vec<Option<String>> = t.strings("SELECT lower('ÉLODIE')").await;
    assert_eq!(plain, [Some("Élodie".to_string())], "this database's own lower() folds ASCII only");
    suffixes_taken_in_another_case_count_as_python_folds(t).await;
}
