#!/usr/bin/env python3
"""Progress of the demo's S3 side, for dev/demo (one call per refresh).

  s3stat.py progress STATE_FILE   -> "objects records latency_ms" (latency: - if none yet)
  s3stat.py sample STATE_FILE     -> a sample key and its first record

Lists s3://$S3_BUCKET/$DEMO_PREFIX/ and reads each object once (the keys
already read and what they held are cached in STATE_FILE, so a refresh only
downloads new objects).

End-to-end latency of an object = its S3 LastModified (the S3 server's clock:
when the object became visible) minus the newest modifiedTS among its records
(the PostgreSQL clock in UTC: when Hybris changed the row). Both clocks are
this machine's, so the difference is honest; it includes the connector's
deliberate poll lag (hybris.poll.lag.ms) and the sink's rotation interval. The
latency shown is the one of the newest object; objects holding only changes
older than $DEMO_SINCE (the sample data's backlog) have none.
"""
import json
import os
import sys
from datetime import datetime, timezone

import boto3
from botocore.config import Config


def client():
    return boto3.client(
        "s3",
        endpoint_url=os.environ["S3_ENDPOINT"],
        aws_access_key_id=os.environ["S3_ACCESS_KEY"],
        aws_secret_access_key=os.environ["S3_SECRET_KEY"],
        region_name=os.environ.get("S3_REGION", "us-east-1"),
        config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 2}),
    )


def parse_ts(text):
    return datetime.strptime(text[:26], "%Y-%m-%dT%H:%M:%S.%f").replace(tzinfo=timezone.utc)


def refresh(state_path):
    try:
        with open(state_path) as f:
            state = json.load(f)
    except (OSError, ValueError):
        state = {}
    s3 = client()
    bucket = os.environ["S3_BUCKET"]
    prefix = os.environ["DEMO_PREFIX"].rstrip("/") + "/"
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for obj in page.get("Contents", []):
            key = obj["Key"]
            if key in state:
                continue
            body = s3.get_object(Bucket=bucket, Key=key)["Body"].read().decode("utf-8", "replace")
            lines = [l for l in body.splitlines() if l.strip()]
            newest = None
            for line in lines:
                try:
                    ts = json.loads(line).get("modifiedTS")
                except ValueError:
                    continue
                if ts and (newest is None or ts > newest):
                    newest = ts
            written = obj["LastModified"].astimezone(timezone.utc)
            latency = None
            # Backlog (sample data from the past) says nothing about latency:
            # only changes made while the demo runs count.
            since = os.environ.get("DEMO_SINCE", "")
            if newest and newest >= since:
                latency = int((written - parse_ts(newest)).total_seconds() * 1000)
            state[key] = {
                "records": len(lines),
                "written": written.isoformat(),
                "latency_ms": latency,
                "first": lines[0] if lines else "",
            }
    tmp = state_path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(state, f)
    os.replace(tmp, state_path)
    return state


def main():
    cmd, state_path = sys.argv[1], sys.argv[2]
    state = refresh(state_path)
    newest = max(state.items(), key=lambda kv: (kv[1]["written"], kv[0]), default=None)
    if cmd == "progress":
        records = sum(v["records"] for v in state.values())
        lat = "-"
        if newest and newest[1]["latency_ms"] is not None:
            lat = str(newest[1]["latency_ms"])
        print(len(state), records, lat)
    elif cmd == "sample":
        orders = sorted((k, v) for k, v in state.items() if ".order" in k)
        pick = orders[-1] if orders else newest
        if pick:
            print(pick[0])
            print(pick[1]["first"])
        lats = sorted(v["latency_ms"] for v in state.values() if v["latency_ms"] is not None)
        if lats:
            print("latency_ms min/median/max %d %d %d" % (lats[0], lats[len(lats) // 2], lats[-1]))


if __name__ == "__main__":
    main()
