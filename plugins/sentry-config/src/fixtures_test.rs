//! The plugin over the repository's real Sentry exports.

use relocate_plugin_sdk::testing::{TestHost, import_export};
use relocate_plugin_sdk::{Decision, ImportFlags, ImportKind, Scope};
use sentry_models::fixtures;

use crate::__RelocatePlugin as Plugin;

#[test]
fn fresh_install_imports_every_config_record() {
    let host = TestHost::new(1);
    let out = import_export::<Plugin>(
        &host,
        Scope::Config,
        ImportFlags::default(),
        &fixtures::read("backup/fresh-install.json"),
    )
    .unwrap();
    assert!(out.len() >= 8, "{out:?}");
    for r in &out {
        assert!(matches!(r.decision, Decision::Insert { .. }), "{} {}: {:?}", r.model, r.old_pk, r.decision);
    }
}

#[test]
fn importing_the_same_configs_twice_keeps_or_overwrites_them() {
    let export = fixtures::read("backup/fresh-install.json");
    for (overwrite, kind) in [(false, ImportKind::Existing), (true, ImportKind::Overwrite)] {
        let host = TestHost::new(1);
        import_export::<Plugin>(&host, Scope::Config, ImportFlags::default(), &export).unwrap();
        let options = host.rows("sentry.option").len();
        let flags = ImportFlags { overwrite_configs: overwrite, ..ImportFlags::default() };
        let again = import_export::<Plugin>(&host, Scope::Config, flags, &export).unwrap();
        assert_eq!(host.rows("sentry.option").len(), options, "no duplicates");
        for model in ["sentry.option", "sentry.relay", "sentry.relayusage", "sentry.userrole"] {
            for r in again.iter().filter(|r| r.model == model) {
                assert_eq!(host.mapping(model, r.old_pk).map(|m| m.kind), Some(kind), "{model} {}", r.old_pk);
            }
        }
    }
}

#[test]
fn every_fixture_imports_in_every_scope_without_errors() {
    sentry_models::fixtures::assert_every_fixture_imports::<Plugin>();
}
