//! The repository's Sentry exports (`tests/fixtures/sentry/`), for the
//! plugins' native tests. Not compiled into guests.

use std::fs;
use std::path::PathBuf;

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/sentry")
}

/// The text of one fixture, by path under `tests/fixtures/sentry/`
/// (`backup/fresh-install.json`).
///
/// Panics when it is missing: a test cannot run without it.
pub fn read(name: &str) -> String {
    let path = dir().join(name);
    fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

/// Every export fixture (`backup/*.json` and `releases/*.json`) as
/// `(name, text)`, sorted by name.
pub fn all() -> Vec<(String, String)> {
    let mut out = Vec::new();
    for sub in ["backup", "releases"] {
        let entries = fs::read_dir(dir().join(sub)).unwrap_or_else(|e| panic!("list {sub}: {e}"));
        for entry in entries {
            let name = entry.expect("a directory entry").file_name().to_string_lossy().into_owned();
            if name.ends_with(".json") {
                let name = format!("{sub}/{name}");
                let text = read(&name);
                out.push((name, text));
            }
        }
    }
    out.sort();
    out
}

/// Imports every fixture in every scope through plugin `P` and fails on the
/// first record it calls invalid: real exports must all be acceptable.
pub fn assert_every_fixture_imports<P: relocate_plugin_sdk::__private::PluginDef>() {
    use relocate_plugin_sdk::testing::{TestHost, import_export};
    use relocate_plugin_sdk::{Decision, ImportFlags, Scope};
    for (name, export) in all() {
        for scope in [Scope::User, Scope::Organization, Scope::Config, Scope::Global] {
            let host = TestHost::new(1);
            let out = import_export::<P>(&host, scope, ImportFlags::default(), &export)
                .unwrap_or_else(|e| panic!("{name} in {scope}: {e}"));
            for r in out {
                assert!(
                    !matches!(r.decision, Decision::Invalid(_)),
                    "{name} in {scope}: {} {}: {:?}",
                    r.model,
                    r.old_pk,
                    r.decision
                );
            }
        }
    }
}
