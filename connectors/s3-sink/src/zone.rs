//! The `timezone` of path formats and scheduled rotation: UTC, a fixed
//! offset, or a named IANA zone (`Europe/Berlin`, as Confluent's connector
//! takes Joda zone ids) with its daylight-saving rules.

use chrono::{DateTime, LocalResult, NaiveDateTime, Offset, TimeZone};
use chrono_tz::Tz;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Zone {
    /// Seconds east of UTC.
    Fixed(i32),
    Named(Tz),
}

impl Zone {
    /// `UTC`/`GMT`/`Z`, a fixed offset `±HH:MM` (also `UTC+02:00`), or an
    /// IANA zone id.
    pub fn parse(value: &str) -> Result<Zone, String> {
        let v = value.trim();
        if let Some(offset) = fixed_offset(v) {
            return offset.map(Zone::Fixed);
        }
        v.parse::<Tz>().map(Zone::Named).map_err(|_| {
            format!(
                "Invalid value {value}: supported values are UTC, Z, a fixed offset like +02:00 or -0530, or an \
                 IANA zone id like Europe/Berlin"
            )
        })
    }

    /// The zone's offset from UTC at instant `utc_ms`, in milliseconds.
    pub fn offset_ms_at(&self, utc_ms: i64) -> i64 {
        match self {
            Zone::Fixed(secs) => *secs as i64 * 1000,
            Zone::Named(tz) => DateTime::from_timestamp_millis(utc_ms)
                .map(|t| tz.offset_from_utc_datetime(&t.naive_utc()).fix().local_minus_utc() as i64 * 1000)
                .unwrap_or(0),
        }
    }

    /// The wall-clock time at instant `utc_ms`.
    pub fn local(&self, utc_ms: i64) -> Option<NaiveDateTime> {
        DateTime::from_timestamp_millis(utc_ms + self.offset_ms_at(utc_ms)).map(|t| t.naive_utc())
    }

    /// The instant of wall-clock time `local_ms` (milliseconds since the
    /// local epoch), as Joda's non-strict `convertLocalToUTC`: a time that
    /// occurs twice (clocks going back) is its first instant; a time that
    /// never occurs (clocks going forward) is moved forward by the gap.
    pub fn local_to_utc(&self, local_ms: i64) -> i64 {
        let Zone::Named(tz) = self else { return local_ms - self.offset_ms_at(local_ms) };
        let naive = DateTime::from_timestamp_millis(local_ms).map(|t| t.naive_utc());
        match naive.map(|n| tz.from_local_datetime(&n)) {
            Some(LocalResult::Single(t)) | Some(LocalResult::Ambiguous(t, _)) => t.timestamp_millis(),
            // In a gap: the offset before it, which lands after it.
            _ => local_ms - self.offset_ms_at(local_ms - self.offset_ms_at(local_ms)),
        }
    }
}

/// `Some` when `v` is written as UTC or an offset (`Some(Err)` if that
/// offset is malformed), `None` when it may be a zone id.
fn fixed_offset(v: &str) -> Option<Result<i32, String>> {
    let rest = v.strip_prefix("UTC").or_else(|| v.strip_prefix("GMT")).unwrap_or(v);
    if rest.is_empty() || rest == "Z" {
        return Some(Ok(0));
    }
    let (sign, digits) = match rest.as_bytes().first() {
        Some(b'+') => (1, &rest[1..]),
        Some(b'-') => (-1, &rest[1..]),
        _ => return None,
    };
    let err = || format!("Invalid value {v}: a fixed offset is written like +02:00 or -0530 (hours up to 18)");
    let digits: String = digits.chars().filter(|c| *c != ':').collect();
    if !digits.chars().all(|c| c.is_ascii_digit()) || !(digits.len() == 2 || digits.len() == 4) {
        return Some(Err(err()));
    }
    let number = |s: &str| s.parse::<i32>().map_err(|_| err());
    let parsed = number(&digits[..2]).and_then(|h| {
        let m = if digits.len() == 4 { number(&digits[2..])? } else { 0 };
        if h > 18 || m > 59 {
            Err(err())
        } else {
            Ok(sign * (h * 3600 + m * 60))
        }
    });
    Some(parsed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_offsets_and_names() {
        assert_eq!(Zone::parse("UTC"), Ok(Zone::Fixed(0)));
        assert_eq!(Zone::parse("Z"), Ok(Zone::Fixed(0)));
        assert_eq!(Zone::parse("+02:00"), Ok(Zone::Fixed(7200)));
        assert_eq!(Zone::parse("UTC-0530"), Ok(Zone::Fixed(-(5 * 3600 + 30 * 60))));
        assert_eq!(Zone::parse("Europe/Berlin"), Ok(Zone::Named(Tz::Europe__Berlin)));
        assert!(Zone::parse("+25:00").unwrap_err().contains("+02:00"));
        assert!(Zone::parse("Mars/Olympus").unwrap_err().contains("Europe/Berlin"));
    }

    #[test]
    fn named_zones_follow_daylight_saving() {
        let berlin = Zone::Named(Tz::Europe__Berlin);
        // 2024-01-15T12:00Z (winter, +1) and 2024-07-15T12:00Z (summer, +2).
        assert_eq!(berlin.offset_ms_at(1_705_320_000_000), 3_600_000);
        assert_eq!(berlin.offset_ms_at(1_721_044_800_000), 7_200_000);
        // 2024-10-27 02:30 local happens twice (03:00 → 02:00): the first is 00:30Z.
        let twice = 1_729_996_200_000; // 2024-10-27T02:30 as local ms
        assert_eq!(berlin.local_to_utc(twice), twice - 7_200_000);
        // 2024-03-31 02:30 local never happens (02:00 → 03:00): 01:30Z, shown as 03:30.
        let never = 1_711_852_200_000; // 2024-03-31T02:30 as local ms
        assert_eq!(berlin.local_to_utc(never), never - 3_600_000);
    }
}
