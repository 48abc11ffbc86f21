//! Sentry's CustomImportBehaviorTests (scenarios 50–53): hidden
//! organizations, inviters outside the imported organization, and project
//! ids kept or reassigned.

use serde_json::{Value, json};

use super::{emails, exhaustive_user, first, load, organization, path, with, write};
use crate::db_test;

// Sentry: tests/sentry/backup/test_imports.py::CustomImportBehaviorTests::test_hide_organizations_import_flag
db_test!(hide_organizations_import_flag, |t| {
    let mut records = exhaustive_user(1, "owner", "owner@test.com", false);
    records.extend(exhaustive_user(2, "member", "member@test.com", false));
    records.extend(emails(&records));
    records.extend(organization(1, "test-org", &[(1, 1, "owner"), (2, 2, "member")]));
    let src = write(&t, "org.json", &records);
    t.relocate(&["import", "organizations", path(&src), "--filter-org-slugs", "test-org", "--hide-organizations"])
        .success();
    // OrganizationStatus.RELOCATION_PENDING_APPROVAL
    assert_eq!(t.i64s("SELECT status FROM sentry_organization WHERE slug = 'test-org'").await, [3]);
});

// Sentry: tests/sentry/backup/test_imports.py::CustomImportBehaviorTests::test_organization_member_inviter_id
db_test!(organization_member_inviter_id, |t| {
    let mut records = exhaustive_user(1, "admin", "admin@test.com", true);
    records.extend(exhaustive_user(2, "owner", "owner@test.com", false));
    records.extend(exhaustive_user(3, "member", "member@test.com", false));
    records.extend(emails(&records));
    let mut org = organization(1, "test-org", &[(1, 2, "owner"), (2, 3, "member")]);
    // Everyone was invited by `admin`, who is not in the organization, but
    // one pending invitation by `owner`.
    for (m, email) in [(1, "owner@test.com"), (2, "member@test.com")] {
        org[m]["fields"]["user_email"] = json!(email);
        org[m]["fields"]["inviter_id"] = json!(1);
    }
    let invite = org[2].clone();
    org.push(with(&invite, 3, json!({"user_id": null, "email": "invited-by-admin@test.com", "user_email": null, "inviter_id": 1, "invite_status": 1})));
    org.push(with(&invite, 4, json!({"user_id": null, "email": "invited-by-owner@test.com", "user_email": null, "inviter_id": 2, "invite_status": 1})));
    records.extend(org);
    let src = write(&t, "org.json", &records);
    t.relocate(&["import", "organizations", path(&src), "--filter-org-slugs", "test-org"]).success();

    let org_id = t.i64s("SELECT id FROM sentry_organization WHERE slug = 'test-org'").await[0];
    let member = |cond: &str| {
        format!("SELECT COUNT(*) FROM sentry_organizationmember WHERE organization_id = {org_id} AND {cond}")
    };
    // `owner` and `member` lose their inviter, who was not imported.
    for email in ["owner@test.com", "member@test.com"] {
        assert_eq!(
            t.i64s(&member(&format!("user_email = '{email}' AND email IS NULL AND inviter_id IS NULL"))).await,
            [1],
            "{email}"
        );
    }
    assert_eq!(t.i64s(&member("email = 'invited-by-admin@test.com' AND inviter_id IS NULL")).await, [1]);
    // The invitation by `owner` keeps its inviter, now the imported owner.
    let owner = t.i64s("SELECT id FROM auth_user WHERE username = 'owner'").await[0];
    assert_eq!(t.i64s(&member(&format!("email = 'invited-by-owner@test.com' AND inviter_id = {owner}"))).await, [1]);
    assert_eq!(t.i64s("SELECT COUNT(*) FROM auth_user WHERE username = 'admin'").await, [0]);
});

/// An organization with a team and the projects 2 and 4 of four (1 and 3
/// deleted), from fresh-install.json's records.
fn sparse_projects() -> Vec<Value> {
    let fresh = load("backup/fresh-install.json");
    let mut records: Vec<Value> = fresh
        .iter()
        .filter(|r| {
            [
                "sentry.user",
                "sentry.email",
                "sentry.useremail",
                "sentry.organization",
                "sentry.organizationmember",
                "sentry.team",
            ]
            .contains(&r["model"].as_str().unwrap_or(""))
        })
        .cloned()
        .collect();
    let project = first(&fresh, "sentry.project");
    records.push(with(&project, 2, json!({"name": "Project Bar", "slug": "project-bar"})));
    records.push(with(&project, 4, json!({"name": "Project Qux", "slug": "project-qux"})));
    records
}

// Sentry: tests/sentry/backup/test_imports.py::CustomImportBehaviorTests::test_project_ids_retained_in_global_scope
db_test!(project_ids_retained_in_global_scope, |t| {
    let src = write(&t, "projects.json", &sparse_projects());
    t.relocate(&["import", "global", path(&src), "--no-prompt"]).success();
    // Original ids are kept, so DSNs survive a Global import.
    assert_eq!(t.i64s("SELECT id FROM sentry_project ORDER BY id").await, [2, 4]);
});

// Sentry: tests/sentry/backup/test_imports.py::CustomImportBehaviorTests::test_project_ids_reassigned_in_organization_scope
//
// Sentry's test clears its database, which keeps the sequences past the
// exported ids. Here a Global import of the same export writes projects 2
// and 4 first; the Organization-scope import must then give its projects
// new ids.
db_test!(project_ids_reassigned_in_organization_scope, |t| {
    let src = write(&t, "projects.json", &sparse_projects());
    t.relocate(&["import", "global", path(&src), "--no-prompt"]).success();
    t.relocate(&["import", "organizations", path(&src)]).success();
    let ids = t.i64s("SELECT id FROM sentry_project ORDER BY id").await;
    assert_eq!(ids.len(), 4);
    assert_eq!(&ids[..2], [2, 4]);
    assert!(ids[2..].iter().all(|id| *id != 2 && *id != 4), "{ids:?}");
});
