//! Hash sets and maps for a model's state across batches (names given out,
//! tokens seen), keyed per session.
//!
//! std's `HashSet` draws its key from WASI's random source on first use, which
//! the host seeds per record: the key would come from whichever record first
//! built a set. An ordered set needs no key but compares whole strings at
//! every level, through wasi-libc's byte-at-a-time `memcmp`. These hash with
//! SipHash-1-3 (std's own) under a key drawn once per session from the host's
//! generator ([`Session::hasher`]), so an export cannot be crafted to make
//! its names collide, and a seeded import builds the same sets every time.
//!
//! ```
//! use relocate_plugin_sdk::{HashSet, Session};
//!
//! struct Seen(HashSet<String>);
//!
//! fn new(session: &Session) -> Seen {
//!     Seen(HashSet::with_hasher(session.hasher()))
//! }
//! ```
//!
//! [`Session::hasher`]: crate::Session::hasher

use std::hash::BuildHasher;

/// A hash set keyed per session: `HashSet::with_hasher(session.hasher())`.
pub type HashSet<T> = std::collections::HashSet<T, Hasher>;

/// A hash map keyed per session: `HashMap::with_hasher(session.hasher())`.
pub type HashMap<K, V> = std::collections::HashMap<K, V, Hasher>;

/// What [`HashSet`] and [`HashMap`] hash with; from [`Session::hasher`].
///
/// [`Session::hasher`]: crate::Session::hasher
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Hasher([u64; 2]);

impl Hasher {
    /// A hasher under a 16-byte key.
    pub(crate) fn with_key(key: [u8; 16]) -> Self {
        let (k0, k1) = key.split_at(8);
        let word = |b: &[u8]| u64::from_le_bytes(b.try_into().unwrap_or_default());
        Self([word(k0), word(k1)])
    }
}

impl BuildHasher for Hasher {
    type Hasher = siphasher::sip::SipHasher13;

    fn build_hasher(&self) -> Self::Hasher {
        siphasher::sip::SipHasher13::new_with_keys(self.0[0], self.0[1])
    }
}

impl std::fmt::Debug for Hasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The key stays out of logs.
        f.write_str("Hasher")
    }
}
