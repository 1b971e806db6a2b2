//! Kafka client settings shared by every consumer and producer the worker
//! creates, and small blocking helpers over rdkafka's futures.

use std::time::Duration;

use anyhow::{anyhow, Context};
use rdkafka::{
    admin::{AdminClient, AdminOptions, NewTopic, TopicReplication},
    client::DefaultClientContext,
    config::ClientConfig,
    error::RDKafkaErrorCode,
    producer::DeliveryFuture,
};

pub mod diagnose;
pub mod overrides;

/// How to reach the brokers, plus librdkafka properties passed through as
/// they are (TLS, SASL, …).
#[derive(Debug, Clone, Default)]
pub struct KafkaSettings {
    pub bootstrap_servers: String,
    pub properties: Vec<(String, String)>,
    /// Worker-level properties of one kind of client only (Kafka Connect's
    /// `consumer.*`, `producer.*`, `admin.*` worker keys), after `properties`.
    pub consumer_properties: Vec<(String, String)>,
    pub producer_properties: Vec<(String, String)>,
    pub admin_properties: Vec<(String, String)>,
    pub session_timeout_ms: u32,
    /// `fetch.wait.max.ms` for the worker's consumers. Low by default: some
    /// brokers (Tansu) hold every fetch this long even when data is waiting,
    /// which caps a consumer at a few thousand records a second.
    pub fetch_wait_max_ms: u32,
}

impl KafkaSettings {
    fn base(&self) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &self.bootstrap_servers);
        for (k, v) in &self.properties {
            c.set(k, v);
        }
        c
    }

    /// A consumer that commits only what the worker tells it to.
    pub fn consumer(&self, group_id: &str) -> ClientConfig {
        let mut c = self.base();
        c.set("group.id", group_id)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            .set("session.timeout.ms", self.session_timeout_ms.to_string())
            .set("heartbeat.interval.ms", (self.session_timeout_ms / 3).max(100).to_string())
            // Also the rebalance timeout: how long a Kafka broker's group
            // waits for a member to rejoin before moving its partitions (Tansu
            // ignores it and expires members by session alone, decision 0033).
            // librdkafka's 5 minutes would stall a dead worker's partitions;
            // a put or poll must return within this (30 s by default).
            .set("max.poll.interval.ms", (self.session_timeout_ms * 3).max(30_000).to_string())
            .set("fetch.wait.max.ms", self.fetch_wait_max_ms.to_string())
            // Prefetch 16 MiB per task instead of librdkafka's 64 MiB (a quarter
            // of the worker's memory in dev/bench), and when that queue is full
            // look again after 10 ms, not 1 s: with the default backoff a small
            // queue halved throughput; with this one it was faster than 64 MiB.
            .set("queued.max.messages.kbytes", "16384")
            .set("fetch.queue.backoff.ms", "10")
            .set("partition.assignment.strategy", "cooperative-sticky")
            // Notice topics created after subscribing within seconds, not
            // librdkafka's default five minutes.
            .set("topic.metadata.refresh.interval.ms", "2000");
        // Pass-through properties win over the worker's defaults.
        for (k, v) in self.properties.iter().chain(&self.consumer_properties) {
            c.set(k, v);
        }
        c
    }

    /// An idempotent producer (acks=all): a record acknowledged is durable
    /// and in order, so offsets may be written after it.
    pub fn producer(&self) -> ClientConfig {
        let mut c = self.base();
        c.set("enable.idempotence", "true").set("acks", "all").set("linger.ms", "5");
        for (k, v) in self.properties.iter().chain(&self.producer_properties) {
            c.set(k, v);
        }
        c
    }

    /// An admin client's settings.
    pub fn admin(&self) -> ClientConfig {
        let mut c = self.base();
        for (k, v) in &self.admin_properties {
            c.set(k, v);
        }
        c
    }
}

/// Sets a connector's client overrides (already translated and checked by
/// [`overrides::resolve`], which refuses the keys the worker's guarantees
/// rest on) over the worker's settings.
pub fn with_overrides(mut config: ClientConfig, overrides: &[(String, String)]) -> ClientConfig {
    for (k, v) in overrides {
        config.set(k, v);
    }
    config
}

/// Reaches the brokers once before the worker does anything else, so a TLS
/// or SASL mistake in the worker's settings stops the start with the setting
/// to fix rather than a bare timeout of the first admin call.
pub fn preflight(settings: &KafkaSettings, timeout: Duration) -> anyhow::Result<()> {
    use rdkafka::producer::{BaseProducer, Producer};
    let client: BaseProducer<diagnose::Diagnosing> = settings
        .admin()
        .set_log_level(diagnose::LOG_LEVEL)
        .create_with_context(diagnose::Diagnosing::new("worker"))
        .with_context(|| format!("creating a Kafka client for {}", settings.bootstrap_servers))?;
    let deadline = std::time::Instant::now() + timeout;
    loop {
        let result = client.client().fetch_metadata(None, Duration::from_secs(2));
        // Serves librdkafka's log and error events (they wait in the main
        // queue), which is where the reason of a failed connection is.
        client.poll(Duration::ZERO);
        match result {
            Ok(_) => return Ok(()),
            Err(e) if std::time::Instant::now() >= deadline => {
                let why = client.context().last_error().unwrap_or_else(|| e.to_string());
                anyhow::bail!("cannot reach Kafka at {}: {why}", settings.bootstrap_servers);
            }
            Err(_) => {}
        }
    }
}

/// A topic the worker creates when missing.
#[derive(Debug, Clone, Copy)]
pub struct NewTopicSpec<'a> {
    pub name: &'a str,
    pub partitions: i32,
    /// -1: the broker's `default.replication.factor`.
    pub replication_factor: i32,
    pub compacted: bool,
}

/// Creates the topic unless it exists; `admin_overrides` are a connector's
/// `admin.override.*` (empty for the worker's own topics).
pub fn ensure_topic(
    settings: &KafkaSettings,
    spec: NewTopicSpec<'_>,
    admin_overrides: &[(String, String)],
) -> anyhow::Result<()> {
    let NewTopicSpec { name, partitions, replication_factor, compacted } = spec;
    let admin: AdminClient<DefaultClientContext> = with_overrides(settings.admin(), admin_overrides)
        .create()
        .with_context(|| format!("creating an admin client for {}", settings.bootstrap_servers))?;
    let mut topic = NewTopic::new(name, partitions, TopicReplication::Fixed(replication_factor));
    if compacted {
        topic = topic.set("cleanup.policy", "compact");
    }
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    let results = futures::executor::block_on(admin.create_topics([&topic], &options))
        .with_context(|| format!("creating topic {name}"))?;
    for result in results {
        match result {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((topic, code)) => {
                return Err(anyhow!(
                    "creating topic {topic} ({partitions} partition(s), replication factor {replication_factor}): the broker refused: {code}"
                ))
            }
        }
    }
    Ok(())
}

/// Deletes a consumer group and its committed offsets (Kafka Connect's reset
/// of a sink connector's offsets); a group that does not exist is no error.
/// The Kafka cluster's id from the broker's metadata (Kafka Connect's
/// `ConnectUtils.lookupKafkaClusterId`, which its `GET /` reports).
pub fn cluster_id(settings: &KafkaSettings) -> anyhow::Result<String> {
    let admin: AdminClient<DefaultClientContext> = settings
        .admin()
        .create()
        .with_context(|| format!("creating an admin client for {}", settings.bootstrap_servers))?;
    admin.inner().fetch_cluster_id(Duration::from_secs(30)).ok_or_else(|| anyhow!("the brokers reported no cluster id"))
}

pub fn delete_group(settings: &KafkaSettings, group: &str) -> anyhow::Result<()> {
    let admin: AdminClient<DefaultClientContext> = settings
        .admin()
        .create()
        .with_context(|| format!("creating an admin client for {}", settings.bootstrap_servers))?;
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    let results = futures::executor::block_on(admin.delete_groups(&[group], &options))
        .with_context(|| format!("deleting consumer group {group}"))?;
    for result in results {
        match result {
            Ok(_) | Err((_, RDKafkaErrorCode::GroupIdNotFound)) => {}
            Err((group, code)) => return Err(anyhow!("deleting consumer group {group}: {code}")),
        }
    }
    Ok(())
}

/// Waits for a produced record's acknowledgement: (partition, offset).
pub fn wait_delivery(delivery: DeliveryFuture) -> anyhow::Result<(i32, i64)> {
    match futures::executor::block_on(delivery) {
        Ok(Ok(delivery)) => Ok((delivery.partition, delivery.offset)),
        Ok(Err((e, _))) => Err(anyhow!("the broker refused the record: {e}")),
        Err(_) => Err(anyhow!("the producer was closed before the record was acknowledged")),
    }
}
