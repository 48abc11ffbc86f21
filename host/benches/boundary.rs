//! The plugin boundary: the first-party `sentry-users` plugin's `User` model
//! as the host runs it (a wasm component, every value copied across the
//! component boundary, epoch checks on, as in an import) against the same
//! code compiled natively and driven by the SDK's test host.
//!
//! ```sh
//! cargo bench --bench boundary              # batches of 1,000 Sentry-shaped users
//! ```
//!
//! Each iteration is one batch: `prepare`, an empty answer to every question
//! (no user exists: every user is inserted), `resolve`. Outside the timing,
//! a fresh session takes one batch of 1,000 other users first, as an
//! import's long-lived session has taken batches before the one at hand:
//! its memory is in use and its sets of names hold a batch's worth, and
//! they do not pile up across iterations. The timed batch moves into the
//! call, as the engine hands it over. Compare the two `users/…` lines of
//! one run: the ratio is the boundary's cost per record (issue #6: at most
//! 1.5×).

use std::time::Duration;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use relocate::engine::record::values_from_fields;
use relocate::model::{ModelName, Scope, Value};
use relocate::plugin::{self, PluginHost, Session};
use relocate_plugin_sdk as sdk;
use relocate_plugin_sdk::testing::{self as native, TestHost};

const BATCH: usize = 1000;
const SEED: u64 = 7;

/// `2 * BATCH` users of a generated Sentry-shaped export: old pk and fields.
fn users() -> Vec<(i64, serde_json::Map<String, serde_json::Value>)> {
    let dir = tempfile::tempdir().expect("a temp dir");
    let path = dir.path().join("export.json");
    let config = relocate::synth::Config { records: (BATCH * 100) as u64, seed: SEED, ..Default::default() };
    relocate::synth::write(&config, &path).expect("a generated export");
    let records: Vec<serde_json::Value> =
        serde_json::from_slice(&std::fs::read(&path).expect("the export")).expect("a JSON array");
    let users: Vec<_> = records
        .into_iter()
        .filter(|r| r["model"] == "sentry.user")
        .map(|r| (r["pk"].as_i64().expect("a pk"), r["fields"].as_object().expect("fields").clone()))
        .take(2 * BATCH)
        .collect();
    assert_eq!(users.len(), 2 * BATCH, "the export has too few users");
    users
}

fn wasm_host() -> (PluginHost, plugin::PluginId, relocate::model::ModelDesc) {
    let config = plugin::RuntimeConfig {
        cache_dir: None,
        memory_limit: 256 << 20,
        call_timeout: Duration::from_secs(60),
        meter: false,
    };
    let mut host = PluginHost::new(config).expect("a plugin host");
    relocate::builtin::load(&mut host).expect("the built-in plugins");
    let model = ModelName::new("sentry.user").expect("a model name");
    let (id, desc) = host.find_model(&model).expect("a plugin for sentry.user");
    let desc = desc.clone();
    (host, id, desc)
}

fn wasm_session(host: &PluginHost, id: plugin::PluginId) -> Session {
    let config = plugin::SessionConfig {
        model: ModelName::new("sentry.user").expect("a model name"),
        scope: Scope::Global,
        flags: plugin::ImportFlags::default(),
        started_at: native::STARTED_AT.parse().expect("a time"),
        seed: SEED,
        facts: std::sync::Arc::new(relocate::engine::pkmap::PkMap::default()),
    };
    host.open_session(id, config).expect("a session")
}

/// One batch through the component: prepare, empty answers, resolve. The
/// batch moves in, as the engine hands it over.
fn wasm_batch(session: &mut Session, batch: Vec<plugin::InputRecord>) -> usize {
    let prepared = session.prepare_owned(batch).expect("prepare");
    let answered: Vec<plugin::Answered> = prepared
        .iter()
        .enumerate()
        .filter_map(|(index, p)| match p {
            plugin::Prepared::Ready { queries, .. } => Some(plugin::Answered {
                index,
                answers: queries
                    .iter()
                    .map(|q| match q {
                        plugin::Query::Find { .. } => plugin::Answer::Found(None),
                        plugin::Query::Taken { .. } => plugin::Answer::Taken(Vec::new()),
                    })
                    .collect(),
            }),
            _ => None,
        })
        .collect();
    session.resolve(&answered).expect("resolve").len()
}

/// The same batch through the same code, compiled natively.
fn native_batch(session: &mut native::TestSession<sentry_users::user::User>, batch: Vec<native::InputRecord>) -> usize {
    let prepared = session.prepare(batch).expect("prepare");
    let answered: Vec<native::Answered> = prepared
        .iter()
        .enumerate()
        .filter_map(|(index, p)| match p {
            sdk::Prepared::Ready { queries, .. } => Some(native::Answered {
                index: index as u32,
                answers: queries
                    .iter()
                    .map(|q| match q {
                        sdk::Query::Find { .. } => sdk::Answer::Found(None),
                        sdk::Query::Taken { .. } => sdk::Answer::Taken(Vec::new()),
                    })
                    .collect(),
            }),
            _ => None,
        })
        .collect();
    session.resolve(answered).expect("resolve").len()
}

fn to_sdk(value: &Value) -> sdk::Value {
    match value {
        Value::Null => sdk::Value::Null,
        Value::Integer(i) => sdk::Value::Integer(*i),
        Value::Float(f) => sdk::Value::Float(*f),
        Value::Boolean(b) => sdk::Value::Boolean(*b),
        Value::Text(s) => sdk::Value::Text(s.clone()),
        Value::Json(s) => sdk::Value::Json(s.clone()),
    }
}

fn boundary(c: &mut Criterion) {
    let users = users();
    let (host, id, desc) = wasm_host();
    let wasm_inputs: Vec<plugin::InputRecord> = users
        .iter()
        .enumerate()
        .map(|(i, (pk, fields))| plugin::InputRecord {
            ordinal: i as u64 + 1,
            old_pk: *pk,
            values: values_from_fields(&desc, fields.clone()).expect("typed values"),
            refs: Vec::new(),
        })
        .collect();
    let native_inputs: Vec<native::InputRecord> = wasm_inputs
        .iter()
        .map(|r| native::InputRecord {
            ordinal: r.ordinal,
            old_pk: r.old_pk,
            values: r.values.iter().map(to_sdk).collect(),
            refs: Vec::new(),
        })
        .collect();

    // Each session first takes a batch of other users, outside the timing, as
    // an import's session has taken batches before: its memory is in use and
    // its sets of names hold a batch's worth.
    let (warm_wasm, timed_wasm) = wasm_inputs.split_at(BATCH);
    let (warm_native, timed_native) = native_inputs.split_at(BATCH);
    let mut group = c.benchmark_group("users");
    group.throughput(Throughput::Elements(BATCH as u64));
    group.sample_size(20);
    group.bench_function("wasm component", |b| {
        b.iter_batched(
            || {
                let mut session = wasm_session(&host, id);
                assert_eq!(wasm_batch(&mut session, warm_wasm.to_vec()), BATCH);
                (session, timed_wasm.to_vec())
            },
            |(mut session, batch)| assert_eq!(wasm_batch(&mut session, batch), BATCH),
            BatchSize::PerIteration,
        )
    });
    group.bench_function("native", |b| {
        b.iter_batched(
            || {
                let test_host = TestHost::new(SEED);
                let mut session = test_host.session::<sentry_users::user::User>(sdk::Scope::Global, Default::default());
                assert_eq!(native_batch(&mut session, warm_native.to_vec()), BATCH);
                (test_host, session, timed_native.to_vec())
            },
            |(_host, mut session, batch)| assert_eq!(native_batch(&mut session, batch), BATCH),
            BatchSize::PerIteration,
        )
    });
    group.finish();
}

criterion_group!(benches, boundary);
criterion_main!(benches);
