#!/usr/bin/env python3
"""Patches the Tansu 0.6.0 sources that dev/services builds the test broker from.

Tansu's in-memory engine (dynostore) answers a fetch only with the record
batches whose base offset is at or after the requested offset. A consumer that
resumes inside a batch (from a committed offset, after a pause, after a
rebalance) then gets nothing, forever: measured with tests/tests/worker_s3.rs
(a sink stalled at offset 6000 of a 5000-record batch starting at 5000) and a
plain rdkafka consumer assigned at offset 50 of one 100-record batch (0
records). Apache Kafka returns the batch holding the offset and the client
skips the records before it; the patch makes Tansu do the same.

Usage: patch.py <tansu-storage source dir> <tansu source dir>
"""
import pathlib
import sys

storage, tansu = (pathlib.Path(p) for p in sys.argv[1:3])

dynostore = storage / "src" / "dynostore.rs"
text = dynostore.read_text()
old = "        for offset in offsets.split_off(&offset) {\n"
new = (
    "        // sluice patch: start at the batch holding `offset`, as Kafka does.\n"
    "        let first = offsets.range(..=offset).next_back().copied().unwrap_or(offset);\n"
    "        for offset in offsets.split_off(&first) {\n"
)
if text.count(old) != 1:
    sys.exit(f"patch.py: the fetch loop was not found exactly once in {dynostore}; is this Tansu 0.6.0?")
dynostore.write_text(text.replace(old, new))

manifest = tansu / "Cargo.toml"
manifest.write_text(
    manifest.read_text()
    + f'\n[patch.crates-io]\ntansu-storage = {{ path = "{storage.resolve()}" }}\n'
)
print("patched", dynostore, "and", manifest)
