//! `sentry.orgauthtoken`: an organization's auth token, of which Sentry
//! keeps only the SHA-256 digest (spec §5.6, scenario 38).
//!
//! A token whose digest is empty or already some row's gets a new token, as
//! Sentry's `normalize_before_relocation_import` does: a `sntrys_` token for
//! the organization's final slug, stored as its digest and last 4
//! characters. The plaintext is thrown away, as Sentry throws it away. An
//! organization whose slug is unknown gets no token and the record is
//! skipped, as Sentry drops it when the slug lookup fails.

use relocate_plugin_sdk::{Answers, Decision, HashSet, Model, ModelDesc, Prepared, Record, Result, Session};
use sentry_models::{sentry, tokens};

pub struct OrgAuthToken {
    /// Digests this import wrote, which later records collide with too.
    given: HashSet<String>,
}

impl Model for OrgAuthToken {
    fn describe() -> ModelDesc {
        sentry::ORGAUTHTOKEN.desc()
    }

    fn new(session: &Session) -> Result<Self> {
        Ok(Self { given: HashSet::with_hasher(session.hasher()) })
    }

    fn prepare(&mut self, _: &Session, record: &mut Record) -> Result<Prepared> {
        if record.text("token_hashed").unwrap_or_default().is_empty() {
            return Ok(Prepared::ready());
        }
        Ok(Prepared::ready().with_query(record.find(&["token_hashed"])?))
    }

    fn resolve(&mut self, session: &Session, mut record: Record, answers: &Answers) -> Result<Decision> {
        let hashed = record.text("token_hashed").unwrap_or_default();
        if hashed.is_empty() || answers.found(0).is_some() || self.given.contains(hashed) {
            let slug = record
                .ref_old_pk("organization_id")
                .and_then(|old| session.mapping_of(sentry::ORGANIZATION.name, old))
                .and_then(|m| m.slug);
            let Some(slug) = slug else {
                return Ok(Decision::skip("its organization's slug is unknown, so no new token can be minted for it"));
            };
            let token = tokens::org_auth_token(session, &slug);
            record.set("token_hashed", tokens::sha256_hex(&token))?;
            record.set("token_last_characters", tokens::last_characters(&token, 4))?;
        }
        self.given.insert(record.text("token_hashed").unwrap_or_default().to_string());
        Ok(Decision::insert(record))
    }
}

#[cfg(test)]
mod tests {
    use relocate_plugin_sdk::testing::{InputRecord, TestHost, record};
    use relocate_plugin_sdk::{ImportFlags, ImportKind, Scope};

    use super::*;
    use crate::organization::Organization;

    /// Imports organization 1 as `test-org`, so that the pk map knows its slug.
    fn host_with_org() -> TestHost {
        let host = TestHost::new(1);
        let org = record::<Organization>(1)
            .set("name", "Test Org")
            .set("slug", "test-org")
            .set("status", 0)
            .set("date_added", "2024-05-31T16:24:02.800Z")
            .set("is_test", false)
            .build();
        let out = host.session::<Organization>(Scope::Organization, ImportFlags::default()).run(vec![org]).unwrap();
        assert!(matches!(out[0], Decision::Insert { .. }), "{:?}", out[0]);
        host
    }

    fn token(pk: i64, hashed: &str) -> InputRecord {
        let new_org = 1001;
        record::<OrgAuthToken>(pk)
            .fk("organization_id", 1, new_org, ImportKind::Inserted)
            .set("name", "token 1 for test-org")
            .set("scope_list", "['org:ci']")
            .set("token_hashed", hashed)
            .set("token_last_characters", "xyz1")
            .build()
    }

    fn text(d: &Decision, field: &str) -> String {
        match d {
            Decision::Insert { values, .. } => values[OrgAuthToken::describe().column_index(field).expect("a column")]
                .as_text()
                .expect("text")
                .to_string(),
            other => panic!("expected an insert, got {other:?}"),
        }
    }

    #[test]
    fn a_fresh_digest_is_kept() {
        let host = host_with_org();
        let out = host
            .session::<OrgAuthToken>(Scope::Organization, ImportFlags::default())
            .run(vec![token(1, "ABCDEFtest-org")])
            .unwrap();
        assert_eq!(text(&out[0], "token_hashed"), "ABCDEFtest-org");
        assert_eq!(text(&out[0], "token_last_characters"), "xyz1");
    }

    #[test]
    fn a_colliding_or_empty_digest_gets_a_new_token() {
        let host = host_with_org();
        host.insert_row("sentry.orgauthtoken", 7, &[("token_hashed", "ABCDEFtest-org".into())]);
        let mut session = host.session::<OrgAuthToken>(Scope::Organization, ImportFlags::default());
        let out = session.run(vec![token(1, "ABCDEFtest-org"), token(2, "")]).unwrap();
        for d in &out {
            let hashed = text(d, "token_hashed");
            assert!(hashed.len() == 64 && hashed.bytes().all(|b| b.is_ascii_hexdigit()), "{hashed}");
            assert_ne!(text(d, "token_last_characters"), "xyz1");
            assert_eq!(text(d, "token_last_characters").chars().count(), 4);
        }
        assert_ne!(text(&out[0], "token_hashed"), text(&out[1], "token_hashed"));
        assert_eq!(
            host.rows("sentry.orgauthtoken")[0].text("token_hashed"),
            Some("ABCDEFtest-org"),
            "the original is untouched"
        );
    }

    #[test]
    fn a_repeat_within_one_import_gets_a_new_token() {
        let host = host_with_org();
        let out = host
            .session::<OrgAuthToken>(Scope::Organization, ImportFlags::default())
            .run(vec![token(1, "same"), token(2, "same")])
            .unwrap();
        assert_eq!(text(&out[0], "token_hashed"), "same");
        assert_ne!(text(&out[1], "token_hashed"), "same");
    }

    #[test]
    fn the_new_digest_is_the_sha256_of_an_org_token_for_the_slug() {
        let host = host_with_org();
        host.insert_row("sentry.orgauthtoken", 7, &[("token_hashed", "ABCDEFtest-org".into())]);
        let mut session = host.session::<OrgAuthToken>(Scope::Organization, ImportFlags::default());
        let out = session.run(vec![token(1, "ABCDEFtest-org")]).unwrap();
        // Replaying the generator from the seed mints the same token.
        let _replay = host_with_org();
        let expected = tokens::org_auth_token(session.session(), "test-org");
        assert!(expected.starts_with("sntrys_"));
        assert_eq!(text(&out[0], "token_hashed"), tokens::sha256_hex(&expected));
        assert_eq!(text(&out[0], "token_last_characters"), tokens::last_characters(&expected, 4));
    }

    #[test]
    fn an_organization_without_a_known_slug_gets_no_token() {
        let host = TestHost::new(1);
        host.map("sentry.organization", 1, 1001, ImportKind::Inserted);
        let out =
            host.session::<OrgAuthToken>(Scope::Organization, ImportFlags::default()).run(vec![token(1, "")]).unwrap();
        assert!(matches!(out[0], Decision::Skip(_)), "{:?}", out[0]);
        assert!(host.rows("sentry.orgauthtoken").is_empty());
    }
}
