"""Checks deploy/prometheus/dashboard.json and alerts.yml against a live
worker (dev/deploy-check prometheus BIN_DIR).

Every query of the dashboard is valid PromQL (promtool parses it as a
recording rule), and every metric a query or an alert names is exported by a
real worker: a worker from BIN_DIR runs a counter source into a topic and the
scheduled-failure test sink (tests/plugins/flaky-sink) out of it, with a
dead-letter queue, so every family the queries use gets samples; the check
polls /metrics until each is there. `up` is Prometheus' own and is skipped.
"""

import argparse
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PROM = os.path.join(REPO, "deploy", "prometheus")
HISTOGRAM_SUFFIXES = ("_bucket", "_count", "_sum")


def log(msg):
    print(f"[deploy-check] {msg}", file=sys.stderr, flush=True)


def fail(msg):
    log(f"FAILED: {msg}")
    sys.exit(1)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def request(method, url, body=None):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()
    except OSError:
        return 0, ""


def dashboard_queries(dashboard):
    queries = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    for var in dashboard.get("templating", {}).get("list", []):
        if isinstance(var.get("query"), dict):
            queries.append(var["query"]["query"])
    return queries


def metric_names(expr):
    """Metric names a query names (histogram series mapped to their family)."""
    names = set()
    for name in re.findall(r"\b(sluice_[a-z0-9_]+)\b", expr):
        for suffix in HISTOGRAM_SUFFIXES:
            if name.endswith(suffix) and name.startswith(("sluice_commit_seconds", "sluice_put_seconds")):
                name = name[: -len(suffix)]
        names.add(name)
    return names


def families_with_samples(text):
    """Families of a Prometheus text exposition that have at least one sample."""
    declared = set(re.findall(r"^# TYPE (\S+) ", text, re.M))
    sampled = set()
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name = re.split(r"[{ ]", line, maxsplit=1)[0]
            for suffix in HISTOGRAM_SUFFIXES:
                if name.endswith(suffix) and name[: -len(suffix)] in declared:
                    name = name[: -len(suffix)]
            sampled.add(name)
    return sampled


def check_promql(queries):
    """promtool parses each query (Grafana's variables replaced; its
    `label_values(SELECTOR, LABEL)` checked as the selector)."""
    def promql(q):
        q = re.sub(r"^label_values\((.*),\s*\w+\)$", r"\1", q)
        return q.replace("$__rate_interval", "5m").replace("$instance", ".*")
    rules = {"groups": [{"name": "dashboard", "rules": [
        {"record": f"dashboard:query_{i}", "expr": promql(q)} for i, q in enumerate(queries)]}]}
    with tempfile.NamedTemporaryFile("w", suffix=".yml", delete=False) as f:
        json.dump(rules, f)  # JSON is YAML
    try:
        out = subprocess.run(["promtool", "check", "rules", f.name], text=True, capture_output=True)
        if out.returncode != 0:
            fail(f"a dashboard query is not valid PromQL:\n{out.stdout}{out.stderr}")
    finally:
        os.unlink(f.name)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin-dir", required=True)
    args = ap.parse_args()
    bootstrap = os.environ.get("KAFKA_BOOTSTRAP") or fail("KAFKA_BOOTSTRAP is not set (eval \"$(dev/services env)\")")

    with open(os.path.join(PROM, "dashboard.json")) as f:
        dashboard = json.load(f)
    queries = dashboard_queries(dashboard)
    check_promql(queries)
    wanted = set().union(*(metric_names(q) for q in queries))
    with open(os.path.join(PROM, "alerts.yml")) as f:
        wanted |= metric_names(f.read())
    log(f"{len(queries)} dashboard queries parse; metrics named by the dashboard and alerts: {', '.join(sorted(wanted))}")

    work = tempfile.mkdtemp(prefix="sluice-dashboard-")
    plugins = os.path.join(work, "plugins")
    os.makedirs(plugins)
    for lib in ("libexample_counter_source.so", "libtest_plugin_flaky.so"):
        src = os.path.join(args.bin_dir, lib)
        if not os.path.exists(src):
            fail(f"{src} is missing: build the workspace first (cargo build --workspace)")
        os.symlink(src, os.path.join(plugins, lib))
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    run_id = uuid.uuid4().hex[:8]
    env = dict(os.environ, SLUICE_BOOTSTRAP_SERVERS=bootstrap, SLUICE_CLUSTER_ID=f"deploy-dash-{run_id}",
               SLUICE_REST_LISTEN=f"127.0.0.1:{port}", SLUICE_PLUGIN_PATH=plugins, SLUICE_LOG="warn")
    worker_log = open(os.path.join(work, "worker.log"), "w")
    worker = subprocess.Popen([os.path.join(args.bin_dir, "sluice"), "worker"], env=env,
                              stdout=worker_log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while request("GET", base + "/ready")[0] != 200:
            if time.monotonic() > deadline or worker.poll() is not None:
                fail(f"the worker did not become ready (see {work}/worker.log)")
            time.sleep(0.2)
        topic = f"deploy-dash-{run_id}"
        code, body = request("POST", base + "/connectors", {"name": f"{topic}-source", "config": {
            "connector.class": "example-counter-source", "topic": topic,
            "counter.max": "2000", "counter.interval.ms": "20", "counter.batch.size": "50"}})
        if code != 201:
            fail(f"creating the source connector: {code} {body}")
        code, body = request("POST", base + "/connectors", {"name": f"{topic}-sink", "config": {
            "connector.class": "test-flaky-sink", "topics": topic, "file": os.path.join(work, "sink.txt"),
            "errors.tolerance": "all", "errors.retry.timeout": "60000", "errors.retry.delay.max.ms": "100",
            "errors.deadletterqueue.topic.name": f"{topic}-dlq", "offset.flush.interval.ms": "200"}})
        if code != 201:
            fail(f"creating the sink connector: {code} {body}")

        deadline = time.monotonic() + 120
        missing = wanted
        while missing:
            code, text = request("GET", base + "/metrics")
            if code == 200:
                missing = wanted - families_with_samples(text)
            if not missing:
                break
            if time.monotonic() > deadline or worker.poll() is not None:
                fail(f"the live worker's /metrics never showed {sorted(missing)}: the dashboard or an alert "
                     f"names a metric the worker does not export")
            time.sleep(0.5)
        log(f"every metric of the dashboard and the alerts is in a live worker's /metrics")
        for name in (f"{topic}-sink", f"{topic}-source"):
            request("DELETE", f"{base}/connectors/{name}")
    finally:
        if worker.poll() is None:
            worker.send_signal(signal.SIGTERM)
            try:
                worker.wait(timeout=60)
            except subprocess.TimeoutExpired:
                worker.kill()
                worker.wait()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
