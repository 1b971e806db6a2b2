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

if __name__ == "__main__":
    sys.argv = ["bqemulator", *sys.argv[1:]]
    main()
