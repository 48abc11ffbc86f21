//! Sentry's BatchingTests (scenarios 54–55): records are chunked in runs of
//! 20 (`MAX_BATCH_SIZE`) per model, whatever `--batch-size` says, and keys
//! from a later chunk still resolve.

use serde_json::{Value, json};

use super::{chunks, first, load, path, write};
use crate::db_test;
use crate::support::Target;

/// Sentry's `MAX_BATCH_SIZE`.
const BATCH: i64 = 20;

/// `n` users (pks 101…) with one option each (pks 1001…), shaped as in
/// Sentry's `import_n_users_with_options`, from the minimum-privileges
/// fixture's user and option records.
fn users_with_options(n: i64) -> Vec<Value> {
    let min = load("backup/user-with-minimum-privileges.json");
    let (user, option) = (first(&min, "sentry.user"), first(&min, "sentry.useroption"));
    let mut users = Vec::new();
    let mut options = Vec::new();
    for i in 1..=n {
        let mut u = user.clone();
        u["pk"] = json!(i + 100);
        for (k, v) in [
            ("password", json!("fake")),
            ("username", json!(format!("user-{i}"))),
            ("name", json!(format!("user-{i}"))),
            ("email", json!(format!("{i}@example.com"))),
        ] {
            u["fields"][k] = v;
        }
        users.push(u);
        let mut o = option.clone();
        o["pk"] = json!(i + 1000);
        o["fields"]["user"] = json!(i + 100);
        o["fields"]["key"] = json!(format!("key-{i}"));
        o["fields"]["value"] = json!(format!("user-{i}"));
        options.push(o);
    }
    users.extend(options);
    users
}

/// The user whose option is `key-{target}` is `user-{target}`.
async fn option_points_at_its_user(t: &Target, target: i64) {
    let names = t
        .strings(&format!(
            "SELECT u.name FROM sentry_useroption o JOIN auth_user u ON u.id = o.user_id WHERE o.key = 'key-{target}'"
        ))
        .await;
    assert_eq!(names, [Some(format!("user-{target}"))]);
}

// Sentry: tests/sentry/backup/test_imports.py::BatchingTests::test_exact_multiple_of_batch_size
db_test!(exact_multiple_of_batch_size, |t| {
    let src = write(&t, "users.json", &users_with_options(2 * BATCH));
    // Batches of exactly one chunk each, as Sentry's.
    t.relocate(&["import", "users", path(&src), "--batch-size", "20"]).success();
    let users: Vec<_> = chunks(&t, "sentry.user").await.iter().map(|c| c.span()).collect();
    assert_eq!(users, [(1, BATCH, 101, BATCH + 100), (BATCH + 1, 2 * BATCH, BATCH + 101, 2 * BATCH + 100)]);
    let options: Vec<_> = chunks(&t, "sentry.useroption").await.iter().map(|c| c.span()).collect();
    assert_eq!(options, [(1, BATCH, 1001, BATCH + 1000), (BATCH + 1, 2 * BATCH, BATCH + 1001, 2 * BATCH + 1000)]);
    option_points_at_its_user(&t, BATCH + BATCH / 2).await;
});

// Sentry: tests/sentry/backup/test_imports.py::BatchingTests::test_one_more_than_batch_size
db_test!(one_more_than_batch_size, |t| {
    let src = write(&t, "users.json", &users_with_options(BATCH + 1));
    // One batch of 21 (the default batch size is larger) still writes
    // Sentry's two chunks.
    t.relocate(&["import", "users", path(&src)]).success();
    let users: Vec<_> = chunks(&t, "sentry.user").await.iter().map(|c| c.span()).collect();
    assert_eq!(users, [(1, BATCH, 101, BATCH + 100), (BATCH + 1, BATCH + 1, BATCH + 101, BATCH + 101)]);
    let options: Vec<_> = chunks(&t, "sentry.useroption").await.iter().map(|c| c.span()).collect();
    assert_eq!(options, [(1, BATCH, 1001, BATCH + 1000), (BATCH + 1, BATCH + 1, BATCH + 1001, BATCH + 1001)]);
    option_points_at_its_user(&t, BATCH + 1).await;
});

// The same with `--batch-size 7`: rounded up to whole chunks, so the chunk
// rows are exactly Sentry's.
db_test!(batch_size_is_rounded_to_whole_chunks, |t| {
    let src = write(&t, "users.json", &users_with_options(2 * BATCH + 1));
    t.relocate(&["import", "users", path(&src), "--batch-size", "7"]).success();
    let users: Vec<_> = chunks(&t, "sentry.user").await.iter().map(|c| (c.min_ordinal, c.max_ordinal)).collect();
    assert_eq!(users, [(1, BATCH), (BATCH + 1, 2 * BATCH), (2 * BATCH + 1, 2 * BATCH + 1)]);
    option_points_at_its_user(&t, 2 * BATCH + 1).await;
});
