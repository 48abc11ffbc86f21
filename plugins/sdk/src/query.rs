//! Questions a plugin asks about rows already in the database, and the host's
//! answers.
//!
//! A plugin never touches the database. `prepare` lists its queries per record;
//! the host answers every query of the batch in bulk, then `resolve` reads the
//! answers. A query asked under a name ([`Ask`], [`Prepared::ask`]) is read
//! back by that name, and its answer has the query's type:
//!
//! ```
//! use relocate_plugin_sdk::{Answers, Ask, Decision, Found, Prepared, Record, Result};
//!
//! const SAME_NAME: Ask<Found> = Ask::find("same name");
//!
//! fn prepare(record: &Record) -> Result<Prepared> {
//!     Ok(Prepared::ready().ask(SAME_NAME, record.find(&["name"])?))
//! }
//!
//! fn resolve(record: Record, answers: &Answers) -> Result<Decision> {
//!     Ok(match answers.get(SAME_NAME)? {
//!         Some(pk) => Decision::reuse(pk),
//!         None => Decision::insert(record),
//!     })
//! }
//! ```
//!
//! [`Prepared::ask`]: crate::Prepared::ask

use std::fmt;
use std::marker::PhantomData;
use std::rc::Rc;

use crate::error::{Fatal, Result};
use crate::value::Value;

/// A question about rows already in the database.
#[derive(Clone, Debug, PartialEq)]
pub enum Query {
    /// Is there a row of `model` whose `columns` equal `values` (exactly, case
    /// included)? Answered with the pk of the first such row.
    Find { model: String, columns: Vec<String>, values: Vec<Value> },
    /// Which values of text column `column` are `base`, or `base-` followed by
    /// anything, ignoring case? Answered with the values found.
    Taken { model: String, column: String, base: String },
}

impl Query {
    /// A `find` on several columns; `values` in the order of `columns`.
    pub fn find(model: &str, columns: &[&str], values: Vec<Value>) -> Self {
        Self::Find { model: model.to_string(), columns: columns.iter().map(|c| c.to_string()).collect(), values }
    }

    /// A `find` on one column.
    pub fn find_by(model: &str, column: &str, value: impl Into<Value>) -> Self {
        Self::Find { model: model.to_string(), columns: vec![column.to_string()], values: vec![value.into()] }
    }

    /// A `taken` query: the existing values of `column` that a suffixed `base`
    /// could collide with.
    pub fn taken(model: &str, column: &str, base: &str) -> Self {
        Self::Taken { model: model.to_string(), column: column.to_string(), base: base.to_string() }
    }
}

/// The host's answer to one [`Query`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Answer {
    /// The pk of the first matching row, if any.
    Found(Option<i64>),
    /// The values equal to the base or starting with `base-`, ignoring case.
    Taken(Vec<String>),
}

impl Answer {
    /// Whether this answer is of the kind `query` asks for.
    pub(crate) fn answers(&self, query: &Query) -> bool {
        matches!((self, query), (Self::Found(_), Query::Find { .. }) | (Self::Taken(_), Query::Taken { .. }))
    }
}

/// The name of a query and the type of its answer: `Ask<Found>` for a
/// [`Query::Find`] (a pk, if a row matched), `Ask<Taken>` for a
/// [`Query::Taken`] (the values taken).
///
/// Declare one as a constant, ask it in `prepare` with
/// [`Prepared::ask`](crate::Prepared::ask) and read its answer in `resolve`
/// with [`Answers::get`]. Names are the plugin's own: the host never sees them.
pub struct Ask<K> {
    name: &'static str,
    _kind: PhantomData<fn() -> K>,
}

impl<K> Clone for Ask<K> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<K> Copy for Ask<K> {}

impl<K> fmt::Debug for Ask<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Ask({:?})", self.name)
    }
}

impl<K> Ask<K> {
    pub fn name(&self) -> &'static str {
        self.name
    }
}

impl Ask<Found> {
    /// A named [`Query::Find`]: its answer is the pk of a matching row.
    pub const fn find(name: &'static str) -> Self {
        Self { name, _kind: PhantomData }
    }
}

impl Ask<Taken> {
    /// A named [`Query::Taken`]: its answer is the values already taken.
    pub const fn taken(name: &'static str) -> Self {
        Self { name, _kind: PhantomData }
    }
}

/// The kind of an [`Ask`] whose query is a `find`; its answer is `Option<i64>`.
#[derive(Debug)]
pub enum Found {}

/// The kind of an [`Ask`] whose query is a `taken`; its answer is `&[String]`.
#[derive(Debug)]
pub enum Taken {}

/// What ties an [`Ask`]'s kind to its query and answer.
pub trait AskKind: sealed::Sealed {
    /// What [`Answers::get`] gives.
    type Output<'a>;
    #[doc(hidden)]
    fn fits(query: &Query) -> bool;
    #[doc(hidden)]
    fn read(answer: &Answer) -> Self::Output<'_>;
    #[doc(hidden)]
    const QUERY: &'static str;
}

impl AskKind for Found {
    type Output<'a> = Option<i64>;
    fn fits(query: &Query) -> bool {
        matches!(query, Query::Find { .. })
    }
    fn read(answer: &Answer) -> Option<i64> {
        match answer {
            Answer::Found(pk) => *pk,
            Answer::Taken(_) => None,
        }
    }
    const QUERY: &'static str = "find";
}

impl AskKind for Taken {
    type Output<'a> = &'a [String];
    fn fits(query: &Query) -> bool {
        matches!(query, Query::Taken { .. })
    }
    fn read(answer: &Answer) -> &[String] {
        match answer {
            Answer::Taken(values) => values,
            Answer::Found(_) => &[],
        }
    }
    const QUERY: &'static str = "taken";
}

mod sealed {
    pub trait Sealed {}
    impl Sealed for super::Found {}
    impl Sealed for super::Taken {}
}

/// A query's name, as `prepare` asked it: the name and whether it is a find.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct AskName {
    pub name: &'static str,
    pub find: bool,
}

impl AskName {
    pub fn of<K: AskKind>(ask: Ask<K>) -> Self {
        Self { name: ask.name, find: K::QUERY == "find" }
    }
}

/// The names [`Prepared::ask`](crate::Prepared::ask) gave some of a ready
/// record's queries; what [`Answers::get`] looks them up by.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct QueryNames(pub(crate) Vec<(AskName, usize)>);

/// Checks the names `prepare` gave a record's queries: each names one query
/// of its own kind, and no name is given twice.
pub(crate) fn check_names(model: &str, ordinal: u64, queries: &[Query], names: &[(AskName, usize)]) -> Result<()> {
    for (i, (ask, index)) in names.iter().enumerate() {
        let kind = if ask.find { "find" } else { "taken" };
        match queries.get(*index) {
            Some(q) if matches!(q, Query::Find { .. }) == ask.find => {}
            _ => {
                return Err(Fatal::internal(format!(
                    "prepare of record #{ordinal} of {model} asked `{}` (an Ask<{}>) with a query that is not a `{kind}`",
                    ask.name,
                    if ask.find { "Found" } else { "Taken" },
                )));
            }
        }
        if names[..i].iter().any(|(other, _)| other.name == ask.name) {
            return Err(Fatal::internal(format!(
                "prepare of record #{ordinal} of {model} asked `{}` twice; give each query its own name",
                ask.name
            )));
        }
    }
    Ok(())
}

/// The answers to one record's queries, in the order they were asked.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Answers {
    items: Vec<(Query, Answer)>,
    names: Vec<(AskName, usize)>,
    /// The model and record, for errors.
    model: Rc<str>,
    ordinal: u64,
}

impl Answers {
    /// Pairs queries with answers; the runtime has checked that they match,
    /// and that the names fit the queries.
    pub(crate) fn new(items: Vec<(Query, Answer)>, names: Vec<(AskName, usize)>, model: Rc<str>, ordinal: u64) -> Self {
        Self { items, names, model, ordinal }
    }

    /// The answer to the query `prepare` asked under `ask`'s name: for an
    /// `Ask<Found>` the pk found (`None`: no row matched), for an
    /// `Ask<Taken>` the values taken.
    ///
    /// Fails, naming the model, record and query, when `prepare` did not ask
    /// it for this record: reading it as "nothing found" would hide the bug.
    pub fn get<K: AskKind>(&self, ask: Ask<K>) -> Result<K::Output<'_>> {
        match self.names.iter().find(|(a, _)| a.name == ask.name) {
            Some((_, i)) if K::fits(&self.items[*i].0) => Ok(K::read(&self.items[*i].1)),
            Some(_) => Err(Fatal::internal(format!(
                "resolve of record #{} of {} read `{}` as a `{}`, but prepare asked it as another kind",
                self.ordinal,
                self.model,
                ask.name,
                K::QUERY
            ))),
            None => Err(Fatal::internal(format!(
                "resolve of record #{} of {} read `{}`, which prepare did not ask for it{}",
                self.ordinal,
                self.model,
                ask.name,
                self.asked_list()
            ))),
        }
    }

    /// Whether `prepare` asked `ask` for this record (for queries asked only
    /// for some records).
    pub fn asked<K: AskKind>(&self, ask: Ask<K>) -> bool {
        self.names.iter().any(|(a, _)| a.name == ask.name)
    }

    fn asked_list(&self) -> String {
        if self.names.is_empty() {
            return " (it asked nothing by name)".into();
        }
        let names: Vec<String> = self.names.iter().map(|(a, _)| format!("`{}`", a.name)).collect();
        format!(" (it asked {})", names.join(", "))
    }

    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// The answer to query `i`, by position (prefer named queries: [`Answers::get`]).
    pub fn answer(&self, i: usize) -> Option<&Answer> {
        self.items.get(i).map(|(_, a)| a)
    }

    /// Query `i` itself, as `prepare` asked it.
    pub fn query(&self, i: usize) -> Option<&Query> {
        self.items.get(i).map(|(q, _)| q)
    }

    /// The pk found by query `i`; `None` if nothing matched or it was not a `find`.
    pub fn found(&self, i: usize) -> Option<i64> {
        match self.answer(i) {
            Some(Answer::Found(pk)) => *pk,
            _ => None,
        }
    }

    /// The values taken according to query `i`; empty if it was not a `taken`.
    pub fn taken(&self, i: usize) -> &[String] {
        match self.answer(i) {
            Some(Answer::Taken(values)) => values,
            _ => &[],
        }
    }

    /// Every `taken` answer's values, for checks against several bases at once.
    pub fn all_taken(&self) -> impl Iterator<Item = &str> {
        self.items
            .iter()
            .flat_map(|(_, a)| match a {
                Answer::Taken(values) => values.as_slice(),
                Answer::Found(_) => &[],
            })
            .map(String::as_str)
    }

    /// Whether some answer returned `pk`: only such a pk may be reused or
    /// overwritten.
    pub fn returned(&self, pk: i64) -> bool {
        self.items.iter().any(|(_, a)| *a == Answer::Found(Some(pk)))
    }

    pub fn iter(&self) -> impl Iterator<Item = (&Query, &Answer)> {
        self.items.iter().map(|(q, a)| (q, a))
    }
}
