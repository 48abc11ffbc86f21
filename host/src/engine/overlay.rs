//! The rows a batch is about to write, held in memory, so that the next
//! batch's questions can be answered before those rows reach the database
//! (and the plugin can `resolve` the next batch while this one is written).
//!
//! An answer is the database's, taken before the batch's writes, combined
//! with the batch's rows here, under the rule the database's own statement
//! applies: `find` takes the least pk whose columns equal the key, `taken`
//! the values [`TakenRange::holds`]. Only questions whose rule is plain
//! equality of like values qualify ([`Overlay::answers`]); the engine asks
//! the database afterwards for the rest. A replay of a captured batch
//! (`replay.rs`) answers from its in-memory tables the same way.

use std::collections::{BTreeMap, HashMap};

use crate::db::{TakenRange, fold};
use crate::model::{ColumnKind, ModelDesc, ModelName, Pk, Value};

/// Rows about to be inserted, per model: pk and values in column order;
/// with the indexes the questions asked so far needed, built on first use.
#[derive(Default)]
pub(super) struct Overlay<'r> {
    rows: HashMap<&'r ModelName, Vec<(Pk, &'r [Value])>>,
    /// (model, columns) → key → least pk.
    equal: HashMap<(&'r ModelName, Vec<usize>), EqualIndex<'r>>,
    /// (model, column) → folded value → the values.
    folded: HashMap<(&'r ModelName, usize), BTreeMap<String, Vec<&'r str>>>,
}

/// Key → the least pk of the rows with it.
type EqualIndex<'r> = HashMap<Vec<Key<'r>>, Pk>;

/// A non-null value in a key. Integers, text and booleans compare as the
/// database compares them ([`Overlay::answers`]); floats (by value, `-0`
/// as `0`) and JSON (as text) only serve in-memory tables
/// (`relocate plugin test`).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
enum Key<'v> {
    Integer(i64),
    Float(u64),
    Text(&'v str),
    Boolean(bool),
    Json(&'v str),
}

impl<'v> Key<'v> {
    fn of(value: &'v Value) -> Option<Key<'v>> {
        match value {
            Value::Null => None,
            Value::Integer(i) => Some(Key::Integer(*i)),
            Value::Float(f) => Some(Key::Float((f + 0.0).to_bits())),
            Value::Text(s) => Some(Key::Text(s)),
            Value::Boolean(b) => Some(Key::Boolean(*b)),
            Value::Json(s) => Some(Key::Json(s)),
        }
    }
}

impl<'r> Overlay<'r> {
    pub(super) fn add(&mut self, model: &'r ModelName, pk: Pk, values: &'r [Value]) {
        self.rows.entry(model).or_default().push((pk, values));
    }

    /// Whether a `find` on `columns` with `key` can be answered here exactly
    /// as the database would: each column an integer, text or boolean one
    /// and each value of its kind, or null (which equals nothing). Other
    /// kinds compare by rules of their own (datetimes as instants, floats
    /// and JSON by value) that this does not repeat.
    pub(super) fn answers(desc: &ModelDesc, columns: &[usize], key: &[Value]) -> bool {
        columns.len() == key.len()
            && columns.iter().zip(key).all(|(&c, value)| {
                matches!(
                    (desc.columns.get(c).map(|c| c.kind), value),
                    (Some(_), Value::Null)
                        | (Some(ColumnKind::Integer), Value::Integer(_))
                        | (Some(ColumnKind::Text), Value::Text(_))
                        | (Some(ColumnKind::Boolean), Value::Boolean(_))
                )
            })
    }

    /// The least pk among `found` (the database's answer) and this batch's
    /// rows of `model` whose `columns` equal `key`.
    pub(super) fn find(
        &mut self,
        model: &ModelName,
        columns: &[usize],
        key: &[Value],
        found: Option<Pk>,
    ) -> Option<Pk> {
        let Some(key) = key.iter().map(Key::of).collect::<Option<Vec<_>>>() else {
            // Null equals nothing.
            return found;
        };
        let Some((model, rows)) = self.rows.get_key_value(model) else {
            return found;
        };
        let index = self.equal.entry((*model, columns.to_vec())).or_insert_with(|| {
            let mut index = EqualIndex::new();
            for (pk, values) in rows {
                let key: Option<Vec<Key<'r>>> = columns.iter().map(|&c| values.get(c).and_then(Key::of)).collect();
                if let Some(key) = key {
                    index.entry(key).and_modify(|least| *least = (*least).min(*pk)).or_insert(*pk);
                }
            }
            index
        });
        index.get(&key).copied().into_iter().chain(found).min()
    }

    /// Adds to `found` (the database's answer) the text values in `column`
    /// of this batch's rows of `model` that are taken for `base`.
    pub(super) fn taken(&mut self, model: &ModelName, column: usize, base: &str, found: &mut Vec<String>) {
        let Some((model, rows)) = self.rows.get_key_value(model) else {
            return;
        };
        let index = self.folded.entry((*model, column)).or_insert_with(|| {
            let mut index: BTreeMap<String, Vec<&'r str>> = BTreeMap::new();
            for (_, values) in rows {
                if let Some(Value::Text(v)) = values.get(column) {
                    index.entry(fold(v).into_owned()).or_default().push(v);
                }
            }
            index
        });
        let range = TakenRange::new(base);
        // Every value taken for `base` folds to `base` or `base-…`.
        let base = fold(base);
        for (folded, values) in index.range(base.to_string()..) {
            if !folded.starts_with(&*base) {
                break;
            }
            if range.holds(folded) {
                found.extend(values.iter().map(|v| v.to_string()));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(s: &str) -> ModelName {
        ModelName::new(s).unwrap()
    }

    #[test]
    fn find_takes_the_least_pk_of_the_database_and_the_batch() {
        let user = name("sentry.user");
        let rows = [
            vec![Value::Text("ann".into()), Value::Integer(1)],
            vec![Value::Text("bob".into()), Value::Integer(2)],
            vec![Value::Text("ann".into()), Value::Integer(3)],
        ];
        let mut overlay = Overlay::default();
        for (pk, values) in [(22, &rows[2]), (20, &rows[0]), (21, &rows[1])] {
            overlay.add(&user, pk, values);
        }
        let ann = [Value::Text("ann".into())];
        assert_eq!(overlay.find(&user, &[0], &ann, None), Some(20));
        assert_eq!(overlay.find(&user, &[0], &ann, Some(7)), Some(7));
        assert_eq!(overlay.find(&user, &[0], &[Value::Text("Ann".into())], None), None, "equality is exact");
        assert_eq!(overlay.find(&user, &[0, 1], &[Value::Text("ann".into()), Value::Integer(3)], None), Some(22));
        assert_eq!(overlay.find(&user, &[1], &[Value::Null], None), None, "null equals nothing");
        let email = name("sentry.email");
        assert_eq!(overlay.find(&email, &[0], &ann, Some(4)), Some(4));
    }

    #[test]
    fn taken_adds_the_batch_s_names_under_the_database_s_rule() {
        let user = name("sentry.user");
        let rows: Vec<Vec<Value>> =
            ["Ann", "ann-x1", "anna", "ann.b", "bob"].iter().map(|s| vec![Value::Text(s.to_string())]).collect();
        let mut overlay = Overlay::default();
        for (pk, values) in rows.iter().enumerate() {
            overlay.add(&user, pk as Pk, values);
        }
        let mut found = vec!["ANN-q2".to_string()];
        overlay.taken(&user, 0, "ann", &mut found);
        assert_eq!(found, ["ANN-q2", "Ann", "ann-x1"]);
    }
}
