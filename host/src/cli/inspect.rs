//! `relocate plugin inspect`: what a plugin is, what it describes, what it
//! asks of the sandbox, and whether it fits with the other plugins.

use std::io::Write as _;
use std::path::PathBuf;

use anyhow::bail;
use clap::Args;
use serde_json::{Value as Json, json};

use super::{PluginArgs, UsageError, plugin_host, read_plugin_file};
use crate::engine::{self, graph::Registry};
use crate::model::{ColumnKind, FkKind, ModelDesc, OnMissing, Silo, Value};
use crate::plugin::{self, Origin, PluginHost, PluginId};

#[derive(Args)]
pub(super) struct InspectArgs {
    /// The plugin: a .wasm component, or `builtin:NAME` for a first-party one.
    plugin: String,
    /// Print one JSON document instead of text.
    #[arg(long)]
    json: bool,
    /// Other plugins, when the inspected one refers to their models.
    #[command(flatten)]
    plugins: PluginArgs,
}

/// Loads the plugin next to the built-ins (and any `--plugin`), prints what
/// it is, then fails as an import would if its description does not fit.
pub(super) fn run(args: &InspectArgs) -> anyhow::Result<()> {
    let mut host = plugin_host(&args.plugins)?;
    let (id, size) = target(&mut host, &args.plugin)?;
    let check = Registry::new(host.plugins());
    let problem = check.as_ref().err().map(|e| e.to_string());
    let report = report(&host, id, size, check.as_ref().ok(), problem.as_deref());
    let mut out = std::io::stdout().lock();
    if args.json {
        writeln!(out, "{}", serde_json::to_string_pretty(&report)?)?;
    } else {
        write_text(&mut out, &report)?;
    }
    check.map_err(engine::Error::from)?;
    Ok(())
}

/// Loads the plugin at `text` beside the built-ins in `host`, or finds the built-in
/// `builtin:NAME`; returns its id and its size in bytes.
pub(super) fn target(host: &mut PluginHost, text: &str) -> anyhow::Result<(PluginId, usize)> {
    Ok(match text.strip_prefix("builtin:") {
        Some(name) => {
            let found = host.plugins().find(|(_, info)| matches!(info.origin, Origin::Builtin(n) if n == name));
            let Some((id, _)) = found else {
                let names: Vec<&str> = crate::builtin::BUILTIN.iter().map(|(n, _)| *n).collect();
                bail!(UsageError(format!("no built-in plugin is called {name}; there are {}", names.join(", "))));
            };
            let size = crate::builtin::BUILTIN.iter().find(|(n, _)| *n == name).map_or(0, |(_, b)| b.len());
            (id, size)
        }
        None => {
            let path = PathBuf::from(&text);
            let bytes = read_plugin_file(&path)?;
            (host.load(Origin::File(path), &bytes)?, bytes.len())
        }
    })
}

/// Everything `inspect` says, as the JSON document; the text form is
/// written from it so that the two never disagree.
fn report(host: &PluginHost, id: PluginId, size: usize, registry: Option<&Registry>, problem: Option<&str>) -> Json {
    let Some(info) = host.info(id) else {
        return Json::Null;
    };
    let replaces = |desc: &ModelDesc| {
        let (_, old, _) = registry?.overrides.iter().find(|(m, _, new)| *m == desc.name && *new == id)?;
        host.info(*old).map(|p| format!("{}@{}", p.name, p.version))
    };
    let models: Vec<Json> = info.models.iter().map(|d| model_json(d, replaces(d))).collect();
    let imports: Vec<Json> = host
        .imports(id)
        .iter()
        .map(|name| {
            let (access, note) = plugin::classify_import(name);
            json!({"name": name, "access": access.as_str(), "note": note})
        })
        .collect();
    json!({
        "contract": host.contract(id).map(|c| c.package),
        "name": info.name,
        "version": info.version,
        "origin": info.origin.to_string(),
        "size": size,
        "models": models,
        "imports": imports,
        "check": {"ok": problem.is_none(), "error": problem},
    })
}

fn model_json(desc: &ModelDesc, replaces: Option<String>) -> Json {
    let columns: Vec<Json> = desc
        .columns
        .iter()
        .map(|c| {
            json!({
                "field": c.field,
                "column": c.name.as_str(),
                "kind": kind_name(c.kind),
                "nullable": c.nullable,
                "default": c.default.as_ref().map(value_json),
            })
        })
        .collect();
    let foreign_keys: Vec<Json> = desc
        .foreign_keys
        .iter()
        .map(|fk| {
            let column = &desc.columns[fk.column];
            json!({
                "field": column.field,
                "column": column.name.as_str(),
                "target": fk.target.as_str(),
                "kind": fk_kind_name(fk.kind),
                "nullable": fk.nullable,
                "on_missing": match fk.on_missing { OnMissing::Drop => "drop", OnMissing::SetNull => "set-null" },
            })
        })
        .collect();
    let uniques: Vec<Vec<&str>> =
        desc.uniques.iter().map(|set| set.iter().map(|&i| desc.columns[i].name.as_str()).collect()).collect();
    json!({
        "name": desc.name.as_str(),
        "table": desc.table.as_str(),
        "scopes": desc.scopes.iter().map(|s| s.as_str()).collect::<Vec<_>>(),
        "silo": match desc.silo { Silo::Control => "control", Silo::Region => "region" },
        "columns": columns,
        "foreign_keys": foreign_keys,
        "uniques": uniques,
        "relocation_dependencies": desc.relocation_dependencies.iter().map(|m| m.as_str()).collect::<Vec<_>>(),
        "replaces": replaces,
    })
}

/// The contract's names for column kinds (`wit/`).
fn kind_name(kind: ColumnKind) -> &'static str {
    match kind {
        ColumnKind::Integer => "integer",
        ColumnKind::Float => "float",
        ColumnKind::Boolean => "boolean",
        ColumnKind::Text => "text",
        ColumnKind::Datetime => "datetime",
        ColumnKind::Json => "json",
    }
}

/// Sentry's names for relation kinds, as in its `detailed.json`, and
/// `Plain` for a team's own model's.
fn fk_kind_name(kind: FkKind) -> &'static str {
    match kind {
        FkKind::Plain => "Plain",
        FkKind::FlexibleForeignKey => "FlexibleForeignKey",
        FkKind::DefaultForeignKey => "DefaultForeignKey",
        FkKind::DefaultOneToOneField => "DefaultOneToOneField",
        FkKind::OneToOneCascadeDeletes => "OneToOneCascadeDeletes",
        FkKind::HybridCloudForeignKey => "HybridCloudForeignKey",
        FkKind::ImplicitForeignKey => "ImplicitForeignKey",
    }
}

pub(super) fn value_json(value: &Value) -> Json {
    match value {
        Value::Null => Json::Null,
        Value::Integer(i) => json!(i),
        Value::Float(f) => json!(f),
        Value::Boolean(b) => json!(b),
        Value::Text(s) => json!(s),
        // The text of a JSON value; shown as that value when it parses.
        Value::Json(s) => serde_json::from_str(s).unwrap_or_else(|_| json!(s)),
    }
}

/// `report` as text: one block per model, then the imports and the check.
fn write_text(out: &mut impl std::io::Write, r: &Json) -> std::io::Result<()> {
    let s = |v: &Json| v.as_str().unwrap_or_default().to_string();
    let list = |v: &Json| v.as_array().map(|a| a.iter().map(s).collect::<Vec<_>>().join(", ")).unwrap_or_default();
    let items = |v: &Json| v.as_array().cloned().unwrap_or_default();
    writeln!(out, "plugin    {} {}", s(&r["name"]), s(&r["version"]))?;
    writeln!(out, "file      {} ({} bytes)", s(&r["origin"]), r["size"])?;
    writeln!(out, "contract  {}", s(&r["contract"]))?;
    for m in items(&r["models"]) {
        writeln!(out)?;
        writeln!(out, "model {}", s(&m["name"]))?;
        writeln!(
            out,
            "  table {}, silo {}, scopes: {}",
            s(&m["table"]),
            s(&m["silo"]),
            none_if_empty(list(&m["scopes"]))
        )?;
        if !m["replaces"].is_null() {
            writeln!(out, "  replaces the model of {}", s(&m["replaces"]))?;
        }
        writeln!(out, "  columns:")?;
        for c in items(&m["columns"]) {
            let null = if c["nullable"] == true { "null" } else { "not null" };
            let default = if c["default"].is_null() { String::new() } else { format!(", default {}", c["default"]) };
            writeln!(out, "    {:<32} {:<9} {null}{default}", s(&c["column"]), s(&c["kind"]))?;
        }
        for fk in items(&m["foreign_keys"]) {
            let null = if fk["nullable"] == true { "nullable" } else { "required" };
            writeln!(
                out,
                "  foreign key {} -> {} ({}, {null}, on missing target: {})",
                s(&fk["column"]),
                s(&fk["target"]),
                s(&fk["kind"]),
                s(&fk["on_missing"])
            )?;
        }
        for set in items(&m["uniques"]) {
            writeln!(out, "  unique ({})", list(&set))?;
        }
        let deps = list(&m["relocation_dependencies"]);
        if !deps.is_empty() {
            writeln!(out, "  imported after: {deps}")?;
        }
    }
    writeln!(out)?;
    writeln!(out, "imports:")?;
    for i in items(&r["imports"]) {
        writeln!(out, "  {:<8} {:<40} {}", s(&i["access"]), s(&i["name"]), s(&i["note"]))?;
    }
    writeln!(out)?;
    match r["check"]["error"].as_str() {
        None => writeln!(out, "check: fits with the other loaded plugins"),
        Some(_) => writeln!(out, "check: refused (see the error below)"),
    }
}

fn none_if_empty(text: String) -> String {
    if text.is_empty() { "none (only written as a side effect)".into() } else { text }
}
