//! The bad-input catalogue: malformed JSON, hostile tarballs, unusable keys
//! and command-line mistakes. Each case gets one specific message and the
//! documented exit code; none panics; a refused input leaves the database
//! exactly as it was. (More cases, each with its own test: `errors.rs`,
//! `crypto.rs`, `exit_codes.rs`, `plugins.rs`, `sandbox.rs`.)
//!
//! `tests/fixtures/crypto/encrypted-private.pem` and `ec-private.pem` were made
//! with `openssl pkey -in private-pkcs8.pem -aes256 -passout pass:secret` and
//! `openssl ecparam -name prime256v1 -genkey -noout | openssl pkcs8 -topk8 -nocrypt`.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use crate::db_test;
use crate::support::{Target, example, fixture};

const OK: i32 = 0;
const IMPORT_FAILED: i32 = 1;
const USAGE: i32 = 2;
const BAD_INPUT: i32 = 3;
const DECRYPTION: i32 = 4;

/// One bad input: the command's arguments after `import`, and what the user must see.
struct Case {
    name: &'static str,
    args: Vec<String>,
    code: i32,
    says: Vec<String>,
}

fn fresh() -> Vec<Value> {
    serde_json::from_str(&std::fs::read_to_string(fixture("sentry/backup/fresh-install.json")).unwrap()).unwrap()
}

fn first_user(records: &mut [Value]) -> &mut Value {
    records.iter_mut().find(|r| r["model"] == "sentry.user").unwrap()
}

/// Writes `bytes` as `name` in `dir`.
fn file(dir: &Path, name: &str, bytes: impl AsRef<[u8]>) -> String {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path.to_str().unwrap().to_string()
}

fn users(src: String, extra: &[&str], code: i32, says: &[&str], name: &'static str) -> Case {
    let mut args = vec!["users".to_string(), src];
    args.extend(extra.iter().map(|s| s.to_string()));
    Case { name, args, code, says: says.iter().map(|s| s.to_string()).collect() }
}

fn json_cases(dir: &Path) -> Vec<Case> {
    let text = serde_json::to_string(&fresh()).unwrap();
    let edited = |edit: &dyn Fn(&mut Vec<Value>)| {
        let mut records = fresh();
        edit(&mut records);
        serde_json::to_string(&records).unwrap()
    };
    let deep = format!("{}1{}", "[".repeat(5000), "]".repeat(5000));
    let mut cases = vec![
        users(file(dir, "truncated.json", &text[..text.len() / 2]), &[], BAD_INPUT, &["truncated"], "truncated"),
        users(file(dir, "object.json", r#"{"model": "sentry.user"}"#), &[], BAD_INPUT, &["expected `[`"], "an object"),
        users(file(dir, "empty.json", ""), &[], BAD_INPUT, &["empty"], "an empty file"),
        users(file(dir, "numbers.json", "[1, 2]"), &[], BAD_INPUT, &["expected a record object"], "not records"),
        users(
            file(dir, "trailing.json", format!("{text} garbage")),
            &[],
            BAD_INPUT,
            &["after the end of the array"],
            "trailing bytes",
        ),
        users(
            file(dir, "nomodel.json", edited(&|r| drop(r[0].as_object_mut().unwrap().remove("model")))),
            &[],
            BAD_INPUT,
            &["record #1", "model"],
            "a record without a model",
        ),
        users(
            file(dir, "nopk.json", edited(&|r| drop(r[0].as_object_mut().unwrap().remove("pk")))),
            &[],
            BAD_INPUT,
            &["record #1", "missing `pk`"],
            "a record without a pk",
        ),
        users(
            file(dir, "pkstring.json", edited(&|r| r[0]["pk"] = json!("abc"))),
            &[],
            BAD_INPUT,
            &["pk must be an integer"],
            "a natural key",
        ),
        users(
            file(dir, "bigpk.json", text.replacen("\"pk\":1,", "\"pk\":99999999999999999999,", 1)),
            &[],
            BAD_INPUT,
            &["pk must be an integer"],
            "a pk beyond i64",
        ),
        users(
            file(dir, "fields.json", edited(&|r| r[0]["fields"] = json!([1, 2]))),
            &[],
            BAD_INPUT,
            &["record #1", "`fields` must be an object"],
            "fields that are not an object",
        ),
        users(
            file(
                dir,
                "duppk.json",
                edited(&|r| {
                    let user = first_user(r).clone();
                    r.push(user);
                }),
            ),
            &[],
            OK,
            &["sentry.user pk 1 appears again", "as in Sentry"],
            "a repeated pk, imported twice as Sentry does, with a warning",
        ),
        users(
            file(dir, "model.json", edited(&|r| r[0]["model"] = json!("sentry"))),
            &[],
            BAD_INPUT,
            &["not a model name"],
            "a model name without an app",
        ),
        users(
            file(
                dir,
                "deep.json",
                edited(&|r| first_user(r)["fields"]["name"] = json!("DEEP")).replace("\"DEEP\"", &deep),
            ),
            &[],
            BAD_INPUT,
            &["recursion limit"],
            "deep nesting",
        ),
        users(
            file(dir, "nan.json", text.replacen(":true", ":NaN", 1)),
            &[],
            BAD_INPUT,
            &["nan.json", "record #"],
            "NaN",
        ),
        users(
            file(dir, "wrongtype.json", edited(&|r| first_user(r)["fields"]["is_staff"] = json!("yes"))),
            &[],
            IMPORT_FAILED,
            &["sentry.user record #1 (pk 1)", "is_staff", "expected a boolean"],
            "a field of the wrong type",
        ),
        users(
            file(dir, "unknown.json", edited(&|r| r.push(json!({"model": "acme.thing", "pk": 1, "fields": {}})))),
            &["--strict"],
            IMPORT_FAILED,
            &["acme.thing (1 record)"],
            "an unknown model with --strict",
        ),
        users(
            file(dir, "huge.json", edited(&|r| first_user(r)["fields"]["name"] = json!("x".repeat(8 << 20)))),
            &[],
            OK,
            &[],
            "an 8 MiB string",
        ),
        users(file(dir, "bom.json", format!("\u{feff}{text}")), &[], OK, &[], "a byte-order mark"),
        users(dir.join("missing.json").to_str().unwrap().into(), &[], BAD_INPUT, &["missing.json"], "no such file"),
        users(
            dir.to_str().unwrap().into(),
            &[],
            BAD_INPUT,
            &[dir.file_name().unwrap().to_str().unwrap()],
            "a directory",
        ),
    ];
    // Invalid UTF-8 inside a string: raw bytes, not text.
    let mut bad = text.clone().into_bytes();
    let at = text.find("admin@example.com").unwrap();
    bad[at + 3] = 0xff;
    cases.push(users(file(dir, "latin1.json", bad), &[], BAD_INPUT, &["latin1.json", "record #"], "invalid UTF-8"));
    // A record over the 64 MiB cap is refused before it is buffered.
    let big = format!(r#"[{{"model": "sentry.user", "pk": 1, "fields": {{"name": "{}"}}}}]"#, "x".repeat(65 << 20));
    cases.push(users(file(dir, "big.json", big), &[], BAD_INPUT, &["big.json"], "a record over the cap"));
    cases
}

/// The example tarball's three members.
fn members() -> Vec<(String, Vec<u8>)> {
    let mut archive = tar::Archive::new(std::fs::File::open(example("fresh-install.tar")).unwrap());
    archive
        .entries()
        .unwrap()
        .map(|e| {
            let mut e = e.unwrap();
            let name = e.path().unwrap().to_str().unwrap().to_string();
            let mut data = Vec::new();
            std::io::Read::read_to_end(&mut e, &mut data).unwrap();
            (name, data)
        })
        .collect()
}

/// A tarball of `entries`: (name, kind, data).
fn tarball(dir: &Path, name: &str, entries: &[(&str, tar::EntryType, &[u8])]) -> String {
    let mut builder = tar::Builder::new(Vec::new());
    for (path, kind, data) in entries {
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(*kind);
        header.set_size(if kind.is_file() { data.len() as u64 } else { 0 });
        header.set_mode(0o644);
        if kind.is_symlink() || kind.is_hard_link() {
            header.set_link_name("export.json").unwrap();
        }
        // Names like `../x` go in raw: `append_data` would refuse them.
        let bytes = path.as_bytes();
        header.as_old_mut().name[..bytes.len()].copy_from_slice(bytes);
        header.set_cksum();
        builder.append(&header, if kind.is_file() { *data } else { &[][..] }).unwrap();
    }
    file(dir, name, builder.into_inner().unwrap())
}

fn tar_cases(dir: &Path) -> Vec<Case> {
    let m = members();
    let get = |n: &str| m.iter().find(|(name, _)| name == n).unwrap().1.clone();
    let (export, data_key, key_pub) = (get("export.json"), get("data.key"), get("key.pub"));
    let file_kind = tar::EntryType::Regular;
    let key = example("fresh-install.key.pem").to_str().unwrap().to_string();
    let with_key = |src: String, code: i32, says: &[&str], name: &'static str| {
        users(src, &["--decrypt-with", &key], code, says, name)
    };
    let base = |first: (&'static str, tar::EntryType, Vec<u8>)| {
        let mut all = vec![first];
        all.push(("data.key", file_kind, data_key.clone()));
        all.push(("key.pub", file_kind, key_pub.clone()));
        all
    };
    let build = |name: &str, entries: &[(&str, tar::EntryType, Vec<u8>)]| {
        let refs: Vec<(&str, tar::EntryType, &[u8])> = entries.iter().map(|(n, k, d)| (*n, *k, &d[..])).collect();
        tarball(dir, name, &refs)
    };
    let mut flipped_hmac = export.clone();
    let end = flipped_hmac.len() - 3;
    flipped_hmac[end] = if flipped_hmac[end] == b'A' { b'B' } else { b'A' };
    let raw = std::fs::read(example("fresh-install.tar")).unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&raw).unwrap();
    vec![
        with_key(
            build("dotdot.tar", &base(("../export.json", file_kind, export.clone()))),
            DECRYPTION,
            &["../export.json"],
            "a `../` member",
        ),
        with_key(
            build("absolute.tar", &base(("/tmp/export.json", file_kind, export.clone()))),
            DECRYPTION,
            &["/tmp/export.json"],
            "an absolute member",
        ),
        with_key(
            build("symlink.tar", &base(("export.json", tar::EntryType::Symlink, Vec::new()))),
            DECRYPTION,
            &["no `export.json`"],
            "export.json as a symlink",
        ),
        with_key(
            build("hardlink.tar", &base(("export.json", tar::EntryType::Link, Vec::new()))),
            DECRYPTION,
            &["no `export.json`"],
            "export.json as a hard link",
        ),
        with_key(
            build(
                "device.tar",
                &[base(("export.json", file_kind, export.clone())), vec![("tty", tar::EntryType::Char, Vec::new())]]
                    .concat(),
            ),
            OK,
            &[],
            "a device entry, skipped as Sentry's tarfile loop does",
        ),
        with_key(
            build(
                "unknown.tar",
                &[base(("export.json", file_kind, export.clone())), vec![("notes.txt", file_kind, b"hi".to_vec())]]
                    .concat(),
            ),
            DECRYPTION,
            &["notes.txt"],
            "an unknown member",
        ),
        with_key(
            build(
                "repeated.tar",
                &[base(("export.json", file_kind, export.clone())), vec![("export.json", file_kind, export.clone())]]
                    .concat(),
            ),
            DECRYPTION,
            &["`export.json` more than once"],
            "a repeated member",
        ),
        with_key(
            build("nokey.tar", &[("export.json", file_kind, export.clone()), ("key.pub", file_kind, key_pub.clone())]),
            DECRYPTION,
            &["no `data.key`"],
            "a missing member",
        ),
        with_key(
            build(
                "bigkey.tar",
                &[
                    ("export.json", file_kind, export.clone()),
                    ("data.key", file_kind, vec![b'k'; 100_000]),
                    ("key.pub", file_kind, key_pub.clone()),
                ],
            ),
            DECRYPTION,
            &["data.key", "more than"],
            "an oversized key member",
        ),
        with_key(file(dir, "half.tar", &raw[..raw.len() / 2]), DECRYPTION, &["half.tar"], "a truncated tarball"),
        with_key(
            build("hmac.tar", &base(("export.json", file_kind, flipped_hmac))),
            DECRYPTION,
            &["hmac.tar"],
            "a flipped HMAC",
        ),
        with_key(file(dir, "gz.tar.gz", gz.finish().unwrap()), OK, &[], "a gzipped tarball"),
        with_key(
            file(dir, "plain.json", std::fs::read(fixture("sentry/backup/fresh-install.json")).unwrap()),
            OK,
            &[],
            "a key for a plain export",
        ),
    ]
}

fn key_cases(dir: &Path) -> Vec<Case> {
    let tar = example("fresh-install.tar").to_str().unwrap().to_string();
    let with = |key: String, says: &[&str], name: &'static str| {
        users(tar.clone(), &["--decrypt-with", &key], DECRYPTION, says, name)
    };
    let path = |p: PathBuf| p.to_str().unwrap().to_string();
    vec![
        with(path(fixture("crypto/encrypted-private.pem")), &["encrypted"], "an encrypted PEM"),
        with(path(fixture("crypto/ec-private.pem")), &["RSA"], "a key that is not RSA"),
        with(path(fixture("crypto/public.pem")), &["private key"], "a public key for a private one"),
        with(
            file(dir, "garbage.pem", "-----BEGIN PRIVATE KEY-----\nnot base64\n-----END PRIVATE KEY-----\n"),
            &["PEM"],
            "a malformed PEM",
        ),
        with(file(dir, "empty.pem", ""), &["PEM"], "an empty key file"),
    ]
}

fn cli_cases(dir: &Path) -> Vec<Case> {
    let src = fixture("sentry/backup/fresh-install.json").to_str().unwrap().to_string();
    let missing = dir.join("no-such-dir").join("x");
    let missing = missing.to_str().unwrap();
    vec![
        users(src.clone(), &["--import-uuid", "not-a-uuid"], USAGE, &["--import-uuid"], "a bad UUID"),
        users(src.clone(), &["--batch-size", "0"], USAGE, &["--batch-size"], "a zero batch size"),
        users(src.clone(), &["--plugin-timeout", "0"], USAGE, &["--plugin-timeout"], "a zero plugin timeout"),
        users(src.clone(), &["--filter-usernames-file", missing], USAGE, &["no-such-dir"], "a missing filter file"),
        users(src.clone(), &["--findings-file", missing], USAGE, &["no-such-dir"], "an unwritable findings file"),
        users(src.clone(), &["--report", missing], USAGE, &["no-such-dir"], "an unwritable report file"),
        users(src, &["--decrypt-with", missing], USAGE, &["no-such-dir"], "a missing key file"),
    ]
}

/// Runs every case against `t`; a refused input must leave it as it was.
async fn run(t: &Target, cases: Vec<Case>) {
    let mut failures = Vec::new();
    for case in cases {
        let before = t.snapshot().await;
        let mut args = vec!["import".to_string()];
        args.extend(case.args.iter().cloned());
        let run = t.relocate(&args.iter().map(String::as_str).collect::<Vec<_>>());
        let mut wrong = Vec::new();
        if run.stderr.contains("panicked") || run.code == 101 {
            wrong.push("panicked".to_string());
        }
        if run.code != case.code {
            wrong.push(format!("exit {} (expected {})", run.code, case.code));
        }
        for phrase in &case.says {
            if !run.stderr.contains(phrase) {
                wrong.push(format!("does not say {phrase:?}"));
            }
        }
        if case.code == OK {
            // Each accepted case imports the same users; a second import suffixes them.
        } else if case.code != IMPORT_FAILED && t.snapshot().await != before {
            wrong.push("changed the database".to_string());
        }
        if !wrong.is_empty() {
            failures.push(format!(
                "{}: {}\n    {}",
                case.name,
                wrong.join("; "),
                run.stderr.trim().replace('\n', "\n    ")
            ));
        }
    }
    assert!(failures.is_empty(), "{} case(s) went wrong:\n{}", failures.len(), failures.join("\n"));
}

db_test!(bad_json_is_refused_with_a_specific_message, |t| {
    let cases = json_cases(t.dir.path());
    assert!(cases.len() >= 20);
    run(&t, cases).await;
});

db_test!(hostile_tarballs_are_refused_with_a_specific_message, |t| {
    let cases = tar_cases(t.dir.path());
    run(&t, cases).await;
});

db_test!(unusable_keys_are_refused_with_a_specific_message, |t| {
    let cases = key_cases(t.dir.path());
    run(&t, cases).await;
});

db_test!(command_line_mistakes_are_usage_errors, |t| {
    let cases = cli_cases(t.dir.path());
    run(&t, cases).await;
});
