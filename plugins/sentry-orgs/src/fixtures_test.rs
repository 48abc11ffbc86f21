//! The plugin over the repository's real Sentry exports.

use relocate_plugin_sdk::testing::{Imported, TestHost, import_export};
use relocate_plugin_sdk::{Decision, ImportFlags, Scope, Value};
use sentry_models::fixtures;

use crate::__RelocatePlugin as Plugin;

fn of<'a>(out: &'a [Imported], model: &str) -> Vec<&'a Imported> {
    out.iter().filter(|i| i.model == model).collect()
}

#[test]
fn fresh_install_imports_every_organization_record() {
    let host = TestHost::new(1);
    let out = import_export::<Plugin>(
        &host,
        Scope::Organization,
        ImportFlags::default(),
        &fixtures::read("backup/fresh-install.json"),
    )
    .unwrap();
    let models = [
        "sentry.organization",
        "sentry.organizationmember",
        "sentry.team",
        "sentry.organizationmemberteam",
        "sentry.project",
        "sentry.projectkey",
        "sentry.projectoption",
        "sentry.projectteam",
        "sentry.rule",
    ];
    for model in models {
        let records = of(&out, model);
        assert!(!records.is_empty(), "{model}");
        for r in records {
            assert!(matches!(r.decision, Decision::Insert { .. }), "{model} {}: {:?}", r.old_pk, r.decision);
        }
    }
    assert_eq!(host.rows("sentry.organization")[0].text("slug"), Some("testing"));
}

#[test]
fn duplicate_slugs_in_one_file_are_suffixed() {
    let host = TestHost::new(1);
    let export = fixtures::read("backup/duplicate-username-and-organization-slug.json");
    let out = import_export::<Plugin>(&host, Scope::Organization, ImportFlags::default(), &export).unwrap();
    assert_eq!(of(&out, "sentry.organization").len(), 2);
    let slugs: Vec<String> =
        host.rows("sentry.organization").iter().map(|r| r.text("slug").expect("slug").to_string()).collect();
    assert_eq!(slugs[0], "testing");
    assert!(slugs[1].starts_with("testing-") && slugs[1].len() == "testing-xx".len(), "{slugs:?}");
}

#[test]
fn hidden_organizations_wait_for_approval() {
    let host = TestHost::new(1);
    let flags = ImportFlags { hide_organizations: true, ..ImportFlags::default() };
    import_export::<Plugin>(&host, Scope::Organization, flags, &fixtures::read("backup/org-and-project.json")).unwrap();
    assert_eq!(host.rows("sentry.organization")[0].get("status"), Some(&Value::Integer(3)));
}

#[test]
fn project_ids_survive_only_a_global_import() {
    let export = fixtures::read("backup/fresh-install.json");
    let host = TestHost::new(1);
    let out = import_export::<Plugin>(&host, Scope::Global, ImportFlags::default(), &export).unwrap();
    let project = of(&out, "sentry.project")[0];
    assert!(matches!(project.decision, Decision::Insert { pk: Some(pk), .. } if pk == project.old_pk));

    let host = TestHost::new(1);
    let out = import_export::<Plugin>(&host, Scope::Organization, ImportFlags::default(), &export).unwrap();
    assert!(matches!(of(&out, "sentry.project")[0].decision, Decision::Insert { pk: None, .. }));
}

#[test]
fn every_fixture_imports_in_every_scope_without_errors() {
    sentry_models::fixtures::assert_every_fixture_imports::<Plugin>();
}

#[test]
fn importing_a_release_twice_keeps_its_unique_values_unique() {
    let export = fixtures::read("releases/24.7.0.json");
    let host = TestHost::new(1);
    for _ in 0..2 {
        import_export::<Plugin>(&host, Scope::Organization, ImportFlags::default(), &export).unwrap();
    }
    let unique = [
        ("sentry.organization", "slug"),
        ("sentry.orgauthtoken", "token_hashed"),
        ("sentry.monitor", "guid"),
        ("sentry.projectkey", "public_key"),
        ("sentry.projectkey", "secret_key"),
    ];
    for (model, field) in unique {
        let values: Vec<String> = host.rows(model).iter().filter_map(|r| r.text(field)).map(str::to_string).collect();
        let distinct: std::collections::BTreeSet<&String> = values.iter().collect();
        assert!(values.len() >= 2, "{model}: {values:?}");
        assert_eq!(distinct.len(), values.len(), "{model}.{field} repeats: {values:?}");
    }
    // The first import keeps the exported token digest; the second mints one.
    let tokens: Vec<String> =
        host.rows("sentry.orgauthtoken").iter().filter_map(|r| r.text("token_hashed")).map(str::to_string).collect();
    assert_eq!(tokens[0], "ABCDEFtest-org");
    assert_eq!(tokens[1].len(), 64);
}
