//! Contract 0.1.0 (`relocate:plugin@0.1.0`, `wit/v1/`), released and frozen:
//! its generated bindings, its `host` imports, which delegate to the latest
//! contract's, and the conversions between its types and the latest's.
//!
//! A 0.1.0 plugin is adapted, never special-cased: what it returns becomes
//! the latest contract's types (losslessly, since every later version only
//! adds) and is checked by `v2.rs` like any other plugin's.

use wasmtime::component::{HasSelf, Linker};

use super::contract::{Contract, contract};
use super::state::{HostCtx, StoreState};
use super::v2::{self, wit as new, wit_host as new_host};

wasmtime::component::bindgen!({
    path: "../wit/v1",
    world: "plugin",
    imports: { default: trappable },
});

use self::exports::relocate::plugin::importer as old_importer;
use self::relocate::plugin::host as old_host;
use self::relocate::plugin::types as old;

/// This contract's version: `wit/v1/relocate.wit`'s package.
pub(super) const CONTRACT: Contract = contract!("0.1.0");

/// The bindings of a loaded 0.1.0 plugin.
pub(super) type Bindings = Plugin;
pub(super) type BindingsPre = PluginPre<StoreState>;

/// Adds this version's `host` interface (and the empty `types` one) to `linker`.
pub(super) fn add_to_linker(linker: &mut Linker<StoreState>) -> wasmtime::Result<()> {
    Plugin::add_to_linker::<StoreState, HasSelf<HostCtx>>(linker, |state| &mut state.host)
}

impl old::Host for HostCtx {}

impl old_host::Host for HostCtx {
    fn mapping_of(&mut self, model: String, old_pk: i64) -> wasmtime::Result<Option<old_host::Mapping>> {
        let mapping = new_host::Host::mapping_of(self, model, old_pk)?;
        Ok(mapping.map(|m| old_host::Mapping { new_pk: m.new_pk, kind: m.kind.into(), slug: m.slug }))
    }

    fn random_bytes(&mut self, len: u32) -> wasmtime::Result<Vec<u8>> {
        new_host::Host::random_bytes(self, len)
    }

    fn log(&mut self, level: old::Level, message: String) -> wasmtime::Result<()> {
        new_host::Host::log(self, level.into(), message)
    }

    fn at_record(&mut self, index: u32) -> wasmtime::Result<()> {
        new_host::Host::at_record(self, index)
    }
}

/// `From` between two generated enums whose cases have the same names.
macro_rules! same_cases {
    ($from:ident => $to:ident, $name:ident { $($case:ident),* $(,)? }) => {
        impl From<$from::$name> for $to::$name {
            fn from(value: $from::$name) -> Self {
                match value {
                    $($from::$name::$case => $to::$name::$case,)*
                }
            }
        }
    };
}

// What the host hands a 0.1.0 plugin.
same_cases!(new => old, Scope { User, Organization, Config, Global });
same_cases!(new => old, ImportKind { Inserted, Existing, Overwrite });

// What a 0.1.0 plugin hands the host.
same_cases!(old => new, Scope { User, Organization, Config, Global });
same_cases!(old => new, Silo { Control, Region });
same_cases!(old => new, ColumnKind { Integer, Float, Boolean, Text, Datetime, Json });
same_cases!(old => new, OnMissing { Drop, SetNull });
// 0.1.0 has no `plain`: its plugins send `flexible-foreign-key`, which the
// host treats the same way.
same_cases!(old => new, FkKind {
    FlexibleForeignKey,
    DefaultForeignKey,
    DefaultOneToOneField,
    OneToOneCascadeDeletes,
    HybridCloudForeignKey,
    ImplicitForeignKey,
});
same_cases!(old => new, Level { Debug, Info, Warn, Error });

impl From<new::Value> for old::Value {
    fn from(value: new::Value) -> Self {
        match value {
            new::Value::Null => old::Value::Null,
            new::Value::Integer(i) => old::Value::Integer(i),
            new::Value::Float(f) => old::Value::Float(f),
            new::Value::Boolean(b) => old::Value::Boolean(b),
            new::Value::Text(s) => old::Value::Text(s),
            new::Value::Json(s) => old::Value::Json(s),
        }
    }
}

impl From<old::Value> for new::Value {
    fn from(value: old::Value) -> Self {
        match value {
            old::Value::Null => new::Value::Null,
            old::Value::Integer(i) => new::Value::Integer(i),
            old::Value::Float(f) => new::Value::Float(f),
            old::Value::Boolean(b) => new::Value::Boolean(b),
            old::Value::Text(s) => new::Value::Text(s),
            old::Value::Json(s) => new::Value::Json(s),
        }
    }
}

fn values<A: Into<B>, B>(values: Vec<A>) -> Vec<B> {
    values.into_iter().map(Into::into).collect()
}

impl From<&new::SessionConfig> for old::SessionConfig {
    fn from(config: &new::SessionConfig) -> Self {
        let mut flags = old::ImportFlags::empty();
        for (on, flag) in [
            (new::ImportFlags::MERGE_USERS, old::ImportFlags::MERGE_USERS),
            (new::ImportFlags::OVERWRITE_CONFIGS, old::ImportFlags::OVERWRITE_CONFIGS),
            (new::ImportFlags::HIDE_ORGANIZATIONS, old::ImportFlags::HIDE_ORGANIZATIONS),
        ] {
            if config.flags.contains(on) {
                flags |= flag;
            }
        }
        old::SessionConfig {
            model: config.model.clone(),
            scope: config.scope.into(),
            flags,
            started_at: config.started_at.clone(),
        }
    }
}

impl From<new::InputRecord> for old::InputRecord {
    fn from(record: new::InputRecord) -> Self {
        old::InputRecord {
            ordinal: record.ordinal,
            old_pk: record.old_pk,
            values: values(record.values),
            refs: record
                .refs
                .into_iter()
                .map(|r| old::MappedRef { column: r.column, old_pk: r.old_pk, kind: r.kind.into() })
                .collect(),
        }
    }
}

impl From<new::Answered> for old::Answered {
    fn from(answered: new::Answered) -> Self {
        let answers = answered
            .answers
            .into_iter()
            .map(|a| match a {
                new::Answer::Found(pk) => old::Answer::Found(pk),
                new::Answer::Taken(taken) => old::Answer::Taken(taken),
            })
            .collect();
        old::Answered { index: answered.index, answers }
    }
}

impl From<old_importer::PluginInfo> for v2::WitPluginInfo {
    fn from(info: old_importer::PluginInfo) -> Self {
        v2::WitPluginInfo { name: info.name, version: info.version, models: values(info.models) }
    }
}

impl From<old::ModelDesc> for new::ModelDesc {
    fn from(desc: old::ModelDesc) -> Self {
        new::ModelDesc {
            name: desc.name,
            table: desc.table,
            scopes: values(desc.scopes),
            silo: desc.silo.into(),
            columns: desc
                .columns
                .into_iter()
                .map(|c| new::Column {
                    name: c.name,
                    kind: c.kind.into(),
                    nullable: c.nullable,
                    default: c.default.map(Into::into),
                })
                .collect(),
            foreign_keys: desc
                .foreign_keys
                .into_iter()
                .map(|fk| new::ForeignKey {
                    column: fk.column,
                    model: fk.model,
                    kind: fk.kind.into(),
                    nullable: fk.nullable,
                    on_missing: fk.on_missing.into(),
                })
                .collect(),
            uniques: desc.uniques,
            relocation_dependencies: desc.relocation_dependencies,
        }
    }
}

impl From<old::FieldError> for new::FieldError {
    fn from(error: old::FieldError) -> Self {
        new::FieldError { field: error.field, message: error.message }
    }
}

impl From<old::Query> for new::Query {
    fn from(query: old::Query) -> Self {
        match query {
            old::Query::Find(find) => new::Query::Find(new::FindQuery {
                model: find.model,
                columns: find.columns,
                values: values(find.values),
            }),
            old::Query::Taken(taken) => {
                new::Query::Taken(new::TakenQuery { model: taken.model, column: taken.column, base: taken.base })
            }
        }
    }
}

impl From<old::Prepared> for new::Prepared {
    fn from(prepared: old::Prepared) -> Self {
        match prepared {
            old::Prepared::Ready(ready) => {
                new::Prepared::Ready(new::Ready { scope: ready.scope.map(Into::into), queries: values(ready.queries) })
            }
            old::Prepared::Skip(reason) => new::Prepared::Skip(reason),
            old::Prepared::Invalid(errors) => new::Prepared::Invalid(values(errors)),
        }
    }
}

impl From<old::Decided> for new::Decided {
    fn from(decided: old::Decided) -> Self {
        let decision = match decided.decision {
            old::Decision::Insert(row) => new::Decision::Insert(new::Row { values: values(row.values), pk: row.pk }),
            old::Decision::Reuse(pk) => new::Decision::Reuse(pk),
            old::Decision::Overwrite(over) => {
                new::Decision::Overwrite(new::Overwrite { pk: over.pk, values: values(over.values) })
            }
            old::Decision::Skip(reason) => new::Decision::Skip(reason),
            old::Decision::Invalid(errors) => new::Decision::Invalid(values(errors)),
        };
        let derived = decided
            .derived
            .into_iter()
            .map(|row| new::DerivedRow { model: row.model, values: values(row.values), parent_field: row.parent_field })
            .collect();
        new::Decided { index: decided.index, decision, derived }
    }
}

impl From<old::Fatal> for new::Fatal {
    fn from(fatal: old::Fatal) -> Self {
        match fatal {
            old::Fatal::UnsupportedModel(model) => new::Fatal::UnsupportedModel(model),
            old::Fatal::Protocol(message) => new::Fatal::Protocol(message),
            old::Fatal::Internal(message) => new::Fatal::Internal(message),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 0.1.0 description reaches the host as the same 0.2.0 one.
    #[test]
    fn a_description_converts_field_for_field() {
        let desc = old::ModelDesc {
            name: "legacy.invoice".into(),
            table: "legacy_invoice".into(),
            scopes: vec![old::Scope::Organization, old::Scope::Global],
            silo: old::Silo::Region,
            columns: vec![old::Column {
                name: "organization".into(),
                kind: old::ColumnKind::Integer,
                nullable: true,
                default: Some(old::Value::Null),
            }],
            foreign_keys: vec![old::ForeignKey {
                column: "organization".into(),
                model: "sentry.organization".into(),
                kind: old::FkKind::HybridCloudForeignKey,
                nullable: true,
                on_missing: old::OnMissing::SetNull,
            }],
            uniques: vec![vec!["organization".into()]],
            relocation_dependencies: vec!["sentry.user".into()],
        };
        let new: new::ModelDesc = desc.into();
        assert_eq!(new.scopes, [new::Scope::Organization, new::Scope::Global]);
        assert_eq!(new.columns[0].kind, new::ColumnKind::Integer);
        assert!(matches!(new.columns[0].default, Some(new::Value::Null)));
        let fk = &new.foreign_keys[0];
        assert_eq!(
            (fk.kind, fk.on_missing, fk.nullable),
            (new::FkKind::HybridCloudForeignKey, new::OnMissing::SetNull, true)
        );
        assert_eq!(new.uniques, [["organization"]]);
        assert_eq!(new.relocation_dependencies, ["sentry.user"]);
    }

    #[test]
    fn session_flags_carry_over() {
        let config = new::SessionConfig {
            model: "legacy.invoice".into(),
            scope: new::Scope::Config,
            flags: new::ImportFlags::MERGE_USERS | new::ImportFlags::HIDE_ORGANIZATIONS,
            started_at: "2026-11-30T00:00:00.000Z".into(),
        };
        let old = old::SessionConfig::from(&config);
        assert_eq!(old.flags, old::ImportFlags::MERGE_USERS | old::ImportFlags::HIDE_ORGANIZATIONS);
        assert_eq!(old.scope, old::Scope::Config);
    }
}
