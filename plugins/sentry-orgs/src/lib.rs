//! The first-party plugin for Sentry's organization models: organizations and
//! their members ([`organization`]), projects with their keys and options
//! ([`project`]), the plain rows that tie them together (teams, memberships
//! of teams, projects' teams, alert rules), options with pickled values
//! ([`options`]), and the organization models whose
//! secrets, ids or scope need care: auth tokens ([`orgauthtoken`]), cron
//! monitors ([`monitor`]), query subscriptions ([`querysubscription`]), saved
//! searches ([`savedsearch`]) and notification actions
//! ([`notificationaction`]).

use relocate_plugin_sdk::{Model, ModelDesc, Result, Session, register_plugin};
use sentry_models::sentry;

pub mod monitor;
pub mod notificationaction;
pub mod options;
pub mod organization;
pub mod orgauthtoken;
pub mod project;
pub mod querysubscription;
pub mod savedsearch;

register_plugin!(
    "sentry-orgs",
    [
        organization::Organization,
        organization::OrganizationMember,
        Team,
        OrganizationMemberTeam,
        project::Project,
        project::ProjectKey,
        project::ProjectOption,
        ProjectTeam,
        Rule,
        OrganizationMapping,
        OrganizationSlugReservation,
        OrganizationMemberMapping,
        options::OrganizationOption,
        options::ProjectTemplateOption,
        orgauthtoken::OrgAuthToken,
        monitor::Monitor,
        querysubscription::QuerySubscription,
        savedsearch::SavedSearch,
        notificationaction::NotificationAction,
        notificationaction::NotificationActionProject,
    ]
);

/// Declares models that are inserted as they are, under a new pk.
macro_rules! plain_models {
    ($($(#[$doc:meta])* $name:ident => $model:ident,)*) => {$(
        $(#[$doc])*
        pub struct $name;

        impl Model for $name {
            fn describe() -> ModelDesc {
                sentry::$model.desc()
            }

            fn new(_: &Session) -> Result<Self> {
                Ok(Self)
            }
        }
    )*};
}

plain_models! {
    /// `sentry.team`. Its slug is unique per organization, and every
    /// organization is new, so there is nothing to collide with.
    Team => TEAM,
    /// `sentry.organizationmemberteam`: a member's place in a team.
    OrganizationMemberTeam => ORGANIZATIONMEMBERTEAM,
    /// `sentry.projectteam`: a team's access to a project.
    ProjectTeam => PROJECTTEAM,
    /// `sentry.rule`: an issue alert rule of a project.
    Rule => RULE,
    /// `sentry.organizationmapping`: never exported; written with every
    /// organization, holding its final slug, as Sentry's outbox does.
    OrganizationMapping => ORGANIZATIONMAPPING,
    /// `sentry.organizationslugreservation`: never exported; the PRIMARY
    /// reservation of every organization's final slug.
    OrganizationSlugReservation => ORGANIZATIONSLUGRESERVATION,
    /// `sentry.organizationmembermapping`: never exported; written with every member.
    OrganizationMemberMapping => ORGANIZATIONMEMBERMAPPING,
}

#[cfg(test)]
mod fixtures_test;

#[cfg(test)]
mod tests {
    #[test]
    fn descriptions_are_valid_and_match_the_special_list() {
        relocate_plugin_sdk::testing::check_plugin::<super::__RelocatePlugin>().unwrap();
        let mut names: Vec<String> = relocate_plugin_sdk::testing::plugin_models::<super::__RelocatePlugin>()
            .into_iter()
            .map(|m| m.name)
            .collect();
        names.sort();
        assert_eq!(names, sentry_models::special_models_of("sentry-orgs"));
    }
}
