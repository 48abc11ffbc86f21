//! Entry points for the fuzz targets in `fuzz/` (see the README's *Fuzzing*);
//! not an API. Each calls the code an import runs, unchanged.

use std::io::BufReader;
use std::path::Path;

use crate::model::ModelName;
pub use crate::plugin::fuzzing::{PluginInfo, decided, describe, prepared, wit};
use crate::reader::{self, RecordRef};

/// The models with their records in file order, and the record count.
pub type Indexed = (Vec<(ModelName, Vec<RecordRef>)>, u64);

/// Indexes an export's JSON as [`reader::Export::open`] does, reading it
/// through a buffer of `capacity` bytes (an import reads through 64 KiB), so
/// that a record, a string or an escape can straddle a refill anywhere.
pub fn index(json: &[u8], capacity: usize) -> reader::Result<Indexed> {
    reader::index(Path::new("fuzz.json"), BufReader::with_capacity(capacity.max(1), json))
}
