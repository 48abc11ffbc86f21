//! A fake host for testing plugins natively, with plain `cargo test`.
//!
//! [`TestHost::new`] gives the current thread a seeded generator, an empty pk
//! map, captured logs and an in-memory table of existing rows. A
//! [`TestSession`] then drives a [`Model`] through the same runtime the wasm
//! build uses, either step by step ([`TestSession::prepare`],
//! [`TestSession::resolve`]) or a whole batch at a time against the fake rows
//! ([`TestSession::run`]), which also records what was written so that later
//! batches and models see it.
//!
//! ```
//! use relocate_plugin_sdk::testing::{record, TestHost};
//! use relocate_plugin_sdk::{ColumnKind, Decision, ImportFlags, Model, ModelDesc, Result, Scope, Session, Silo};
//!
//! struct Widget;
//! impl Model for Widget {
//!     fn describe() -> ModelDesc {
//!         ModelDesc::new("acme.widget", "acme_widget", Scope::Organization, Silo::Region)
//!             .column("name", ColumnKind::Text)
//!     }
//!     fn new(_: &Session) -> Result<Self> {
//!         Ok(Self)
//!     }
//! }
//!
//! let host = TestHost::new(7);
//! let mut session = host.session::<Widget>(Scope::Organization, ImportFlags::default());
//! let decisions = session.run(vec![record::<Widget>(1).set("name", "w").build()]).unwrap();
//! assert!(matches!(decisions[0], Decision::Insert { pk: None, .. }));
//! ```
//!
//! Everything here panics on misuse: it is test code, and a panic is how a
//! test fails.

use std::cell::RefCell;
use std::collections::HashSet;
use std::marker::PhantomData;

use crate::host::fake;
use crate::model::Scope;
use crate::outcome::{Decision, Prepared};
use crate::query::{Answer, Query};
use crate::record::{ImportKind, MappedRef};
use crate::runtime::{PluginDef, Runner};
use crate::session::{ImportFlags, Level, Mapping, Session};
use crate::value::Value;
use crate::{Model, ModelDesc, Result};

pub use crate::runtime::{Answered, Decided, InputRecord};
pub use export::{Imported, import_export};

mod export;

/// The `started_at` of every test session.
pub const STARTED_AT: &str = "2024-01-01T00:00:00.000Z";

/// A row of the fake database.
#[derive(Clone, Debug, PartialEq)]
pub struct TestRow {
    pub pk: i64,
    pub fields: Vec<(String, Value)>,
}

impl TestRow {
    pub fn get(&self, field: &str) -> Option<&Value> {
        self.fields.iter().find(|(f, _)| f == field).map(|(_, v)| v)
    }

    pub fn text(&self, field: &str) -> Option<&str> {
        self.get(field).and_then(Value::as_text)
    }
}

#[derive(Default)]
struct Db {
    rows: Vec<(String, TestRow)>,
    next_pk: i64,
    derived: Vec<crate::Derived>,
}

thread_local! {
    static DB: RefCell<Db> = RefCell::new(Db::default());
}

fn with_db<T>(f: impl FnOnce(&mut Db) -> T) -> T {
    DB.with(|db| f(&mut db.borrow_mut()))
}

/// The fake host of the current thread.
///
/// Creating one resets the thread's fake: tests run on their own threads, so
/// they do not see each other.
pub struct TestHost {
    // The fake is per thread; keep the handle on it.
    _not_send: PhantomData<*const ()>,
}

impl TestHost {
    /// A fresh fake host whose generator is seeded with `seed`.
    pub fn new(seed: u64) -> Self {
        fake::reset(seed);
        with_db(|db| *db = Db { rows: Vec::new(), next_pk: 1001, derived: Vec::new() });
        Self { _not_send: PhantomData }
    }

    /// Records that `old_pk` of `model` was imported as `new_pk`.
    pub fn map(&self, model: &str, old_pk: i64, new_pk: i64, kind: ImportKind) {
        fake::with(|f| f.mappings.push((model.to_string(), old_pk, Mapping { new_pk, kind, slug: None })));
    }

    /// Adds a row that "was already in the database" before the import.
    pub fn insert_row(&self, model: &str, pk: i64, fields: &[(&str, Value)]) {
        let fields = fields.iter().map(|(f, v)| (f.to_string(), v.clone())).collect();
        with_db(|db| {
            db.next_pk = db.next_pk.max(pk + 1);
            db.rows.push((model.to_string(), TestRow { pk, fields }));
        });
    }

    /// The rows of `model`, in the order they were written.
    /// The rows plugins derived so far (see [`Session::derive`]).
    pub fn derived(&self) -> Vec<crate::Derived> {
        with_db(|db| db.derived.clone())
    }

    pub fn rows(&self, model: &str) -> Vec<TestRow> {
        with_db(|db| db.rows.iter().filter(|(m, _)| m == model).map(|(_, r)| r.clone()).collect())
    }

    /// How `old_pk` of `model` was mapped, as the plugin would see it.
    pub fn mapping(&self, model: &str, old_pk: i64) -> Option<Mapping> {
        crate::host::mapping_of(model, old_pk)
    }

    /// Everything logged so far.
    pub fn logs(&self) -> Vec<(Level, String)> {
        fake::with(|f| f.logs.clone())
    }

    /// Every index passed to `at-record` so far.
    pub fn at_records(&self) -> Vec<u32> {
        fake::with(|f| f.at_records.clone())
    }

    /// Opens an import of model `M` in `scope` with `flags`.
    pub fn session<M: Model>(&self, scope: Scope, flags: ImportFlags) -> TestSession<M> {
        let desc = M::describe();
        let session = Session::new(&desc.name, scope, flags, STARTED_AT);
        let runner = Runner::open(&[crate::runtime::ModelEntry::of::<M>()], session);
        TestSession { driver: Driver { runner, desc }, _model: PhantomData }
    }

    /// Answers `query` from the fake rows, as the host answers from the database.
    pub fn answer(&self, query: &Query) -> Answer {
        with_db(|db| match query {
            Query::Find { model, columns, values } => Answer::Found(
                db.rows
                    .iter()
                    .filter(|(m, _)| m == model)
                    .find(|(_, row)| columns.iter().zip(values).all(|(c, v)| row.get(c) == Some(v)))
                    .map(|(_, row)| row.pk),
            ),
            Query::Taken { model, column, base } => {
                let base = base.to_lowercase();
                let prefix = format!("{base}-");
                Answer::Taken(
                    db.rows
                        .iter()
                        .filter(|(m, _)| m == model)
                        .filter_map(|(_, row)| row.text(column))
                        .filter(|v| {
                            let v = v.to_lowercase();
                            v == base || v.starts_with(&prefix)
                        })
                        .map(str::to_string)
                        .collect(),
                )
            }
        })
    }
}

/// One import of model `M` against the [`TestHost`].
pub struct TestSession<M> {
    driver: Driver,
    _model: PhantomData<M>,
}

impl<M: Model> TestSession<M> {
    pub fn session(&self) -> &Session {
        self.driver.runner.session()
    }

    /// Runs the contract's `prepare` over a batch.
    pub fn prepare(&mut self, batch: Vec<InputRecord>) -> Result<Vec<Prepared>> {
        self.driver.runner.prepare(batch)
    }

    /// Runs the contract's `resolve` with hand-made answers.
    pub fn resolve(&mut self, answers: Vec<Answered>) -> Result<Vec<Decided>> {
        self.driver.runner.resolve(answers)
    }

    /// Imports a batch the way the host does: `prepare`, answers from the fake
    /// rows, `resolve`, then writes the decisions to the fake rows and pk map.
    ///
    /// Returns one decision per record; a record that `prepare` skipped or
    /// found invalid gets the matching `Skip`/`Invalid`.
    pub fn run(&mut self, batch: Vec<InputRecord>) -> Result<Vec<Decision>> {
        self.driver.run(batch)
    }
}

/// A [`Runner`] plus its model's description: what `run` needs, for any model.
struct Driver {
    runner: Runner,
    desc: ModelDesc,
}

impl Driver {
    fn run(&mut self, batch: Vec<InputRecord>) -> Result<Vec<Decision>> {
        self.run_in_scope(batch, None)
    }

    /// `run`, leaving unanswered the ready records outside `import` (the
    /// import's scope), as the host does; `None` answers them all.
    fn run_in_scope(&mut self, batch: Vec<InputRecord>, import: Option<Scope>) -> Result<Vec<Decision>> {
        let old_pks: Vec<i64> = batch.iter().map(|r| r.old_pk).collect();
        let prepared = self.runner.prepare(batch)?;
        let host = TestHost { _not_send: PhantomData };
        let mut answered = Vec::new();
        let mut out = Vec::with_capacity(prepared.len());
        for (i, p) in prepared.into_iter().enumerate() {
            if import.is_some_and(|scope| !export::ready_in_scope(&self.desc, &p, scope)) {
                out.push(Decision::Skip("record out of scope".into()));
                continue;
            }
            match p {
                Prepared::Ready { queries, .. } => {
                    let index = u32::try_from(i).expect("small test batch");
                    answered.push(Answered { index, answers: queries.iter().map(|q| host.answer(q)).collect() });
                    out.push(Decision::Skip("not resolved".into()));
                }
                Prepared::Skip(reason) => out.push(Decision::Skip(reason)),
                Prepared::Invalid(errors) => out.push(Decision::Invalid(errors)),
            }
        }
        let expected: HashSet<u32> = answered.iter().map(|a| a.index).collect();
        let decided = self.runner.resolve(answered)?;
        assert_eq!(decided.len(), expected.len(), "resolve must decide every ready record once");
        for Decided { index, decision, derived } in decided {
            assert!(expected.contains(&index), "resolve decided record {index}, which was not ready");
            self.apply(old_pks[index as usize], &decision);
            with_db(|db| db.derived.extend(derived));
            out[index as usize] = decision;
        }
        Ok(out)
    }
    fn apply(&self, old_pk: i64, decision: &Decision) {
        let model = self.desc.name.clone();
        let fields = |values: &[Value]| -> Vec<(String, Value)> {
            self.desc.columns.iter().map(|c| c.name.clone()).zip(values.iter().cloned()).collect()
        };
        let slug =
            |values: &[Value]| self.desc.column_index("slug").and_then(|i| values[i].as_text()).map(str::to_string);
        let mapping = match decision {
            Decision::Insert { values, pk } => {
                let pk = with_db(|db| {
                    let pk = pk.unwrap_or(db.next_pk);
                    db.next_pk = db.next_pk.max(pk + 1);
                    db.rows.push((model.clone(), TestRow { pk, fields: fields(values) }));
                    pk
                });
                Some(Mapping { new_pk: pk, kind: ImportKind::Inserted, slug: slug(values) })
            }
            Decision::Reuse(pk) => Some(Mapping { new_pk: *pk, kind: ImportKind::Existing, slug: None }),
            Decision::Overwrite { pk, values } => {
                with_db(|db| {
                    if let Some((_, row)) = db.rows.iter_mut().find(|(m, r)| *m == model && r.pk == *pk) {
                        row.fields = fields(values);
                    }
                });
                Some(Mapping { new_pk: *pk, kind: ImportKind::Overwrite, slug: slug(values) })
            }
            Decision::Skip(_) | Decision::Invalid(_) => None,
        };
        if let Some(m) = mapping {
            fake::with(|f| f.mappings.push((model, old_pk, m)));
        }
    }
}

/// Starts an input record of model `M` with old pk `old_pk`.
///
/// Fields not set get their column's default, or null.
pub fn record<M: Model>(old_pk: i64) -> RecordBuilder {
    RecordBuilder::new(M::describe(), old_pk)
}

/// Builds an [`InputRecord`] by field name.
pub struct RecordBuilder {
    desc: ModelDesc,
    input: InputRecord,
}

impl RecordBuilder {
    pub fn new(desc: ModelDesc, old_pk: i64) -> Self {
        let values = desc.columns.iter().map(|c| c.default.clone().unwrap_or(Value::Null)).collect();
        let ordinal = u64::try_from(old_pk).unwrap_or(1).max(1);
        Self { desc, input: InputRecord { ordinal, old_pk, values, refs: Vec::new() } }
    }

    fn index(&self, field: &str) -> usize {
        self.desc.column_index(field).unwrap_or_else(|| panic!("{} has no field `{field}`", self.desc.name))
    }

    /// Sets a field.
    #[must_use]
    pub fn set(mut self, field: &str, value: impl Into<Value>) -> Self {
        let i = self.index(field);
        self.input.values[i] = value.into();
        self
    }

    /// Sets a foreign key the host remapped: `old_pk` in the export, `new_pk`
    /// now, imported as `kind`.
    #[must_use]
    pub fn fk(mut self, field: &str, old_pk: i64, new_pk: i64, kind: ImportKind) -> Self {
        let i = self.index(field);
        self.input.values[i] = Value::Integer(new_pk);
        self.input.refs.retain(|r| r.column as usize != i);
        let column = u32::try_from(i).expect("few columns");
        self.input.refs.push(MappedRef { column, old_pk, kind });
        self
    }

    /// Sets the 1-based ordinal (the old pk by default).
    #[must_use]
    pub fn ordinal(mut self, ordinal: u64) -> Self {
        self.input.ordinal = ordinal;
        self
    }

    pub fn build(self) -> InputRecord {
        self.input
    }
}

/// The descriptions a registered plugin gives the host.
pub fn plugin_models<P: PluginDef>() -> Vec<ModelDesc> {
    P::MODELS.iter().map(|m| (m.describe)()).collect()
}

/// Checks a registered plugin's descriptions the way the host will: each one
/// valid, and no model described twice.
pub fn check_plugin<P: PluginDef>() -> std::result::Result<(), String> {
    let models = plugin_models::<P>();
    for (i, m) in models.iter().enumerate() {
        m.check()?;
        if models[..i].iter().any(|o| o.name == m.name) {
            return Err(format!("{} is described twice", m.name));
        }
    }
    Ok(())
}
