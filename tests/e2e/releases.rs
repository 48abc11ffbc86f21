//! Every release export of `tests/fixtures/sentry/releases/` (Sentry's
//! exhaustive exports of past self-hosted releases) imported into empty
//! SQLite and PostgreSQL databases in all four scopes, table by table (spec
//! §11 scenario 73), and imported three times over (Global, Organization,
//! Config) without a unique column repeating (scenario 72).
//!
//! What each table must hold is worked out from the export and the models'
//! descriptions with Sentry's rules, not from the import's own summary: a
//! model is taken in when one of its scopes is in the import's; a record
//! when its own scope is; a record whose non-null foreign key points at a
//! record that was not taken in is dropped (§4.3). The summary must then
//! report exactly those drops.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::OnceLock;

use relocate::engine::graph::Registry;
use relocate::model::{ImportScope, ModelDesc, OnMissing, Scope};
use relocate::plugin::{Origin, PluginHost, RuntimeConfig};
use serde_json::{Map, Value};

use crate::db_test;
use crate::support::{Run, Target, fixture};

/// Models the releases export that Sentry has since removed. No plugin
/// describes them, so every import skips them and says so.
const REMOVED: [&str; 5] = [
    "sentry.alertruleexcludedprojects",
    "sentry.alertruletriggerexclusion",
    "sentry.incidentsubscription",
    "sentry.spanattributeextractionrulecondition",
    "sentry.spanattributeextractionruleconfig",
];

/// Records of described models a Global import leaves out, by release and
/// model, with why: `(release, model, records, reason)`. Every other record
/// must be in its table.
const GLOBAL_DROPS: &[(&str, &str, u64, &str)] = &[];

/// The first-party plugins' descriptions, as the binary loads them.
fn registry() -> &'static Registry {
    static REGISTRY: OnceLock<Registry> = OnceLock::new();
    REGISTRY.get_or_init(|| {
        let cache = Path::new(env!("CARGO_TARGET_TMPDIR")).join("cache").join("relocate").join("components");
        let mut host = PluginHost::new(RuntimeConfig { cache_dir: Some(cache), ..RuntimeConfig::default() })
            .expect("a plugin host");
        for (name, bytes) in relocate::builtin::BUILTIN {
            host.load(Origin::Builtin(name), bytes).expect("a first-party plugin loads");
        }
        let registry = Registry::new(host.plugins()).expect("the first-party descriptions fit together");
        assert!(
            registry.overrides.is_empty(),
            "two first-party plugins describe the same model: {:?}",
            registry.overrides
        );
        registry
    })
}

/// One exported record.
struct Record {
    pk: i64,
    fields: Map<String, Value>,
}

/// A release export: its records by model, in file order.
struct Export {
    path: String,
    models: BTreeMap<String, Vec<Record>>,
}

impl Export {
    fn read(release: &str) -> Export {
        let path = fixture(&format!("sentry/releases/{release}.json"));
        let records: Vec<Value> =
            serde_json::from_str(&std::fs::read_to_string(&path).expect("read the release")).expect("a JSON array");
        let mut models: BTreeMap<String, Vec<Record>> = BTreeMap::new();
        for r in records {
            let model = r["model"].as_str().expect("a model").to_string();
            let pk = r["pk"].as_i64().expect("an integer pk");
            let fields = r["fields"].as_object().expect("fields").clone();
            models.entry(model).or_default().push(Record { pk, fields });
        }
        Export { path: path.to_str().expect("a UTF-8 path").to_string(), models }
    }

    fn count(&self, model: &str) -> u64 {
        self.models.get(model).map_or(0, |r| r.len() as u64)
    }
}

/// A record's own scope, by Sentry's `get_relocation_scope` for the models
/// that have several.
fn record_scope(export: &Export, model: &str, record: &Record, desc: &ModelDesc) -> Scope {
    let set = |field: &str| record.fields.get(field).is_some_and(|v| !v.is_null());
    match model {
        "sentry.apitoken" | "sentry.apiauthorization" => {
            if set("application") {
                Scope::Global
            } else {
                Scope::Config
            }
        }
        "sentry.notificationaction" => {
            if set("integration_id") || set("sentry_app_id") {
                Scope::Global
            } else {
                Scope::Organization
            }
        }
        "sentry.notificationactionproject" => {
            let action = record.fields["action"].as_i64().expect("an action");
            let actions = &export.models["sentry.notificationaction"];
            let action = actions.iter().find(|a| a.pk == action).expect("the link's action is exported");
            record_scope(export, "sentry.notificationaction", action, desc)
        }
        "sentry.savedsearch" => {
            if record.fields.get("is_global") == Some(&Value::Bool(true)) {
                Scope::Global
            } else {
                Scope::Organization
            }
        }
        _ => {
            assert_eq!(desc.scopes.len(), 1, "{model} has several scopes: say here how a record's own is chosen");
            desc.scopes[0]
        }
    }
}

/// What Sentry's rules say an import into an empty database keeps and drops,
/// per described model.
#[derive(Debug, Default, PartialEq, Eq)]
struct Expected {
    kept: u64,
    dropped: u64,
}

fn expected(export: &Export, scope: ImportScope) -> BTreeMap<String, Expected> {
    let registry = registry();
    let mut kept: BTreeMap<String, BTreeSet<i64>> = BTreeMap::new();
    let mut out = BTreeMap::new();
    for model in registry.order().expect("the models are ordered") {
        let (Some(desc), Some(records)) = (registry.desc(&model), export.models.get(model.as_str())) else { continue };
        let mut e = Expected::default();
        if desc.in_import(scope) {
            let mut pks = BTreeSet::new();
            for record in records {
                let missing = desc.foreign_keys.iter().any(|fk| {
                    let field = &desc.columns[fk.column].field;
                    let target = record.fields.get(field).and_then(Value::as_i64);
                    fk.target != desc.name
                        && fk.on_missing == OnMissing::Drop
                        && target.is_some_and(|pk| !kept.get(fk.target.as_str()).is_some_and(|k| k.contains(&pk)))
                });
                if missing {
                    e.dropped += 1;
                } else if scope.accepts(record_scope(export, model.as_str(), record, desc)) {
                    pks.insert(record.pk);
                }
            }
            e.kept = pks.len() as u64;
            kept.insert(model.to_string(), pks);
        }
        out.insert(model.to_string(), e);
    }
    out
}

/// Models whose rows Sentry's signals also write, with what an import into
/// an empty database then reports and holds.
struct SignalExpectation {
    inserted: u64,
    existing: u64,
    overwritten: u64,
    rows: u64,
}

/// Every imported user with an email brings its primary `UserEmail` and, once
/// per address, its `Email` (Sentry's post-save signals). Exported `Email`s
/// for those addresses then find them (`existing`), and exported `UserEmail`s
/// for a user's own address fill in the primary one (reported as inserted).
fn signal_expectations(
    export: &Export,
    expected: &BTreeMap<String, Expected>,
) -> BTreeMap<&'static str, SignalExpectation> {
    let text = |r: &Record, f: &str| r.fields.get(f).and_then(Value::as_str).unwrap_or_default().to_string();
    let users = kept_records(export, expected, "sentry.user");
    let primary: BTreeMap<i64, String> =
        users.iter().map(|u| (u.pk, text(u, "email"))).filter(|(_, e)| !e.is_empty()).collect();
    let user_emails: BTreeSet<String> = primary.values().cloned().collect();

    let emails = kept_records(export, expected, "sentry.email");
    let existing = emails.iter().filter(|e| user_emails.contains(&text(e, "email"))).count() as u64;
    let mut all_emails = user_emails.clone();
    all_emails.extend(emails.iter().map(|e| text(e, "email")));
    let email = SignalExpectation {
        inserted: emails.len() as u64 - existing,
        existing,
        overwritten: 0,
        rows: all_emails.len() as u64,
    };

    let user_emails_rows = kept_records(export, expected, "sentry.useremail");
    let overwritten = user_emails_rows
        .iter()
        .filter(|r| {
            r.fields.get("user").and_then(Value::as_i64).and_then(|u| primary.get(&u)) == Some(&text(r, "email"))
        })
        .count() as u64;
    // Sentry's `UserEmail.write` reports even the filled-in primary row as
    // Inserted; only the rows for other addresses are new in the table.
    let rows = primary.len() as u64 + user_emails_rows.len() as u64 - overwritten;
    let useremail = SignalExpectation { inserted: user_emails_rows.len() as u64, existing: 0, overwritten: 0, rows };
    [("sentry.email", email), ("sentry.useremail", useremail)].into_iter().collect()
}

/// The records of `model` that `expected` keeps (all or none: these models
/// have one scope and, in an empty database, nothing to drop them).
fn kept_records<'e>(export: &'e Export, expected: &BTreeMap<String, Expected>, model: &str) -> Vec<&'e Record> {
    let records: Vec<&Record> = export.models.get(model).map(|r| r.iter().collect()).unwrap_or_default();
    let kept = expected.get(model).map(|e| e.kept).unwrap_or(0) as usize;
    assert!(kept == 0 || kept == records.len(), "{model}: expected all or none of its records");
    if kept == 0 { Vec::new() } else { records }
}

/// One model's line of the summary.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Line {
    inserted: u64,
    existing: u64,
    overwritten: u64,
    dropped: u64,
    skipped: u64,
}

/// The `--json` summary's per-model counts and its models no plugin describes.
fn summary(run: &Run) -> (BTreeMap<String, Line>, BTreeMap<String, u64>) {
    let json: serde_json::Value = serde_json::from_str(&run.stdout).expect("--json prints one JSON document");
    let count = |m: &serde_json::Value, key: &str| m[key].as_u64().expect("a count");
    let lines = json["models"]
        .as_array()
        .expect("a list of models")
        .iter()
        .map(|m| {
            let line = Line {
                inserted: count(m, "inserted"),
                existing: count(m, "existing"),
                overwritten: count(m, "overwritten"),
                dropped: count(m, "dropped"),
                skipped: count(m, "skipped"),
            };
            (m["model"].as_str().expect("a model name").to_string(), line)
        })
        .collect();
    let unknown = json["unknown"]
        .as_object()
        .expect("a map of unknown models")
        .iter()
        .map(|(model, n)| (model.clone(), n.as_u64().expect("a count")))
        .collect();
    (lines, unknown)
}

fn import_scope(scope: &str) -> ImportScope {
    match scope {
        "users" => ImportScope::Users,
        "organizations" => ImportScope::Organizations,
        "config" => ImportScope::Config,
        "global" => ImportScope::Global,
        other => panic!("no scope {other}"),
    }
}

/// Imports `release` in `scope` into the empty `t` and checks every table.
async fn imports_in_scope(t: Target, release: &str, scope: &str) {
    let export = Export::read(release);
    let run = t.relocate(&["import", scope, &export.path, "--no-prompt", "--seed", "1", "--json"]);
    run.success();
    let (lines, unknown) = summary(&run);

    let removed: BTreeMap<String, u64> =
        REMOVED.iter().map(|m| (m.to_string(), export.count(m))).filter(|(_, n)| *n > 0).collect();
    assert_eq!(unknown, removed, "{release} in {scope}: the removed models are reported as skipped, with their counts");
    assert!(!removed.is_empty(), "{release} exports removed models");

    let registry = registry();
    let expected = expected(&export, import_scope(scope));
    let signals = signal_expectations(&export, &expected);
    for (model, records) in &export.models {
        let Some(desc) = registry.desc(&relocate::model::ModelName::new(model).expect("a model name")) else {
            assert!(REMOVED.contains(&model.as_str()), "{release}: no plugin describes {model}");
            continue;
        };
        let e = &expected[model];
        let line = lines
            .get(model)
            .copied()
            .unwrap_or_else(|| panic!("{release} in {scope}: no summary line for {model}:\n{}", run.stdout));
        let rows = t.count(desc.table.as_str()).await;
        let what = format!("{release} in {scope}: {model} ({} records, table {})", records.len(), desc.table);
        let (written, expected_rows) = match signals.get(model.as_str()) {
            Some(s) => ((s.inserted, s.existing, s.overwritten), s.rows),
            None => ((e.kept, 0, 0), e.kept),
        };
        assert_eq!(rows as u64, expected_rows, "{what}: rows");
        assert_eq!(line.dropped, e.dropped, "{what}: dropped");
        assert_eq!(
            (line.inserted, line.existing, line.overwritten),
            written,
            "{what}: inserted, existing, overwritten"
        );
        assert_eq!(
            line.inserted + line.existing + line.overwritten + line.dropped + line.skipped,
            records.len() as u64,
            "{what}: every record is accounted for"
        );
        if !desc.in_import(import_scope(scope)) {
            assert_eq!(rows, 0, "{what}: out of scope");
        }
    }
    if scope == "global" {
        // The exceptions by name: every other record is in its table.
        for (model, e) in &expected {
            let listed: u64 =
                GLOBAL_DROPS.iter().filter(|(r, m, _, _)| *r == release && m == model).map(|(_, _, n, _)| n).sum();
            assert_eq!(e.dropped, listed, "{release}: {model} drops {} records in Global scope", e.dropped);
            assert_eq!(e.kept + e.dropped, export.count(model), "{release}: {model} in Global scope");
        }
    }
}

/// Imports `release` in Global, then Organization, then Config scope, each
/// under a new import UUID, and checks that no unique set of any described
/// model holds a value twice (sets with a NULL column do not count, as in
/// SQL).
async fn imports_three_times(t: Target, release: &str) {
    let export = Export::read(release);
    for (scope, seed) in [("global", "1"), ("organizations", "2"), ("config", "3")] {
        t.relocate(&["import", scope, &export.path, "--no-prompt", "--seed", seed]).success();
    }
    // Each import added its scope's records: users three times, orgs twice.
    assert_eq!(t.count("auth_user").await as u64, 3 * export.count("sentry.user"), "{release}: users");
    assert_eq!(
        t.count("sentry_organization").await as u64,
        2 * export.count("sentry.organization"),
        "{release}: organizations"
    );
    let config_tokens = expected(&export, ImportScope::Config)["sentry.apitoken"].kept;
    assert!(config_tokens > 0, "{release} has a user token");
    assert_eq!(
        t.count("sentry_apitoken").await as u64,
        export.count("sentry.apitoken") + config_tokens,
        "{release}: API tokens"
    );

    let registry = registry();
    let mut checked = 0;
    for (_, (_, desc)) in registry.iter() {
        for set in &desc.uniques {
            // Quoted: some of Sentry's columns are SQL keywords (`limit`).
            let cols: Vec<String> = set.iter().map(|&c| format!("\"{}\"", desc.columns[c].name)).collect();
            let not_null: Vec<String> = cols.iter().map(|c| format!("{c} IS NOT NULL")).collect();
            let sql = format!(
                "SELECT CAST(COUNT(*) AS BIGINT) FROM {} WHERE {} GROUP BY {} HAVING COUNT(*) > 1",
                desc.table,
                not_null.join(" AND "),
                cols.join(", ")
            );
            let repeats = t.i64s(&sql).await;
            assert!(
                repeats.is_empty(),
                "{release}: {}.({}) repeats after three imports: {repeats:?}",
                desc.table,
                cols.join(", ")
            );
            checked += 1;
        }
    }
    assert!(checked >= 40, "only {checked} unique sets were checked");
    // The secrets that must differ did, and they are the ones a user sees.
    let guids = t.i64s("SELECT CAST(COUNT(DISTINCT guid) AS BIGINT) FROM sentry_monitor").await;
    assert_eq!(guids, [2 * export.count("sentry.monitor") as i64], "{release}: monitor guids");
    let digests = t.i64s("SELECT CAST(COUNT(DISTINCT token_hashed) AS BIGINT) FROM sentry_orgauthtoken").await;
    assert_eq!(digests, [2 * export.count("sentry.orgauthtoken") as i64], "{release}: org auth tokens");
}

/// One module per release: an import in each scope, and three in a row.
macro_rules! release_tests {
    ($($name:ident => $release:literal),* $(,)?) => {$(
        mod $name {
            use super::*;

            db_test!(users, |t| { imports_in_scope(t, $release, "users").await });
            db_test!(organizations, |t| { imports_in_scope(t, $release, "organizations").await });
            db_test!(config, |t| { imports_in_scope(t, $release, "config").await });
            db_test!(global, |t| { imports_in_scope(t, $release, "global").await });
            db_test!(three_imports_keep_uniques_unique, |t| { imports_three_times(t, $release).await });
        }
    )*};
}

release_tests! {
    release_24_5_1 => "24.5.1",
    release_24_6_0 => "24.6.0",
    release_24_7_0 => "24.7.0",
    release_head => "head",
}
