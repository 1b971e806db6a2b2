//! Is a record's key or value JSON? For sinks that pass JSON text through
//! as it came (the runtime's JsonConverter without transforms, the s3-sink's
//! `json` format) and only need to know it is one JSON document.

use serde::de::IgnoredAny;

/// Kafka Connect's JsonConverter, as `key.converter`/`value.converter` name
/// it, and the short name the runtime also takes.
pub const JSON_CONVERTER: &str = "org.apache.kafka.connect.json.JsonConverter";
pub const JSON_CONVERTER_SHORT: &str = "json";

/// Whether a `value.converter` (or `key.converter`) setting names the
/// JsonConverter. With it, the runtime hands a plugin only checked JSON
/// text (a value that is not JSON goes to the DLQ at the converter stage,
/// and transformed or enveloped values are re-serialised), so a plugin that
/// needs JSON need not check again.
pub fn is_json_converter(setting: &str) -> bool {
    let name = setting.trim();
    name == JSON_CONVERTER_SHORT || name == JSON_CONVERTER
}

/// `Ok` when `bytes` are one JSON document in UTF-8; else why not (with the
/// byte position), for the caller to put in its bad-record message.
pub fn check(bytes: &[u8]) -> Result<(), String> {
    // JSON is UTF-8 (RFC 8259), and serde_json does not check the strings it
    // skips: check the text first, as Kafka Connect's JsonConverter (Jackson)
    // refuses bad UTF-8 while parsing. The bytes, not the checked text, then
    // go to serde_json: its slice reader skips faster than its str reader.
    std::str::from_utf8(bytes).map_err(|e| format!("invalid UTF-8 at byte {}", e.valid_up_to()))?;
    serde_json::from_slice::<IgnoredAny>(bytes).map(|_| ()).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_document_in_utf8() {
        assert_eq!(check(r#" {"a": ["é", 1.5, null]} "#.as_bytes()), Ok(()));
        assert!(check(b"{\"a\":1} {}").unwrap_err().contains("trailing characters"));
        // serde_json alone accepts this: bad UTF-8 inside a string it skips.
        assert_eq!(check(b"{\"a\":\"\xc3\x28\"}"), Err("invalid UTF-8 at byte 6".to_string()));
    }

    #[test]
    fn the_json_converter_by_either_name() {
        assert!(is_json_converter(" org.apache.kafka.connect.json.JsonConverter"));
        assert!(is_json_converter("json"));
        assert!(!is_json_converter("org.apache.kafka.connect.storage.StringConverter"));
    }
}
