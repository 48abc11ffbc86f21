//! `sentry.notificationaction` and `sentry.notificationactionproject`: what
//! an organization notifies, and for which projects, scoped per record.
//!
//! An action that goes through an integration or a Sentry app is in the
//! Global scope, any other in the Organization scope (Sentry's
//! `NotificationAction.get_relocation_scope`).

use relocate_plugin_sdk::{Model, ModelDesc, Prepared, Record, Result, Scope, Session};

pub struct NotificationAction;

impl Model for NotificationAction {
    fn describe() -> ModelDesc {
        sentry_models::sentry::NOTIFICATIONACTION.desc()
    }

    fn new(_: &Session) -> Result<Self> {
        Ok(Self)
    }

    fn prepare(&mut self, _: &Session, record: &mut Record) -> Result<Prepared> {
        let external = !record.is_null("integration_id") || !record.is_null("sentry_app_id");
        Ok(Prepared::ready_in(if external { Scope::Global } else { Scope::Organization }))
    }
}

/// A project an action applies to. Sentry gives it its action's scope,
/// which it reads back from the database; a plugin cannot. The action was
/// taken in by this import (else the host drops the link, as Sentry does
/// when the action's pk is not in the map), so its scope is one the import
/// accepts. In an Organization import that can only be Organization; a
/// Global import accepts both, and which one is said makes no difference
/// there. So the link is always in the Organization scope.
pub struct NotificationActionProject;

impl Model for NotificationActionProject {
    fn describe() -> ModelDesc {
        sentry_models::sentry::NOTIFICATIONACTIONPROJECT.desc()
    }

    fn new(_: &Session) -> Result<Self> {
        Ok(Self)
    }

    fn prepare(&mut self, _: &Session, _: &mut Record) -> Result<Prepared> {
        Ok(Prepared::ready_in(Scope::Organization))
    }
}

#[cfg(test)]
mod tests {
    use relocate_plugin_sdk::testing::{TestHost, record};
    use relocate_plugin_sdk::{ImportFlags, ImportKind};

    use super::*;

    #[test]
    fn actions_through_integrations_or_apps_are_global() {
        let host = TestHost::new(1);
        let action = |pk, integration: Option<i64>, app: Option<i64>| {
            record::<NotificationAction>(pk)
                .fk("organization", 1, 10, ImportKind::Inserted)
                .set("integration_id", integration)
                .set("sentry_app_id", app)
                .set("type", 5)
                .build()
        };
        let batch = vec![action(1, None, None), action(2, Some(3), None), action(3, None, Some(4))];
        let prepared =
            host.session::<NotificationAction>(Scope::Global, ImportFlags::default()).prepare(batch).unwrap();
        let scopes: Vec<Option<Scope>> = prepared
            .iter()
            .map(|p| match p {
                Prepared::Ready { scope, .. } => *scope,
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(scopes, [Some(Scope::Organization), Some(Scope::Global), Some(Scope::Global)]);
    }

    #[test]
    fn a_link_is_imported_with_its_action() {
        let host = TestHost::new(1);
        let link = record::<NotificationActionProject>(1)
            .fk("action", 1, 11, ImportKind::Inserted)
            .fk("project", 2, 20, ImportKind::Inserted)
            .build();
        let out = host
            .session::<NotificationActionProject>(Scope::Organization, ImportFlags::default())
            .run(vec![link])
            .unwrap();
        assert!(matches!(out[0], relocate_plugin_sdk::Decision::Insert { .. }), "{:?}", out[0]);
    }
}
