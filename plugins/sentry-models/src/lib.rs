//! Descriptions of Sentry's relocatable models, shared by the first-party
//! plugins.
//!
//! Generated at build time from Sentry's model registry (`data/detailed.json`:
//! table, scopes, silo, foreign keys, uniques, relocation dependencies) and
//! the column table (`data/columns.json`: each stored field's kind,
//! nullability and default). Every model that appears in the test fixtures is
//! here; `Excluded` models are not.
//!
//! A plugin names the models it owns (`sentry_models::sentry::USER.desc()`),
//! so that only those are linked into it; [`describe`] looks one up by name.
//! [`SPECIAL`] lists the models a dedicated plugin serves (from
//! `data/special.txt`); [`GENERIC`] is every other model, which
//! `sentry-generic` inserts as it is.
//!
//! Sentry's rules that more than one plugin needs: [`naming`] (unique
//! usernames and slugs), [`tokens`] (minting and hashing secrets),
//! [`datetime`] (date arithmetic without a clock), [`pickled`] (option values).

pub mod datetime;
#[cfg(not(target_arch = "wasm32"))]
pub mod fixtures;
pub mod naming;
pub mod pickled;
pub mod tokens;

use relocate_plugin_sdk::{Column, ColumnKind, FkKind, ForeignKey, ModelDesc, OnMissing, Scope, Silo, Value};

include!(concat!(env!("OUT_DIR"), "/models.rs"));

/// A model description as static data; [`StaticModel::desc`] makes the SDK's
/// [`ModelDesc`].
#[derive(Debug)]
pub struct StaticModel {
    pub name: &'static str,
    pub table: &'static str,
    pub scopes: &'static [Scope],
    pub silo: Silo,
    pub columns: &'static [StaticColumn],
    pub foreign_keys: &'static [StaticForeignKey],
    pub uniques: &'static [&'static [&'static str]],
    pub relocation_dependencies: &'static [&'static str],
}

/// A [`Column`] as static data.
#[derive(Debug)]
pub struct StaticColumn {
    pub name: &'static str,
    pub kind: ColumnKind,
    pub nullable: bool,
    pub default: Option<StaticValue>,
}

/// A column default as static data.
#[derive(Debug)]
pub enum StaticValue {
    Integer(i64),
    Float(f64),
    Boolean(bool),
    Text(&'static str),
    /// JSON text.
    Json(&'static str),
}

/// A [`ForeignKey`] as static data.
#[derive(Debug)]
pub struct StaticForeignKey {
    pub column: &'static str,
    pub model: &'static str,
    pub kind: FkKind,
    pub nullable: bool,
    pub on_missing: OnMissing,
}

impl StaticModel {
    /// [`desc`](Self::desc), built once per thread and shared: what a
    /// plugin deriving a row of this model per record passes to
    /// `Derived::new`.
    pub fn shared(&self) -> std::rc::Rc<ModelDesc> {
        thread_local! {
            static BUILT: std::cell::RefCell<Vec<(&'static str, std::rc::Rc<ModelDesc>)>> =
                const { std::cell::RefCell::new(Vec::new()) };
        }
        BUILT.with_borrow_mut(|built| {
            if let Some((_, desc)) = built.iter().find(|(name, _)| *name == self.name) {
                return desc.clone();
            }
            let desc = std::rc::Rc::new(self.desc());
            built.push((self.name, desc.clone()));
            desc
        })
    }

    /// The SDK's description of this model.
    pub fn desc(&self) -> ModelDesc {
        ModelDesc {
            name: self.name.to_string(),
            table: self.table.to_string(),
            scopes: self.scopes.to_vec(),
            silo: self.silo,
            columns: self
                .columns
                .iter()
                .map(|c| Column {
                    name: c.name.to_string(),
                    kind: c.kind,
                    nullable: c.nullable,
                    default: c.default.as_ref().map(StaticValue::value),
                })
                .collect(),
            foreign_keys: self
                .foreign_keys
                .iter()
                .map(|fk| ForeignKey {
                    column: fk.column.to_string(),
                    model: fk.model.to_string(),
                    kind: fk.kind,
                    nullable: fk.nullable,
                    on_missing: fk.on_missing,
                })
                .collect(),
            uniques: self.uniques.iter().map(|set| set.iter().map(|c| c.to_string()).collect()).collect(),
            relocation_dependencies: self.relocation_dependencies.iter().map(|d| d.to_string()).collect(),
        }
    }
}

impl StaticValue {
    pub fn value(&self) -> Value {
        match self {
            Self::Integer(i) => Value::Integer(*i),
            Self::Float(f) => Value::Float(*f),
            Self::Boolean(b) => Value::Boolean(*b),
            Self::Text(s) => Value::Text(s.to_string()),
            Self::Json(s) => Value::Json(s.to_string()),
        }
    }
}

/// The static description of `name` (`sentry.user`), if it is relocatable and
/// in the fixtures.
pub fn get(name: &str) -> Option<&'static StaticModel> {
    ALL.iter().copied().find(|m| m.name == name)
}

/// The SDK description of `name` (`sentry.user`).
pub fn describe(name: &str) -> Option<ModelDesc> {
    get(name).map(StaticModel::desc)
}

/// The models `data/special.txt` gives to `plugin` (`sentry-orgs`), in the
/// order listed: what that plugin must register.
pub fn special_models_of(plugin: &str) -> Vec<&'static str> {
    SPECIAL.iter().filter(|(_, p)| *p == plugin).map(|(m, _)| *m).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_description_is_valid() {
        assert!(ALL.len() >= 79, "only {} models", ALL.len());
        for model in ALL {
            assert_eq!(model.desc().check(), Ok(()));
        }
        assert!(ALL.windows(2).all(|w| w[0].name < w[1].name));
    }

    #[test]
    fn user_is_a_control_user_model() {
        let user = describe("sentry.user").expect("sentry.user");
        assert_eq!(user.table, "auth_user");
        assert_eq!(user.scopes, vec![Scope::User]);
        assert_eq!(user.silo, Silo::Control);
        assert_eq!(user.uniques, vec![vec!["username".to_string()]]);
        let unclaimed = &user.columns[user.column_index("is_unclaimed").expect("is_unclaimed")];
        assert_eq!(unclaimed.default, Some(Value::Boolean(false)));
        assert!(user.column_index("doesnotexist").is_none());
    }

    #[test]
    fn deleted_fields_are_gone() {
        let team = describe("sentry.team").expect("sentry.team");
        assert!(team.column_index("actor").is_none() && team.column_index("org_role").is_none());
        let rule = describe("sentry.rule").expect("sentry.rule");
        assert!(rule.column_index("owner").is_none());
    }

    #[test]
    fn inviter_is_set_null_and_other_keys_drop() {
        let member = describe("sentry.organizationmember").expect("sentry.organizationmember");
        for fk in &member.foreign_keys {
            let expected = if fk.column == "inviter_id" { OnMissing::SetNull } else { OnMissing::Drop };
            assert_eq!(fk.on_missing, expected, "{}", fk.column);
        }
        assert_eq!(member.foreign_key_of("organization").map(|fk| fk.kind), Some(FkKind::FlexibleForeignKey));
    }

    #[test]
    fn several_scopes_and_excluded_models() {
        let token = describe("sentry.apitoken").expect("sentry.apitoken");
        assert_eq!(token.scopes, vec![Scope::Config, Scope::Global]);
        assert!(describe("sentry.alertruleactivations").is_none(), "Excluded models are left out");
        // Global is Sentry's instance scope of `is_global` searches.
        let search = describe("sentry.savedsearch").expect("sentry.savedsearch");
        assert_eq!(search.scopes, vec![Scope::Organization, Scope::Global]);
    }

    #[test]
    fn every_model_is_either_special_or_generic() {
        for model in ALL {
            let special = SPECIAL.iter().any(|(m, _)| *m == model.name);
            let generic = GENERIC.iter().any(|g| g.name == model.name);
            assert!(special != generic, "{} is special: {special}, generic: {generic}", model.name);
        }
        assert_eq!(SPECIAL.len() + GENERIC.len(), ALL.len());
        assert!(GENERIC.iter().all(|m| m.scopes.len() == 1), "a plain insert cannot choose a scope");
        assert!(special_models_of("sentry-apps").contains(&"sentry.apitoken"));
    }

    #[test]
    fn conditional_uniques_are_left_out() {
        let search = describe("sentry.savedsearch").expect("sentry.savedsearch");
        assert!(search.uniques.is_empty(), "{:?}", search.uniques);
        let authorization = describe("sentry.apiauthorization").expect("sentry.apiauthorization");
        let set = |cols: &[&str]| cols.iter().map(|c| c.to_string()).collect::<Vec<_>>();
        assert_eq!(authorization.uniques, vec![set(&["application", "organization_id", "user"])]);
    }

    #[test]
    fn unique_attnames_are_mapped_to_fields() {
        let view = describe("sentry.groupsearchview").expect("sentry.groupsearchview");
        assert!(view.uniques.iter().any(|u| u.contains(&"organization".to_string())));
    }

    #[test]
    fn pickled_values_are_json() {
        for name in ["sentry.option", "sentry.projectoption", "sentry.useroption"] {
            let d = describe(name).expect(name);
            assert_eq!(d.columns[d.column_index("value").expect("value")].kind, ColumnKind::Json, "{name}");
        }
    }
}
