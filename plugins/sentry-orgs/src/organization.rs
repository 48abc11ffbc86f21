//! `sentry.organization` and `sentry.organizationmember`: slugs made unique
//! across the instance (spec §5.4), member tokens that collide dropped (§5.5).

use relocate_plugin_sdk::{
    Answers, Decision, Derived, FieldError, HashSet, Model, ModelDesc, Prepared, Query, Record, Result, Session, Value,
};
use sentry_models::naming::{UniqueNames, slugify};
use sentry_models::sentry;

/// `slugify_instance`'s default length, which `Organization.save` uses.
const MAX_SLUG: usize = 30;

/// `OrganizationStatus.RELOCATION_PENDING_APPROVAL`.
const PENDING_APPROVAL: i64 = 3;

/// `OrganizationSlugReservationType.PRIMARY`.
const PRIMARY: i64 = 0;

/// An organization: its slug is normalized, then suffixed until no other
/// organization has it, ignoring case.
pub struct Organization {
    slugs: UniqueNames,
}

impl Model for Organization {
    fn describe() -> ModelDesc {
        sentry::ORGANIZATION.desc()
    }

    fn new(session: &Session) -> Result<Self> {
        Ok(Self { slugs: UniqueNames::new(session, MAX_SLUG) })
    }

    fn prepare(&mut self, session: &Session, record: &mut Record) -> Result<Prepared> {
        let base = base_slug(record.text("slug").unwrap_or_default());
        record.set("slug", base.as_str())?;
        if session.flags().hide_organizations {
            record.set("status", PENDING_APPROVAL)?;
        }
        // An empty base becomes a random one in `resolve`; nothing to ask.
        let taken = if base.is_empty() { Vec::new() } else { self.slugs.bases(&base) };
        Ok(Prepared::ready().with_queries(taken.iter().map(|b| Query::taken(record.model(), "slug", b))))
    }

    fn resolve(&mut self, session: &Session, mut record: Record, answers: &Answers) -> Result<Decision> {
        let base = record.text("slug").unwrap_or_default().to_string();
        let Some(slug) = self.slugs.pick(session, &base, answers.all_taken()) else {
            return Ok(Decision::invalid(FieldError::new("slug", "is taken, and so is every suffixed variant tried")));
        };
        record.set("slug", slug.as_str())?;
        // Sentry's outbox and slug provisioning: the control silo's mapping
        // and PRIMARY reservation, both with the final slug (scenario 5).
        let mut mapping = Derived::new(sentry::ORGANIZATIONMAPPING.shared())
            .parent("organization_id")?
            .set("slug", slug.as_str())?
            .set("name", record.text("name").unwrap_or_default())?
            .set("status", record.get("status").cloned().unwrap_or(Value::Null))?;
        if let Some(created) = record.get("date_added").filter(|v| !v.is_null()) {
            mapping = mapping.set("date_created", created.clone())?;
        } else {
            mapping = mapping.set("date_created", session.started_at())?;
        }
        session.derive(mapping);
        session.derive(
            Derived::new(sentry::ORGANIZATIONSLUGRESERVATION.shared())
                .parent("organization_id")?
                .set("slug", slug)?
                .set("reservation_type", PRIMARY)?
                .set("date_added", session.started_at())?,
        );
        Ok(Decision::insert(record))
    }
}

/// What `Organization.save` makes of an exported slug before suffixing it:
/// lower case, `_` as `-`, then Django's `slugify`, cut to 30 characters,
/// without `-` at either end.
pub fn base_slug(slug: &str) -> String {
    let target = slug.to_lowercase().replace('_', "-");
    let slug: String = slugify(target.trim_matches('-')).chars().take(MAX_SLUG).collect();
    slug.trim_matches('-').to_string()
}

/// A member of an organization.
///
/// `inviter_id` is the host's business (set to null when the inviter was not
/// imported). An invitation token that an existing member already has is
/// dropped, so that the existing invitation keeps working.
pub struct OrganizationMember {
    /// Tokens this import inserted, for a repeat within one batch.
    tokens: HashSet<String>,
}

impl Model for OrganizationMember {
    fn describe() -> ModelDesc {
        sentry::ORGANIZATIONMEMBER.desc()
    }

    fn new(session: &Session) -> Result<Self> {
        Ok(Self { tokens: HashSet::with_hasher(session.hasher()) })
    }

    fn prepare(&mut self, _: &Session, record: &mut Record) -> Result<Prepared> {
        if record.is_null("token") {
            return Ok(Prepared::ready());
        }
        Ok(Prepared::ready().with_query(record.find(&["token"])?))
    }

    fn resolve(&mut self, session: &Session, mut record: Record, answers: &Answers) -> Result<Decision> {
        if let Some(token) = record.text("token").map(str::to_string)
            && (answers.found(0).is_some() || !self.tokens.insert(token))
        {
            record.set("token", Value::Null)?;
        }
        // The member's control-silo mapping, which Sentry's outbox writes.
        let field = |name: &str| record.get(name).cloned().unwrap_or(Value::Null);
        session.derive(
            Derived::new(sentry::ORGANIZATIONMEMBERMAPPING.shared())
                .parent("organizationmember_id")?
                .set("organization_id", field("organization"))?
                .set("role", field("role"))?
                .set("user", field("user_id"))?
                .set("email", field("email"))?
                .set("inviter", field("inviter_id"))?
                .set("invite_status", field("invite_status"))?
                .set(
                    "date_added",
                    match field("date_added") {
                        Value::Null => Value::Text(session.started_at().to_string()),
                        v => v,
                    },
                )?,
        );
        Ok(Decision::insert(record))
    }
}

#[cfg(test)]
mod tests {
    use relocate_plugin_sdk::testing::{InputRecord, TestHost, record};
    use relocate_plugin_sdk::{ImportFlags, Scope};

    use super::*;

    fn org(pk: i64, slug: &str) -> InputRecord {
        record::<Organization>(pk)
            .set("name", "Testing")
            .set("slug", slug)
            .set("status", 0)
            .set("date_added", "2023-06-22T22:54:28.773Z")
            .set("is_test", false)
            .build()
    }

    fn field<'a>(d: &'a Decision, desc: &ModelDesc, name: &str) -> &'a Value {
        match d {
            Decision::Insert { values, .. } => &values[desc.column_index(name).expect("field")],
            other => panic!("expected an insert, got {other:?}"),
        }
    }

    fn slug(d: &Decision) -> String {
        field(d, &Organization::describe(), "slug").as_text().expect("text").to_string()
    }

    #[test]
    fn slugs_are_normalized_like_sentry() {
        assert_eq!(base_slug("Testing"), "testing");
        assert_eq!(base_slug("--my_org--"), "my-org");
        assert_eq!(base_slug("My Org!"), "my-org");
        assert_eq!(base_slug("Ünïcode Org"), "unicode-org");
        assert_eq!(base_slug(&"a".repeat(40)), "a".repeat(30));
        assert_eq!(base_slug(&format!("{}-b", "a".repeat(29))), "a".repeat(29));
    }

    #[test]
    fn a_free_slug_is_kept_after_normalizing() {
        let host = TestHost::new(1);
        let out = host
            .session::<Organization>(Scope::Organization, ImportFlags::default())
            .run(vec![org(1, "My_Org")])
            .unwrap();
        assert_eq!(slug(&out[0]), "my-org");
        assert_eq!(host.mapping("sentry.organization", 1).and_then(|m| m.slug).as_deref(), Some("my-org"));
    }

    #[test]
    fn a_taken_slug_gets_a_suffix_ignoring_case() {
        let host = TestHost::new(1);
        host.insert_row("sentry.organization", 9, &[("slug", "Testing".into())]);
        let out = host
            .session::<Organization>(Scope::Organization, ImportFlags::default())
            .run(vec![org(1, "testing")])
            .unwrap();
        let s = slug(&out[0]);
        assert!(s.starts_with("testing-") && s.len() == "testing-xx".len(), "{s}");
    }

    #[test]
    fn two_organizations_of_one_batch_with_the_same_slug_are_told_apart() {
        // backup/duplicate-username-and-organization-slug.json
        let host = TestHost::new(1);
        let out = host
            .session::<Organization>(Scope::Organization, ImportFlags::default())
            .run(vec![org(1, "testing"), org(2, "testing")])
            .unwrap();
        assert_eq!(slug(&out[0]), "testing");
        assert!(slug(&out[1]).starts_with("testing-"));
    }

    #[test]
    fn a_numeric_slug_gets_a_suffix() {
        let host = TestHost::new(1);
        let out = host
            .session::<Organization>(Scope::Organization, ImportFlags::default())
            .run(vec![org(1, "1234")])
            .unwrap();
        assert!(slug(&out[0]).starts_with("1234-"));
    }

    #[test]
    fn an_empty_slug_becomes_random() {
        let host = TestHost::new(1);
        let out =
            host.session::<Organization>(Scope::Organization, ImportFlags::default()).run(vec![org(1, "!!!")]).unwrap();
        let s = slug(&out[0]);
        assert!(s.len() == 12 && s.chars().all(|c| c.is_ascii_hexdigit()), "{s}");
    }

    #[test]
    fn hide_organizations_marks_them_pending_approval() {
        let host = TestHost::new(1);
        let flags = ImportFlags { hide_organizations: true, ..ImportFlags::default() };
        let out = host.session::<Organization>(Scope::Organization, flags).run(vec![org(1, "testing")]).unwrap();
        assert_eq!(field(&out[0], &Organization::describe(), "status"), &Value::Integer(3));
    }

    fn member(pk: i64, token: Option<&str>) -> InputRecord {
        record::<OrganizationMember>(pk)
            .fk("organization", 1, 10, relocate_plugin_sdk::ImportKind::Inserted)
            .set("role", "member")
            .set("date_added", "2023-06-22T22:59:55.561Z")
            .set("has_global_access", true)
            .set("user_is_active", true)
            .set("token", token)
            .build()
    }

    #[test]
    fn a_colliding_member_token_is_dropped() {
        let host = TestHost::new(1);
        host.insert_row("sentry.organizationmember", 4, &[("token", "abc".into())]);
        let desc = OrganizationMember::describe();
        let mut s = host.session::<OrganizationMember>(Scope::Organization, ImportFlags::default());
        let out = s
            .run(vec![member(1, Some("abc")), member(2, Some("def")), member(3, Some("def")), member(4, None)])
            .unwrap();
        assert_eq!(field(&out[0], &desc, "token"), &Value::Null);
        assert_eq!(field(&out[1], &desc, "token"), &Value::from("def"));
        assert_eq!(field(&out[2], &desc, "token"), &Value::Null);
        assert_eq!(field(&out[3], &desc, "token"), &Value::Null);
    }
}
