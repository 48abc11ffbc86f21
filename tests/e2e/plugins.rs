//! What a plugin author meets: descriptions checked at load, `plugin
//! inspect`, one-line errors for files that are no plugin, and `--strict`
//! for exports with models no plugin describes.

use std::path::{Path, PathBuf};

use crate::support::{Kind, Run, Target, relocate, test_plugin};

const IMPORT_FAILED: i32 = 1;
const USAGE: i32 = 2;
const PLUGIN: i32 = 5;

/// A first-party plugin's component, as built for embedding.
fn builtin_wasm(name: &str) -> PathBuf {
    Path::new(env!("RELOCATE_PLUGIN_ARTIFACTS")).join(format!("{}.wasm", name.replace('-', "_")))
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, bytes).expect("write a test file");
    path
}

/// An export with one invoice of the test plugin's `acme.invoice`.
fn invoice_export(dir: &Path) -> PathBuf {
    let records = r#"[
        {"model": "sentry.option", "pk": 1, "fields": {"key": "sentry:latest_version", "last_updated": "2023-06-22T00:00:00.000Z", "last_updated_by": "unknown", "value": "23.6.1"}},
        {"model": "acme.invoice", "pk": 1, "fields": {"number": "A-1", "organization": 1}}
    ]"#;
    write(dir, "export.json", records.as_bytes())
}

/// The run failed with one line on stderr, as an `error:`.
#[track_caller]
fn one_line_error(run: &Run) -> &str {
    let lines: Vec<&str> = run.stderr.lines().collect();
    assert_eq!(lines.len(), 1, "expected one line on stderr:\n{}", run.stderr);
    assert!(lines[0].starts_with("error: "), "{}", run.stderr);
    lines[0]
}

/// The SQLite target has no table at all.
async fn assert_empty(t: &Target) {
    let mut c = t.connect().await;
    let tables = c.strings("SELECT name FROM sqlite_master WHERE type = 'table'").await;
    assert!(tables.is_empty(), "the import created tables although it was refused: {tables:?}");
}

#[tokio::test]
async fn a_foreign_key_to_an_undescribed_model_is_refused_before_anything_is_written() {
    let t = Target::new(Kind::Sqlite).await;
    let src = invoice_export(t.dir.path());
    let plugin = test_plugin("acme-invoice");
    let run = t.relocate(&["import", "organizations", src.to_str().unwrap(), "--plugin", plugin.to_str().unwrap()]);
    run.failure(PLUGIN);
    let line = one_line_error(&run);
    for needle in [
        "acme-invoice@0.1.0",
        "model acme.invoice",
        "`organization`",
        "sentry.organisation",
        "no loaded plugin describes",
    ] {
        assert!(line.contains(needle), "{needle:?} missing from: {line}");
    }
    assert_empty(&t).await;

    // Listing the plugins refuses it the same way.
    let run = relocate(&["plugins", "list", "--plugin", plugin.to_str().unwrap()]);
    run.failure(PLUGIN);
    assert!(one_line_error(&run).contains("sentry.organisation"), "{}", run.stderr);
}

#[test]
fn files_that_are_no_plugin_get_one_line_each() {
    let dir = tempfile::tempdir().unwrap();
    let cases: [(&str, &[u8], &str); 3] = [
        ("notes.wasm", b"this is a text file\n", "is not a WebAssembly file"),
        // The smallest valid core module: the header alone.
        ("core.wasm", b"\0asm\x01\0\0\0", "is a core WebAssembly module, not a component"),
        // The smallest valid component: it exports nothing, so no importer.
        (
            "other.wasm",
            b"\0asm\x0d\0\x01\0",
            "exports no `relocate:plugin/importer`, nor anything else; relocate supports contract versions 0.2.0 and 0.1.0",
        ),
    ];
    for (name, bytes, needle) in cases {
        let path = write(dir.path(), name, bytes);
        let run = relocate(&["plugins", "list", "--plugin", path.to_str().unwrap()]);
        run.failure(PLUGIN);
        let line = one_line_error(&run);
        assert!(line.contains(needle) && line.contains(name), "{name}: {line}");
    }

    let missing = dir.path().join("missing.wasm");
    let run = relocate(&["plugins", "list", "--plugin", missing.to_str().unwrap()]);
    run.failure(USAGE);
    let line = one_line_error(&run);
    assert!(line.contains("cannot read the plugin file") && line.contains("missing.wasm"), "{line}");
}

#[tokio::test]
async fn a_bad_plugin_file_stops_an_import_before_it_writes() {
    let t = Target::new(Kind::Sqlite).await;
    let src = invoice_export(t.dir.path());
    let core = write(t.dir.path(), "core.wasm", b"\0asm\x01\0\0\0");
    let run =
        t.relocate(&["import", "global", src.to_str().unwrap(), "--plugin", core.to_str().unwrap(), "--no-prompt"]);
    run.failure(PLUGIN);
    assert!(one_line_error(&run).contains("core WebAssembly module"), "{}", run.stderr);
    assert_empty(&t).await;
}

#[test]
fn inspect_shows_a_builtin_plugins_models_and_foreign_keys() {
    let run = relocate(&["plugin", "inspect", "builtin:sentry-users"]);
    run.success();
    for needle in [
        "plugin    sentry-users",
        "contract  relocate:plugin@0.2.0",
        "model sentry.useremail",
        "foreign key user_id -> sentry.user",
        "on missing target: drop",
        "check: fits",
    ] {
        assert!(run.stdout.contains(needle), "{needle:?} missing from:\n{}", run.stdout);
    }

    // The same plugin from its file, as JSON: it replaces the built-in.
    let file = builtin_wasm("sentry-users");
    let run = relocate(&["plugin", "inspect", file.to_str().unwrap(), "--json"]);
    run.success();
    let doc: serde_json::Value = serde_json::from_str(&run.stdout).expect("inspect --json prints one JSON document");
    assert_eq!(doc["contract"], "relocate:plugin@0.2.0");
    assert_eq!(doc["name"], "sentry-users");
    assert_eq!(doc["size"], std::fs::metadata(&file).unwrap().len());
    assert_eq!(doc["check"]["ok"], true);
    let models = doc["models"].as_array().expect("models");
    let email = models.iter().find(|m| m["name"] == "sentry.useremail").expect("sentry.useremail is described");
    assert_eq!(email["table"], "sentry_useremail");
    assert!(email["replaces"].as_str().is_some_and(|p| p.starts_with("sentry-users@")), "{email}");
    let fk = email["foreign_keys"]
        .as_array()
        .and_then(|f| f.iter().find(|f| f["column"] == "user_id"))
        .expect("the user fk");
    assert_eq!((&fk["target"], &fk["on_missing"]), (&"sentry.user".into(), &"drop".into()));
    let user =
        email["columns"].as_array().and_then(|c| c.iter().find(|c| c["column"] == "user_id")).expect("the user column");
    assert_eq!(user["kind"], "integer");
    let imports = doc["imports"].as_array().expect("imports");
    assert!(
        imports
            .iter()
            .any(|i| i["name"].as_str().is_some_and(|n| n.starts_with("relocate:plugin/host"))
                && i["access"] == "granted"),
        "{imports:?}"
    );
    assert!(
        imports.iter().all(|i| i["access"] != "missing"),
        "a loaded plugin imports nothing relocate lacks: {imports:?}"
    );
}

#[test]
fn inspect_shows_a_refused_plugin_then_says_why() {
    let plugin = test_plugin("acme-invoice");
    let run = relocate(&["plugin", "inspect", plugin.to_str().unwrap(), "--json"]);
    run.failure(PLUGIN);
    let doc: serde_json::Value = serde_json::from_str(&run.stdout).expect("one JSON document");
    assert_eq!(doc["check"]["ok"], false);
    assert!(doc["check"]["error"].as_str().is_some_and(|e| e.contains("sentry.organisation")), "{doc}");
    assert_eq!(doc["models"][0]["foreign_keys"][0]["target"], "sentry.organisation");
    assert!(one_line_error(&run).contains("sentry.organisation"));
}

#[tokio::test]
async fn strict_refuses_models_no_plugin_describes() {
    let t = Target::new(Kind::Sqlite).await;
    let src = invoice_export(t.dir.path());
    let findings = t.dir.path().join("findings.json");
    let run = t.relocate(&[
        "import",
        "global",
        src.to_str().unwrap(),
        "--no-prompt",
        "--strict",
        "--findings-file",
        findings.to_str().unwrap(),
    ]);
    run.failure(IMPORT_FAILED);
    let line = one_line_error(&run);
    for needle in ["acme.invoice (1 record)", "--plugin", "--strict", "nothing was written"] {
        assert!(line.contains(needle), "{needle:?} missing from: {line}");
    }
    assert_empty(&t).await;
    let finding: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&findings).unwrap()).unwrap();
    assert_eq!(finding[0]["kind"], "UnexpectedModel");
    assert_eq!(finding[0]["on"]["model"], "acme.invoice");

    // Without --strict the rest is imported and the left-out model is a warning.
    let run = t.relocate(&["import", "global", src.to_str().unwrap(), "--no-prompt"]);
    run.success();
    assert!(
        run.stderr
            .lines()
            .any(|l| l.starts_with("warning: ") && l.contains("acme.invoice (1 record)") && l.contains("--plugin")),
        "{}",
        run.stderr
    );
    assert_eq!(t.count("sentry_option").await, 1);
}
