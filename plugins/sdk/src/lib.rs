//! Placeholder; the SDK lands with the first-party plugins.
