//! The sink's decisions, as pure functions: which rows go in which request
//! (one version per key, ≤ 200 a request), what a per-record result means,
//! what a refused request means, and when the org's API allocation says to
//! pause.

use std::collections::HashMap;

use serde_json::{Map, Value};

use crate::mapping::{Op, Row};

/// One row of a request: the records folded into it (indices into the
/// put's batch, oldest first; the last is the latest version).
#[derive(Debug, Clone, PartialEq)]
pub struct Item {
    pub records: Vec<usize>,
    pub key: Option<String>,
    pub fields: Map<String, Value>,
}

/// One request's kind (its endpoint).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    /// `POST …/composite/sobjects`.
    Insert,
    /// `PATCH …/composite/sobjects` (by `Id`).
    Update,
    /// `PATCH …/composite/sobjects/{SObject}/{ExternalIdField}`.
    Upsert,
    /// `DELETE …/composite/sobjects?ids=…` (by `Id`).
    DeleteByIds,
    /// `DELETE …/sobjects/{SObject}/{ExternalIdField}/{value}`: one row.
    DeleteByExternalId,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Planned {
    pub kind: Kind,
    pub items: Vec<Item>,
}

/// Folds the rows of one put per key, in order, and cuts requests of at
/// most `batch` rows (a delete by External ID: one row a request).
///
/// Every key appears in one item only, so no request holds a key twice
/// (Salesforce refuses duplicate External IDs in one collection) and no two
/// requests of the put carry versions of one key: they may all be in flight
/// at once. Later versions are folded over earlier ones: an update's or
/// upsert's fields over the earlier fields (a partial update is not lost), a
/// delete replaces everything before it, a row after a delete starts over.
pub fn plan(rows: &[(usize, Row)], by_external_id: bool, batch: usize) -> Vec<Planned> {
    let mut order: Vec<(Kind, Item)> = Vec::new();
    let mut slot: HashMap<&str, usize> = HashMap::new();
    for (index, row) in rows {
        let Some(key) = row.key.as_deref().filter(|_| row.op != Op::Insert) else {
            order.push((Kind::Insert, Item { records: vec![*index], key: None, fields: row.fields.clone() }));
            continue;
        };
        let kind_of = |op: Op| match (op, by_external_id) {
            (Op::Delete, true) => Kind::DeleteByExternalId,
            (Op::Delete, false) => Kind::DeleteByIds,
            (Op::Upsert, _) => Kind::Upsert,
            _ => Kind::Update,
        };
        match slot.get(key) {
            None => {
                slot.insert(key, order.len());
                let item = Item { records: vec![*index], key: Some(key.to_string()), fields: row.fields.clone() };
                order.push((kind_of(row.op), item));
            }
            Some(&at) => {
                let (kind, item) = &mut order[at];
                item.records.push(*index);
                let previous = *kind;
                *kind = match (previous, row.op) {
                    (_, Op::Delete) => kind_of(Op::Delete),
                    (Kind::DeleteByIds | Kind::DeleteByExternalId, op) => kind_of(op),
                    (Kind::Upsert, _) | (_, Op::Upsert) => Kind::Upsert,
                    _ => Kind::Update,
                };
                let starts_over =
                    matches!(previous, Kind::DeleteByIds | Kind::DeleteByExternalId) || row.op == Op::Delete;
                if starts_over {
                    item.fields = row.fields.clone();
                } else {
                    for (name, value) in &row.fields {
                        item.fields.insert(name.clone(), value.clone());
                    }
                }
            }
        }
    }
    let mut by_kind: Vec<(Kind, Vec<Item>)> = Vec::new();
    for (kind, item) in order {
        match by_kind.iter_mut().find(|(k, _)| *k == kind) {
            Some((_, items)) => items.push(item),
            None => by_kind.push((kind, vec![item])),
        }
    }
    let mut planned = Vec::new();
    for (kind, items) in by_kind {
        let size = if kind == Kind::DeleteByExternalId { 1 } else { batch.max(1) };
        for chunk in items.chunks(size) {
            planned.push(Planned { kind, items: chunk.to_vec() });
        }
    }
    planned
}

/// Re-cuts the items to send again (rows whose records were locked) into
/// requests of one kind each.
pub fn replan(items: Vec<(Kind, Item)>, batch: usize) -> Vec<Planned> {
    let mut planned: Vec<Planned> = Vec::new();
    for (kind, item) in items {
        let size = if kind == Kind::DeleteByExternalId { 1 } else { batch.max(1) };
        match planned.iter_mut().find(|p| p.kind == kind && p.items.len() < size) {
            Some(p) => p.items.push(item),
            None => planned.push(Planned { kind, items: vec![item] }),
        }
    }
    planned
}

/// One error of a per-record result (`{"statusCode","message","fields"}`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub code: String,
    pub message: String,
    pub fields: Vec<String>,
}

impl ApiError {
    /// `CODE: message [fields: A, B]`: how the error travels in the routed
    /// record's `__connect.errors.exception.message` header.
    pub fn describe(&self) -> String {
        if self.fields.is_empty() {
            format!("{}: {}", self.code, self.message)
        } else {
            format!("{}: {} [fields: {}]", self.code, self.message, self.fields.join(", "))
        }
    }
}

/// The task's status message while it is paused for the org's API
/// allocation (`SinkContext::report_status`, shown in the REST status):
/// when it probes again, as a UTC time of day (the pause is at most
/// `salesforce.api.limit.probe.ms`, so a day never needs naming), and why.
pub fn pause_status(probe_at_epoch_secs: u64, why: &str) -> String {
    let s = probe_at_epoch_secs % 86_400;
    format!(
        "paused until {:02}:{:02}:{:02} UTC for the Salesforce API allocation, then one request probes it: {why}",
        s / 3600,
        s % 3600 / 60,
        s % 60
    )
}

/// The routed record's error details (header `__sluice.errors.target.<key>`,
/// docs/decisions/0043): the first error's code, message and fields
/// (comma-separated, as Salesforce names fields without commas), the error
/// that decided the route; every error stays in the exception message.
/// Fields only when Salesforce named some.
pub fn error_details(errors: &[ApiError]) -> Vec<(&'static str, String)> {
    let Some(first) = errors.first() else { return Vec::new() };
    let mut details = vec![("code", first.code.clone()), ("message", first.message.clone())];
    if !first.fields.is_empty() {
        details.push(("fields", first.fields.join(",")));
    }
    details
}

/// What becomes of a row after its result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Written,
    /// Send it again (a locked row, or our own duplicate): only this row.
    Again(String),
    /// The org refused the record for a business reason: rejected topic.
    Rejected(String),
    /// Any other refusal: the DLQ.
    Bad(String),
}

/// The verdict of one row's errors (none: written).
pub fn verdict(errors: &[ApiError], rejected_codes: &[String]) -> Verdict {
    let Some(first) = errors.first() else { return Verdict::Written };
    let all = errors.iter().map(ApiError::describe).collect::<Vec<_>>().join("; ");
    if errors.iter().any(|e| e.code == "UNABLE_TO_LOCK_ROW") {
        return Verdict::Again(all);
    }
    // Our own bug, not the record's: a collection held the External ID
    // twice. Sent again alone, it goes through.
    if errors.iter().any(|e| e.code == "DUPLICATE_VALUE" && e.message.starts_with("Duplicate external id specified")) {
        return Verdict::Again(all);
    }
    if rejected_codes.contains(&first.code) {
        Verdict::Rejected(all)
    } else {
        Verdict::Bad(all)
    }
}

/// Parses a per-record result array (`[{"id","success","errors":[…]},…]`).
pub fn results(body: &Value, expected: usize) -> Result<Vec<Vec<ApiError>>, String> {
    let Some(array) = body.as_array() else {
        return Err("the answer is not a JSON array of results".into());
    };
    if array.len() != expected {
        return Err(format!("the answer has {} results for {expected} records", array.len()));
    }
    Ok(array
        .iter()
        .map(|r| {
            if r["success"].as_bool() == Some(true) {
                return Vec::new();
            }
            let errors: Vec<ApiError> =
                r["errors"].as_array().map(|a| a.iter().map(api_error).collect()).unwrap_or_default();
            if errors.is_empty() {
                vec![ApiError { code: "UNKNOWN".into(), message: format!("not written: {r}"), fields: vec![] }]
            } else {
                errors
            }
        })
        .collect())
}

fn api_error(e: &Value) -> ApiError {
    ApiError {
        code: e["statusCode"].as_str().or_else(|| e["errorCode"].as_str()).unwrap_or("UNKNOWN").to_string(),
        message: e["message"].as_str().unwrap_or("").to_string(),
        fields: e["fields"]
            .as_array()
            .map(|f| f.iter().filter_map(|x| x.as_str().map(str::to_string)).collect())
            .unwrap_or_default(),
    }
}

/// What a refused request (not 2xx, after the client's retries) means.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The org's rolling 24-hour allocation is used up: pause.
    DailyLimit(String),
    /// Try the whole batch again later (concurrency limit, 5xx).
    Transient(String),
    /// The request as a whole is malformed because of what the rows hold
    /// (an unknown field, a value of the wrong type): every row to the DLQ.
    Rows(String),
    /// The credentials or the integration user's permissions.
    Access(String),
    /// The object or field does not exist, or the sink sent what it never
    /// should: the task fails.
    Fatal(String),
}

/// Classifies a refused request by its status and error body
/// (`[{"message","errorCode"}]`, REST API "Status Codes and Error Responses").
pub fn refusal(status: u16, body: &str) -> Refusal {
    let errors: Vec<ApiError> = serde_json::from_str::<Value>(body)
        .ok()
        .and_then(|v| v.as_array().map(|a| a.iter().map(api_error).collect()))
        .unwrap_or_default();
    let text = if errors.is_empty() {
        format!("HTTP {status}: {}", body.chars().take(300).collect::<String>())
    } else {
        format!("HTTP {status}: {}", errors.iter().map(ApiError::describe).collect::<Vec<_>>().join("; "))
    };
    let code = errors.first().map(|e| e.code.as_str()).unwrap_or("");
    match (status, code) {
        (403, "REQUEST_LIMIT_EXCEEDED") if text.contains("TotalRequests") => Refusal::DailyLimit(text),
        (403, "REQUEST_LIMIT_EXCEEDED") => Refusal::Transient(text),
        (401, _) => Refusal::Access(format!(
            "{text}: the token was refused even after renewing it; check salesforce.consumer.key and the \
             connected app's policies"
        )),
        (403, _) => Refusal::Access(format!(
            "{text}: the integration user lacks a permission (object and field access, API Enabled)"
        )),
        (404, _) => Refusal::Fatal(format!("{text}: check salesforce.object and salesforce.custom.id.field.name")),
        (400, "EXCEEDED_ID_LIMIT" | "INVALID_BATCH_SIZE" | "MALFORMED_QUERY") => {
            Refusal::Fatal(format!("{text}: the sink sent a request Salesforce does not take (a bug)"))
        }
        (400, _) => Refusal::Rows(text),
        (408 | 429 | 500..=599, _) => Refusal::Transient(text),
        _ => Refusal::Fatal(text),
    }
}

/// `Sforce-Limit-Info: api-usage=25/15000` → (used, allocation).
pub fn limit_info(header: &str) -> Option<(u64, u64)> {
    let usage = header.split(',').find_map(|part| part.trim().strip_prefix("api-usage="))?;
    let (used, max) = usage.split_once('/')?;
    Some((used.trim().parse().ok()?, max.trim().parse().ok()?))
}

/// Whether the connector has used its share of the daily allocation.
pub fn over_share(used: u64, allocation: u64, share: f64) -> bool {
    allocation > 0 && (used as f64) >= share * allocation as f64
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use serde_json::json;

    use super::*;

    fn row(op: Op, key: &str, fields: Value) -> Row {
        let Value::Object(fields) = fields else { panic!() };
        Row { op, key: (!key.is_empty()).then(|| key.to_string()), fields }
    }

    #[test]
    fn each_key_is_sent_once_per_put_with_its_latest_version_and_requests_stay_within_the_batch() {
        // 3 versions of 500 keys, interleaved as a topic delivers them.
        let mut rows = Vec::new();
        for version in 0..3 {
            for key in 0..500 {
                rows.push((
                    rows.len(),
                    row(Op::Upsert, &format!("C-{key}"), json!({"Ext__c": format!("C-{key}"), "v": version})),
                ));
            }
        }
        let planned = plan(&rows, true, 200);
        assert_eq!(planned.iter().map(|p| p.items.len()).collect::<Vec<_>>(), [200, 200, 100]);
        let mut seen = HashSet::new();
        for p in &planned {
            assert_eq!(p.kind, Kind::Upsert);
            for item in &p.items {
                assert!(seen.insert(item.key.clone()), "{:?} in two items", item.key);
                assert_eq!(item.fields["v"], 2, "the latest version");
                assert_eq!(item.records.len(), 3, "every version is answered by this row");
            }
        }
        assert_eq!(seen.len(), 500);
    }

    #[test]
    fn partial_updates_fold_and_deletes_start_over() {
        let rows = vec![
            (0, row(Op::Update, "A", json!({"Id": "A", "Name": "n1"}))),
            (1, row(Op::Update, "A", json!({"Id": "A", "Phone": "p2"}))),
            (2, row(Op::Upsert, "B", json!({"Name": "b1"}))),
            (3, row(Op::Delete, "B", json!({}))),
            (4, row(Op::Upsert, "B", json!({"Phone": "b3"}))),
            (5, row(Op::Delete, "C", json!({}))),
            (6, row(Op::Insert, "", json!({"Name": "new"}))),
            (7, row(Op::Insert, "", json!({"Name": "new"}))),
        ];
        let planned = plan(&rows, true, 200);
        let summary: Vec<(Kind, Vec<Vec<usize>>, Vec<Value>)> = planned
            .iter()
            .map(|p| {
                (
                    p.kind,
                    p.items.iter().map(|i| i.records.clone()).collect(),
                    p.items.iter().map(|i| Value::Object(i.fields.clone())).collect(),
                )
            })
            .collect();
        assert_eq!(
            summary,
            [
                (Kind::Update, vec![vec![0, 1]], vec![json!({"Id": "A", "Name": "n1", "Phone": "p2"})]),
                (Kind::Upsert, vec![vec![2, 3, 4]], vec![json!({"Phone": "b3"})]),
                (Kind::DeleteByExternalId, vec![vec![5]], vec![json!({})]),
                (Kind::Insert, vec![vec![6], vec![7]], vec![json!({"Name": "new"}), json!({"Name": "new"})]),
            ]
        );
    }

    #[test]
    fn deletes_by_id_are_batched_and_by_external_id_one_a_request() {
        let rows: Vec<(usize, Row)> = (0..5).map(|i| (i, row(Op::Delete, &format!("K{i}"), json!({})))).collect();
        assert_eq!(plan(&rows, false, 2).iter().map(|p| p.items.len()).collect::<Vec<_>>(), [2, 2, 1]);
        assert_eq!(plan(&rows, true, 2).len(), 5);
    }

    #[test]
    fn replanned_rows_keep_their_kind_and_the_batch_size() {
        let item = |k: &str| Item { records: vec![0], key: Some(k.into()), fields: Map::new() };
        let again = vec![
            (Kind::Upsert, item("a")),
            (Kind::Update, item("b")),
            (Kind::Upsert, item("c")),
            (Kind::Upsert, item("d")),
        ];
        let planned = replan(again, 2);
        let kinds: Vec<(Kind, usize)> = planned.iter().map(|p| (p.kind, p.items.len())).collect();
        assert_eq!(kinds, [(Kind::Upsert, 2), (Kind::Update, 1), (Kind::Upsert, 1)]);
    }

    #[test]
    fn per_record_errors_are_routed_by_code_and_our_duplicate_is_sent_again() {
        let codes: Vec<String> = crate::config::DEFAULT_REJECTED_CODES.split(',').map(str::to_string).collect();
        let e = |code: &str, message: &str| ApiError {
            code: code.into(),
            message: message.into(),
            fields: vec!["Email".into()],
        };
        assert_eq!(verdict(&[], &codes), Verdict::Written);
        assert!(matches!(
            verdict(&[e("UNABLE_TO_LOCK_ROW", "unable to obtain exclusive access")], &codes),
            Verdict::Again(_)
        ));
        assert!(matches!(
            verdict(&[e("DUPLICATE_VALUE", "Duplicate external id specified: C-1")], &codes),
            Verdict::Again(_)
        ));
        assert_eq!(
            verdict(&[e("DUPLICATE_VALUE", "duplicate value found: Email__c duplicates value on record with id: 003")], &codes),
            Verdict::Rejected("DUPLICATE_VALUE: duplicate value found: Email__c duplicates value on record with id: 003 [fields: Email]".into())
        );
        assert!(
            matches!(verdict(&[e("FIELD_CUSTOM_VALIDATION_EXCEPTION", "Email must be set")], &codes), Verdict::Rejected(m) if m.starts_with("FIELD_CUSTOM_VALIDATION_EXCEPTION: Email must be set"))
        );
        assert!(matches!(verdict(&[e("INVALID_FIELD", "No such column")], &codes), Verdict::Bad(_)));
    }

    #[test]
    fn the_pause_status_says_until_when_in_utc_and_why() {
        // 2026-12-02T07:59:05Z
        let at = 1_796_198_345;
        assert_eq!(
            pause_status(at, "the org has used 95 of its 100 daily API requests"),
            "paused until 07:59:05 UTC for the Salesforce API allocation, then one request probes it: the org has \
             used 95 of its 100 daily API requests"
        );
        assert!(pause_status(at - 7 * 3600 - 59 * 60 - 5, "x").starts_with("paused until 00:00:00 UTC"));
    }

    #[test]
    fn the_deciding_error_gives_the_details_and_fields_only_when_named() {
        let errors = [
            ApiError {
                code: "FIELD_CUSTOM_VALIDATION_EXCEPTION".into(),
                message: "Email must be a valid address".into(),
                fields: vec!["Email".into(), "Email_2__c".into()],
            },
            ApiError { code: "OTHER".into(), message: "second".into(), fields: vec![] },
        ];
        assert_eq!(
            error_details(&errors),
            [
                ("code", "FIELD_CUSTOM_VALIDATION_EXCEPTION".to_string()),
                ("message", "Email must be a valid address".to_string()),
                ("fields", "Email,Email_2__c".to_string())
            ]
        );
        assert_eq!(error_details(&errors[1..]), [("code", "OTHER".to_string()), ("message", "second".to_string())]);
        assert_eq!(error_details(&[]), []);
    }

    #[test]
    fn results_are_read_in_order_and_a_count_mismatch_is_an_error() {
        let body = json!([
            {"id": "003A", "success": true, "errors": [], "created": true},
            {"success": false, "errors": [{"statusCode": "REQUIRED_FIELD_MISSING", "message": "Required fields are missing: [LastName]", "fields": ["LastName"]}]}
        ]);
        let read = results(&body, 2).unwrap();
        assert!(read[0].is_empty());
        assert_eq!(
            read[1][0].describe(),
            "REQUIRED_FIELD_MISSING: Required fields are missing: [LastName] [fields: LastName]"
        );
        assert!(results(&body, 3).unwrap_err().contains("2 results for 3 records"));
    }

    #[test]
    fn refused_requests_are_told_apart() {
        let daily = r#"[{"message":"TotalRequests Limit exceeded.","errorCode":"REQUEST_LIMIT_EXCEEDED"}]"#;
        assert!(matches!(refusal(403, daily), Refusal::DailyLimit(_)));
        let concurrent =
            r#"[{"message":"ConcurrentPerOrgLongTxn Limit exceeded.","errorCode":"REQUEST_LIMIT_EXCEEDED"}]"#;
        assert!(matches!(refusal(403, concurrent), Refusal::Transient(_)));
        let field = r#"[{"message":"No such column 'Foo__c' on sobject of type Contact","errorCode":"INVALID_FIELD"}]"#;
        assert!(matches!(refusal(400, field), Refusal::Rows(m) if m.contains("Foo__c")));
        assert!(matches!(
            refusal(401, r#"[{"message":"Session expired or invalid","errorCode":"INVALID_SESSION_ID"}]"#),
            Refusal::Access(_)
        ));
        assert!(matches!(refusal(404, "[]"), Refusal::Fatal(m) if m.contains("salesforce.object")));
        assert!(matches!(refusal(503, "busy"), Refusal::Transient(_)));
    }

    #[test]
    fn the_limit_header_is_read_and_the_share_is_honoured() {
        assert_eq!(limit_info("api-usage=25/15000"), Some((25, 15000)));
        assert_eq!(limit_info("per-app-api-usage=2/250(appName=x), api-usage=7/100"), Some((7, 100)));
        assert_eq!(limit_info("garbage"), None);
        assert!(!over_share(79, 100, 0.8));
        assert!(over_share(80, 100, 0.8));
        assert!(!over_share(5, 0, 0.8));
    }
}
