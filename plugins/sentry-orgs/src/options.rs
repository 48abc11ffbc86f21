//! `sentry.organizationoption` and `sentry.projecttemplateoption`: an
//! organization's settings and a project template's. Their values are
//! pickled, so they are stored as Sentry stores them
//! ([`sentry_models::pickled`]); otherwise each is a plain insert, as
//! nothing creates these rows before the import does.

use relocate_plugin_sdk::{Model, ModelDesc, Prepared, Record, Result, Session};
use sentry_models::{pickled, sentry};

pub struct OrganizationOption;

impl Model for OrganizationOption {
    fn describe() -> ModelDesc {
        sentry::ORGANIZATIONOPTION.desc()
    }

    fn new(_: &Session) -> Result<Self> {
        Ok(Self)
    }

    fn prepare(&mut self, _: &Session, record: &mut Record) -> Result<Prepared> {
        pickled::normalize(record, "value")?;
        Ok(Prepared::ready())
    }
}

pub struct ProjectTemplateOption;

impl Model for ProjectTemplateOption {
    fn describe() -> ModelDesc {
        sentry::PROJECTTEMPLATEOPTION.desc()
    }

    fn new(_: &Session) -> Result<Self> {
        Ok(Self)
    }

    fn prepare(&mut self, _: &Session, record: &mut Record) -> Result<Prepared> {
        pickled::normalize(record, "value")?;
        Ok(Prepared::ready())
    }
}

#[cfg(test)]
mod tests {
    use relocate_plugin_sdk::testing::{TestHost, import_export};
    use relocate_plugin_sdk::{ImportFlags, Scope, Value};
    use sentry_models::fixtures;

    use crate::__RelocatePlugin as Plugin;

    #[test]
    fn pickled_values_are_stored_as_sentry_stores_them() {
        let host = TestHost::new(1);
        import_export::<Plugin>(
            &host,
            Scope::Organization,
            ImportFlags::default(),
            &fixtures::read("releases/24.7.0.json"),
        )
        .unwrap();
        // Exported as the JSON text `"[test-org]"` inside a JSON string.
        let template = host.rows("sentry.projecttemplateoption");
        assert_eq!(template.len(), 1);
        assert_eq!(template[0].get("value"), Some(&Value::Json(r#""[test-org]""#.into())));
        // Exported raw: kept as its own JSON.
        let org = host.rows("sentry.organizationoption");
        assert_eq!(org.len(), 1);
        assert_eq!(org[0].get("value"), Some(&Value::Json("0".into())));
    }
}
