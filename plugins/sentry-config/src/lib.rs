//! The first-party plugin for Sentry's instance configuration: options,
//! relays and admin roles.
//!
//! Option, ControlOption, Relay, RelayUsage and UserRole are Sentry's
//! "overwritable configs" ([`Overwritable`], spec §5.1); UserRoleUser, which
//! gives a user a role, is a plain insert.

use relocate_plugin_sdk::{Model, ModelDesc, Result, Session, register_plugin};
use sentry_models::{StaticModel, sentry};

mod overwritable;

pub use overwritable::{ConfigModel, Overwritable};

register_plugin!(
    "sentry-config",
    [
        Overwritable<OptionConfig>,
        Overwritable<ControlOptionConfig>,
        Overwritable<RelayConfig>,
        Overwritable<RelayUsageConfig>,
        Overwritable<UserRoleConfig>,
        UserRoleUser,
    ]
);

/// Declares the marker type naming each overwritable model.
macro_rules! config_models {
    ($($(#[$doc:meta])* $name:ident => $model:ident $([pickled: $($field:literal),*])?,)*) => {$(
        $(#[$doc])*
        pub struct $name;

        impl ConfigModel for $name {
            fn model() -> &'static StaticModel {
                &sentry::$model
            }
            $(fn pickled_fields() -> &'static [&'static str] {
                &[$($field),*]
            })?
        }
    )*};
}

config_models! {
    /// `sentry.option`, unique by `key`.
    OptionConfig => OPTION [pickled: "value"],
    /// `sentry.controloption`, unique by `key`.
    ControlOptionConfig => CONTROLOPTION [pickled: "value"],
    /// `sentry.relay`, unique by `relay_id`.
    RelayConfig => RELAY,
    /// `sentry.relayusage`, unique by `(relay_id, version)`.
    RelayUsageConfig => RELAYUSAGE,
    /// `sentry.userrole`, unique by `name`.
    UserRoleConfig => USERROLE,
}

/// A user's admin role (`sentry.userroleuser`): a plain insert.
pub struct UserRoleUser;

impl Model for UserRoleUser {
    fn describe() -> ModelDesc {
        sentry::USERROLEUSER.desc()
    }

    fn new(_: &Session) -> Result<Self> {
        Ok(Self)
    }
}

#[cfg(test)]
mod fixtures_test;

#[cfg(test)]
mod tests {
    #[test]
    fn descriptions_are_valid() {
        relocate_plugin_sdk::testing::check_plugin::<super::__RelocatePlugin>().unwrap();
        let names: Vec<String> = relocate_plugin_sdk::testing::plugin_models::<super::__RelocatePlugin>()
            .into_iter()
            .map(|m| m.name)
            .collect();
        assert_eq!(
            names,
            [
                "sentry.option",
                "sentry.controloption",
                "sentry.relay",
                "sentry.relayusage",
                "sentry.userrole",
                "sentry.userroleuser"
            ]
        );
        let mut sorted = names.clone();
        sorted.sort();
        assert_eq!(sorted, sentry_models::special_models_of("sentry-config"));
    }
}
