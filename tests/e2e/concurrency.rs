//! Imports with different UUIDs into one database at once: all succeed and
//! every unique column stays unique, the colliding names suffixed (Sentry
//! serializes these with a lock per username and slug).

use std::collections::BTreeSet;

use relocate::synth::{self, Config};

use crate::db_test;

/// Concurrent imports of one export, each under its own UUID.
const IMPORTS: usize = 4;

db_test!(concurrent_imports_with_different_uuids_all_succeed, |t| {
    let export = t.dir.path().join("export.json");
    // Small batches: many transactions, so the imports interleave.
    let generated = synth::write(&Config { records: 3000, ..Config::default() }, &export).unwrap();
    let path = export.to_str().unwrap().to_string();
    // The schema exists first; creating it concurrently is covered elsewhere.
    t.relocate(&["db", "init"]).success();
    let runs: Vec<_> = (0..IMPORTS)
        .map(|_| {
            let args: Vec<String> = ["import", "organizations", &path, "--batch-size", "20", "--db", &t.url]
                .iter()
                .map(|s| s.to_string())
                .collect();
            std::thread::spawn(move || crate::support::relocate(&args.iter().map(String::as_str).collect::<Vec<_>>()))
        })
        .collect();
    for run in runs {
        run.join().unwrap().success();
    }
    let users = generated.count("sentry.user") as usize;
    let names: Vec<String> = t.strings("SELECT lower(username) FROM auth_user").await.into_iter().flatten().collect();
    assert_eq!(names.len(), users * IMPORTS);
    assert_eq!(names.iter().collect::<BTreeSet<_>>().len(), names.len(), "usernames stay unique, ignoring case");
    let orgs = generated.count("sentry.organization") as usize;
    let slugs: Vec<String> = t.strings("SELECT slug FROM sentry_organization").await.into_iter().flatten().collect();
    assert_eq!(slugs.len(), orgs * IMPORTS);
    assert_eq!(slugs.iter().collect::<BTreeSet<_>>().len(), slugs.len(), "slugs stay unique");
    let chunk_imports = t.i64s("SELECT COUNT(DISTINCT import_uuid) FROM sentry_regionimportchunk").await;
    assert_eq!(chunk_imports, [IMPORTS as i64]);
});
