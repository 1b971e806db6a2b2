//! The messages of `google.cloud.bigquery.storage.v1` this sink uses, as
//! prost structs written by hand from Google's published `.proto` files
//! (storage.proto, stream.proto, protobuf.proto; field numbers as there),
//! so the build needs no `protoc` (docs/decisions/0003-*.md). Fields the
//! sink never reads or sets are left out: prost skips unknown fields.

use prost_types::DescriptorProto;

#[derive(Clone, PartialEq, prost::Message)]
pub struct CreateWriteStreamRequest {
    /// `projects/{p}/datasets/{d}/tables/{t}`.
    #[prost(string, tag = "1")]
    pub parent: String,
    #[prost(message, optional, tag = "2")]
    pub write_stream: Option<WriteStream>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct WriteStream {
    #[prost(string, tag = "1")]
    pub name: String,
    /// [`StreamType`].
    #[prost(int32, tag = "2")]
    pub r#type: i32,
    /// Set once a PENDING stream is committed (BatchCommitWriteStreams);
    /// a stream is committed at most once.
    #[prost(message, optional, tag = "4")]
    pub commit_time: Option<prost_types::Timestamp>,
    /// The table's schema (CreateWriteStream answers it; GetWriteStream
    /// with the FULL view too).
    #[prost(message, optional, tag = "5")]
    pub table_schema: Option<StorageTableSchema>,
}

/// `google.cloud.bigquery.storage.v1.TableSchema` (table.proto).
#[derive(Clone, PartialEq, prost::Message)]
pub struct StorageTableSchema {
    #[prost(message, repeated, tag = "1")]
    pub fields: Vec<StorageTableField>,
}

/// `TableFieldSchema`: type and mode are table.proto's enums.
#[derive(Clone, PartialEq, prost::Message)]
pub struct StorageTableField {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(int32, tag = "2")]
    pub r#type: i32,
    #[prost(int32, tag = "3")]
    pub mode: i32,
    #[prost(message, repeated, tag = "4")]
    pub fields: Vec<StorageTableField>,
}

/// `WriteStream.Type`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(i32)]
pub enum StreamType {
    Committed = 1,
    Pending = 2,
    Buffered = 3,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct GetWriteStreamRequest {
    #[prost(string, tag = "1")]
    pub name: String,
    /// `WriteStreamView`: 1 BASIC, 2 FULL (with the table schema).
    #[prost(int32, tag = "3")]
    pub view: i32,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct AppendRowsRequest {
    #[prost(string, tag = "1")]
    pub write_stream: String,
    /// `google.protobuf.Int64Value`: absent appends at the end (the
    /// `_default` stream refuses an offset).
    #[prost(message, optional, tag = "2")]
    pub offset: Option<Int64Value>,
    /// The `rows` oneof's only member, `proto_rows`.
    #[prost(message, optional, tag = "4")]
    pub proto_rows: Option<ProtoData>,
    #[prost(string, tag = "6")]
    pub trace_id: String,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Int64Value {
    #[prost(int64, tag = "1")]
    pub value: i64,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct ProtoData {
    #[prost(message, optional, tag = "1")]
    pub writer_schema: Option<ProtoSchema>,
    #[prost(message, optional, tag = "2")]
    pub rows: Option<ProtoRows>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct ProtoSchema {
    #[prost(message, optional, tag = "1")]
    pub proto_descriptor: Option<DescriptorProto>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct ProtoRows {
    #[prost(bytes = "vec", repeated, tag = "1")]
    pub serialized_rows: Vec<Vec<u8>>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct AppendRowsResponse {
    /// `response` oneof: `append_result` (1).
    #[prost(message, optional, tag = "1")]
    pub append_result: Option<AppendResult>,
    /// `response` oneof: `error` (2), a `google.rpc.Status`.
    #[prost(message, optional, tag = "2")]
    pub error: Option<Status>,
    #[prost(message, repeated, tag = "4")]
    pub row_errors: Vec<RowError>,
    #[prost(string, tag = "5")]
    pub write_stream: String,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct AppendResult {
    #[prost(message, optional, tag = "1")]
    pub offset: Option<Int64Value>,
}

/// `google.rpc.Status` (details left out).
#[derive(Clone, PartialEq, prost::Message)]
pub struct Status {
    #[prost(int32, tag = "1")]
    pub code: i32,
    #[prost(string, tag = "2")]
    pub message: String,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct RowError {
    /// Index of the row in the request.
    #[prost(int64, tag = "1")]
    pub index: i64,
    #[prost(int32, tag = "2")]
    pub code: i32,
    #[prost(string, tag = "3")]
    pub message: String,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct FinalizeWriteStreamRequest {
    #[prost(string, tag = "1")]
    pub name: String,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct FinalizeWriteStreamResponse {
    #[prost(int64, tag = "1")]
    pub row_count: i64,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct BatchCommitWriteStreamsRequest {
    #[prost(string, tag = "1")]
    pub parent: String,
    #[prost(string, repeated, tag = "2")]
    pub write_streams: Vec<String>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct BatchCommitWriteStreamsResponse {
    #[prost(message, optional, tag = "1")]
    pub commit_time: Option<prost_types::Timestamp>,
    #[prost(message, repeated, tag = "2")]
    pub stream_errors: Vec<StorageError>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct StorageError {
    #[prost(int32, tag = "1")]
    pub code: i32,
    #[prost(string, tag = "2")]
    pub entity: String,
    #[prost(string, tag = "3")]
    pub error_message: String,
}
