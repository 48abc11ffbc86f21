//! What the sandbox gives a plugin for each interface it may import; the
//! words for `relocate plugin inspect`. The sandbox itself is set up in
//! `state.rs` (WASI context) and `runtime.rs` (linker): keep this in step.

/// How the sandbox answers one imported interface.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// Works as the interface says.
    Granted,
    /// Linked, but answers with a fixed or replayable stand-in.
    Stubbed,
    /// Linked, but every use fails: there is nothing behind it.
    Denied,
    /// Not linked at all: a plugin that imports it does not load.
    Missing,
}

impl Access {
    pub fn as_str(self) -> &'static str {
        match self {
            Access::Granted => "granted",
            Access::Stubbed => "stubbed",
            Access::Denied => "denied",
            Access::Missing => "missing",
        }
    }
}

/// How the sandbox treats interface `import` (`wasi:cli/environment@0.2.6`),
/// and why, in a few words.
pub fn classify(import: &str) -> (Access, &'static str) {
    let (interface, version) = import.split_once('@').unwrap_or((import, ""));
    match interface {
        "relocate:plugin/host" | "relocate:plugin/types"
            if !super::SUPPORTED.iter().any(|contract| contract.version == version) =>
        {
            (Access::Missing, "a contract version relocate does not link")
        }
        "relocate:plugin/host" => (Access::Granted, "the relocate host: mappings, seeded random bytes, log"),
        "relocate:plugin/types" => (Access::Granted, "the contract's types"),
        "wasi:cli/stdout" | "wasi:cli/stderr" => (Access::Stubbed, "captured per call and logged at debug level"),
        "wasi:cli/stdin" => (Access::Stubbed, "closed: reads nothing"),
        "wasi:cli/environment" => (Access::Stubbed, "no variables, no arguments, no working directory"),
        "wasi:cli/exit" => (Access::Granted, "exiting ends the call as a failure"),
        "wasi:cli/terminal-input" | "wasi:cli/terminal-output" => (Access::Stubbed, "no terminal"),
        "wasi:cli/terminal-stdin" | "wasi:cli/terminal-stdout" | "wasi:cli/terminal-stderr" => {
            (Access::Stubbed, "no terminal")
        }
        "wasi:clocks/wall-clock" => (Access::Stubbed, "frozen at the import's start"),
        "wasi:clocks/monotonic-clock" => (Access::Stubbed, "virtual: sleeping returns at once"),
        "wasi:random/random" | "wasi:random/insecure" | "wasi:random/insecure-seed" => {
            (Access::Stubbed, "seeded per import and model: reproducible with --seed")
        }
        "wasi:io/error" | "wasi:io/poll" | "wasi:io/streams" => (Access::Granted, "streams and polling"),
        "wasi:filesystem/types" | "wasi:filesystem/preopens" => (Access::Denied, "no directories are opened"),
        _ if interface.starts_with("wasi:sockets/") => (Access::Denied, "no network"),
        _ => (Access::Missing, "relocate does not provide it"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wasi_versions_do_not_matter_but_contract_versions_do() {
        assert_eq!(classify("wasi:filesystem/preopens@0.2.6").0, Access::Denied);
        assert_eq!(classify("wasi:sockets/tcp@0.2.0").0, Access::Denied);
        assert_eq!(classify("wasi:clocks/wall-clock@0.2.6").0, Access::Stubbed);
        assert_eq!(classify("relocate:plugin/host@0.1.0").0, Access::Granted);
        assert_eq!(classify("relocate:plugin/types@0.2.0").0, Access::Granted);
        assert_eq!(classify("relocate:plugin/host@9.0.0").0, Access::Missing);
        assert_eq!(classify("wasi:http/outgoing-handler@0.2.0").0, Access::Missing);
    }
}
