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

/// Whether one more job fits the connector's `share` of the org's daily
/// Bulk API batches (`GET /limits`: `DailyBulkApiBatches` `Max` and
/// `Remaining`; a job takes at least one batch). Without the entry, yes.
pub fn allowed(limits: &Value, share: f64) -> bool {
    let entry = &limits["DailyBulkApiBatches"];
    match (entry["Max"].as_u64(), entry["Remaining"].as_u64()) {
        (Some(max), Some(remaining)) => ((max.saturating_sub(remaining) + 1) as f64) <= share * max as f64,
        _ => true,
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
        assert!(allowed(&limits(15000), 0.8));
        assert!(allowed(&limits(3001), 0.8), "11,999 used: the 12,000th fits");
        assert!(!allowed(&limits(3000), 0.8), "12,000 used: at the share");
        assert!(allowed(&json!({}), 0.8));
    }
}
