//! The plumbing between the contract and a plugin's [`Model`] impls: finding
//! the model a session is for, the batch loop, per-batch state between
//! `prepare` and `resolve`, and checking both directions.
//!
//! It speaks the SDK's own types, so that it runs natively too: the wasm glue
//! (`__wit`) and [`crate::testing`] both drive this same code.

use std::rc::Rc;

use crate::Model;
use crate::error::{Fatal, FieldError, Result};
use crate::host;
use crate::model::ModelDesc;
use crate::outcome::{Decision, Prepared};
use crate::query::{Answer, Answers, Query, QueryNames, check_names};
use crate::record::{MappedRef, Record};
use crate::session::Session;
use crate::value::Value;

/// What `register_plugin!` declares: the plugin's name, version and models.
#[doc(hidden)]
pub trait PluginDef: 'static {
    const NAME: &'static str;
    const VERSION: &'static str;
    const MODELS: &'static [ModelEntry];
}

/// One model of a plugin, with its type erased.
#[doc(hidden)]
pub struct ModelEntry {
    pub describe: fn() -> ModelDesc,
    open: fn(&Session) -> Result<Box<dyn DynModel>>,
}

impl ModelEntry {
    pub const fn of<M: Model>() -> Self {
        Self { describe: M::describe, open: open::<M> }
    }
}

fn open<M: Model>(session: &Session) -> Result<Box<dyn DynModel>> {
    Ok(Box::new(M::new(session)?))
}

/// [`Model`] without its constructor, so it can be boxed.
trait DynModel {
    fn prepare(&mut self, session: &Session, record: &mut Record) -> Result<Prepared>;
    fn resolve(&mut self, session: &Session, record: Record, answers: &Answers) -> Result<Decision>;
}

impl<M: Model> DynModel for M {
    fn prepare(&mut self, session: &Session, record: &mut Record) -> Result<Prepared> {
        Model::prepare(self, session, record)
    }

    fn resolve(&mut self, session: &Session, record: Record, answers: &Answers) -> Result<Decision> {
        Model::resolve(self, session, record, answers)
    }
}

/// One exported record as the host hands it over.
#[derive(Clone, Debug, PartialEq)]
pub struct InputRecord {
    pub ordinal: u64,
    pub old_pk: i64,
    /// In the model's column order.
    pub values: Vec<Value>,
    pub refs: Vec<MappedRef>,
}

/// The answers to one ready record's queries, in order.
#[derive(Clone, Debug, PartialEq)]
pub struct Answered {
    /// Index of the record in the batch given to `prepare`.
    pub index: u32,
    pub answers: Vec<Answer>,
}

/// The decision on the record at `index` of the last batch.
#[derive(Clone, Debug, PartialEq)]
pub struct Decided {
    pub index: u32,
    pub decision: Decision,
    pub derived: Vec<crate::Derived>,
}

/// A ready record waiting for its answers.
struct Pending {
    record: Record,
    queries: Vec<Query>,
    names: QueryNames,
}

/// The state of one model's import: the guest half of the `session` resource.
#[doc(hidden)]
pub struct Runner {
    session: Session,
    desc: Rc<ModelDesc>,
    /// `desc.name`, shared with every record's [`Answers`].
    name: Rc<str>,
    model: Option<Box<dyn DynModel>>,
    /// Set by the first fatal error; every later call repeats it, because the
    /// model's state can no longer be trusted.
    failed: Option<Fatal>,
    /// By index in the last batch; `None` for records that were not ready.
    pending: Vec<Option<Pending>>,
    awaiting_resolve: bool,
}

impl Runner {
    /// Opens the session for `session.model()` among `models`.
    ///
    /// The contract's constructor cannot fail, so an unknown model or a
    /// failing [`Model::new`] is kept and returned by the first `prepare`.
    pub fn open(models: &[ModelEntry], session: Session) -> Self {
        let found = models.iter().map(|m| (m, (m.describe)())).find(|(_, desc)| desc.name == session.model());
        let (model, desc, failed) = match found {
            Some((entry, desc)) => match (entry.open)(&session) {
                Ok(model) => (Some(model), desc, None),
                Err(e) => (None, desc, Some(e)),
            },
            None => {
                let desc = ModelDesc::new(session.model(), "", session.scope(), crate::Silo::Region);
                (None, desc, Some(Fatal::UnsupportedModel(session.model().to_string())))
            }
        };
        let name = Rc::from(desc.name.as_str());
        Self { session, desc: Rc::new(desc), name, model, failed, pending: Vec::new(), awaiting_resolve: false }
    }

    #[cfg_attr(target_arch = "wasm32", allow(dead_code))]
    pub fn session(&self) -> &Session {
        &self.session
    }

    /// Runs `prepare` over a batch: one outcome per record, in order.
    pub fn prepare(&mut self, batch: Vec<InputRecord>) -> Result<Vec<Prepared>> {
        let result = self.try_prepare(batch);
        self.remember(result)
    }

    /// Runs `resolve` over the answers to the last batch's ready records.
    pub fn resolve(&mut self, answers: Vec<Answered>) -> Result<Vec<Decided>> {
        let result = self.try_resolve(answers);
        self.remember(result)
    }

    fn remember<T>(&mut self, result: Result<T>) -> Result<T> {
        if let Err(e) = &result {
            self.failed = Some(e.clone());
            self.pending.clear();
        }
        result
    }

    fn try_prepare(&mut self, batch: Vec<InputRecord>) -> Result<Vec<Prepared>> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        let Some(model) = self.model.as_mut() else {
            return Err(Fatal::internal("the session has no model"));
        };
        // The contract calls resolve once per prepare; a host that skips it for
        // a batch with nothing ready loses nothing, so do not insist.
        self.pending.clear();
        let mut out = Vec::with_capacity(batch.len());
        for (i, input) in batch.into_iter().enumerate() {
            let index = u32::try_from(i).map_err(|_| Fatal::protocol("batch too large"))?;
            host::at_record(index);
            let mut record = Record::new(Rc::clone(&self.desc), input.ordinal, input.old_pk, input.values, input.refs)?;
            let prepared = model.prepare(&self.session, &mut record)?;
            let pending = match &prepared {
                Prepared::Ready { scope, queries, names } => {
                    check_scope(&self.desc, *scope, &record)?;
                    check_names(&self.desc.name, record.ordinal(), queries, &names.0)?;
                    Some(Pending { record, queries: queries.clone(), names: names.clone() })
                }
                Prepared::Skip(_) | Prepared::Invalid(_) => None,
            };
            self.pending.push(pending);
            out.push(prepared);
        }
        self.awaiting_resolve = true;
        Ok(out)
    }

    fn try_resolve(&mut self, answered: Vec<Answered>) -> Result<Vec<Decided>> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        let Some(model) = self.model.as_mut() else {
            return Err(Fatal::internal("the session has no model"));
        };
        if !std::mem::take(&mut self.awaiting_resolve) {
            return Err(Fatal::protocol("resolve was called without a prepare before it"));
        }
        let mut out = Vec::with_capacity(answered.len());
        for Answered { index, answers } in answered {
            let Some(Pending { record, queries, names }) = self.pending.get_mut(index as usize).and_then(Option::take)
            else {
                return Err(Fatal::protocol(format!(
                    "answers for record {index}, which was not ready or was answered twice"
                )));
            };
            if answers.len() != queries.len() {
                return Err(Fatal::protocol(format!(
                    "record {index} asked {} queries but got {} answers",
                    queries.len(),
                    answers.len()
                )));
            }
            if let Some(q) = queries.iter().zip(&answers).position(|(q, a)| !a.answers(q)) {
                return Err(Fatal::protocol(format!("answer {q} of record {index} does not fit its query")));
            }
            host::at_record(index);
            let ordinal = record.ordinal();
            let answers =
                Answers::new(queries.into_iter().zip(answers).collect(), names.0, Rc::clone(&self.name), ordinal);
            self.session.take_derived();
            let decision = model.resolve(&self.session, record, &answers)?;
            let decision = check_decision(&self.desc, ordinal, decision, &answers)?;
            let derived = self.session.take_derived();
            // A record that is not written takes its side effects with it.
            let derived =
                if matches!(decision, Decision::Skip(_) | Decision::Invalid(_)) { Vec::new() } else { derived };
            out.push(Decided { index, decision, derived });
        }
        self.pending.clear();
        Ok(out)
    }
}

/// A ready record's scope must be one of the model's, and must be given when
/// there are several: the host cannot guess it.
fn check_scope(desc: &ModelDesc, scope: Option<crate::Scope>, record: &Record) -> Result<()> {
    match scope {
        None if desc.scopes.len() > 1 => Err(Fatal::internal(format!(
            "{} has several scopes; `prepare` must give record #{} its own (Prepared::ready_in)",
            desc.name,
            record.ordinal()
        ))),
        Some(s) if !desc.scopes.contains(&s) => Err(Fatal::internal(format!(
            "record #{} of {} was put in scope {s}, which the model does not have",
            record.ordinal(),
            desc.name
        ))),
        _ => Ok(()),
    }
}

/// Catches what the host would reject, naming the model and record.
///
/// A null in a NOT NULL column is the export's fault (the plugin passed it
/// through), so it makes the record invalid; any other misfit is a bug.
fn check_decision(desc: &ModelDesc, ordinal: u64, decision: Decision, answers: &Answers) -> Result<Decision> {
    let (pk, values) = match &decision {
        Decision::Insert { values, .. } => (None, Some(values)),
        Decision::Reuse(pk) => (Some(*pk), None),
        Decision::Overwrite { pk, values } => (Some(*pk), Some(values)),
        Decision::Skip(_) | Decision::Invalid(_) => (None, None),
    };
    if let Some(pk) = pk
        && !answers.returned(pk)
    {
        return Err(Fatal::internal(format!(
            "record #{ordinal} of {} was mapped to pk {pk}, which none of its answers returned",
            desc.name
        )));
    }
    if let Some(values) = values {
        if values.len() != desc.columns.len() {
            return Err(Fatal::internal(format!(
                "record #{ordinal} of {} was decided with {} values",
                desc.name,
                values.len()
            )));
        }
        let mut errors = Vec::new();
        for (value, column) in values.iter().zip(&desc.columns) {
            if !value.fits(column.kind) {
                return Err(Fatal::internal(format!(
                    "record #{ordinal} of {}: a {} value does not fit column `{}` ({})",
                    desc.name,
                    value.kind_name(),
                    column.name,
                    column.kind
                )));
            }
            if value.is_null() && !column.nullable {
                errors.push(FieldError::new(&column.name, "must not be null"));
            }
        }
        if !errors.is_empty() {
            return Ok(Decision::Invalid(errors));
        }
    }
    Ok(decision)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{TestHost, record};
    use crate::{ColumnKind, FieldError, ImportFlags, ImportKind, Scope, Silo};

    /// Inserts, or reuses the row with the same name.
    struct Thing;

    impl Model for Thing {
        fn describe() -> ModelDesc {
            ModelDesc::new("test.thing", "test_thing", Scope::Config, Silo::Region)
                .column("name", ColumnKind::Text)
                .nullable_column("note", ColumnKind::Text)
                .unique(&["name"])
        }

        fn new(_: &Session) -> Result<Self> {
            Ok(Self)
        }

        fn prepare(&mut self, _: &Session, record: &mut Record) -> Result<Prepared> {
            if record.text("name") == Some("bad") {
                return Ok(Prepared::invalid(FieldError::new("name", "is bad")));
            }
            Ok(Prepared::ready().with_query(record.find(&["name"])?))
        }

        fn resolve(&mut self, _: &Session, record: Record, answers: &Answers) -> Result<Decision> {
            Ok(match answers.found(0) {
                Some(pk) if record.text("note") == Some("lie") => Decision::reuse(pk + 1),
                Some(pk) => Decision::reuse(pk),
                None => Decision::insert(record),
            })
        }
    }

    /// Has two scopes but keeps the default `prepare`.
    struct TwoScopes;

    impl Model for TwoScopes {
        fn describe() -> ModelDesc {
            let mut desc = ModelDesc::new("test.two", "test_two", Scope::Config, Silo::Control);
            desc.scopes.push(Scope::Global);
            desc
        }

        fn new(_: &Session) -> Result<Self> {
            Ok(Self)
        }
    }

    fn thing(pk: i64, name: &str) -> InputRecord {
        record::<Thing>(pk).set("name", name).build()
    }

    #[test]
    fn run_inserts_then_reuses() {
        let host = TestHost::new(1);
        host.insert_row("test.thing", 5, &[("name", "old".into())]);
        let mut s = host.session::<Thing>(Scope::Config, ImportFlags::default());
        let out = s.run(vec![thing(1, "old"), thing(2, "new"), thing(3, "bad")]).unwrap();
        assert_eq!(out[0], Decision::Reuse(5));
        assert!(matches!(&out[1], Decision::Insert { pk: None, .. }));
        assert!(matches!(&out[2], Decision::Invalid(e) if e[0].field.as_deref() == Some("name")));
        assert_eq!(host.mapping("test.thing", 1).map(|m| m.kind), Some(ImportKind::Existing));
        assert_eq!(host.mapping("test.thing", 2).map(|m| m.kind), Some(ImportKind::Inserted));
        // at-record before each prepare (0, 1, 2), then before each resolve (0, 1).
        assert_eq!(host.at_records(), vec![0, 1, 2, 0, 1]);
    }

    #[test]
    fn reusing_a_pk_no_answer_returned_is_fatal() {
        let host = TestHost::new(1);
        host.insert_row("test.thing", 5, &[("name", "old".into())]);
        let mut s = host.session::<Thing>(Scope::Config, ImportFlags::default());
        let input = record::<Thing>(1).set("name", "old").set("note", "lie").build();
        assert!(matches!(s.run(vec![input]), Err(Fatal::Internal(m)) if m.contains("pk 6")));
        // The session stays failed.
        assert!(matches!(s.prepare(vec![thing(2, "x")]), Err(Fatal::Internal(_))));
    }

    #[test]
    fn null_in_not_null_column_makes_the_record_invalid() {
        let host = TestHost::new(1);
        let mut s = host.session::<Thing>(Scope::Config, ImportFlags::default());
        let out = s.run(vec![record::<Thing>(1).build()]).unwrap();
        assert!(matches!(&out[0], Decision::Invalid(e) if e[0].field.as_deref() == Some("name")));
    }

    #[test]
    fn unknown_model_fails_on_first_prepare() {
        let _host = TestHost::new(1);
        let session = Session::new("test.nope", Scope::Config, ImportFlags::default(), "");
        let mut runner = Runner::open(&[ModelEntry::of::<Thing>()], session);
        assert_eq!(runner.prepare(vec![]), Err(Fatal::UnsupportedModel("test.nope".into())));
    }

    #[test]
    fn several_scopes_need_an_explicit_scope() {
        let host = TestHost::new(1);
        let mut s = host.session::<TwoScopes>(Scope::Global, ImportFlags::default());
        let input = record::<TwoScopes>(1).build();
        assert!(matches!(s.prepare(vec![input]), Err(Fatal::Internal(m)) if m.contains("several scopes")));
    }

    #[test]
    fn protocol_errors_are_fatal() {
        let host = TestHost::new(1);
        let mut s = host.session::<Thing>(Scope::Config, ImportFlags::default());
        assert!(matches!(s.resolve(vec![]), Err(Fatal::Protocol(_))));

        let mut s = host.session::<Thing>(Scope::Config, ImportFlags::default());
        let wrong = InputRecord { ordinal: 1, old_pk: 1, values: vec![], refs: vec![] };
        assert!(matches!(s.prepare(vec![wrong]), Err(Fatal::Protocol(_))));

        let mut s = host.session::<Thing>(Scope::Config, ImportFlags::default());
        s.prepare(vec![thing(1, "a")]).unwrap();
        let taken = Answered { index: 0, answers: vec![Answer::Taken(vec![])] };
        assert!(matches!(s.resolve(vec![taken]), Err(Fatal::Protocol(_))));

        let mut s = host.session::<Thing>(Scope::Config, ImportFlags::default());
        s.prepare(vec![thing(1, "a")]).unwrap();
        let twice = Answered { index: 0, answers: vec![Answer::Found(None)] };
        assert!(matches!(s.resolve(vec![twice.clone(), twice]), Err(Fatal::Protocol(_))));
    }

    const SAME_NAME: crate::Ask<crate::Found> = crate::Ask::find("same name");
    const NAMES: crate::Ask<crate::Taken> = crate::Ask::taken("names");

    /// Asks by name; the note says how to get it wrong.
    struct Named;

    impl Model for Named {
        fn describe() -> ModelDesc {
            ModelDesc::new("test.named", "test_named", Scope::Config, Silo::Region)
                .column("name", ColumnKind::Text)
                .nullable_column("note", ColumnKind::Text)
        }

        fn new(_: &Session) -> Result<Self> {
            Ok(Self)
        }

        fn prepare(&mut self, _: &Session, record: &mut Record) -> Result<Prepared> {
            let name = record.text("name").unwrap_or_default().to_string();
            Ok(match record.text("note") {
                Some("ask nothing") => Prepared::ready(),
                Some("wrong kind") => Prepared::ready().ask(NAMES, record.find(&["name"])?),
                Some("twice") => {
                    Prepared::ready().ask(SAME_NAME, record.find(&["name"])?).ask(SAME_NAME, record.find(&["name"])?)
                }
                _ => Prepared::ready()
                    .ask(NAMES, Query::taken("test.named", "name", &name))
                    .ask(SAME_NAME, record.find(&["name"])?),
            })
        }

        fn resolve(&mut self, _: &Session, mut record: Record, answers: &Answers) -> Result<Decision> {
            let taken = answers.get(NAMES)?.len();
            Ok(match answers.get(SAME_NAME)? {
                Some(pk) => Decision::reuse(pk),
                None => {
                    record.set("note", format!("{taken} taken"))?;
                    Decision::insert(record)
                }
            })
        }
    }

    fn named(pk: i64, name: &str, note: Option<&str>) -> InputRecord {
        let r = record::<Named>(pk).set("name", name).ordinal(pk as u64);
        match note {
            Some(note) => r.set("note", note),
            None => r,
        }
        .build()
    }

    #[test]
    fn answers_are_read_by_the_name_they_were_asked_under() {
        let host = TestHost::new(1);
        host.insert_row("test.named", 5, &[("name", "old".into())]);
        host.insert_row("test.named", 6, &[("name", "new-1".into())]);
        let mut s = host.session::<Named>(Scope::Config, ImportFlags::default());
        let out = s.run(vec![named(1, "old", None), named(2, "new", None)]).unwrap();
        assert_eq!(out[0], Decision::Reuse(5));
        assert!(matches!(&out[1], Decision::Insert { values, .. } if values[1] == Value::Text("1 taken".into())));
    }

    #[test]
    fn reading_a_name_prepare_did_not_ask_names_the_model_record_and_query() {
        let host = TestHost::new(1);
        let mut s = host.session::<Named>(Scope::Config, ImportFlags::default());
        let err = s.run(vec![named(3, "a", Some("ask nothing"))]).unwrap_err();
        assert_eq!(
            err,
            Fatal::internal(
                "resolve of record #3 of test.named read `names`, which prepare did not ask for it \
                 (it asked nothing by name)"
            )
        );
    }

    #[test]
    fn a_name_asked_with_the_wrong_query_or_twice_is_fatal() {
        let host = TestHost::new(1);
        let mut s = host.session::<Named>(Scope::Config, ImportFlags::default());
        let err = s.prepare(vec![named(4, "a", Some("wrong kind"))]).unwrap_err();
        assert!(matches!(&err, Fatal::Internal(m) if m.contains("#4 of test.named") && m.contains("`names`")), "{err}");

        let mut s = host.session::<Named>(Scope::Config, ImportFlags::default());
        let err = s.prepare(vec![named(5, "a", Some("twice"))]).unwrap_err();
        assert!(matches!(&err, Fatal::Internal(m) if m.contains("`same name` twice")), "{err}");
    }

    #[test]
    fn records_out_of_scope_may_go_unanswered() {
        let host = TestHost::new(1);
        let mut s = host.session::<Thing>(Scope::Config, ImportFlags::default());
        s.prepare(vec![thing(1, "a"), thing(2, "b")]).unwrap();
        let decided = s.resolve(vec![Answered { index: 1, answers: vec![Answer::Found(None)] }]).unwrap();
        assert_eq!(decided.len(), 1);
        assert_eq!(decided[0].index, 1);
    }
}
