//! `relocate plugin test`: fixture cases run through the real component with
//! no database, compared with what they expect; and the cases
//! `relocate import --capture-failures` writes for a batch a plugin failed on.
//!
//! A case is one JSON file (README: Authoring a plugin → Testing): the
//! records of one model in export shape, the pk map and existing rows they
//! meet, the import's scope, flags, seed and clock, and `expect`: each
//! record's outcome, reason and written row, and the derived rows, or the
//! one-line error the import would stop on. The replay itself is the
//! engine's ([`engine::replay`]).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use anyhow::bail;
use chrono::{DateTime, SecondsFormat, Utc};
use clap::Args;
use serde_json::{Map, Value as Json, json};

use super::inspect::{target, value_json};
use super::{PluginArgs, UsageError, file_error, plugin_host_with};
use crate::engine::{self, FailedBatch, graph::Registry, record, replay};
use crate::model::{ImportKind, ImportScope, ModelDesc, ModelName, Pk, Value};
use crate::plugin::{ImportFlags, Mapping, Usage};
use crate::reader::Export;

#[derive(Args)]
pub(super) struct TestArgs {
    /// The plugin: a .wasm component, or `builtin:NAME` for a first-party one.
    plugin: String,
    /// Case files (.json), or folders whose .json files are cases.
    #[arg(required = true, value_name = "CASES")]
    cases: Vec<PathBuf>,
    /// Rewrite each case's `expect` with what the plugin does now (the rest of the file is kept).
    #[arg(long)]
    bless: bool,
    /// Print one JSON document (every case: file, ok, problems, measures, expected and actual)
    /// instead of text.
    #[arg(long)]
    json: bool,
    /// Other plugins, when the tested one refers to their models.
    #[command(flatten)]
    plugins: PluginArgs,
}

/// The clock of a case that names none.
const DEFAULT_STARTED_AT: &str = "2024-01-01T00:00:00.000Z";

/// Some cases did not hold; each was reported above.
#[derive(Debug, thiserror::Error)]
#[error("{failed} of {total} cases failed")]
pub(super) struct CasesFailed {
    failed: usize,
    total: usize,
}

/// Runs every case, prints a line (and a diff) per case, and fails if any did.
pub(super) async fn run(args: &TestArgs) -> anyhow::Result<()> {
    let files = case_files(&args.cases)?;
    let mut host = plugin_host_with(&args.plugins, true)?;
    let (id, _) = target(&mut host, &args.plugin)?;
    let registry = Registry::new(host.plugins()).map_err(engine::Error::from)?;
    let label = host.info(id).map(|i| format!("{}@{}", i.name, i.version)).unwrap_or_default();
    let mut failed = 0;
    let mut reports = Vec::new();
    for path in &files {
        let mut doc = read_case(path)?;
        let batch = batch_of(&doc, &registry).map_err(|e| UsageError(format!("{}: {e}", path.display())))?;
        let serving = registry.get(&batch.model).map(|(p, _)| *p);
        if serving != Some(id) {
            bail!(UsageError(format!(
                "{}: {} is not imported by {label}, the plugin under test",
                path.display(),
                batch.model
            )));
        }
        let model = batch.model.clone();
        let run = replay::replay(&host, &registry, batch).await;
        let mut actual = expectation(&model, &run.result, &registry);
        let expected = normalized(doc.get("expect").cloned().unwrap_or(Json::Null));
        // The host calls are compared only where the case asks for them.
        if let (Some(actual), true) = (actual.as_object_mut(), expected.get("host_calls").is_some()) {
            actual.insert("host_calls".into(), json!(run.host_calls));
        }
        let mut problems = Vec::new();
        let diff = (expected != actual).then(|| diff(&expected, &actual));
        if diff.is_some() && !args.bless {
            problems.push("the outcome differs from `expect` (- expected, + actual):".to_string());
        }
        problems.extend(over_budget(doc.get("budget"), &run.usage, run.to_plugin));
        let status = if problems.is_empty() { "ok" } else { "FAILED" };
        if args.json {
            reports.push(json!({
                "file": path.display().to_string(),
                "ok": problems.is_empty(),
                "problems": problems,
                "blessed": args.bless && diff.is_some(),
                "records_to_plugin": run.to_plugin,
                "instructions_per_record": per_record(&run.usage, run.to_plugin),
                "peak_memory_bytes": run.usage.peak_memory,
                "millis": run.elapsed.as_millis() as u64,
                "expected": expected,
                "actual": actual,
            }));
        } else {
            println!("{status:<7} {}  ({})", path.display(), measures(&run));
            for line in &problems {
                println!("        {line}");
            }
        }
        if let Some(diff) = diff {
            if args.bless {
                if let Some(obj) = doc.as_object_mut() {
                    obj.insert("expect".into(), actual);
                }
                write_case(path, &doc)?;
                if !args.json {
                    println!("        blessed: `expect` rewritten");
                }
            } else if !args.json {
                print!("{diff}");
            }
        }
        if !problems.is_empty() {
            failed += 1;
        }
    }
    if args.json {
        let doc = json!({"cases": reports, "passed": files.len() - failed, "failed": failed});
        println!("{}", serde_json::to_string_pretty(&doc).unwrap_or_default());
    }
    if failed > 0 {
        bail!(CasesFailed { failed, total: files.len() });
    }
    if !args.json {
        println!("{} case{} passed", files.len(), if files.len() == 1 { "" } else { "s" });
    }
    Ok(())
}

/// The case files named, folders expanded to their `.json` files in name order.
fn case_files(paths: &[PathBuf]) -> Result<Vec<PathBuf>, UsageError> {
    let mut files = Vec::new();
    for path in paths {
        if path.is_dir() {
            let cannot_read = |e| file_error("read the case folder", path, e);
            let mut found = Vec::new();
            for entry in std::fs::read_dir(path).map_err(cannot_read)? {
                let file = entry.map_err(cannot_read)?.path();
                if file.extension().is_some_and(|e| e == "json") && file.is_file() {
                    found.push(file);
                }
            }
            found.sort();
            if found.is_empty() {
                return Err(UsageError(format!("{} holds no case (.json file)", path.display())));
            }
            files.extend(found);
        } else {
            files.push(path.clone());
        }
    }
    Ok(files)
}

fn read_case(path: &Path) -> Result<Json, UsageError> {
    let text = std::fs::read_to_string(path).map_err(|e| file_error("read the case", path, e))?;
    let doc: Json = serde_json::from_str(&text)
        .map_err(|e| UsageError(format!("{}: not a case: not JSON: {e}", path.display())))?;
    if !doc.is_object() {
        return Err(UsageError(format!("{}: not a case: expected a JSON object", path.display())));
    }
    Ok(doc)
}

/// Writes a case, two-space indented, keys in the order they were read.
fn write_case(path: &Path, doc: &Json) -> Result<(), UsageError> {
    let text = serde_json::to_string_pretty(doc).unwrap_or_default() + "\n";
    std::fs::write(path, text).map_err(|e| file_error("write the case", path, e))
}

/// The batch a case describes; an error says which field is wrong.
fn batch_of(doc: &Json, registry: &Registry) -> Result<replay::Batch, String> {
    let model = doc["model"].as_str().ok_or("`model` must be a model name such as \"sentry.user\"")?;
    let model = ModelName::new(model).map_err(|e| format!("`model`: {e}"))?;
    let scope = match doc["scope"].as_str().map(str::to_ascii_lowercase).as_deref() {
        Some("users" | "user") => ImportScope::Users,
        Some("organizations" | "organization") => ImportScope::Organizations,
        Some("config") => ImportScope::Config,
        Some("global") => ImportScope::Global,
        _ => return Err("`scope` must be users, organizations, config or global".into()),
    };
    let flag = |name: &str| doc["flags"][name].as_bool().unwrap_or(false);
    let flags = ImportFlags {
        merge_users: flag("merge_users"),
        overwrite_configs: flag("overwrite_configs"),
        hide_organizations: flag("hide_organizations"),
    };
    let seed = match &doc["seed"] {
        Json::Null => 0,
        s => s.as_u64().ok_or("`seed` must be a whole number")?,
    };
    let started_at = doc["started_at"].as_str().unwrap_or(DEFAULT_STARTED_AT);
    let started_at = DateTime::parse_from_rfc3339(started_at)
        .map_err(|e| format!("`started_at` is not an ISO 8601 time: {e}"))?
        .with_timezone(&Utc);

    let mut pk_map = Vec::new();
    for (target, entries) in doc["pk_map"].as_object().into_iter().flatten() {
        let target = ModelName::new(target).map_err(|e| format!("`pk_map`: {e}"))?;
        let entries = entries.as_object().ok_or("`pk_map` maps a model to {\"OLD_PK\": NEW_PK, ...}")?;
        for (old, mapping) in entries {
            let old: Pk = old.parse().map_err(|_| format!("`pk_map.{target}`: `{old}` is not a pk"))?;
            pk_map.push((
                target.clone(),
                old,
                mapping_of(mapping).map_err(|e| format!("`pk_map.{target}.{old}`: {e}"))?,
            ));
        }
    }

    let mut existing = BTreeMap::new();
    for (name, rows) in doc["existing"].as_object().into_iter().flatten() {
        let model = ModelName::new(name).map_err(|e| format!("`existing`: {e}"))?;
        let desc = registry.desc(&model).ok_or_else(|| format!("`existing`: no loaded plugin describes {model}"))?;
        let rows = rows.as_array().ok_or("`existing` maps a model to [{\"pk\": PK, \"fields\": {...}}, ...]")?;
        let mut typed = Vec::new();
        for row in rows {
            let (pk, fields) = pk_and_fields(row).map_err(|e| format!("`existing.{model}`: {e}"))?;
            let values = record::values_from_fields(desc, fields.clone()).map_err(|errors| {
                let errors: Vec<String> = errors.iter().map(ToString::to_string).collect();
                format!("`existing.{model}` pk {pk}: {}", errors.join("; "))
            })?;
            typed.push((pk, values));
        }
        existing.insert(model, typed);
    }

    let mut records = Vec::new();
    let list = doc["records"].as_array().ok_or("`records` must be a list of {\"pk\": PK, \"fields\": {...}}")?;
    for (i, rec) in list.iter().enumerate() {
        let (pk, fields) = pk_and_fields(rec).map_err(|e| format!("`records[{i}]`: {e}"))?;
        let ordinal = match &rec["ordinal"] {
            Json::Null => i as u64 + 1,
            o => o.as_u64().filter(|o| *o > 0).ok_or_else(|| format!("`records[{i}].ordinal` must be 1 or more"))?,
        };
        records.push((ordinal, pk, fields.clone()));
    }
    Ok(replay::Batch { model, scope, flags, seed, started_at, pk_map, existing, records })
}

fn pk_and_fields(row: &Json) -> Result<(Pk, &Map<String, Json>), String> {
    let pk = row["pk"].as_i64().ok_or("`pk` must be an integer")?;
    let fields = row["fields"].as_object().ok_or("`fields` must be an object")?;
    Ok((pk, fields))
}

/// `100`, or `{"pk": 100, "kind": "existing", "slug": "acme"}`.
fn mapping_of(json: &Json) -> Result<Mapping, String> {
    if let Some(pk) = json.as_i64() {
        return Ok(Mapping { new_pk: pk, kind: ImportKind::Inserted, slug: None });
    }
    let new_pk = json["pk"].as_i64().ok_or("expected a new pk, or {\"pk\": NEW_PK, \"kind\": ...}")?;
    let kind = match json["kind"].as_str().unwrap_or("inserted") {
        "inserted" => ImportKind::Inserted,
        "existing" => ImportKind::Existing,
        "overwrite" | "overwritten" => ImportKind::Overwrite,
        other => return Err(format!("kind `{other}` is none of inserted, existing, overwrite")),
    };
    Ok(Mapping { new_pk, kind, slug: json["slug"].as_str().map(str::to_string) })
}

/// What a replay did, in the case's `expect` shape.
fn expectation(model: &ModelName, result: &engine::Result<replay::Replayed>, registry: &Registry) -> Json {
    let replayed = match result {
        Ok(r) => r,
        Err(e) => return json!({"error": error_line(e)}),
    };
    let row = |desc: Option<&ModelDesc>, values: &[Value]| -> Json {
        let Some(desc) = desc else { return Json::Null };
        let fields: Map<String, Json> =
            desc.columns.iter().zip(values).map(|(c, v)| (c.field.clone(), value_json(v))).collect();
        Json::Object(fields)
    };
    let decisions: Vec<Json> = replayed
        .records
        .iter()
        .map(|r| {
            let mut d = Map::new();
            d.insert("ordinal".into(), json!(r.ordinal));
            d.insert("pk".into(), json!(r.old_pk));
            d.insert("outcome".into(), json!(r.fate.as_str()));
            if let Some(pk) = r.new_pk {
                d.insert("new_pk".into(), json!(pk));
            }
            d.insert("reason".into(), json!(r.reason));
            if let Some(values) = &r.row {
                d.insert("row".into(), row(registry.desc(model), values));
            }
            Json::Object(d)
        })
        .collect();
    let mut expect = Map::new();
    expect.insert("decisions".into(), Json::Array(decisions));
    if !replayed.derived.is_empty() {
        let derived: Vec<Json> = replayed
            .derived
            .iter()
            .map(|d| json!({"model": d.model.as_str(), "pk": d.pk, "row": row(registry.desc(&d.model), &d.values)}))
            .collect();
        expect.insert("derived".into(), Json::Array(derived));
    }
    Json::Object(expect)
}

/// `expect` as written, with an empty `derived` the same as none.
fn normalized(mut expect: Json) -> Json {
    if let Some(obj) = expect.as_object_mut()
        && obj.get("derived").and_then(Json::as_array).is_some_and(Vec::is_empty)
    {
        obj.remove("derived");
    }
    expect
}

/// An engine error as a case states it: its message on one line.
pub(super) fn error_line(e: &engine::Error) -> String {
    e.to_string().lines().map(str::trim).filter(|l| !l.is_empty()).collect::<Vec<_>>().join(" ")
}

/// Expected against actual, line by line, as a unified diff.
fn diff(expected: &Json, actual: &Json) -> String {
    let (old, new) = (pretty(expected), pretty(actual));
    let diff = similar::TextDiff::from_lines(&old, &new);
    let mut out = String::new();
    for hunk in diff.unified_diff().context_radius(3).iter_hunks() {
        for line in hunk.to_string().lines() {
            out.push_str("        ");
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

fn pretty(json: &Json) -> String {
    serde_json::to_string_pretty(json).unwrap_or_default() + "\n"
}

/// The budget lines a run breaks: `fuel_per_record` (instructions per
/// record handed to the plugin) and `memory_bytes` (peak linear memory).
fn over_budget(budget: Option<&Json>, usage: &Usage, records: usize) -> Vec<String> {
    let mut out = Vec::new();
    let Some(budget) = budget else { return out };
    if let (Some(limit), Some(per)) = (budget["fuel_per_record"].as_u64(), per_record(usage, records))
        && per > limit
    {
        out.push(format!("over budget: {per} instructions per record, the budget is {limit} (fuel_per_record)"));
    }
    if let Some(limit) = budget["memory_bytes"].as_u64() {
        let peak = usage.peak_memory as u64;
        if peak > limit {
            out.push(format!("over budget: peak memory {peak} bytes, the budget is {limit} (memory_bytes)"));
        }
    }
    out
}

fn per_record(usage: &Usage, records: usize) -> Option<u64> {
    usage.instructions.map(|i| i / records.max(1) as u64)
}

/// `3 records to the plugin, 41,210 instructions/record, peak memory 1.1 MiB, 12 ms`.
fn measures(run: &replay::Run) -> String {
    let per = per_record(&run.usage, run.to_plugin).map_or("-".into(), thousands);
    format!(
        "{} record{} to the plugin, {per} instructions/record, peak memory {:.1} MiB, {} ms",
        run.to_plugin,
        if run.to_plugin == 1 { "" } else { "s" },
        run.usage.peak_memory as f64 / f64::from(1 << 20),
        run.elapsed.as_millis()
    )
}

fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// `relocate import --capture-failures DIR`: writes the batch an import
/// stopped on, when the plugin is why, as a case that expects the error.
pub(super) struct Capture {
    dir: PathBuf,
    scope: ImportScope,
    flags: ImportFlags,
    seed: u64,
    export: std::sync::Arc<Export>,
    /// How `plugin test` names each loaded plugin (`name@version` →
    /// its file, or `builtin:NAME`).
    plugins: BTreeMap<String, String>,
    /// The import's `--plugin-timeout` and `--plugin-memory` when not the
    /// defaults: a replay needs the same limits to fail the same way.
    limits: String,
    /// What to tell the user: where the case went, or why it could not be written.
    pub said: Mutex<Option<String>>,
}

impl Capture {
    pub(super) fn new(
        dir: PathBuf,
        opts: &engine::ImportOptions,
        export: std::sync::Arc<Export>,
        host: &crate::plugin::PluginHost,
        args: &PluginArgs,
    ) -> Capture {
        let plugins = host
            .plugins()
            .map(|(_, info)| (format!("{}@{}", info.name, info.version), info.origin.to_string()))
            .collect();
        let mut limits = String::new();
        if args.plugin_timeout != 10.0 {
            limits.push_str(&format!(" --plugin-timeout {}", args.plugin_timeout));
        }
        if args.plugin_memory != 64 {
            limits.push_str(&format!(" --plugin-memory {}", args.plugin_memory));
        }
        let (scope, flags, seed) = (opts.scope, opts.flags, opts.seed);
        Capture { dir, scope, flags, seed, export, plugins, limits, said: Mutex::new(None) }
    }

    /// Writes `failed` as a case if the plugin made the batch fail.
    pub(super) fn batch_failed(&self, failed: &FailedBatch<'_>) {
        if !is_plugins_fault(failed.error) {
            return;
        }
        let said = match self.write(failed) {
            Ok(path) => {
                let plugin = self.plugins.get(failed.plugin).map_or("PLUGIN", String::as_str);
                format!(
                    "captured the failing batch as {path}: replay it with `relocate plugin test {plugin} {path}{}`",
                    self.limits,
                    path = path.display()
                )
            }
            Err(e) => format!("warning: --capture-failures: cannot write the failing batch: {e}"),
        };
        *self.said.lock().unwrap_or_else(|e| e.into_inner()) = Some(said);
    }

    fn write(&self, failed: &FailedBatch<'_>) -> Result<PathBuf, String> {
        let desc = failed.desc;
        let all = self.export.records(&desc.name);
        let mut buf = Vec::new();
        let mut records = Vec::new();
        let mut pk_map: BTreeMap<String, Map<String, Json>> = BTreeMap::new();
        for (ordinal, pk) in failed.records {
            let at = all.get(*ordinal as usize - 1).ok_or("the batch's records are not in the export")?;
            let raw = self.export.read(at, &mut buf).map_err(|e| e.to_string())?;
            for fk in &desc.foreign_keys {
                let old = raw.fields.get(&desc.columns[fk.column].field).and_then(Json::as_i64);
                let Some((old, mapping)) = old.and_then(|o| failed.pkmap.get(&fk.target, o).map(|m| (o, m))) else {
                    continue;
                };
                pk_map.entry(fk.target.to_string()).or_default().insert(old.to_string(), mapping_json(&mapping));
            }
            records.push(json!({"ordinal": ordinal, "pk": pk, "fields": raw.fields}));
        }
        let scope = match self.scope {
            ImportScope::Users => "users",
            ImportScope::Organizations => "organizations",
            ImportScope::Config => "config",
            ImportScope::Global => "global",
        };
        let case = json!({
            "description": format!(
                "captured by relocate import --capture-failures: {} stopped on this batch of {} \
                 (existing rows of the database are not captured){}",
                failed.plugin,
                desc.name,
                if self.limits.is_empty() { String::new() } else { format!("; replay with{}", self.limits) }
            ),
            "model": desc.name.as_str(),
            "scope": scope,
            "flags": {
                "merge_users": self.flags.merge_users,
                "overwrite_configs": self.flags.overwrite_configs,
                "hide_organizations": self.flags.hide_organizations,
            },
            "seed": self.seed,
            "started_at": failed.started_at.to_rfc3339_opts(SecondsFormat::Millis, true),
            "pk_map": pk_map,
            "existing": {},
            "records": records,
            "expect": {"error": error_line(failed.error)},
        });
        std::fs::create_dir_all(&self.dir).map_err(|e| format!("cannot create {}: {e}", self.dir.display()))?;
        let first = failed.records.first().map_or(0, |(o, _)| *o);
        let path = self.dir.join(format!("{}-{first}.json", desc.name));
        write_case(&path, &case).map_err(|e| e.to_string())?;
        Ok(path)
    }
}

/// Failures a replay of the batch through the plugin reproduces: the
/// plugin trapped, ran out of time or memory, gave up, broke the contract,
/// or found a record invalid.
fn is_plugins_fault(error: &engine::Error) -> bool {
    matches!(error, engine::Error::Plugin(_) | engine::Error::Contract { .. } | engine::Error::Invalid { .. })
}

fn mapping_json(mapping: &Mapping) -> Json {
    match (mapping.kind, &mapping.slug) {
        (ImportKind::Inserted, None) => json!(mapping.new_pk),
        (kind, slug) => {
            let kind = match kind {
                ImportKind::Inserted => "inserted",
                ImportKind::Existing => "existing",
                ImportKind::Overwrite => "overwrite",
            };
            let mut m = Map::new();
            m.insert("pk".into(), json!(mapping.new_pk));
            m.insert("kind".into(), json!(kind));
            if let Some(slug) = slug {
                m.insert("slug".into(), json!(slug));
            }
            Json::Object(m)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_get_thousands_separators() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1234567), "1,234,567");
    }

    #[test]
    fn mappings_round_trip_through_the_case_format() {
        for mapping in [
            Mapping { new_pk: 100, kind: ImportKind::Inserted, slug: None },
            Mapping { new_pk: 7, kind: ImportKind::Existing, slug: None },
            Mapping { new_pk: 8, kind: ImportKind::Inserted, slug: Some("acme".into()) },
        ] {
            assert_eq!(mapping_of(&mapping_json(&mapping)).unwrap(), mapping);
        }
    }
}
