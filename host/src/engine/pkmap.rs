//! The primary-key map: for every imported record, the pk it got.

use std::collections::HashMap;
use std::sync::RwLock;

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
    inner: RwLock<Inner>,
}

#[derive(Default)]
struct Inner {
    by_old: HashMap<ModelName, HashMap<Pk, Mapping>>,
    new_pks: HashMap<ModelName, HashMap<Pk, ImportKind>>,
}

impl PkMap {
    pub fn insert(&self, model: &ModelName, old: Pk, mapping: Mapping) {
        let mut inner = self.inner.write().unwrap_or_else(|e| e.into_inner());
        inner.new_pks.entry(model.clone()).or_default().insert(mapping.new_pk, mapping.kind);
        inner.by_old.entry(model.clone()).or_default().insert(old, mapping);
    }

    pub fn get(&self, model: &ModelName, old: Pk) -> Option<Mapping> {
        let inner = self.inner.read().unwrap_or_else(|e| e.into_inner());
        inner.by_old.get(model)?.get(&old).cloned()
    }

    /// Whether `new` is a pk this import mapped some record of `model` to.
    pub fn is_mapped_target(&self, model: &ModelName, new: Pk) -> bool {
        let inner = self.inner.read().unwrap_or_else(|e| e.into_inner());
        inner.new_pks.get(model).is_some_and(|s| s.contains_key(&new))
    }

    /// Whether `new` is a row of `model` this import inserted.
    pub fn is_inserted(&self, model: &ModelName, new: Pk) -> bool {
        let inner = self.inner.read().unwrap_or_else(|e| e.into_inner());
        inner.new_pks.get(model).and_then(|s| s.get(&new)) == Some(&ImportKind::Inserted)
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
    }
}
