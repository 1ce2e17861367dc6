"""A simulated Sparkplug B edge node with two devices, for tests/interop_sparkplug.rs.

Encodes with an implementation that is not ours: pysparkplug's payload
classes and datatype encoders (every scalar and array datatype), and, for
the datatypes pysparkplug leaves out (DataSet, Template, PropertySet,
PropertySetList), the Tahu protobuf messages it ships, through Google's
protobuf runtime. Publishes with paho-mqtt to 127.0.0.1:PORT: NBIRTH,
DBIRTH x2, NDATA, DDATA (aliases only, so names must come from the births),
NCMD, DCMD, DDEATH, NDEATH and a STATE.

For every message it prints one JSON line of what a decoder must show,
computed from the encoded bytes parsed back by Google's runtime: exact
integers, float and double bit patterns, DateTime milliseconds and their
RFC 3339 text, arrays, DataSet rows. The last line is {"done": N}.

Usage: edge_node.py PORT GROUP
"""

import base64
import datetime
import json
import struct
import sys

import paho.mqtt.client as mqtt
import pysparkplug as sp
from pysparkplug._protobuf import Payload as PB

port, group = int(sys.argv[1]), sys.argv[2]
NODE = "edge1"
DT = sp.DataType
EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)
UTC = datetime.timezone.utc


def rfc3339(ms):
    t = EPOCH + datetime.timedelta(milliseconds=ms)
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + "%03dZ" % (ms % 1000)


def f32bits(x):
    return struct.unpack("<I", struct.pack("<f", x))[0]


def f64bits(x):
    return struct.unpack("<Q", struct.pack("<d", x))[0]


# Every scalar and array datatype pysparkplug encodes, with edge values.
SCALARS = [
    ("i8", DT.INT8, -128),
    ("i16", DT.INT16, -12345),
    ("i32", DT.INT32, -2147483648),
    ("i64", DT.INT64, -9223372036854775808),
    ("u8", DT.UINT8, 255),
    ("u16", DT.UINT16, 65535),
    ("u32", DT.UINT32, 4294967295),
    ("u64", DT.UINT64, 18446744073709551615),
    ("float", DT.FLOAT, 0.1),
    ("float_tiny", DT.FLOAT, 1.4e-45),
    ("double", DT.DOUBLE, 2.0 / 3.0),
    ("bool", DT.BOOLEAN, True),
    ("string", DT.STRING, "grüße \u2603"),
    ("datetime", DT.DATETIME, datetime.datetime(2024, 5, 6, 7, 8, 9, 250000, tzinfo=UTC)),
    ("text", DT.TEXT, "line one\nline two"),
    ("uuid", DT.UUID, "123e4567-e89b-12d3-a456-426614174000"),
    ("bytes", DT.BYTES, b"\x00\x01\xfe\xff"),
    ("file", DT.FILE, b"%PDF-1.4 fake"),
    ("i8a", DT.INT8_ARRAY, (-128, 0, 127)),
    ("i16a", DT.INT16_ARRAY, (-32768, 1, 32767)),
    ("i32a", DT.INT32_ARRAY, (-2147483648, 2147483647)),
    ("i64a", DT.INT64_ARRAY, (-9223372036854775808, 9223372036854775807)),
    ("u8a", DT.UINT8_ARRAY, (0, 255)),
    ("u16a", DT.UINT16_ARRAY, (0, 65535)),
    ("u32a", DT.UINT32_ARRAY, (0, 4294967295)),
    ("u64a", DT.UINT64_ARRAY, (0, 18446744073709551615)),
    ("fa", DT.FLOAT_ARRAY, (0.1, -3.5, 1e38)),
    ("da", DT.DOUBLE_ARRAY, (0.1, -1e-300)),
    ("ba", DT.BOOLEAN_ARRAY, (True, False, True, True, False, False, False, False, True)),
    ("sa", DT.STRING_ARRAY, ("a", "", "ü")),
    ("dta", DT.DATETIME_ARRAY, (datetime.datetime(2001, 2, 3, 4, 5, 6, 7000, tzinfo=UTC),)),
]


def expect_value(dtname, field, pbv):
    """What our decoder must show for a value field Google's runtime read back."""
    raw = getattr(pbv, field)
    out = {}
    if dtname in ("Int8", "Int16", "Int32", "Int64"):
        bits = {"Int8": 8, "Int16": 16, "Int32": 32, "Int64": 64}[dtname]
        v = raw & ((1 << bits) - 1)
        out["value"] = v - (1 << bits) if v >= 1 << (bits - 1) else v
    elif dtname == "Float":
        out["f32"] = f32bits(raw)
    elif dtname == "Double":
        out["f64"] = f64bits(raw)
    elif dtname == "DateTime":
        out["value"], out["millis"] = rfc3339(raw), raw
    elif dtname in ("Bytes", "File"):
        out["value"] = {"base64": base64.b64encode(raw).decode(), "size": len(raw)}
    elif dtname.endswith("Array"):
        decoded = sp.DataType[to_enum(dtname)].decode(raw)
        if dtname == "FloatArray":
            out["f32"] = [f32bits(x) for x in decoded]
        elif dtname == "DoubleArray":
            out["f64"] = [f64bits(x) for x in decoded]
        elif dtname == "DateTimeArray":
            ms = list(struct.unpack("<%dQ" % (len(raw) // 8), raw))
            out["value"], out["millis"] = [rfc3339(m) for m in ms], ms
        else:
            out["value"] = list(decoded)
    else:
        out["value"] = raw
    return out


def to_enum(name):
    """FloatArray -> FLOAT_ARRAY (pysparkplug's enum names)."""
    s = "".join("_" + c if c.isupper() else c for c in name).upper().lstrip("_")
    return s.replace("U_INT", "UINT").replace("DATE_TIME", "DATETIME")


def expectations(topic, raw, births):
    """Reads the bytes back with Google's runtime and states what to show."""
    p = PB.FromString(raw)
    metrics = []
    kind = topic.split("/")[2]
    birth = births.get(birth_topic(topic), {})
    for m in p.metrics:
        e = {}
        name = m.name if m.HasField("name") else birth.get(m.alias, (None, None))[0]
        dt = m.datatype if m.HasField("datatype") else birth.get(m.alias, (None, None))[1]
        if dt is None and name is not None:
            dt = next((d for (n, d) in birth.values() if n == name), None)
        e["name"] = name
        if m.HasField("alias"):
            e["alias"] = m.alias
        dtname = DTNAMES[dt] if dt is not None else "Unknown"
        e["datatype"] = dtname
        field = m.WhichOneof("value")
        if field is not None and field not in ("dataset_value", "template_value"):
            e.update(expect_value(dtname, field, m))
        metrics.append(e)
    if kind in ("NBIRTH", "DBIRTH"):
        births[topic] = {m.alias: (m.name, m.datatype) for m in p.metrics if m.HasField("alias")}
    return {"topic": topic, "seq": p.seq if p.HasField("seq") else None, "timestamp": p.timestamp, "metrics": metrics}


DTNAMES = {v.number: v.name for v in sp._protobuf.sparkplug_b_pb2.DataType.DESCRIPTOR.values}


def birth_topic(topic):
    parts = topic.split("/")
    if len(parts) == 5:
        return "/".join([parts[0], parts[1], "DBIRTH", parts[3], parts[4]])
    return "/".join([parts[0], parts[1], "NBIRTH", parts[3]])


def composite_metrics():
    """DataSet, Template, PropertySet and PropertySetList through the Tahu messages."""
    ds = PB.Metric(name="table", alias=100, datatype=16, timestamp=1)
    ds.dataset_value.num_of_columns = 3
    ds.dataset_value.columns.extend(["id", "temp", "label"])
    ds.dataset_value.types.extend([3, 9, 12])
    for i, t, s in [(-1, 21.5, "a"), (2, -0.25, "b")]:
        row = ds.dataset_value.rows.add()
        row.elements.add().int_value = i & 0xFFFFFFFF
        row.elements.add().float_value = t
        row.elements.add().string_value = s
    tm = PB.Metric(name="motor", alias=101, datatype=19, timestamp=1)
    tm.template_value.template_ref = "Motor"
    tm.template_value.version = "v1"
    tm.template_value.is_definition = False
    par = tm.template_value.parameters.add()
    par.name, par.type, par.int_value = "poles", 5, 4
    inner = tm.template_value.metrics.add()
    inner.name, inner.datatype, inner.double_value = "rpm", 10, 1450.5
    pr = PB.Metric(name="with_props", alias=102, datatype=7, int_value=42, timestamp=1)
    pr.properties.keys.extend(["engUnit", "limits", "history"])
    v = pr.properties.values.add()
    v.type, v.string_value = 12, "rpm"
    v = pr.properties.values.add()
    v.type = 20
    v.propertyset_value.keys.append("max")
    pv = v.propertyset_value.values.add()
    pv.type, pv.double_value = 10, 3000.0
    v = pr.properties.values.add()
    v.type = 21
    ps = v.propertysets_value.propertyset.add()
    ps.keys.append("on")
    b = ps.values.add()
    b.type, b.boolean_value = 11, True
    return [ds, tm, pr]


def main():
    client = mqtt.Client(client_id="pysparkplug-edge", protocol=mqtt.MQTTv311)
    client.connect("127.0.0.1", port)
    client.loop_start()
    births = {}
    sent = 0
    now = 1_714_979_289_000

    def publish(topic, raw):
        nonlocal sent
        print(json.dumps(expectations(topic, raw, births)), flush=True)
        client.publish(topic, raw, qos=1).wait_for_publish(10)
        sent += 1

    node = f"spBv1.0/{group}/%s/{NODE}"
    dev = f"spBv1.0/{group}/%s/{NODE}/%s"

    nbirth = sp.NBirth(timestamp=now, seq=0, metrics=(
        sp.Metric(timestamp=now, name="bdSeq", datatype=DT.INT64, value=3, alias=0),
        sp.Metric(timestamp=now, name="Node Control/Rebirth", datatype=DT.BOOLEAN, value=False, alias=1),
        sp.Metric(timestamp=now, name="uptime", datatype=DT.UINT64, value=12, alias=2),
    ))
    publish(node % "NBIRTH", nbirth.encode(include_dtypes=True))
    scalars = tuple(
        sp.Metric(timestamp=now, name=n, datatype=d, value=v, alias=10 + i)
        for i, (n, d, v) in enumerate(SCALARS)
    )
    publish(dev % ("DBIRTH", "d1"), sp.DBirth(timestamp=now, seq=1, metrics=scalars).encode(include_dtypes=True))
    d2 = PB(timestamp=now, seq=2)
    d2.metrics.extend(composite_metrics())
    publish(dev % ("DBIRTH", "d2"), d2.SerializeToString())
    # DATA with aliases only: names and datatypes must come from the births.
    aliased = tuple(
        sp.Metric(timestamp=now + 1, name=None, datatype=d, value=v, alias=10 + i)
        for i, (n, d, v) in enumerate(SCALARS)
    )
    publish(dev % ("DDATA", "d1"), sp.DData(timestamp=now + 1, seq=3, metrics=aliased).encode())
    publish(node % "NDATA", sp.NData(timestamp=now + 2, seq=4, metrics=(
        sp.Metric(timestamp=now + 2, name=None, datatype=DT.UINT64, value=13, alias=2),
    )).encode())
    publish(node % "NCMD", sp.NCmd(timestamp=now + 3, metrics=(
        sp.Metric(timestamp=now + 3, name="Node Control/Rebirth", datatype=DT.BOOLEAN, value=True),
    )).encode(include_dtypes=True))
    publish(dev % ("DCMD", "d1"), sp.DCmd(timestamp=now + 4, metrics=(
        sp.Metric(timestamp=now + 4, name="i32", datatype=DT.INT32, value=-7),
    )).encode(include_dtypes=True))
    publish(dev % ("DDEATH", "d2"), sp.DDeath(timestamp=now + 5, seq=5).encode())
    publish(node % "NDEATH", sp.NDeath(timestamp=now + 6, bd_seq_metric=sp.Metric(
        timestamp=now + 6, name="bdSeq", datatype=DT.INT64, value=3)).encode(include_dtypes=True))
    state = sp.State(timestamp=now + 7, online=True).encode()
    print(json.dumps({"topic": "spBv1.0/STATE/scada1", "state": json.loads(state)}), flush=True)
    client.publish("spBv1.0/STATE/scada1", state, qos=1).wait_for_publish(10)
    sent += 1
    client.loop_stop()
    client.disconnect()
    print(json.dumps({"done": sent}), flush=True)


main()
