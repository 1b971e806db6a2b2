//! Object keys, exactly as Confluent names them:
//! `<topics.dir>/<topic>/<encoded partition>/<topic>+<kafka partition>+<start offset>.<ext>`
//! (Confluent's `generatePartitionedPath` puts the topic before the encoded
//! partition, e.g. `topics/orders/partition=0/orders+0+0000000000.json`).
//! The name depends only on the first record of the object, so a re-delivery
//! from the committed offset writes the same keys (exactly-once overwrite).

use crate::{
    config::{Compression, Format, S3SinkConfig},
    parquet_format::ParquetCodec,
    partitioner::Partitioner,
};

/// File extension for a format and compression (`.json`, `.json.gz`, `.bin.zst`, ...).
pub fn extension(format: Format, compression: Compression, bytes_extension: &str, parquet: ParquetCodec) -> String {
    let base = match format {
        Format::Json => ".json",
        Format::Bytes => bytes_extension,
        // Parquet compresses inside the file: Confluent's `.snappy.parquet`.
        Format::Parquet => return parquet.extension().to_string(),
    };
    let suffix = match compression {
        Compression::None => "",
        Compression::Gzip => ".gz",
        Compression::Zstd => ".zst",
    };
    format!("{base}{suffix}")
}

pub struct Naming {
    topics_dir: String,
    directory_delim: String,
    file_delim: String,
    zero_pad: usize,
    extension: String,
}

impl Naming {
    pub fn new(cfg: &S3SinkConfig) -> Self {
        Naming {
            topics_dir: cfg.topics_dir.clone(),
            directory_delim: cfg.directory_delim.clone(),
            file_delim: cfg.file_delim.clone(),
            zero_pad: cfg.zero_pad,
            extension: extension(cfg.format, cfg.compression, &cfg.bytes_extension, cfg.parquet_codec),
        }
    }

    pub fn object_key(&self, encoded_partition: &str, topic: &str, partition: i32, start_offset: i64) -> String {
        let d = &self.directory_delim;
        let f = &self.file_delim;
        let width = self.zero_pad;
        format!(
            "{}{d}{topic}{d}{encoded_partition}{d}{topic}{f}{partition}{f}{start_offset:0width$}{}",
            self.topics_dir, self.extension
        )
    }

    /// The prefix of every object this connector writes (to find leftovers).
    pub fn prefix(&self) -> String {
        format!("{}{}", self.topics_dir, self.directory_delim)
    }

    /// The prefix of every object of `topic` (all encoded partitions).
    pub fn topic_prefix(&self, topic: &str) -> String {
        format!("{}{topic}{}", self.prefix(), self.directory_delim)
    }

    /// Where a partition's objects can be under `partitioner`: the default
    /// partitioner puts each Kafka partition in its own directory, so a
    /// recovery lists only that one; the others may write any partition
    /// anywhere under the topic.
    pub fn listing_prefix(&self, partitioner: &Partitioner, topic: &str, partition: i32) -> String {
        match partitioner {
            Partitioner::Default => {
                format!("{}partition={partition}{}", self.topic_prefix(topic), self.directory_delim)
            }
            _ => self.topic_prefix(topic),
        }
    }

    /// The encoded partition and start offset of `key`, when it is an object
    /// of this topic partition written under this naming.
    pub fn parse(&self, key: &str, topic: &str, partition: i32) -> Option<(String, i64)> {
        let rest = key.strip_prefix(&self.topic_prefix(topic))?;
        let (encoded, file) = rest.rsplit_once(self.directory_delim.as_str())?;
        let f = &self.file_delim;
        let offset = file.strip_prefix(&format!("{topic}{f}{partition}{f}"))?.strip_suffix(&self.extension)?;
        if encoded.is_empty() || offset.is_empty() || !offset.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        Some((encoded.to_string(), offset.parse().ok()?))
    }

    /// Where the offset range of a multipart object (named by the id in its
    /// metadata) is kept: outside `topics.dir`, so that readers of the
    /// topics never see the markers.
    pub fn range_marker_key(&self, id: &str) -> String {
        let d = &self.directory_delim;
        format!("_sluice{d}ranges{d}{}{d}{id}", self.topics_dir)
    }

    /// True when `key` is an object of this topic partition (any encoded partition).
    pub fn belongs_to(&self, key: &str, topic: &str, partition: i32) -> bool {
        let file = key.rsplit(self.directory_delim.as_str()).next().unwrap_or(key);
        key.starts_with(&self.prefix()) && file.starts_with(&format!("{topic}{f}{partition}{f}", f = self.file_delim))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use connector_api::ConnectorConfig;

    fn naming(extra: &[(&str, &str)]) -> Naming {
        let mut c = ConnectorConfig::new()
            .with("topics", "t")
            .with("s3.bucket.name", "b")
            .with("flush.size", "3")
            .with("format.class", "json");
        for (k, v) in extra {
            c.set(*k, *v);
        }
        Naming::new(&S3SinkConfig::from_config(&c).unwrap())
    }

    #[test]
    fn confluent_names() {
        assert_eq!(
            naming(&[]).object_key("partition=0", "s3_topic", 0, 0),
            "topics/s3_topic/partition=0/s3_topic+0+0000000000.json"
        );
        assert_eq!(
            naming(&[("topics.dir", "out/data"), ("s3.compression.type", "gzip")]).object_key(
                "partition=3",
                "orders",
                3,
                12345
            ),
            "out/data/orders/partition=3/orders+3+0000012345.json.gz"
        );
        assert_eq!(
            naming(&[("format.class", "bytes"), ("s3.compression.type", "zstd")]).object_key(
                "x=1",
                "t",
                0,
                10_000_000_000
            ),
            "topics/t/x=1/t+0+10000000000.bin.zst"
        );
        assert_eq!(
            naming(&[
                ("format.class", "io.confluent.connect.s3.format.parquet.ParquetFormat"),
                ("s3.compression.type", "gzip")
            ])
            .object_key("partition=0", "t", 0, 0),
            "topics/t/partition=0/t+0+0000000000.snappy.parquet"
        );
    }

    #[test]
    fn a_recovery_lists_one_directory_under_the_default_partitioner_and_the_topic_otherwise() {
        let (n, default) = (naming(&[]), Partitioner::Default);
        let prefix = n.listing_prefix(&default, "t", 1);
        assert_eq!(prefix, "topics/t/partition=1/");
        assert!(n.object_key("partition=1", "t", 1, 7).starts_with(&prefix));
        assert!(!n.object_key("partition=10", "t", 10, 7).starts_with(&prefix), "partition 10 is not partition 1");
        let field = Partitioner::Field(vec!["region".to_string()]);
        assert_eq!(n.listing_prefix(&field, "t", 1), "topics/t/");
    }

    #[test]
    fn keys_parse_back_to_their_path_and_start_offset() {
        let n = naming(&[]);
        let key = n.object_key("year=2026/month=11", "t", 2, 1234);
        assert_eq!(n.parse(&key, "t", 2), Some(("year=2026/month=11".to_string(), 1234)));
        assert_eq!(n.parse(&key, "t", 1), None, "another partition");
        assert_eq!(n.parse(&key, "tt", 2), None, "another topic");
        assert_eq!(n.parse("topics/t/partition=2/t+2+0000000001.json.gz", "t", 2), None, "another extension");
        assert_eq!(n.parse("topics/t/partition=2/t+2+12x.json", "t", 2), None);
        assert_eq!(n.parse("topics/_sluice/ranges/x", "t", 2), None);
        assert_eq!(n.range_marker_key("t+2+5-9-1"), "_sluice/ranges/topics/t+2+5-9-1");
    }

    #[test]
    fn belongs_to_matches_topic_and_partition_only() {
        let n = naming(&[]);
        assert!(n.belongs_to("topics/t/partition=1/t+1+0000000000.json", "t", 1));
        assert!(!n.belongs_to("topics/t/partition=1/t+11+0000000000.json", "t", 1));
        assert!(!n.belongs_to("topics/t/partition=1/tt+1+0000000000.json", "t", 1));
        assert!(!n.belongs_to("other/t/partition=1/t+1+0000000000.json", "t", 1));
    }
}
