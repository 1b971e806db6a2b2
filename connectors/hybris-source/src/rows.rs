//! The rows both read paths give: jdbc mode's queries ([`crate::db`]) and
//! odata mode's Integration API client ([`crate::odata`]) turn their results
//! into these, and the task ([`crate::source`]) builds records from them.
//!
//! Timestamps are text in one fixed format (`YYYY-MM-DDTHH:MM:SS.ffffff`,
//! the stored value, no zone): exact to the microsecond both ways, and
//! ordered as text the way they are as timestamps.

/// A keyset position: the last (modifiedTS, PK) read.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Cursor {
    pub ts: String,
    pub pk: i64,
    /// hybris.mode=odata: the row's integrationKey, its tie-break at equal
    /// modifiedtime (jdbc mode breaks ties by PK and leaves it `None`).
    pub key: Option<String>,
}

/// One changed item row.
#[derive(Debug, Clone)]
pub struct ChangeRow {
    pub cursor: Cursor,
    pub created_ts: Option<String>,
    pub modified_ms: i64,
    /// The whole row as a JSON object (lower-case column names).
    pub doc: serde_json::Map<String, serde_json::Value>,
}

/// One deletion marker.
#[derive(Debug, Clone)]
pub struct DeletionRow {
    pub cursor: Cursor,
    pub modified_ms: i64,
    pub item_pk: i64,
    pub business_key: String,
}
