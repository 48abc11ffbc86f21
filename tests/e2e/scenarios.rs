//! Sentry's acceptance scenarios (spec §11, scenarios 1–65),
//! ported from `tests/sentry/backup/test_imports.py` and `test_rpc.py`, each
//! run against SQLite and PostgreSQL.
//!
//! This file holds what the scenarios share: exports built from the real
//! fixtures in `tests/fixtures/sentry/` (copied and changed where a scenario
//! needs a shape no fixture has), Sentry's model registry (`detailed.json`,
//! for silos and tables), and ways to read the import chunks back.

use std::path::PathBuf;
use std::sync::OnceLock;

use serde_json::{Value, json};

use crate::support::{Target, fixture};

mod batching;
mod collisions;
mod custom;
mod decryption;
mod errors;
mod filters;
mod reset;
mod retries;
mod sanitization;
mod scoping;
mod signals;
mod tokens;

/// The records of a fixture under `tests/fixtures/sentry/`.
pub fn load(rel: &str) -> Vec<Value> {
    let path = fixture(&format!("sentry/{rel}"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("parse {}: {e}", path.display()))
}

/// Writes `records` as an export in the target's directory.
pub fn write(t: &Target, name: &str, records: &[Value]) -> PathBuf {
    let path = t.dir.path().join(name);
    std::fs::write(&path, serde_json::to_string_pretty(records).expect("serialize")).expect("write the export");
    path
}

pub fn path(p: &std::path::Path) -> &str {
    p.to_str().expect("a UTF-8 path")
}

/// A copy of the first record of `model` in `records`.
pub fn first(records: &[Value], model: &str) -> Value {
    records.iter().find(|r| r["model"] == model).cloned().unwrap_or_else(|| panic!("no {model} record"))
}

/// A copy of `record` with another pk and some fields changed.
pub fn with(record: &Value, pk: i64, fields: Value) -> Value {
    let mut out = record.clone();
    out["pk"] = json!(pk);
    for (k, v) in fields.as_object().expect("fields as an object") {
        out["fields"][k] = v.clone();
    }
    out
}

/// Records of `model` in an export.
pub fn count_of(records: &[Value], model: &str) -> i64 {
    records.iter().filter(|r| r["model"] == model).count() as i64
}

/// An "exhaustive" user as Sentry's `create_exhaustive_user` exports it,
/// made from `user-with-minimum-privileges.json`: the user, an
/// authenticator, their email address (`sentry.useremail`), an IP and an
/// option; with `admin`, staff and superuser flags and a permission (from
/// `user-with-maximum-privileges.json`). The shared `sentry.email` rows come
/// from [`emails`].
pub fn exhaustive_user(pk: i64, username: &str, email: &str, admin: bool) -> Vec<Value> {
    let min = load("backup/user-with-minimum-privileges.json");
    let mut out = vec![with(
        &first(&min, "sentry.user"),
        pk,
        json!({"username": username, "email": email, "is_staff": admin, "is_superuser": admin}),
    )];
    for model in ["sentry.authenticator", "sentry.userip", "sentry.useroption"] {
        out.push(with(&first(&min, model), pk, json!({"user": pk})));
    }
    out.push(with(&first(&min, "sentry.useremail"), pk, json!({"user": pk, "email": email})));
    if admin {
        let max = load("backup/user-with-maximum-privileges.json");
        out.push(with(&first(&max, "sentry.userpermission"), pk, json!({"user": pk})));
    }
    out
}

/// One `sentry.email` row per distinct address of `users`, as Sentry
/// exports them (shape from `fresh-install.json`).
pub fn emails(users: &[Value]) -> Vec<Value> {
    let fresh = load("backup/fresh-install.json");
    let template = first(&fresh, "sentry.email");
    let mut seen = Vec::new();
    for u in users.iter().filter(|r| r["model"] == "sentry.user") {
        let e = u["fields"]["email"].as_str().expect("an email").to_string();
        if !seen.contains(&e) {
            seen.push(e);
        }
    }
    seen.iter().enumerate().map(|(i, e)| with(&template, i as i64 + 1, json!({"email": e}))).collect()
}

/// An organization and its members as `create_exhaustive_organization`
/// exports them, made from `fresh-install.json`'s organization and member
/// records: `members` are (member pk, user pk, role). Member pks are the
/// caller's, so several organizations can share an export.
pub fn organization(pk: i64, slug: &str, members: &[(i64, i64, &str)]) -> Vec<Value> {
    let fresh = load("backup/fresh-install.json");
    let mut out = vec![with(&first(&fresh, "sentry.organization"), pk, json!({"slug": slug, "name": slug}))];
    let member = first(&fresh, "sentry.organizationmember");
    for &(m, user, role) in members {
        out.push(with(&member, m, json!({"organization": pk, "user_id": user, "role": role, "user_email": null})));
    }
    out
}

/// Sentry's model registry, `fixtures/backup/model_dependencies/detailed.json`.
pub fn registry() -> &'static serde_json::Map<String, Value> {
    static REGISTRY: OnceLock<serde_json::Map<String, Value>> = OnceLock::new();
    REGISTRY.get_or_init(|| {
        let text =
            std::fs::read_to_string(fixture("sentry/model_dependencies/detailed.json")).expect("read detailed.json");
        serde_json::from_str(&text).expect("parse detailed.json")
    })
}

/// Whether Sentry keeps `model` in the control silo (its chunks go to
/// `sentry_controlimportchunk` and its replica).
pub fn is_control(model: &str) -> bool {
    registry()[model]["silos"].as_array().expect("silos").iter().any(|s| s == "Control")
}

/// The table Sentry stores `model` in.
pub fn table(model: &str) -> String {
    registry()[model]["table_name"].as_str().expect("a table name").to_string()
}

/// The relocation scopes Sentry gives `model`.
pub fn scopes(model: &str) -> Vec<String> {
    match &registry()[model]["relocation_scope"] {
        Value::String(s) => vec![s.clone()],
        Value::Array(a) => a.iter().map(|s| s.as_str().expect("a scope").to_string()).collect(),
        other => panic!("{model}: relocation_scope {other}"),
    }
}

/// One import chunk row, as the tests read it back.
#[derive(Debug, Clone, PartialEq)]
pub struct ChunkRow {
    pub import_uuid: String,
    pub min_ordinal: i64,
    pub max_ordinal: i64,
    pub min_source_pk: i64,
    pub max_source_pk: i64,
    pub min_inserted_pk: Option<i64>,
    pub max_inserted_pk: Option<i64>,
    pub inserted_map: serde_json::Map<String, Value>,
    pub existing_map: serde_json::Map<String, Value>,
    pub overwrite_map: serde_json::Map<String, Value>,
    pub inserted_identifiers: serde_json::Map<String, Value>,
}

impl ChunkRow {
    /// (min ordinal, max ordinal, min source pk, max source pk).
    pub fn span(&self) -> (i64, i64, i64, i64) {
        (self.min_ordinal, self.max_ordinal, self.min_source_pk, self.max_source_pk)
    }

    /// Sizes of the inserted, existing and overwrite maps.
    pub fn maps(&self) -> (usize, usize, usize) {
        (self.inserted_map.len(), self.existing_map.len(), self.overwrite_map.len())
    }
}

/// The chunks of `model` in `table`, by ordinal.
pub async fn chunks_in(t: &Target, table: &str, model: &str) -> Vec<ChunkRow> {
    let mut c = t.connect().await;
    if !c.has_table(table).await {
        return Vec::new();
    }
    let text = |col: &str| format!("CAST({col} AS TEXT)");
    let cols = [
        text("import_uuid"),
        text("min_ordinal"),
        text("max_ordinal"),
        text("min_source_pk"),
        text("max_source_pk"),
        format!("COALESCE({}, '')", text("min_inserted_pk")),
        format!("COALESCE({}, '')", text("max_inserted_pk")),
        text("inserted_map"),
        text("existing_map"),
        text("overwrite_map"),
        text("inserted_identifiers"),
    ];
    let mut columns: Vec<Vec<String>> = Vec::new();
    for col in &cols {
        let sql = format!("SELECT {col} FROM {table} WHERE model = '{model}' ORDER BY min_ordinal, id");
        columns.push(c.strings(&sql).await.into_iter().map(Option::unwrap_or_default).collect());
    }
    let int = |s: &str| s.parse::<i64>().unwrap_or_else(|_| panic!("not an integer: {s}"));
    let opt = |s: &str| (!s.is_empty()).then(|| int(s));
    let map = |s: &str| match serde_json::from_str(s) {
        Ok(Value::Object(m)) => m,
        other => panic!("a chunk map is not an object: {s} ({other:?})"),
    };
    (0..columns[0].len())
        .map(|i| ChunkRow {
            import_uuid: columns[0][i].replace('-', ""),
            min_ordinal: int(&columns[1][i]),
            max_ordinal: int(&columns[2][i]),
            min_source_pk: int(&columns[3][i]),
            max_source_pk: int(&columns[4][i]),
            min_inserted_pk: opt(&columns[5][i]),
            max_inserted_pk: opt(&columns[6][i]),
            inserted_map: map(&columns[7][i]),
            existing_map: map(&columns[8][i]),
            overwrite_map: map(&columns[9][i]),
            inserted_identifiers: map(&columns[10][i]),
        })
        .collect()
}

/// The chunks of `model` in the table its silo writes to. For a control
/// model, every chunk must have an identical replica (spec §8.3).
pub async fn chunks(t: &Target, model: &str) -> Vec<ChunkRow> {
    if is_control(model) {
        let control = chunks_in(t, "sentry_controlimportchunk", model).await;
        let replicas = chunks_in(t, "sentry_controlimportchunkreplica", model).await;
        assert_eq!(control, replicas, "the replicas of {model}'s control chunks differ");
        assert!(chunks_in(t, "sentry_regionimportchunk", model).await.is_empty(), "{model} has region chunks");
        control
    } else {
        assert!(chunks_in(t, "sentry_controlimportchunk", model).await.is_empty(), "{model} has control chunks");
        chunks_in(t, "sentry_regionimportchunk", model).await
    }
}

/// The summary line of `model`: inserted, existing, overwritten, dropped,
/// skipped, resumed.
pub fn summary(stdout: &str, model: &str) -> Vec<u64> {
    let line = stdout
        .lines()
        .find(|l| l.split_whitespace().next() == Some(model))
        .unwrap_or_else(|| panic!("no {model} line in\n{stdout}"));
    line.split_whitespace().skip(1).map(|n| n.parse().expect("a count")).collect()
}
