"""Reads records Sluice wrote in Confluent's wire format with
confluent-kafka's Python AvroDeserializer, or with --format json its
JSONDeserializer (which also validates each payload against the writer's
JSON Schema): third-party readers, which fetch the writer's schema by id
from the registry at --registry.

stdin: one JSON line per record, {"key": hex or null, "value": hex or null}.
stdout: one JSON line per record, {"key": <decoded>, "value": <decoded>}.

Run through dev/confluent-python; tests/tests/worker_source_converters.rs
runs it against the Schema Registry fake.
"""

import argparse
import json
import sys

from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer
from confluent_kafka.schema_registry.json_schema import JSONDeserializer
from confluent_kafka.serialization import MessageField, SerializationContext


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--registry", required=True)
    parser.add_argument("--user-info")
    parser.add_argument("--topic", required=True)
    parser.add_argument("--format", choices=["avro", "json"], default="avro")
    args = parser.parse_args()
    conf = {"url": args.registry}
    if args.user_info:
        conf["basic.auth.user.info"] = args.user_info
    client = SchemaRegistryClient(conf)
    if args.format == "json":
        deserializer = JSONDeserializer(None, schema_registry_client=client)
    else:
        deserializer = AvroDeserializer(client)
    for line in sys.stdin:
        record = json.loads(line)
        out = {}
        for part, field in (("key", MessageField.KEY), ("value", MessageField.VALUE)):
            data = record.get(part)
            ctx = SerializationContext(args.topic, field)
            out[part] = None if data is None else deserializer(bytes.fromhex(data), ctx)
        print(json.dumps(out, sort_keys=True))


if __name__ == "__main__":
    main()
