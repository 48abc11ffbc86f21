//! Sentry's DatabaseResetTests (scenarios 22–25): a Global import of an
//! empty export empties the database; any other scope keeps what is there.

use super::{path, registry, table, write};
use crate::db_test;
use crate::support::{Target, fixture};

/// Every table of a model Sentry relocates (or writes as a side effect),
/// among those this database has, with its row count.
async fn counts(t: &Target) -> Vec<(String, i64)> {
    let mut c = t.connect().await;
    let mut out = Vec::new();
    for model in registry().keys() {
        let table = table(model);
        if c.has_table(&table).await {
            out.push((table.clone(), c.i64s(&format!("SELECT COUNT(*) FROM {table}")).await[0]));
        }
    }
    out
}

// Sentry: tests/sentry/backup/test_imports.py::DatabaseResetTests::test_clears_existing_models_in_global_scope
//
// Adapted: Sentry checks that a Global export afterwards is `[]`; relocate
// does not export, so every table is checked to be empty, and a following
// import to get pks from 1 again (Sentry's sequence reset).
db_test!(clears_existing_models_in_global_scope, |t| {
    let fresh = fixture("sentry/backup/fresh-install.json");
    t.relocate(&["import", "organizations", path(&fresh)]).success();
    assert!(counts(&t).await.iter().any(|(_, n)| *n > 0));
    let empty = write(&t, "empty.json", &[]);
    t.relocate(&["import", "global", path(&empty), "--no-prompt"]).success();
    let after = counts(&t).await;
    assert!(after.len() > 10, "{after:?}");
    for (table, n) in after {
        assert_eq!(n, 0, "{table} after a Global import of []");
    }
    t.relocate(&["import", "organizations", path(&fresh)]).success();
    assert_eq!(t.i64s("SELECT MIN(id) FROM sentry_organization").await, [1]);
    assert_eq!(t.i64s("SELECT MIN(id) FROM auth_user").await, [1]);
});

async fn persists(t: Target, scope: &str) {
    t.relocate(&["import", "global", path(&fixture("sentry/backup/fresh-install.json")), "--no-prompt"]).success();
    let before = counts(&t).await;
    assert!(before.iter().any(|(table, n)| table == "sentry_organization" && *n == 1));
    assert!(before.iter().any(|(table, n)| table == "auth_user" && *n == 2));
    let empty = write(&t, "empty.json", &[]);
    t.relocate(&["import", scope, path(&empty)]).success();
    assert_eq!(counts(&t).await, before, "`import {scope}` of [] changed the database");
}

// Sentry: tests/sentry/backup/test_imports.py::DatabaseResetTests::test_persist_existing_models_in_user_scope
db_test!(persist_existing_models_in_user_scope, |t| { persists(t, "users").await });

// Sentry: tests/sentry/backup/test_imports.py::DatabaseResetTests::test_persist_existing_models_in_config_scope
db_test!(persist_existing_models_in_config_scope, |t| { persists(t, "config").await });

// Sentry: tests/sentry/backup/test_imports.py::DatabaseResetTests::test_persist_existing_models_in_organization_scope
db_test!(persist_existing_models_in_organization_scope, |t| { persists(t, "organizations").await });
