//! Large batches and the indexes that keep an import's cost per record flat.

use crate::db_test;
use crate::support::{Conn, Target, relocate};

/// `count` users, every `collide_every`-th one with the username of the one
/// before, so that suffixing runs inside one large batch.
fn users_export(dir: &std::path::Path, count: usize, collide_every: usize) -> std::path::PathBuf {
    let mut records = Vec::with_capacity(count * 2);
    for i in 1..=count {
        let name = if i % collide_every == 0 {
            format!("user-{}@example.com", i - 1)
        } else {
            format!("user-{i}@example.com")
        };
        records.push(serde_json::json!({
            "model": "sentry.user",
            "pk": i * 3,
            "fields": {
                "password": "pbkdf2_sha256$150000$iEvdIknqYjTr$+QsGn0tfIJ1FZLxQI37mVU1gL2KbL/wqjMtG/dFhsMA=",
                "last_login": null, "username": name, "name": "", "email": name,
                "is_staff": false, "is_active": true, "is_superuser": false, "is_managed": false,
                "is_sentry_app": null, "is_password_expired": false, "is_unclaimed": false,
                "last_password_change": "2023-06-22T22:59:57.023Z", "flags": "0", "session_nonce": null,
                "date_joined": "2023-06-22T22:59:55.488Z", "last_active": "2023-06-22T22:59:55.489Z",
                "avatar_type": 0, "avatar_url": null
            }
        }));
    }
    let path = dir.join("users.json");
    std::fs::write(&path, serde_json::to_vec(&records).expect("serialize")).expect("write the export");
    path
}

const LARGEST_BATCH: usize = 10_000;

db_test!(the_largest_batch_size_imports, |t| {
    let count = LARGEST_BATCH + 60;
    let export = users_export(t.dir.path(), count, 50);
    let batch = LARGEST_BATCH.to_string();
    t.relocate(&["import", "users", export.to_str().unwrap(), "--batch-size", &batch, "--no-prompt", "--silent"])
        .success();
    assert_eq!(t.count("auth_user").await, count as i64);
    let distinct = t.i64s("SELECT COUNT(DISTINCT username) FROM auth_user").await[0];
    assert_eq!(distinct, count as i64, "colliding usernames were suffixed");
    let suffixed = t.i64s("SELECT COUNT(*) FROM auth_user WHERE username LIKE '%.com-%'").await[0];
    assert_eq!(suffixed, (count / 50) as i64);
    let chunks = t.i64s("SELECT CAST(COALESCE(SUM(max_ordinal - min_ordinal + 1), 0) AS BIGINT) FROM sentry_controlimportchunk WHERE model = 'sentry.user'").await[0];
    assert_eq!(chunks, count as i64, "the chunks cover every record once");
});

#[test]
fn a_batch_size_over_the_largest_is_a_usage_error() {
    let over = (LARGEST_BATCH + 1).to_string();
    for size in [over.as_str(), "0"] {
        let run = relocate(&["import", "users", "nope.json", "--batch-size", size]);
        run.failure(2);
        assert!(
            run.stderr.contains("--batch-size") && run.stderr.contains(&LARGEST_BATCH.to_string()),
            "{}",
            run.stderr
        );
    }
}

/// The index names of `table`.
async fn indexes(t: &Target, table: &str) -> Vec<String> {
    let sql = match t.connect().await {
        Conn::Sqlite(_) => {
            format!("SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = '{table}'")
        }
        Conn::Postgres(_) => {
            format!("SELECT indexname::text FROM pg_indexes WHERE tablename = '{table}'")
        }
    };
    t.strings(&sql).await.into_iter().flatten().collect()
}

db_test!(an_existing_schema_gets_the_indexes_its_questions_need, |t| {
    // A schema made elsewhere: relocate's tables, without the index that
    // serves the username suffix search.
    t.relocate(&["db", "init"]).success();
    let mut c = t.connect().await;
    for name in indexes(&t, "auth_user").await.into_iter().filter(|n| n.contains("relocate")) {
        c.execute(&format!("DROP INDEX {name}")).await;
    }
    assert!(!indexes(&t, "auth_user").await.iter().any(|n| n.contains("relocate_lower")));
    let export = users_export(t.dir.path(), 100, 10);
    t.relocate(&["import", "users", export.to_str().unwrap(), "--no-prompt", "--silent"]).success();
    let after = indexes(&t, "auth_user").await;
    assert!(after.iter().any(|n| n == "auth_user_relocate_lower_username"), "{after:?}");
    // Twice: the second import finds the index there and the names taken.
    t.relocate(&["import", "users", export.to_str().unwrap(), "--no-prompt", "--silent"]).success();
    assert_eq!(t.count("auth_user").await, 200);
    assert_eq!(t.i64s("SELECT COUNT(DISTINCT username) FROM auth_user").await[0], 200);
});
