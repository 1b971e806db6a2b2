"""Builds deploy/ecs/Dockerfile's runtime stage from already-built binaries
and runs a worker inside it (dev/deploy-check image BIN_DIR).

The runtime stage copies from an `artifacts` stage; here that is an image
made from BIN_DIR's `sluice` and `libsluice_*.so` (stripped, as the build
stage does), so the stage that ships is the one built and run. `podman run`
is refused in this sandbox; `buildah run --isolation chroot` works and shares
the host's network, so the worker's REST API is reached on 127.0.0.1.

Checks: the image builds; `sluice health` (the HEALTHCHECK) answers inside
it; /health and /ready answer; GET /connector-plugins lists every class that
`sluice plugins list` finds in the same libraries on the host, loaded from the
image's plugin path; the worker runs as uid 10001 and has a unique worker id
from the entrypoint; SIGTERM stops it cleanly. Prints the image size.
"""

import argparse
import glob
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
ARTIFACTS = "localhost/sluice-artifacts:check"
IMAGE = "localhost/sluice:check"


def log(msg):
    print(f"[deploy-check] {msg}", file=sys.stderr, flush=True)


def fail(msg):
    log(f"FAILED: {msg}")
    sys.exit(1)


def run(*cmd, **kw):
    return subprocess.run(cmd, check=True, text=True, capture_output=True, **kw).stdout.strip()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(url, timeout=2):
    """(status, parsed JSON body or None); status 0 when nothing answers."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, json.loads(r.read() or b"null")
    except urllib.error.HTTPError as e:
        return e.code, None
    except (OSError, ValueError):
        return 0, None


def wait_for(what, probe, deadline_s, proc=None):
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        value = probe()
        if value:
            return value
        if proc is not None and proc.poll() is not None:
            fail(f"the worker exited ({proc.returncode}) while waiting for {what}")
        time.sleep(0.2)
    fail(f"{what} within {deadline_s} s")


def host_classes(bin_dir, plugin_dir):
    out = run(os.path.join(bin_dir, "sluice"), "plugins", "list", "--plugin-path", plugin_dir)
    return sorted(line.split()[0] for line in out.splitlines()[1:] if line.strip())


def check_build_stage():
    """The build stage is not built here (no Rust image can be pulled); at
    least it must build every shipping crate: the runtime and each crate
    under connectors/, by package name."""
    with open(os.path.join(REPO, "deploy", "ecs", "Dockerfile")) as f:
        dockerfile = f.read()
    built = set(re.findall(r"-p ([A-Za-z][\w-]*)", dockerfile))
    shipping = {"sluice-runtime"}
    for manifest in glob.glob(os.path.join(REPO, "connectors", "*", "Cargo.toml")):
        with open(manifest) as f:
            shipping.add(re.search(r'^name = "([^"]+)"', f.read(), re.M).group(1))
    if built != shipping:
        fail(f"the Dockerfile's build stage builds {sorted(built)}, the shipping crates are {sorted(shipping)}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin-dir", required=True)
    args = ap.parse_args()
    bootstrap = os.environ.get("KAFKA_BOOTSTRAP") or fail("KAFKA_BOOTSTRAP is not set (eval \"$(dev/services env)\")")

    check_build_stage()
    libs = sorted(glob.glob(os.path.join(args.bin_dir, "libsluice_*.so")))
    if not libs:
        fail(f"no libsluice_*.so in {args.bin_dir}: build the connectors first")
    work = tempfile.mkdtemp(prefix="sluice-image-")
    try:
        out = os.path.join(work, "out")
        os.makedirs(os.path.join(out, "plugins"))
        shutil.copy2(os.path.join(args.bin_dir, "sluice"), os.path.join(out, "sluice"))
        for lib in libs:
            shutil.copy2(lib, os.path.join(out, "plugins"))
        run("strip", "--strip-debug", os.path.join(out, "sluice"), *glob.glob(os.path.join(out, "plugins", "*.so")))
        expected = host_classes(args.bin_dir, os.path.join(out, "plugins"))
        if not expected:
            fail("sluice plugins list found no class on the host")

        # Replaced images would stay behind untagged: remove them first.
        subprocess.run(["buildah", "rmi", "-f", IMAGE, ARTIFACTS], capture_output=True)
        ctr = run("buildah", "from", "scratch")
        run("buildah", "copy", ctr, out, "/out")
        run("buildah", "commit", "--quiet", "--rm", ctr, ARTIFACTS)

        t0 = time.monotonic()
        build = subprocess.run(
            ["buildah", "build", "--isolation", "chroot", "--format", "docker", "--target", "runtime",
             "--build-arg", f"ARTIFACTS={ARTIFACTS}", "-f", "deploy/ecs/Dockerfile", "-t", IMAGE, "."],
            cwd=REPO, text=True, capture_output=True)
        # buildah 1.28 leaves the working container of the instruction-less
        # `artifacts` stage behind.
        for name in run("buildah", "containers", "--format", "{{.ContainerName}}").split():
            if name.startswith("sluice-artifacts-working-container"):
                subprocess.run(["buildah", "rm", name], capture_output=True)
        if build.returncode != 0:
            fail(f"buildah build of the runtime stage:\n{build.stdout[-3000:]}\n{build.stderr[-3000:]}")
        size = json.loads(run("buildah", "images", "--json", IMAGE))[0]["size"]
        log(f"image {IMAGE} built in {time.monotonic() - t0:.0f} s; size {size} "
            f"(sluice and {len(libs)} connector libraries, debug info stripped)")

        # Docker format: OCI image configs have no HEALTHCHECK.
        config = json.loads(run("buildah", "inspect", "--type", "image", IMAGE))["Docker"]["config"]
        if config.get("User") != "10001:10001":
            fail(f"the image runs as {config.get('User')!r}, not the non-root 10001:10001")
        if (config.get("Healthcheck") or {}).get("Test") != ["CMD", "/usr/local/bin/sluice", "health"]:
            fail(f"the image's HEALTHCHECK is {config.get('Healthcheck')}, not `sluice health`")

        port = free_port()
        cluster = f"deploy-check-{uuid.uuid4().hex[:8]}"
        env = {"SLUICE_BOOTSTRAP_SERVERS": bootstrap, "SLUICE_CLUSTER_ID": cluster,
               "SLUICE_REST_LISTEN": f"127.0.0.1:{port}", "SLUICE_SHUTDOWN_TIMEOUT_MS": "10000"}
        env_args = [a for k, v in env.items() for a in ("--env", f"{k}={v}")]
        ctr = run("buildah", "from", IMAGE)
        worker_log = open(os.path.join(work, "worker.log"), "w")
        worker = subprocess.Popen(["buildah", "run", "--isolation", "chroot", *env_args, ctr, "--",
                                   "/usr/local/bin/sluice-entrypoint", "worker"],
                                  stdout=worker_log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            base = f"http://127.0.0.1:{port}"
            t0 = time.monotonic()
            wait_for("/health answering 200", lambda: get(base + "/health")[0] == 200, 60, worker)
            wait_for("/ready answering 200 (joined the cluster)", lambda: get(base + "/ready")[0] == 200, 60, worker)
            log(f"worker in the image ready {time.monotonic() - t0:.1f} s after start")

            health = subprocess.run(["buildah", "run", "--isolation", "chroot", *env_args, ctr, "--",
                                     "/usr/local/bin/sluice", "health"], text=True, capture_output=True)
            if health.returncode != 0:
                fail(f"the HEALTHCHECK command failed inside the image: {health.stderr}")

            listed = subprocess.run(["buildah", "run", "--isolation", "chroot", ctr, "--",
                                     "/usr/local/bin/sluice", "plugins", "list"], text=True, capture_output=True)
            in_image = sorted(line.split()[0] for line in listed.stdout.splitlines()[1:] if line.strip())
            if listed.returncode != 0 or "warning:" in listed.stderr or in_image != expected:
                fail(f"`sluice plugins list` in the image (SLUICE_PLUGIN_PATH) found {in_image}, expected {expected}; "
                     f"stderr: {listed.stderr}")
            # The REST API lists classes and their aliases; every class must be there.
            status, plugins = get(base + "/connector-plugins?connectorsOnly=true")
            served = {p["class"] for p in plugins or []}
            if status != 200 or not set(expected) <= served:
                fail(f"GET /connector-plugins of the worker in the image: {sorted(served)}; expected {expected}")
            log(f"every connector class loads from /opt/sluice/plugins: {', '.join(expected)}")

            sluice_pids = run("pgrep", "-s", str(worker.pid), "-x", "sluice").split()
            if len(sluice_pids) != 1:
                fail(f"expected one sluice process in the container's session, found {sluice_pids}")
            with open(f"/proc/{sluice_pids[0]}/status") as f:
                uid = next(line.split()[1] for line in f if line.startswith("Uid:"))
            if uid != "10001":
                fail(f"the worker process runs as uid {uid}, not 10001")

            # Placement keys on the worker id (host:port of the advertised
            # URL): the entrypoint must make it the container's own address,
            # not the shared listen address.
            with open(os.path.join(work, "worker.log")) as f:
                listening = [json.loads(line) for line in f if "REST API listening" in line]
            worker_id = listening[0].get("fields", listening[0]).get("worker_id") if listening else None
            if not worker_id or worker_id.startswith(("127.", "0.0.0.0")) or not worker_id.endswith(f":{port}"):
                fail(f"the worker id is {worker_id!r}: the entrypoint did not advertise the container's address")
            log(f"worker id from the entrypoint: {worker_id}; running as uid 10001")

            t0 = time.monotonic()
            os.kill(int(sluice_pids[0]), signal.SIGTERM)
            try:
                rc = worker.wait(timeout=60)
            except subprocess.TimeoutExpired:
                fail("the worker did not stop within 60 s of SIGTERM")
            stop_s = time.monotonic() - t0
            with open(os.path.join(work, "worker.log")) as f:
                text = f.read()
            if rc != 0 or "worker stopped" not in text:
                fail(f"the worker did not stop cleanly on SIGTERM (exit {rc}):\n{text[-3000:]}")
            log(f"SIGTERM: the worker stopped cleanly in {stop_s:.1f} s")
        finally:
            if worker.poll() is None:
                os.killpg(worker.pid, signal.SIGKILL)
                worker.wait()
            subprocess.run(["buildah", "rm", ctr], capture_output=True)
        log("image check passed")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
