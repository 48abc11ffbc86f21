//! Builds the guest workspace (`plugins/`) for wasm32-wasip2 and embeds the
//! first-party plugins in the `relocate` binary.
//!
//! The guests get their own target directory: a nested cargo sharing the outer
//! one can deadlock on its lock. Test plugins (`plugins/test-plugins/*`) are
//! built too, and their directory is exported for the end-to-end tests.

use std::env;
use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

const GUEST_TARGET: &str = "wasm32-wasip2";

fn main() {
    let manifest_dir = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let root = manifest_dir.parent().expect("host/ has a parent").to_path_buf();
    let plugins = root.join("plugins");
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));

    println!("cargo:rerun-if-changed={}", plugins.display());
    println!("cargo:rerun-if-changed={}", root.join("wit").display());
    println!("cargo:rerun-if-env-changed=RELOCATE_GUEST_PROFILE");

    let target_dir = guest_target_dir(&root, &out_dir);
    check_guest_target();

    let cargo = env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.arg("build")
        .arg("--manifest-path")
        .arg(plugins.join("Cargo.toml"))
        .arg("--workspace")
        .arg("--release")
        .arg("--target")
        .arg(GUEST_TARGET)
        .arg("--target-dir")
        .arg(&target_dir);
    // The outer build's settings are for the host, not the guests.
    for (key, _) in env::vars_os() {
        let key = key.to_string_lossy();
        let host_only = (key.starts_with("CARGO_") && key != "CARGO_MAKEFLAGS" && key != "CARGO_HOME")
            || matches!(
                &*key,
                "RUSTFLAGS"
                    | "RUSTC"
                    | "RUSTC_WRAPPER"
                    | "RUSTC_WORKSPACE_WRAPPER"
                    | "TARGET"
                    | "HOST"
                    | "PROFILE"
                    | "OPT_LEVEL"
                    | "DEBUG"
                    | "NUM_JOBS"
                    | "OUT_DIR"
                    | "RUSTDOC"
            );
        if host_only {
            cmd.env_remove(&*key);
        }
    }
    let status = cmd.status().expect("cannot run cargo to build the plugins");
    if !status.success() {
        panic!("building the plugins in {} failed (see the cargo output above)", plugins.display());
    }

    let artifacts = target_dir.join(GUEST_TARGET).join("release");
    let mut builtin = String::from(
        "/// The first-party plugins, embedded at build time.\npub static BUILTIN: &[(&str, &[u8])] = &[\n",
    );
    for name in crate_names(&plugins) {
        let wasm = artifacts.join(format!("{}.wasm", name.replace('-', "_")));
        assert!(wasm.exists(), "plugin {name} was built but {} is missing", wasm.display());
        writeln!(builtin, "    ({name:?}, include_bytes!({:?})),", wasm.display().to_string())
            .expect("write to String");
    }
    builtin.push_str("];\n");
    fs::write(out_dir.join("builtin.rs"), builtin).expect("write builtin.rs");
    println!("cargo:rustc-env=RELOCATE_PLUGIN_ARTIFACTS={}", artifacts.display());
}

/// `<target>/plugins`, next to the outer build's own profile directories.
fn guest_target_dir(root: &Path, out_dir: &Path) -> PathBuf {
    if let Some(dir) = env::var_os("CARGO_TARGET_DIR") {
        let dir = PathBuf::from(dir);
        return if dir.is_absolute() { dir } else { root.join(dir) }.join("plugins");
    }
    // OUT_DIR is <target>/<profile>/build/<pkg>-<hash>/out, or one level
    // deeper under <target>/<triple>/ when cross-compiling.
    out_dir
        .ancestors()
        .find(|p| p.file_name().is_some_and(|n| n == "build"))
        .and_then(|build| build.parent())
        .and_then(|profile| profile.parent())
        .map(|target| target.join("plugins"))
        .unwrap_or_else(|| root.join("target").join("plugins"))
}

/// The first-party plugin crates: every `plugins/*/Cargo.toml` with a
/// `cdylib`, which leaves out the SDK, shared libraries and test plugins.
fn crate_names(plugins: &Path) -> Vec<String> {
    let mut names = Vec::new();
    for entry in fs::read_dir(plugins).expect("read plugins/") {
        let path = entry.expect("read plugins/ entry").path();
        let manifest = path.join("Cargo.toml");
        let Ok(text) = fs::read_to_string(&manifest) else { continue };
        if !text.contains("cdylib") {
            continue;
        }
        let name = text
            .lines()
            .find_map(|l| l.trim().strip_prefix("name = ").map(|v| v.trim_matches('"').to_string()))
            .unwrap_or_else(|| panic!("{} has no package name", manifest.display()));
        names.push(name);
    }
    names.sort();
    names
}

fn check_guest_target() {
    let rustc = env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let libdir = Command::new(rustc)
        .args(["--print", "target-libdir", "--target", GUEST_TARGET])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()));
    if !libdir.is_some_and(|d| d.exists()) {
        panic!(
            "the {GUEST_TARGET} target is not installed; the plugins cannot be built.\n\
             Run `rustup toolchain install` in the repository (it reads rust-toolchain.toml), \
             or `rustup target add {GUEST_TARGET}`."
        );
    }
}
