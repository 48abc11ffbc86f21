//! Which plugin serves each model, and the order models are imported in.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use crate::model::{ModelDesc, ModelName};
use crate::plugin::{PluginId, PluginInfo};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Error {
    #[error("the models' dependencies form a cycle: {}", .0.iter().map(|m| m.as_str()).collect::<Vec<_>>().join(" -> "))]
    Cycle(Vec<ModelName>),
}

/// Every described model with the plugin that serves it. A later plugin
/// replaces an earlier one for the models both describe.
pub struct Registry {
    models: BTreeMap<ModelName, (PluginId, ModelDesc)>,
    /// (model, replaced plugin, replacing plugin).
    pub overrides: Vec<(ModelName, PluginId, PluginId)>,
}

impl Registry {
    pub fn new<'a>(plugins: impl IntoIterator<Item = (PluginId, &'a PluginInfo)>) -> Registry {
        let mut models = BTreeMap::new();
        let mut overrides = Vec::new();
        for (id, info) in plugins {
            for desc in &info.models {
                if let Some((old, _)) = models.insert(desc.name.clone(), (id, desc.clone())) {
                    overrides.push((desc.name.clone(), old, id));
                }
            }
        }
        Registry { models, overrides }
    }

    pub fn get(&self, model: &ModelName) -> Option<&(PluginId, ModelDesc)> {
        self.models.get(model)
    }

    pub fn desc(&self, model: &ModelName) -> Option<&ModelDesc> {
        self.models.get(model).map(|(_, d)| d)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&ModelName, &(PluginId, ModelDesc))> {
        self.models.iter()
    }

    /// All models in import order.
    pub fn order(&self) -> Result<Vec<ModelName>, Error> {
        sorted_dependencies(self.models.values().map(|(_, d)| d))
    }
}

/// Sentry's `sorted_dependencies()` (spec §3.4), quirks included: the first
/// pass takes models in ascending name order, later passes in descending
/// order, and dependencies on undescribed models are ignored.
pub fn sorted_dependencies<'a>(models: impl IntoIterator<Item = &'a ModelDesc>) -> Result<Vec<ModelName>, Error> {
    let descs: Vec<&ModelDesc> = models.into_iter().collect();
    let known: BTreeSet<&ModelName> = descs.iter().map(|d| &d.name).collect();
    let mut remaining: Vec<&ModelDesc> = descs.clone();
    remaining.sort_by(|a, b| b.name.cmp(&a.name));
    let mut placed: BTreeSet<&ModelName> = BTreeSet::new();
    let mut order = Vec::new();
    while !remaining.is_empty() {
        let mut skipped = Vec::new();
        let mut changed = false;
        while let Some(md) = remaining.pop() {
            if md.dependencies().all(|d| !known.contains(d) || placed.contains(d)) {
                placed.insert(&md.name);
                order.push(md.name.clone());
                changed = true;
            } else {
                skipped.push(md);
            }
        }
        if !changed {
            return Err(Error::Cycle(find_cycle(&skipped, &placed, &known)));
        }
        skipped.sort_by(|a, b| a.name.cmp(&b.name));
        remaining = skipped;
    }
    Ok(order)
}

/// Follows unplaced dependencies from the first stuck model until one repeats.
fn find_cycle(stuck: &[&ModelDesc], placed: &BTreeSet<&ModelName>, known: &BTreeSet<&ModelName>) -> Vec<ModelName> {
    let by_name: HashMap<&ModelName, &ModelDesc> = stuck.iter().map(|d| (&d.name, *d)).collect();
    let mut path: Vec<&ModelName> = Vec::new();
    let Some(mut at) = stuck.iter().map(|d| &d.name).min() else { return Vec::new() };
    loop {
        if let Some(start) = path.iter().position(|m| *m == at) {
            let mut cycle: Vec<ModelName> = path[start..].iter().map(|m| (*m).clone()).collect();
            cycle.push(at.clone());
            return cycle;
        }
        path.push(at);
        let next = by_name.get(at).and_then(|d| d.dependencies().filter(|d| known.contains(d) && !placed.contains(d)).min());
        match next {
            Some(n) => at = n,
            None => return path.into_iter().cloned().collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Column, ColumnKind, FkKind, ForeignKey, Ident, OnMissing, Scope, Silo};

    fn desc(name: &str, deps: &[&str]) -> ModelDesc {
        let columns = deps
            .iter()
            .enumerate()
            .map(|(i, _)| Column {
                field: format!("f{i}"),
                name: Ident::new(&format!("f{i}_id")).unwrap(),
                kind: ColumnKind::Integer,
                nullable: false,
                default: None,
            })
            .collect();
        ModelDesc {
            name: ModelName::new(name).unwrap(),
            table: Ident::new(&name.replace('.', "_")).unwrap(),
            scopes: vec![Scope::Global],
            silo: Silo::Region,
            columns,
            foreign_keys: deps
                .iter()
                .enumerate()
                .map(|(i, d)| ForeignKey {
                    column: i,
                    target: ModelName::new(d).unwrap(),
                    kind: FkKind::FlexibleForeignKey,
                    nullable: false,
                    on_missing: OnMissing::Drop,
                })
                .collect(),
            uniques: vec![],
            relocation_dependencies: vec![],
        }
    }

    fn names(v: Vec<ModelName>) -> Vec<String> {
        v.into_iter().map(|m| m.as_str().to_string()).collect()
    }

    #[test]
    fn matches_sentry_pass_order_quirk() {
        // Pass 1 (ascending) places a.a, c.c; pass 2 (descending) only b.b;
        // pass 3 (descending) e.e then d.d; f.f waits for pass 4.
        let ds = [desc("a.a", &[]), desc("b.b", &["c.c"]), desc("c.c", &[]), desc("d.d", &["c.c", "e.e"]), desc("e.e", &["b.b"]), desc("f.f", &["e.e"])];
        let order = names(sorted_dependencies(ds.iter()).unwrap());
        assert_eq!(order, ["a.a", "c.c", "b.b", "e.e", "d.d", "f.f"]);
    }

    #[test]
    fn self_references_and_unknown_targets_do_not_block() {
        let ds = [desc("a.a", &["a.a", "zz.unknown"])];
        assert_eq!(names(sorted_dependencies(ds.iter()).unwrap()), ["a.a"]);
    }

    #[test]
    fn cycles_are_named() {
        let ds = [desc("a.a", &[]), desc("b.b", &["c.c"]), desc("c.c", &["b.b"]), desc("d.d", &["b.b"])];
        let err = sorted_dependencies(ds.iter()).unwrap_err();
        assert_eq!(err.to_string(), "the models' dependencies form a cycle: b.b -> c.c -> b.b");
    }

    #[test]
    fn reproduces_sentrys_sorted_json() {
        // detailed.json → our descriptions → the same order as sorted.json.
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/fixtures/sentry/model_dependencies");
        let detailed: serde_json::Map<String, serde_json::Value> =
            serde_json::from_str(&std::fs::read_to_string(format!("{dir}/detailed.json")).unwrap()).unwrap();
        let sorted: Vec<String> = serde_json::from_str(&std::fs::read_to_string(format!("{dir}/sorted.json")).unwrap()).unwrap();
        let ds: Vec<ModelDesc> = detailed
            .iter()
            .map(|(name, m)| {
                let mut deps: Vec<String> = m["foreign_keys"].as_object().unwrap().values().map(|fk| fk["model"].as_str().unwrap().to_string()).collect();
                deps.extend(m["relocation_dependencies"].as_array().unwrap().iter().map(|d| d.as_str().unwrap().to_string()));
                let refs: Vec<&str> = deps.iter().map(|s| s.as_str()).collect();
                let mut d = desc(name, &[]);
                d.relocation_dependencies = refs.iter().map(|r| ModelName::new(r).unwrap()).collect();
                d
            })
            .collect();
        assert_eq!(names(sorted_dependencies(ds.iter()).unwrap()), sorted);
    }
}
