//! The plugin over the repository's real Sentry exports.

use relocate_plugin_sdk::testing::{Imported, TestHost, import_export};
use relocate_plugin_sdk::{Decision, ImportFlags, Scope, Value};
use sentry_models::fixtures;

use crate::__RelocatePlugin as Plugin;

fn of<'a>(out: &'a [Imported], model: &str) -> Vec<&'a Imported> {
    out.iter().filter(|i| i.model == model).collect()
}

fn username(i: &Imported) -> String {
    let desc = sentry_models::sentry::USER.desc();
    match &i.decision {
        Decision::Insert { values, .. } => {
            values[desc.column_index("username").expect("username")].as_text().expect("text").into()
        }
        other => panic!("expected an insert, got {other:?}"),
    }
}

#[test]
fn fresh_install_imports_every_user_record_in_global_scope() {
    let host = TestHost::new(1);
    let out = import_export::<Plugin>(
        &host,
        Scope::Global,
        ImportFlags::default(),
        &fixtures::read("backup/fresh-install.json"),
    )
    .unwrap();
    for model in ["sentry.user", "sentry.email", "sentry.useremail", "sentry.authenticator"] {
        let records = of(&out, model);
        assert!(!records.is_empty(), "{model}");
        for r in records {
            assert!(matches!(r.decision, Decision::Insert { .. }), "{model} {}: {:?}", r.old_pk, r.decision);
        }
    }
    // In the global scope a claimed user keeps its password.
    let admin = &host.rows("sentry.user")[0];
    assert!(admin.text("password").is_some_and(|p| p.starts_with("pbkdf2_sha256$")));
}

#[test]
fn duplicate_usernames_in_one_file_are_renamed() {
    let host = TestHost::new(1);
    let export = fixtures::read("backup/duplicate-username-and-organization-slug.json");
    let out = import_export::<Plugin>(&host, Scope::User, ImportFlags::default(), &export).unwrap();
    let users = of(&out, "sentry.user");
    assert_eq!(username(users[0]), "testing@example.com");
    assert!(username(users[1]).starts_with("testing@example.com-"));
    assert!(of(&out, "sentry.useremail").iter().all(|r| matches!(r.decision, Decision::Insert { .. })));
    // One address for both users.
    let emails = of(&out, "sentry.email");
    assert_eq!(emails.len(), 1);
}

#[test]
fn merging_into_an_existing_user_drops_what_hangs_off_it() {
    let host = TestHost::new(1);
    host.insert_row("sentry.user", 50, &[("username", Value::from("testing@example.com"))]);
    let flags = ImportFlags { merge_users: true, ..ImportFlags::default() };
    let export = fixtures::read("backup/duplicate-username-and-organization-slug.json");
    let out = import_export::<Plugin>(&host, Scope::User, flags, &export).unwrap();
    for user in of(&out, "sentry.user") {
        assert_eq!(user.decision, Decision::Reuse(50));
    }
    for email in of(&out, "sentry.useremail") {
        assert!(matches!(&email.decision, Decision::Skip(reason) if reason.contains("merged")), "{:?}", email.decision);
    }
}

#[test]
fn a_user_without_username_takes_the_email() {
    let host = TestHost::new(1);
    let out = import_export::<Plugin>(
        &host,
        Scope::Global,
        ImportFlags::default(),
        &fixtures::read("backup/invalid-user.json"),
    )
    .unwrap();
    assert_eq!(username(&out[0]), "maximum@example.com");
}

#[test]
fn global_only_models_are_left_out_of_a_user_import() {
    let host = TestHost::new(1);
    let export = fixtures::read("backup/user-with-maximum-privileges.json");
    let out = import_export::<Plugin>(&host, Scope::User, ImportFlags::default(), &export).unwrap();
    for model in ["sentry.authenticator", "sentry.userip", "sentry.userpermission"] {
        assert!(of(&out, model).iter().all(|r| matches!(r.decision, Decision::Skip(_))), "{model}");
    }
    assert!(of(&out, "sentry.useroption").iter().all(|r| matches!(r.decision, Decision::Insert { .. })));
}

#[test]
fn every_fixture_imports_in_every_scope_without_errors() {
    sentry_models::fixtures::assert_every_fixture_imports::<Plugin>();
}
