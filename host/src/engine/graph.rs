//! Which plugin serves each model, and the order models are imported in.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use crate::model::{ModelDesc, ModelName};
use crate::plugin::{Origin, PluginId, PluginInfo};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Error {
    #[error("the models' dependencies form a cycle: {}", .0.iter().map(|m| m.as_str()).collect::<Vec<_>>().join(" -> "))]
    Cycle(Vec<ModelName>),
    #[error(
        "plugin {plugin}: model {model}: foreign key `{field}` points at {target}, which no loaded plugin describes \
         (a typo, or load the plugin that describes it with --plugin)"
    )]
    UnknownTarget { plugin: String, model: ModelName, field: String, target: ModelName },
    #[error(
        "plugin {plugin}: model {model}: relocation dependency {target} is a model no loaded plugin describes \
         (a typo, or load the plugin that describes it with --plugin)"
    )]
    UnknownDependency { plugin: String, model: ModelName, target: ModelName },
    #[error("plugin {plugin}: model {model} uses table {table}, which model {other} of plugin {other_plugin} uses too")]
    TableClash { plugin: String, model: ModelName, table: String, other: ModelName, other_plugin: String },
    #[error("plugins {first} and {second} both describe model {model}: load only one of them")]
    ModelClash { model: ModelName, first: String, second: String },
}

/// Foreign keys that Sentry itself declares to a model it excludes from
/// relocation, as (model, field, target). No plugin describes the target, so
/// it is never imported and a non-null value drops the record, as in Sentry.
/// Every other foreign key must point at a described model.
const EXCLUDED_TARGETS: &[(&str, &str, &str)] = &[("sentry.incident", "activation", "sentry.alertruleactivations")];

/// Every described model with the plugin that serves it. An extra plugin
/// (from a file) replaces a built-in one for the models both describe.
pub struct Registry {
    models: BTreeMap<ModelName, (PluginId, ModelDesc)>,
    /// (model, replaced plugin, replacing plugin).
    pub overrides: Vec<(ModelName, PluginId, PluginId)>,
}

impl Registry {
    /// Takes the plugins in load order and checks that their descriptions
    /// fit together: no model described by two extra plugins, no table used
    /// by two models, and every foreign key and relocation dependency
    /// pointing at a described model.
    pub fn new<'a>(plugins: impl IntoIterator<Item = (PluginId, &'a PluginInfo)>) -> Result<Registry, Error> {
        let plugins: Vec<(PluginId, &PluginInfo)> = plugins.into_iter().collect();
        let label = |id: PluginId| {
            let info = plugins.iter().find(|(p, _)| *p == id).map(|(_, info)| *info);
            info.map(|i| format!("{}@{} ({})", i.name, i.version, i.origin)).unwrap_or_default()
        };
        let is_extra =
            |id: PluginId| plugins.iter().any(|(p, info)| *p == id && matches!(info.origin, Origin::File(_)));
        let mut models = BTreeMap::new();
        let mut overrides = Vec::new();
        for (id, info) in &plugins {
            for desc in &info.models {
                if let Some((old, _)) = models.insert(desc.name.clone(), (*id, desc.clone())) {
                    if is_extra(old) && is_extra(*id) {
                        return Err(Error::ModelClash {
                            model: desc.name.clone(),
                            first: label(old),
                            second: label(*id),
                        });
                    }
                    overrides.push((desc.name.clone(), old, *id));
                }
            }
        }
        let registry = Registry { models, overrides };
        registry.check(&label)?;
        Ok(registry)
    }

    /// The checks that need every served model at once.
    fn check(&self, label: &dyn Fn(PluginId) -> String) -> Result<(), Error> {
        let mut tables: HashMap<&str, (&ModelName, PluginId)> = HashMap::new();
        for (name, (id, desc)) in &self.models {
            if let Some((other, other_id)) = tables.insert(desc.table.as_str(), (name, *id)) {
                return Err(Error::TableClash {
                    plugin: label(*id),
                    model: name.clone(),
                    table: desc.table.to_string(),
                    other: other.clone(),
                    other_plugin: label(other_id),
                });
            }
        }
        let described = |m: &ModelName| self.models.contains_key(m);
        for (name, (id, desc)) in &self.models {
            for fk in &desc.foreign_keys {
                let field = desc.columns.get(fk.column).map_or("?", |c| c.field.as_str());
                let excluded = EXCLUDED_TARGETS.contains(&(name.as_str(), field, fk.target.as_str()));
                if !described(&fk.target) && !excluded {
                    return Err(Error::UnknownTarget {
                        plugin: label(*id),
                        model: name.clone(),
                        field: field.to_string(),
                        target: fk.target.clone(),
                    });
                }
            }
            if let Some(target) = desc.relocation_dependencies.iter().find(|d| !described(d)) {
                return Err(Error::UnknownDependency {
                    plugin: label(*id),
                    model: name.clone(),
                    target: target.clone(),
                });
            }
        }
        Ok(())
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
        let next =
            by_name.get(at).and_then(|d| d.dependencies().filter(|d| known.contains(d) && !placed.contains(d)).min());
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

    fn plugin(name: &str, origin: Origin, models: Vec<ModelDesc>) -> PluginInfo {
        PluginInfo { name: name.into(), version: "1.0".into(), origin, models }
    }

    fn file(name: &str) -> Origin {
        Origin::File(format!("{name}.wasm").into())
    }

    fn registry(plugins: &[PluginInfo]) -> Result<Registry, Error> {
        Registry::new(plugins.iter().enumerate().map(|(i, p)| (PluginId(i), p)))
    }

    #[test]
    fn a_foreign_key_to_an_undescribed_model_is_refused() {
        let builtin = plugin("base", Origin::Builtin("base"), vec![desc("sentry.organization", &[])]);
        let typo = plugin("acme", file("acme"), vec![desc("acme.invoice", &["sentry.organisation"])]);
        let err = registry(&[builtin.clone(), typo]).err().expect("refused");
        assert_eq!(
            err.to_string(),
            "plugin acme@1.0 (acme.wasm): model acme.invoice: foreign key `f0` points at sentry.organisation, \
             which no loaded plugin describes (a typo, or load the plugin that describes it with --plugin)"
        );
        let good = plugin("acme", file("acme"), vec![desc("acme.invoice", &["sentry.organization"])]);
        assert!(registry(&[builtin, good]).is_ok());
    }

    #[test]
    fn a_relocation_dependency_on_an_undescribed_model_is_refused() {
        let mut d = desc("acme.invoice", &[]);
        d.relocation_dependencies = vec![ModelName::new("acme.nothing").expect("a model name")];
        let err = registry(&[plugin("acme", file("acme"), vec![d])]).err().expect("refused");
        assert!(matches!(&err, Error::UnknownDependency { target, .. } if target.as_str() == "acme.nothing"), "{err}");
    }

    #[test]
    fn sentrys_own_reference_to_an_excluded_model_is_allowed() {
        let mut incident = desc("sentry.incident", &["sentry.alertruleactivations"]);
        incident.columns[0].field = "activation".into();
        assert!(registry(&[plugin("base", Origin::Builtin("base"), vec![incident.clone()])]).is_ok());
        incident.columns[0].field = "other".into();
        assert!(registry(&[plugin("base", Origin::Builtin("base"), vec![incident])]).is_err());
    }

    #[test]
    fn two_models_on_one_table_are_refused() {
        let mut other = desc("acme.other", &[]);
        other.table = Ident::new("a_a").expect("an identifier");
        let err = registry(&[
            plugin("base", Origin::Builtin("base"), vec![desc("a.a", &[])]),
            plugin("acme", file("acme"), vec![other]),
        ])
        .err()
        .expect("refused");
        assert!(matches!(&err, Error::TableClash { table, .. } if table == "a_a"), "{err}");
        assert!(err.to_string().contains("acme@1.0") && err.to_string().contains("base@1.0"), "{err}");
    }

    #[test]
    fn an_extra_plugin_replaces_a_builtin_but_two_extras_may_not_share_a_model() {
        let base = plugin("base", Origin::Builtin("base"), vec![desc("a.a", &[])]);
        let one = plugin("one", file("one"), vec![desc("a.a", &[])]);
        let two = plugin("two", file("two"), vec![desc("a.a", &[])]);
        let r = registry(&[base.clone(), one.clone()]).expect("an override is allowed");
        assert_eq!(r.overrides, vec![(ModelName::new("a.a").expect("a model name"), PluginId(0), PluginId(1))]);
        let err = registry(&[base, one, two]).err().expect("refused");
        assert_eq!(
            err.to_string(),
            "plugins one@1.0 (one.wasm) and two@1.0 (two.wasm) both describe model a.a: load only one of them"
        );
    }

    fn names(v: Vec<ModelName>) -> Vec<String> {
        v.into_iter().map(|m| m.as_str().to_string()).collect()
    }

    #[test]
    fn matches_sentry_pass_order_quirk() {
        // Pass 1 (ascending) places a.a, c.c; pass 2 (descending) only b.b;
        // pass 3 (descending) e.e then d.d; f.f waits for pass 4.
        let ds = [
            desc("a.a", &[]),
            desc("b.b", &["c.c"]),
            desc("c.c", &[]),
            desc("d.d", &["c.c", "e.e"]),
            desc("e.e", &["b.b"]),
            desc("f.f", &["e.e"]),
        ];
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
        let sorted: Vec<String> =
            serde_json::from_str(&std::fs::read_to_string(format!("{dir}/sorted.json")).unwrap()).unwrap();
        let ds: Vec<ModelDesc> = detailed
            .iter()
            .map(|(name, m)| {
                let mut deps: Vec<String> = m["foreign_keys"]
                    .as_object()
                    .unwrap()
                    .values()
                    .map(|fk| fk["model"].as_str().unwrap().to_string())
                    .collect();
                deps.extend(
                    m["relocation_dependencies"].as_array().unwrap().iter().map(|d| d.as_str().unwrap().to_string()),
                );
                let refs: Vec<&str> = deps.iter().map(|s| s.as_str()).collect();
                let mut d = desc(name, &[]);
                d.relocation_dependencies = refs.iter().map(|r| ModelName::new(r).unwrap()).collect();
                d
            })
            .collect();
        assert_eq!(names(sorted_dependencies(ds.iter()).unwrap()), sorted);
    }
}
