//! Reading an export: a JSON array of Django records `{model, pk, fields}`,
//! plain or inside Sentry's encrypted tarball.
//!
//! The array is never parsed as one value. A first pass streams over it and
//! keeps, per model, where each record starts and ends (16 bytes a record);
//! records are parsed one at a time when the engine asks for them. Grouping
//! per model means a file whose models are out of order loses nothing.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufRead, BufReader, Seek};
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::crypto::{self, read_up_to};
use crate::model::{ModelError, ModelName, Pk};

/// Records larger than this are refused rather than buffered.
const MAX_RECORD_BYTES: usize = 64 << 20;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    // The causes are part of the messages, not `source()`: printed once.
    #[error("{path}: {error}")]
    Io { path: PathBuf, error: std::io::Error },
    #[error("{path}: {error}")]
    Crypto { path: PathBuf, error: crypto::Error },
    #[error("{path}: the file looks like an encrypted tarball; pass the private key with --decrypt-with")]
    NeedsKey { path: PathBuf },
    #[error("{path}: byte {offset}: {message}")]
    Syntax { path: PathBuf, offset: u64, message: String },
    #[error("{path}: record #{position} (byte {offset}): {message}")]
    Record { path: PathBuf, position: u64, offset: u64, message: String },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Where one record sits in the export.
#[derive(Clone, Copy, Debug)]
pub struct RecordRef {
    pub offset: u64,
    pub len: u32,
    /// 1-based position among all records of the file.
    pub position: u64,
    pub pk: Pk,
}

/// An export opened and indexed.
pub struct Export {
    path: PathBuf,
    /// The JSON: the export itself, or for an encrypted export its plaintext
    /// in a private, unnamed temporary file that goes away with it.
    data: File,
    models: Vec<(ModelName, Vec<RecordRef>)>,
    total: u64,
    duplicates: Vec<DuplicatePk>,
}

/// One parsed record.
#[derive(Debug, Deserialize)]
pub struct RawRecord {
    pub model: String,
    pub pk: serde_json::Value,
    #[serde(default)]
    pub fields: serde_json::Map<String, serde_json::Value>,
}

#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(borrow)]
    model: std::borrow::Cow<'a, str>,
    pk: Option<serde_json::Value>,
    /// Only its shape is checked here; it is parsed when the record is read.
    #[serde(borrow)]
    fields: Option<&'a serde_json::value::RawValue>,
}

impl Export {
    /// Opens `path`; an encrypted tarball needs `key`.
    pub fn open(path: &Path, key: Option<&crypto::PrivateKey>) -> Result<Export> {
        let io = |error| Error::Io { path: path.to_path_buf(), error };
        let mut file = File::open(path).map_err(io)?;
        let mut head = [0u8; 512];
        let n = read_up_to(&mut file, &mut head).map_err(io)?;
        let is_tar = n >= 262 && &head[257..262] == b"ustar";
        let is_gzip = n >= 2 && head[..2] == [0x1f, 0x8b];
        let data = if is_tar || is_gzip {
            let key = key.ok_or_else(|| Error::NeedsKey { path: path.to_path_buf() })?;
            let crypt = |error| Error::Crypto { path: path.to_path_buf(), error };
            // Decrypted (HMAC verified first) before a byte of it is parsed.
            crypto::SealedExport::open(path).and_then(|sealed| sealed.decrypt_to_tempfile(key)).map_err(crypt)?
        } else {
            file.rewind().map_err(io)?;
            file
        };
        let (models, total) = index(path, BufReader::with_capacity(1 << 16, &data))?;
        let duplicates = models.iter().flat_map(|(model, records)| duplicate_pks(model, records)).collect();
        Ok(Export { path: path.to_path_buf(), data, models, total, duplicates })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Pks that appear more than once in a model.
    pub fn duplicate_pks(&self) -> &[DuplicatePk] {
        &self.duplicates
    }

    /// The number of records in the file.
    pub fn total(&self) -> u64 {
        self.total
    }

    /// Models in order of first appearance, with their records in file order.
    pub fn models(&self) -> &[(ModelName, Vec<RecordRef>)] {
        &self.models
    }

    pub fn records(&self, model: &ModelName) -> &[RecordRef] {
        self.models.iter().find(|(m, _)| m == model).map(|(_, r)| &r[..]).unwrap_or(&[])
    }

    /// Reads and parses one record.
    pub fn read(&self, at: &RecordRef, buf: &mut Vec<u8>) -> Result<RawRecord> {
        self.read_with(at, buf, |bytes| serde_json::from_slice(bytes))
    }

    /// Reads one record and parses it with `parse`.
    fn read_with<T>(
        &self,
        at: &RecordRef,
        buf: &mut Vec<u8>,
        parse: impl FnOnce(&[u8]) -> serde_json::Result<T>,
    ) -> Result<T> {
        use std::os::unix::fs::FileExt;
        buf.resize(at.len as usize, 0);
        self.data.read_exact_at(buf, at.offset).map_err(|error| Error::Io { path: self.path.clone(), error })?;
        self.parse(at, buf, parse)
    }

    /// Parses the bytes of the record `at` points at with `parse`.
    fn parse<T>(&self, at: &RecordRef, bytes: &[u8], parse: impl FnOnce(&[u8]) -> serde_json::Result<T>) -> Result<T> {
        parse(bytes).map_err(|e| self.record_error(at, format!("cannot parse: {e}")))
    }

    /// A reader of the records `refs` point at: it reads them in one go
    /// when they lie close together in the file, as each model's records of
    /// an export usually do, rather than with one read per record.
    pub fn batch(&self, refs: &[RecordRef]) -> Result<Batch<'_>> {
        let mut batch = Batch { export: self, start: 0, span: Vec::new(), buf: Vec::new() };
        let (Some(start), Some(end)) =
            (refs.iter().map(|r| r.offset).min(), refs.iter().map(|r| r.offset + u64::from(r.len)).max())
        else {
            return Ok(batch);
        };
        let wanted: u64 = refs.iter().map(|r| u64::from(r.len)).sum();
        let len = end - start;
        if one_read(len, wanted) {
            use std::os::unix::fs::FileExt;
            batch.span.resize(len as usize, 0);
            self.data
                .read_exact_at(&mut batch.span, start)
                .map_err(|error| Error::Io { path: self.path.clone(), error })?;
            batch.start = start;
        }
        Ok(batch)
    }

    pub fn record_error(&self, at: &RecordRef, message: String) -> Error {
        Error::Record { path: self.path.clone(), position: at.position, offset: at.offset, message }
    }
}

/// The most [`Export::batch`] reads at once.
const MAX_SPAN: u64 = 64 << 20;

/// Whether a batch whose records need `wanted` bytes spread over `span`
/// bytes of the file is read in one go: when little of the span is not
/// the batch's.
fn one_read(span: u64, wanted: u64) -> bool {
    span <= MAX_SPAN && span <= 2 * wanted + (64 << 10)
}

/// Records of one batch, read together; see [`Export::batch`].
pub struct Batch<'e> {
    export: &'e Export,
    /// The file's bytes from `start`, covering the batch; empty when its
    /// records lie too far apart.
    start: u64,
    span: Vec<u8>,
    buf: Vec<u8>,
}

impl Batch<'_> {
    /// Parses one of the batch's records with `parse`, given its bytes.
    pub fn read_with<T>(&mut self, at: &RecordRef, parse: impl FnOnce(&[u8]) -> serde_json::Result<T>) -> Result<T> {
        let bytes = at
            .offset
            .checked_sub(self.start)
            .and_then(|from| self.span.get(from as usize..from as usize + at.len as usize));
        match bytes {
            Some(bytes) => self.export.parse(at, bytes, parse),
            None => self.export.read_with(at, &mut self.buf, parse),
        }
    }
}

type Index = (Vec<(ModelName, Vec<RecordRef>)>, u64);

/// Streams over the top-level array, recording each element's extent.
///
/// Two threads share the work: this one finds where each record starts and
/// ends, a second one checks that each is a record (serde) and groups them
/// by model. The first error in the file wins: the checker has seen every
/// record before the scanner's error when it reports none of its own.
pub(crate) fn index(path: &Path, input: impl BufRead) -> Result<Index> {
    std::thread::scope(|scope| {
        let (send, receive) = std::sync::mpsc::sync_channel::<Scanned>(4);
        let checker = std::thread::Builder::new()
            .name("index".into())
            .spawn_scoped(scope, move || check_records(path, receive))
            .map_err(|error| Error::Io { path: path.to_path_buf(), error })?;
        let scanned = scan(path, input, send);
        let checked = checker.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        let (models, records) = checked?;
        scanned?;
        Ok((models, records))
    })
}

/// Records found by [`scan`]: their bytes, one after the other, and where
/// each one lies in the file.
#[derive(Default)]
struct Scanned {
    bytes: Vec<u8>,
    /// Offset in the file and length of each record, in file order.
    records: Vec<(u64, u32)>,
}

/// How many bytes of records [`scan`] hands over at once.
const SCANNED_BYTES: usize = 256 << 10;

/// Finds the records of the array and sends them on to be checked.
fn scan(path: &Path, input: impl BufRead, send: std::sync::mpsc::SyncSender<Scanned>) -> Result<()> {
    let mut batch = Scanned::default();
    let scanned = scan_array(&mut Scanner { input, offset: 0, path }, &mut batch, &send);
    // The records before a syntax error are checked too: one of them may be
    // bad, and it comes first in the file. A checker that stopped has its
    // own error to report.
    let _ = send.send(batch);
    scanned
}

/// [`scan`]'s work, the records of each full batch sent as it fills; stops
/// early, without an error, when the checker has stopped at a bad record.
fn scan_array<R: BufRead>(
    s: &mut Scanner<'_, R>,
    batch: &mut Scanned,
    send: &std::sync::mpsc::SyncSender<Scanned>,
) -> Result<()> {
    s.skip_bom()?;
    match s.next_non_ws()? {
        Some(b'[') => {}
        Some(b) => return Err(s.syntax(1, format!("expected `[` to open the array of records, found `{}`", b as char))),
        None => return Err(s.syntax(0, "the file is empty: expected a JSON array of records".into())),
    }
    let mut first = true;
    loop {
        match s.next_non_ws()? {
            Some(b']') if first => break,
            Some(b'{') => {
                let start = s.offset - 1;
                let from = batch.bytes.len();
                batch.bytes.push(b'{');
                s.object_rest(&mut batch.bytes, from)?;
                batch.records.push((start, (batch.bytes.len() - from) as u32));
                if batch.bytes.len() >= SCANNED_BYTES && send.send(std::mem::take(batch)).is_err() {
                    return Ok(());
                }
            }
            Some(b) => return Err(s.syntax(1, format!("expected a record object, found `{}`", b as char))),
            None => return Err(s.syntax(0, "the array is not closed: the file may be truncated".into())),
        }
        first = false;
        match s.next_non_ws()? {
            Some(b',') => continue,
            Some(b']') => break,
            Some(b) => return Err(s.syntax(1, format!("expected `,` or `]` after a record, found `{}`", b as char))),
            None => return Err(s.syntax(0, "the array is not closed: the file may be truncated".into())),
        }
    }
    if let Some(b) = s.next_non_ws()? {
        return Err(s.syntax(1, format!("unexpected `{}` after the end of the array", b as char)));
    }
    Ok(())
}

/// Checks each record [`scan`] found and groups them by model, in file order.
fn check_records(path: &Path, receive: std::sync::mpsc::Receiver<Scanned>) -> Result<Index> {
    let mut models: Vec<(ModelName, Vec<RecordRef>)> = Vec::new();
    let mut slots: HashMap<ModelName, usize> = HashMap::new();
    let mut position = 0u64;
    let mut last: Option<usize> = None;
    for batch in receive {
        let mut from = 0;
        for &(start, len) in &batch.records {
            position += 1;
            let element = &batch.bytes[from..from + len as usize];
            from += len as usize;
            let record_error =
                |message: String| Error::Record { path: path.to_path_buf(), position, offset: start, message };
            let env: Envelope =
                serde_json::from_slice(element).map_err(|e| record_error(format!("not a record: {e}")))?;
            if env.fields.is_some_and(|f| !f.get().starts_with('{')) {
                return Err(record_error("`fields` must be an object of field names and values".into()));
            }
            let pk = match env.pk {
                Some(serde_json::Value::Number(n)) if n.is_i64() => n.as_i64().unwrap_or_default(),
                Some(other) => {
                    return Err(record_error(format!(
                        "pk must be an integer, found {other} (natural keys are not supported)"
                    )));
                }
                None => return Err(record_error("missing `pk`".into())),
            };
            // Records of one model usually come together: only a new
            // model name is checked and looked up.
            let slot = match last {
                Some(slot) if models[slot].0.as_str() == env.model => slot,
                _ => {
                    let model = ModelName::new(&env.model).map_err(|e: ModelError| record_error(e.to_string()))?;
                    *slots.entry(model.clone()).or_insert_with(|| {
                        models.push((model, Vec::new()));
                        models.len() - 1
                    })
                }
            };
            last = Some(slot);
            models[slot].1.push(RecordRef { offset: start, len, position, pk });
        }
    }
    Ok((models, position))
}

/// Two records of one model with the same pk: Sentry imports both, and a
/// reference to the pk means the last one. relocate does the same (one of
/// Sentry's own acceptance tests relies on it) and says so.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DuplicatePk {
    pub model: ModelName,
    pub pk: Pk,
    /// Positions in the file of the first and of this record.
    pub first: u64,
    pub again: u64,
}

fn duplicate_pks(model: &ModelName, records: &[RecordRef]) -> Vec<DuplicatePk> {
    let mut pks: Vec<(Pk, u64)> = records.iter().map(|r| (r.pk, r.position)).collect();
    pks.sort_unstable();
    pks.windows(2)
        .filter(|w| w[0].0 == w[1].0)
        .map(|w| DuplicatePk { model: model.clone(), pk: w[1].0, first: w[0].1, again: w[1].1 })
        .collect()
}

struct Scanner<'p, R> {
    input: R,
    offset: u64,
    path: &'p Path,
}

impl<R: BufRead> Scanner<'_, R> {
    fn fill(&mut self) -> Result<&[u8]> {
        let path = self.path;
        self.input.fill_buf().map_err(|error| Error::Io { path: path.to_path_buf(), error })
    }

    /// A syntax error about the byte `back` bytes before the current offset.
    fn syntax(&self, back: u64, message: String) -> Error {
        Error::Syntax { path: self.path.to_path_buf(), offset: self.offset.saturating_sub(back), message }
    }

    fn next(&mut self) -> Result<Option<u8>> {
        let buf = self.fill()?;
        let Some(&b) = buf.first() else { return Ok(None) };
        self.input.consume(1);
        self.offset += 1;
        Ok(Some(b))
    }

    /// Skips a UTF-8 byte-order mark, a byte at a time: the first fill may
    /// hold less than all three bytes of it.
    fn skip_bom(&mut self) -> Result<()> {
        const BOM: [u8; 3] = [0xEF, 0xBB, 0xBF];
        for (i, &byte) in BOM.iter().enumerate() {
            match self.fill()?.first() {
                Some(&b) if b == byte => {
                    self.input.consume(1);
                    self.offset += 1;
                }
                _ if i == 0 => return Ok(()),
                // The start of a BOM, then something else: refused as any
                // other first byte that does not open the array is.
                _ => {
                    let message = format!("expected `[` to open the array of records, found `{}`", BOM[0] as char);
                    return Err(self.syntax(self.offset, message));
                }
            }
        }
        Ok(())
    }

    fn next_non_ws(&mut self) -> Result<Option<u8>> {
        loop {
            match self.next()? {
                Some(b' ' | b'\n' | b'\r' | b'\t') => continue,
                other => return Ok(other),
            }
        }
    }

    /// Copies the rest of an object whose `{` was consumed onto `out`, where
    /// the object starts at `from`, tracking strings and nesting only; serde
    /// validates the element afterwards.
    fn object_rest(&mut self, out: &mut Vec<u8>, from: usize) -> Result<()> {
        let mut depth = 1usize;
        let mut in_string = false;
        loop {
            // Copy whole runs of uninteresting bytes at once.
            let buf = self.fill()?;
            if buf.is_empty() {
                return Err(self.syntax(0, "a record is not closed: the file may be truncated".into()));
            }
            let mut i = 0;
            let mut done = false;
            while i < buf.len() {
                let b = buf[i];
                i += 1;
                if in_string {
                    match b {
                        b'\\' => {
                            // The escaped byte may lie in the next buffer.
                            if i < buf.len() {
                                i += 1;
                            } else {
                                out.extend_from_slice(&buf[..i]);
                                let n = i;
                                self.input.consume(n);
                                self.offset += n as u64;
                                match self.next()? {
                                    Some(e) => out.push(e),
                                    None => return Err(self.syntax(0, "a string is not closed".into())),
                                }
                                i = 0;
                                break;
                            }
                        }
                        b'"' => in_string = false,
                        _ => {}
                    }
                } else {
                    match b {
                        b'"' => in_string = true,
                        b'{' | b'[' => depth += 1,
                        b'}' | b']' => {
                            depth -= 1;
                            if depth == 0 {
                                done = true;
                                break;
                            }
                        }
                        _ => {}
                    }
                }
            }
            if i > 0 {
                let buf = self.fill()?;
                out.extend_from_slice(&buf[..i]);
                self.input.consume(i);
                self.offset += i as u64;
            }
            if out.len() - from > MAX_RECORD_BYTES {
                return Err(self.syntax(0, format!("a record is larger than {} MiB", MAX_RECORD_BYTES >> 20)));
            }
            if done {
                return Ok(());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn index_str(s: &str) -> Result<Index> {
        index(Path::new("t.json"), s.as_bytes())
    }

    #[test]
    fn the_first_error_in_the_file_wins_whichever_thread_finds_it() {
        let good = r#"{"model":"sentry.email","pk":1,"fields":{"email":"someone@example.com"}}"#;
        // Enough records before the errors to fill several of the scanner's batches.
        let many = format!("{},", vec![good; 10_000].join(","));
        for before in ["", many.as_str()] {
            let n = before.matches("sentry.email").count();
            // A record only the checker refuses, then a syntax error only the scanner finds.
            let both = format!(r#"[{before}{{"model":"sentry.email","pk":"x"}},{good} x]"#);
            let error = index_str(&both).unwrap_err().to_string();
            assert!(error.contains(&format!("record #{} ", n + 1)) && error.contains("pk must be"), "{error}");
            let syntax = format!("[{before}{good} x]");
            let error = index_str(&syntax).unwrap_err().to_string();
            assert!(error.contains("expected `,` or `]` after a record"), "{error}");
            let (models, total) = index_str(&format!("[{before}{good}]")).unwrap();
            assert_eq!(total, n as u64 + 1);
            assert_eq!(models[0].1.last().map(|r| r.position), Some(n as u64 + 1));
        }
    }

    #[test]
    fn groups_records_per_model_in_file_order() {
        let (models, total) = index_str(
            r#"[{"model":"sentry.user","pk":2,"fields":{"a":"}{\"]["}},
                {"model":"sentry.email","pk":1,"fields":{}},
                {"model":"Sentry.User","pk":1,"fields":{"x":[1,{"y":2}]}}]"#,
        )
        .unwrap();
        assert_eq!(total, 3);
        let names: Vec<_> =
            models.iter().map(|(m, r)| (m.as_str(), r.iter().map(|r| r.pk).collect::<Vec<_>>())).collect();
        assert_eq!(names, vec![("sentry.user", vec![2, 1]), ("sentry.email", vec![1])]);
        assert_eq!(models[0].1[1].position, 3);
    }

    #[test]
    fn empty_array_and_whitespace() {
        assert_eq!(index_str(" \n[ ]\n").unwrap().1, 0);
        assert_eq!(index_str("\u{feff}[]").unwrap().1, 0);
    }

    #[test]
    fn errors_name_the_place() {
        let err = index_str(r#"[{"model":"sentry.user","pk":1,"fields":{}} {"#).unwrap_err().to_string();
        assert!(err.contains("expected `,` or `]`"), "{err}");
        let err =
            index_str(r#"[{"model":"sentry.user","pk":1,"fields":{}},{"model":"x","pk":1}]"#).unwrap_err().to_string();
        assert!(err.contains("record #2"), "{err}");
        let err = index_str(r#"[{"model":"sentry.user","pk":["a@b.c"],"fields":{}}]"#).unwrap_err().to_string();
        assert!(err.contains("natural keys"), "{err}");
        let err = index_str(r#"[{"model":"sentry.user","pk":1,"fields":{"a":"#).unwrap_err().to_string();
        assert!(err.contains("truncated"), "{err}");
        assert!(index_str("").unwrap_err().to_string().contains("empty"));
        assert!(index_str("[] x").unwrap_err().to_string().contains("after the end"));
    }

    #[test]
    fn a_bom_split_across_buffer_boundaries() {
        // Found by the `reader` fuzz target: a BOM was skipped only when the
        // first fill held all of it.
        for cap in 1..=4 {
            let small = |s: &[u8]| index(Path::new("t"), BufReader::with_capacity(cap, s));
            assert_eq!(small(b"\xEF\xBB\xBF [{\"model\":\"a.b\",\"pk\":1}]").unwrap().1, 1, "capacity {cap}");
            for bad in [&b"\xEF\xBB[]"[..], b"\xEF", b"\xEF\xBB\xBF\xEF[]"] {
                let err = small(bad).unwrap_err().to_string();
                let big = index(Path::new("t"), bad).unwrap_err().to_string();
                assert_eq!(err, big, "capacity {cap}");
            }
        }
    }

    #[test]
    fn escapes_split_across_buffer_boundaries() {
        let json = r#"[{"model":"sentry.user","pk":1,"fields":{"a":"x\\\"}"}}]"#;
        for cap in 1..json.len() {
            let r = BufReader::with_capacity(cap, json.as_bytes());
            let (models, _) = index(Path::new("t"), r).unwrap();
            assert_eq!(models[0].1[0].len as usize, json.len() - 2, "capacity {cap}");
        }
    }

    #[test]
    fn reads_real_fixture() {
        let path =
            Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/fixtures/sentry/backup/fresh-install.json"));
        let export = Export::open(path, None).unwrap();
        assert_eq!(export.total(), 31);
        let users = export.records(&ModelName::new("sentry.user").unwrap());
        assert_eq!(users.len(), 2);
        let rec = export.read(&users[1], &mut Vec::new()).unwrap();
        assert_eq!(rec.fields["username"], "member@example.com");
    }

    #[test]
    fn a_batch_reads_what_single_reads_do_near_or_far_apart() {
        let path =
            Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/fixtures/sentry/backup/fresh-install.json"));
        let export = Export::open(path, None).unwrap();
        let all: Vec<RecordRef> = export.models().iter().flat_map(|(_, r)| r.iter().copied()).collect();
        let (first, last) = (all[0], all[all.len() - 1]);
        // Far apart: two small records around most of the file.
        let far = [RecordRef { len: 2, ..first }, RecordRef { len: 2, ..last }];
        for refs in [&all[..], &all[3..5], &[last, first][..]] {
            let mut batch = export.batch(refs).unwrap();
            for at in refs {
                let one = export.read(at, &mut Vec::new()).unwrap();
                let read: RawRecord = batch.read_with(at, |b| serde_json::from_slice(b)).unwrap();
                assert_eq!((read.model, read.pk, read.fields), (one.model, one.pk, one.fields));
            }
        }
        let mut batch = export.batch(&far).unwrap();
        let read = batch.read_with(&far[0], |b| serde_json::from_slice::<RawRecord>(b));
        assert!(read.is_err(), "two bytes of a record are not a record");
        assert!(one_read(1000, 900) && one_read(80 << 10, 10 << 10));
        assert!(!one_read(10 << 20, 100), "records far apart are read one by one");
        assert!(!one_read(MAX_SPAN + 1, MAX_SPAN + 1), "a span is at most {MAX_SPAN} bytes");
    }

    #[test]
    fn reads_an_encrypted_export_like_a_plain_one() {
        let examples = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../examples"));
        let key = crypto::PrivateKey::from_pem_file(examples.join("fresh-install.key.pem")).unwrap();
        let tar = examples.join("fresh-install.tar");
        assert!(matches!(Export::open(&tar, None), Err(Error::NeedsKey { .. })));
        let export = Export::open(&tar, Some(&key)).unwrap();
        assert_eq!(export.total(), 31);
        let users = export.records(&ModelName::new("sentry.user").unwrap());
        let rec = export.read(&users[1], &mut Vec::new()).unwrap();
        assert_eq!(rec.fields["username"], "member@example.com");
    }
}
