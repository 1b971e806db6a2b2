#!/usr/bin/env python3
"""Starts the BigQuery emulator (PyPI bqemulator 1.4.0) without network access.

bqemulator loads DuckDB's spatial extension at boot and aborts when it cannot
download it; these machines reach no extension repository. This launcher
replaces that step with one that only turns off automatic extension installs,
so GEOGRAPHY is not available (nothing in sluice uses it). Measured in
../shared/reference/local-services.md §2. Usage: the `bqemulator start`
arguments (dev/services passes host, ports and project).
"""
import sys

from bqemulator.storage.engine import DuckDBEngine


def _no_spatial(self):
    # sluice patch: no GEOGRAPHY, no download at start.
    self._connection.execute("SET autoinstall_known_extensions=false")


DuckDBEngine._load_spatial = _no_spatial

from bqemulator.cli import main  # noqa: E402  (after the patch)
from bqemulator.storage import type_map  # noqa: E402

_columns = type_map.bq_schema_to_duckdb_columns


def _quoted_columns(fields):
    # sluice patch: RECORD sub-fields are quoted in the DuckDB STRUCT, so
    # names that are SQL keywords work as in BigQuery (Confluent's
    # kafkaDataFieldName RECORD has `offset` and `partition`; unquoted,
    # tables.insert answered 500).
    out = []
    for field in fields:
        if str(field.get("type", "")).upper() in ("RECORD", "STRUCT"):
            inner = _quoted_columns(field.get("fields", []))
            spec = "STRUCT(" + ", ".join('"%s" %s' % (n, t) for n, t in inner) + ")"
            if str(field.get("mode") or "NULLABLE").upper() == "REPEATED":
                spec += "[]"
            out.append((field["name"], spec))
        else:
            out.extend(_columns([field]))
    return out


from bqemulator.api.routes.tabledata import _build_arrow_schema  # noqa: E402
from bqemulator.grpc_api import write_servicer  # noqa: E402


def _raw_fields(fields):
    return [
        {"name": f.name, "type": f.type, "mode": f.mode or "NULLABLE", "fields": _raw_fields(getattr(f, "fields", None) or [])}
        for f in fields
    ]


def _table_arrow_schema(table_meta):
    # sluice patch: the Storage Write API path built the target's Arrow
    # schema without RECORD sub-fields, so every append to a table with a
    # RECORD column failed ("Cannot cast STRUCTs of different size").
    return _build_arrow_schema(_raw_fields(table_meta.schema_.fields))


write_servicer._table_arrow_schema = _table_arrow_schema


_Handler = write_servicer.BigQueryWriteHandler
_get_write_stream = _Handler._handle_get_write_stream
_batch_commit = _Handler._handle_batch_commit_write_streams
_commit_times = {}


def _get_write_stream_with_commit_time(self, request_bytes, context):
    # sluice patch: BigQuery's GetWriteStream answers a committed PENDING
    # stream with its commit_time (how a sink learns after a crash whether
    # its pending stream was committed); the emulator never sets it.
    from google.cloud.bigquery_storage_v1 import types

    answer = _get_write_stream(self, request_bytes, context)
    if not answer:
        return answer
    stream = types.WriteStream.deserialize(answer)
    committed = _commit_times.get(stream.name)
    if committed is not None:
        stream.commit_time = committed
    return types.WriteStream.serialize(stream)


def _batch_commit_once(self, request_bytes, context):
    # sluice patch: committing a stream that is already committed answers
    # BigQuery's STREAM_ALREADY_COMMITTED (the emulator said
    # INVALID_STREAM_STATE), and commit times are kept for GetWriteStream.
    from google.cloud.bigquery_storage_v1 import types

    request = types.BatchCommitWriteStreamsRequest.deserialize(request_bytes)
    # sluice patch: BigQuery commits streams of the request's parent table
    # only; the emulator committed any table's streams together.
    foreign = [n for n in request.write_streams if not n.startswith(request.parent + "/streams/")]
    if foreign:
        import grpc

        context.set_code(grpc.StatusCode.INVALID_ARGUMENT)
        context.set_details("Streams of another table than %s: %s" % (request.parent, ", ".join(foreign)))
        return b""
    again = [n for n in request.write_streams if n in _commit_times]
    if again:
        code = types.StorageError.StorageErrorCode.STREAM_ALREADY_COMMITTED
        errors = [types.StorageError(code=code, entity=n, error_message="Stream already committed: " + n) for n in again]
        return types.BatchCommitWriteStreamsResponse.serialize(
            types.BatchCommitWriteStreamsResponse(commit_time=None, stream_errors=errors)
        )
    answer = _batch_commit(self, request_bytes, context)
    response = types.BatchCommitWriteStreamsResponse.deserialize(answer)
    if "commit_time" in response and not response.stream_errors:
        for name in request.write_streams:
            _commit_times[name] = response.commit_time
    return answer


_Handler._handle_get_write_stream = _get_write_stream_with_commit_time
_Handler._handle_batch_commit_write_streams = _batch_commit_once

for _module in list(sys.modules.values()):
    if getattr(_module, "bq_schema_to_duckdb_columns", None) is _columns:
        _module.bq_schema_to_duckdb_columns = _quoted_columns

from bqemulator.api.routes import tables as _tables  # noqa: E402
from bqemulator.api.routes.tables import _Ctx, Request  # noqa: E402,F401  (the wrapper's annotations)
from bqemulator.storage.sql_identifiers import quoted_table_ref  # noqa: E402
from typing import Any  # noqa: E402,F401


def _storage_follows_schema(handler):
    # sluice patch: tables.patch / tables.update changed the emulator's
    # catalog but not its DuckDB table, so every write after a new column
    # failed (insertAll 500; Storage Write appends too). BigQuery alters
    # both in the one call: new top-level columns are added to the storage
    # here, after the catalog took them. Nested new fields stay unsupported
    # (a DuckDB STRUCT cannot gain a field in place); REQUIRED→NULLABLE
    # needs nothing (the storage has no NOT NULL). Measured in
    # docs/decisions/0042-bigquery-streaming-schema-evolution.md.
    async def patched(project_id: str, dataset_id: str, table_id: str, request: Request, ctx: _Ctx) -> dict[str, Any]:
        before = ctx.catalog.get_table(project_id, dataset_id, table_id)
        had = {f.name.lower() for f in before.schema_.fields} if before is not None else set()
        answer = await handler(project_id, dataset_id, table_id, request, ctx)
        new = [f for f in answer.get("schema", {}).get("fields", []) if f["name"].lower() not in had]
        if before is not None and new:
            target = quoted_table_ref(project_id, dataset_id, table_id)
            async with ctx.engine.write_lock():
                for name, dtype in _quoted_columns(new):
                    ctx.engine.execute(f'ALTER TABLE {target} ADD COLUMN IF NOT EXISTS "{name}" {dtype}')
        return answer

    return patched


for _route in _tables.router.routes:
    if getattr(_route, "endpoint", None) in (_tables.patch_table, _tables.update_table):
        _route.endpoint = _storage_follows_schema(_route.endpoint)

import grpc.aio  # noqa: E402
from concurrent.futures import ThreadPoolExecutor  # noqa: E402

_aio_server = grpc.aio.server


def _server_with_threads(*args, **kwargs):
    # sluice patch: the Storage Write handlers are synchronous, so grpc.aio
    # runs each open AppendRows stream on a thread of asyncio's default
    # executor (min(32, cores + 4): 6 threads here) for as long as the
    # client keeps the stream open. A sink holds one stream per partition;
    # two workers with four partitions each (a paused former owner and its
    # successor) need 8, and the 7th waited forever. BigQuery serves far
    # more concurrent connections, so the emulator gets a larger pool.
    kwargs.setdefault("migration_thread_pool", ThreadPoolExecutor(max_workers=64))
    return _aio_server(*args, **kwargs)


grpc.aio.server = _server_with_threads

if __name__ == "__main__":
    sys.argv = ["bqemulator", *sys.argv[1:]]
    main()
