//! Generates the crate's model descriptions from `data/detailed.json` (Sentry's
//! model registry) and `data/columns.json` (the stored fields, inferred from the
//! fixtures by `tools/infer-columns.py`), and splits the models into those a
//! dedicated plugin serves (`data/special.txt`) and the plain rest, which
//! `sentry-generic` serves.
//!
//! The output is static data (`&'static str` and slices), so a plugin that
//! names only the models it owns links only those.

use std::collections::BTreeMap;
use std::env;
use std::fmt::Write as _;
use std::fs;
use std::path::PathBuf;

use serde_json::Value;

/// `writeln!` into a `String`, which cannot fail.
macro_rules! emit {
    ($dst:expr, $($arg:tt)*) => {
        writeln!($dst, $($arg)*).expect("writing to a String cannot fail")
    };
}

/// Sentry nulls this foreign key instead of dropping the member when the
/// inviter was not imported (spec §4.3).
const SET_NULL: &[(&str, &str)] = &[("sentry.organizationmember", "inviter_id")];

/// Scopes a model's instances can be in beyond those the registry lists:
/// Sentry's `SavedSearch.get_relocation_scope` puts `is_global` searches in
/// Global although the class declares Organization only (spec §5.6).
const EXTRA_SCOPES: &[(&str, &str)] = &[("sentry.savedsearch", "Global")];

/// Unique sets Sentry enforces only under a condition (partial unique
/// indexes), which `detailed.json` drops. As plain unique indexes they would
/// reject valid data, so they are left out; the other set of each model
/// still holds where it applies.
const CONDITIONAL_UNIQUES: &[(&str, &[&str])] = &[
    // `WHERE is_global`: any number of organizations' searches share a name.
    ("sentry.savedsearch", &["is_global", "name"]),
    // `WHERE visibility = 'owner_pinned'`: an owner has many shared searches.
    ("sentry.savedsearch", &["organization", "owner_id", "type"]),
    // `WHERE organization_id IS NULL`; with an organization the set
    // (application, organization_id, user) applies instead.
    ("sentry.apiauthorization", &["application", "user"]),
];

fn main() {
    let dir = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let detailed_path = dir.join("data/detailed.json");
    let columns_path = dir.join("data/columns.json");
    let derived_path = dir.join("data/derived.json");
    let special_path = dir.join("data/special.txt");
    println!("cargo:rerun-if-changed={}", detailed_path.display());
    println!("cargo:rerun-if-changed={}", columns_path.display());
    println!("cargo:rerun-if-changed={}", derived_path.display());
    println!("cargo:rerun-if-changed={}", special_path.display());
    let special = read_special(&special_path);

    let detailed = read_json(&detailed_path);
    let detailed = detailed.as_object().expect("detailed.json is an object");
    let columns = read_json(&columns_path);
    let mut columns: BTreeMap<&String, &Vec<Value>> = columns
        .as_object()
        .expect("columns.json is an object")
        .iter()
        .map(|(name, cols)| (name, cols.as_array().unwrap_or_else(|| panic!("columns.json: {name} is not a list"))))
        .collect();
    // Models only ever written as side effects (no scope): kept on purpose.
    let derived = read_json(&derived_path);
    let derived: BTreeMap<&String, &Vec<Value>> = derived
        .as_object()
        .expect("derived.json is an object")
        .iter()
        .filter(|(name, _)| !name.starts_with('_'))
        .map(|(name, cols)| (name, cols.as_array().unwrap_or_else(|| panic!("derived.json: {name} is not a list"))))
        .collect();
    for (name, cols) in &derived {
        assert!(columns.insert(name, cols).is_none(), "{name} is in both columns.json and derived.json");
    }

    let mut apps: BTreeMap<String, String> = BTreeMap::new();
    let mut all = Vec::new();
    let mut generic = Vec::new();
    let mut described: Vec<&str> = Vec::new();
    for (name, cols) in &columns {
        let desc =
            detailed.get(name.as_str()).unwrap_or_else(|| panic!("{name} is in columns.json but not in detailed.json"));
        let mut scopes = scopes(name, &desc["relocation_scope"]);
        if scopes.is_empty() && !derived.contains_key(name) {
            continue;
        }
        scopes.extend(EXTRA_SCOPES.iter().filter(|(m, _)| m == name).map(|(_, s)| *s));
        let (app, model) = name.split_once('.').unwrap_or_else(|| panic!("model name {name} has no app"));
        let ident = model.to_ascii_uppercase();
        let code = apps.entry(app.to_string()).or_default();
        write_model(code, name, &ident, desc, cols, &scopes);
        all.push(format!("&{app}::{ident}"));
        described.push(name.as_str());
        if !special.iter().any(|(m, _)| m == name.as_str()) {
            assert!(
                scopes.len() == 1,
                "{name} has several scopes, so a plain insert cannot serve it: list it in data/special.txt"
            );
            generic.push(format!("&{app}::{ident}"));
        }
    }
    for (model, _) in &special {
        assert!(described.contains(&model.as_str()), "data/special.txt lists {model}, which is not a described model");
    }

    let mut out = String::from("// Generated by build.rs from data/detailed.json and data/columns.json.\n\n");
    for (app, code) in &apps {
        emit!(out, "/// The relocatable models of Sentry's `{app}` app.");
        emit!(out, "pub mod {app} {{\n    use super::*;\n{code}}}\n");
    }
    emit!(out, "/// Every model, sorted by name.\npub static ALL: &[&StaticModel] = &[{}];", all.join(", "));
    let special: Vec<String> = special.iter().map(|(m, p)| format!("({m:?}, {p:?})")).collect();
    emit!(
        out,
        "/// The models a dedicated plugin serves, with that plugin (`data/special.txt`).\npub static SPECIAL: &[(&str, &str)] = &[{}];",
        special.join(", ")
    );
    emit!(
        out,
        "/// Every model no dedicated plugin serves, sorted by name: plain inserts.\npub static GENERIC: &[&StaticModel] = &[{}];",
        generic.join(", ")
    );
    let indices: Vec<String> = (0..generic.len()).map(|i| i.to_string()).collect();
    emit!(out, "/// Calls `$callback!(0, 1, ...)` with every index into [`GENERIC`], so that a");
    emit!(out, "/// plugin can declare one model type per generic model.");
    emit!(
        out,
        "#[macro_export]\nmacro_rules! for_generic_models {{\n    ($callback:ident) => {{\n        $callback!({});\n    }};\n}}",
        indices.join(", ")
    );

    let out_dir = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    fs::write(out_dir.join("models.rs"), out).expect("write models.rs");
}

/// `data/special.txt`: `model plugin` per line; `#` starts a comment.
fn read_special(path: &std::path::Path) -> Vec<(String, String)> {
    let text = fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    let mut out: Vec<(String, String)> = Vec::new();
    for line in text.lines() {
        let line = line.split('#').next().unwrap_or_default().trim();
        if line.is_empty() {
            continue;
        }
        let mut words = line.split_whitespace();
        let (Some(model), Some(plugin), None) = (words.next(), words.next(), words.next()) else {
            panic!("{}: `{line}` is not `model plugin`", path.display());
        };
        assert!(!out.iter().any(|(m, _)| m == model), "{}: {model} is listed twice", path.display());
        out.push((model.to_string(), plugin.to_string()));
    }
    out
}

fn read_json(path: &std::path::Path) -> Value {
    let text = fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("parse {}: {e}", path.display()))
}

/// `relocation_scope` is a name or a list of names; `Excluded` gives none.
fn scopes(model: &str, value: &Value) -> Vec<&'static str> {
    let names: Vec<&str> = match value {
        Value::String(s) => vec![s.as_str()],
        Value::Array(items) => items.iter().filter_map(Value::as_str).collect(),
        _ => panic!("{model}: relocation_scope is neither a string nor a list"),
    };
    names
        .into_iter()
        .filter_map(|n| match n {
            "User" => Some("User"),
            "Organization" => Some("Organization"),
            "Config" => Some("Config"),
            "Global" => Some("Global"),
            "Excluded" => None,
            other => panic!("{model}: unknown relocation scope {other}"),
        })
        .collect()
}

fn write_model(code: &mut String, name: &str, ident: &str, desc: &Value, cols: &[Value], scopes: &[&str]) {
    let text = |v: &Value, key: &str| -> String {
        v[key].as_str().unwrap_or_else(|| panic!("{name}: `{key}` is not a string")).to_string()
    };
    let column_names: Vec<String> = cols.iter().map(|c| text(c, "name")).collect();
    let silos: Vec<&str> =
        desc["silos"].as_array().map(|a| a.iter().filter_map(Value::as_str).collect()).unwrap_or_default();
    let silo = if silos.contains(&"Control") { "Control" } else { "Region" };

    emit!(code, "\n    /// `{name}`.");
    emit!(code, "    pub static {ident}: StaticModel = StaticModel {{");
    emit!(code, "        name: {name:?},");
    emit!(code, "        table: {:?},", text(desc, "table_name"));
    let scopes: Vec<String> = scopes.iter().map(|s| format!("Scope::{s}")).collect();
    emit!(code, "        scopes: &[{}],", scopes.join(", "));
    emit!(code, "        silo: Silo::{silo},");

    emit!(code, "        columns: &[");
    for c in cols {
        let kind = match c["kind"].as_str() {
            Some("integer") => "Integer",
            Some("float") => "Float",
            Some("boolean") => "Boolean",
            Some("text") => "Text",
            Some("datetime") => "Datetime",
            Some("json") => "Json",
            other => panic!("{name}: unknown column kind {other:?}"),
        };
        let nullable = c["nullable"].as_bool().unwrap_or_else(|| panic!("{name}: `nullable` is not a boolean"));
        let default = match c.get("default") {
            None => "None".to_string(),
            Some(v) => format!("Some({})", static_value(name, kind, v)),
        };
        emit!(
            code,
            "            StaticColumn {{ name: {:?}, kind: ColumnKind::{kind}, nullable: {nullable}, default: {default} }},",
            text(c, "name")
        );
    }
    emit!(code, "        ],");

    emit!(code, "        foreign_keys: &[");
    if let Some(fks) = desc["foreign_keys"].as_object() {
        for (column, fk) in fks {
            assert!(column_names.contains(column), "{name}: foreign key {column} is not in columns.json");
            let on_missing = if SET_NULL.contains(&(name, column.as_str())) { "SetNull" } else { "Drop" };
            emit!(
                code,
                "            StaticForeignKey {{ column: {column:?}, model: {:?}, kind: FkKind::{}, nullable: {}, on_missing: OnMissing::{on_missing} }},",
                text(fk, "model"),
                text(fk, "kind"),
                fk["nullable"].as_bool().unwrap_or_else(|| panic!("{name}.{column}: `nullable` is not a boolean")),
            );
        }
    }
    emit!(code, "        ],");

    // Sentry lists some unique fields by attribute name (`organization_id`)
    // although the export, and so the column, uses the field name.
    let mut uniques = Vec::new();
    for set in desc["uniques"].as_array().into_iter().flatten() {
        let fields: Vec<String> = set
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .map(|f| match f.strip_suffix("_id") {
                Some(base) if !column_names.iter().any(|c| c == f) && column_names.iter().any(|c| c == base) => {
                    base.to_string()
                }
                _ => f.to_string(),
            })
            .collect();
        for f in &fields {
            assert!(column_names.contains(f), "{name}: unique field {f} is not in columns.json");
        }
        let conditional = CONDITIONAL_UNIQUES.iter().any(|(model, set)| {
            *model == name && set.len() == fields.len() && set.iter().all(|c| fields.iter().any(|f| f == c))
        });
        if conditional {
            continue;
        }
        uniques.push(format!("&[{}]", fields.iter().map(|f| format!("{f:?}")).collect::<Vec<_>>().join(", ")));
    }
    emit!(code, "        uniques: &[{}],", uniques.join(", "));

    let deps: Vec<String> = desc["relocation_dependencies"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .map(|d| format!("{d:?}"))
        .collect();
    emit!(code, "        relocation_dependencies: &[{}],", deps.join(", "));
    emit!(code, "    }};");
}

fn static_value(model: &str, kind: &str, v: &Value) -> String {
    match (kind, v) {
        (_, Value::Null) => panic!("{model}: a null default; leave the default out instead"),
        ("Integer", Value::Number(n)) if n.is_i64() => format!("StaticValue::Integer({n})"),
        ("Float", Value::Number(n)) => format!("StaticValue::Float({:?})", n.as_f64().unwrap_or_default()),
        ("Boolean", Value::Bool(b)) => format!("StaticValue::Boolean({b})"),
        ("Text" | "Datetime", Value::String(s)) => format!("StaticValue::Text({s:?})"),
        ("Json", v) => format!("StaticValue::Json({:?})", v.to_string()),
        _ => panic!("{model}: default {v} does not fit kind {kind}"),
    }
}
