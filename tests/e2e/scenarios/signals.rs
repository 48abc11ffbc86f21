//! Sentry's SignalingTests (scenarios 15–17): the rows Sentry's signals and
//! outboxes write along with users and organizations, and nothing twice.

use serde_json::{Value, json};

use super::{emails, exhaustive_user, first, load, organization, path, with, write};
use crate::db_test;
use crate::support::Target;

// Sentry: tests/sentry/backup/test_imports.py::SignalingTests::test_import_signaling_user
db_test!(import_signaling_user, |t| {
    let mut records = exhaustive_user(1, "user", "me@example.com", false);
    records.extend(emails(&records));
    let src = write(&t, "user.json", &records);
    t.relocate(&["import", "users", path(&src)]).success();
    assert_eq!(t.count("auth_user").await, 1);
    assert_eq!(t.i64s("SELECT COUNT(*) FROM auth_user WHERE email = 'me@example.com'").await, [1]);
    // The signal-made primary address and the exported one are one row.
    assert_eq!(t.count("sentry_useremail").await, 1);
    assert_eq!(t.i64s("SELECT COUNT(*) FROM sentry_useremail WHERE email = 'me@example.com'").await, [1]);
    assert_eq!(t.count("sentry_email").await, 1);
    assert_eq!(t.i64s("SELECT COUNT(*) FROM sentry_email WHERE email = 'me@example.com'").await, [1]);
});

/// `create_exhaustive_organization("some-org", owner, invited, [member])`:
/// three users and members, one project with its key and its
/// `sentry:option-epoch` option (records from fresh-install.json).
fn some_org() -> Vec<Value> {
    let mut records = Vec::new();
    for (pk, name) in [(1, "owner"), (2, "invited"), (3, "member")] {
        records.extend(exhaustive_user(pk, name, &format!("{name}@example.com"), false));
    }
    records.extend(emails(&records));
    let mut org = organization(1, "some-org", &[(1, 1, "owner"), (2, 2, "member"), (3, 3, "member")]);
    org[2]["fields"]["inviter_id"] = json!(1);
    records.extend(org);
    let fresh = load("backup/fresh-install.json");
    records.push(with(
        &first(&fresh, "sentry.project"),
        1,
        json!({"name": "project-some-org", "slug": "project-some-org"}),
    ));
    records.push(first(&fresh, "sentry.projectkey"));
    records.extend(
        fresh
            .iter()
            .filter(|r| r["model"] == "sentry.projectoption" && r["fields"]["key"] == "sentry:option-epoch")
            .cloned(),
    );
    records
}

async fn signaling_organization(t: Target) {
    let src = write(&t, "org.json", &some_org());
    t.relocate(&["import", "organizations", path(&src)]).success();
    let orgs = t.i64s("SELECT id FROM sentry_organization").await;
    assert_eq!(orgs.len(), 1);
    let org = orgs[0];
    assert_eq!(t.strings("SELECT slug FROM sentry_organization").await, [Some("some-org".to_string())]);
    assert_eq!(t.count("sentry_organizationmember").await, 3);
    assert_eq!(t.count("sentry_project").await, 1);
    assert_eq!(t.i64s("SELECT COUNT(*) FROM sentry_project WHERE name = 'project-some-org'").await, [1]);
    assert_eq!(t.count("sentry_projectkey").await, 1);
    assert_eq!(t.count("sentry_projectoptions").await, 1);
    assert_eq!(t.i64s("SELECT COUNT(*) FROM sentry_projectoptions WHERE key = 'sentry:option-epoch'").await, [1]);
    let reservation = format!(
        "SELECT COUNT(*) FROM sentry_organizationslugreservation WHERE organization_id = {org} AND slug = 'some-org' AND reservation_type = 0"
    );
    assert_eq!(t.i64s(&reservation).await, [1]);
    assert_eq!(t.count("sentry_organizationmapping").await, 1);
    assert_eq!(
        t.i64s(&format!(
            "SELECT COUNT(*) FROM sentry_organizationmapping WHERE organization_id = {org} AND slug = 'some-org'"
        ))
        .await,
        [1]
    );
    assert_eq!(t.count("sentry_organizationmembermapping").await, 3);
}

// Sentry: tests/sentry/backup/test_imports.py::SignalingTests::test_import_signaling_organization
db_test!(import_signaling_organization, |t| { signaling_organization(t).await });

// Sentry: tests/sentry/backup/test_imports.py::SignalingTests::test_import_signaling_organization_with_control_provisioning_option
//
// Adapted: the option only moves slug provisioning to the control silo;
// relocate has one database and one way of writing the mapping and the
// reservation, so the outcome is checked on that path.
db_test!(import_signaling_organization_with_control_provisioning_option, |t| { signaling_organization(t).await });
