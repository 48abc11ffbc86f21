//! Test guest: a component built against a contract version relocate does
//! not support, `relocate:plugin@9.0.0` (its own `wit/`). Loading it must fail
//! with one line naming 9.0.0 and the versions the host links.

wit_bindgen::generate!({ path: "wit", world: "plugin" });

struct Plugin;

impl exports::relocate::plugin::importer::Guest for Plugin {
    fn describe() -> String {
        "from the future".into()
    }
}

export!(Plugin);
