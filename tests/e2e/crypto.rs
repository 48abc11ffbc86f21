//! Encrypted exports are decrypted in bounded memory through a private temporary file: a token
//! that fails its HMAC is never decrypted or parsed, every kind of damage has its own one-line
//! message and exit code 4, and no plaintext is left behind.

use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE;
use relocate::crypto::{self, Tarball};

use crate::support::{Kind, Run, Target, example, fixture};

const DECRYPTION: i32 = 4;
const BAD_INPUT: i32 = 3;

/// Not JSON at all: parsing it fails at once with exit 3.
const MALFORMED: &[u8] = b"[{\"model\": \"sentry.option\", \"pk\": 1,,, this is not JSON";

fn key() -> PathBuf {
    example("fresh-install.key.pem")
}

/// `plaintext` encrypted to the example key, as Sentry would, then changed by `change`.
fn tarball(dir: &Path, plaintext: &[u8], change: impl FnOnce(&mut Tarball)) -> PathBuf {
    let public = std::fs::read(example("fresh-install.pub.pem")).expect("read the example public key");
    let mut tarball = crypto::encrypt(plaintext, &public, &mut rand::rngs::OsRng).expect("encrypt");
    change(&mut tarball);
    let path = dir.join("export.tar");
    tarball.write_file(&path).expect("write the tarball");
    path
}

/// Decodes the Fernet token, lets `change` edit its bytes, encodes it again.
fn edit_token(tarball: &mut Tarball, change: impl FnOnce(&mut Vec<u8>)) {
    let mut raw = URL_SAFE.decode(&tarball.export).expect("a Python-style token");
    change(&mut raw);
    tarball.export = URL_SAFE.encode(&raw).into_bytes();
}

/// Runs the binary with `TMPDIR` pointed at `tmp`, to see what it leaves there.
/// Runs relocate with its temporary files in `tmp`.
fn relocate_in(tmp: &Path, args: &[&str]) -> Run {
    crate::support::relocate_with_env(args, &[("TMPDIR", tmp.to_str().unwrap())])
}

/// `relocate decrypt DEST --src TAR --decrypt-with KEY`, temporary files in `tmp`.
fn decrypt_in(tmp: &Path, dest: &Path, tar: &Path, key: &Path) -> Run {
    let (dest, tar, key) = (dest.to_str().unwrap(), tar.to_str().unwrap(), key.to_str().unwrap());
    relocate_in(tmp, &["decrypt", dest, "--src", tar, "--decrypt-with", key])
}

fn import_global(t: &Target, tmp: &Path, tar: &Path) -> Run {
    relocate_in(
        tmp,
        &[
            "import",
            "global",
            tar.to_str().unwrap(),
            "--decrypt-with",
            key().to_str().unwrap(),
            "--no-prompt",
            "--db",
            t.url.as_str(),
        ],
    )
}

/// A fresh, empty folder for `TMPDIR`.
fn tmpdir(t: &Target) -> PathBuf {
    let tmp = t.dir.path().join("tmp");
    std::fs::create_dir(&tmp).expect("create a TMPDIR");
    tmp
}

#[track_caller]
fn assert_empty(dir: &Path) {
    let left: Vec<_> = std::fs::read_dir(dir).expect("list TMPDIR").map(|e| e.map(|e| e.file_name())).collect();
    assert!(left.is_empty(), "left behind in TMPDIR: {left:?}");
}

/// The SQLite target does not exist, or has no tables.
async fn assert_no_tables(t: &Target) {
    let file = t.dir.path().join("target.db");
    if file.exists() {
        let tables = t.i64s("SELECT COUNT(*) FROM sqlite_master WHERE type = 'table'").await;
        assert_eq!(tables, [0], "the import created tables");
    }
}

/// The acceptance test: a flipped HMAC tag is refused before anything is decrypted or parsed.
#[tokio::test]
async fn tampered_hmac_writes_nothing_and_parses_nothing() {
    let t = Target::new(Kind::Sqlite).await;
    let tmp = tmpdir(&t);
    // Control: the same malformed plaintext, intact, reaches the JSON reader and fails there.
    let intact = tarball(t.dir.path(), MALFORMED, |_| {});
    let run = import_global(&t, &tmp, &intact);
    run.failure(BAD_INPUT);
    assert!(run.stderr.contains("byte"), "a JSON error: {}", run.stderr);
    assert_empty(&tmp);
    assert_no_tables(&t).await;

    // The last byte of the decoded token is the last byte of its HMAC tag.
    let tampered = tarball(t.dir.path(), MALFORMED, |tb| edit_token(tb, |raw| *raw.last_mut().unwrap() ^= 0x01));
    let run = import_global(&t, &tmp, &tampered);
    run.failure(DECRYPTION);
    assert!(run.stderr.contains("HMAC check failed"), "{}", run.stderr);
    assert!(!run.stderr.contains("byte "), "nothing was parsed: {}", run.stderr);
    assert_empty(&tmp);
    assert_no_tables(&t).await;
}

#[tokio::test]
async fn no_plaintext_is_left_behind_after_a_successful_import() {
    let t = Target::new(Kind::Sqlite).await;
    let tmp = tmpdir(&t);
    let run = import_global(&t, &tmp, &example("fresh-install.tar"));
    run.success();
    assert!(t.count("auth_user").await > 0, "imported nothing: {}", run.stdout);
    assert_empty(&tmp);
    // A gzipped tarball has its token spooled to TMPDIR too; it goes away as well.
    let gz = t.dir.path().join("export.tar.gz");
    let mut encoder = flate2::write::GzEncoder::new(std::fs::File::create(&gz).unwrap(), flate2::Compression::fast());
    std::io::copy(&mut std::fs::File::open(example("fresh-install.tar")).unwrap(), &mut encoder).unwrap();
    encoder.finish().unwrap();
    decrypt_in(&tmp, &t.dir.path().join("out.json"), &gz, &key()).success();
    // The example was encrypted from compact JSON; the fixture is pretty-printed.
    let json = |path: PathBuf| serde_json::from_slice::<serde_json::Value>(&std::fs::read(path).unwrap()).unwrap();
    assert_eq!(json(t.dir.path().join("out.json")), json(fixture("sentry/backup/fresh-install.json")));
    assert_empty(&tmp);
}

/// Each kind of damage: a specific one-line message, exit 4, no DEST, nothing in TMPDIR.
#[test]
fn every_kind_of_damage_has_its_own_message() {
    let dir = tempfile::tempdir().unwrap();
    let plaintext = std::fs::read(fixture("sentry/backup/fresh-install.json")).unwrap();
    type Change = Box<dyn FnOnce(&mut Tarball)>;
    let cases: Vec<(&str, Change, &str)> = vec![
        (
            "flipped HMAC",
            Box::new(|tb: &mut Tarball| edit_token(tb, |raw| *raw.last_mut().unwrap() ^= 0x80)),
            "HMAC check failed",
        ),
        (
            "flipped ciphertext",
            Box::new(|tb: &mut Tarball| edit_token(tb, |raw| raw[100] ^= 0x01)),
            "HMAC check failed",
        ),
        (
            "flipped version",
            Box::new(|tb: &mut Tarball| edit_token(tb, |raw| raw[0] = 0x81)),
            "not a Fernet token (version byte 0x81",
        ),
        (
            "cut by a block",
            Box::new(|tb: &mut Tarball| edit_token(tb, |raw| raw.truncate(raw.len() - 16))),
            "HMAC check failed",
        ),
        (
            "cut mid-block",
            Box::new(|tb: &mut Tarball| edit_token(tb, |raw| raw.truncate(raw.len() - 5))),
            "not a whole number of AES blocks",
        ),
        ("cut text", Box::new(|tb: &mut Tarball| tb.export.truncate(tb.export.len() - 3)), "not url-safe base64"),
        (
            "bad base64",
            Box::new(|tb: &mut Tarball| tb.export[10] = b'$'),
            "'$' (character 10) is not a url-safe base64 character",
        ),
        ("empty token", Box::new(|tb: &mut Tarball| tb.export.clear()), "too short to be a Fernet token"),
        ("damaged data.key", Box::new(|tb: &mut Tarball| tb.data_key[0] ^= 0x01), "cannot decrypt `data.key`"),
        (
            "mismatched key.pub",
            Box::new(|tb: &mut Tarball| tb.public_key_pem = std::fs::read(fixture("crypto/public.pem")).unwrap()),
            "The public key does not match",
        ),
    ];
    let tmp = dir.path().join("tmp");
    std::fs::create_dir(&tmp).unwrap();
    for (what, change, needle) in cases {
        let tar = tarball(dir.path(), &plaintext, change);
        let dest = dir.path().join("out.json");
        let run = decrypt_in(&tmp, &dest, &tar, &key());
        assert_eq!(run.code, DECRYPTION, "{what}: {}", run.stderr);
        assert!(run.stderr.contains(needle), "{what}: {}", run.stderr);
        assert_eq!(run.stderr.trim_end().lines().count(), 1, "{what}: one line: {}", run.stderr);
        assert!(!dest.exists(), "{what}: a partial DEST was written");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 2, "{what}: only the tarball and TMPDIR remain");
        assert_empty(&tmp);
    }
    // The wrong private key.
    let tar = tarball(dir.path(), &plaintext, |_| {});
    let dest = dir.path().join("out.json");
    let run = decrypt_in(&tmp, &dest, &tar, &fixture("crypto/other-private.pem"));
    assert_eq!(run.code, DECRYPTION, "{}", run.stderr);
    assert!(run.stderr.contains("The public key does not match"), "{}", run.stderr);
    assert!(!dest.exists());
}
