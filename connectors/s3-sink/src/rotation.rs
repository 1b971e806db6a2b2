//! When an object is closed. Pure functions so the decisions are unit-tested
//! apart from S3.

use crate::zone::Zone;

/// Record-time rotation (`rotate.interval.ms`), checked *before* a record is
/// written: a record this far past the object's first one starts the next
/// object. Deterministic: it depends on record times only.
pub fn due_before(interval_ms: Option<i64>, first_time: Option<i64>, time: Option<i64>) -> bool {
    match (interval_ms, first_time, time) {
        (Some(interval), Some(first), Some(t)) => t - first >= interval,
        _ => false,
    }
}

/// Size rotation, checked *after* a record is written: `flush.size` records
/// or `s3.object.max.bytes` uncompressed bytes.
pub fn due_after(records: u64, raw_bytes: u64, flush_size: u64, max_bytes: Option<u64>) -> bool {
    records >= flush_size || max_bytes.is_some_and(|m| raw_bytes >= m)
}

/// The wall-clock deadline of an object opened at `now_ms` under
/// `rotate.schedule.interval.ms`: the next interval boundary, aligned in the
/// configured timezone (so hourly objects close on the local hour).
pub fn schedule_deadline(now_ms: i64, interval_ms: i64, zone: &Zone) -> i64 {
    let local = now_ms + zone.offset_ms_at(now_ms);
    let next = (local.div_euclid(interval_ms) + 1) * interval_ms;
    let deadline = zone.local_to_utc(next);
    // Clocks going back can put that local boundary's first instant behind
    // us: then the one after it.
    if deadline > now_ms {
        deadline
    } else {
        zone.local_to_utc(next + interval_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_time_rotation_starts_the_next_object_at_the_interval() {
        assert!(!due_before(Some(1000), Some(5000), Some(5999)));
        assert!(due_before(Some(1000), Some(5000), Some(6000)));
        // Records without a time never rotate on time (and nothing rotates when off).
        assert!(!due_before(Some(1000), Some(5000), None));
        assert!(!due_before(Some(1000), None, Some(9999)));
        assert!(!due_before(None, Some(0), Some(i64::MAX)));
    }

    #[test]
    fn size_rotation_after_flush_size_records_or_max_bytes() {
        assert!(!due_after(2, 10, 3, None));
        assert!(due_after(3, 10, 3, None));
        assert!(due_after(1, 100, 3, Some(100)));
        assert!(!due_after(1, 99, 3, Some(100)));
    }

    #[test]
    fn schedule_deadlines_are_the_next_boundary_in_the_timezone() {
        let hour = 3_600_000;
        let utc = Zone::Fixed(0);
        assert_eq!(schedule_deadline(0, hour, &utc), hour);
        assert_eq!(
            schedule_deadline(hour, hour, &utc),
            2 * hour,
            "an object opened on a boundary gets a full interval"
        );
        // +05:30: local hours start at hh:30 UTC.
        assert_eq!(schedule_deadline(0, hour, &Zone::Fixed(5 * 3600 + 1800)), 1_800_000);
        let day = 24 * hour;
        assert_eq!(schedule_deadline(day - 1, day, &Zone::Fixed(-3600)), day + hour);
        // Berlin, 2024-10-27T00:30Z (02:30 local, summer time): the next local
        // hour, 03:00, is 02:00Z (clocks went back at 01:00Z).
        let berlin = Zone::Named(chrono_tz::Tz::Europe__Berlin);
        assert_eq!(schedule_deadline(1_729_989_000_000, hour, &berlin), 1_729_994_400_000);
        // Daily rotation the day clocks go forward: the next local midnight.
        assert_eq!(schedule_deadline(1_711_922_340_000, day, &berlin), 1_711_922_400_000);
    }
}
