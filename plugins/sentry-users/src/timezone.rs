//! The time zone names a user's `timezone` option may hold.
//!
//! Sentry validates the option with its user-options serializer, whose
//! choices are pytz's zone names: the IANA database's zones and links. The
//! list is `data/timezones.txt`, taken from the tzdata package.

const NAMES: &str = include_str!("../data/timezones.txt");

/// Whether `name` is a time zone Sentry accepts (exactly, case included).
pub fn is_known(name: &str) -> bool {
    !name.is_empty() && !name.starts_with('#') && NAMES.lines().any(|line| line == name)
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
