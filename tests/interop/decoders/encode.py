"""Encodes one payload per codec with real encoders, for tests/decoders.rs.

MessagePack with the msgpack package, CBOR with cbor2, and Protocol Buffers
with Google's runtime from fixtures/decoders/reading.proto compiled by
grpcio-tools into a scratch folder. Prints one JSON line per payload:
{"codec", "hex", "expected"}, where expected is the JSON the server must
show, written out by hand from the values encoded here (not computed by a
decoder).

Usage: encode.py PROTO_DIR SCRATCH_DIR
"""

import datetime
import importlib
import json
import struct
import sys

import cbor2
import msgpack
from grpc_tools import protoc

proto_dir, scratch = sys.argv[1], sys.argv[2]


def emit(codec, raw, expected):
    print(json.dumps({"codec": codec, "hex": raw.hex(), "expected": expected}))


common = {
    "t": 21.5,
    "n": -7,
    "big": 2**64 - 1,
    "s": "grüße",
    "b": b"\x00\xff",
    "l": [1, None, True],
    "nested": {"k": [1.25, -0.5]},
}
common_json = {
    "t": 21.5,
    "n": -7,
    "big": 18446744073709551615,
    "s": "grüße",
    "b": {"base64": "AP8="},
    "l": [1, None, True],
    "nested": {"k": [1.25, -0.5]},
}

emit("msgpack", msgpack.packb(common, use_bin_type=True), common_json)

tagged = dict(common)
tagged["epoch"] = cbor2.CBORTag(1, 1700000000)
tagged["when"] = datetime.datetime(2024, 1, 2, 3, 4, 5, tzinfo=datetime.timezone.utc)
tagged_json = dict(common_json)
tagged_json["epoch"] = {"tag": 1, "value": 1700000000}
tagged_json["when"] = {"tag": 0, "value": "2024-01-02T03:04:05Z"}
emit("cbor", cbor2.dumps(tagged), tagged_json)

rc = protoc.main(["protoc", f"-I{proto_dir}", f"--python_out={scratch}", "reading.proto", "unit.proto"])
if rc != 0:
    sys.exit(f"protoc failed: {rc}")
sys.path.insert(0, scratch)
reading_pb2 = importlib.import_module("reading_pb2")
unit_pb2 = importlib.import_module("unit_pb2")
r = reading_pb2.Reading(
    sensor="boiler-1",
    value=2.0 / 3.0,
    ratio=0.1,
    at_ms=-5,
    counter=2**64 - 1,
    delta=-3,
    ok=True,
    raw=b"\x01\x02",
    unit=unit_pb2.KELVIN,
    where=reading_pb2.Location(site="north", floor=4294967295),
    history=[1, -2, 3],
    tags={"a": "x"},
    note="hot",
)
emit(
    "protobuf",
    r.SerializeToString(),
    {
        "sensor": "boiler-1",
        "value": 2.0 / 3.0,
        # A float field: the f32 nearest 0.1, widened to a double.
        "ratio": struct.unpack("<f", struct.pack("<f", 0.1))[0],
        "at_ms": -5,
        "counter": 18446744073709551615,
        "delta": -3,
        "ok": True,
        "raw": "AQI=",
        "unit": "KELVIN",
        "where": {"site": "north", "floor": 4294967295},
        "history": [1, -2, 3],
        "tags": {"a": "x"},
        "note": "hot",
    },
)
