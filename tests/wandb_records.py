"""Read the records of an offline W&B run file (`run-<id>.wandb`), for tests.

The file is W&B's LevelDB-style log: a 7-byte header (":W&B", magic, version), then 32 KiB
blocks of records, each a 7-byte header (crc32, length, type: 1 full, 2 first, 3 middle,
4 last) and a piece of a serialized `wandb_internal_pb2.Record`."""

from __future__ import annotations

import json
import struct
from pathlib import Path

BLOCK = 32768


def records(path: Path) -> list:
    from wandb.proto import wandb_internal_pb2 as pb

    data = Path(path).read_bytes()
    assert data[:4] == b":W&B", data[:7]
    pos, buf, chunks = 7, b"", []
    while pos + 7 <= len(data):
        space = BLOCK - pos % BLOCK
        if space < 7:  # the rest of a block too small for a header is padding
            pos += space
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        pos += 7
        if kind == 0:
            break
        piece, pos = data[pos : pos + length], pos + length
        if kind == 1:
            chunks.append(piece)
        elif kind == 2:
            buf = piece
        elif kind == 3:
            buf += piece
        elif kind == 4:
            chunks.append(buf + piece)
            buf = b""
    out = []
    for c in chunks:
        r = pb.Record()
        r.ParseFromString(c)
        out.append(r)
    return out


def run_info(path: Path) -> dict:
    """{name, job_type, group, metrics: {name: (step_metric, summary kinds)}, summary: {key: value},
    artifacts: [(name, type)]} of one offline run file."""
    info = {"metrics": {}, "summary": {}, "artifacts": []}
    for r in records(path):
        kind = r.WhichOneof("record_type")
        if kind == "run":
            info.update(name=r.run.display_name, job_type=r.run.job_type, group=r.run.run_group)
        elif kind == "metric":
            s = r.metric.summary
            kinds = {k for k in ("min", "max", "last", "mean", "best") if getattr(s, k, False)}
            info["metrics"][r.metric.name] = (r.metric.step_metric, kinds)
        elif kind == "summary":
            for u in r.summary.update:
                if u.key:
                    info["summary"][u.key] = json.loads(u.value_json)
        elif kind == "artifact":
            info["artifacts"].append((r.artifact.name, r.artifact.type))
    return info
