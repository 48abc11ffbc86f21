//! What a plugin says about a record: [`Prepared`] after the first look,
//! [`Decision`] once its queries are answered.

use crate::error::FieldError;
use crate::model::Scope;
use crate::query::{Ask, AskKind, AskName, Query, QueryNames};
use crate::record::Record;
use crate::value::Value;

/// The outcome of `prepare` for one record.
#[derive(Clone, Debug, PartialEq)]
pub enum Prepared {
    /// Go on to `resolve` once these queries are answered.
    Ready {
        /// The record's own scope, for models with several; `None` means the
        /// model's only scope.
        scope: Option<Scope>,
        queries: Vec<Query>,
        /// The names some of `queries` were asked under ([`Prepared::ask`]).
        names: QueryNames,
    },
    /// Leave the record out, saying why.
    Skip(String),
    /// The record is bad; the import stops with these errors.
    Invalid(Vec<FieldError>),
}

impl Prepared {
    /// Ready in the model's only scope, with no queries.
    pub fn ready() -> Self {
        Self::Ready { scope: None, queries: Vec::new(), names: QueryNames::default() }
    }

    /// Ready in `scope`: what a model with several scopes must say.
    pub fn ready_in(scope: Scope) -> Self {
        Self::Ready { scope: Some(scope), queries: Vec::new(), names: QueryNames::default() }
    }

    /// Adds a query to a `Ready` under `ask`'s name, so that `resolve` reads
    /// its answer with [`Answers::get`](crate::Answers::get); other outcomes
    /// are returned unchanged.
    ///
    /// The query must be of `ask`'s kind (a `find` for an `Ask<Found>`), and
    /// a name is asked at most once per record: the SDK stops the import
    /// otherwise, naming the model, record and name.
    #[must_use]
    pub fn ask<K: AskKind>(mut self, ask: Ask<K>, query: Query) -> Self {
        if let Self::Ready { queries, names, .. } = &mut self {
            names.0.push((AskName::of(ask), queries.len()));
            queries.push(query);
        }
        self
    }

    /// Adds a query to a `Ready`, to be read by position
    /// ([`Answers::found`](crate::Answers::found)); other outcomes are
    /// returned unchanged. Prefer [`Prepared::ask`].
    #[must_use]
    pub fn with_query(mut self, query: Query) -> Self {
        if let Self::Ready { queries, .. } = &mut self {
            queries.push(query);
        }
        self
    }

    /// Adds several queries to a `Ready`.
    #[must_use]
    pub fn with_queries(mut self, more: impl IntoIterator<Item = Query>) -> Self {
        if let Self::Ready { queries, .. } = &mut self {
            queries.extend(more);
        }
        self
    }

    pub fn skip(reason: impl Into<String>) -> Self {
        Self::Skip(reason.into())
    }

    pub fn invalid(error: FieldError) -> Self {
        Self::Invalid(vec![error])
    }
}

/// The final word on one record.
#[derive(Clone, Debug, PartialEq)]
pub enum Decision {
    /// Insert a new row. With `pk`, keep that pk instead of a new one.
    Insert {
        values: Vec<Value>,
        pk: Option<i64>,
    },
    /// Write nothing; map the record to this existing row (`existing`).
    /// Only a pk returned by one of the record's answers is valid.
    Reuse(i64),
    /// Overwrite this existing row with `values`, keeping its pk
    /// (`overwrite`). Same rule as `Reuse`.
    Overwrite {
        pk: i64,
        values: Vec<Value>,
    },
    Skip(String),
    Invalid(Vec<FieldError>),
}

impl Decision {
    /// Inserts the record as it now is, under a new pk.
    pub fn insert(record: Record) -> Self {
        Self::Insert { values: record.into_values(), pk: None }
    }

    /// Inserts the record keeping `pk` (Sentry keeps project ids in global scope).
    pub fn insert_with_pk(record: Record, pk: i64) -> Self {
        Self::Insert { values: record.into_values(), pk: Some(pk) }
    }

    /// Maps the record to an existing row, writing nothing.
    pub fn reuse(pk: i64) -> Self {
        Self::Reuse(pk)
    }

    /// Replaces an existing row's values with the record's, keeping its pk.
    pub fn overwrite(pk: i64, record: Record) -> Self {
        Self::Overwrite { pk, values: record.into_values() }
    }

    pub fn skip(reason: impl Into<String>) -> Self {
        Self::Skip(reason.into())
    }

    pub fn invalid(error: FieldError) -> Self {
        Self::Invalid(vec![error])
    }
}
