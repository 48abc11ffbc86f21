//! `relocate plugin new`: a plugin crate a team builds and tests in its own
//! repository, written from the templates in `scaffold/`.
//!
//! The crate depends on the SDK by path (this build's own checkout, or
//! `--sdk`) or by git URL, and is a workspace of its own, so it builds
//! wherever it is put.

use std::path::{Path, PathBuf};

use clap::Args;

use super::{UsageError, file_error};

#[derive(Args)]
pub(super) struct NewArgs {
    /// The plugin's name, also its crate's: lower case letters, digits, `-` and `_`. Its model is NAME.item
    /// (with `_` for `-`).
    name: String,
    /// Where to create the crate (default: ./NAME); it must not exist yet.
    #[arg(long, value_name = "DIR")]
    path: Option<PathBuf>,
    /// The SDK to depend on: a path (relocate's plugins/sdk, or a checkout of relocate) or a git
    /// URL (default: the checkout this relocate was built from).
    #[arg(long, value_name = "PATH_OR_GIT")]
    sdk: Option<String>,
}

/// The crate's files: path in the crate, template.
const TEMPLATES: &[(&str, &str)] = &[
    ("Cargo.toml", include_str!("scaffold/Cargo.toml.in")),
    ("src/lib.rs", include_str!("scaffold/lib.rs.in")),
    (".cargo/config.toml", include_str!("scaffold/config.toml.in")),
    (".gitignore", include_str!("scaffold/gitignore.in")),
    ("README.md", include_str!("scaffold/README.md.in")),
    ("cases/README.md", include_str!("scaffold/cases-README.md.in")),
    ("cases/item.json", include_str!("scaffold/case.json.in")),
];

/// Writes the crate, all of it or nothing, and says what to do next.
pub(super) fn run(args: &NewArgs) -> anyhow::Result<()> {
    check_name(&args.name)?;
    let dir = args.path.clone().unwrap_or_else(|| PathBuf::from(&args.name));
    if dir.symlink_metadata().is_ok() {
        anyhow::bail!(UsageError(format!(
            "{} already exists; `relocate plugin new` overwrites nothing (pass --path with a new folder)",
            dir.display()
        )));
    }
    let sdk = sdk_dependency(args.sdk.as_deref())?;
    let vars = [
        ("{{name}}", args.name.clone()),
        ("{{crate}}", args.name.replace('-', "_")),
        ("{{app}}", args.name.replace('-', "_")),
        ("{{sdk}}", sdk),
    ];
    // Written beside the destination, then renamed into place: a failure
    // halfway leaves no half a crate.
    let parent = dir.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent).map_err(|e| file_error("create", parent, e))?;
    let staging = tempfile::Builder::new()
        .prefix(".relocate-plugin-new-")
        .tempdir_in(parent)
        .map_err(|e| file_error("write in", parent, e))?;
    for (rel, template) in TEMPLATES {
        let path = staging.path().join(rel);
        if let Some(sub) = path.parent() {
            std::fs::create_dir_all(sub).map_err(|e| file_error("create", sub, e))?;
        }
        let text = vars.iter().fold(template.to_string(), |text, (key, value)| text.replace(key, value));
        std::fs::write(&path, text).map_err(|e| file_error("write", &dir.join(rel), e))?;
    }
    std::fs::rename(staging.path(), &dir).map_err(|e| file_error("create", &dir, e))?;
    // The staging folder is now the crate; there is nothing left to clean up.
    let _ = staging.keep();
    let crate_name = args.name.replace('-', "_");
    println!(
        "created plugin {name} (model {crate_name}.item) in {dir}\n\
         next:\n  \
           cd {dir}\n  \
           cargo test\n  \
           cargo build --release --target wasm32-wasip2\n  \
           relocate plugin test target/wasm32-wasip2/release/{crate_name}.wasm cases\n  \
           relocate import organizations EXPORT --plugin-dir target/wasm32-wasip2/release",
        name = args.name,
        dir = dir.display(),
    );
    Ok(())
}

/// A crate name that is also a model's app name: `a-z`, `0-9`, `-`, `_`,
/// starting with a letter.
fn check_name(name: &str) -> Result<(), UsageError> {
    let ok = name.len() <= 64
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
    if ok {
        Ok(())
    } else {
        Err(UsageError(format!(
            "`{name}` cannot name a plugin: use lower case letters, digits, `-` and `_`, starting with a letter"
        )))
    }
}

/// The `relocate-plugin-sdk` dependency, as a TOML inline table.
fn sdk_dependency(sdk: Option<&str>) -> Result<String, UsageError> {
    match sdk {
        Some(url) if url.contains("://") || url.starts_with("git@") => Ok(format!("{{ git = {} }}", toml_string(url))),
        Some(path) => local_sdk(Path::new(path)),
        None => {
            let own = Path::new(env!("CARGO_MANIFEST_DIR")).join("../plugins/sdk");
            local_sdk(&own).map_err(|_| {
                UsageError(format!(
                    "the SDK this relocate was built with is gone ({}); pass --sdk with the path of relocate's \
                     plugins/sdk or a git URL of relocate",
                    own.display()
                ))
            })
        }
    }
}

/// `path` if it is the SDK's crate, or `path/plugins/sdk` if `path` is a
/// checkout of relocate; absolute, so that the new crate can be moved.
fn local_sdk(path: &Path) -> Result<String, UsageError> {
    for dir in [path.to_path_buf(), path.join("plugins").join("sdk")] {
        let manifest = std::fs::read_to_string(dir.join("Cargo.toml")).unwrap_or_default();
        if manifest.lines().any(|l| l.trim() == r#"name = "relocate-plugin-sdk""#) {
            let dir = dir.canonicalize().map_err(|e| file_error("read", &dir, e))?;
            return Ok(format!("{{ path = {} }}", toml_string(&dir.to_string_lossy())));
        }
    }
    Err(UsageError(format!(
        "{} is not relocate's plugin SDK: it has no Cargo.toml of relocate-plugin-sdk, nor has its plugins/sdk",
        path.display()
    )))
}

/// A TOML basic string.
fn toml_string(text: &str) -> String {
    let mut out = String::from("\"");
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_crate_and_model_names() {
        for good in ["demo", "acme-billing", "a_1"] {
            assert!(check_name(good).is_ok(), "{good}");
        }
        for bad in ["", "Demo", "1demo", "-demo", "de mo", "dé", "a.b"] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_sdk_is_a_path_or_a_git_url() {
        let own = Path::new(env!("CARGO_MANIFEST_DIR")).join("../plugins/sdk").canonicalize().unwrap();
        let expected = format!("{{ path = {} }}", toml_string(&own.to_string_lossy()));
        assert_eq!(sdk_dependency(None).unwrap(), expected);
        // A checkout of relocate names its SDK too.
        assert_eq!(sdk_dependency(Some(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))).unwrap(), expected);
        assert_eq!(
            sdk_dependency(Some("https://example.com/relocate.git")).unwrap(),
            r#"{ git = "https://example.com/relocate.git" }"#
        );
        let err = sdk_dependency(Some(env!("CARGO_MANIFEST_DIR"))).unwrap_err().to_string();
        assert!(err.contains("is not relocate's plugin SDK"), "{err}");
    }

    #[test]
    fn toml_strings_are_escaped() {
        assert_eq!(toml_string(r#"C:\a "b""#), r#""C:\\a \"b\"""#);
    }
}
