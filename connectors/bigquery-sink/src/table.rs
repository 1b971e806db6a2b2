//! What a table is created with besides its schema: time partitioning and
//! clustering, as the configuration gives them (`config.rs`) and as
//! `tables.insert` sends them (`rest.rs`).

/// Time partitioning granularity (`timePartitioningType`, V2's `partitioning.type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PartitionType {
    Hour,
    #[default]
    Day,
    Month,
    Year,
}

impl PartitionType {
    pub fn as_str(self) -> &'static str {
        match self {
            PartitionType::Hour => "HOUR",
            PartitionType::Day => "DAY",
            PartitionType::Month => "MONTH",
            PartitionType::Year => "YEAR",
        }
    }

    pub fn parse(s: &str) -> Option<PartitionType> {
        Some(match s.trim().to_ascii_uppercase().as_str() {
            "HOUR" => PartitionType::Hour,
            "DAY" => PartitionType::Day,
            "MONTH" => PartitionType::Month,
            "YEAR" => PartitionType::Year,
            _ => return None,
        })
    }
}

/// How a created table is partitioned by time.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TimePartitioning {
    pub kind: PartitionType,
    /// `timestampPartitionFieldName`: a TIMESTAMP/DATE column; `None` is
    /// ingestion-time partitioning (`_PARTITIONTIME`).
    pub field: Option<String>,
    /// `partitionExpirationMs`.
    pub expiration_ms: Option<i64>,
}

/// What a table is created with besides its schema.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TableOptions {
    pub time_partitioning: Option<TimePartitioning>,
    /// `clusteringPartitionFieldNames` (at most four columns).
    pub clustering: Vec<String>,
}
