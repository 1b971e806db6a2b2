//! BigQuery's REST API on the emulator, as the end-to-end tests use it:
//! datasets, the `orders` table they write, queries and a table's columns.
//! The emulator serves one call at a time on one DuckDB connection and
//! answers 500 ("connection is busy") to a concurrent one, which BigQuery
//! does not: every call here retries until it gets a real answer.

use std::time::Duration;

use serde_json::{json, Value};

use crate::{service_env, wait_until};

/// How long a call may keep meeting a busy emulator.
const BUSY: Duration = Duration::from_secs(300);

pub struct Bq {
    base: String,
    pub project: String,
}

impl Bq {
    /// The emulator `dev/services env` names (`BQ_REST_ENDPOINT`, `BQ_PROJECT`).
    pub fn new() -> Bq {
        let project = service_env("BQ_PROJECT");
        Bq { base: format!("{}/bigquery/v2/projects/{project}", service_env("BQ_REST_ENDPOINT")), project }
    }

    /// One POST under the project: (status, JSON body or null).
    pub fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
        let mut r = agent
            .post(&format!("{}{path}", self.base))
            .header("Content-Type", "application/json")
            .send(body.to_string())
            .unwrap_or_else(|e| panic!("POST {path}: {e}"));
        let status = r.status().as_u16();
        let text = r.body_mut().read_to_string().unwrap_or_default();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// Creates a dataset or table (409: an earlier attempt created it).
    pub fn create(&self, path: &str, body: &Value) {
        wait_until(&format!("POST {path} to succeed"), BUSY, || {
            let (code, reply) = self.post(path, body);
            assert!(matches!(code, 200 | 409 | 500), "POST {path}: {code} {reply}");
            (code != 500).then_some(())
        });
    }

    pub fn dataset(&self, dataset: &str) {
        self.create("/datasets", &json!({"datasetReference": {"projectId": self.project, "datasetId": dataset}}));
    }

    /// A dataset and an `orders` table partitioned by `created` and
    /// clustered by `customer`, with Confluent's Kafka metadata column.
    pub fn orders_table(&self, dataset: &str) {
        self.dataset(dataset);
        let fields = json!([
            {"name": "id", "type": "INTEGER", "mode": "REQUIRED"},
            {"name": "customer", "type": "STRING"},
            {"name": "amount", "type": "FLOAT"},
            {"name": "created", "type": "TIMESTAMP"},
            {"name": "kafka", "type": "RECORD", "fields": [{"name": "topic", "type": "STRING"},
                {"name": "partition", "type": "INTEGER"}, {"name": "offset", "type": "INTEGER"},
                {"name": "insertTime", "type": "TIMESTAMP"}]}
        ]);
        let table = json!({
            "tableReference": {"projectId": self.project, "datasetId": dataset, "tableId": "orders"},
            "schema": {"fields": fields},
            "timePartitioning": {"type": "DAY", "field": "created"},
            "clustering": {"fields": ["customer"]}
        });
        self.create(&format!("/datasets/{dataset}/tables"), &table);
    }

    /// Rows of a query (each a list of cell values).
    pub fn query(&self, sql: &str) -> Vec<Vec<Value>> {
        wait_until(&format!("an answer to {sql}"), BUSY, || {
            let (code, r) = self.post("/queries", &json!({"query": sql, "useLegacySql": false}));
            if code != 200 || r.get("errors").is_some() {
                return None;
            }
            let rows = r["rows"].as_array().cloned().unwrap_or_default();
            Some(rows.iter().map(|row| row["f"].as_array().unwrap().iter().map(|c| c["v"].clone()).collect()).collect())
        })
    }

    /// The `orders` table's columns as `name TYPE MODE`, as tables.get
    /// answers them.
    pub fn columns(&self, dataset: &str) -> Vec<String> {
        let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
        let url = format!("{}/datasets/{dataset}/tables/orders", self.base);
        let text = agent.get(&url).call().unwrap_or_else(|e| panic!("GET {url}: {e}")).body_mut().read_to_string();
        let table: Value = serde_json::from_str(&text.unwrap_or_default()).unwrap_or(Value::Null);
        let fields = table["schema"]["fields"].as_array().cloned().unwrap_or_default();
        fields
            .iter()
            .map(|f| {
                format!(
                    "{} {} {}",
                    f["name"].as_str().unwrap_or(""),
                    f["type"].as_str().unwrap_or(""),
                    f["mode"].as_str().unwrap_or("NULLABLE")
                )
            })
            .collect()
    }
}

impl Default for Bq {
    fn default() -> Self {
        Bq::new()
    }
}
