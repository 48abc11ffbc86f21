//! The time zone names a user's `timezone` option may hold.
//!
//! Sentry validates the option with its user-options serializer, whose
//! choices are pytz's zone names: the IANA database's zones and links. The
//! list is `data/timezones.txt`, taken from the tzdata package.

use std::collections::HashSet;
use std::sync::LazyLock;

const NAMES: &str = include_str!("../data/timezones.txt");

/// The names, as a set: every user's options ask.
static KNOWN: LazyLock<HashSet<&'static str>> =
    LazyLock::new(|| NAMES.lines().filter(|line| !line.is_empty() && !line.starts_with('#')).collect());

/// Whether `name` is a time zone Sentry accepts (exactly, case included).
pub fn is_known(name: &str) -> bool {
    KNOWN.contains(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zones_and_links_are_known() {
        for name in ["Europe/Vienna", "UTC", "America/New_York", "US/Pacific", "Asia/Kolkata"] {
            assert!(is_known(name), "{name}");
        }
    }

    #[test]
    fn made_up_or_miscased_names_are_not() {
        for name in ["MiddleEarth/Gondor", "europe/vienna", "", "# IANA time zone names"] {
            assert!(!is_known(name), "{name}");
        }
    }
}
