"""Records written by a third-party Avro serializer, with the JSON Kafka
Connect would make of them.

Serializes the records below with confluent-kafka's AvroSerializer (which
registers the schema with the registry at --registry, as a producer does)
and prints one JSON line per record:

    {"key": "...", "value": "<hex of the Confluent wire-format bytes>",
     "expected": <the JSON a Kafka Connect worker with Confluent's
                  AvroConverter and the S3 sink's JsonFormat writes>}

"expected" is computed here from the Python values, independently of
Sluice, following Confluent's AvroData (Avro -> Connect) and Kafka's
JsonConverter with schemas disabled (Connect -> JSON); the mapping is in
docs/decisions/0030-avro-and-json-schema-converters.md.

Run through dev/confluent-python (its venv has confluent-kafka and
fastavro). tests/tests/worker_converters.rs runs it against the Schema
Registry fake and compares with records.jsonl here; with
SLUICE_REGENERATE_GOLDEN=1 that test rewrites records.jsonl instead.
"""

import argparse
import base64
import datetime
import decimal
import json
import struct
import sys
import uuid

from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroSerializer
from confluent_kafka.serialization import MessageField, SerializationContext

SCHEMA = {
    "type": "record",
    "name": "Order",
    "namespace": "shop",
    "doc": "an order",
    "fields": [
        {"name": "id", "type": "long"},
        {"name": "code", "type": "string"},
        {"name": "qty", "type": "int"},
        {"name": "paid", "type": "boolean"},
        {"name": "ratio", "type": "float"},
        {"name": "weight", "type": "double"},
        {"name": "price", "type": {"type": "bytes", "logicalType": "decimal", "precision": 10, "scale": 2}},
        {
            "name": "total",
            "type": {"type": "fixed", "name": "Amount", "size": 8, "logicalType": "decimal", "precision": 18, "scale": 4},
        },
        {"name": "placed", "type": {"type": "long", "logicalType": "timestamp-millis"}},
        {"name": "placed_us", "type": {"type": "long", "logicalType": "timestamp-micros"}},
        {"name": "day", "type": {"type": "int", "logicalType": "date"}},
        {"name": "at", "type": {"type": "int", "logicalType": "time-millis"}},
        {"name": "at_us", "type": {"type": "long", "logicalType": "time-micros"}},
        {"name": "ref", "type": {"type": "string", "logicalType": "uuid"}},
        {"name": "note", "type": ["null", "string"], "default": None},
        {"name": "status", "type": {"type": "enum", "name": "Status", "symbols": ["NEW", "PAID", "SHIPPED"]}},
        {"name": "attrs", "type": {"type": "map", "values": "double"}},
        {"name": "blob", "type": "bytes"},
        {"name": "tag", "type": {"type": "fixed", "name": "Tag", "size": 4}},
        {"name": "lines", "type": {"type": "array", "items": "string"}},
        {
            "name": "customer",
            "type": {
                "type": "record",
                "name": "Customer",
                "fields": [{"name": "uid", "type": "string"}, {"name": "vip", "type": "boolean"}],
            },
        },
        {"name": "choice", "type": ["int", "string", "Customer"]},
        {"name": "maybe", "type": ["null", "long", "boolean"]},
    ],
}

UTC = datetime.timezone.utc


def records():
    """Three orders covering every branch of the mapping (negative and
    padded decimals, null and non-null unions, each union member)."""
    return [
        (
            "o-1",
            {
                "id": 1,
                "code": "A-1",
                "qty": 3,
                "paid": True,
                "ratio": 0.1,
                "weight": 2.5,
                "price": decimal.Decimal("123.45"),
                "total": decimal.Decimal("-1.5000"),
                "placed": datetime.datetime(2024, 3, 1, 12, 30, 15, 123000, tzinfo=UTC),
                "placed_us": datetime.datetime(2024, 3, 1, 12, 30, 15, 123456, tzinfo=UTC),
                "day": datetime.date(2024, 3, 1),
                "at": datetime.time(12, 30, 15, 123000),
                "at_us": datetime.time(12, 30, 15, 123456),
                "ref": uuid.UUID("5f1c9a4e-3c1b-4d2e-9a7f-0b1c2d3e4f50"),
                "note": "leave at door",
                "status": "PAID",
                "attrs": {"w": 1.25, "h": -3.0},
                "blob": b"\x00\x01\xfe\xff",
                "tag": b"ABCD",
                "lines": ["x", "y"],
                "customer": {"uid": "c-9", "vip": False},
                "choice": 42,
                "maybe": None,
            },
        ),
        (
            "o-2",
            {
                "id": -2,
                "code": "",
                "qty": -7,
                "paid": False,
                "ratio": -1.5,
                "weight": 1e20,
                "price": decimal.Decimal("-0.01"),
                "total": decimal.Decimal("12345678901234.5678"),
                "placed": datetime.datetime(1969, 12, 31, 23, 59, 59, 999000, tzinfo=UTC),
                "placed_us": datetime.datetime(1970, 1, 1, tzinfo=UTC),
                "day": datetime.date(1969, 7, 20),
                "at": datetime.time(0, 0),
                "at_us": datetime.time(23, 59, 59, 999999),
                "ref": uuid.UUID("00000000-0000-0000-0000-000000000001"),
                "note": None,
                "status": "NEW",
                "attrs": {},
                "blob": b"",
                "tag": b"\x00\x00\x00\x80",
                "lines": [],
                "customer": {"uid": "c-\u00e9\u4e2d", "vip": True},
                "choice": "text",
                "maybe": 9007199254740993,
            },
        ),
        (
            "o-3",
            {
                "id": 3,
                "code": "C-3",
                "qty": 0,
                "paid": True,
                "ratio": 3.4028234663852886e38,
                "weight": -0.0,
                "price": decimal.Decimal("1.28"),
                "total": decimal.Decimal("0.0000"),
                "placed": datetime.datetime(2038, 1, 19, 3, 14, 8, tzinfo=UTC),
                "placed_us": datetime.datetime(2038, 1, 19, 3, 14, 8, 1, tzinfo=UTC),
                "day": datetime.date(2000, 2, 29),
                "at": datetime.time(23, 59, 59, 999000),
                "at_us": datetime.time(0, 0, 0, 1),
                "ref": uuid.UUID("ffffffff-ffff-ffff-ffff-ffffffffffff"),
                "note": "",
                "status": "SHIPPED",
                "attrs": {"only": 0.5},
                "blob": b"\x80",
                "tag": b"\xff\xff\xff\xff",
                "lines": ["a", "", "c"],
                "customer": {"uid": "", "vip": False},
                "choice": {"uid": "c-1", "vip": True},
                "maybe": True,
            },
        ),
    ]


EPOCH = datetime.datetime(1970, 1, 1, tzinfo=UTC)


def b64(b):
    return base64.b64encode(b).decode()


def decimal_json(d, scale):
    """Connect's Decimal through JsonConverter (decimal.format=BASE64):
    the unscaled value's BigInteger.toByteArray(), base64."""
    n = int(d.scaleb(scale))
    bits = n.bit_length() if n >= 0 else (~n).bit_length()
    return b64(n.to_bytes(bits // 8 + 1, "big", signed=True))


def float32_json(x):
    """Jackson writes a Java float by Float.toString: the shortest decimal
    that reads back as the same float32."""
    f32 = struct.unpack("f", struct.pack("f", x))[0]
    for digits in range(1, 10):
        text = "%.*g" % (digits, f32)
        if struct.unpack("f", struct.pack("f", float(text)))[0] == f32:
            return float(text)
    return f32


def micros(delta):
    return (delta.days * 86400 + delta.seconds) * 1_000_000 + delta.microseconds


def time_micros(t):
    return ((t.hour * 60 + t.minute) * 60 + t.second) * 1_000_000 + t.microsecond


def expected(v):
    """AvroData.toConnectData, then JsonConverter.convertToJson (schemas off)."""
    choice = v["choice"]
    maybe = v["maybe"]
    return {
        "id": v["id"],
        "code": v["code"],
        "qty": v["qty"],
        "paid": v["paid"],
        "ratio": float32_json(v["ratio"]),
        "weight": v["weight"],
        "price": decimal_json(v["price"], 2),
        "total": decimal_json(v["total"], 4),
        # Connect Timestamp: ms since the epoch.
        "placed": micros(v["placed"] - EPOCH) // 1000,
        # AvroData has no micros logical type: the long as it is.
        "placed_us": micros(v["placed_us"] - EPOCH),
        # Connect Date: days since the epoch.
        "day": (v["day"] - datetime.date(1970, 1, 1)).days,
        # Connect Time: ms of the day.
        "at": time_micros(v["at"]) // 1000,
        "at_us": time_micros(v["at_us"]),
        "ref": str(v["ref"]),
        # ["null", T]: an optional T.
        "note": v["note"],
        # enums are strings.
        "status": v["status"],
        "attrs": v["attrs"],
        "blob": b64(v["blob"]),
        "tag": b64(v["tag"]),
        "lines": v["lines"],
        "customer": v["customer"],
        # Any other union: a struct io.confluent.connect.avro.Union, one
        # field per non-null member (records by their short name), only the
        # written one set; null when the null member is written.
        "choice": {
            "int": choice if isinstance(choice, int) else None,
            "string": choice if isinstance(choice, str) else None,
            "Customer": choice if isinstance(choice, dict) else None,
        },
        "maybe": None
        if maybe is None
        else {
            "long": maybe if not isinstance(maybe, bool) else None,
            "boolean": maybe if isinstance(maybe, bool) else None,
        },
    }


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--registry", required=True)
    parser.add_argument("--user-info")
    parser.add_argument("--topic", required=True)
    args = parser.parse_args()
    conf = {"url": args.registry}
    if args.user_info:
        conf["basic.auth.user.info"] = args.user_info
    client = SchemaRegistryClient(conf)
    serializer = AvroSerializer(client, json.dumps(SCHEMA), conf={"auto.register.schemas": True})
    context = SerializationContext(args.topic, MessageField.VALUE)
    for key, value in records():
        data = serializer(value, context)
        line = {"key": key, "value": data.hex(), "expected": expected(value)}
        sys.stdout.write(json.dumps(line, ensure_ascii=False, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()
