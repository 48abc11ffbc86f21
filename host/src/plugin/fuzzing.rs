//! For the fuzz targets in `fuzz/` only, not an API: the contract's generated
//! types and the conversions that check everything a plugin returns, callable
//! without a wasm component. They are the very functions a plugin call goes
//! through; nothing here changes what is checked.

pub use super::v2::exports::relocate::plugin::importer::PluginInfo;
pub use super::v2::relocate::plugin::types as wit;
use super::{Answered, Decided, Prepared};
use crate::model::ModelDesc;

/// What loading a plugin makes of its `describe`: name, version and models.
pub fn describe(raw: PluginInfo) -> Result<(String, String, Vec<ModelDesc>), String> {
    super::v2::plugin_info_from_wit(raw)
}

/// What a session makes of `prepare`'s answer for a batch of `batch_len` records of `model`.
pub fn prepared(raw: Vec<wit::Prepared>, batch_len: usize, model: &ModelDesc) -> Result<Vec<Prepared>, String> {
    super::v2::prepared_from_wit(raw, batch_len, model).map_err(|v| v.message)
}

/// What a session makes of `resolve`'s answer to `answers`, for records of
/// `model`, from a plugin that describes `model` only and whose every answer
/// came from a find on `model` (the most a plugin may reuse).
pub fn decided(raw: Vec<wit::Decided>, answers: &[Answered], model: &ModelDesc) -> Result<Vec<Decided>, String> {
    let own = [model.name.clone()];
    // By batch index, as a session keeps them after `prepare`.
    let len = answers.iter().map(|a| a.index + 1).max().unwrap_or(0);
    let mut own_finds = vec![Vec::new(); len];
    for a in answers {
        own_finds[a.index] = vec![true; a.answers.len()];
    }
    super::v2::decided_from_wit(raw, answers, model, &own, &own_finds).map_err(|v| v.message)
}
