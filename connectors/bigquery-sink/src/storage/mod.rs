//! The Storage Write API client (google.cloud.bigquery.storage.v1) over tonic. Work in progress (issue 18).
