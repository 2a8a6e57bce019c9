#!/usr/bin/env python3
"""Reads twoview shards with pyarrow alone, and writes one with pyarrow, for the interop test.

usage: shards_pyarrow.py read SHARD_DIR OUT_JSON
         every *.arrow file opened with pyarrow.ipc.open_file(pyarrow.memory_map(path)); for each
         row: key, label, height, width, encoding, len(pixels), sum(pixels) mod 2**32, first 8 bytes
       shards_pyarrow.py write OUT_ARROW
         a 3-row shard in twoview's schema written by pyarrow (raw and JPEG-marked rows)
"""
import json
import os
import sys

import pyarrow as pa
import pyarrow.ipc as ipc

SCHEMA = pa.schema(
    [
        pa.field("key", pa.utf8(), nullable=False),
        pa.field("label", pa.int32(), nullable=False),
        pa.field("height", pa.uint16(), nullable=False),
        pa.field("width", pa.uint16(), nullable=False),
        pa.field("encoding", pa.uint8(), nullable=False),
        pa.field("pixels", pa.large_binary(), nullable=False),
    ],
    metadata={"twoview.format_version": "1"},
)


def read(shard_dir, out_json):
    files = {}
    for name in sorted(os.listdir(shard_dir)):
        if not name.endswith(".arrow"):
            continue
        reader = ipc.open_file(pa.memory_map(os.path.join(shard_dir, name)))
        assert reader.schema.equals(SCHEMA, check_metadata=True), reader.schema
        rows = []
        for b in range(reader.num_record_batches):
            batch = reader.get_batch(b).to_pydict()
            for i in range(len(batch["key"])):
                px = batch["pixels"][i]
                rows.append([batch["key"][i], batch["label"][i], batch["height"][i], batch["width"][i],
                             batch["encoding"][i], len(px), sum(px) % 2**32, list(px[:8])])
        files[name] = rows
    with open(out_json, "w") as f:
        json.dump(files, f)


def write(out_arrow):
    raw = bytes(range(2 * 3 * 3))
    table = pa.table(
        {
            "key": ["a/x.JPEG", "b/y.JPEG", "b/z.png"],
            "label": pa.array([0, 1, -1], pa.int32()),
            "height": pa.array([2, 1, 3], pa.uint16()),
            "width": pa.array([3, 4, 1], pa.uint16()),
            "encoding": pa.array([0, 1, 0], pa.uint8()),
            "pixels": pa.array([raw, b"\xff\xd8\xff\xe0jpeg", bytes(9)], pa.large_binary()),
        },
        schema=SCHEMA,
    )
    with ipc.new_file(out_arrow, SCHEMA) as w:
        w.write_table(table, max_chunksize=2)


if __name__ == "__main__":
    if sys.argv[1] == "read":
        read(sys.argv[2], sys.argv[3])
    else:
        write(sys.argv[2])
