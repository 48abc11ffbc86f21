//! The wasmtime side of plugins: the process-wide engine and its epoch ticker,
//! the cache of compiled components, loading ([`PluginHost`]) and calling
//! ([`Session`]), and turning every way a call can fail into an [`Error`].

use std::hash::Hasher;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use sha2::{Digest, Sha256};
use wasmtime::component::{Component, Linker, ResourceAny};
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Store};

use super::contract::{self, Contract};
use super::state::{Phase, StoreSetup, StoreState, VirtualClockView, truncate};
use super::v2;
use super::{
    Answered, Decided, Error, InputRecord, LogSink, Origin, PluginId, PluginInfo, Prepared, Query, Result,
    RuntimeConfig, SessionConfig, stderr_log_sink,
};
use crate::model::{ModelDesc, ModelName, Value};

/// The wasmtime this host is pinned to (`=48.0.8` in Cargo.toml); part of the
/// compile cache key.
const WASMTIME_VERSION: &str = "48.0.8";
/// How often the epoch advances; deadlines are counted in these ticks.
const EPOCH_TICK: Duration = Duration::from_millis(10);
/// The largest per-plugin memory limit a [`RuntimeConfig`] may ask for; the
/// pooling allocator reserves address space for this much per memory.
pub const MAX_MEMORY_LIMIT: usize = 1 << 30;
/// Bytes a guest may hand the host in one call, import or return value,
/// before the batch is counted in: see [`hostcall_fuel`].
const HOSTCALL_FUEL: usize = 16 << 20;
/// What a guest may hand back per record of a batch, beyond twice the
/// record's own size: its decision, queries and derived rows.
const HOSTCALL_FUEL_PER_RECORD: usize = 16 << 10;
/// Component-model resource handles one store may hold at once.
const MAX_COMPONENT_HANDLES: usize = 10_000;
/// Plugin instances alive at once across the process (one per session).
const POOLED_INSTANCES: u32 = 64;
/// Bytes of captured stderr quoted in a trap message.
const STDERR_IN_MESSAGE: usize = 2 << 10;

/// The process-wide engine and the linker every plugin is instantiated with.
struct Runtime {
    engine: Engine,
    linker: Linker<StoreState>,
}

static RUNTIME: OnceLock<Result<Runtime, String>> = OnceLock::new();
/// The same with fuel metering on ([`RuntimeConfig::meter`]): its compiled
/// code counts instructions, so it is an engine of its own.
static METERED: OnceLock<Result<Runtime, String>> = OnceLock::new();

/// The engine and linker, made on first use; wasmtime advises one engine per
/// process (a process that meters, `relocate plugin test`, uses only that one).
fn runtime(meter: bool) -> Result<&'static Runtime> {
    let cell = if meter { &METERED } else { &RUNTIME };
    cell.get_or_init(|| Runtime::new(meter)).as_ref().map_err(|e| Error::Runtime(e.clone()))
}

impl Runtime {
    fn new(meter: bool) -> Result<Runtime, String> {
        let engine = match Engine::new(&engine_config(true, meter)) {
            Ok(engine) => engine,
            // The pool reserves address space up front, which a sandbox with a
            // small `ulimit -v` refuses; on-demand allocation still works.
            Err(_) => Engine::new(&engine_config(false, meter))
                .map_err(|e| format!("cannot create the wasm engine: {e:#}"))?,
        };
        let weak = engine.weak();
        std::thread::Builder::new()
            .name("relocate-epoch".into())
            .spawn(move || {
                while let Some(engine) = weak.upgrade() {
                    engine.increment_epoch();
                    drop(engine);
                    std::thread::sleep(EPOCH_TICK);
                }
            })
            .map_err(|e| format!("cannot start the epoch ticker: {e}"))?;
        let linker = linker(&engine).map_err(|e| format!("cannot link the plugin imports: {e:#}"))?;
        Ok(Runtime { engine, linker })
    }
}

fn engine_config(pooling: bool, meter: bool) -> Config {
    let mut config = Config::new();
    config.wasm_component_model(true);
    config.epoch_interruption(true);
    config.consume_fuel(meter);
    config.max_wasm_stack(512 << 10);
    // `RELOCATE_PERFMAP=1 perf record …` names plugins' functions in the
    // profile (a /tmp/perf-PID.map), for finding where a plugin's time goes.
    if std::env::var_os("RELOCATE_PERFMAP").is_some() {
        config.profiler(wasmtime::ProfilingStrategy::PerfMap);
    }
    config.parallel_compilation(true);
    if pooling {
        let mut pool = PoolingAllocationConfig::new();
        pool.total_component_instances(POOLED_INSTANCES)
            .total_core_instances(POOLED_INSTANCES * 16)
            .total_memories(POOLED_INSTANCES * 2)
            .total_tables(POOLED_INSTANCES * 8)
            .max_memory_size(MAX_MEMORY_LIMIT)
            .linear_memory_keep_resident(1 << 20);
        config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    }
    config
}

/// The imports every plugin gets: WASI p2, locked down by [`StoreState`], with
/// the monotonic clock replaced by a virtual one; and the `host` interface.
fn linker(engine: &Engine) -> wasmtime::Result<Linker<StoreState>> {
    let mut linker = Linker::new(engine);
    wasmtime_wasi::p2::add_to_linker_sync(&mut linker)?;
    // wasmtime-wasi's monotonic clock sleeps for real inside a host call,
    // where no deadline reaches; ours never blocks.
    linker.allow_shadowing(true);
    wasmtime_wasi::p2::bindings::clocks::monotonic_clock::add_to_linker::<StoreState, VirtualClockView>(
        &mut linker,
        StoreState::virtual_clock,
    )?;
    linker.allow_shadowing(false);
    contract::add_to_linker(&mut linker)?;
    Ok(linker)
}

/// Loads plugins and opens sessions on them.
///
/// Every plugin is compiled (or taken from the cache), linked and asked to
/// describe itself once, at [`load`](Self::load).
pub struct PluginHost {
    config: RuntimeConfig,
    log: LogSink,
    plugins: Vec<Loaded>,
}

/// A plugin ready to be instantiated.
struct Loaded {
    info: PluginInfo,
    /// `name@version`, as errors and logs name it.
    label: Arc<str>,
    /// What the component imports (`wasi:cli/environment@0.2.6`, ...).
    imports: Vec<String>,
    /// Linked, and by the contract version it speaks.
    pre: contract::Pre,
    /// Whether its compiled code came from the cache (for tests).
    #[cfg_attr(not(test), allow(dead_code))]
    from_cache: bool,
}

impl PluginHost {
    /// A host with `config`'s limits that logs to stderr.
    pub fn new(config: RuntimeConfig) -> Result<Self> {
        if config.memory_limit > MAX_MEMORY_LIMIT {
            return Err(Error::Runtime(format!(
                "a plugin memory limit of {} MiB is over the maximum of {} MiB",
                config.memory_limit >> 20,
                MAX_MEMORY_LIMIT >> 20
            )));
        }
        if config.call_timeout.is_zero() {
            return Err(Error::Runtime("the plugin call timeout must be more than zero".into()));
        }
        runtime(config.meter)?;
        Ok(PluginHost { config, log: stderr_log_sink(), plugins: Vec::new() })
    }

    /// Sends plugin log lines (and their stray stdout/stderr) to `sink`.
    #[must_use]
    pub fn with_log_sink(mut self, sink: LogSink) -> Self {
        self.log = sink;
        self
    }

    /// Compiles, links and describes a plugin.
    ///
    /// Fails with [`Error::Load`] when the bytes are not a component that
    /// fits the plugin world (or want imports relocate does not give), and
    /// with [`Error::Describe`] when its description is malformed.
    pub fn load(&mut self, origin: Origin, bytes: &[u8]) -> Result<PluginId> {
        let rt = runtime(self.config.meter)?;
        let load_error = |message: String| Error::Load { origin: origin.to_string(), message };
        check_header(bytes).map_err(load_error)?;
        let (component, from_cache) =
            compile_cached(&rt.engine, self.config.cache_dir.as_deref(), bytes, &origin, &self.log)
                .map_err(load_error)?;
        let ty = component.component_type();
        // The version is picked before linking, so that a plugin of another
        // version is told so rather than which of its imports are missing.
        let contract = contract::spoken(ty.exports(&rt.engine).map(|(name, _)| name)).map_err(load_error)?;
        let imports: Vec<String> = ty.imports(&rt.engine).map(|(name, _)| name.to_string()).collect();
        let pre = rt.linker.instantiate_pre(&component).map_err(|e| load_error(link_error(&imports, &e)))?;
        let pre = contract::Pre::new(contract, pre).map_err(|e| {
            load_error(format!(
                "it exports `{}`, but with other types than contract {}: {}",
                contract.importer,
                contract.package,
                one_line(&e)
            ))
        })?;

        let describe_error = |message: String| Error::Describe { plugin: origin.to_string(), message };
        let setup = StoreSetup {
            plugin: origin.to_string().into(),
            model: None,
            memory_limit: self.config.memory_limit,
            seed: 0,
            wall_clock: Duration::ZERO,
            facts: None,
            log: self.log.clone(),
            record_calls: false,
        };
        let mut store = new_store(&rt.engine, setup, &self.config);
        let described = off_async_context(|| pre.instantiate(&mut store)?.describe(&mut store));
        store.data_mut().host.end_call();
        let raw = match described {
            Ok(Ok(raw)) => raw,
            Ok(Err(e)) => return Err(describe_error(failure(e, &mut store).to_string())),
            Err(panic) => {
                return Err(describe_error(format!("the host panicked while it ran: {panic}")));
            }
        };
        let (name, version, models) = v2::plugin_info_from_wit(raw).map_err(describe_error)?;

        let label: Arc<str> = format!("{name}@{version}").into();
        let id = PluginId(self.plugins.len());
        self.plugins.push(Loaded {
            info: PluginInfo { name, version, origin, models },
            label,
            imports,
            pre,
            from_cache,
        });
        Ok(id)
    }

    /// The loaded plugins, in load order.
    pub fn plugins(&self) -> impl Iterator<Item = (PluginId, &PluginInfo)> {
        self.plugins.iter().enumerate().map(|(i, p)| (PluginId(i), &p.info))
    }

    /// What plugin `id` said about itself.
    pub fn info(&self, id: PluginId) -> Option<&PluginInfo> {
        self.plugins.get(id.0).map(|p| &p.info)
    }

    /// The contract version plugin `id` speaks.
    pub fn contract(&self, id: PluginId) -> Option<Contract> {
        self.plugins.get(id.0).map(|p| p.pre.contract())
    }

    /// The interfaces plugin `id` imports, by name, as its component says.
    pub fn imports(&self, id: PluginId) -> &[String] {
        self.plugins.get(id.0).map_or(&[], |p| p.imports.as_slice())
    }

    /// The first loaded plugin that describes `model`, with its description.
    ///
    /// A plugin never describes a model twice (load rejects that); whether two
    /// plugins may describe the same model is the caller's policy.
    pub fn find_model(&self, model: &ModelName) -> Option<(PluginId, &ModelDesc)> {
        self.plugins().find_map(|(id, info)| info.models.iter().find(|m| m.name == *model).map(|m| (id, m)))
    }

    /// Starts a fresh instance of plugin `id` for one model's import, on
    /// the calling thread.
    pub fn open_session(&self, id: PluginId, config: SessionConfig) -> Result<Session> {
        self.opener(id, config)?.open()
    }

    /// Starts a fresh instance of plugin `id` on a thread of its own, for
    /// calls from async code: the instance lives and is called there, so no
    /// call blocks an async worker or starts a thread.
    pub async fn spawn_session(&self, id: PluginId, config: SessionConfig) -> Result<SessionThread> {
        SessionThread::spawn(self.opener(id, config)?).await
    }

    /// Everything needed to open a session, owned, so that it can be
    /// opened on another thread.
    fn opener(&self, id: PluginId, config: SessionConfig) -> Result<Opener> {
        let loaded = self.plugins.get(id.0).ok_or_else(|| Error::Runtime(format!("no plugin with id {}", id.0)))?;
        let model = loaded.info.models.iter().find(|m| m.name == config.model).cloned().ok_or_else(|| {
            Error::Runtime(format!("plugin {} does not describe model {}", loaded.label, config.model))
        })?;
        let wall_clock = u64::try_from(config.started_at.timestamp())
            .ok()
            .map(|secs| Duration::new(secs, config.started_at.timestamp_subsec_nanos()))
            .ok_or_else(|| Error::Runtime(format!("started_at {} is before 1970", config.started_at)))?;
        let setup = StoreSetup {
            plugin: loaded.label.clone(),
            model: Some(config.model.clone()),
            memory_limit: self.config.memory_limit,
            seed: config.seed,
            wall_clock,
            facts: Some(config.facts.clone()),
            log: self.log.clone(),
            record_calls: self.config.meter,
        };
        Ok(Opener {
            label: loaded.label.clone(),
            model,
            own_models: loaded.info.models.iter().map(|m| m.name.clone()).collect(),
            config: self.config.clone(),
            pre: loaded.pre.clone(),
            setup,
            wit_config: v2::session_config_to_wit(&config),
        })
    }
}

/// A session about to be opened.
struct Opener {
    label: Arc<str>,
    model: ModelDesc,
    own_models: Arc<[ModelName]>,
    config: RuntimeConfig,
    pre: contract::Pre,
    setup: StoreSetup,
    wit_config: v2::WitSessionConfig,
}

impl Opener {
    fn open(self) -> Result<Session> {
        let rt = runtime(self.config.meter)?;
        let store = new_store(&rt.engine, self.setup, &self.config);
        let mut session = Session {
            plugin: self.label,
            model: self.model,
            own_models: self.own_models,
            config: self.config,
            store,
            bindings: None,
            resource: None,
            ordinals: Arc::from([]),
            fuel: HOSTCALL_FUEL,
            instructions: 0,
            poisoned: None,
            lookups: Default::default(),
            own_finds: Vec::new(),
        };
        let (pre, wit_config) = (&self.pre, &self.wit_config);
        let (bindings, resource) = session.call(Phase::Session, |store| {
            let instance = pre.instantiate(&mut *store)?;
            let resource = instance.open(&mut *store, wit_config)?;
            Ok((instance, resource))
        })?;
        session.bindings = Some(Arc::new(bindings));
        session.resource = Some(resource);
        Ok(session)
    }
}

/// What a session's instance used: the instructions it ran in `prepare` and
/// `resolve` (wasmtime fuel; `None` unless [`RuntimeConfig::meter`]) and its
/// largest linear memory, in bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Usage {
    pub instructions: Option<u64>,
    pub peak_memory: usize,
}

/// A [`Session`] that lives on a thread of its own and is called from async
/// code. Dropping it ends the thread, which drops the instance.
pub struct SessionThread {
    model: ModelDesc,
    jobs: Option<std::sync::mpsc::Sender<Job>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

type Job = Box<dyn FnOnce(&mut Session) + Send>;

impl SessionThread {
    async fn spawn(opener: Opener) -> Result<SessionThread> {
        let model = opener.model.clone();
        let (jobs, inbox) = std::sync::mpsc::channel::<Job>();
        let (opened, open_result) = tokio::sync::oneshot::channel();
        let thread = std::thread::Builder::new()
            .name(format!("plugin {}", model.name))
            // wasmtime's guest stack (512 KiB) runs on this thread's stack.
            .stack_size(8 << 20)
            .spawn(move || {
                let mut session = match opener.open() {
                    Ok(session) => {
                        let _ = opened.send(Ok(()));
                        session
                    }
                    Err(e) => {
                        let _ = opened.send(Err(e));
                        return;
                    }
                };
                while let Ok(job) = inbox.recv() {
                    job(&mut session);
                }
            })
            .map_err(|e| Error::Runtime(format!("cannot start a thread for plugin session {}: {e}", model.name)))?;
        let this = SessionThread { model, jobs: Some(jobs), thread: Some(thread) };
        match open_result.await {
            Ok(Ok(())) => Ok(this),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(this.gone()),
        }
    }

    /// The model this session imports.
    pub fn model(&self) -> &ModelDesc {
        &self.model
    }

    /// [`Session::prepare`], on the session's thread.
    pub async fn prepare(&self, batch: Vec<InputRecord>) -> Result<Vec<Prepared>> {
        self.start_prepare(batch).wait().await
    }

    /// [`Session::resolve`], on the session's thread.
    pub async fn resolve(&self, answers: Vec<Answered>) -> Result<Vec<Decided>> {
        self.start_resolve(answers).wait().await
    }

    /// Hands `prepare` to the session's thread now, to be awaited later:
    /// the plugin works while the caller does.
    pub fn start_prepare(&self, batch: Vec<InputRecord>) -> Pending<Vec<Prepared>> {
        self.start(move |session| session.prepare_owned(batch))
    }

    /// Hands `resolve` to the session's thread now; see [`Self::start_prepare`].
    pub fn start_resolve(&self, answers: Vec<Answered>) -> Pending<Vec<Decided>> {
        self.start(move |session| session.resolve(&answers))
    }

    /// [`Session::host_calls`], on the session's thread.
    pub async fn host_calls(&self) -> Result<Vec<String>> {
        self.run(|session| Ok(session.host_calls())).await
    }

    /// [`Session::usage`], on the session's thread.
    pub async fn usage(&self) -> Result<Usage> {
        self.run(|session| Ok(session.usage())).await
    }

    async fn run<R: Send + 'static>(&self, f: impl FnOnce(&mut Session) -> Result<R> + Send + 'static) -> Result<R> {
        self.start(f).wait().await
    }

    fn start<R: Send + 'static>(&self, f: impl FnOnce(&mut Session) -> Result<R> + Send + 'static) -> Pending<R> {
        let (reply, result) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move |session| {
            let _ = reply.send(f(session));
        });
        let sent = self.jobs.as_ref().is_some_and(|jobs| jobs.send(job).is_ok());
        Pending { result: sent.then_some(result), gone: self.gone() }
    }

    fn gone(&self) -> Error {
        Error::Runtime(format!("the thread of the plugin session on {} has ended", self.model.name))
    }
}

/// A call handed to a session's thread; [`Pending::wait`] for its result.
/// The session runs one call at a time, in the order they were handed over.
#[must_use = "the session is busy until the call is waited for"]
pub struct Pending<R> {
    result: Option<tokio::sync::oneshot::Receiver<Result<R>>>,
    /// What to say if the thread ended before answering.
    gone: Error,
}

impl<R> Pending<R> {
    pub async fn wait(self) -> Result<R> {
        match self.result {
            Some(result) => result.await.unwrap_or(Err(self.gone)),
            None => Err(self.gone),
        }
    }
}

impl Drop for SessionThread {
    fn drop(&mut self) {
        drop(self.jobs.take());
        if let Some(thread) = self.thread.take() {
            // The thread only drops the instance now: quick, and it frees
            // the instance's pool slot before the next session needs one.
            let _ = thread.join();
        }
    }
}

fn new_store(engine: &Engine, setup: StoreSetup, config: &RuntimeConfig) -> Store<StoreState> {
    let mut store = Store::new(engine, StoreState::new(setup));
    store.limiter(|state| &mut state.limiter);
    store.set_hostcall_fuel(HOSTCALL_FUEL);
    store.set_max_component_handles(MAX_COMPONENT_HANDLES);
    store.epoch_deadline_trap();
    if config.meter {
        // Fuel only counts here: the deadline is still the epoch's.
        let _ = store.set_fuel(u64::MAX);
    }
    arm(&mut store, config.call_timeout);
    store
}

/// The hostcall fuel for calls on `batch`: sized to the batch, so that any
/// batch the host hands over can come back, yet a guest cannot make the host
/// allocate without bound.
fn hostcall_fuel(batch: &[InputRecord]) -> usize {
    let bytes: usize = batch
        .iter()
        .flat_map(|r| &r.values)
        .map(|v| match v {
            Value::Text(s) | Value::Json(s) => s.len(),
            _ => 8,
        })
        .sum();
    HOSTCALL_FUEL
        .saturating_add(bytes.saturating_mul(2))
        .saturating_add(batch.len().saturating_mul(HOSTCALL_FUEL_PER_RECORD))
}

/// Re-arms the epoch deadline and resets per-call state before entering the
/// guest.
fn arm(store: &mut Store<StoreState>, call_timeout: Duration) {
    let ticks = call_timeout.as_nanos().div_ceil(EPOCH_TICK.as_nanos()).max(1);
    store.set_epoch_deadline(u64::try_from(ticks).unwrap_or(u64::MAX));
    store.data_mut().begin_call();
}

// The engine moves sessions to blocking threads and shares the host.
const _: () = {
    const fn send<T: Send>() {}
    const fn send_sync<T: Send + Sync>() {}
    send::<Session>();
    send_sync::<PluginHost>();
};

/// How a call into a guest failed, before the session adds names.
enum Failure {
    Timeout,
    OutOfMemory,
    Trap(String),
    /// The host could not run the guest at all (e.g. too many instances).
    Host(String),
}

impl Failure {
    fn into_error(self, plugin: &str, model: &ModelName, ordinal: Option<u64>, config: &RuntimeConfig) -> Error {
        let (plugin, model) = (plugin.to_string(), model.clone());
        match self {
            Failure::Timeout => Error::Timeout { plugin, model, ordinal, limit: config.call_timeout },
            Failure::OutOfMemory => Error::OutOfMemory { plugin, model, ordinal, limit_mib: config.memory_limit >> 20 },
            Failure::Trap(message) => Error::Trap { plugin, model, ordinal, message },
            Failure::Host(message) => Error::Runtime(format!("plugin {plugin} on {model}: {message}")),
        }
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Timeout => f.write_str("ran past its time limit"),
            Failure::OutOfMemory => f.write_str("ran out of its memory limit"),
            Failure::Trap(message) => write!(f, "trapped: {message}"),
            Failure::Host(message) => f.write_str(message),
        }
    }
}

/// Tells a deadline, a refused memory growth and any other trap apart, and
/// quotes what the guest wrote to stderr (a Rust panic message).
fn failure(error: wasmtime::Error, store: &mut Store<StoreState>) -> Failure {
    let state = store.data_mut();
    let stderr = state.stderr.take();
    if state.limiter.memory_refused {
        return Failure::OutOfMemory;
    }
    if error.downcast_ref::<wasmtime::Trap>() == Some(&wasmtime::Trap::Interrupt) {
        return Failure::Timeout;
    }
    if error.downcast_ref::<wasmtime::PoolConcurrencyLimitError>().is_some() {
        return Failure::Host(format!("cannot start an instance: {}", error.root_cause()));
    }
    let mut message = match error.downcast_ref::<wasmtime_wasi::I32Exit>() {
        Some(exit) => format!("the plugin called exit({})", exit.0),
        None => error.root_cause().to_string(),
    };
    // The hint a Rust panic prints is no use: a plugin has no environment.
    let stderr: Vec<&str> = stderr.lines().filter(|l| !l.starts_with("note: run with `RUST_BACKTRACE")).collect();
    let stderr = stderr.join("\n");
    let stderr = stderr.trim();
    if !stderr.is_empty() {
        // Keep the end, where a panic message is.
        let mut start = stderr.len().saturating_sub(STDERR_IN_MESSAGE);
        while !stderr.is_char_boundary(start) {
            start += 1;
        }
        message.push_str("; stderr: ");
        message.push_str(&stderr[start..]);
    }
    Failure::Trap(message)
}

/// One model's plugin instance.
///
/// Calls are synchronous and block the calling thread for up to the call
/// timeout, so make them from a thread that may block (e.g. in
/// `tokio::task::spawn_blocking`). Inside a Tokio runtime each call runs on a
/// short-lived thread of its own, because wasmtime-wasi's synchronous I/O
/// (a guest's `println!`) panics on a thread that runs async tasks.
///
/// After any failure the instance is never entered again: every later call
/// returns [`Error::Poisoned`], and a new session starts afresh.
pub struct Session {
    plugin: Arc<str>,
    model: ModelDesc,
    /// Every model the plugin describes: the only ones it may derive rows of.
    own_models: Arc<[ModelName]>,
    config: RuntimeConfig,
    store: Store<StoreState>,
    /// Set once the instance and its guest session exist.
    bindings: Option<Arc<contract::Instance>>,
    resource: Option<ResourceAny>,
    /// The ordinals of the last batch given to `prepare`, to name records
    /// and to seed what the guest draws for each.
    ordinals: Arc<[u64]>,
    /// The hostcall fuel of each call on the last batch.
    fuel: usize,
    /// Instructions the guest ran in `prepare` and `resolve` so far, when
    /// [`RuntimeConfig::meter`] is on.
    instructions: u64,
    /// Why the session may not be used any more.
    poisoned: Option<String>,
    /// The lookups its queries asked for so far.
    lookups: v2::Lookups,
    /// Per record of the last batch, per query: whether it was a find on
    /// this session's model, whose answers name rows `resolve` may reuse.
    own_finds: Vec<Vec<bool>>,
}

impl Session {
    /// The model this session imports.
    pub fn model(&self) -> &ModelDesc {
        &self.model
    }

    /// The `host` imports the guest called so far, oldest first, as
    /// `at-record 0`, `random-bytes 32`, `mapping-of sentry.user 1: 10`,
    /// `log warn: ...`; empty unless [`RuntimeConfig::meter`].
    pub fn host_calls(&self) -> Vec<String> {
        self.store.data().host.calls.clone().unwrap_or_default()
    }

    /// What the instance has used so far.
    pub fn usage(&self) -> Usage {
        Usage {
            instructions: self.config.meter.then_some(self.instructions),
            peak_memory: self.store.data().limiter.peak,
        }
    }

    /// Normalizes a batch: exactly one [`Prepared`] per record, in order.
    pub fn prepare(&mut self, batch: &[InputRecord]) -> Result<Vec<Prepared>> {
        self.prepare_owned(batch.to_vec())
    }

    /// [`prepare`](Self::prepare), moving the records' values into the guest.
    pub fn prepare_owned(&mut self, batch: Vec<InputRecord>) -> Result<Vec<Prepared>> {
        self.check_usable()?;
        self.ordinals = batch.iter().map(|r| r.ordinal).collect();
        self.fuel = hostcall_fuel(&batch);
        let len = batch.len();
        let wit_batch = batch
            .into_iter()
            .map(v2::input_record_to_wit)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| Error::Runtime(format!("cannot hand the batch to {}: {e}", self.plugin)))?;
        let (bindings, resource) = self.instance()?;
        let raw = self.call(Phase::Prepare, |store| bindings.prepare(store, resource, wit_batch))?;
        let raw = self.settle(raw)?;
        let prepared = self.protocol(v2::prepared_from_wit(raw, len, &self.model))?;
        let lookups = v2::check_lookups(&prepared, &mut self.lookups);
        self.protocol(lookups)?;
        let own = &self.model.name;
        self.own_finds = prepared
            .iter()
            .map(|p| match p {
                Prepared::Ready { queries, .. } => {
                    queries.iter().map(|q| matches!(q, Query::Find { model, .. } if model == own)).collect()
                }
                _ => Vec::new(),
            })
            .collect();
        Ok(prepared)
    }

    /// Decides the records that were ready: one [`Decided`] per answered
    /// index, in index order.
    pub fn resolve(&mut self, answers: &[Answered]) -> Result<Vec<Decided>> {
        self.check_usable()?;
        let mut seen = std::collections::HashSet::new();
        for answered in answers {
            if answered.index >= self.ordinals.len() || !seen.insert(answered.index) {
                return Err(Error::Runtime(format!(
                    "resolve for {}: index {} is not a new index of the last batch of {}",
                    self.model.name,
                    answered.index,
                    self.ordinals.len()
                )));
            }
        }
        let wit_answers = answers
            .iter()
            .map(v2::answered_to_wit)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| Error::Runtime(format!("cannot hand the answers to {}: {e}", self.plugin)))?;
        let (bindings, resource) = self.instance()?;
        let raw = self.call(Phase::Resolve, |store| bindings.resolve(store, resource, wit_answers))?;
        let raw = self.settle(raw)?;
        let decided = v2::decided_from_wit(raw, answers, &self.model, &self.own_models, &self.own_finds);
        self.protocol(decided)
    }

    fn check_usable(&self) -> Result<()> {
        match &self.poisoned {
            Some(cause) => Err(Error::Poisoned {
                plugin: self.plugin.to_string(),
                model: self.model.name.clone(),
                cause: cause.clone(),
            }),
            None => Ok(()),
        }
    }

    fn instance(&self) -> Result<(Arc<contract::Instance>, ResourceAny)> {
        match (&self.bindings, self.resource) {
            (Some(bindings), Some(resource)) => Ok((bindings.clone(), resource)),
            _ => Err(Error::Runtime(format!("session of {} on {} has no instance", self.plugin, self.model.name))),
        }
    }

    /// Enters the guest with a fresh deadline for a `phase` call on the last
    /// batch; any failure poisons the session.
    fn call<R: Send>(
        &mut self,
        phase: Phase,
        f: impl FnOnce(&mut Store<StoreState>) -> wasmtime::Result<R> + Send,
    ) -> Result<R> {
        arm(&mut self.store, self.config.call_timeout);
        self.store.data().host.random.enter(phase, self.ordinals.clone());
        self.store.set_hostcall_fuel(self.fuel);
        let fuel_before = self.store.get_fuel().ok();
        let store = &mut self.store;
        let result = off_async_context(move || f(store));
        if let (Some(before), Ok(after), Phase::Prepare | Phase::Resolve) = (fuel_before, self.store.get_fuel(), phase)
        {
            self.instructions = self.instructions.saturating_add(before.saturating_sub(after));
        }
        let result = match result {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(error)) => {
                let ordinal = self.blamed_ordinal();
                let failure = failure(error, &mut self.store);
                Err(failure.into_error(&self.plugin, &self.model.name, ordinal, &self.config))
            }
            Err(panic) => Err(Error::Runtime(format!("the host panicked while {} ran: {panic}", self.plugin))),
        };
        self.forward_output();
        self.store.data_mut().host.end_call();
        if let Err(error) = &result {
            self.poisoned = Some(short_cause(error));
        }
        result
    }

    /// Turns a guest `fatal` into [`Error::Fatal`].
    fn settle<T>(&mut self, raw: std::result::Result<T, v2::WitFatal>) -> Result<T> {
        raw.map_err(|fatal| {
            let error = Error::Fatal {
                plugin: self.plugin.to_string(),
                model: self.model.name.clone(),
                message: truncate(&v2::fatal_message(fatal), 4 << 10).into_owned(),
            };
            self.poisoned = Some("it gave up (fatal)".into());
            error
        })
    }

    /// Turns a contract violation into [`Error::Protocol`], naming the
    /// record it is about.
    fn protocol<T>(&mut self, checked: std::result::Result<T, v2::Violation>) -> Result<T> {
        checked.map_err(|violation| {
            self.poisoned = Some("it broke the contract".into());
            Error::Protocol {
                plugin: self.plugin.to_string(),
                model: self.model.name.clone(),
                ordinal: violation.index.and_then(|i| self.ordinals.get(i).copied()),
                message: violation.message,
            }
        })
    }

    /// The ordinal of the record the guest last said it worked on.
    fn blamed_ordinal(&self) -> Option<u64> {
        let index = self.store.data().host.at_record?;
        self.ordinals.get(index as usize).copied()
    }

    /// Logs what the guest printed (a well-behaved plugin does not), less
    /// the stderr a failure already quoted.
    fn forward_output(&mut self) {
        let state = self.store.data_mut();
        for (stream, text) in [("stdout", state.stdout.take()), ("stderr", state.stderr.take())] {
            for line in text.lines().filter(|l| !l.trim().is_empty()) {
                state.host.log(super::Level::Debug, &format!("{stream}: {line}"));
            }
        }
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        // A failed instance must not be entered again, not even to drop.
        if self.poisoned.is_some() {
            return;
        }
        if let Some(resource) = self.resource.take() {
            arm(&mut self.store, self.config.call_timeout);
            let store = &mut self.store;
            let _ = off_async_context(move || resource.resource_drop(store));
        }
    }
}

/// A short reason for [`Error::Poisoned`].
fn short_cause(error: &Error) -> String {
    match error {
        Error::Timeout { .. } => "it ran past its time limit".into(),
        Error::OutOfMemory { .. } => "it ran out of memory".into(),
        Error::Trap { .. } => "it trapped".into(),
        Error::Fatal { .. } => "it gave up (fatal)".into(),
        Error::Protocol { .. } => "it broke the contract".into(),
        _ => "the host failed while it ran".into(),
    }
}

/// Runs `f` where wasmtime-wasi's synchronous I/O may block.
///
/// wasmtime-wasi's sync bindings block on a Tokio runtime, which panics on a
/// thread that is running async tasks; there `f` runs on a scoped thread of its
/// own. A panic in `f` (a host bug) comes back as `Err`, never unwinds further.
fn off_async_context<R: Send>(f: impl FnOnce() -> R + Send) -> std::result::Result<R, String> {
    let panic_message = |payload: Box<dyn std::any::Any + Send>| {
        payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown panic".into())
    };
    if tokio::runtime::Handle::try_current().is_err() {
        return std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).map_err(panic_message);
    }
    std::thread::scope(|scope| {
        std::thread::Builder::new()
            .name("relocate-plugin".into())
            .spawn_scoped(scope, f)
            .map_err(|e| format!("cannot start a thread for the plugin call: {e}"))?
            .join()
            .map_err(panic_message)
    })
}

/// Says in one sentence what `bytes` are when they are not a component, so
/// that a wrong file never reaches wasmtime's multi-line messages.
fn check_header(bytes: &[u8]) -> Result<(), String> {
    if wasmparser::Parser::is_component(bytes) {
        Ok(())
    } else if wasmparser::Parser::is_core_wasm(bytes) {
        Err("it is a core WebAssembly module, not a component: build the plugin for wasm32-wasip2 \
             (or wrap the module with `wasm-tools component new`)"
            .into())
    } else if bytes.starts_with(b"\0asm") {
        Err("it is WebAssembly of an unknown version or layer, not a component of the component model".into())
    } else {
        Err("it is not a WebAssembly file (no `\\0asm` header): expected a component built for wasm32-wasip2".into())
    }
}

/// Why a component cannot be linked: the interfaces it imports that relocate
/// does not provide, by name (wasmtime's own innermost cause does not say
/// which), or else wasmtime's whole message.
fn link_error(imports: &[String], error: &wasmtime::Error) -> String {
    let missing: Vec<&str> = imports
        .iter()
        .filter(|name| super::imports::classify(name).0 == super::Access::Missing)
        .map(String::as_str)
        .collect();
    if missing.is_empty() {
        let chain = format!("{error:#}");
        return format!("cannot link: {}", chain.lines().map(str::trim).collect::<Vec<_>>().join(" "));
    }
    format!(
        "it imports {}, which relocate does not provide: a plugin gets only relocate:plugin/host and a \
         locked-down WASI",
        missing.join(", ")
    )
}

/// The innermost cause of a wasmtime error, on one line.
fn one_line(error: &wasmtime::Error) -> String {
    let cause = error.root_cause().to_string();
    cause.lines().map(str::trim).filter(|l| !l.is_empty()).collect::<Vec<_>>().join(" ")
}

/// Compiles `bytes`, or loads the result of an earlier compile from
/// `cache_dir`. Returns the component and whether it came from the cache.
///
/// The cache is an optimization only: a file that cannot be read or written
/// means compiling, never a failed load.
fn compile_cached(
    engine: &Engine,
    cache_dir: Option<&Path>,
    bytes: &[u8],
    origin: &Origin,
    log: &LogSink,
) -> Result<(Component, bool), String> {
    let note = |message: String| log(&origin.to_string(), None, super::Level::Debug, &message);
    let path = cache_dir.map(|dir| dir.join(cache_file_name(engine, bytes)));
    if let Some(path) = path.as_deref().filter(|p| p.is_file()) {
        match deserialize_cached(engine, path) {
            Ok(component) => return Ok((component, true)),
            Err(e) => note(format!("compile cache: ignoring {}: {e:#}", path.display())),
        }
    }
    let component =
        Component::new(engine, bytes).map_err(|e| format!("it is not a valid component: {}", one_line(&e)))?;
    if let Some(path) = path {
        let written = component
            .serialize()
            .map_err(|e| e.to_string())
            .and_then(|compiled| write_atomically(&path, &compiled).map_err(|e| e.to_string()));
        if let Err(e) = written {
            note(format!("compile cache: cannot write {}: {e}", path.display()));
        }
    }
    Ok((component, false))
}

/// Loads a compiled component from this host's cache.
///
/// The file is read into memory rather than mapped (`deserialize_file`): a
/// mapped file that someone truncates kills the process with SIGBUS.
#[allow(unsafe_code)]
fn deserialize_cached(engine: &Engine, path: &Path) -> wasmtime::Result<Component> {
    let compiled = std::fs::read(path)?;
    // SAFETY: deserializing trusts the bytes to be wasmtime's own compiled
    // code. Only `compile_cached` writes this directory (atomically, from
    // `Component::serialize` of bytes it compiled itself), the file name
    // carries the wasm's hash and the engine's compatibility hash, and
    // wasmtime rejects artifacts of other versions or settings. We never
    // load a `.cwasm` from anywhere else.
    unsafe { Component::deserialize(engine, &compiled) }
}

/// `<sha256 of the wasm>-wasmtime<version>-<engine compatibility hash>.cwasm`
fn cache_file_name(engine: &Engine, bytes: &[u8]) -> String {
    let wasm = hex(&Sha256::digest(bytes));
    let mut compat = HashToSha256(Sha256::new());
    std::hash::Hash::hash(&engine.precompile_compatibility_hash(), &mut compat);
    let compat = hex(&compat.0.finalize()[..8]);
    format!("{wasm}-wasmtime{WASMTIME_VERSION}-{compat}.cwasm")
}

/// Feeds a `Hash` into SHA-256, which (unlike `DefaultHasher`) is stable.
struct HashToSha256(Sha256);

impl Hasher for HashToSha256 {
    fn finish(&self) -> u64 {
        0
    }

    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Writes `path` so that readers see the old file or the whole new one.
fn write_atomically(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    let mut tmp = PathBuf::from(path);
    tmp.set_extension(format!("{}.{nanos}.tmp", std::process::id()));
    let result = std::fs::write(&tmp, contents).and_then(|()| std::fs::rename(&tmp, path));
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
#[path = "runtime_test.rs"]
mod tests;
