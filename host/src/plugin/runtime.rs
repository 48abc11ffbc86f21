//! (Being written.)
/// Loads plugins and opens sessions.
pub struct PluginHost;
/// One model's plugin instance.
pub struct Session;
