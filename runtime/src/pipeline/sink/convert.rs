//! What the plugin is handed for a consumed record: borrowed bytes when no
//! transform runs and converters at most check them (`view`), an owned
//! record after converters and transforms otherwise (`transform`).

use connector_api::ConnectorError;
use rdkafka::message::{BorrowedMessage, Headers, Message};

use crate::{
    connector_config::RuntimeConfig,
    converter::{Converter, Part},
    transform::Record,
};

/// A consumed record after converters and transforms, owned: built only
/// when transforms or an envelope-unwrapping converter are configured.
pub(super) struct Transformed {
    pub topic: String,
    pub timestamp: Option<i64>,
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    pub headers: Vec<(String, Option<Vec<u8>>)>,
    /// The converter's schemas (Kafka Connect JSON), kept only when no
    /// transform of the chain rewrites keys or values.
    pub key_schema: Option<String>,
    pub value_schema: Option<String>,
}

/// `Ok(None)`: a transform dropped the record; `Err`: a bad record with its stage.
pub(super) type Converted = Result<Option<Transformed>, (ConnectorError, &'static str)>;

pub(super) fn at(m: &BorrowedMessage<'_>) -> String {
    format!("topic {} partition {} offset {}", m.topic(), m.partition(), m.offset())
}

/// The converter of a record's key or value, and the bad-record error (with
/// its stage) a conversion failure becomes.
fn converter_for(runtime: &RuntimeConfig, part: Part) -> Converter {
    if part == Part::Key {
        runtime.key_converter
    } else {
        runtime.value_converter
    }
}

fn conversion_failed(m: &BorrowedMessage<'_>, part: Part, e: impl std::fmt::Display) -> (ConnectorError, &'static str) {
    let message = format!("{e}; record at {}; fix the producer or set {}.converter to match", at(m), part.name());
    (ConnectorError::bad_record(message), part.stage())
}

pub(super) fn transform(runtime: &RuntimeConfig, m: &BorrowedMessage<'_>) -> Converted {
    let convert = |part: Part, bytes: Option<&[u8]>| {
        converter_for(runtime, part).to_data_with_schema(bytes, part).map_err(|e| conversion_failed(m, part, e))
    };
    let (key, key_schema) = convert(Part::Key, m.key())?;
    let (value, value_schema) = convert(Part::Value, m.payload())?;
    let keep_schemas = runtime.transforms.keeps_values();
    let record = Record {
        topic: m.topic().to_string(),
        partition: Some(m.partition()),
        offset: Some(m.offset()),
        timestamp: m.timestamp().to_millis(),
        key,
        value,
        headers: m
            .headers()
            .map(|h| h.iter().map(|h| (h.key.to_string(), h.value.map(<[u8]>::to_vec))).collect())
            .unwrap_or_default(),
        key_schema,
        value_schema,
    };
    match runtime.transforms.apply(record) {
        Ok(None) => Ok(None),
        Ok(Some(r)) => Ok(Some(Transformed {
            topic: r.topic,
            timestamp: r.timestamp,
            key: runtime.key_converter.plugin_bytes(r.key),
            value: runtime.value_converter.plugin_bytes(r.value),
            headers: r.headers,
            key_schema: r.key_schema.filter(|_| keep_schemas),
            value_schema: r.value_schema.filter(|_| keep_schemas),
        })),
        Err(e) => Err((ConnectorError::bad_record(e), "TRANSFORMATION")),
    }
}

/// The key and value the plugin gets, borrowed from the message (no
/// transforms, and converters that at most check the bytes).
pub(super) type View<'a> = (Option<&'a [u8]>, Option<&'a [u8]>);

pub(super) fn view<'a>(
    runtime: &RuntimeConfig,
    m: &'a BorrowedMessage<'_>,
) -> Result<View<'a>, (ConnectorError, &'static str)> {
    let check =
        |part: Part, bytes| converter_for(runtime, part).view(bytes, part).map_err(|e| conversion_failed(m, part, e));
    Ok((check(Part::Key, m.key())?, check(Part::Value, m.payload())?))
}
