//! The primary-key map: for every imported record, the pk it got.

use std::collections::{HashMap, HashSet};
use std::sync::RwLock;

use crate::db::Chunk;
use crate::model::{ImportKind, ModelName, Pk};
use crate::plugin::{Facts, Mapping};

/// Old pk → mapping, per model, plus the set of new pks per model so that
/// foreign keys a plugin returns can be checked.
///
/// Shared with plugin sessions (their `mapping-of` import), hence the lock;
/// the engine is its only writer.
#[derive(Default)]
pub struct PkMap {
    inner: RwLock<Inner>,
}

#[derive(Default)]
struct Inner {
    by_old: HashMap<ModelName, HashMap<Pk, Mapping>>,
    new_pks: HashMap<ModelName, HashSet<Pk>>,
}

impl PkMap {
    pub fn insert(&self, model: &ModelName, old: Pk, mapping: Mapping) {
        let mut inner = self.inner.write().unwrap_or_else(|e| e.into_inner());
        inner.new_pks.entry(model.clone()).or_default().insert(mapping.new_pk);
        inner.by_old.entry(model.clone()).or_default().insert(old, mapping);
    }

    pub fn get(&self, model: &ModelName, old: Pk) -> Option<Mapping> {
        let inner = self.inner.read().unwrap_or_else(|e| e.into_inner());
        inner.by_old.get(model)?.get(&old).cloned()
    }

    /// Whether `new` is a pk this import mapped some record of `model` to.
    pub fn is_mapped_target(&self, model: &ModelName, new: Pk) -> bool {
        let inner = self.inner.read().unwrap_or_else(|e| e.into_inner());
        inner.new_pks.get(model).is_some_and(|s| s.contains(&new))
    }

    /// Rebuilds the entries a chunk recorded (resuming an import).
    pub fn extend_from_chunk(&self, chunk: &Chunk) {
        for (old, new) in &chunk.inserted_map {
            let slug = chunk.inserted_identifiers.get(old).cloned();
            self.insert(&chunk.model, *old, Mapping { new_pk: *new, kind: ImportKind::Inserted, slug });
        }
        for (old, new) in &chunk.existing_map {
            self.insert(&chunk.model, *old, Mapping { new_pk: *new, kind: ImportKind::Existing, slug: None });
        }
        for (old, new) in &chunk.overwrite_map {
            self.insert(&chunk.model, *old, Mapping { new_pk: *new, kind: ImportKind::Overwrite, slug: None });
        }
    }
}

impl Facts for PkMap {
    fn mapping_of(&self, model: &ModelName, old_pk: Pk) -> Option<Mapping> {
        self.get(model, old_pk)
    }
}

/// A set of pks kept as ranges: the pks the host reserves for one batch are
/// mostly consecutive, so a large import's derived rows take a few entries
/// per batch instead of one per row.
#[derive(Debug, Default)]
pub struct PkRanges {
    /// First pk → last pk, inclusive; ranges neither overlap nor touch.
    ranges: std::collections::BTreeMap<Pk, Pk>,
}

impl PkRanges {
    pub fn insert(&mut self, pk: Pk) {
        if self.contains(pk) {
            return;
        }
        let (mut first, mut last) = (pk, pk);
        if let Some((&start, &end)) = self.ranges.range(..pk).next_back()
            && end.checked_add(1) == Some(pk)
        {
            self.ranges.remove(&start);
            first = start;
        }
        if let Some(next) = pk.checked_add(1)
            && let Some(end) = self.ranges.remove(&next)
        {
            last = end;
        }
        self.ranges.insert(first, last);
    }

    pub fn contains(&self, pk: Pk) -> bool {
        self.ranges.range(..=pk).next_back().is_some_and(|(_, &end)| pk <= end)
    }

    /// The number of ranges held (for tests).
    pub fn len(&self) -> usize {
        self.ranges.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn consecutive_pks_make_one_range() {
        let mut r = PkRanges::default();
        for pk in [5, 6, 7, 9, 8, 20] {
            r.insert(pk);
        }
        assert_eq!(r.len(), 2);
        for pk in [5, 6, 7, 8, 9, 20] {
            assert!(r.contains(pk), "{pk}");
        }
        for pk in [4, 10, 19, 21, i64::MIN, i64::MAX] {
            assert!(!r.contains(pk), "{pk}");
        }
        r.insert(i64::MAX);
        r.insert(i64::MIN);
        assert!(r.contains(i64::MAX) && r.contains(i64::MIN));
        r.insert(6);
        assert_eq!(r.len(), 4);
    }
}
