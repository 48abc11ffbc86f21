//! Sentry's RPC retry scenarios (56–58, `test_rpc.py::RpcImportRetryTests`),
//! mapped onto the CLI: a rerun with the same `--import-uuid` is Sentry's
//! retried batch, and two processes importing with the same UUID at once
//! are its racing imports.

use serde_json::{Value, json};

use super::{chunks, first, load, path, summary, with, write};
use crate::db_test;
use crate::support::Target;

const UUID: &str = "0b4f6a39-6a3f-4c55-9d8a-2d3e2f1d9c11";

/// Imports `record` twice under one UUID; after each run there is one row
/// and one chunk recording ordinal 1 and source pk `pk`.
async fn retry_writes_once(t: &Target, record: Value, table: &str) {
    let model = record["model"].as_str().expect("a model").to_string();
    let pk = record["pk"].as_i64().expect("a pk");
    let src = write(t, "one.json", &[record]);
    for run in 0..2 {
        let out = t.relocate(&["import", "global", path(&src), "--import-uuid", UUID, "--no-prompt"]);
        out.success();
        assert_eq!(t.count(table).await, 1, "run {run}");
        let c = chunks(t, &model).await;
        assert_eq!(c.len(), 1, "run {run}");
        assert_eq!(c[0].span(), (1, 1, pk, pk));
        assert!(c[0].min_inserted_pk.is_some() && c[0].min_inserted_pk == c[0].max_inserted_pk);
        assert_eq!(c[0].maps(), (1, 0, 0));
        if run == 1 {
            assert_eq!(summary(&out.stdout, &model)[5], 1, "the retry reports the record as resumed");
        }
    }
}

// Sentry: tests/sentry/backup/test_rpc.py::RpcImportRetryTests::test_good_local_retry_idempotent
db_test!(good_local_retry_idempotent, |t| {
    let option =
        with(&first(&load("backup/single-option.json"), "sentry.option"), 5, json!({"key": "foo", "value": "bar"}));
    retry_writes_once(&t, option, "sentry_option").await;
});

// Sentry: tests/sentry/backup/test_rpc.py::RpcImportRetryTests::test_good_remote_retry_idempotent
db_test!(good_remote_retry_idempotent, |t| {
    let option =
        with(&first(&load("releases/head.json"), "sentry.controloption"), 7, json!({"key": "foo", "value": "bar"}));
    retry_writes_once(&t, option, "sentry_controloption").await;
});

// Sentry: tests/sentry/backup/test_rpc.py::RpcImportRetryTests::test_good_handles_racing_imports
//
// Sentry simulates the race by hiding the first chunk check. Here two real
// processes import the same export with the same UUID at the same time, in
// batches of one chunk. Whichever writes a batch first wins it; the other
// must notice (before writing, or when its chunk collides) and take the
// winner's rows, so that both succeed and nothing is written twice.
db_test!(good_handles_racing_imports, |t| {
    let min = load("backup/user-with-minimum-privileges.json");
    let user = first(&min, "sentry.user");
    let option = first(&min, "sentry.useroption");
    let mut records = Vec::new();
    for i in 1..=60 {
        records.push(with(
            &user,
            i,
            json!({"username": format!("racer-{i}"), "email": format!("racer-{i}@example.com")}),
        ));
    }
    for i in 1..=60 {
        records.push(with(&option, i, json!({"user": i})));
    }
    let src = write(&t, "racers.json", &records);
    // Into an empty database: the two also race to create the schema.
    let args = ["import", "users", path(&src), "--import-uuid", UUID, "--batch-size", "20"];
    let runs = std::thread::scope(|s| {
        let a = s.spawn(|| t.relocate(&args));
        let b = s.spawn(|| t.relocate(&args));
        [a.join().expect("first import"), b.join().expect("second import")]
    });
    for run in &runs {
        run.success();
    }
    assert_eq!(t.count("auth_user").await, 60);
    assert_eq!(
        t.i64s("SELECT COUNT(*) FROM auth_user WHERE username LIKE 'racer-%-%'").await,
        [0],
        "a user was written twice"
    );
    assert_eq!(t.count("sentry_useroption").await, 60);
    assert_eq!(t.count("sentry_useremail").await, 60);
    assert_eq!(t.count("sentry_email").await, 60);
    assert_eq!(t.count("sentry_lostpasswordhash").await, 60);
    assert_eq!(chunks(&t, "sentry.user").await.len(), 3);
    assert_eq!(chunks(&t, "sentry.useroption").await.len(), 3);
    // Between them the two runs account for every record once.
    let mut total = vec![0; 6];
    for run in &runs {
        for (sum, n) in total.iter_mut().zip(summary(&run.stdout, "sentry.user")) {
            *sum += n;
        }
    }
    assert_eq!((total[0], total[5]), (60, 60), "inserted by one run, resumed by the other: {total:?}");
});
