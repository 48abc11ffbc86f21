//! The first-party plugin for Sentry's API access: applications (OAuth
//! clients), users' authorizations of them ([`apiauthorization`]) and API
//! tokens ([`apitoken`]).
//!
//! `sentry.apiapplication` is in the global scope only, which starts from
//! empty tables, so it is a plain insert. Authorizations and tokens are in
//! the Config or the Global scope, record by record, and tokens must stay
//! unique across the instance.

use relocate_plugin_sdk::{Model, ModelDesc, Result, Session, register_plugin};

pub mod apiauthorization;
pub mod apitoken;

register_plugin!("sentry-apps", [ApiApplication, apiauthorization::ApiAuthorization, apitoken::ApiToken]);

/// An OAuth application (`sentry.apiapplication`), owned by a user.
pub struct ApiApplication;

impl Model for ApiApplication {
    fn describe() -> ModelDesc {
        sentry_models::sentry::APIAPPLICATION.desc()
    }

    fn new(_: &Session) -> Result<Self> {
        Ok(Self)
    }
}

#[cfg(test)]
mod tests {
    use relocate_plugin_sdk::testing::{TestHost, check_plugin, record};
    use relocate_plugin_sdk::{Decision, ImportFlags, ImportKind, Scope};

    use super::*;

    #[test]
    fn every_fixture_imports_in_every_scope_without_errors() {
        sentry_models::fixtures::assert_every_fixture_imports::<__RelocatePlugin>();
    }

    #[test]
    fn descriptions_are_valid_and_match_the_special_list() {
        check_plugin::<__RelocatePlugin>().unwrap();
        let mut names: Vec<String> =
            relocate_plugin_sdk::testing::plugin_models::<__RelocatePlugin>().into_iter().map(|m| m.name).collect();
        names.sort();
        assert_eq!(names, sentry_models::special_models_of("sentry-apps"));
    }

    #[test]
    fn a_release_imports_application_tokens_only_in_global_scope() {
        let export = sentry_models::fixtures::read("releases/24.7.0.json");
        let imported = |scope| {
            let host = TestHost::new(1);
            relocate_plugin_sdk::testing::import_export::<__RelocatePlugin>(
                &host,
                scope,
                ImportFlags::default(),
                &export,
            )
            .unwrap();
            (host.rows("sentry.apitoken").len(), host.rows("sentry.apiauthorization").len())
        };
        // Tokens 1 and 2 and authorization 1 belong to an application.
        assert_eq!(imported(Scope::Global), (3, 2));
        assert_eq!(imported(Scope::Config), (1, 1));
        assert_eq!(imported(Scope::Organization), (0, 0));
        assert_eq!(imported(Scope::User), (0, 0));
    }

    #[test]
    fn an_application_is_inserted_as_is() {
        let host = TestHost::new(1);
        let app = record::<ApiApplication>(1)
            .fk("owner", 1, 5, ImportKind::Inserted)
            .set("client_id", "a")
            .set("name", "Sentry Test App")
            .set("status", 0)
            .set("date_added", "2023-06-22T22:59:55.602Z")
            .build();
        let out = host.session::<ApiApplication>(Scope::Global, ImportFlags::default()).run(vec![app]).unwrap();
        assert!(matches!(out[0], Decision::Insert { pk: None, .. }));
    }
}
