//! The first-party plugin for every Sentry model that no dedicated plugin
//! serves: each record is inserted as it is, under a new pk, in the model's
//! only scope.
//!
//! Its models are not listed here. `sentry-models` derives them at build time
//! from Sentry's registry: every described model not in its
//! `data/special.txt` ([`sentry_models::GENERIC`]). Giving a model special
//! behaviour moves it out of this plugin by that one edit.

use relocate_plugin_sdk::{Model, ModelDesc, Result, Session, register_plugin};

/// The generic model at index `I` of [`sentry_models::GENERIC`].
pub struct Plain<const I: usize>;

impl<const I: usize> Model for Plain<I> {
    fn describe() -> ModelDesc {
        // `for_generic_models!` only names indices of GENERIC.
        sentry_models::GENERIC[I].desc()
    }

    fn new(_: &Session) -> Result<Self> {
        Ok(Self)
    }
}

/// Registers one `Plain<I>` per generic model.
macro_rules! register_generic {
    ($($i:literal),* $(,)?) => {
        register_plugin!("sentry-generic", [$(Plain<$i>),*]);
    };
}

sentry_models::for_generic_models!(register_generic);

#[cfg(test)]
mod tests;
