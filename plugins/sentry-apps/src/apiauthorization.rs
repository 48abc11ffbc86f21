//! `sentry.apiauthorization`: a user's approval of an application.
//!
//! Its scope is Global when it names an application, else Config (Sentry's
//! `ApiAuthorization.get_relocation_scope`); otherwise a plain insert.

use relocate_plugin_sdk::{Model, ModelDesc, Prepared, Record, Result, Scope, Session};

pub struct ApiAuthorization;

impl Model for ApiAuthorization {
    fn describe() -> ModelDesc {
        sentry_models::sentry::APIAUTHORIZATION.desc()
    }

    fn new(_: &Session) -> Result<Self> {
        Ok(Self)
    }

    fn prepare(&mut self, _: &Session, record: &mut Record) -> Result<Prepared> {
        Ok(Prepared::ready_in(if record.is_null("application") { Scope::Config } else { Scope::Global }))
    }
}
