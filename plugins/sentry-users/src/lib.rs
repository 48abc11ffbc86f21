//! The first-party plugin for Sentry's user models: who a user is
//! ([`user::User`], [`email::Email`], [`email::UserEmail`]) and what hangs off
//! a user ([`owned`]: authenticators, options, IPs, permissions).
//!
//! Everything that hangs off a user is dropped when that user was merged into
//! an existing one (`--merge-users`): the existing user keeps its own.

use relocate_plugin_sdk::{ImportKind, Prepared, Record, register_plugin};

pub mod email;
pub mod owned;
pub mod timezone;
pub mod user;

register_plugin!(
    "sentry-users",
    [
        user::User,
        email::Email,
        email::UserEmail,
        owned::Authenticator,
        owned::UserOption,
        owned::UserIp,
        owned::UserPermission,
        owned::LostPasswordHash,
    ]
);

/// `Skip` when the user in foreign key `field` was merged into an existing
/// user, as Sentry's `normalize_before_relocation_import` returns `None` then.
fn skip_if_user_merged(record: &Record, field: &str) -> Option<Prepared> {
    (record.ref_kind(field) == Some(ImportKind::Existing))
        .then(|| Prepared::skip("its user was merged into an existing user, who keeps their own"))
}

#[cfg(test)]
mod fixtures_test;

#[cfg(test)]
mod tests {
    #[test]
    fn descriptions_are_valid() {
        relocate_plugin_sdk::testing::check_plugin::<super::__RelocatePlugin>().unwrap();
        let mut names: Vec<String> = relocate_plugin_sdk::testing::plugin_models::<super::__RelocatePlugin>()
            .into_iter()
            .map(|m| m.name)
            .collect();
        names.sort();
        assert_eq!(names, sentry_models::special_models_of("sentry-users"));
    }
}
