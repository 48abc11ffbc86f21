//! What a team meets writing a plugin in its own repository, following the
//! README's *Authoring a plugin*: `relocate plugin new`, the SDK as an
//! ordinary dependency, `cargo test` natively, a wasm32-wasip2 build, and
//! `--plugin-dir` (or `RELOCATE_PLUGIN_DIR`) on an import.
//!
//! The crates are built in folders outside the repository by a real nested
//! cargo. They share one target directory, so that the SDK and wit-bindgen
//! compile once; a lock keeps two of these tests from building at once.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, MutexGuard};

use crate::support::{Kind, Target, example, relocate, relocate_with_env};

const USAGE: i32 = 2;
const PLUGIN: i32 = 5;

/// Serializes the tests that build guest crates in [`guest_target_dir`].
static BUILDS: Mutex<()> = Mutex::new(());

fn build_lock() -> MutexGuard<'static, ()> {
    // A test that failed while holding it leaves nothing half-done that the next one would trip on.
    BUILDS.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The cargo target directory the guest crates of these tests share.
fn guest_target_dir() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join("authoring-target")
}

/// The repository's SDK crate, absolute.
fn sdk_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../plugins/sdk").canonicalize().unwrap()
}

/// `cargo ARGS` in `dir`, as a plugin author runs it: none of the settings
/// this test's own cargo passes down (target dir, flags, the package's
/// variables), and the shared target directory.
#[track_caller]
fn cargo(dir: &Path, args: &[&str]) {
    let mut cmd = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    cmd.args(args).current_dir(dir);
    for (key, _) in std::env::vars_os() {
        let key = key.to_string_lossy();
        let outer = (key.starts_with("CARGO_") && key != "CARGO_HOME")
            || matches!(
                &*key,
                "RUSTFLAGS" | "RUSTDOCFLAGS" | "RUSTC" | "RUSTC_WRAPPER" | "RUSTC_WORKSPACE_WRAPPER" | "RUSTDOC"
            );
        if outer {
            cmd.env_remove(&*key);
        }
    }
    cmd.env("CARGO_TARGET_DIR", guest_target_dir());
    let out = cmd.output().expect("run cargo");
    assert!(
        out.status.success(),
        "cargo {} in {} failed\n--- stdout\n{}\n--- stderr\n{}",
        args.join(" "),
        dir.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Runs the crate's native tests, builds its component and puts it alone
/// in `plugins/` under `work`: the folder given to `--plugin-dir`.
fn test_and_build(krate: &Path, wasm_name: &str, work: &Path) -> PathBuf {
    let _lock = build_lock();
    cargo(krate, &["test"]);
    cargo(krate, &["build", "--release", "--target", "wasm32-wasip2"]);
    let built = guest_target_dir().join("wasm32-wasip2/release").join(wasm_name);
    let plugins = work.join("plugins");
    std::fs::create_dir_all(&plugins).unwrap();
    std::fs::copy(&built, plugins.join(wasm_name)).unwrap_or_else(|e| panic!("{}: {e}", built.display()));
    plugins
}

/// Copies the files of `from` (not its `target/`) into `to`.
fn copy_crate(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let (path, name) = (entry.path(), entry.file_name());
        if name == "target" {
            continue;
        }
        if path.is_dir() {
            copy_crate(&path, &to.join(&name));
        } else {
            std::fs::copy(&path, to.join(&name)).unwrap();
        }
    }
}

/// The summary line of `model`, split into its columns.
fn summary<'a>(stdout: &'a str, model: &str) -> Vec<&'a str> {
    let line = stdout.lines().find(|l| l.split_whitespace().next() == Some(model));
    line.unwrap_or_else(|| panic!("no summary line for {model}:\n{stdout}")).split_whitespace().collect()
}

#[tokio::test]
async fn the_acme_invoice_example_builds_outside_the_repository_and_imports_with_plugin_dir() {
    let work = tempfile::tempdir().unwrap();
    let krate = work.path().join("acme-invoice");
    copy_crate(&example("acme-invoice"), &krate);
    // A team's copy names the SDK by an absolute path (or a git URL).
    let manifest = std::fs::read_to_string(krate.join("Cargo.toml")).unwrap();
    let relative = r#"relocate-plugin-sdk = { path = "../../plugins/sdk" }"#;
    assert!(manifest.contains(relative), "the example's SDK dependency moved:\n{manifest}");
    let absolute = format!("relocate-plugin-sdk = {{ path = {:?} }}", sdk_dir().to_string_lossy());
    std::fs::write(krate.join("Cargo.toml"), manifest.replace(relative, &absolute)).unwrap();
    let plugins = test_and_build(&krate, "acme_invoice.wasm", work.path());
    // The example's shipped cases hold for the component built from it.
    let component = plugins.join("acme_invoice.wasm");
    let run = relocate(&["plugin", "test", component.to_str().unwrap(), krate.join("cases").to_str().unwrap()]);
    run.success();
    assert!(run.stdout.contains("ok ") && run.stdout.contains("instructions/record"), "{}", run.stdout);

    let t = Target::new(Kind::Sqlite).await;
    let export = krate.join("export.json");
    let plugin_dir = plugins.to_str().unwrap();
    let uuid = "0b1c6a52-7d3e-4f6a-9c55-4c0f1e2d3a4b";
    let src = export.to_str().unwrap();
    let run = t.relocate(&["import", "global", src, "--plugin-dir", plugin_dir, "--no-prompt", "--import-uuid", uuid]);
    run.success();
    // inserted, existing, overwritten, dropped: INV-3's organization is not in the export.
    assert_eq!(summary(&run.stdout, "acme.invoice")[1..5], ["2", "0", "0", "1"], "{}", run.stdout);
    assert!(!run.stderr.contains("no plugin describes"), "{}", run.stderr);
    let rows = t
        .strings(
            "SELECT i.number || ' ' || o.slug || ' ' || COALESCE(p.slug, '-') || ' ' || i.amount_cents \
             FROM acme_invoice i JOIN sentry_organization o ON o.id = i.organization_id \
             LEFT JOIN sentry_project p ON p.id = i.project_id ORDER BY i.number",
        )
        .await;
    let rows: Vec<String> = rows.into_iter().flatten().collect();
    assert_eq!(rows, ["INV-1 test-org internal 12500", "INV-2 test-org - 4900"]);
    // verify replays the invoices through the plugin: the upper-cased number
    // is the plugin's doing, not a finding.
    let run = relocate(&[
        "verify",
        src,
        "--scope",
        "global",
        "--import-uuid",
        uuid,
        "--db",
        &t.url,
        "--plugin-dir",
        plugin_dir,
    ]);
    run.success();
    assert!(run.stdout.contains("0 findings"), "{}", run.stdout);
    assert_eq!(summary(&run.stdout, "acme.invoice")[1..], ["2", "0", "number"], "{}", run.stdout);

    // Again, Organization scope: a new organization (its slug was taken) and
    // new invoices pointing at it, by its new pk.
    let run = t.relocate(&["import", "organizations", export.to_str().unwrap(), "--plugin-dir", plugin_dir]);
    run.success();
    let orgs = t.i64s("SELECT id FROM sentry_organization ORDER BY id").await;
    assert_eq!(orgs.len(), 2);
    let second = t.i64s(&format!("SELECT COUNT(*) FROM acme_invoice WHERE organization_id = {}", orgs[1])).await;
    assert_eq!(second, [2], "the second import's invoices point at its organization");

    // RELOCATE_PLUGIN_DIR loads the folder as --plugin-dir does.
    let run = relocate_with_env(&["plugins", "list"], &[("RELOCATE_PLUGIN_DIR", plugin_dir)]);
    run.success();
    assert!(run.stdout.contains("acme-invoice 0.1.0") && run.stdout.contains("[extra]"), "{}", run.stdout);
    assert!(run.stdout.contains("acme.invoice"), "{}", run.stdout);
}

#[tokio::test]
async fn plugin_new_scaffolds_a_crate_whose_tests_pass_and_whose_component_imports() {
    let work = tempfile::tempdir().unwrap();
    let krate = work.path().join("demo");
    let run = relocate(&["plugin", "new", "demo", "--path", krate.to_str().unwrap()]);
    run.success();
    assert!(run.stdout.contains("created plugin demo (model demo.item)"), "{}", run.stdout);
    for file in [
        "Cargo.toml",
        "src/lib.rs",
        ".cargo/config.toml",
        "README.md",
        "cases/README.md",
        "cases/item.json",
        ".gitignore",
    ] {
        assert!(krate.join(file).is_file(), "{file} is missing");
    }
    let manifest = std::fs::read_to_string(krate.join("Cargo.toml")).unwrap();
    for needle in ["[workspace]", "opt-level = \"s\"", "lto = true", "panic = \"abort\"", "\"cdylib\", \"rlib\""] {
        assert!(manifest.contains(needle), "{needle} missing from:\n{manifest}");
    }
    assert!(manifest.contains(&sdk_dir().to_string_lossy().to_string()), "the SDK is this checkout's:\n{manifest}");

    // What it creates, it never overwrites.
    let run = relocate(&["plugin", "new", "demo", "--path", krate.to_str().unwrap()]);
    run.failure(USAGE);
    assert!(run.stderr.contains("already exists"), "{}", run.stderr);

    let plugins = test_and_build(&krate, "demo.wasm", work.path());
    // Its one case holds as written.
    let component = plugins.join("demo.wasm");
    let run = relocate(&["plugin", "test", component.to_str().unwrap(), krate.join("cases").to_str().unwrap()]);
    run.success();
    assert!(run.stdout.contains("1 case passed"), "{}", run.stdout);
    let export = work.path().join("export.json");
    let records = serde_json::json!([
        {"model": "demo.item", "pk": 1, "fields": {"organization": 3, "name": "first", "description": null, "date_added": "2024-01-01T00:00:00.000Z"}},
        {"model": "sentry.organization", "pk": 3, "fields": {"name": "Demo", "slug": "demo", "status": 0, "date_added": "2023-06-22T22:54:28.773Z", "default_role": "member", "is_test": false, "flags": "1"}}
    ]);
    std::fs::write(&export, records.to_string()).unwrap();
    let t = Target::new(Kind::Sqlite).await;
    let run =
        t.relocate(&["import", "organizations", export.to_str().unwrap(), "--plugin-dir", plugins.to_str().unwrap()]);
    run.success();
    assert_eq!(summary(&run.stdout, "demo.item")[1], "1", "{}", run.stdout);
    let rows = t
        .strings(
            "SELECT i.name || ' ' || o.slug FROM demo_item i JOIN sentry_organization o ON o.id = i.organization_id",
        )
        .await;
    assert_eq!(rows, [Some("first demo".to_string())]);
}

#[test]
fn plugin_dir_loads_every_wasm_file_and_a_missing_folder_is_a_usage_error() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nowhere");
    let run = relocate(&["plugins", "list", "--plugin-dir", missing.to_str().unwrap()]);
    run.failure(USAGE);
    assert!(run.stderr.contains("cannot read the plugin folder") && run.stderr.contains("nowhere"), "{}", run.stderr);

    // Other files are passed over; a .wasm that is no plugin is refused like a --plugin file.
    std::fs::write(dir.path().join("README.md"), "plugins\n").unwrap();
    let run = relocate(&["plugins", "list", "--plugin-dir", dir.path().to_str().unwrap()]);
    run.success();
    std::fs::write(dir.path().join("core.wasm"), b"\0asm\x01\0\0\0").unwrap();
    let run = relocate(&["plugins", "list", "--plugin-dir", dir.path().to_str().unwrap()]);
    run.failure(PLUGIN);
    assert!(run.stderr.contains("core.wasm") && run.stderr.contains("core WebAssembly module"), "{}", run.stderr);
}

#[test]
fn plugin_new_refuses_a_bad_name_or_sdk() {
    let dir = tempfile::tempdir().unwrap();
    let run = relocate(&["plugin", "new", "Acme Billing", "--path", dir.path().join("x").to_str().unwrap()]);
    run.failure(USAGE);
    assert!(run.stderr.contains("cannot name a plugin"), "{}", run.stderr);
    let run =
        relocate(&["plugin", "new", "demo", "--path", dir.path().join("y").to_str().unwrap(), "--sdk", "/nowhere"]);
    run.failure(USAGE);
    assert!(run.stderr.contains("is not relocate's plugin SDK"), "{}", run.stderr);
    assert!(!dir.path().join("x").exists() && !dir.path().join("y").exists());
}
