//! The generic plugin over its own model list and the real Sentry exports.

use relocate_plugin_sdk::testing::{TestHost, check_plugin, import_export, plugin_models};
use relocate_plugin_sdk::{Decision, ImportFlags, Scope, Value};
use sentry_models::fixtures;

use crate::__RelocatePlugin as Plugin;

#[test]
fn serves_exactly_the_models_no_dedicated_plugin_serves() {
    check_plugin::<Plugin>().unwrap();
    let names: Vec<String> = plugin_models::<Plugin>().into_iter().map(|m| m.name).collect();
    let expected: Vec<&str> = sentry_models::ALL
        .iter()
        .map(|m| m.name)
        .filter(|name| !sentry_models::SPECIAL.iter().any(|(s, _)| s == name))
        .collect();
    assert_eq!(names, expected);
    assert!(names.iter().any(|n| n == "sentry.dashboard") && !names.iter().any(|n| n == "sentry.apitoken"));
}

#[test]
fn a_record_is_inserted_unchanged() {
    let host = TestHost::new(1);
    // The organization is another plugin's: the fake host maps it as imported.
    let export = r#"[
        {"model": "sentry.organization", "pk": 5, "fields": {"slug": "acme"}},
        {"model": "sentry.environment", "pk": 7, "fields": {"name": "production", "organization_id": 5, "date_added": "2024-05-31T16:24:02.800Z"}}
    ]"#;
    let out = import_export::<Plugin>(&host, Scope::Organization, ImportFlags::default(), export).unwrap();
    assert_eq!(out.len(), 1);
    assert!(matches!(out[0].decision, Decision::Insert { pk: None, .. }), "{:?}", out[0]);
    let rows = host.rows("sentry.environment");
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].get("name"), Some(&Value::from("production")));
    assert_eq!(rows[0].get("organization_id"), Some(&Value::Integer(5)));
    assert_eq!(rows[0].get("date_added"), Some(&Value::from("2024-05-31T16:24:02.800Z")));
}

#[test]
fn every_release_inserts_every_generic_record_in_global_scope() {
    for (name, export) in fixtures::all() {
        let host = TestHost::new(1);
        let out = import_export::<Plugin>(&host, Scope::Global, ImportFlags::default(), &export)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        for r in out {
            assert!(
                matches!(r.decision, Decision::Insert { pk: None, .. }),
                "{name}: {} {}: {:?}",
                r.model,
                r.old_pk,
                r.decision
            );
        }
    }
}

#[test]
fn out_of_scope_models_are_left_out() {
    let export = fixtures::read("releases/head.json");
    for scope in [Scope::User, Scope::Organization, Scope::Config] {
        let host = TestHost::new(1);
        let out = import_export::<Plugin>(&host, scope, ImportFlags::default(), &export).unwrap();
        for r in &out {
            let model = sentry_models::get(&r.model).expect("a generic model");
            let in_scope = match scope {
                Scope::Organization => model.scopes.contains(&Scope::Organization),
                _ => false,
            };
            assert_eq!(
                matches!(r.decision, Decision::Insert { .. }),
                in_scope,
                "{} in {scope}: {:?}",
                r.model,
                r.decision
            );
        }
    }
}
