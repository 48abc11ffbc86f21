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
