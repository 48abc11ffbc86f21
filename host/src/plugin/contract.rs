//! The contract versions this host links, and the dispatch over them.
//!
//! Each released version of `wit/vN/relocate.wit` is frozen and has its own
//! bindings (`v1.rs` for 0.1.0, `v2.rs` for 0.2.0, the latest). Every
//! version's `host` imports are in the linker; a plugin speaks the version
//! whose `importer` it exports, and [`Instance`] adapts an older version's
//! calls and results to the latest's types, as Zed's extension host does.

use wasmtime::Store;
use wasmtime::component::{InstancePre, Linker, ResourceAny};

use super::state::StoreState;
use super::v2::wit;
use super::{v1, v2};

/// One version of the WIT contract.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Contract {
    /// `0.2.0`
    pub version: &'static str,
    /// The WIT package: `relocate:plugin@0.2.0`.
    pub package: &'static str,
    /// The interface a plugin of this version exports:
    /// `relocate:plugin/importer@0.2.0`.
    pub importer: &'static str,
}

/// The [`Contract`] of version `$version`, all its names spelled from it.
macro_rules! contract {
    ($version:literal) => {
        $crate::plugin::contract::Contract {
            version: $version,
            package: concat!("relocate:plugin@", $version),
            importer: concat!("relocate:plugin/importer@", $version),
        }
    };
}
pub(super) use contract;

/// Every contract version this host links, latest first: the one list the
/// loader, the messages and `plugin inspect` go by.
pub const SUPPORTED: &[Contract] = &[v2::CONTRACT, v1::CONTRACT];

/// The contract the SDK and the first-party plugins speak.
pub const LATEST: Contract = SUPPORTED[0];

/// `0.2.0 and 0.1.0`, for messages.
pub fn supported_versions() -> String {
    let versions: Vec<&str> = SUPPORTED.iter().map(|c| c.version).collect();
    match versions.split_last() {
        Some((last, rest)) if !rest.is_empty() => format!("{} and {last}", rest.join(", ")),
        _ => versions.join(""),
    }
}

/// Adds every supported version's `host` interface to `linker`. Versions
/// 0.x differ in their minor number, which semver treats as incompatible,
/// so each version's names stay apart in the linker.
pub(super) fn add_to_linker(linker: &mut Linker<StoreState>) -> wasmtime::Result<()> {
    v2::add_to_linker(linker)?;
    v1::add_to_linker(linker)
}

/// The contract a component speaks, from the names it exports; or why it
/// speaks none this host supports, in one sentence.
pub(super) fn spoken<'a>(exports: impl IntoIterator<Item = &'a str>) -> Result<Contract, String> {
    let exports: Vec<&str> = exports.into_iter().collect();
    if let Some(contract) = SUPPORTED.iter().find(|c| exports.contains(&c.importer)) {
        return Ok(*contract);
    }
    let importers: Vec<&str> = exports
        .iter()
        .copied()
        .filter(|name| name.split_once('@').map_or(*name, |(interface, _)| interface) == "relocate:plugin/importer")
        .collect();
    let supported = supported_versions();
    if !importers.is_empty() {
        let found: Vec<String> = importers
            .iter()
            .map(|name| match name.split_once('@') {
                Some((_, version)) => format!("`{name}` (contract {version})"),
                None => format!("`{name}` (no version)"),
            })
            .collect();
        return Err(format!(
            "it exports {}, a contract version this relocate does not support: it supports {supported}; \
             rebuild the plugin with this relocate's SDK (contract {}) or against one of its wit/ versions",
            found.join(" and "),
            LATEST.version
        ));
    }
    let shown: Vec<String> = exports.iter().take(3).map(|name| format!("`{name}`")).collect();
    let exported = match (shown.len(), exports.len()) {
        (0, _) => "nor anything else".to_string(),
        (n, total) if n == total => format!("only {}", shown.join(", ")),
        (_, total) => format!("only {} and {} more", shown.join(", "), total - shown.len()),
    };
    Err(format!(
        "it is a component, but not a relocate plugin: it exports no `relocate:plugin/importer`, {exported}; \
         relocate supports contract versions {supported} (build it with the SDK, world `plugin`)"
    ))
}

/// A linked plugin ready to be instantiated, by the version it speaks.
#[derive(Clone)]
pub(super) enum Pre {
    V2(v2::BindingsPre),
    V1(v1::BindingsPre),
}

impl Pre {
    /// Checks that `pre`'s component exports `contract`'s importer with
    /// that version's types.
    pub fn new(contract: Contract, pre: InstancePre<StoreState>) -> wasmtime::Result<Pre> {
        if contract == v1::CONTRACT {
            Ok(Pre::V1(v1::BindingsPre::new(pre)?))
        } else {
            Ok(Pre::V2(v2::BindingsPre::new(pre)?))
        }
    }

    /// The contract the plugin speaks.
    pub fn contract(&self) -> Contract {
        match self {
            Pre::V2(_) => v2::CONTRACT,
            Pre::V1(_) => v1::CONTRACT,
        }
    }

    pub fn instantiate(&self, store: &mut Store<StoreState>) -> wasmtime::Result<Instance> {
        Ok(match self {
            Pre::V2(pre) => Instance::V2(pre.instantiate(store)?),
            Pre::V1(pre) => Instance::V1(pre.instantiate(store)?),
        })
    }
}

/// A plugin instance, called with and answering in the latest contract's
/// types whatever version it speaks.
pub(super) enum Instance {
    V2(v2::Bindings),
    V1(v1::Bindings),
}

/// What `prepare` and `resolve` return: a guest's own `fatal` inside, a
/// trap outside.
type Guest<T> = wasmtime::Result<Result<Vec<T>, wit::Fatal>>;

impl Instance {
    pub fn describe(&self, store: &mut Store<StoreState>) -> wasmtime::Result<v2::WitPluginInfo> {
        match self {
            Instance::V2(b) => b.relocate_plugin_importer().call_describe(store),
            Instance::V1(b) => Ok(b.relocate_plugin_importer().call_describe(store)?.into()),
        }
    }

    /// Constructs the guest's `session` resource.
    pub fn open(&self, store: &mut Store<StoreState>, config: &wit::SessionConfig) -> wasmtime::Result<ResourceAny> {
        match self {
            Instance::V2(b) => b.relocate_plugin_importer().session().call_constructor(store, config),
            Instance::V1(b) => b.relocate_plugin_importer().session().call_constructor(store, &config.into()),
        }
    }

    pub fn prepare(
        &self,
        store: &mut Store<StoreState>,
        session: ResourceAny,
        batch: Vec<wit::InputRecord>,
    ) -> Guest<wit::Prepared> {
        match self {
            Instance::V2(b) => b.relocate_plugin_importer().session().call_prepare(store, session, &batch),
            Instance::V1(b) => {
                let batch: Vec<_> = batch.into_iter().map(Into::into).collect();
                let raw = b.relocate_plugin_importer().session().call_prepare(store, session, &batch)?;
                Ok(raw.map(|p| p.into_iter().map(Into::into).collect()).map_err(Into::into))
            }
        }
    }

    pub fn resolve(
        &self,
        store: &mut Store<StoreState>,
        session: ResourceAny,
        answers: Vec<wit::Answered>,
    ) -> Guest<wit::Decided> {
        match self {
            Instance::V2(b) => b.relocate_plugin_importer().session().call_resolve(store, session, &answers),
            Instance::V1(b) => {
                let answers: Vec<_> = answers.into_iter().map(Into::into).collect();
                let raw = b.relocate_plugin_importer().session().call_resolve(store, session, &answers)?;
                Ok(raw.map(|d| d.into_iter().map(Into::into).collect()).map_err(Into::into))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    use super::*;

    fn root() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
    }

    /// `wit/vN/relocate.wit` of the `N`th supported version, oldest first.
    fn wit_dir(contract: Contract) -> PathBuf {
        let n = SUPPORTED.len() - SUPPORTED.iter().position(|c| *c == contract).expect("a supported contract");
        root().join(format!("wit/v{n}"))
    }

    /// Each `wit/vN/` declares the package its bindings say it is, so the
    /// supported list cannot drift from the files the bindings are made of.
    #[test]
    fn every_supported_version_has_its_frozen_wit_directory() {
        for contract in SUPPORTED {
            let path = wit_dir(*contract).join("relocate.wit");
            let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            assert!(
                text.contains(&format!("\npackage {};\n", contract.package)),
                "{} is not {}",
                path.display(),
                contract.package
            );
        }
        let dirs = std::fs::read_dir(root().join("wit")).expect("read wit/").count();
        assert_eq!(dirs, SUPPORTED.len(), "every wit/vN/ is a version the host links");
    }

    /// The SDK carries its own copy of the contract it binds, the latest, so
    /// that a plugin crate outside the repository builds against it; the
    /// copy must be the repository's, byte for byte.
    #[test]
    fn the_sdk_vendors_this_contract_byte_for_byte() {
        let latest = wit_dir(LATEST);
        let dir = latest.file_name().expect("a directory name").to_string_lossy().into_owned();
        let sdk = root().join("plugins/sdk");
        let bindings = std::fs::read_to_string(sdk.join("src/wit.rs")).expect("read plugins/sdk/src/wit.rs");
        assert!(
            bindings.contains(&format!("path: \"wit/{dir}\"")),
            "the SDK must bind the latest contract, wit/{dir} ({})",
            LATEST.package
        );
        for entry in std::fs::read_dir(&latest).expect("read the latest wit/") {
            let path = entry.expect("a wit/ entry").path();
            let name = path.file_name().expect("a file name").to_string_lossy().into_owned();
            let ours = std::fs::read(&path).expect("read the contract");
            let copy = std::fs::read(sdk.join("wit").join(&dir).join(&name))
                .unwrap_or_else(|e| panic!("plugins/sdk/wit/{dir}/{name} is missing ({e})"));
            assert!(
                ours == copy,
                "plugins/sdk/wit/{dir}/{name} differs from wit/{dir}/{name}: copy wit/{dir} into plugins/sdk/wit/{dir}"
            );
        }
    }

    #[test]
    fn the_loader_picks_the_version_a_component_exports() {
        assert_eq!(spoken(["relocate:plugin/importer@0.1.0"]), Ok(v1::CONTRACT));
        assert_eq!(spoken(["wasi:cli/run@0.2.6", "relocate:plugin/importer@0.2.0"]), Ok(v2::CONTRACT));
        let refused = spoken(["relocate:plugin/importer@9.0.0"]).unwrap_err();
        assert!(refused.contains("`relocate:plugin/importer@9.0.0` (contract 9.0.0)"), "{refused}");
        assert!(refused.contains("supports 0.2.0 and 0.1.0"), "{refused}");
        let other = spoken(["wasi:cli/run@0.2.6"]).unwrap_err();
        assert!(other.contains("exports no `relocate:plugin/importer`, only `wasi:cli/run@0.2.6`"), "{other}");
        assert!(other.contains("supports contract versions 0.2.0 and 0.1.0"), "{other}");
        assert!(spoken([]).unwrap_err().contains("no `relocate:plugin/importer`, nor anything else"));
    }
}
