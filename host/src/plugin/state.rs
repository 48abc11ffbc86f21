//! The data of one plugin `Store`: limits, the locked-down WASI context, the
//! resource table and what the `host` imports work from (facts, the seeded
//! generator, the log sink, the record being worked on).
//!
//! Everything a guest can reach through WASI is decided here: no preopens,
//! environment, arguments or network; stdout and stderr go to small in-memory
//! buffers; the wall clock is frozen at the session's start; the monotonic
//! clock is virtual (sleeping returns at once and moves it forward); and all
//! randomness comes from seeded generators ([`Randomness`]): what a guest
//! draws for a record depends only on the seed, the model and the record's
//! ordinal, so an import resumed mid-way draws what an uninterrupted one did.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use rand_chacha::ChaCha20Rng;
use rand_chacha::rand_core::{RngCore, SeedableRng};
use sha2::{Digest, Sha256};
use wasmtime::component::{HasData, Resource, ResourceTable};
use wasmtime::{ResourceLimiter, StoreLimits, StoreLimitsBuilder};
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::bindings::clocks::monotonic_clock;
use wasmtime_wasi::p2::{DynPollable, OutputStream, Pollable, StreamError, StreamResult};
use wasmtime_wasi::{HostWallClock, WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

use super::{Facts, Level, LogSink};
use crate::model::ModelName;

/// Largest `random-bytes` (and WASI random) request a guest may make at once.
pub(super) const MAX_RANDOM_BYTES: u32 = 64 << 10;
/// Log lines longer than this are cut.
pub(super) const MAX_LOG_LINE: usize = 1 << 10;
/// Log lines kept per call into the plugin; the rest are counted and dropped.
pub(super) const MAX_LOG_LINES_PER_CALL: u32 = 100;
/// Bytes of guest stdout and of stderr kept per call (the last ones written).
const CAPTURE_BYTES: usize = 8 << 10;
/// Resources the guest may hold in the host's table at once (WASI streams,
/// pollables); plugins need a handful.
const MAX_TABLE_ENTRIES: usize = 1_000;

/// The data of one plugin `Store`.
pub(super) struct StoreState {
    pub limiter: Limiter,
    table: ResourceTable,
    wasi: WasiCtx,
    clock: VirtualClock,
    pub host: HostCtx,
    pub stdout: Capture,
    pub stderr: Capture,
}

/// What a store is opened for: the load-time `describe()` or a session.
pub(super) struct StoreSetup {
    pub plugin: Arc<str>,
    pub model: Option<ModelName>,
    pub memory_limit: usize,
    pub seed: u64,
    /// Seconds and nanoseconds since the Unix epoch of the frozen wall clock.
    pub wall_clock: Duration,
    pub facts: Option<Arc<dyn Facts>>,
    pub log: LogSink,
    /// Keep a list of the `host` imports the guest calls.
    pub record_calls: bool,
}

impl StoreState {
    pub fn new(setup: StoreSetup) -> Self {
        let model = setup.model.as_ref().map(ModelName::as_str).unwrap_or("");
        let random = Randomness::new(setup.seed, model);
        let stdout = Capture::new(CAPTURE_BYTES);
        let stderr = Capture::new(CAPTURE_BYTES);

        let mut wasi = WasiCtxBuilder::new();
        // The builder's defaults already give no preopens, env, args or
        // network (TCP, UDP and name lookup denied) and a closed stdin; the
        // rest is made explicit or replaced here.
        wasi.stdout(stdout.clone())
            .stderr(stderr.clone())
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .wall_clock(FrozenClock(setup.wall_clock))
            .secure_random(WasiRng(random.clone(), Purpose::WasiSecure))
            .insecure_random(WasiRng(random.clone(), Purpose::WasiInsecure))
            // One value per instance, which std reads once for its hash
            // seeds; it cannot follow records, so it stays per session.
            .insecure_random_seed(u128::from_le_bytes(
                seeded_bytes(b"relocate wasi insecure seed v1", setup.seed, model)[..16].try_into().unwrap_or([0; 16]),
            ))
            .max_random_size(u64::from(MAX_RANDOM_BYTES));

        let mut table = ResourceTable::new();
        table.set_max_capacity(MAX_TABLE_ENTRIES);

        StoreState {
            limiter: Limiter::new(setup.memory_limit),
            table,
            wasi: wasi.build(),
            clock: VirtualClock { now: 0 },
            host: HostCtx {
                plugin: setup.plugin,
                random,
                model: setup.model,
                facts: setup.facts,
                log: setup.log,
                at_record: None,
                log_lines: 0,
                log_dropped: 0,
                calls: setup.record_calls.then(Vec::new),
            },
            stdout,
            stderr,
        }
    }

    /// Resets the per-call state before the host calls into the guest: no
    /// record yet, and draws outside any batch (the constructor's).
    pub fn begin_call(&mut self) {
        self.host.at_record = None;
        self.host.random.enter(Phase::Session, Arc::from([]));
        self.host.log_lines = 0;
        self.host.log_dropped = 0;
        self.stdout.take();
        self.stderr.take();
    }
}

impl WasiView for StoreState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView { ctx: &mut self.wasi, table: &mut self.table }
    }
}

/// The state behind the `host` imports.
pub(super) struct HostCtx {
    pub plugin: Arc<str>,
    /// `None` while the plugin describes itself at load.
    pub model: Option<ModelName>,
    pub facts: Option<Arc<dyn Facts>>,
    pub random: Randomness,
    pub log: LogSink,
    /// The batch index the guest last said it works on, this call.
    pub at_record: Option<u32>,
    pub log_lines: u32,
    pub log_dropped: u32,
    /// Every `host` import the guest called, in order, when the session
    /// records them (`relocate plugin test`).
    pub calls: Option<Vec<String>>,
}

impl HostCtx {
    /// Notes a `host` import call, if this session records them.
    pub fn record(&mut self, call: impl FnOnce() -> String) {
        if let Some(calls) = &mut self.calls {
            calls.push(call());
        }
    }
}

impl HostCtx {
    /// Sends a line to the log sink, cut to [`MAX_LOG_LINE`], within the
    /// per-call budget.
    pub fn log(&mut self, level: Level, message: &str) {
        if self.log_lines >= MAX_LOG_LINES_PER_CALL {
            self.log_dropped = self.log_dropped.saturating_add(1);
            return;
        }
        self.log_lines += 1;
        (self.log)(&self.plugin, self.model.as_ref(), level, &truncate(message, MAX_LOG_LINE));
    }

    /// Reports lines dropped over the budget, once per call.
    pub fn end_call(&mut self) {
        if self.log_dropped > 0 {
            let note = format!("{} more log lines in this call were dropped", self.log_dropped);
            (self.log)(&self.plugin, self.model.as_ref(), Level::Warn, &note);
            self.log_dropped = 0;
        }
    }
}

/// Cuts `text` to at most `max` bytes on a character boundary, marking the cut.
pub(super) fn truncate(text: &str, max: usize) -> std::borrow::Cow<'_, str> {
    if text.len() <= max {
        return text.into();
    }
    let mut end = max.saturating_sub('…'.len_utf8());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end]).into()
}

/// Every random byte a guest gets, from `random-bytes` or from WASI.
///
/// Bytes are drawn from one generator per (purpose, what they are drawn
/// for), seeded from the import's seed, the model and that key alone:
///
/// - for the record the guest last named with `at-record`, this call: the
///   record's ordinal and the call (`prepare` or `resolve`), so that what a
///   plugin draws for record N is the same whether or not the session saw
///   the records before N (an import resumed after a crash, or with another
///   batch size), and `prepare` and `resolve` never draw the same bytes;
/// - in a call before any `at-record`: the call and the batch's first
///   ordinal (deterministic for the same batch; the SDK never draws there);
/// - outside any batch (the constructor, `describe`): the session's own
///   stream, as before records existed.
///
/// A record's generators live for the call, so naming it again continues
/// its stream; a later call (a retried batch) starts them afresh.
#[derive(Clone)]
pub(super) struct Randomness(Arc<Mutex<Streams>>);

struct Streams {
    seed: u64,
    model: String,
    phase: Phase,
    /// The ordinals of the batch being worked on, by index.
    batch: Arc<[u64]>,
    key: Key,
    /// The session's own generators, one per purpose.
    session: HashMap<Purpose, ChaCha20Rng>,
    /// This call's generators by purpose and key.
    call: HashMap<(Purpose, Key), ChaCha20Rng>,
}

/// Which call into the guest draws.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(super) enum Phase {
    /// Outside any batch: `describe`, the session's constructor, its drop.
    Session,
    Prepare,
    Resolve,
}

/// What the bytes are drawn for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Key {
    Session,
    Batch { phase: Phase, first: u64 },
    Record { phase: Phase, ordinal: u64 },
}

/// Which import the bytes are drawn through; each has its own streams.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(super) enum Purpose {
    RandomBytes,
    WasiSecure,
    WasiInsecure,
}

impl Purpose {
    /// The labels the session streams had before per-record streams, kept
    /// so that `describe` and the constructor draw what they always did.
    fn label(self) -> &'static [u8] {
        match self {
            Purpose::RandomBytes => b"relocate random-bytes v1",
            Purpose::WasiSecure => b"relocate wasi random v1",
            Purpose::WasiInsecure => b"relocate wasi insecure v1",
        }
    }
}

impl Randomness {
    fn new(seed: u64, model: &str) -> Self {
        Randomness(Arc::new(Mutex::new(Streams {
            seed,
            model: model.to_string(),
            phase: Phase::Session,
            batch: Arc::from([]),
            key: Key::Session,
            session: HashMap::new(),
            call: HashMap::new(),
        })))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Streams> {
        // Generators hold no invariant a panic mid-draw could break.
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Starts a call of `phase` on the batch with these ordinals: no record
    /// named yet, and no generator of an earlier call.
    pub fn enter(&self, phase: Phase, batch: Arc<[u64]>) {
        let mut streams = self.lock();
        streams.key = match (phase, batch.first()) {
            (Phase::Session, _) | (_, None) => Key::Session,
            (phase, Some(&first)) => Key::Batch { phase, first },
        };
        streams.phase = phase;
        streams.batch = batch;
        streams.call.clear();
    }

    /// The guest works on the record at `index` of the batch from now on.
    /// An index outside the batch (or a call outside any) changes nothing.
    pub fn at_record(&self, index: u32) {
        let mut streams = self.lock();
        if streams.phase == Phase::Session {
            return;
        }
        if let Some(&ordinal) = streams.batch.get(index as usize) {
            streams.key = Key::Record { phase: streams.phase, ordinal };
        }
    }

    pub fn fill(&self, purpose: Purpose, dst: &mut [u8]) {
        let mut guard = self.lock();
        let streams = &mut *guard;
        let (seed, model, key) = (streams.seed, streams.model.as_str(), streams.key);
        let rng = match key {
            Key::Session => streams
                .session
                .entry(purpose)
                .or_insert_with(|| ChaCha20Rng::from_seed(seed_for(purpose, seed, model, key))),
            _ => streams
                .call
                .entry((purpose, key))
                .or_insert_with(|| ChaCha20Rng::from_seed(seed_for(purpose, seed, model, key))),
        };
        rng.fill_bytes(dst);
    }
}

/// The seed of one generator: a hash of its purpose, the import's seed, the
/// model and the key. The session key hashes nothing more, as before.
fn seed_for(purpose: Purpose, seed: u64, model: &str, key: Key) -> [u8; 32] {
    let label = purpose.label();
    let mut hash = Sha256::new();
    hash.update((label.len() as u64).to_le_bytes());
    hash.update(label);
    hash.update(seed.to_le_bytes());
    hash.update(model.as_bytes());
    let (tag, phase, n) = match key {
        Key::Session => return hash.finalize().into(),
        Key::Batch { phase, first } => (&b"batch"[..], phase, first),
        Key::Record { phase, ordinal } => (&b"record"[..], phase, ordinal),
    };
    // The model name is not length-prefixed above; this separator cannot
    // occur in one (`app.model`, lower-case ASCII).
    hash.update(b"\0");
    hash.update(tag);
    hash.update([match phase {
        Phase::Session => 0,
        Phase::Prepare => 1,
        Phase::Resolve => 2,
    }]);
    hash.update(n.to_le_bytes());
    hash.finalize().into()
}

/// The insecure-seed value of a session: its own hash, never a stream's.
fn seeded_bytes(purpose: &[u8], seed: u64, model: &str) -> [u8; 32] {
    let mut hash = Sha256::new();
    hash.update((purpose.len() as u64).to_le_bytes());
    hash.update(purpose);
    hash.update(seed.to_le_bytes());
    hash.update(model.as_bytes());
    hash.finalize().into()
}

/// WASI's generators are `rand` 0.10 ones; this one draws from the
/// session's [`Randomness`], so it follows the record too.
struct WasiRng(Randomness, Purpose);

impl rand_core_010::TryRng for WasiRng {
    type Error = std::convert::Infallible;

    fn try_next_u32(&mut self) -> Result<u32, Self::Error> {
        let mut bytes = [0; 4];
        self.0.fill(self.1, &mut bytes);
        Ok(u32::from_le_bytes(bytes))
    }

    fn try_next_u64(&mut self) -> Result<u64, Self::Error> {
        let mut bytes = [0; 8];
        self.0.fill(self.1, &mut bytes);
        Ok(u64::from_le_bytes(bytes))
    }

    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Self::Error> {
        self.0.fill(self.1, dst);
        Ok(())
    }
}

/// A wall clock that always reads the session's `started_at`.
struct FrozenClock(Duration);

impl HostWallClock for FrozenClock {
    fn resolution(&self) -> Duration {
        Duration::from_millis(1)
    }

    fn now(&self) -> Duration {
        self.0
    }
}

/// The guest's monotonic clock: it starts at zero, moves 1 µs per reading and
/// jumps to the deadline of any sleep, which returns at once.
///
/// wasmtime-wasi's own clock makes `poll` wait for real time (forever for a
/// far deadline) inside a host call, where epochs cannot interrupt it.
pub(super) struct VirtualClock {
    now: u64,
}

const CLOCK_STEP_NS: u64 = 1_000;

/// Links `wasi:clocks/monotonic-clock` to [`VirtualClock`].
pub(super) struct VirtualClockView;

impl HasData for VirtualClockView {
    type Data<'a> = VirtualClockCtx<'a>;
}

pub(super) struct VirtualClockCtx<'a> {
    clock: &'a mut VirtualClock,
    table: &'a mut ResourceTable,
}

impl StoreState {
    pub fn virtual_clock(&mut self) -> VirtualClockCtx<'_> {
        VirtualClockCtx { clock: &mut self.clock, table: &mut self.table }
    }
}

impl VirtualClockCtx<'_> {
    fn ready_at(&mut self, when: u64) -> wasmtime::Result<Resource<DynPollable>> {
        self.clock.now = self.clock.now.max(when);
        let ready = self.table.push(AlwaysReady)?;
        wasmtime_wasi::p2::subscribe(self.table, ready)
    }
}

impl monotonic_clock::Host for VirtualClockCtx<'_> {
    fn now(&mut self) -> wasmtime::Result<monotonic_clock::Instant> {
        self.clock.now = self.clock.now.saturating_add(CLOCK_STEP_NS);
        Ok(self.clock.now)
    }

    fn resolution(&mut self) -> wasmtime::Result<monotonic_clock::Duration> {
        Ok(CLOCK_STEP_NS)
    }

    fn subscribe_instant(&mut self, when: monotonic_clock::Instant) -> wasmtime::Result<Resource<DynPollable>> {
        self.ready_at(when)
    }

    fn subscribe_duration(&mut self, duration: monotonic_clock::Duration) -> wasmtime::Result<Resource<DynPollable>> {
        let when = self.clock.now.saturating_add(duration);
        self.ready_at(when)
    }
}

/// A pollable that is ready at once: what every virtual-clock sleep returns.
struct AlwaysReady;

#[wasmtime_wasi::async_trait]
impl Pollable for AlwaysReady {
    async fn ready(&mut self) {}
}

/// A bounded in-memory stdout or stderr that keeps the last bytes written.
///
/// It accepts every write, so that a chatty guest neither blocks nor traps.
#[derive(Clone)]
pub(super) struct Capture {
    inner: Arc<Mutex<Vec<u8>>>,
    capacity: usize,
}

impl Capture {
    fn new(capacity: usize) -> Self {
        Capture { inner: Arc::new(Mutex::new(Vec::new())), capacity }
    }

    fn push(&self, bytes: &[u8]) {
        // A poisoned lock only means another writer panicked mid-push; the
        // bytes are still a valid (if garbled) capture.
        let mut buf = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        let keep = bytes.len().min(self.capacity);
        buf.extend_from_slice(&bytes[bytes.len() - keep..]);
        if buf.len() > self.capacity {
            let excess = buf.len() - self.capacity;
            buf.drain(..excess);
        }
    }

    /// Takes what was written since the last call, as (lossy) text.
    pub fn take(&self) -> String {
        let bytes = std::mem::take(&mut *self.inner.lock().unwrap_or_else(PoisonError::into_inner));
        String::from_utf8_lossy(&bytes).into_owned()
    }
}

impl IsTerminal for Capture {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for Capture {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }

    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for Capture {
    async fn ready(&mut self) {}
}

impl OutputStream for Capture {
    fn write(&mut self, bytes: bytes::Bytes) -> StreamResult<()> {
        self.push(&bytes);
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> Result<usize, StreamError> {
        Ok(64 << 10)
    }
}

impl tokio::io::AsyncWrite for Capture {
    fn poll_write(self: Pin<&mut Self>, _cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        self.push(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// [`StoreLimits`] that remembers refusing memory, to tell an out-of-memory
/// trap from any other.
pub(super) struct Limiter {
    limits: StoreLimits,
    pub memory_refused: bool,
    /// The largest size a linear memory was given, in bytes.
    pub peak: usize,
}

/// Core instances, tables and memories one plugin may create; a Rust
/// component needs a few of each.
const MAX_INSTANCES: usize = 32;
const MAX_TABLES: usize = 32;
const MAX_MEMORIES: usize = 4;
const MAX_TABLE_ELEMENTS: usize = 100_000;

impl Limiter {
    fn new(memory_limit: usize) -> Self {
        let limits = StoreLimitsBuilder::new()
            .memory_size(memory_limit)
            .table_elements(MAX_TABLE_ELEMENTS)
            .instances(MAX_INSTANCES)
            .tables(MAX_TABLES)
            .memories(MAX_MEMORIES)
            .trap_on_grow_failure(true)
            .build();
        Limiter { limits, memory_refused: false, peak: 0 }
    }
}

impl ResourceLimiter for Limiter {
    fn memory_growing(&mut self, current: usize, desired: usize, maximum: Option<usize>) -> wasmtime::Result<bool> {
        let verdict = self.limits.memory_growing(current, desired, maximum);
        if matches!(verdict, Ok(true)) {
            self.peak = self.peak.max(desired);
        } else {
            self.memory_refused = true;
        }
        verdict
    }

    fn memory_grow_failed(&mut self, error: wasmtime::Error) -> wasmtime::Result<()> {
        self.memory_refused = true;
        self.limits.memory_grow_failed(error)
    }

    fn table_growing(&mut self, current: usize, desired: usize, maximum: Option<usize>) -> wasmtime::Result<bool> {
        self.limits.table_growing(current, desired, maximum)
    }

    fn table_grow_failed(&mut self, error: wasmtime::Error) -> wasmtime::Result<()> {
        self.limits.table_grow_failed(error)
    }

    fn instances(&self) -> usize {
        self.limits.instances()
    }

    fn tables(&self) -> usize {
        self.limits.tables()
    }

    fn memories(&self) -> usize {
        self.limits.memories()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncate_cuts_on_char_boundaries() {
        assert_eq!(truncate("short", 10), "short");
        let cut = truncate("ééééé", 6);
        assert!(cut.len() <= 6, "{cut}");
        assert!(cut.ends_with('…'));
    }

    #[test]
    fn capture_keeps_the_tail() {
        let capture = Capture::new(4);
        capture.push(b"abc");
        capture.push(b"defg");
        assert_eq!(capture.take(), "defg");
        capture.push(b"0123456789");
        assert_eq!(capture.take(), "6789");
        assert_eq!(capture.take(), "");
    }

    #[test]
    fn seeds_depend_on_purpose_seed_model_and_key() {
        let record = |ordinal| Key::Record { phase: Phase::Prepare, ordinal };
        let a = seed_for(Purpose::RandomBytes, 1, "sentry.user", record(3));
        assert_eq!(a, seed_for(Purpose::RandomBytes, 1, "sentry.user", record(3)));
        assert_ne!(a, seed_for(Purpose::WasiSecure, 1, "sentry.user", record(3)));
        assert_ne!(a, seed_for(Purpose::RandomBytes, 2, "sentry.user", record(3)));
        assert_ne!(a, seed_for(Purpose::RandomBytes, 1, "sentry.email", record(3)));
        assert_ne!(a, seed_for(Purpose::RandomBytes, 1, "sentry.user", record(4)));
        let resolve = Key::Record { phase: Phase::Resolve, ordinal: 3 };
        assert_ne!(a, seed_for(Purpose::RandomBytes, 1, "sentry.user", resolve));
        let batch = Key::Batch { phase: Phase::Prepare, first: 3 };
        assert_ne!(a, seed_for(Purpose::RandomBytes, 1, "sentry.user", batch));
        // The session's stream is the one sessions always had.
        assert_eq!(
            seed_for(Purpose::RandomBytes, 1, "sentry.user", Key::Session),
            seeded_bytes(b"relocate random-bytes v1", 1, "sentry.user")
        );
    }

    fn draw(random: &Randomness, purpose: Purpose) -> [u8; 8] {
        let mut bytes = [0; 8];
        random.fill(purpose, &mut bytes);
        bytes
    }

    /// Record N's bytes, WASI's included, do not depend on what was drawn
    /// for other records or in earlier calls.
    #[test]
    fn a_records_bytes_depend_on_its_ordinal_alone() {
        let alone = Randomness::new(7, "sentry.user");
        alone.enter(Phase::Prepare, Arc::from([5]));
        alone.at_record(0);
        let want: Vec<[u8; 8]> =
            [Purpose::RandomBytes, Purpose::WasiSecure, Purpose::WasiInsecure].map(|p| draw(&alone, p)).into();

        let busy = Randomness::new(7, "sentry.user");
        draw(&busy, Purpose::RandomBytes);
        busy.enter(Phase::Prepare, Arc::from([1, 2, 3, 4]));
        for index in 0..4 {
            busy.at_record(index);
            draw(&busy, Purpose::RandomBytes);
            draw(&busy, Purpose::WasiSecure);
        }
        busy.enter(Phase::Prepare, Arc::from([4, 5, 6]));
        busy.at_record(2);
        draw(&busy, Purpose::WasiInsecure);
        busy.at_record(1);
        let got: Vec<[u8; 8]> =
            [Purpose::RandomBytes, Purpose::WasiSecure, Purpose::WasiInsecure].map(|p| draw(&busy, p)).into();
        assert_eq!(got, want);
        // Naming the record again continues its stream; resolve has its own.
        busy.at_record(1);
        assert_ne!(draw(&busy, Purpose::RandomBytes), want[0]);
        busy.enter(Phase::Resolve, Arc::from([4, 5, 6]));
        busy.at_record(1);
        assert_ne!(draw(&busy, Purpose::RandomBytes), want[0]);
    }
}
