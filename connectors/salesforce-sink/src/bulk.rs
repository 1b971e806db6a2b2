//! Bulk API 2.0 pieces that are pure: the CSV a job uploads (relationship
//! columns `Parent__r.Field__c`, nulls as `#N/A`), reading result CSVs, the
//! error code of `sf__Error`, and what the durable note says about jobs.

use std::collections::BTreeSet;

use serde_json::{Map, Value};

use crate::plan::ApiError;

/// The CSV of rows: a header of every column any row has (in first-seen
/// order), one line per row, LF line endings, fields quoted when needed.
pub fn csv(rows: &[&Map<String, Value>]) -> String {
    let mut columns: Vec<String> = Vec::new();
    let flat: Vec<Vec<(String, Option<String>)>> = rows.iter().map(|r| flatten(r)).collect();
    for row in &flat {
        for (c, _) in row {
            if !columns.contains(c) {
                columns.push(c.clone());
            }
        }
    }
    let mut out = columns.iter().map(|c| quote(c)).collect::<Vec<_>>().join(",");
    out.push('\n');
    for row in &flat {
        let line: Vec<String> = columns
            .iter()
            .map(|c| match row.iter().find(|(name, _)| name == c) {
                // Absent in this row: left empty (unchanged on update).
                None => String::new(),
                // An explicit null: Bulk API 2.0's `#N/A` clears the field.
                Some((_, None)) => "#N/A".to_string(),
                Some((_, Some(v))) => quote(v),
            })
            .collect();
        out.push_str(&line.join(","));
        out.push('\n');
    }
    out
}

fn flatten(row: &Map<String, Value>) -> Vec<(String, Option<String>)> {
    let mut out = Vec::new();
    for (name, value) in row {
        match value {
            Value::Object(parent) => {
                for (field, v) in parent {
                    out.push((format!("{name}.{field}"), text(v)));
                }
            }
            v => out.push((name.clone(), text(v))),
        }
    }
    out
}

fn text(v: &Value) -> Option<String> {
    match v {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    }
}

fn quote(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) || s.is_empty() {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// Parses CSV (RFC 4180: quoted fields, doubled quotes) into a header and rows.
pub fn parse_csv(text: &str) -> (Vec<String>, Vec<Vec<String>>) {
    let mut records: Vec<Vec<String>> = Vec::new();
    let mut field = String::new();
    let mut record: Vec<String> = Vec::new();
    let mut quoted = false;
    let mut chars = text.chars().peekable();
    let mut any = false;
    while let Some(c) = chars.next() {
        any = true;
        match (quoted, c) {
            (true, '"') if chars.peek() == Some(&'"') => {
                chars.next();
                field.push('"');
            }
            (true, '"') => quoted = false,
            (true, c) => field.push(c),
            (false, '"') => quoted = true,
            (false, ',') => record.push(std::mem::take(&mut field)),
            (false, '\r') => {}
            (false, '\n') => {
                record.push(std::mem::take(&mut field));
                records.push(std::mem::take(&mut record));
                any = false;
            }
            (false, c) => field.push(c),
        }
    }
    if any {
        record.push(field);
        records.push(record);
    }
    let mut iter = records.into_iter();
    let header = iter.next().unwrap_or_default();
    (header, iter.collect())
}

/// `sf__Error` (`CODE:message:fields --`) as an error.
pub fn bulk_error(text: &str) -> ApiError {
    let (code, rest) = text.split_once(':').unwrap_or(("UNKNOWN", text));
    let rest = rest.trim_end_matches("--").trim();
    let (message, fields) = match rest.rsplit_once(':') {
        Some((m, f)) if !f.trim().is_empty() && !f.contains(' ') => {
            (m.to_string(), f.split(',').map(|x| x.trim().to_string()).collect())
        }
        _ => (rest.to_string(), Vec::new()),
    };
    ApiError { code: code.trim().to_string(), message, fields }
}

/// The note of a partition: the Bulk jobs it names (`bulk:job=<id>,<id>`).
pub fn note(jobs: &BTreeSet<String>) -> String {
    format!("bulk:job={}", jobs.iter().cloned().collect::<Vec<_>>().join(","))
}

/// The job ids a note names (none for anything else).
pub fn jobs_in(note: &str) -> BTreeSet<String> {
    note.strip_prefix("bulk:job=")
        .map(|ids| ids.split(',').filter(|s| !s.is_empty()).map(str::to_string).collect())
        .unwrap_or_default()
}

/// Bulk API 2.0 cuts an upload into internal batches of at most this many
/// records, each counted against the org's daily batches.
pub const RECORDS_PER_BATCH: u64 = 10_000;

/// The daily batches a job of `rows` rows costs.
pub fn batches_for(rows: usize) -> u64 {
    (rows as u64).div_ceil(RECORDS_PER_BATCH).max(1)
}

/// Whether a job of `rows` rows may start, from the org's 24-hour Bulk
/// allocation (`GET /limits`: `DailyBulkApiBatches` `Max` and `Remaining`,
/// shared with Bulk API 1.0 and every other client).
#[derive(Debug, Clone, PartialEq)]
pub enum BulkPace {
    /// It fits within the connector's share.
    Job { batches: u64 },
    /// It would pass the share: the rows go through sObject Collections.
    Collections { reason: String },
}

/// Paces a job of `rows` rows against the connector's `share` of the org's
/// daily Bulk API 2.0 allocation. The 150,000,000 records a rolling 24 hours
/// are that allocation counted in records: 15,000 batches of at most
/// 10,000 records, and `/limits` reports only the batches (no records
/// entry), so a job counts its records as `⌈rows / 10,000⌉` batches.
/// Without the entry (an org or proxy that hides it), the job starts.
pub fn pace(limits: &Value, share: f64, rows: usize) -> BulkPace {
    let entry = &limits["DailyBulkApiBatches"];
    let batches = batches_for(rows);
    let (Some(max), Some(remaining)) = (entry["Max"].as_u64(), entry["Remaining"].as_u64()) else {
        return BulkPace::Job { batches };
    };
    let used = max.saturating_sub(remaining);
    let allowed = (share * max as f64).floor() as u64;
    if used + batches <= allowed {
        return BulkPace::Job { batches };
    }
    BulkPace::Collections {
        reason: format!(
            "a Bulk API 2.0 job of {rows} rows takes {batches} of the org's daily batches ({} records each); \
             {used} of {max} are used in the last 24 hours and salesforce.api.limit.share={share} allows {allowed} \
             (the daily {} records)",
            RECORDS_PER_BATCH,
            allowed * RECORDS_PER_BATCH
        ),
    }
}

/// Whether a job in `state` may still write.
pub fn unfinished(state: &str) -> bool {
    matches!(state, "Open" | "UploadComplete" | "InProgress")
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn rows_become_csv_with_relationship_columns_nulls_and_quoting() {
        let a = json!({"Ext__c": "C-1", "Name": "Ng, \"Al\"", "Phone": null, "Account__r": {"Code__c": "A-1"}});
        let b = json!({"Ext__c": "C-2", "Name": "Bo"});
        let (Value::Object(a), Value::Object(b)) = (a, b) else { panic!() };
        let text = csv(&[&a, &b]);
        assert_eq!(text, "Account__r.Code__c,Ext__c,Name,Phone\nA-1,C-1,\"Ng, \"\"Al\"\"\",#N/A\n,C-2,Bo,\n");
        let (header, rows) = parse_csv(&text);
        assert_eq!(header, ["Account__r.Code__c", "Ext__c", "Name", "Phone"]);
        assert_eq!(rows[0], ["A-1", "C-1", "Ng, \"Al\"", "#N/A"]);
        assert_eq!(rows[1], ["", "C-2", "Bo", ""]);
    }

    #[test]
    fn bulk_errors_and_notes_are_read() {
        let e = bulk_error("FIELD_CUSTOM_VALIDATION_EXCEPTION:Email must be a valid address:Email --");
        assert_eq!(e.describe(), "FIELD_CUSTOM_VALIDATION_EXCEPTION: Email must be a valid address [fields: Email]");
        assert_eq!(
            bulk_error("UNABLE_TO_LOCK_ROW:unable to obtain exclusive access to this record:--").code,
            "UNABLE_TO_LOCK_ROW"
        );
        let jobs: BTreeSet<String> = ["750A".to_string(), "750B".to_string()].into();
        assert_eq!(jobs_in(&note(&jobs)), jobs);
        assert!(jobs_in("sfmc:request=x").is_empty());
        assert!(unfinished("UploadComplete") && !unfinished("JobComplete") && !unfinished("Aborted"));
    }

    #[test]
    fn a_job_starts_only_within_the_share_of_the_daily_bulk_batches() {
        let limits = |remaining: u64| json!({"DailyBulkApiBatches": {"Max": 15000, "Remaining": remaining}});
        assert_eq!(pace(&limits(15000), 0.8, 1), BulkPace::Job { batches: 1 });
        assert_eq!(pace(&limits(3001), 0.8, 500), BulkPace::Job { batches: 1 }, "11,999 used: the 12,000th fits");
        assert!(matches!(pace(&limits(3000), 0.8, 500), BulkPace::Collections { .. }), "12,000 used: at the share");
        assert_eq!(pace(&json!({}), 0.8, 25_000), BulkPace::Job { batches: 3 });
    }

    #[test]
    fn a_job_counts_its_records_as_batches_of_ten_thousand() {
        assert_eq!((batches_for(0), batches_for(1), batches_for(10_000)), (1, 1, 1));
        assert_eq!((batches_for(10_001), batches_for(150_000)), (2, 15));
        let limits = |remaining: u64| json!({"DailyBulkApiBatches": {"Max": 15000, "Remaining": remaining}});
        // 11,998 used of a 12,000 share: two batches left, 20,000 records.
        assert_eq!(pace(&limits(3002), 0.8, 20_000), BulkPace::Job { batches: 2 });
        let BulkPace::Collections { reason } = pace(&limits(3002), 0.8, 20_001) else {
            panic!("20,001 rows take three batches")
        };
        assert!(reason.contains("20001 rows takes 3 of the org's daily batches"), "{reason}");
        assert!(reason.contains("11998 of 15000 are used") && reason.contains("allows 12000"), "{reason}");
        // The whole 24-hour allowance of 150,000,000 records, and one more.
        assert_eq!(pace(&limits(15000), 1.0, 150_000_000), BulkPace::Job { batches: 15000 });
        assert!(matches!(pace(&limits(15000), 1.0, 150_000_001), BulkPace::Collections { .. }));
    }
}
