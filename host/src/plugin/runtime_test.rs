//! Tests of the plugin runtime against the test guests in
//! `plugins/test-plugins/`, built by `host/build.rs`.

use std::collections::BTreeMap;
use std::sync::Mutex;

use super::*;
use crate::model::{ColumnKind, ImportKind, Scope, Silo, Value};
use crate::plugin::{Answer, Decision, Facts, FieldError, ImportFlags, Level, MappedRef, Mapping, Query};

const STARTED_AT: &str = "2023-06-22T22:59:55.531Z";
const STARTED_AT_MS: u64 = 1_687_474_795_531;

fn artifact(name: &str) -> Vec<u8> {
    let file = format!("test_plugin_{}.wasm", name.replace('-', "_"));
    let path = Path::new(env!("RELOCATE_PLUGIN_ARTIFACTS")).join(file);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

type LogLines = Arc<Mutex<Vec<(String, Option<String>, Level, String)>>>;

fn config() -> RuntimeConfig {
    RuntimeConfig { cache_dir: None, memory_limit: 64 << 20, call_timeout: Duration::from_secs(10), meter: false }
}

/// A host with `config` whose log lines are kept for the test.
fn host(config: RuntimeConfig) -> (PluginHost, LogLines) {
    let lines = LogLines::default();
    let sink = lines.clone();
    let host = PluginHost::new(config).unwrap().with_log_sink(Arc::new(move |plugin, model, level, message| {
        let model = model.map(|m| m.to_string());
        sink.lock().unwrap().push((plugin.to_string(), model, level, message.to_string()));
    }));
    (host, lines)
}

fn load(host: &mut PluginHost, name: &'static str) -> PluginId {
    host.load(Origin::Builtin(name), &artifact(name)).unwrap_or_else(|e| panic!("loading {name}: {e}"))
}

/// Facts with one imported author: old pk 10 became 100.
struct FakeFacts;

impl Facts for FakeFacts {
    fn mapping_of(&self, model: &ModelName, old_pk: i64) -> Option<Mapping> {
        (model.as_str() == "test.author" && old_pk == 10).then_some(Mapping {
            new_pk: 100,
            kind: ImportKind::Inserted,
            slug: None,
        })
    }
}

fn session_config(model: &str, seed: u64) -> SessionConfig {
    SessionConfig {
        model: ModelName::new(model).unwrap(),
        scope: Scope::Global,
        flags: ImportFlags { merge_users: true, ..ImportFlags::default() },
        started_at: STARTED_AT.parse().expect("a valid time"),
        seed,
        facts: Arc::new(FakeFacts),
    }
}

fn open(host: &PluginHost, id: PluginId, model: &str) -> Session {
    host.open_session(id, session_config(model, 1)).unwrap_or_else(|e| panic!("opening {model}: {e}"))
}

fn record(ordinal: u64, old_pk: i64, values: Vec<Value>) -> InputRecord {
    InputRecord { ordinal, old_pk, values, refs: Vec::new() }
}

fn text(s: &str) -> Value {
    Value::Text(s.into())
}

/// One record whose only value is `text`.
fn one(ordinal: u64, s: &str) -> InputRecord {
    record(ordinal, ordinal as i64, vec![text(s)])
}

fn answered(index: usize, answers: Vec<Answer>) -> Answered {
    Answered { index, answers }
}

#[test]
fn guests_import_only_the_interfaces_relocate_links() {
    let engine = &runtime(false).unwrap().engine;
    for name in ["passthrough", "std-user"] {
        let component = Component::new(engine, artifact(name)).unwrap();
        let imports: Vec<String> =
            component.component_type().imports(engine).map(|(name, _)| name.to_string()).collect();
        eprintln!("{name} imports: {imports:#?}");
        assert!(imports.iter().any(|i| i.starts_with("relocate:plugin/types@0.1.0")), "{imports:?}");
        for import in &imports {
            let known = [
                "relocate:plugin/",
                "wasi:cli/",
                "wasi:io/",
                "wasi:clocks/",
                "wasi:random/",
                "wasi:filesystem/",
                "wasi:sockets/",
            ];
            assert!(known.iter().any(|k| import.starts_with(k)), "{name} imports {import}");
        }
    }
}

#[test]
fn passthrough_describes_itself() {
    let (mut host, _) = host(config());
    let id = load(&mut host, "passthrough");
    let info = host.info(id).unwrap();
    assert_eq!((info.name.as_str(), info.version.as_str()), ("passthrough", "1.2.3"));
    assert!(matches!(info.origin, Origin::Builtin("passthrough")));
    let names: Vec<&str> = info.models.iter().map(|m| m.name.as_str()).collect();
    assert_eq!(names, ["test.author", "test.book"]);

    let (found, book) = host.find_model(&ModelName::new("test.book").unwrap()).unwrap();
    assert_eq!(found, id);
    assert_eq!(book.table.as_str(), "test_book");
    assert_eq!(book.scopes, [Scope::Organization, Scope::Global]);
    assert_eq!(book.silo, Silo::Region);
    let columns: Vec<(&str, &str, ColumnKind)> =
        book.columns.iter().map(|c| (c.field.as_str(), c.name.as_str(), c.kind)).collect();
    assert_eq!(
        columns,
        [
            ("title", "title", ColumnKind::Text),
            ("author", "author_id", ColumnKind::Integer),
            ("pages", "pages", ColumnKind::Integer)
        ]
    );
    assert_eq!(book.columns[2].default, Some(Value::Null));
    assert_eq!(book.foreign_keys.len(), 1);
    assert_eq!((book.foreign_keys[0].column, book.foreign_keys[0].target.as_str()), (1, "test.author"));
    assert_eq!(book.uniques, [vec![0, 1]]);
    assert_eq!(book.relocation_dependencies, [ModelName::new("test.author").unwrap()]);
    assert!(host.find_model(&ModelName::new("test.nothing").unwrap()).is_none());
    assert_eq!(host.plugins().count(), 1);
}

#[test]
fn passthrough_round_trip() {
    let (mut host, logs) = host(config());
    let id = load(&mut host, "passthrough");

    let mut authors = open(&host, id, "test.author");
    let batch = [record(1, 10, vec![text("ann"), Value::Null]), record(2, 11, vec![text("bob"), text("b@x")])];
    let prepared = authors.prepare(&batch).unwrap();
    let find = |name: &str| Prepared::Ready {
        scope: None,
        queries: vec![Query::Find {
            model: ModelName::new("test.author").unwrap(),
            columns: vec!["name".into()],
            values: vec![text(name)],
        }],
    };
    assert_eq!(prepared, [find("ann"), find("bob")]);
    // Answers come back in any order; decisions in index order.
    let decided =
        authors.resolve(&[answered(1, vec![Answer::Found(Some(77))]), answered(0, vec![Answer::Found(None)])]).unwrap();
    assert_eq!(
        decided,
        [
            Decided {
                index: 0,
                decision: Decision::Insert { values: vec![text("ann"), Value::Null], pk: None },
                derived: vec![]
            },
            Decided { index: 1, decision: Decision::Reuse(77), derived: vec![] },
        ]
    );

    let mut books = open(&host, id, "test.book");
    let mut known = record(1, 5, vec![text("dune"), Value::Integer(100), Value::Null]);
    known.refs = vec![MappedRef { column: 1, old_pk: 10, kind: ImportKind::Inserted }];
    let mut unknown = record(2, 6, vec![text("emma"), Value::Integer(999), Value::Integer(300)]);
    unknown.refs = vec![MappedRef { column: 1, old_pk: 99, kind: ImportKind::Inserted }];
    let prepared = books.prepare(&[known, unknown]).unwrap();
    assert_eq!(
        prepared,
        [
            Prepared::Ready {
                scope: Some(Scope::Organization),
                queries: vec![Query::Find {
                    model: ModelName::new("test.book").unwrap(),
                    columns: vec!["title".into()],
                    values: vec![text("dune")],
                }],
            },
            Prepared::Invalid(vec![FieldError {
                field: Some("author".into()),
                message: "author 99 was not imported".into()
            }]),
        ]
    );
    let decided = books.resolve(&[answered(0, vec![Answer::Found(None)])]).unwrap();
    assert_eq!(
        decided,
        [Decided {
            index: 0,
            decision: Decision::Insert { values: vec![text("dune"), Value::Integer(100), Value::Null], pk: None },
            derived: vec![],
        }]
    );

    let logs = logs.lock().unwrap();
    let author = Some("test.author".to_string());
    assert!(logs.contains(&(
        "passthrough@1.2.3".into(),
        author.clone(),
        Level::Info,
        format!("session for test.author since {STARTED_AT}")
    )));
    assert!(logs.contains(&("passthrough@1.2.3".into(), author, Level::Debug, "prepare 2 records".into())));
}

/// The hex `random-bytes` gave a passthrough session of `model` seeded `seed`.
fn random_hex(host: &PluginHost, id: PluginId, model: &str, seed: u64) -> String {
    let mut session = host.open_session(id, session_config(model, seed)).unwrap();
    let mut batch = vec![text("?random"), Value::Null];
    if model == "test.book" {
        batch.push(Value::Null);
    }
    session.prepare(&[record(1, 1, batch)]).unwrap();
    let decided = session.resolve(&[answered(0, vec![Answer::Found(None)])]).unwrap();
    match &decided[0].decision {
        Decision::Insert { values, .. } => values[0].as_text().unwrap().to_string(),
        other => panic!("expected an insert, got {other:?}"),
    }
}

#[test]
fn random_bytes_are_reproducible_per_seed_and_model() {
    let (mut host, _) = host(config());
    let id = load(&mut host, "passthrough");
    let first = random_hex(&host, id, "test.author", 7);
    assert_eq!(first.len(), 16, "{first}");
    assert_eq!(first, random_hex(&host, id, "test.author", 7));
    assert_ne!(first, random_hex(&host, id, "test.author", 8));
    assert_ne!(first, random_hex(&host, id, "test.book", 7));
}

/// The hex `random-bytes` gave each record of `batches`, run in order
/// through one passthrough session of `test.author` (seed 7), by ordinal.
fn random_hex_per_record(host: &PluginHost, id: PluginId, batches: &[&[u64]]) -> BTreeMap<u64, String> {
    let mut session = host.open_session(id, session_config("test.author", 7)).unwrap();
    let mut out = BTreeMap::new();
    for batch in batches {
        let records: Vec<InputRecord> =
            batch.iter().map(|&n| record(n, n as i64, vec![text("?random"), Value::Null])).collect();
        session.prepare(&records).unwrap();
        let answers: Vec<Answered> = (0..batch.len()).map(|i| answered(i, vec![Answer::Found(None)])).collect();
        for decided in session.resolve(&answers).unwrap() {
            let Decision::Insert { values, .. } = &decided.decision else { panic!("{decided:?}") };
            out.insert(batch[decided.index], values[0].as_text().unwrap().to_string());
        }
    }
    out
}

/// What a plugin draws for record N depends on the seed, the model and N
/// alone: an import resumed at N (or batched differently) draws the same.
#[test]
fn random_bytes_for_a_record_do_not_depend_on_the_records_before_it() {
    let (mut host, _) = host(config());
    let id = load(&mut host, "passthrough");
    let whole = random_hex_per_record(&host, id, &[&[1, 2, 3, 4], &[5, 6, 7, 8]]);
    let resumed = random_hex_per_record(&host, id, &[&[6, 7, 8]]);
    let rebatched = random_hex_per_record(&host, id, &[&[1, 2, 3], &[4, 5, 6, 7, 8]]);
    for n in 6..=8 {
        assert_eq!(resumed[&n], whole[&n], "record {n}");
    }
    assert_eq!(rebatched, whole);
    let distinct: std::collections::BTreeSet<&String> = whole.values().collect();
    assert_eq!(distinct.len(), whole.len(), "every record draws its own bytes: {whole:?}");
}

#[test]
fn a_spinning_plugin_times_out_and_poisons_its_session() {
    let (mut host, _) = host(RuntimeConfig { call_timeout: Duration::from_millis(300), ..config() });
    let id = load(&mut host, "misbehave");
    let mut session = open(&host, id, "test.spin");
    let error = session.prepare(&[one(1, "fine"), one(2, "spin")]).unwrap_err();
    match &error {
        Error::Timeout { plugin, model, ordinal, limit } => {
            assert_eq!(plugin, "misbehave@0.1.0");
            assert_eq!(model.as_str(), "test.spin");
            assert_eq!(*ordinal, Some(2));
            assert_eq!(*limit, Duration::from_millis(300));
        }
        other => panic!("expected a timeout, got {other:?}"),
    }
    assert_eq!(
        error.to_string(),
        "plugin misbehave@0.1.0 on test.spin record #2: ran past its time limit of 300ms; raise --plugin-timeout \
         or lower --batch-size"
    );

    let again = session.prepare(&[one(3, "fine")]).unwrap_err();
    assert!(matches!(&again, Error::Poisoned { cause, .. } if cause.contains("time limit")), "{again}");
    drop(session);

    let mut fresh = open(&host, id, "test.spin");
    assert_eq!(fresh.prepare(&[one(3, "fine")]).unwrap(), [Prepared::Skip("nothing to do".into())]);
}

#[test]
fn an_allocating_plugin_runs_out_of_memory() {
    let (mut host, _) = host(RuntimeConfig { memory_limit: 16 << 20, ..config() });
    let id = load(&mut host, "misbehave");
    let mut session = open(&host, id, "test.oom");
    let error = session.prepare(&[one(4, "fine"), one(5, "oom")]).unwrap_err();
    match &error {
        Error::OutOfMemory { plugin, model, ordinal, limit_mib } => {
            assert_eq!((plugin.as_str(), model.as_str()), ("misbehave@0.1.0", "test.oom"));
            assert_eq!((*ordinal, *limit_mib), (Some(5), 16));
        }
        other => panic!("expected out of memory, got {other:?}"),
    }
    assert!(matches!(session.prepare(&[one(6, "fine")]), Err(Error::Poisoned { .. })));
}

#[test]
fn a_panic_traps_with_its_message_and_a_new_session_works() {
    let (mut host, _) = host(config());
    let id = load(&mut host, "misbehave");
    let mut session = open(&host, id, "test.panic");
    let error = session.prepare(&[one(1, "fine"), record(2, 42, vec![text("boom")])]).unwrap_err();
    match &error {
        Error::Trap { plugin, model, ordinal, message } => {
            assert_eq!((plugin.as_str(), model.as_str(), *ordinal), ("misbehave@0.1.0", "test.panic", Some(2)));
            assert!(message.contains("the panic plugin blew up on old pk 42"), "{message}");
        }
        other => panic!("expected a trap, got {other:?}"),
    }
    let again = session.prepare(&[one(3, "fine")]).unwrap_err();
    assert_eq!(
        again.to_string(),
        "plugin misbehave@0.1.0 on test.panic: cannot be called after an earlier failure (it trapped); open a new session"
    );
    drop(session);

    let mut fresh = open(&host, id, "test.panic");
    assert_eq!(fresh.prepare(&[one(3, "fine")]).unwrap(), [Prepared::Skip("nothing to do".into())]);
}

#[test]
fn a_fatal_answer_stops_the_session() {
    let (mut host, _) = host(config());
    let id = load(&mut host, "passthrough");
    let mut session = open(&host, id, "test.author");
    let error = session.prepare(&[record(9, 1, vec![text("fatal"), Value::Null])]).unwrap_err();
    assert_eq!(error.to_string(), "plugin passthrough@1.2.3 on test.author: gave up: record 9 asked for it");
    assert!(matches!(session.prepare(&[]), Err(Error::Poisoned { .. })));
}

/// What a session of liar's `mode` does with a batch of two records.
fn lie(host: &PluginHost, id: PluginId, mode: &str) -> Error {
    let mut session = open(host, id, &format!("liar.{mode}"));
    let batch = [one(1, "a"), one(2, "b")];
    let result = session.prepare(&batch).and_then(|_| {
        session.resolve(&[answered(0, vec![Answer::Found(None)]), answered(1, vec![Answer::Found(Some(5))])])
    });
    let error = result.expect_err(mode);
    // Whatever the lie, the session is not used again.
    assert!(matches!(session.prepare(&batch), Err(Error::Poisoned { .. })), "{mode}");
    error
}

#[test]
fn lies_are_protocol_errors() {
    let (mut host, _) = host(config());
    let id = load(&mut host, "liar");
    for (mode, needle) in [
        ("count", "prepare returned 3 entries for a batch of 2 records"),
        ("query", "`Not A Model!` is not a model name"),
        ("index", "decided batch[999], which it was not asked about"),
        ("repeat", "decided batch[0] twice"),
        ("reuse", "reuse of pk 4242, which no answer for it found in liar.reuse"),
    ] {
        match lie(&host, id, mode) {
            Error::Protocol { plugin, model, message, .. } => {
                assert_eq!((plugin.as_str(), model.as_str()), ("liar@0.1.0", format!("liar.{mode}").as_str()));
                assert!(message.contains(needle), "{mode}: {message:?} lacks {needle:?}");
            }
            other => panic!("{mode}: expected a protocol error, got {other:?}"),
        }
    }
    // The error names the record the violation is about.
    assert_eq!(
        lie(&host, id, "reuse").to_string(),
        "plugin liar@0.1.0 on liar.reuse record #1: broke the contract: resolve: reuse of pk 4242, which no answer \
         for it found in liar.reuse"
    );
    let fatal = lie(&host, id, "fatal");
    assert!(matches!(&fatal, Error::Fatal { message, .. } if message == "unsupported model liar.fatal"), "{fatal}");
}

#[test]
fn a_malformed_description_fails_the_load() {
    let (mut host, _) = host(config());
    let error = host.load(Origin::Builtin("liar-describe"), &artifact("liar-describe")).unwrap_err();
    match &error {
        Error::Describe { plugin, message } => {
            assert_eq!(plugin, "builtin:liar-describe");
            assert!(message.contains("`not a model; drop table users` is not a model name"), "{message}");
        }
        other => panic!("expected a describe error, got {other:?}"),
    }
    assert_eq!(host.plugins().count(), 0);
}

#[test]
fn bytes_that_are_no_plugin_fail_the_load() {
    let (mut host, _) = host(config());
    let error = host.load(Origin::File("junk.wasm".into()), b"\0asm junk").unwrap_err();
    assert!(matches!(&error, Error::Load { origin, .. } if origin == "junk.wasm"), "{error}");
}

#[test]
fn the_host_checks_what_it_is_asked_to_do() {
    let (mut host, _) = host(config());
    let id = load(&mut host, "passthrough");
    let error = host.open_session(id, session_config("test.other", 1)).err().unwrap();
    assert!(matches!(&error, Error::Runtime(m) if m.contains("does not describe model test.other")), "{error}");
    assert!(host.open_session(PluginId(9), session_config("test.author", 1)).is_err());
    let mut bad_time = session_config("test.author", 1);
    bad_time.started_at = "1969-12-31T23:59:59Z".parse().expect("a valid time");
    assert!(matches!(host.open_session(id, bad_time), Err(Error::Runtime(_))));

    // An index outside the last batch is the caller's bug; the session lives on.
    let mut session = open(&host, id, "test.author");
    session.prepare(&[record(1, 1, vec![text("ann"), Value::Null])]).unwrap();
    let error = session.resolve(&[answered(1, vec![])]).unwrap_err();
    assert!(matches!(error, Error::Runtime(_)), "{error}");
    let error = session.resolve(&[answered(0, vec![]), answered(0, vec![])]).unwrap_err();
    assert!(matches!(error, Error::Runtime(_)), "{error}");
    assert_eq!(session.resolve(&[answered(0, vec![Answer::Found(Some(3))])]).unwrap()[0].decision, Decision::Reuse(3));

    assert!(PluginHost::new(RuntimeConfig { memory_limit: MAX_MEMORY_LIMIT + 1, ..config() }).is_err());
}

const STD_USER_REPORT: &str =
    "now=1687474795531 env=err:environment variable not found args=0 fs=err net=err slept=3600 map=1";

#[test]
fn std_works_harmlessly_in_the_locked_down_wasi() {
    assert_eq!(STD_USER_REPORT.split_whitespace().next(), Some(format!("now={STARTED_AT_MS}").as_str()));
    let (mut host, logs) = host(config());
    let id = load(&mut host, "std-user");
    let mut session = open(&host, id, "test.std");
    let prepared = session.prepare(&[one(1, "x")]).unwrap();
    assert_eq!(prepared, [Prepared::Skip(STD_USER_REPORT.into())]);
    let logs = logs.lock().unwrap();
    let printed: Vec<&str> = logs.iter().map(|(_, _, _, line)| line.as_str()).collect();
    assert!(printed.contains(&"stdout: hello from std-user"), "{printed:?}");
    assert!(printed.contains(&"stderr: std-user writes to stderr"), "{printed:?}");
}

#[test]
fn calls_work_from_inside_an_async_task() {
    let (mut host, _) = host(config());
    let id = load(&mut host, "std-user");
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    // std-user writes to stdout, which wasmtime-wasi's sync bindings serve by
    // blocking on Tokio; that must not panic inside a task.
    let prepared = runtime.block_on(async {
        let mut session = open(&host, id, "test.std");
        session.prepare(&[one(1, "x")])
    });
    assert_eq!(prepared.unwrap(), [Prepared::Skip(STD_USER_REPORT.into())]);
}

#[test]
fn the_compile_cache_is_used_and_survives_corruption() {
    let dir = tempfile::tempdir().unwrap();
    let cached = || RuntimeConfig { cache_dir: Some(dir.path().join("components")), ..config() };
    let works = |host: &PluginHost, id| {
        let mut session = open(host, id, "test.author");
        session.prepare(&[record(1, 1, vec![text("ann"), Value::Null])]).unwrap();
    };

    let (mut first, _) = host(cached());
    let id = load(&mut first, "passthrough");
    assert!(!first.plugins[id.0].from_cache);
    let files: Vec<PathBuf> =
        std::fs::read_dir(dir.path().join("components")).unwrap().map(|e| e.unwrap().path()).collect();
    assert_eq!(files.len(), 1, "{files:?}");
    let file = &files[0];
    let name = file.file_name().unwrap().to_str().unwrap();
    assert!(name.contains("-wasmtime48.0.8-") && name.ends_with(".cwasm"), "{name}");
    let compiled = std::fs::read(file).unwrap();

    let (mut second, _) = host(cached());
    let id = load(&mut second, "passthrough");
    assert!(second.plugins[id.0].from_cache);
    works(&second, id);

    std::fs::write(file, b"not a compiled component").unwrap();
    let (mut third, _) = host(cached());
    let id = load(&mut third, "passthrough");
    assert!(!third.plugins[id.0].from_cache);
    works(&third, id);
    assert_eq!(std::fs::read(file).unwrap().len(), compiled.len(), "the corrupt file is replaced");

    // A cache that cannot be written only means compiling every time.
    let blocked = dir.path().join("a-file");
    std::fs::write(&blocked, b"").unwrap();
    let (mut fourth, _) = host(RuntimeConfig { cache_dir: Some(blocked.join("components")), ..config() });
    let id = load(&mut fourth, "passthrough");
    assert!(!fourth.plugins[id.0].from_cache);
    works(&fourth, id);
}

#[test]
fn greedy_host_calls_trap() {
    let (mut host, _) = host(config());
    let id = load(&mut host, "liar");
    let mut session = open(&host, id, "liar.greedy");
    let error = session.prepare(&[one(1, "a")]).unwrap_err();
    match &error {
        Error::Trap { message, .. } => {
            assert!(message.contains("random-bytes asked for 1048576 bytes; at most 65536"), "{message}")
        }
        other => panic!("expected a trap, got {other:?}"),
    }
}

#[test]
fn logs_are_cut_and_capped_per_call() {
    let (mut host, logs) = host(config());
    let id = load(&mut host, "liar");
    let mut session = open(&host, id, "liar.chatty");
    for round in 1..=2 {
        session.prepare(&[one(1, "a")]).unwrap();
        let mut logs = logs.lock().unwrap();
        let lines: Vec<_> = logs.drain(..).collect();
        assert_eq!(lines.len(), 101, "round {round}");
        for (plugin, model, level, line) in &lines[..100] {
            assert_eq!((plugin.as_str(), model.as_deref(), *level), ("liar@0.1.0", Some("liar.chatty"), Level::Info));
            assert!(line.len() <= 1024 && line.ends_with('…'), "{}", line.len());
        }
        assert_eq!(lines[100].2, Level::Warn);
        assert_eq!(lines[100].3, "900 more log lines in this call were dropped");
    }
}

/// A plugin writes only its own models' rows: a derived row of another
/// plugin's model is a contract violation, whatever its values.
#[test]
fn deriving_a_row_of_another_plugins_model_breaks_the_contract() {
    let (mut host, _) = host(config());
    let id = load(&mut host, "hostile");
    let mut session = open(&host, id, "hostile.derive_foreign");
    let batch = [record(1, 10, vec![text("fine"), Value::Null]), record(2, 11, vec![text("go"), Value::Null])];
    session.prepare(&batch).unwrap();
    let error = session.resolve(&[answered(0, vec![]), answered(1, vec![])]).unwrap_err();
    assert_eq!(
        error.to_string(),
        "plugin hostile@0.1.0 on hostile.derive_foreign record #2: broke the contract: resolve: derived a row of \
         sentry.email, a model it does not describe (a plugin writes only its own models' rows)"
    );
}

#[test]
fn an_import_relocate_lacks_is_named_when_the_load_fails() {
    let (mut host, _) = host(config());
    let error = host.load(Origin::Builtin("hostile-import"), &artifact("hostile-import")).unwrap_err();
    assert_eq!(
        error.to_string(),
        "plugin builtin:hostile-import: cannot load: it imports hostile:net/raw-socket@0.1.0, which relocate does \
         not provide: a plugin gets only relocate:plugin/host and a locked-down WASI"
    );
    assert_eq!(host.plugins().count(), 0);
}

/// Hostile guests, one after another in one host (one process): each fails
/// with an error naming the plugin, the model and the record, and a new
/// session of a well-behaved model in the same host works after each.
#[test]
fn hostile_guests_fail_cleanly_and_leave_the_host_usable() {
    let (mut host, _) =
        host(RuntimeConfig { memory_limit: 256 << 20, call_timeout: Duration::from_millis(500), ..config() });
    let id = load(&mut host, "hostile");
    // `go` is the hostile record; `parent` is the second value.
    let batch = || [record(1, 10, vec![text("fine"), Value::Null]), record(2, 11, vec![text("go"), Value::Null])];
    for (mode, needle) in [
        ("recurse", "trapped"),
        ("random_flood", "time limit"),
        ("log_flood", "time limit"),
        ("print_flood", "time limit"),
        ("exit", "called exit(0)"),
        ("index_flood", "more than 32 different column sets"),
        ("huge_text", "too much data"),
        ("many_decisions", "too much data"),
    ] {
        let mut session = open(&host, id, &format!("hostile.{mode}"));
        let error = session
            .prepare(&batch())
            .and_then(|_| session.resolve(&[answered(0, vec![]), answered(1, vec![])]))
            .expect_err(mode);
        let message = error.to_string();
        let prefix = format!("plugin hostile@0.1.0 on hostile.{mode} record #2: ");
        assert!(message.starts_with(&prefix) && message.contains(needle), "{mode}: {message}");
        assert!(!message.contains('\n'), "{mode}: one line: {message}");
        assert!(matches!(session.prepare(&batch()), Err(Error::Poisoned { .. })), "{mode}");
        drop(session);

        let mut target = open(&host, id, "hostile.target");
        target.prepare(&[record(1, 1, vec![text("after")])]).unwrap_or_else(|e| panic!("after {mode}: {e}"));
        let decided = target.resolve(&[answered(0, vec![])]).unwrap_or_else(|e| panic!("after {mode}: {e}"));
        assert_eq!(decided[0].decision, Decision::Insert { values: vec![text("after")], pk: None }, "after {mode}");
    }
}
