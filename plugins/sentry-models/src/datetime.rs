//! Arithmetic on the datetimes a plugin sees: ISO 8601 UTC text such as
//! `2024-01-01T00:00:00.000Z` (the export's format and `Session::started_at`).
//!
//! A guest has no clock and no date library; the few computations Sentry's
//! import makes (`now + 30 days`, a token's issue time) need only the civil
//! calendar, done here with Howard Hinnant's day-count algorithms.

/// `datetime` moved by `days` whole days, in the same format; `None` when it
/// does not start with a `YYYY-MM-DD` date.
pub fn add_days(datetime: &str, days: i64) -> Option<String> {
    let (date, rest) = (datetime.get(..10)?, datetime.get(10..)?);
    let day = day_number(date)?.checked_add(days)?;
    let (y, m, d) = civil_from_days(day);
    Some(format!("{y:04}-{m:02}-{d:02}{rest}"))
}

/// Milliseconds since the Unix epoch; `None` unless `datetime` is
/// `YYYY-MM-DDTHH:MM:SS[.fff...]Z`. Digits past the milliseconds are cut.
///
/// Integers rather than floats: float parsing and printing would add tens of
/// kilobytes to every guest that calls this.
pub fn unix_millis(datetime: &str) -> Option<i64> {
    let day = day_number(datetime.get(..10)?)?;
    let time = datetime.get(10..)?.strip_prefix('T')?.strip_suffix('Z')?;
    let (hms, fraction) = time.split_once('.').unwrap_or((time, "0"));
    let mut parts = hms.split(':').map(|p| p.parse::<i64>().ok().filter(|_| p.len() == 2));
    let (Some(Some(h)), Some(Some(min)), Some(Some(s)), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return None;
    };
    if h > 23 || min > 59 || s > 60 || fraction.is_empty() || !fraction.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let millis: i64 = format!("{fraction:0<3}").get(..3)?.parse().ok()?;
    Some(((day * 86_400 + h * 3600 + min * 60 + s) * 1000) + millis)
}

/// Days since 1970-01-01 of a `YYYY-MM-DD` date.
fn day_number(date: &str) -> Option<i64> {
    let b = date.as_bytes();
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let num = |s: &str| s.bytes().all(|c| c.is_ascii_digit()).then(|| s.parse::<i64>().ok()).flatten();
    let (y, m, d) = (num(date.get(..4)?)?, num(date.get(5..7)?)?, num(date.get(8..)?)?);
    if !(1..=12).contains(&m) || d < 1 || d > days_in_month(y, m) {
        return None;
    }
    Some(days_from_civil(y, m, d))
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        2 if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thirty_days_cross_months_and_leap_years() {
        assert_eq!(add_days("2024-01-01T00:00:00.000Z", 30).as_deref(), Some("2024-01-31T00:00:00.000Z"));
        assert_eq!(add_days("2024-02-15T12:34:56.789Z", 30).as_deref(), Some("2024-03-16T12:34:56.789Z"));
        assert_eq!(add_days("2023-02-15T12:34:56.789Z", 30).as_deref(), Some("2023-03-17T12:34:56.789Z"));
        assert_eq!(add_days("2024-12-15T00:00:00Z", 30).as_deref(), Some("2025-01-14T00:00:00Z"));
        assert_eq!(add_days("not a date", 30), None);
        assert_eq!(add_days("2024-02-30T00:00:00Z", 1), None);
    }

    #[test]
    fn unix_millis_match_python() {
        // datetime(2024, 1, 1, tzinfo=UTC).timestamp() == 1704067200.0
        assert_eq!(unix_millis("2024-01-01T00:00:00.000Z"), Some(1_704_067_200_000));
        assert_eq!(unix_millis("1970-01-01T00:00:01.5Z"), Some(1_500));
        assert_eq!(unix_millis("1970-01-01T00:00:01.123456Z"), Some(1_123));
        assert_eq!(unix_millis("2023-06-22T22:59:55Z"), Some(1_687_474_795_000));
        assert_eq!(unix_millis("2023-06-22 22:59:55"), None);
        assert_eq!(unix_millis("2023-06-22T25:00:00Z"), None);
    }
}
