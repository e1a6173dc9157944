"""Read an offline wandb run file (``run-*.wandb``) back: the records a run wrote, without network or wandb's CLI.

The file is a 7-byte header (``:W&B``, magic, version) followed by LevelDB-log records in 32 KiB blocks (4-byte
checksum, 2-byte length, 1-byte type: full / first / middle / last), each a ``wandb_internal_pb2.Record``.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

from wandb.proto import wandb_internal_pb2

_BLOCK = 32 * 1024
_HEADER = 7
_FULL, _FIRST, _MIDDLE, _LAST = 1, 2, 3, 4


def _payloads(data: bytes) -> list[bytes]:
    payloads, pending, offset = [], b"", _HEADER
    while offset + 7 <= len(data):
        left_in_block = _BLOCK - offset % _BLOCK
        if left_in_block < 7:  # block trailer padding
            offset += left_in_block
            continue
        length, kind = struct.unpack("<HB", data[offset + 4 : offset + 7])
        chunk = data[offset + 7 : offset + 7 + length]
        offset += 7 + length
        if kind == 0 and length == 0:
            continue
        if kind == _FULL:
            payloads.append(chunk)
        elif kind == _FIRST:
            pending = chunk
        elif kind == _MIDDLE:
            pending += chunk
        elif kind == _LAST:
            payloads.append(pending + chunk)
            pending = b""
    return payloads


def read_run(run_file: Path) -> dict[str, Any]:
    """``{"id", "name", "group", "config": {key: value}, "history": [{key: value}, ...], "exited": bool}`` of one
    run file; ``exited``: its exit record (written last, by ``finish()``) is there, so the file is whole."""
    out: dict[str, Any] = {"id": None, "name": None, "group": None, "config": {}, "history": [], "exited": False}
    for payload in _payloads(Path(run_file).read_bytes()):
        record = wandb_internal_pb2.Record()
        record.ParseFromString(payload)
        kind = record.WhichOneof("record_type")
        if kind == "run":
            out.update(id=record.run.run_id, name=record.run.display_name, group=record.run.run_group)
            for item in record.run.config.update:
                out["config"][item.key] = json.loads(item.value_json)
        elif kind == "config":
            for item in record.config.update:
                out["config"][item.key] = json.loads(item.value_json)
        elif kind == "exit":
            out["exited"] = True
        elif kind == "history":
            out["history"].append({item.key or "/".join(item.nested_key): json.loads(item.value_json)
                                   for item in record.history.item})
    return out
