//! `sentry.savedsearch`: an issue search saved for an organization, or for
//! the whole instance (`is_global`). Sentry's `get_relocation_scope` puts a
//! global search in the Global scope, so only a Global import takes it in
//! (spec §5.6, scenario 41); the others are in the Organization scope.

use relocate_plugin_sdk::{Model, ModelDesc, Prepared, Record, Result, Scope, Session};

pub struct SavedSearch;

impl Model for SavedSearch {
    fn describe() -> ModelDesc {
        sentry_models::sentry::SAVEDSEARCH.desc()
    }

    fn new(_: &Session) -> Result<Self> {
        Ok(Self)
    }

    fn prepare(&mut self, _: &Session, record: &mut Record) -> Result<Prepared> {
        let global = record.boolean("is_global").unwrap_or(false);
        Ok(Prepared::ready_in(if global { Scope::Global } else { Scope::Organization }))
    }
}

#[cfg(test)]
mod tests {
    use relocate_plugin_sdk::testing::{TestHost, import_export};
    use relocate_plugin_sdk::{ImportFlags, Scope};

    use crate::__RelocatePlugin as Plugin;

    /// An organization's search and an instance-wide one of the same name.
    const EXPORT: &str = r#"[
        {"model": "sentry.organization", "pk": 1, "fields": {"name": "Org", "slug": "org", "status": 0, "is_test": false, "date_added": "2024-05-31T16:24:02.800Z"}},
        {"model": "sentry.savedsearch", "pk": 1, "fields": {"is_global": false, "name": "Mine", "organization": 1, "query": "is:unresolved", "type": 0}},
        {"model": "sentry.savedsearch", "pk": 2, "fields": {"is_global": true, "name": "Mine", "organization": null, "query": "is:unresolved", "type": 0}}
    ]"#;

    fn imported(scope: Scope) -> Vec<bool> {
        let host = TestHost::new(1);
        import_export::<Plugin>(&host, scope, ImportFlags::default(), EXPORT).unwrap();
        host.rows("sentry.savedsearch").iter().map(|r| r.get("is_global") == Some(&true.into())).collect()
    }

    #[test]
    fn global_searches_come_only_with_a_global_import() {
        assert_eq!(imported(Scope::Global), [false, true]);
        assert_eq!(imported(Scope::Organization), [false]);
        assert_eq!(imported(Scope::Config), Vec::<bool>::new());
    }
}
