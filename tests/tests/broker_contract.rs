//! What sluice relies on from the Kafka-protocol broker, checked against the
//! test broker itself: where Tansu differed from Kafka, dev/services patches
//! it (dev/tansu/patch.py), and this test fails if that patch goes missing.

use std::{
    collections::BTreeSet,
    io::{BufRead, BufReader},
    process::{Child, Command, Stdio},
    sync::mpsc,
    time::{Duration, Instant},
};

use rdkafka::{
    config::ClientConfig,
    consumer::{BaseConsumer, Consumer},
    Message, Offset, TopicPartitionList,
};
use sluice_tests::{create_topic, produce, service_env, unique, wait_until};

/// A consumer resuming inside a record batch (a committed offset, a resume
/// after a pause, a new owner after a rebalance) gets the rest of the batch.
#[test]
fn a_fetch_from_inside_a_record_batch_returns_the_rest_of_it() {
    let topic = unique("broker-mid-batch");
    create_topic(&topic, 1);
    let values: Vec<String> = (0..100).map(|i| format!("v{i}")).collect();
    let records: Vec<(Option<&str>, Option<&str>)> = values.iter().map(|v| (None, Some(v.as_str()))).collect();
    // One producer call lingers the records into one or a few batches.
    assert_eq!(produce(&topic, 0, &records), (0..100).collect::<Vec<i64>>());
    for start in [50i64, 99] {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", service_env("KAFKA_BOOTSTRAP"))
            .set("group.id", unique("broker-mid-batch-reader"))
            .set("fetch.wait.max.ms", "10")
            .create()
            .expect("consumer");
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(&topic, 0, Offset::Offset(start)).expect("partition");
        consumer.assign(&tpl).expect("assign");
        let mut offsets = Vec::new();
        wait_until(&format!("records {start}..100 from a fetch at {start}"), Duration::from_secs(20), || {
            if let Some(Ok(m)) = consumer.poll(Duration::from_millis(100)) {
                offsets.push(m.offset());
            }
            (offsets.len() == (100 - start) as usize).then_some(())
        });
        assert_eq!(offsets, (start..100).collect::<Vec<i64>>());
    }
}

/// A sink task's durable note (`SinkContext::commit_note`) is an offset
/// commit carrying metadata: the broker must keep the metadata, and must
/// refuse a commit from a member the group has moved past (a paused worker
/// waking up after another took its partitions), or a stale task could
/// announce work it no longer owns.
#[test]
fn commit_metadata_is_kept_and_a_member_the_group_moved_past_cannot_commit() {
    let topic = unique("broker-fence");
    create_topic(&topic, 1);
    produce(&topic, 0, &[(None, Some("v0")), (None, Some("v1"))]);
    let group = unique("broker-fence-group");
    let member = |name: &str| -> BaseConsumer {
        let c: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", service_env("KAFKA_BOOTSTRAP"))
            .set("group.id", &group)
            .set("client.id", name)
            .set("enable.auto.commit", "false")
            .set("auto.offset.reset", "earliest")
            .set("session.timeout.ms", "6000")
            // A member that stops polling leaves the group after this long.
            .set("max.poll.interval.ms", "6000")
            .create()
            .expect("consumer");
        c.subscribe(&[&topic]).expect("subscribe");
        c
    };
    let commit = |c: &BaseConsumer, offset: i64, note: &str| {
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(&topic, 0, Offset::Offset(offset)).expect("partition");
        for mut e in tpl.elements() {
            e.set_metadata(note);
        }
        c.commit(&tpl, rdkafka::consumer::CommitMode::Sync)
    };
    let assigned = |c: &BaseConsumer| {
        let _ = c.poll(Duration::from_millis(100));
        c.assignment().ok().filter(|a| a.count() > 0).map(|_| ())
    };

    let a = member("fence-a");
    wait_until("the first member's assignment", Duration::from_secs(60), || assigned(&a));
    commit(&a, 1, "stream-a@1").expect("the owner commits");
    let (offset, note) = sluice_tests::committed_with_metadata(&group, &topic, 0).expect("committed");
    assert_eq!((offset, note.as_str()), (1, "stream-a@1"), "the broker keeps commit metadata");

    // `a` stops polling; `b` joins and, once `a` is out, owns the partition.
    let b = member("fence-b");
    wait_until("the second member to take the partition", Duration::from_secs(90), || assigned(&b));
    commit(&b, 2, "stream-b@2").expect("the new owner commits");
    let stale = commit(&a, 1, "stream-a@1-again");
    assert!(stale.is_err(), "a member the group moved past must not commit: {stale:?}");
    let (offset, note) = sluice_tests::committed_with_metadata(&group, &topic, 0).expect("committed");
    assert_eq!((offset, note.as_str()), (2, "stream-b@2"), "the stale commit changed nothing");
}

/// Exactly-once sources (runtime/src/pipeline/source/readback.rs) read a
/// topic-partition back from a stored position up to its end, and store
/// ListOffsets' high watermark as the position of a topic first written to.
/// Measured on the test broker: ListOffsets answers the last batch's base
/// offset + 1 (after batches of 1, 7, 50, 3: 1, 2, 9, 59 for true ends 1, 8,
/// 58, 61), so it is trusted only as a lower bound; the end of partition a
/// fetch reports comes after the last acknowledged record, and is the end.
#[test]
fn list_offsets_is_a_lower_bound_and_a_fetch_reports_the_end_after_the_last_record() {
    let topic = unique("broker-high-watermark");
    create_topic(&topic, 1);
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", service_env("KAFKA_BOOTSTRAP"))
        .set("group.id", unique("broker-high-watermark-reader"))
        .create()
        .expect("consumer");
    let mut last = -1;
    // Batches of different sizes, each from its own producer.
    for size in [1usize, 7, 50, 3] {
        let values: Vec<String> = (0..size).map(|i| format!("v{i}")).collect();
        let records: Vec<(Option<&str>, Option<&str>)> = values.iter().map(|v| (None, Some(v.as_str()))).collect();
        let offsets = produce(&topic, 0, &records);
        assert_eq!(offsets.first(), Some(&(last + 1)));
        last = *offsets.last().expect("offsets");
        let (_, high) = consumer.fetch_watermarks(&topic, 0, Duration::from_secs(10)).expect("watermarks");
        assert!(high <= last + 1, "ListOffsets {high} after a batch of {size}: past the end {}", last + 1);
    }
    let eof: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", service_env("KAFKA_BOOTSTRAP"))
        .set("group.id", unique("broker-high-watermark-eof"))
        .set("enable.partition.eof", "true")
        .create()
        .expect("consumer");
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(&topic, 0, Offset::Offset(0)).expect("partition");
    eof.assign(&tpl).expect("assign");
    let mut seen = Vec::new();
    wait_until("the end of the partition", Duration::from_secs(20), || match eof.poll(Duration::from_millis(100)) {
        Some(Ok(m)) => {
            seen.push(m.offset());
            None
        }
        Some(Err(rdkafka::error::KafkaError::PartitionEOF(0))) => Some(()),
        _ => None,
    });
    assert_eq!(seen, (0..=last).collect::<Vec<i64>>(), "the end of partition came after every record");
}

/// A group member as a process of its own (`sluice-fake group-member`),
/// killed when dropped.
struct Member {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Member {
    fn start(topic: &str, config: &ClientConfig) -> Member {
        let settings: Vec<String> = config.config_map().iter().map(|(k, v)| format!("{k}={v}")).collect();
        let mut child = Command::new(env!("CARGO_BIN_EXE_sluice-fake"))
            .arg("group-member")
            .arg(topic)
            .args(settings)
            .stdout(Stdio::piped())
            .spawn()
            .expect("sluice-fake group-member");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Member { child, lines }
    }

    /// Waits until the member reports an assignment of at least one partition.
    fn wait_assigned(&self, what: &str) {
        wait_until(what, Duration::from_secs(60), || match self.lines.recv_timeout(Duration::from_millis(100)) {
            Ok(line) => line.strip_prefix("assigned ").filter(|parts| !parts.is_empty()).map(|_| ()),
            Err(_) => None,
        });
    }

    fn signal(&self, name: &str) {
        let pid = self.child.id();
        let status = Command::new("kill").arg(format!("-{name}")).arg(pid.to_string()).status().expect("kill");
        assert!(status.success(), "kill -{name} {pid}");
    }
}

impl Drop for Member {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A sink task's consumer as the runtime builds it (`KafkaSettings::consumer`,
/// with the 6 s session timeout the tests' workers run with), but for the
/// assignment strategy.
fn sink_consumer(group: &str, strategy: &str) -> ClientConfig {
    let settings = sluice_runtime::kafka::KafkaSettings {
        bootstrap_servers: service_env("KAFKA_BOOTSTRAP"),
        session_timeout_ms: 6000,
        fetch_wait_max_ms: 10,
        ..Default::default()
    };
    let mut config = settings.consumer(group);
    config.set("partition.assignment.strategy", strategy);
    config
}

/// How the members that are not the survivor go away: all without leaving
/// the group (a worker killed or paused), `dead` of them, before or after the
/// survivor had its share of a group they all formed.
struct Departure {
    strategy: &'static str,
    dead: usize,
    signal: &'static str,
    survivor_in_the_group: bool,
}

/// The survivor eventually reads every partition: the group moved the gone
/// members' partitions to it (how long that took is printed).
fn the_survivor_reads_every_partition(case: Departure) {
    let topic = unique("broker-group-departure");
    create_topic(&topic, 3);
    for partition in 0..3 {
        produce(&topic, partition, &[(None, Some("v0")), (None, Some("v1"))]);
    }
    let group = unique("broker-group-departure-group");
    let config = sink_consumer(&group, case.strategy);
    let mut gone = Vec::new();
    for k in 0..case.dead {
        let member = Member::start(&topic, &config);
        // The first member leads the group; each later one joins a formed group.
        member.wait_assigned(&format!("member {k}'s assignment"));
        gone.push(member);
    }
    let survivor: BaseConsumer = config.create().expect("consumer");
    let mut seen = BTreeSet::new();
    let read = |c: &BaseConsumer, seen: &mut BTreeSet<i32>| {
        if let Some(Ok(m)) = c.poll(Duration::from_millis(100)) {
            seen.insert(m.partition());
        }
    };
    if case.survivor_in_the_group {
        survivor.subscribe(&[&topic]).expect("subscribe");
        wait_until("the survivor's share of the group", Duration::from_secs(90), || {
            read(&survivor, &mut seen);
            survivor.assignment().ok().filter(|a| a.count() > 0).map(|_| ())
        });
    }
    for member in &gone {
        member.signal(case.signal);
    }
    let since = Instant::now();
    if !case.survivor_in_the_group {
        survivor.subscribe(&[&topic]).expect("subscribe");
    }
    wait_until(
        &format!(
            "the survivor to read all 3 partitions ({} member(s) gone by SIG{}, {})",
            case.dead, case.signal, case.strategy
        ),
        Duration::from_secs(120),
        || {
            read(&survivor, &mut seen);
            (seen.len() == 3).then_some(())
        },
    );
    eprintln!(
        "{} {} member(s) gone by SIG{}, survivor {} the group: all partitions read {:.1} s later",
        case.strategy,
        case.dead,
        case.signal,
        if case.survivor_in_the_group { "already in" } else { "joining" },
        since.elapsed().as_secs_f64()
    );
}

/// A sink task restarted while its previous consumer (killed with its worker)
/// is still in the group: the new consumer gets the partitions once the dead
/// member's session ran out (docs/decisions/0033).
#[test]
fn a_member_joining_while_killed_members_are_still_in_the_group_gets_their_partitions() {
    for dead in [1, 2] {
        the_survivor_reads_every_partition(Departure {
            strategy: "cooperative-sticky",
            dead,
            signal: "KILL",
            survivor_in_the_group: false,
        });
    }
}

/// Two copies of a task's consumer formed a group (a task moved while its
/// old copy was still running) and the one leading the group dies: the
/// survivor takes its partitions. Tansu kept the dead member as the group's
/// leader for good until dev/tansu/patch.py fixed it (docs/decisions/0033).
#[test]
fn the_survivor_of_a_killed_group_leader_gets_its_partitions() {
    for strategy in ["cooperative-sticky", "range"] {
        the_survivor_reads_every_partition(Departure {
            strategy,
            dead: 1,
            signal: "KILL",
            survivor_in_the_group: true,
        });
    }
}

/// The same with two dead members, and with a leader that is paused, not
/// dead (its worker frozen): the group moves on without it.
#[test]
fn the_survivor_of_two_killed_members_or_a_paused_leader_gets_their_partitions() {
    the_survivor_reads_every_partition(Departure {
        strategy: "cooperative-sticky",
        dead: 2,
        signal: "KILL",
        survivor_in_the_group: true,
    });
    the_survivor_reads_every_partition(Departure {
        strategy: "cooperative-sticky",
        dead: 1,
        signal: "STOP",
        survivor_in_the_group: true,
    });
}

/// A task restarted again and again (its worker killed a few seconds after
/// each start): each consumer dies while the group is still re-forming, and
/// requests it sent before dying are applied after its death (Tansu holds a
/// follower's JoinGroup 3 s). The last one still gets every partition.
/// Before dev/tansu/patch.py's sync check, 2 of 5 such runs formed a group
/// in which nobody owned a partition (docs/decisions/0033).
#[test]
fn a_member_joining_after_a_churn_of_short_lived_members_gets_every_partition() {
    let topic = unique("broker-group-churn");
    create_topic(&topic, 3);
    for partition in 0..3 {
        produce(&topic, partition, &[(None, Some("v0"))]);
    }
    let group = unique("broker-group-churn-group");
    let config = sink_consumer(&group, "cooperative-sticky");
    // The lifetimes of the crash loop that stalled (seconds from start to kill).
    for lifetime in [4, 4, 6] {
        let member = Member::start(&topic, &config);
        // The fault's moment, not synchronisation.
        std::thread::sleep(Duration::from_secs(lifetime));
        member.signal("KILL");
    }
    let survivor: BaseConsumer = config.create().expect("consumer");
    survivor.subscribe(&[&topic]).expect("subscribe");
    let mut seen = BTreeSet::new();
    wait_until("the last member to read all 3 partitions", Duration::from_secs(120), || {
        if let Some(Ok(m)) = survivor.poll(Duration::from_millis(100)) {
            seen.insert(m.partition());
        }
        (seen.len() == 3).then_some(())
    });
}
