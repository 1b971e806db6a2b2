//! A real load balancer in front of three workers, as deploy/ecs runs them
//! behind an ALB: haproxy (Debian's, installed by `dev/deploy-check install`)
//! health-checks `/ready` and routes the Kafka Connect REST API. Connectors
//! are created, changed, paused, resumed and deleted through it. While order
//! changes flow Hybris → hybris-source → Kafka → s3-sink → S3, one worker is
//! killed with `kill -9` and another stopped with SIGTERM (a scale-in):
//! haproxy stops routing to them, REST calls through it keep answering
//! correctly (a retried call is fine, a wrong answer is not), their tasks run
//! on the remaining worker, and no record is lost: S3 holds every Kafka
//! offset of the topic exactly once (`flush.size=1`, deterministic) and every
//! order change is among them. The test prints how long REST and the tasks
//! were unavailable (`cargo test … -- --nocapture`).

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    fs,
    net::TcpListener,
    process::{Child, Command, Stdio},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex,
    },
    thread,
    time::{Duration, Instant},
};

use rdkafka::consumer::Consumer;
use serde_json::{json, Value};
use sluice_tests::{hybris::HybrisDb, reader, s3::Bucket, unique, wait_until, WorkerProcess};

const ORDER_TYPE_PK: i64 = 8796093317202;
const ORDERS: i64 = 250;
const PARTITIONS: i32 = 3;
const TIMEOUT: Duration = Duration::from_secs(120);

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port()
}

struct Haproxy {
    child: Child,
    url: String,
    stats: String,
    _dir: tempfile::TempDir,
}

impl Haproxy {
    /// haproxy on 127.0.0.1 routing to `workers`, checking `/ready` every
    /// 300 ms (down after 2 failures, up after 2 successes), retrying a
    /// request on another worker when the connection fails.
    fn start(workers: &[&WorkerProcess]) -> Haproxy {
        let dir = tempfile::tempdir().expect("temp dir");
        let (port, stats_port) = (free_port(), free_port());
        let servers: String =
            workers.iter().enumerate().map(|(i, w)| format!("  server w{i} 127.0.0.1:{} check\n", w.port)).collect();
        let config = format!(
            "global\n  maxconn 256\n\
             defaults\n  mode http\n  timeout connect 1s\n  timeout client 30s\n  timeout server 30s\n\
             \x20 retries 3\n  option redispatch\n  option http-buffer-request\n\
             \x20 retry-on conn-failure empty-response response-timeout\n\
             frontend rest\n  bind 127.0.0.1:{port}\n  default_backend workers\n\
             backend workers\n  balance roundrobin\n  option httpchk GET /ready\n  http-check expect status 200\n\
             \x20 default-server inter 300ms fall 2 rise 2\n{servers}\
             listen stats\n  bind 127.0.0.1:{stats_port}\n  stats enable\n  stats uri /stats\n"
        );
        let path = dir.path().join("haproxy.cfg");
        fs::write(&path, config).expect("write haproxy.cfg");
        let log = fs::File::create(dir.path().join("haproxy.log")).expect("haproxy log");
        let child = Command::new("haproxy")
            .arg("-db")
            .arg("-f")
            .arg(&path)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("starting haproxy ({e}): install it with dev/deploy-check install"));
        let lb = Haproxy {
            child,
            url: format!("http://127.0.0.1:{port}"),
            stats: format!("http://127.0.0.1:{stats_port}/stats;csv"),
            _dir: dir,
        };
        wait_until("haproxy to see every worker UP", Duration::from_secs(30), || {
            let up = lb.servers().values().filter(|s| s.as_str() == "UP").count();
            (up == workers.len()).then_some(())
        });
        lb
    }

    /// Server name (w0, w1, …) → haproxy's status (UP, DOWN, …).
    fn servers(&self) -> BTreeMap<String, String> {
        let Ok(mut response) = ureq::get(&self.stats).call() else { return BTreeMap::new() };
        let text = response.body_mut().read_to_string().unwrap_or_default();
        let mut lines = text.lines();
        let header: Vec<&str> = lines.next().unwrap_or_default().trim_start_matches("# ").split(',').collect();
        let col = |name: &str| header.iter().position(|h| *h == name);
        let (Some(px), Some(sv), Some(st)) = (col("pxname"), col("svname"), col("status")) else {
            return BTreeMap::new();
        };
        lines
            .map(|l| l.split(',').collect::<Vec<_>>())
            .filter(|f| f.get(px) == Some(&"workers") && f.get(sv).is_some_and(|s| s.starts_with('w')))
            .map(|f| (f[sv].to_string(), f[st].to_string()))
            .collect()
    }
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One REST call through the load balancer: status and JSON body, or the
/// transport error.
fn call(base: &str, method: &str, path: &str, body: Option<&Value>) -> Result<(u16, Value), String> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(10)))
        .build()
        .into();
    let request = ureq::http::Request::builder()
        .method(method)
        .uri(format!("{base}{path}"))
        .header("Content-Type", "application/json")
        .body(body.map(Value::to_string).unwrap_or_default())
        .map_err(|e| e.to_string())?;
    let mut response = agent.run(request).map_err(|e| e.to_string())?;
    let status = response.status().as_u16();
    let text = response.body_mut().read_to_string().unwrap_or_default();
    Ok((status, serde_json::from_str(&text).unwrap_or(Value::Null)))
}

/// A Kafka Connect client's call: retried (the same idempotent request)
/// while the load balancer has no answer (transport error, 502, 503, 504).
fn connect_call(base: &str, method: &str, path: &str, body: Option<&Value>) -> (u16, Value) {
    wait_until(&format!("{method} {path} through haproxy"), TIMEOUT, || match call(base, method, path, body) {
        Ok((502..=504, _)) => None,
        Ok(answer) => Some(answer),
        Err(_) => None,
    })
}

/// The worker id each task of `connector` reports RUNNING on, once every
/// task is RUNNING (`tasks` of them) on none of `gone`.
fn running_elsewhere(lb: &str, connector: &str, tasks: usize, gone: &[String]) -> Option<Vec<String>> {
    let (code, status) = call(lb, "GET", &format!("/connectors/{connector}/status"), None).ok()?;
    let list = status["tasks"].as_array()?;
    let owners: Vec<String> = list
        .iter()
        .filter(|t| t["state"] == "RUNNING")
        .filter_map(|t| t["worker_id"].as_str().map(str::to_string))
        .filter(|w| !gone.contains(w))
        .collect();
    (code == 200 && list.len() == tasks && owners.len() == tasks).then_some(owners)
}

/// A probe's answer: the connector names, or why there was none.
type Probe = (Instant, Result<Vec<String>, String>);

/// Every GET /connectors through the load balancer, 10 per second, from
/// another thread: (when, the answer or why there was none).
struct Prober {
    stop: Arc<AtomicBool>,
    log: Arc<Mutex<Vec<Probe>>>,
    thread: Option<thread::JoinHandle<()>>,
}

impl Prober {
    fn start(lb: &str) -> Prober {
        let (stop, log) = (Arc::new(AtomicBool::new(false)), Arc::new(Mutex::new(Vec::new())));
        let (s, l, lb) = (stop.clone(), log.clone(), lb.to_string());
        let thread = thread::spawn(move || {
            while !s.load(Ordering::SeqCst) {
                let outcome = match call(&lb, "GET", "/connectors", None) {
                    Ok((200, Value::Array(names))) => {
                        Ok(names.iter().filter_map(|n| n.as_str().map(str::to_string)).collect())
                    }
                    Ok((code, body)) => Err(format!("HTTP {code} {body}")),
                    Err(e) => Err(e),
                };
                l.lock().expect("prober log").push((Instant::now(), outcome));
                thread::sleep(Duration::from_millis(100)); // the probe rate, not synchronisation
            }
        });
        Prober { stop, log, thread: Some(thread) }
    }

    /// Stops probing; returns the log.
    fn finish(mut self) -> Vec<Probe> {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            t.join().expect("prober thread");
        }
        std::mem::take(&mut *self.log.lock().expect("prober log"))
    }
}

/// The longest stretch without a successful answer that starts at or after
/// `from`: from the last success before a failure to the next success.
fn longest_outage(log: &[Probe], from: Instant) -> Duration {
    let mut longest = Duration::ZERO;
    let mut last_ok = from;
    for (at, outcome) in log.iter().filter(|(at, _)| *at >= from) {
        if outcome.is_ok() {
            longest = longest.max(at.duration_since(last_ok));
            last_ok = *at;
        }
    }
    longest
}

/// `<dir>/<topic>/partition=<p>/<topic>+<p>+<offset>.json` → (p, offset).
fn parse_key(key: &str, dir: &str, topic: &str) -> Option<(i32, i64)> {
    let rest = key.strip_prefix(&format!("{dir}/{topic}/partition="))?;
    let (partition, file) = rest.split_once('/')?;
    let p: i32 = partition.parse().ok()?;
    let offset = file.strip_suffix(".json")?.strip_prefix(&format!("{topic}+{p}+"))?;
    Some((p, offset.parse().ok()?))
}

#[test]
fn workers_behind_haproxy_survive_kill_9_and_scale_in_without_losing_records() {
    let mut db = HybrisDb::create("hyb_lb", true);
    let cluster = unique("deploy-lb");
    let mut workers: Vec<WorkerProcess> = (0..3).map(|_| WorkerProcess::start(&cluster, &[], &[])).collect();
    let haproxy = Haproxy::start(&workers.iter().collect::<Vec<_>>());
    let lb = haproxy.url.clone();

    // Connectors through the load balancer, as a Kafka Connect client does.
    let prefix = format!("{}.", unique("lb"));
    let topic = format!("{prefix}order");
    let dir = unique("lb-s3");
    let hybris = json!({
        "connector.class": "hybris-source", "tasks.max": "1", "hybris.mode": "jdbc", "hybris.jdbc.url": db.url,
        "hybris.item.types": "Order", "hybris.poll.lag.ms": "500", "poll.interval.ms": "50",
        "batch.max.rows": "5", "offset.flush.interval.ms": "200", "topic.prefix": prefix,
        "topic.creation.default.partitions": PARTITIONS.to_string(),
    });
    let (code, created) = connect_call(&lb, "POST", "/connectors", Some(&json!({"name": "hybris", "config": hybris})));
    assert_eq!(code, 201, "create hybris through haproxy: {created}");
    let mut s3 = sluice_tests::s3::sink_config(json!({
        "connector.class": "s3-sink", "tasks.max": "1", "topics": topic,
        "topics.dir": dir, "format.class": "json", "flush.size": "1", "offset.flush.interval.ms": "500",
    }));
    let (code, created) = connect_call(&lb, "PUT", "/connectors/s3/config", Some(&s3));
    assert_eq!(code, 201, "create s3 with PUT through haproxy: {created}");
    // Changed: three tasks, one per partition.
    s3["tasks.max"] = json!("3");
    let (code, changed) = connect_call(&lb, "PUT", "/connectors/s3/config", Some(&s3));
    assert_eq!(code, 200, "change s3 through haproxy: {changed}");
    // Each worker answers from its own view of the configs topic, as a Kafka
    // Connect follower does: the worker that did not take the PUT may answer
    // the old config for a moment (a retry), but never anything else.
    wait_until("every worker to answer the changed config", TIMEOUT, || {
        let (_, config) = connect_call(&lb, "GET", "/connectors/s3/config", None);
        assert!(
            config["tasks.max"] == "1" || config["tasks.max"] == "3",
            "neither the old nor the new config: {config}"
        );
        (config["tasks.max"] == "3").then_some(())
    });
    wait_until("s3's three tasks RUNNING", TIMEOUT, || running_elsewhere(&lb, "s3", 3, &[]));
    // Paused and resumed.
    assert_eq!(connect_call(&lb, "PUT", "/connectors/s3/pause", None).0, 202);
    wait_until("s3 PAUSED", TIMEOUT, || {
        let (_, status) = call(&lb, "GET", "/connectors/s3/status", None).ok()?;
        (status["connector"]["state"] == "PAUSED").then_some(())
    });
    assert_eq!(connect_call(&lb, "PUT", "/connectors/s3/resume", None).0, 202);
    wait_until("s3 RUNNING again", TIMEOUT, || running_elsewhere(&lb, "s3", 3, &[]));
    // Created and deleted.
    let mut scratch_config = s3.clone();
    scratch_config["topics"] = json!(format!("{prefix}none"));
    let scratch = json!({"name": "scratch", "config": scratch_config});
    assert_eq!(connect_call(&lb, "POST", "/connectors", Some(&scratch)).0, 201);
    assert_eq!(connect_call(&lb, "DELETE", "/connectors/scratch", None).0, 204);
    // As for a changed config: a worker that did not take the DELETE may
    // answer from its view for a moment, with the connector or without it.
    wait_until("the deleted connector to answer 404", TIMEOUT, || {
        let (code, body) = connect_call(&lb, "GET", "/connectors/scratch", None);
        assert!(code == 200 || code == 404, "neither the connector nor 404: {code} {body}");
        (code == 404).then_some(())
    });
    wait_until("hybris RUNNING", TIMEOUT, || running_elsewhere(&lb, "hybris", 1, &[]));

    // Orders that become visible 120 ms apart over the next 30 s.
    let values: Vec<String> = (0..ORDERS)
        .map(|i| {
            let ts = format!("(now() AT TIME ZONE 'UTC' + interval '{} milliseconds')", 120 * i);
            format!("(1, {ts}, {ts}, {ORDER_TYPE_PK}, {}, 'L{i:03}', 8796093054980)", 8796800000000 + i)
        })
        .collect();
    db.exec(&format!(
        "INSERT INTO orders (hjmpts, createdts, modifiedts, typepkstring, pk, p_code, p_user) VALUES {}",
        values.join(", ")
    ));
    let expected: BTreeSet<(i64, String)> = db.order_versions().into_keys().collect();

    let bucket = Bucket::new();
    let mut objects: HashMap<String, Value> = HashMap::new();
    let read_objects = |objects: &mut HashMap<String, Value>| {
        for key in bucket.keys(&format!("{dir}/")) {
            objects.entry(key).or_insert_with_key(|key| {
                let text = bucket.text(key);
                serde_json::from_str(text.trim()).unwrap_or_else(|e| panic!("{key}: not one JSON record ({e})"))
            });
        }
        objects.len()
    };
    let prober = Prober::start(&lb);
    let started = Instant::now();
    wait_until("the first 30 order changes in S3", TIMEOUT, || (read_objects(&mut objects) >= 30).then_some(()));

    // kill -9 the worker running the source.
    let ids: Vec<String> = workers.iter().map(WorkerProcess::worker_id).collect();
    let source_owner = running_elsewhere(&lb, "hybris", 1, &[]).expect("hybris running")[0].clone();
    let killed = ids.iter().position(|id| *id == source_owner).expect("the source runs on one of the three");
    let kill_at = Instant::now();
    workers[killed].kill();
    let gone = vec![ids[killed].clone()];
    let down_after_kill = wait_until("haproxy to mark the killed worker DOWN", TIMEOUT, || {
        (haproxy.servers().get(&format!("w{killed}")).map(String::as_str) == Some("DOWN")).then(|| kill_at.elapsed())
    });
    wait_until("the source RUNNING on another worker", TIMEOUT, || running_elsewhere(&lb, "hybris", 1, &gone));
    let source_moved = kill_at.elapsed();
    wait_until("s3's tasks RUNNING on the live workers", TIMEOUT, || running_elsewhere(&lb, "s3", 3, &gone));
    let sink_moved = kill_at.elapsed();

    // SIGTERM another worker (a scale-in), while records still arrive.
    let in_s3_before_term = read_objects(&mut objects);
    assert!(in_s3_before_term < expected.len(), "the stream ended before the scale-in: it would test nothing");
    let stopped = (0..3).find(|i| *i != killed).expect("another worker");
    let term_at = Instant::now();
    let exit = workers[stopped].terminate();
    let shutdown = term_at.elapsed();
    assert!(exit.success(), "SIGTERM: the worker exits cleanly, not {exit}");
    let gone = vec![ids[killed].clone(), ids[stopped].clone()];
    let down_after_term = wait_until("haproxy to mark the stopped worker DOWN", TIMEOUT, || {
        (haproxy.servers().get(&format!("w{stopped}")).map(String::as_str) == Some("DOWN")).then(|| term_at.elapsed())
    });
    let survivor = (0..3).find(|i| *i != killed && *i != stopped).expect("a survivor");
    let owners = wait_until("every task RUNNING on the last worker", TIMEOUT, || {
        let mut owners = running_elsewhere(&lb, "hybris", 1, &gone)?;
        owners.extend(running_elsewhere(&lb, "s3", 3, &gone)?);
        Some(owners)
    });
    let tasks_moved_after_term = term_at.elapsed();
    assert!(owners.iter().all(|o| *o == ids[survivor]), "tasks run on the survivor only: {owners:?}");

    // No record lost: S3 holds every offset of every partition exactly once
    // (objects of one record each, named by offset), and every order change.
    let consumer = reader(&topic, PARTITIONS);
    let events = wait_until(
        &format!("every order change in s3://{}/{dir}/ (worker log:\n{})", bucket.name, workers[survivor].log_text()),
        TIMEOUT,
        || {
            read_objects(&mut objects);
            let events: BTreeSet<(i64, String)> = objects
                .values()
                .filter_map(|r| Some((r["pk"].as_i64()?, r["modifiedTS"].as_str()?.to_string())))
                .collect();
            expected.is_subset(&events).then_some(events)
        },
    );
    let unexpected: Vec<_> = events.difference(&expected).collect();
    assert!(unexpected.is_empty(), "order changes that never happened: {unexpected:?}");
    for p in 0..PARTITIONS {
        let (_, high) = consumer.fetch_watermarks(&topic, p, Duration::from_secs(10)).expect("watermarks");
        let offsets = wait_until(&format!("partition {p}: every offset below {high} in S3"), TIMEOUT, || {
            read_objects(&mut objects);
            let offsets: BTreeSet<i64> = objects
                .keys()
                .map(|k| parse_key(k, &dir, &topic).unwrap_or_else(|| panic!("{k} does not follow Confluent's naming")))
                .filter(|(partition, _)| *partition == p)
                .map(|(_, o)| o)
                .collect();
            (offsets.range(..high).count() == high as usize).then_some(offsets)
        });
        assert_eq!(offsets.iter().copied().collect::<Vec<_>>(), (0..high).collect::<Vec<_>>(), "partition {p}");
    }

    // REST through haproxy answered all along, and never wrongly.
    let log = prober.finish();
    let wrong: Vec<_> = log
        .iter()
        .filter_map(|(_, o)| o.as_ref().ok())
        .filter(|names| !(names.contains(&"hybris".to_string()) && names.contains(&"s3".to_string())))
        .collect();
    assert!(wrong.is_empty(), "GET /connectors answered without the connectors: {wrong:?}");
    let failed = log.iter().filter(|(_, o)| o.is_err()).count();
    let rest_outage_kill = longest_outage(&log, kill_at);
    let rest_outage_term = longest_outage(&log, term_at);
    assert!(log.last().is_some_and(|(_, o)| o.is_ok()), "REST through haproxy answers at the end");
    eprintln!(
        "[deploy_haproxy] {} REST probes through haproxy over {:.1} s, {failed} without an answer; \
         longest gap without an answer: {:.2} s from the kill -9 on, {:.2} s from the SIGTERM on",
        log.len(),
        started.elapsed().as_secs_f64(),
        rest_outage_kill.as_secs_f64(),
        rest_outage_term.as_secs_f64(),
    );
    eprintln!(
        "[deploy_haproxy] kill -9: haproxy marked the worker DOWN after {:.2} s; the source ran again elsewhere \
         after {:.2} s, the sink tasks after {:.2} s",
        down_after_kill.as_secs_f64(),
        source_moved.as_secs_f64(),
        sink_moved.as_secs_f64()
    );
    eprintln!(
        "[deploy_haproxy] SIGTERM: the worker exited after {:.2} s, haproxy marked it DOWN after {:.2} s, \
         every task ran on the last worker after {:.2} s; {} order changes in S3, none lost",
        shutdown.as_secs_f64(),
        down_after_term.as_secs_f64(),
        tasks_moved_after_term.as_secs_f64(),
        expected.len()
    );
}
