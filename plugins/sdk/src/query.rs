//! Questions a plugin asks about rows already in the database, and the host's
//! answers.
//!
//! A plugin never touches the database. `prepare` lists its queries per record;
//! the host answers every query of the batch in bulk, then `resolve` sees the
//! answers in the order the queries were asked.

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

/// The answers to one record's queries, in the order they were asked.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Answers {
    items: Vec<(Query, Answer)>,
}

impl Answers {
    /// Pairs queries with answers; the runtime has checked that they match.
    pub(crate) fn new(items: Vec<(Query, Answer)>) -> Self {
        Self { items }
    }

    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// The answer to query `i`.
    pub fn get(&self, i: usize) -> Option<&Answer> {
        self.items.get(i).map(|(_, a)| a)
    }

    /// Query `i` itself, as `prepare` asked it.
    pub fn query(&self, i: usize) -> Option<&Query> {
        self.items.get(i).map(|(q, _)| q)
    }

    /// The pk found by query `i`; `None` if nothing matched or it was not a `find`.
    pub fn found(&self, i: usize) -> Option<i64> {
        match self.get(i) {
            Some(Answer::Found(pk)) => *pk,
            _ => None,
        }
    }

    /// The values taken according to query `i`; empty if it was not a `taken`.
    pub fn taken(&self, i: usize) -> &[String] {
        match self.get(i) {
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
