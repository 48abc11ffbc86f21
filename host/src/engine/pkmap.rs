//! The primary-key map: for every imported record, the pk it got.
//!
//! It holds one entry per mapped record of the whole import, so it is kept
//! small: old pk → new pk in one 16-byte hash entry per record (a map per
//! import kind), slugs only for the models that have them, and the new pks
//! as ranges (inserted rows get consecutive pks, so a model's inserted rows
//! are usually one range). [`PkMap::heap_bytes`] says what it costs.

use std::sync::RwLock;

use foldhash::HashMap;

use rangemap::RangeInclusiveMap;

use crate::db::Chunk;
use crate::model::{ImportKind, ModelName, Pk};
use crate::plugin::{Facts, Mapping};

/// Old pk → mapping, per model, plus how each new pk was mapped, per model,
/// so that foreign keys a plugin returns can be checked.
///
/// Shared with plugin sessions (their `mapping-of` import), hence the lock;
/// the engine is its only writer.
#[derive(Default)]
pub struct PkMap {
    inner: RwLock<HashMap<ModelName, Table>>,
}

/// One model's mappings.
#[derive(Default)]
struct Table {
    /// Old pk → new pk, one map per [`ImportKind`] (in `KINDS` order); an old
    /// pk is in at most one of them.
    /// (foldhash: a seeded hash several times faster than std's SipHash.)
    by_old: [HashMap<Pk, Pk>; 3],
    /// Old pk → the slug it was inserted under, for models with a slug.
    slugs: HashMap<Pk, Box<str>>,
    /// New pk → how it was mapped.
    new_pks: RangeInclusiveMap<Pk, ImportKind>,
}

const KINDS: [ImportKind; 3] = [ImportKind::Inserted, ImportKind::Existing, ImportKind::Overwrite];

fn slot(kind: ImportKind) -> usize {
    match kind {
        ImportKind::Inserted => 0,
        ImportKind::Existing => 1,
        ImportKind::Overwrite => 2,
    }
}

impl Table {
    fn new_pk(&self, old: Pk) -> Option<(Pk, ImportKind)> {
        self.by_old.iter().zip(KINDS).find_map(|(map, kind)| map.get(&old).map(|new| (*new, kind)))
    }
}

impl PkMap {
    pub fn insert(&self, model: &ModelName, old: Pk, mapping: Mapping) {
        self.extend(model, [(old, mapping)]);
    }

    /// Maps many old pks of `model` at once, in order: one lock and one
    /// table lookup for a whole batch, and runs of consecutive new pks of
    /// one kind (a batch's inserted rows) kept as one range.
    pub fn extend(&self, model: &ModelName, mappings: impl IntoIterator<Item = (Pk, Mapping)>) {
        let mut inner = self.inner.write().unwrap_or_else(|e| e.into_inner());
        let table = match inner.get_mut(model) {
            Some(t) => t,
            None => inner.entry(model.clone()).or_default(),
        };
        let mut run: Option<(Pk, Pk, ImportKind)> = None;
        for (old, mapping) in mappings {
            let at = slot(mapping.kind);
            // A pk repeated within a model is imported twice, as in Sentry:
            // the later record's mapping wins.
            for (i, map) in table.by_old.iter_mut().enumerate() {
                if i == at {
                    map.insert(old, mapping.new_pk);
                } else if !map.is_empty() {
                    map.remove(&old);
                }
            }
            match mapping.slug {
                Some(slug) => {
                    table.slugs.insert(old, slug.into_boxed_str());
                }
                None if !table.slugs.is_empty() => {
                    table.slugs.remove(&old);
                }
                None => {}
            }
            let new = mapping.new_pk;
            run = match run {
                Some((first, last, kind)) if kind == mapping.kind && last.checked_add(1) == Some(new) => {
                    Some((first, new, kind))
                }
                Some((first, last, kind)) => {
                    table.new_pks.insert(first..=last, kind);
                    Some((new, new, mapping.kind))
                }
                None => Some((new, new, mapping.kind)),
            };
        }
        if let Some((first, last, kind)) = run {
            table.new_pks.insert(first..=last, kind);
        }
    }

    pub fn get(&self, model: &ModelName, old: Pk) -> Option<Mapping> {
        let inner = self.inner.read().unwrap_or_else(|e| e.into_inner());
        let table = inner.get(model)?;
        let (new_pk, kind) = table.new_pk(old)?;
        Some(Mapping { new_pk, kind, slug: table.slugs.get(&old).map(|s| s.to_string()) })
    }

    /// The new pk of `old` and how it was mapped, without the slug.
    pub fn new_pk(&self, model: &ModelName, old: Pk) -> Option<(Pk, ImportKind)> {
        let inner = self.inner.read().unwrap_or_else(|e| e.into_inner());
        inner.get(model)?.new_pk(old)
    }

    /// Whether `new` is a pk this import mapped some record of `model` to.
    pub fn is_mapped_target(&self, model: &ModelName, new: Pk) -> bool {
        let inner = self.inner.read().unwrap_or_else(|e| e.into_inner());
        inner.get(model).is_some_and(|t| t.new_pks.contains_key(&new))
    }

    /// Whether `new` is a row of `model` this import inserted.
    pub fn is_inserted(&self, model: &ModelName, new: Pk) -> bool {
        let inner = self.inner.read().unwrap_or_else(|e| e.into_inner());
        inner.get(model).and_then(|t| t.new_pks.get(&new)) == Some(&ImportKind::Inserted)
    }

    /// What the map's tables take on the heap, in bytes, from their
    /// capacities (hash entries and control bytes, range entries, slugs).
    pub fn heap_bytes(&self) -> usize {
        let inner = self.inner.read().unwrap_or_else(|e| e.into_inner());
        let hash = |capacity: usize, entry: usize| capacity * (entry + 1);
        inner
            .values()
            .map(|t| {
                let by_old: usize = t.by_old.iter().map(|m| hash(m.capacity(), 16)).sum();
                let slugs = hash(t.slugs.capacity(), 24) + t.slugs.values().map(|s| s.len()).sum::<usize>();
                // A BTreeMap entry: two bounds and the value, with node overhead.
                let ranges = t.new_pks.iter().count() * 40;
                by_old + slugs + ranges
            })
            .sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Mapped records, all models together.
    pub fn len(&self) -> usize {
        let inner = self.inner.read().unwrap_or_else(|e| e.into_inner());
        inner.values().map(|t| t.by_old.iter().map(HashMap::len).sum::<usize>()).sum()
    }

    /// Rebuilds the entries a chunk recorded (resuming an import).
    pub fn extend_from_chunk(&self, chunk: &Chunk) {
        let mapping = |kind: ImportKind| {
            move |(old, new): (&Pk, &Pk)| {
                let slug =
                    (kind == ImportKind::Inserted).then(|| chunk.inserted_identifiers.get(old).cloned()).flatten();
                (*old, Mapping { new_pk: *new, kind, slug })
            }
        };
        self.extend(&chunk.model, chunk.inserted_map.iter().map(mapping(ImportKind::Inserted)));
        self.extend(&chunk.model, chunk.existing_map.iter().map(mapping(ImportKind::Existing)));
        self.extend(&chunk.model, chunk.overwrite_map.iter().map(mapping(ImportKind::Overwrite)));
    }
}

impl Facts for PkMap {
    fn mapping_of(&self, model: &ModelName, old_pk: Pk) -> Option<Mapping> {
        self.get(model, old_pk)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_pks_remember_how_they_were_mapped() {
        let user = ModelName::new("sentry.user").expect("a model name");
        let map = PkMap::default();
        map.insert(&user, 1, Mapping { new_pk: 10, kind: ImportKind::Inserted, slug: None });
        map.insert(&user, 2, Mapping { new_pk: 7, kind: ImportKind::Existing, slug: None });
        assert!(map.is_mapped_target(&user, 10) && map.is_mapped_target(&user, 7));
        assert!(map.is_inserted(&user, 10));
        assert!(!map.is_inserted(&user, 7));
        assert!(!map.is_inserted(&user, 11));
        map.insert(&user, 2, Mapping { new_pk: 11, kind: ImportKind::Inserted, slug: Some("s".into()) });
        assert_eq!(map.new_pk(&user, 2), Some((11, ImportKind::Inserted)));
        assert_eq!(map.get(&user, 2).and_then(|m| m.slug), Some("s".to_string()));
        assert_eq!(map.len(), 2);
    }

    #[test]
    fn a_mapped_row_costs_at_most_48_bytes() {
        let user = ModelName::new("sentry.user").expect("a model name");
        let map = PkMap::default();
        for n in [1_000, 100_000, 1_000_000] {
            for old in map.len() as i64..n {
                // Sparse old pks, consecutive new ones, as an import makes them.
                map.insert(&user, old * 7 + 3, Mapping { new_pk: old + 1, kind: ImportKind::Inserted, slug: None });
            }
            let per_row = map.heap_bytes() as f64 / n as f64;
            assert!(per_row <= 48.0, "{per_row:.1} bytes per mapped row at {n} rows");
        }
    }
}
