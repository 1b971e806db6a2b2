//! The S3 sink driven in-process through the plugin traits against the real
//! SeaweedFS of `dev/services` (no mocks). Each test writes under its own
//! `topics.dir` so tests never see each other's objects.

mod common;

use std::{
    io::Read,
    time::{Duration, Instant},
};

use common::{config, json, lines, unique_dir, Bucket};
use connector_api::{ConnectorConfig, Host, SinkConnector, SinkRecord, SinkTask, TopicPartition, TopicPartitionOffset};
use sluice_s3_sink::{S3Sink, S3SinkTask};

fn task(c: &ConnectorConfig) -> S3SinkTask {
    let issues = S3Sink.validate(c);
    assert!(issues.is_empty(), "{issues:?}");
    S3Sink
        .create_task(
            c,
            Host::stderr(),
            connector_api::SinkContext::from_impl(connector_api::context::Recorded::default()),
        )
        .unwrap()
}

/// Owned record data; `SinkRecord` borrows from it as the runtime's buffers.
struct Owned {
    topic: String,
    partition: i32,
    offset: i64,
    timestamp: Option<i64>,
    value: Option<Vec<u8>>,
}

fn owned(partition: i32, offsets: std::ops::Range<i64>) -> Vec<Owned> {
    offsets
        .map(|o| Owned {
            topic: "orders".into(),
            partition,
            offset: o,
            timestamp: Some(1_700_000_000_000 + o),
            value: Some(json(o).into_bytes()),
        })
        .collect()
}

fn put(task: &mut S3SinkTask, batch: &[Owned]) -> connector_api::PutOutcome {
    let records: Vec<SinkRecord<'_>> = batch
        .iter()
        .map(|r| {
            SinkRecord::new(&r.topic, r.partition, r.offset).with_timestamp(r.timestamp).with_value(r.value.as_deref())
        })
        .collect();
    task.put(&records).unwrap()
}

/// The offsets once every rotated object finished completing (completion
/// runs in the background; `pre_commit` alone reports what is done so far).
fn settled(task: &mut S3SinkTask) -> Vec<TopicPartitionOffset> {
    task.wait_for_completions().unwrap();
    task.pre_commit(&[]).unwrap()
}

fn committed(offsets: &[TopicPartitionOffset], partition: i32) -> Option<i64> {
    offsets.iter().find(|o| o.topic == "orders" && o.partition == partition).map(|o| o.offset)
}

#[test]
fn objects_have_confluent_names_and_offsets_commit_only_after_completion() {
    let dir = unique_dir("names");
    let s3 = Bucket::new();
    let mut t = task(&config(&dir, &[]));
    t.open(&[TopicPartition::new("orders", 0), TopicPartition::new("orders", 1)]).unwrap();

    // Two records: no object complete, nothing may be committed.
    assert!(put(&mut t, &owned(0, 0..2)).failures().is_empty());
    assert_eq!(committed(&settled(&mut t), 0), Some(0));
    assert!(s3.keys(&dir).is_empty());

    // The third completes the first object.
    put(&mut t, &owned(0, 2..3));
    assert_eq!(committed(&settled(&mut t), 0), Some(3));

    put(&mut t, &owned(0, 3..8));
    put(&mut t, &owned(1, 0..4));
    let offsets = settled(&mut t);
    assert_eq!(committed(&offsets, 0), Some(6), "offsets 6 and 7 are in an open object");
    assert_eq!(committed(&offsets, 1), Some(3));

    assert_eq!(
        s3.keys(&dir),
        vec![
            format!("{dir}/orders/partition=0/orders+0+0000000000.json"),
            format!("{dir}/orders/partition=0/orders+0+0000000003.json"),
            format!("{dir}/orders/partition=1/orders+1+0000000000.json"),
        ]
    );
    assert_eq!(s3.text(&format!("{dir}/orders/partition=0/orders+0+0000000000.json")), lines(0..3));
    assert_eq!(s3.text(&format!("{dir}/orders/partition=0/orders+0+0000000003.json")), lines(3..6));
    assert_eq!(s3.text(&format!("{dir}/orders/partition=1/orders+1+0000000000.json")), lines(0..3));

    // Revoking a partition drops its open object; stop drops the rest.
    t.close(&[TopicPartition::new("orders", 0)]).unwrap();
    assert_eq!(committed(&settled(&mut t), 0), None);
    t.stop().unwrap();
    assert_eq!(s3.keys(&dir).len(), 3);
}

#[test]
fn redelivery_after_a_crash_rewrites_the_same_objects_without_duplicates() {
    let dir = unique_dir("crash");
    let s3 = Bucket::new();
    let c = config(&dir, &[("flush.size", "4")]);
    let tps = [TopicPartition::new("orders", 0)];

    let mut first = task(&c);
    first.open(&tps).unwrap();
    put(&mut first, &owned(0, 0..10));
    assert_eq!(committed(&settled(&mut first), 0), Some(8));
    // The worker dies before committing 8: the last commit it made was 4.
    drop(first);

    let mut second = task(&c);
    second.open(&tps).unwrap();
    put(&mut second, &owned(0, 4..13));
    assert_eq!(committed(&settled(&mut second), 0), Some(12));
    second.stop().unwrap();

    let keys = s3.keys(&dir);
    assert_eq!(
        keys,
        (0..3).map(|i| format!("{dir}/orders/partition=0/orders+0+{:010}.json", i * 4)).collect::<Vec<_>>()
    );
    let all: String = keys.iter().map(|k| s3.text(k)).collect();
    assert_eq!(all, lines(0..12), "every record exactly once, in order");
}

#[test]
fn large_objects_are_multipart_and_exact_and_crashes_leave_no_open_upload() {
    let dir = unique_dir("multipart");
    let s3 = Bucket::new();
    // 64 KiB records, 5 MiB parts: 200 records = 12.5 MiB = 3 parts.
    let c = config(
        &dir,
        &[
            ("format.class", "io.confluent.connect.s3.format.bytearray.ByteArrayFormat"),
            ("format.bytearray.separator", ""),
            ("s3.part.size", &(5 * 1024 * 1024).to_string()),
            ("flush.size", "200"),
        ],
    );
    let record = |o: i64| -> Vec<u8> { (0..64 * 1024).map(|i| ((i as i64 * 31 + o) % 251) as u8).collect() };
    let batch = |range: std::ops::Range<i64>| -> Vec<Owned> {
        range
            .map(|o| Owned { topic: "orders".into(), partition: 0, offset: o, timestamp: None, value: Some(record(o)) })
            .collect()
    };
    let tps = [TopicPartition::new("orders", 0)];

    // A crash mid-object: a part is uploaded, the object never completes.
    let mut crashed = task(&c);
    crashed.open(&tps).unwrap();
    put(&mut crashed, &batch(0..120));
    assert_eq!(committed(&settled(&mut crashed), 0), Some(0));
    drop(crashed);
    assert!(s3.keys(&dir).is_empty());
    assert_eq!(s3.open_uploads(&dir).len(), 1, "the crashed task left its multipart upload open");

    let mut t = task(&c);
    t.open(&tps).unwrap();
    assert!(s3.open_uploads(&dir).is_empty(), "open() aborts what the crashed task left");
    for chunk in (0..200).step_by(50) {
        put(&mut t, &batch(chunk..chunk + 50));
    }
    assert_eq!(committed(&settled(&mut t), 0), Some(200));
    let key = format!("{dir}/orders/partition=0/orders+0+0000000000.bin");
    assert_eq!(s3.keys(&dir), vec![key.clone()]);
    let (body, etag) = s3.get(&key);
    assert!(etag.trim_matches('"').ends_with("-3"), "three parts expected, ETag {etag}");
    let expected: Vec<u8> = (0..200).flat_map(record).collect();
    assert!(body == expected, "content differs: {} bytes vs {} expected", body.len(), expected.len());
    t.stop().unwrap();
    assert!(s3.open_uploads(&dir).is_empty());

    // Completed but the offset commit was lost: the same object is written again.
    let mut again = task(&c);
    again.open(&tps).unwrap();
    for chunk in (0..200).step_by(50) {
        put(&mut again, &batch(chunk..chunk + 50));
    }
    assert_eq!(committed(&settled(&mut again), 0), Some(200));
    assert_eq!(s3.keys(&dir), vec![key.clone()]);
    let (body, _) = s3.get(&key);
    assert!(body == expected, "content differs after re-delivery");
    assert!(s3.open_uploads(&dir).is_empty(), "the redundant upload was not left open");
}

#[test]
fn gzip_and_zstd_objects_decompress_to_the_lines() {
    for (compression, ext) in [("gzip", "json.gz"), ("zstd", "json.zst")] {
        let dir = unique_dir(compression);
        let s3 = Bucket::new();
        let mut t = task(&config(&dir, &[("s3.compression.type", compression), ("flush.size", "100")]));
        put(&mut t, &owned(2, 0..100));
        assert_eq!(committed(&settled(&mut t), 2), Some(100));
        let key = format!("{dir}/orders/partition=2/orders+2+0000000000.{ext}");
        assert_eq!(s3.keys(&dir), vec![key.clone()]);
        let (body, _) = s3.get(&key);
        let mut text = String::new();
        if compression == "gzip" {
            flate2::read::GzDecoder::new(&body[..]).read_to_string(&mut text).unwrap();
        } else {
            text = String::from_utf8(zstd::decode_all(&body[..]).unwrap()).unwrap();
        }
        assert_eq!(text, lines(0..100));
    }
}

#[test]
fn bad_records_are_reported_by_index_and_do_not_hold_offsets_back() {
    let dir = unique_dir("bad");
    let s3 = Bucket::new();
    let mut t = task(&config(&dir, &[("flush.size", "2")]));
    let mut batch = owned(0, 0..4);
    batch[1].value = Some(b"not json".to_vec());
    batch[2].value = None;
    let outcome = put(&mut t, &batch);
    let failures = outcome.failures();
    assert_eq!(failures.iter().map(|f| f.index).collect::<Vec<_>>(), vec![1, 2]);
    for f in failures {
        assert_eq!(f.error.kind(), connector_api::ErrorKind::BadRecord);
        assert!(f.error.message().contains("orders/0 offset"), "{:?}", f.error);
    }
    assert!(failures[0].error.message().contains("not JSON"), "{:?}", failures[0].error);
    assert!(failures[1].error.message().contains("behavior.on.null.values"), "{:?}", failures[1].error);
    // Records 0 and 3 complete an object; 1 and 2 are the runtime's to settle.
    assert_eq!(committed(&settled(&mut t), 0), Some(4));
    let key = format!("{dir}/orders/partition=0/orders+0+0000000000.json");
    assert_eq!(s3.keys(&dir), vec![key.clone()]);
    assert_eq!(s3.text(&key), format!("{}\n{}\n", json(0), json(3)));
}

#[test]
fn a_failed_record_before_an_open_object_does_not_let_the_offset_pass_it() {
    let dir = unique_dir("gap");
    let mut t = task(&config(&dir, &[("flush.size", "10")]));
    let mut batch = owned(0, 0..4);
    batch[2].value = None;
    assert_eq!(put(&mut t, &batch).failures().len(), 1);
    // 0, 1 and 3 are in the open object: nothing is durable yet.
    assert_eq!(committed(&settled(&mut t), 0), Some(0));
    t.stop().unwrap();
}

#[test]
fn field_and_time_partitioners_write_deterministic_paths() {
    let dir = unique_dir("paths");
    let s3 = Bucket::new();
    let c = config(
        &dir,
        &[
            ("partitioner.class", "io.confluent.connect.storage.partitioner.HourlyPartitioner"),
            ("timestamp.extractor", "Record"),
            ("flush.size", "2"),
        ],
    );
    let mut t = task(&c);
    // 2023-11-14T22:13:20Z, and one hour later.
    let mut batch = owned(0, 0..4);
    batch[2].timestamp = Some(1_700_000_000_000 + 3_600_000);
    batch[3].timestamp = Some(1_700_000_000_000 + 3_600_000);
    put(&mut t, &batch);
    let offsets = settled(&mut t);
    // Offset 2 opened the 23h object and 0..1 finished: objects [0,1] and [2,3] complete.
    assert_eq!(committed(&offsets, 0), Some(4));
    assert_eq!(
        s3.keys(&dir),
        vec![
            format!("{dir}/orders/year=2023/month=11/day=14/hour=22/orders+0+0000000000.json"),
            format!("{dir}/orders/year=2023/month=11/day=14/hour=23/orders+0+0000000002.json"),
        ]
    );

    let dir = unique_dir("fields");
    let c = config(
        &dir,
        &[
            ("partitioner.class", "io.confluent.connect.storage.partitioner.FieldPartitioner"),
            ("partition.field.name", "name"),
        ],
    );
    let mut t = task(&c);
    put(&mut t, &owned(0, 0..3));
    let offsets = settled(&mut t);
    assert_eq!(committed(&offsets, 0), Some(0), "every field value is its own open object");
    t.stop().unwrap();
    assert!(s3.keys(&dir).is_empty());
}

#[test]
fn scheduled_rotation_flushes_idle_partitions() {
    let dir = unique_dir("schedule");
    let s3 = Bucket::new();
    let mut t = task(&config(&dir, &[("rotate.schedule.interval.ms", "1000"), ("flush.size", "1000")]));
    put(&mut t, &owned(0, 0..5));
    // No more records arrive: pre_commit alone must rotate when the clock passes the boundary.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if committed(&t.pre_commit(&[]).unwrap(), 0) == Some(5) {
            break;
        }
        assert!(Instant::now() < deadline, "the idle partition was never flushed");
        std::thread::sleep(Duration::from_millis(50));
    }
    let key = format!("{dir}/orders/partition=0/orders+0+0000000000.json");
    assert_eq!(s3.keys(&dir), vec![key.clone()]);
    assert_eq!(s3.text(&key), lines(0..5));
}

#[test]
fn max_open_files_rotates_the_oldest_object() {
    let dir = unique_dir("openfiles");
    let s3 = Bucket::new();
    let mut t = task(&config(&dir, &[("s3.max.open.files", "1"), ("flush.size", "100")]));
    put(&mut t, &owned(0, 0..2));
    put(&mut t, &owned(1, 0..1));
    let offsets = settled(&mut t);
    assert_eq!(committed(&offsets, 0), Some(2));
    assert_eq!(committed(&offsets, 1), Some(0));
    assert_eq!(s3.keys(&dir), vec![format!("{dir}/orders/partition=0/orders+0+0000000000.json")]);
    t.stop().unwrap();
}

#[test]
fn hundred_thousand_records_over_four_partitions_land_exactly_once_in_order() {
    let dir = unique_dir("bulk");
    let s3 = Bucket::new();
    let mut t = task(&config(&dir, &[("flush.size", "10000")]));
    let tps: Vec<TopicPartition> = (0..4).map(|p| TopicPartition::new("orders", p)).collect();
    t.open(&tps).unwrap();
    let started = Instant::now();
    // Batches of 500 interleaving the partitions, as a consumer would hand them over.
    for chunk in (0..25_000).step_by(500) {
        let batch: Vec<Owned> = (0..4).flat_map(|p| owned(p, chunk..chunk + 500)).collect();
        assert!(put(&mut t, &batch).failures().is_empty());
    }
    let offsets = settled(&mut t);
    let elapsed = started.elapsed();
    eprintln!("100000 records in {elapsed:?} ({:.0} records/s)", 100_000.0 / elapsed.as_secs_f64());
    for p in 0..4 {
        assert_eq!(committed(&offsets, p), Some(20_000), "partition {p}: the third object is still open");
    }
    let expected: Vec<String> = (0..4)
        .flat_map(|p| {
            let dir = dir.clone();
            (0..2).map(move |i| format!("{dir}/orders/partition={p}/orders+{p}+{:010}.json", i * 10_000))
        })
        .collect();
    assert_eq!(s3.keys(&dir), expected);
    for p in 0..4 {
        let text: String = (0..2)
            .map(|i| s3.text(&format!("{dir}/orders/partition={p}/orders+{p}+{:010}.json", i * 10_000)))
            .collect();
        assert_eq!(text, lines(0..20_000), "partition {p}");
    }
    // The open objects are dropped on stop and re-delivered later: nothing half-written stays.
    t.stop().unwrap();
    assert_eq!(s3.keys(&dir).len(), 8);
    assert!(s3.open_uploads(&dir).is_empty());
}

#[test]
fn an_unreachable_store_is_a_retriable_error_and_commits_nothing() {
    // A port nothing listens on: connection refused, the SDK retries once, then Retriable.
    let c = config(
        &unique_dir("down"),
        &[
            ("store.url", "http://127.0.0.1:9"),
            ("s3.part.retries", "1"),
            ("s3.retry.backoff.ms", "10"),
            ("flush.size", "2"),
        ],
    );
    let mut t = task(&c);
    let batch = owned(0, 0..2);
    let records: Vec<SinkRecord<'_>> = batch
        .iter()
        .map(|r| {
            SinkRecord::new(&r.topic, r.partition, r.offset).with_timestamp(r.timestamp).with_value(r.value.as_deref())
        })
        .collect();
    // The partition's first record lists what earlier runs left: that
    // fails first, and nothing is taken.
    let err = t.put(&records).unwrap_err();
    assert_eq!(err.kind(), connector_api::ErrorKind::Retriable, "{err:?}");
    assert!(err.message().contains("ListObjectsV2"), "{err:?}");
    assert_eq!(committed(&t.pre_commit(&[]).unwrap(), 0).unwrap_or(0), 0, "nothing is durable");
    // The batch comes again and fails the same way until S3 answers.
    let err = t.put(&records).unwrap_err();
    assert_eq!(err.kind(), connector_api::ErrorKind::Retriable);
    assert_eq!(committed(&t.pre_commit(&[]).unwrap(), 0).unwrap_or(0), 0);
}

#[test]
fn record_time_rotation_is_deterministic() {
    let dir = unique_dir("interval");
    let s3 = Bucket::new();
    let c = config(&dir, &[("rotate.interval.ms", "10"), ("flush.size", "1000")]);
    let mut t = task(&c);
    // Timestamps 1_700_000_000_000 + offset: records 0..9 span 9 ms, record 10 starts the next object.
    put(&mut t, &owned(0, 0..25));
    assert_eq!(committed(&settled(&mut t), 0), Some(20));
    assert_eq!(
        s3.keys(&dir),
        vec![
            format!("{dir}/orders/partition=0/orders+0+0000000000.json"),
            format!("{dir}/orders/partition=0/orders+0+0000000010.json"),
        ]
    );
    assert_eq!(s3.text(&format!("{dir}/orders/partition=0/orders+0+0000000010.json")), lines(10..20));
    t.stop().unwrap();
}

#[test]
fn object_tagging_records_the_offsets() {
    let dir = unique_dir("tags");
    let s3 = Bucket::new();
    let mut t = task(&config(&dir, &[("s3.object.tagging", "true")]));
    put(&mut t, &owned(0, 5..8));
    assert_eq!(committed(&settled(&mut t), 0), Some(8));
    let key = format!("{dir}/orders/partition=0/orders+0+0000000005.json");
    let out = s3.rt.block_on(s3.client.get_object_tagging().bucket(&s3.bucket).key(&key).send()).unwrap();
    let mut tags: Vec<(String, String)> =
        out.tag_set().iter().map(|t| (t.key().to_string(), t.value().to_string())).collect();
    tags.sort();
    assert_eq!(
        tags,
        vec![("endOffset".into(), "7".into()), ("recordCount".into(), "3".into()), ("startOffset".into(), "5".into())]
    );
}

#[test]
fn null_values_are_ignored_or_written_under_the_tombstone_path() {
    let dir = unique_dir("nulls");
    let s3 = Bucket::new();
    let mut batch = owned(0, 0..4);
    batch[1].value = None;

    let mut t = task(&config(&format!("{dir}/ignore"), &[("behavior.on.null.values", "ignore")]));
    assert!(put(&mut t, &batch).failures().is_empty());
    assert_eq!(committed(&settled(&mut t), 0), Some(4), "0, 2, 3 fill an object, 1 is ignored");
    assert_eq!(
        s3.text(&format!("{dir}/ignore/orders/partition=0/orders+0+0000000000.json")),
        format!("{}\n{}\n{}\n", json(0), json(2), json(3))
    );

    let mut t = task(&config(&format!("{dir}/write"), &[("behavior.on.null.values", "write"), ("flush.size", "1")]));
    assert!(put(&mut t, &batch[..2]).failures().is_empty());
    assert_eq!(committed(&settled(&mut t), 0), Some(2));
    assert_eq!(s3.text(&format!("{dir}/write/orders/tombstone/orders+0+0000000001.json")), "null\n");
    assert_eq!(s3.text(&format!("{dir}/write/orders/partition=0/orders+0+0000000000.json")), json(0) + "\n");
}

#[test]
fn parquet_objects_read_back_with_the_expected_rows_and_types() {
    use parquet::file::reader::{FileReader, SerializedFileReader};
    for (codec, ext) in [("snappy", "snappy.parquet"), ("zstd", "zstd.parquet")] {
        let dir = unique_dir(&format!("parquet-{codec}"));
        let s3 = Bucket::new();
        let c = config(
            &dir,
            &[
                ("format.class", "io.confluent.connect.s3.format.parquet.ParquetFormat"),
                ("parquet.codec", codec),
                ("flush.size", "4"),
            ],
        );
        let mut t = task(&c);
        let mut batch = owned(0, 0..5);
        batch[2].value = Some(br#"{"id":"two","name":"bad"}"#.to_vec());
        let outcome = put(&mut t, &batch);
        assert_eq!(outcome.failures().iter().map(|f| f.index).collect::<Vec<_>>(), vec![2]);
        assert!(outcome.failures()[0].error.message().contains("\"id\""), "{:?}", outcome.failures()[0].error);
        assert_eq!(committed(&settled(&mut t), 0), Some(5));
        let key = format!("{dir}/orders/partition=0/orders+0+0000000000.{ext}");
        assert_eq!(s3.keys(&dir), vec![key.clone()]);
        let reader = SerializedFileReader::new(bytes::Bytes::from(s3.get(&key).0)).unwrap();
        let schema = reader.metadata().file_metadata().schema_descr();
        let types: Vec<String> =
            schema.columns().iter().map(|c| format!("{}:{}", c.name(), c.physical_type())).collect();
        assert_eq!(types, vec!["id:INT64", "name:BYTE_ARRAY"]);
        let rows: Vec<String> =
            reader.get_row_iter(None).unwrap().map(|r| r.unwrap().to_json_value().to_string()).collect();
        let expected: Vec<String> = [0, 1, 3, 4].iter().map(|&o| json(o)).collect();
        assert_eq!(rows, expected);
    }
}
