//! Import throughput: `cargo bench --bench import [-- TENANTS]`.
//!
//! Builds a Sentry-shaped export by repeating `fresh-install.json`'s
//! organization, users and projects TENANTS times (default 2,000; about 22
//! records each) with unique usernames, slugs and keys, then imports it in
//! Global scope into a fresh SQLite file and a fresh PostgreSQL database
//! (`RELOCATE_TEST_PG`, default the local server), and prints records/s.
//! Numbers from one run are comparable with each other, not across machines.

use std::path::Path;
use std::time::Instant;

use relocate::db::Db;
use relocate::engine::{self, Filters, ImportOptions, NoopReporter};
use relocate::model::ImportScope;
use relocate::plugin::{ImportFlags, PluginHost, RuntimeConfig};
use relocate::reader::Export;
use serde_json::{Value, json};
use sqlx::{AssertSqlSafe, Connection};

fn main() {
    let tenants: usize = std::env::args().skip(1).find_map(|a| a.parse().ok()).unwrap_or(2_000);
    let dir = tempfile::tempdir().expect("temp dir");
    let export_path = dir.path().join("export.json");
    let records = write_export(&export_path, tenants);
    let bytes = std::fs::metadata(&export_path).map(|m| m.len()).unwrap_or(0);
    println!("export: {records} records, {:.1} MB, {tenants} tenants", bytes as f64 / 1e6);

    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    let mut host = PluginHost::new(RuntimeConfig::default()).expect("plugin host");
    relocate::builtin::load(&mut host).expect("builtin plugins");
    let registry = engine::graph::Registry::new(host.plugins()).expect("the built-in descriptions fit together");
    let export = std::sync::Arc::new(Export::open(&export_path, None).expect("open export"));

    let sqlite = format!("sqlite:{}", dir.path().join("bench.db").display());
    rt.block_on(run("sqlite", &sqlite, &export, &host, &registry, records));

    let admin =
        std::env::var("RELOCATE_TEST_PG").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    let name = format!("relocate_bench_{}", std::process::id());
    rt.block_on(async {
        let Ok(mut c) = sqlx::PgConnection::connect(&admin).await else {
            println!("postgres: not reachable at {admin}; skipped");
            return;
        };
        sqlx::query(AssertSqlSafe(format!("CREATE DATABASE {name}"))).execute(&mut c).await.expect("create db");
        let url = format!("{}/{name}", admin.rsplit_once('/').map(|(b, _)| b).unwrap_or(&admin));
        run("postgres", &url, &export, &host, &registry, records).await;
        sqlx::query(AssertSqlSafe(format!("DROP DATABASE {name} WITH (FORCE)")))
            .execute(&mut c)
            .await
            .expect("drop db");
    });
}

async fn run(
    label: &str,
    url: &str,
    export: &std::sync::Arc<Export>,
    host: &PluginHost,
    registry: &engine::graph::Registry,
    records: usize,
) {
    let mut db = Db::connect(url).await.expect("connect");
    let opts = ImportOptions {
        scope: ImportScope::Global,
        import_uuid: uuid::Uuid::new_v4(),
        flags: ImportFlags::default(),
        filters: Filters::default(),
        batch_size: 1000,
        seed: 1,
        clear_first: true,
    };
    let started = Instant::now();
    let summary = engine::import(export, host, registry, &mut db, &opts, &NoopReporter).await.expect("import");
    let secs = started.elapsed().as_secs_f64();
    let inserted: u64 = summary.models.iter().map(|m| m.inserted + m.existing + m.overwritten).sum();
    println!(
        "{label}: {inserted} of {records} records written in {secs:.2} s = {:.0} records/s",
        records as f64 / secs
    );
}

/// Repeats fresh-install's tenant-shaped records with unique keys; the
/// instance-wide ones (options, relays, roles) once.
fn write_export(path: &Path, tenants: usize) -> usize {
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/sentry/backup/fresh-install.json");
    let template: Vec<Value> =
        serde_json::from_str(&std::fs::read_to_string(fixture).expect("read fixture")).expect("parse fixture");
    let once = ["sentry.option", "sentry.relay", "sentry.relayusage", "sentry.userrole", "sentry.apiapplication"];
    let mut by_model: Vec<(String, Vec<Value>)> = Vec::new();
    for t in 0..tenants {
        for record in &template {
            let model = record["model"].as_str().unwrap_or_default().to_string();
            if t > 0 && once.contains(&model.as_str()) {
                continue;
            }
            let mut r = record.clone();
            let offset = (t as i64) * 10;
            r["pk"] = json!(r["pk"].as_i64().unwrap_or(0) + offset);
            let fields = r["fields"].as_object_mut().expect("fields");
            for (key, value) in fields.iter_mut() {
                let is_fk = matches!(
                    key.as_str(),
                    "user" | "user_id" | "organization" | "project" | "team" | "organizationmember"
                ) && !(model == "sentry.userroleuser" && t > 0);
                if is_fk && let Some(pk) = value.as_i64() {
                    *value = json!(pk + offset);
                }
            }
            for key in ["username", "email", "slug", "public_key", "secret_key", "validation_hash", "user_email"] {
                if let Some(Value::String(s)) = fields.get_mut(key)
                    && !(model == "sentry.project" || model == "sentry.team")
                {
                    *s = format!("{s}-{t}");
                }
            }
            match by_model.iter_mut().find(|(m, _)| *m == model) {
                Some((_, list)) => list.push(r),
                None => by_model.push((model, vec![r])),
            }
        }
    }
    let all: Vec<Value> = by_model.into_iter().flat_map(|(_, v)| v).collect();
    std::fs::write(path, serde_json::to_vec(&all).expect("serialize")).expect("write export");
    all.len()
}
