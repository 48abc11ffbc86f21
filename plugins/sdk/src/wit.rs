//! The generated bindings of `wit/v2` (contract `relocate:plugin@0.2.0`, the
//! latest) and the glue that exports a plugin
//! through them: conversions between the contract's types and the SDK's, and
//! the `session` resource wrapping a [`Runner`].
//!
//! Compiled for wasm32 only; public only so that `register_plugin!` can reach
//! it from the plugin's crate.

use std::cell::RefCell;
use std::marker::PhantomData;

use crate::runtime::{self, PluginDef, Runner};
use crate::{
    Answer, ColumnKind, Decision, FieldError, FkKind, ImportFlags, ImportKind, ModelDesc, OnMissing, Prepared, Query,
    Scope, Session, Silo, Value,
};

wit_bindgen::generate!({
    // The crate's own copy of the contract, so that it builds from anywhere.
    path: "wit/v2",
    world: "plugin",
    pub_export_macro: true,
    export_macro_name: "__export_relocate_plugin",
});

use exports::relocate::plugin::importer;
use relocate::plugin::types as t;

/// The component: `describe` plus the `session` resource, for plugin `P`.
pub struct Component<P>(PhantomData<P>);

impl<P: PluginDef> importer::Guest for Component<P> {
    type Session = SessionResource<P>;

    fn describe() -> importer::PluginInfo {
        importer::PluginInfo {
            name: P::NAME.to_string(),
            version: P::VERSION.to_string(),
            models: P::MODELS.iter().map(|m| model_desc((m.describe)())).collect(),
        }
    }
}

/// One model's import: the guest side of the `session` resource.
pub struct SessionResource<P> {
    runner: RefCell<Runner>,
    _plugin: PhantomData<P>,
}

impl<P: PluginDef> SessionResource<P> {
    /// The host never calls back into a session while one of its calls runs,
    /// but a busy cell must still not panic.
    fn runner(&self) -> Result<std::cell::RefMut<'_, Runner>, t::Fatal> {
        self.runner.try_borrow_mut().map_err(|_| t::Fatal::Protocol("the session was re-entered".into()))
    }
}

impl<P: PluginDef> importer::GuestSession for SessionResource<P> {
    fn new(config: t::SessionConfig) -> Self {
        let flags = ImportFlags {
            merge_users: config.flags.contains(t::ImportFlags::MERGE_USERS),
            overwrite_configs: config.flags.contains(t::ImportFlags::OVERWRITE_CONFIGS),
            hide_organizations: config.flags.contains(t::ImportFlags::HIDE_ORGANIZATIONS),
        };
        let session = Session::new(&config.model, scope_from(config.scope), flags, &config.started_at);
        Self { runner: RefCell::new(Runner::open(P::MODELS, session)), _plugin: PhantomData }
    }

    fn prepare(&self, batch: Vec<t::InputRecord>) -> Result<Vec<t::Prepared>, t::Fatal> {
        let batch = batch
            .into_iter()
            .map(|r| runtime::InputRecord {
                ordinal: r.ordinal,
                old_pk: r.old_pk,
                values: r.values.into_iter().map(value_from).collect(),
                refs: r
                    .refs
                    .into_iter()
                    .map(|m| crate::MappedRef { column: m.column, old_pk: m.old_pk, kind: import_kind_from(m.kind) })
                    .collect(),
            })
            .collect();
        let prepared = self.runner()?.prepare(batch).map_err(fatal)?;
        Ok(prepared.into_iter().map(prepared_to).collect())
    }

    fn resolve(&self, answers: Vec<t::Answered>) -> Result<Vec<t::Decided>, t::Fatal> {
        let answers = answers
            .into_iter()
            .map(|a| runtime::Answered {
                index: a.index,
                answers: a
                    .answers
                    .into_iter()
                    .map(|a| match a {
                        t::Answer::Found(pk) => Answer::Found(pk),
                        t::Answer::Taken(values) => Answer::Taken(values),
                    })
                    .collect(),
            })
            .collect();
        let decided = self.runner()?.resolve(answers).map_err(fatal)?;
        Ok(decided
            .into_iter()
            .map(|d| t::Decided {
                index: d.index,
                decision: decision_to(d.decision),
                derived: d
                    .derived
                    .into_iter()
                    .map(|r| t::DerivedRow {
                        model: r.model,
                        values: r.values.into_iter().map(value_to).collect(),
                        parent_field: r.parent_field,
                    })
                    .collect(),
            })
            .collect())
    }
}

fn fatal(e: crate::Fatal) -> t::Fatal {
    match e {
        crate::Fatal::UnsupportedModel(m) => t::Fatal::UnsupportedModel(m),
        crate::Fatal::Protocol(m) => t::Fatal::Protocol(m),
        crate::Fatal::Internal(m) => t::Fatal::Internal(m),
    }
}

fn model_desc(d: ModelDesc) -> t::ModelDesc {
    t::ModelDesc {
        name: d.name,
        table: d.table,
        scopes: d.scopes.into_iter().map(scope_to).collect(),
        silo: match d.silo {
            Silo::Control => t::Silo::Control,
            Silo::Region => t::Silo::Region,
        },
        columns: d
            .columns
            .into_iter()
            .map(|c| t::Column {
                name: c.name,
                kind: match c.kind {
                    ColumnKind::Integer => t::ColumnKind::Integer,
                    ColumnKind::Float => t::ColumnKind::Float,
                    ColumnKind::Boolean => t::ColumnKind::Boolean,
                    ColumnKind::Text => t::ColumnKind::Text,
                    ColumnKind::Datetime => t::ColumnKind::Datetime,
                    ColumnKind::Json => t::ColumnKind::Json,
                },
                nullable: c.nullable,
                default: c.default.map(value_to),
            })
            .collect(),
        foreign_keys: d
            .foreign_keys
            .into_iter()
            .map(|fk| t::ForeignKey {
                column: fk.column,
                model: fk.model,
                kind: match fk.kind {
                    FkKind::Plain => t::FkKind::Plain,
                    FkKind::FlexibleForeignKey => t::FkKind::FlexibleForeignKey,
                    FkKind::DefaultForeignKey => t::FkKind::DefaultForeignKey,
                    FkKind::DefaultOneToOneField => t::FkKind::DefaultOneToOneField,
                    FkKind::OneToOneCascadeDeletes => t::FkKind::OneToOneCascadeDeletes,
                    FkKind::HybridCloudForeignKey => t::FkKind::HybridCloudForeignKey,
                    FkKind::ImplicitForeignKey => t::FkKind::ImplicitForeignKey,
                },
                nullable: fk.nullable,
                on_missing: match fk.on_missing {
                    OnMissing::Drop => t::OnMissing::Drop,
                    OnMissing::SetNull => t::OnMissing::SetNull,
                },
            })
            .collect(),
        uniques: d.uniques,
        relocation_dependencies: d.relocation_dependencies,
    }
}

fn scope_from(s: t::Scope) -> Scope {
    match s {
        t::Scope::User => Scope::User,
        t::Scope::Organization => Scope::Organization,
        t::Scope::Config => Scope::Config,
        t::Scope::Global => Scope::Global,
    }
}

fn scope_to(s: Scope) -> t::Scope {
    match s {
        Scope::User => t::Scope::User,
        Scope::Organization => t::Scope::Organization,
        Scope::Config => t::Scope::Config,
        Scope::Global => t::Scope::Global,
    }
}

fn import_kind_from(k: t::ImportKind) -> ImportKind {
    match k {
        t::ImportKind::Inserted => ImportKind::Inserted,
        t::ImportKind::Existing => ImportKind::Existing,
        t::ImportKind::Overwrite => ImportKind::Overwrite,
    }
}

fn value_from(v: t::Value) -> Value {
    match v {
        t::Value::Null => Value::Null,
        t::Value::Integer(i) => Value::Integer(i),
        t::Value::Float(f) => Value::Float(f),
        t::Value::Boolean(b) => Value::Boolean(b),
        t::Value::Text(s) => Value::Text(s),
        t::Value::Json(s) => Value::Json(s),
    }
}

fn value_to(v: Value) -> t::Value {
    match v {
        Value::Null => t::Value::Null,
        Value::Integer(i) => t::Value::Integer(i),
        Value::Float(f) => t::Value::Float(f),
        Value::Boolean(b) => t::Value::Boolean(b),
        Value::Text(s) => t::Value::Text(s),
        Value::Json(s) => t::Value::Json(s),
    }
}

fn field_errors(errors: Vec<FieldError>) -> Vec<t::FieldError> {
    errors.into_iter().map(|e| t::FieldError { field: e.field, message: e.message }).collect()
}

fn query_to(q: Query) -> t::Query {
    match q {
        Query::Find { model, columns, values } => {
            t::Query::Find(t::FindQuery { model, columns, values: values.into_iter().map(value_to).collect() })
        }
        Query::Taken { model, column, base } => t::Query::Taken(t::TakenQuery { model, column, base }),
    }
}

fn prepared_to(p: Prepared) -> t::Prepared {
    match p {
        Prepared::Ready { scope, queries, names: _ } => t::Prepared::Ready(t::Ready {
            scope: scope.map(scope_to),
            queries: queries.into_iter().map(query_to).collect(),
        }),
        Prepared::Skip(reason) => t::Prepared::Skip(reason),
        Prepared::Invalid(errors) => t::Prepared::Invalid(field_errors(errors)),
    }
}

fn decision_to(d: Decision) -> t::Decision {
    let values = |v: Vec<Value>| v.into_iter().map(value_to).collect();
    match d {
        Decision::Insert { values: v, pk } => t::Decision::Insert(t::Row { values: values(v), pk }),
        Decision::Reuse(pk) => t::Decision::Reuse(pk),
        Decision::Overwrite { pk, values: v } => t::Decision::Overwrite(t::Overwrite { pk, values: values(v) }),
        Decision::Skip(reason) => t::Decision::Skip(reason),
        Decision::Invalid(errors) => t::Decision::Invalid(field_errors(errors)),
    }
}
