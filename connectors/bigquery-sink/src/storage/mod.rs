//! A thin client of BigQuery's Storage Write API
//! (`google.cloud.bigquery.storage.v1.BigQueryWrite`) over tonic's generic
//! gRPC client and the hand-written messages of [`proto`].
//!
//! Plain HTTP/2 for an `http://` endpoint (the emulator), TLS with the web
//! PKI roots for `https://` (Google). Each call carries the
//! `x-goog-request-params` routing header Google asks direct gRPC users
//! for, and the `authorization` header when a token source is given.
//!
//! What an append's answer means is decided in [`classify_append`], a pure
//! function; the I/O around it is thin.

pub mod proto;

use std::{sync::Arc, time::Duration};

use connector_api::ConnectorError;
use prost_types::DescriptorProto;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{
    client::Grpc,
    codec::{ProstCodec, Streaming},
    transport::{Channel, ClientTlsConfig, Endpoint},
    Code, Request,
};

use proto::*;

use crate::schema::{FieldMode, FieldType, TableField, TableSchema};

/// Gives the `authorization` header value (`Bearer …`) for each call;
/// `refresh` asks for a new token after the server refused one.
pub type Authorization = Arc<dyn Fn(bool) -> Result<String, ConnectorError> + Send + Sync>;

const SERVICE: &str = "/google.cloud.bigquery.storage.v1.BigQueryWrite/";
/// Google's limit is 10 MB per AppendRowsRequest; the encoder stays below
/// this many bytes of rows per request.
pub const MAX_REQUEST_BYTES: usize = 9 * 1024 * 1024;

/// Why a call failed, in the terms the sink decides on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StorageError {
    /// The stream (or its table) does not exist any more: garbage-collected
    /// after a long stop, or the table was dropped.
    NotFound(String),
    /// Worth retrying later: UNAVAILABLE, RESOURCE_EXHAUSTED (quota, 429),
    /// INTERNAL, ABORTED, DEADLINE_EXCEEDED, a broken connection.
    Transient(String),
    /// Credentials refused: fix `keyfile` / `keySource`.
    Auth(String),
    /// Anything else (INVALID_ARGUMENT of a whole request, FAILED_PRECONDITION, …).
    Refused(String),
}

impl StorageError {
    pub fn from_status(what: &str, status: &tonic::Status) -> Self {
        Self::from_code(what, status.code(), status.message())
    }

    pub fn from_code(what: &str, code: Code, message: &str) -> Self {
        let text = format!("{what}: {code:?}: {message}");
        match code {
            Code::NotFound => StorageError::NotFound(text),
            Code::Unavailable
            | Code::ResourceExhausted
            | Code::Internal
            | Code::Aborted
            | Code::DeadlineExceeded
            | Code::Cancelled
            | Code::Unknown => StorageError::Transient(text),
            Code::Unauthenticated | Code::PermissionDenied => StorageError::Auth(text),
            _ => StorageError::Refused(text),
        }
    }

    pub fn message(&self) -> &str {
        match self {
            StorageError::NotFound(m)
            | StorageError::Transient(m)
            | StorageError::Auth(m)
            | StorageError::Refused(m) => m,
        }
    }

    /// The worker's kind: transient errors are retried with nothing
    /// committed meanwhile; credentials name the keys to fix.
    pub fn into_connector_error(self) -> ConnectorError {
        match self {
            StorageError::Transient(m) => ConnectorError::retriable(m),
            StorageError::Auth(m) => ConnectorError::config(format!(
                "{m}; BigQuery refused the credentials: check keyfile and keySource (the service account needs \
                 roles/bigquery.dataEditor on the dataset)"
            )),
            StorageError::NotFound(m) | StorageError::Refused(m) => ConnectorError::fatal(m),
        }
    }
}

/// What an append's answer means for the rows sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AppendOutcome {
    /// Every row landed (at `offset` on an explicit stream).
    Appended { offset: Option<i64> },
    /// Nothing landed: these rows (index in the request, BigQuery's
    /// reason) are bad; the others may be sent again without them.
    RowErrors(Vec<(usize, String)>),
    /// The offset was already written (by us earlier, or by a former owner
    /// of the partition): nothing of this request was appended.
    AlreadyExists(String),
    /// The offset is past the stream's end.
    OutOfRange(String),
    /// Anything else.
    Failed(StorageError),
}

/// Decides what an `AppendRowsResponse` says (pure).
pub fn classify_append(response: &AppendRowsResponse) -> AppendOutcome {
    if !response.row_errors.is_empty() {
        let mut rows: Vec<(usize, String)> =
            response.row_errors.iter().map(|e| (e.index.max(0) as usize, e.message.clone())).collect();
        rows.sort_by_key(|(i, _)| *i);
        return AppendOutcome::RowErrors(rows);
    }
    if let Some(status) = &response.error {
        return classify_status_code(Code::from_i32(status.code), &status.message);
    }
    AppendOutcome::Appended { offset: response.append_result.as_ref().and_then(|r| r.offset.as_ref()).map(|o| o.value) }
}

/// An append refused with a gRPC status (in the response or ending the stream).
pub fn classify_status_code(code: Code, message: &str) -> AppendOutcome {
    match code {
        Code::Ok => AppendOutcome::Appended { offset: None },
        Code::AlreadyExists => AppendOutcome::AlreadyExists(message.to_string()),
        Code::OutOfRange => AppendOutcome::OutOfRange(message.to_string()),
        code => AppendOutcome::Failed(StorageError::from_code("AppendRows", code, message)),
    }
}

/// The table schema a stream reports, in the REST shape the encoder takes
/// (table.proto's enums).
pub fn table_schema(s: &StorageTableSchema) -> TableSchema {
    TableSchema { fields: s.fields.iter().map(table_field).collect() }
}

fn table_field(f: &StorageTableField) -> TableField {
    let field_type = match f.r#type {
        2 => FieldType::Integer,
        3 => FieldType::Float,
        4 => FieldType::Record,
        5 => FieldType::Bytes,
        6 => FieldType::Boolean,
        7 => FieldType::Timestamp,
        8 => FieldType::Date,
        9 => FieldType::Time,
        10 => FieldType::DateTime,
        12 => FieldType::Numeric,
        13 => FieldType::BigNumeric,
        15 => FieldType::Json,
        // STRING, and what travels as text (GEOGRAPHY, INTERVAL, RANGE).
        _ => FieldType::String,
    };
    let mode = match f.mode {
        2 => FieldMode::Required,
        3 => FieldMode::Repeated,
        _ => FieldMode::Nullable,
    };
    TableField { name: f.name.clone(), field_type, mode, fields: f.fields.iter().map(table_field).collect() }
}

/// A connected client. Cheap to clone (the channel is shared).
#[derive(Clone)]
pub struct StorageClient {
    channel: Channel,
    authorization: Option<Authorization>,
}

impl std::fmt::Debug for StorageClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StorageClient").finish_non_exhaustive()
    }
}

impl StorageClient {
    /// Connects lazily to `endpoint` (`http://host:port` or `https://…`).
    pub fn new(endpoint: &str, authorization: Option<Authorization>) -> Result<Self, ConnectorError> {
        let bad = |e: &dyn std::fmt::Display| {
            ConnectorError::config(format!("bigquery.storage.endpoint: cannot use {endpoint:?}: {e}"))
        };
        let mut ep = Endpoint::from_shared(endpoint.to_string())
            .map_err(|e| bad(&e))?
            // No HTTP/2 keep-alive pings: gRPC servers answer unsolicited
            // pings with GOAWAY "too many pings" (the emulator does).
            .connect_timeout(Duration::from_secs(10));
        if endpoint.starts_with("https://") {
            ep = ep.tls_config(ClientTlsConfig::new().with_webpki_roots()).map_err(|e| bad(&e))?;
        }
        Ok(StorageClient { channel: ep.connect_lazy(), authorization })
    }

    fn request<T>(&self, message: T, params: &str, refresh: bool) -> Result<Request<T>, StorageError> {
        let mut request = Request::new(message);
        if let Ok(v) = params.parse() {
            request.metadata_mut().insert("x-goog-request-params", v);
        }
        if let Some(auth) = &self.authorization {
            let header = auth(refresh).map_err(|e| StorageError::Auth(e.message().to_string()))?;
            let value =
                header.parse().map_err(|_| StorageError::Auth("the access token is not a valid header".into()))?;
            request.metadata_mut().insert("authorization", value);
        }
        Ok(request)
    }

    async fn unary<Req, Resp>(&self, method: &'static str, message: Req, params: &str) -> Result<Resp, StorageError>
    where
        Req: prost::Message + Clone + Send + Sync + 'static,
        Resp: prost::Message + Default + Send + Sync + 'static,
    {
        let path: tonic::codegen::http::uri::PathAndQuery =
            format!("{SERVICE}{method}").parse().map_err(|_| StorageError::Refused(format!("bad method {method}")))?;
        let mut refresh = false;
        loop {
            let mut grpc = Grpc::new(self.channel.clone());
            grpc.ready().await.map_err(|e| StorageError::Transient(format!("{method}: cannot connect: {e}")))?;
            let request = self.request(message.clone(), params, refresh)?;
            match grpc.unary(request, path.clone(), ProstCodec::<Req, Resp>::default()).await {
                Ok(response) => return Ok(response.into_inner()),
                // One new token after a refusal, as the REST client does on 401.
                Err(s) if s.code() == Code::Unauthenticated && !refresh && self.authorization.is_some() => {
                    refresh = true
                }
                Err(s) => return Err(StorageError::from_status(method, &s)),
            }
        }
    }

    /// Creates a stream on `table` (`projects/{p}/datasets/{d}/tables/{t}`);
    /// returns it (name, and the table schema when the server sends it).
    pub async fn create_write_stream(&self, table: &str, kind: StreamType) -> Result<WriteStream, StorageError> {
        let request = CreateWriteStreamRequest {
            parent: table.to_string(),
            write_stream: Some(WriteStream { r#type: kind as i32, ..WriteStream::default() }),
        };
        let stream: WriteStream = self.unary("CreateWriteStream", request, &format!("parent={table}")).await?;
        if stream.name.is_empty() {
            return Err(StorageError::Refused(format!("CreateWriteStream on {table} answered no stream name")));
        }
        Ok(stream)
    }

    /// The stream, or `None` when it is gone.
    pub async fn get_write_stream(&self, name: &str) -> Result<Option<WriteStream>, StorageError> {
        match self
            .unary("GetWriteStream", GetWriteStreamRequest { name: name.to_string(), view: 2 }, &format!("name={name}"))
            .await
        {
            Ok(s) => Ok(Some(s)),
            Err(StorageError::NotFound(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    pub async fn finalize_write_stream(&self, name: &str) -> Result<i64, StorageError> {
        let r: FinalizeWriteStreamResponse = self
            .unary(
                "FinalizeWriteStream",
                FinalizeWriteStreamRequest { name: name.to_string() },
                &format!("name={name}"),
            )
            .await?;
        Ok(r.row_count)
    }

    pub async fn batch_commit(&self, table: &str, streams: Vec<String>) -> Result<(), StorageError> {
        let r: BatchCommitWriteStreamsResponse = self
            .unary(
                "BatchCommitWriteStreams",
                BatchCommitWriteStreamsRequest { parent: table.to_string(), write_streams: streams },
                &format!("parent={table}"),
            )
            .await?;
        if r.commit_time.is_none() || !r.stream_errors.is_empty() {
            let why: Vec<String> =
                r.stream_errors.iter().map(|e| format!("{}: {}", e.entity, e.error_message)).collect();
            return Err(StorageError::Refused(format!("BatchCommitWriteStreams on {table}: {}", why.join("; "))));
        }
        Ok(())
    }

    /// Opens an `AppendRows` connection to `stream`.
    pub async fn open_append(&self, stream: &str) -> Result<AppendConnection, StorageError> {
        let path: tonic::codegen::http::uri::PathAndQuery = format!("{SERVICE}AppendRows")
            .parse()
            .map_err(|_| StorageError::Refused("bad method AppendRows".into()))?;
        let mut grpc = Grpc::new(self.channel.clone());
        grpc.ready().await.map_err(|e| StorageError::Transient(format!("AppendRows: cannot connect: {e}")))?;
        let (tx, rx) = mpsc::channel::<AppendRowsRequest>(4);
        let request = self.request(ReceiverStream::new(rx), &format!("write_stream={stream}"), false)?;
        // The call starts with the first append: a server may send its
        // headers only after the first request (the emulator does), so
        // awaiting them before sending anything would wait forever.
        Ok(AppendConnection {
            stream: stream.to_string(),
            tx,
            start: Some((grpc, request, path)),
            responses: None,
            broken: false,
        })
    }
}

/// One `AppendRows` bidirectional stream: requests and answers in order,
/// one answer per request.
pub struct AppendConnection {
    stream: String,
    tx: mpsc::Sender<AppendRowsRequest>,
    start: Option<PendingCall>,
    responses: Option<Streaming<AppendRowsResponse>>,
    broken: bool,
}

type PendingCall = (Grpc<Channel>, Request<ReceiverStream<AppendRowsRequest>>, tonic::codegen::http::uri::PathAndQuery);

impl AppendConnection {
    pub fn stream(&self) -> &str {
        &self.stream
    }

    /// False once the server ended the connection: open a new one.
    pub fn is_usable(&self) -> bool {
        !self.broken
    }

    /// Appends `rows` at `offset` (None: at the end, for `_default`) and
    /// waits for the answer. The writer schema goes with every request:
    /// BigQuery reads it from the first only, the emulator wants the
    /// stream name on each (reference §2), and the schema is small.
    pub async fn append(
        &mut self,
        offset: Option<i64>,
        rows: Vec<Vec<u8>>,
        descriptor: &DescriptorProto,
    ) -> AppendOutcome {
        let request = AppendRowsRequest {
            write_stream: self.stream.clone(),
            offset: offset.map(|value| Int64Value { value }),
            proto_rows: Some(ProtoData {
                writer_schema: Some(ProtoSchema { proto_descriptor: Some(descriptor.clone()) }),
                rows: Some(ProtoRows { serialized_rows: rows }),
            }),
            trace_id: "sluice-bigquery-sink".into(),
        };
        if self.tx.send(request).await.is_err() {
            self.broken = true;
            return AppendOutcome::Failed(StorageError::Transient(format!(
                "AppendRows to {}: the connection closed",
                self.stream
            )));
        }
        if let Some((mut grpc, request, path)) = self.start.take() {
            match grpc.streaming(request, path, ProstCodec::<AppendRowsRequest, AppendRowsResponse>::default()).await {
                Ok(r) => self.responses = Some(r.into_inner()),
                Err(status) => {
                    self.broken = true;
                    return classify_status_code(status.code(), status.message());
                }
            }
        }
        let Some(responses) = self.responses.as_mut() else {
            self.broken = true;
            return AppendOutcome::Failed(StorageError::Transient(format!(
                "AppendRows to {}: not connected",
                self.stream
            )));
        };
        match responses.message().await {
            Ok(Some(response)) => classify_append(&response),
            Ok(None) => {
                self.broken = true;
                AppendOutcome::Failed(StorageError::Transient(format!(
                    "AppendRows to {}: the server ended the connection",
                    self.stream
                )))
            }
            Err(status) => {
                self.broken = true;
                classify_status_code(status.code(), status.message())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn response(error: Option<(i32, &str)>, row_errors: &[(i64, &str)], offset: Option<i64>) -> AppendRowsResponse {
        AppendRowsResponse {
            append_result: offset.map(|value| AppendResult { offset: Some(Int64Value { value }) }),
            error: error.map(|(code, message)| Status { code, message: message.into() }),
            row_errors: row_errors
                .iter()
                .map(|(index, message)| RowError { index: *index, code: 1, message: message.to_string() })
                .collect(),
            write_stream: "s".into(),
        }
    }

    #[test]
    fn answers_are_classified_as_the_api_documents_them() {
        assert_eq!(classify_append(&response(None, &[], Some(7))), AppendOutcome::Appended { offset: Some(7) });
        assert_eq!(classify_append(&response(None, &[], None)), AppendOutcome::Appended { offset: None });
        assert!(matches!(classify_append(&response(Some((6, "Offset 2 already committed")), &[], None)),
            AppendOutcome::AlreadyExists(m) if m.contains("already committed")));
        assert!(matches!(classify_append(&response(Some((11, "gap")), &[], None)), AppendOutcome::OutOfRange(_)));
        // Row errors win over the INVALID_ARGUMENT status that comes with them.
        assert_eq!(
            classify_append(&response(Some((3, "bad rows")), &[(4, "no such field: x"), (1, "invalid")], None)),
            AppendOutcome::RowErrors(vec![(1, "invalid".into()), (4, "no such field: x".into())])
        );
        for (code, transient) in [(14, true), (8, true), (13, true), (10, true), (3, false), (9, false)] {
            let outcome = classify_append(&response(Some((code, "x")), &[], None));
            assert_eq!(matches!(outcome, AppendOutcome::Failed(StorageError::Transient(_))), transient, "code {code}");
        }
        assert!(matches!(
            classify_append(&response(Some((5, "Stream not found")), &[], None)),
            AppendOutcome::Failed(StorageError::NotFound(_))
        ));
    }

    #[test]
    fn stream_schemas_map_to_table_schemas() {
        let f = |name: &str, t, mode, fields| StorageTableField { name: name.into(), r#type: t, mode, fields };
        let s = StorageTableSchema {
            fields: vec![
                f("id", 2, 2, vec![]),
                f("tags", 1, 3, vec![]),
                f("address", 4, 1, vec![f("city", 1, 0, vec![])]),
                f("at", 7, 1, vec![]),
                f("n", 12, 1, vec![]),
            ],
        };
        let t = table_schema(&s);
        let kinds: Vec<(FieldType, FieldMode)> = t.fields.iter().map(|f| (f.field_type, f.mode)).collect();
        assert_eq!(
            kinds,
            [
                (FieldType::Integer, FieldMode::Required),
                (FieldType::String, FieldMode::Repeated),
                (FieldType::Record, FieldMode::Nullable),
                (FieldType::Timestamp, FieldMode::Nullable),
                (FieldType::Numeric, FieldMode::Nullable)
            ]
        );
        assert_eq!(t.fields[2].fields[0].name, "city");
    }

    #[test]
    fn errors_become_the_workers_kinds() {
        use connector_api::ErrorKind;
        assert_eq!(StorageError::Transient("x".into()).into_connector_error().kind(), ErrorKind::Retriable);
        let auth = StorageError::Auth("denied".into()).into_connector_error();
        assert_eq!(auth.kind(), ErrorKind::Config);
        assert!(auth.message().contains("keyfile"));
        assert_eq!(StorageError::Refused("x".into()).into_connector_error().kind(), ErrorKind::Fatal);
    }
}
