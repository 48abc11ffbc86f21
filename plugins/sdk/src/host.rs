//! The host's imports, behind plain functions.
//!
//! In a wasm32 build they call the component's imports. Natively (unit tests of
//! the SDK and of plugins) they use a per-thread fake that [`crate::testing`]
//! controls: a seeded generator, an in-memory pk map and captured logs.

pub(crate) use imp::{at_record, hash_key, log, mapping_of, random_bytes};

#[cfg(target_arch = "wasm32")]
mod imp {
    use crate::__wit::relocate::plugin::{host, types};
    use crate::record::ImportKind;
    use crate::session::{Level, Mapping};

    pub(crate) fn mapping_of(model: &str, old_pk: i64) -> Option<Mapping> {
        host::mapping_of(model, old_pk).map(|m| Mapping { new_pk: m.new_pk, kind: import_kind(m.kind), slug: m.slug })
    }

    pub(crate) fn random_bytes(len: u32) -> Vec<u8> {
        host::random_bytes(len)
    }

    /// Drawn like any random bytes: in `Model::new`, from the session's own
    /// stream, which no record's draws come from.
    pub(crate) fn hash_key() -> [u8; 16] {
        let mut key = [0; 16];
        let bytes = host::random_bytes(16);
        let n = bytes.len().min(16);
        key[..n].copy_from_slice(&bytes[..n]);
        key
    }

    pub(crate) fn log(level: Level, message: &str) {
        let level = match level {
            Level::Debug => types::Level::Debug,
            Level::Info => types::Level::Info,
            Level::Warn => types::Level::Warn,
            Level::Error => types::Level::Error,
        };
        host::log(level, message);
    }

    pub(crate) fn at_record(index: u32) {
        host::at_record(index);
    }

    fn import_kind(kind: types::ImportKind) -> ImportKind {
        match kind {
            types::ImportKind::Inserted => ImportKind::Inserted,
            types::ImportKind::Existing => ImportKind::Existing,
            types::ImportKind::Overwrite => ImportKind::Overwrite,
        }
    }
}

#[cfg(not(target_arch = "wasm32"))]
mod imp {
    use super::fake;
    use crate::session::{Level, Mapping};

    pub(crate) fn mapping_of(model: &str, old_pk: i64) -> Option<Mapping> {
        fake::with(|f| f.mappings.iter().rfind(|(m, pk, _)| m == model && *pk == old_pk).map(|(_, _, m)| m.clone()))
    }

    pub(crate) fn random_bytes(len: u32) -> Vec<u8> {
        fake::with(|f| (0..len).map(|_| f.next_byte()).collect())
    }

    /// From the seed, without advancing the one stream the fake has: the
    /// records' draws stay as they were, as the host's own do.
    pub(crate) fn hash_key() -> [u8; 16] {
        fake::with(|f| {
            let mut key = [0; 16];
            key[..8].copy_from_slice(&f.seed.to_le_bytes());
            key
        })
    }

    pub(crate) fn log(level: Level, message: &str) {
        fake::with(|f| f.logs.push((level, message.to_string())));
    }

    pub(crate) fn at_record(index: u32) {
        fake::with(|f| f.at_records.push(index));
    }
}

/// The native stand-in for the host, one per thread (each test has its own).
#[cfg(not(target_arch = "wasm32"))]
pub(crate) mod fake {
    use std::cell::RefCell;

    use crate::session::{Level, Mapping};

    pub(crate) struct FakeHost {
        pub(crate) seed: u64,
        state: u64,
        /// In the order they were made; the latest for a pk wins.
        pub(crate) mappings: Vec<(String, i64, Mapping)>,
        pub(crate) logs: Vec<(Level, String)>,
        pub(crate) at_records: Vec<u32>,
    }

    impl FakeHost {
        pub(crate) fn new(seed: u64) -> Self {
            Self { seed, state: seed, mappings: Vec::new(), logs: Vec::new(), at_records: Vec::new() }
        }

        /// SplitMix64: tiny, seedable, and good enough for suffixes in tests.
        fn next_u64(&mut self) -> u64 {
            self.state = self.state.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = self.state;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        }

        pub(crate) fn next_byte(&mut self) -> u8 {
            (self.next_u64() >> 56) as u8
        }
    }

    thread_local! {
        static FAKE: RefCell<FakeHost> = RefCell::new(FakeHost::new(0));
    }

    pub(crate) fn with<T>(f: impl FnOnce(&mut FakeHost) -> T) -> T {
        FAKE.with(|cell| f(&mut cell.borrow_mut()))
    }

    pub(crate) fn reset(seed: u64) {
        with(|f| *f = FakeHost::new(seed));
    }
}
