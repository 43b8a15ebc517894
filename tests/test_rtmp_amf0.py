"""AMF0 encode/decode: spec byte vectors, round trips, bounds, garbage."""
import math
import struct

import pytest
from hypothesis import given, settings, strategies as st

from owncastd.ingest.rtmp import amf0
from owncastd.ingest.rtmp.amf0 import (
    UNDEFINED, AMF0Date, ECMAArray, TypedObject, XMLDocument, decode_value, decode_values,
    encode_value, encode_values,
)
from owncastd.ingest.rtmp.errors import AMF0Error, ProtocolError


@pytest.mark.parametrize("value, wire", [
    (1.0, b"\x00\x3f\xf0\x00\x00\x00\x00\x00\x00"),
    (-2.5, b"\x00" + struct.pack(">d", -2.5)),
    (True, b"\x01\x01"),
    (False, b"\x01\x00"),
    ("abc", b"\x02\x00\x03abc"),
    ("", b"\x02\x00\x00"),
    ("é", b"\x02\x00\x02\xc3\xa9"),
    (None, b"\x05"),
    (UNDEFINED, b"\x06"),
    ({"a": 1.0}, b"\x03\x00\x01a\x00\x3f\xf0" + bytes(6) + b"\x00\x00\x09"),
    ({}, b"\x03\x00\x00\x09"),
    (ECMAArray(width=320.0), b"\x08\x00\x00\x00\x01\x00\x05width\x00"
     + struct.pack(">d", 320) + b"\x00\x00\x09"),
    ([1.0, "x"], b"\x0a\x00\x00\x00\x02\x00\x3f\xf0" + bytes(6) + b"\x02\x00\x01x"),
    (AMF0Date(1.5e12, 0), b"\x0b" + struct.pack(">d", 1.5e12) + b"\x00\x00"),
    ("y" * 70000, b"\x0c" + (70000).to_bytes(4, "big") + b"y" * 70000),
    (XMLDocument("<a/>"), b"\x0f\x00\x00\x00\x04<a/>"),
    (TypedObject("C", {"k": None}), b"\x10\x00\x01C\x00\x01k\x05\x00\x00\x09"),
])
def test_known_vectors(value, wire):
    assert encode_value(value) == wire
    decoded, end = decode_value(wire)
    assert end == len(wire)
    assert decoded == value
    assert type(decoded) is type(value) or isinstance(value, (int, float))


def test_ints_encode_as_numbers():
    assert encode_value(3) == encode_value(3.0)
    assert decode_value(encode_value(3))[0] == 3.0


def test_ffmpeg_connect_command():
    # The first command an ffmpeg publisher sends (from the seed corpus).
    body = encode_values(["connect", 1.0, {
        "app": "live", "type": "nonprivate",
        "flashVer": "FMLE/3.0 (compatible; Lavf59.27.100)",
        "tcUrl": "rtmp://127.0.0.1:1935/live"}])
    assert body.startswith(b"\x02\x00\x07connect\x00\x3f\xf0")
    assert decode_values(body)[2]["tcUrl"] == "rtmp://127.0.0.1:1935/live"


def test_long_string_decodes_short_content_too():
    assert decode_value(b"\x0c\x00\x00\x00\x02hi") == ("hi", 7)


def test_ecma_array_count_is_only_a_hint():
    wire = b"\x08\x00\x00\x00\x09\x00\x01a\x05\x00\x00\x09"  # says 9, has 1
    assert decode_value(wire)[0] == ECMAArray(a=None)


def test_invalid_utf8_round_trips_losslessly():
    wire = b"\x02\x00\x02\xff\xfe"
    value, _ = decode_value(wire)
    assert encode_value(value) == wire


@pytest.mark.parametrize("wire, message", [
    (b"", "truncated"),
    (b"\x00\x3f\xf0", "truncated"),
    (b"\x01", "truncated"),
    (b"\x02\x00\x05ab", "truncated"),
    (b"\x0c\xff\xff\xff\xffab", "truncated"),
    (b"\x03\x00\x01a", "truncated"),
    (b"\x03\x00\x01a\x05", "truncated"),
    (b"\x03\x00\x00\x05", "empty property name"),
    (b"\x09", "object end"),
    (b"\x07\x00\x01", "unsupported"),
    (b"\x0d", "unsupported"),
    (b"\x11", "truncated AMF3"),
    (b"\x11\x0a\x07\x01", "externalizable"),
    (b"\x11\x06\x00", "string reference 0"),
    (b"\x11\x09\x00", "object reference 0"),
    (b"\x11\x09\xff\xff\xff\xff\x01", "array count"),
    (b"\x11\x0d\x09\x00\x00\x00\x00\x01", "vector count"),
    (b"\x11\x12", "unsupported AMF3"),
    (b"\xff", "unsupported"),
    (b"\x0a\xff\xff\xff\xff", "strict array count"),
    (b"\x0a\x00\x00\x00\x03\x05\x05", "strict array count"),
    (b"\x0b" + bytes(9), "truncated"),
])
def test_malformed_raises_amf0error(wire, message):
    with pytest.raises(AMF0Error, match=message):
        decode_value(wire)


def test_amf0error_is_a_protocol_error():
    assert issubclass(AMF0Error, ProtocolError)


def test_nesting_depth_bounded():
    ok = b"\x0a\x00\x00\x00\x01" * (amf0.MAX_DEPTH - 1) + b"\x05"
    decode_value(ok)
    too_deep = b"\x0a\x00\x00\x00\x01" * amf0.MAX_DEPTH + b"\x05"
    with pytest.raises(AMF0Error, match="nesting"):
        decode_value(too_deep)
    objects = b"\x03\x00\x01k" * 1000 + b"\x05"
    with pytest.raises(AMF0Error, match="nesting"):
        decode_value(objects)


def test_item_count_bounded():
    wire = b"\x0a" + (amf0.MAX_ITEMS + 1).to_bytes(4, "big") + b"\x05" * (amf0.MAX_ITEMS + 1)
    with pytest.raises(AMF0Error, match="strict array count"):
        decode_value(wire)


def test_decode_values_and_offsets():
    body = encode_values(["a", 2.0, None])
    assert decode_values(body) == ["a", 2.0, None]
    value, end = decode_value(body, 4)
    assert value == 2.0 and end == 13
    with pytest.raises(AMF0Error):
        decode_value(body, 99)


def test_encoding_unsupported_python_type():
    with pytest.raises(TypeError):
        encode_value(object())
    with pytest.raises(TypeError):
        encode_value({1: 2})


keys = st.text(max_size=12)
scalars = (st.floats(allow_nan=False) | st.booleans() | st.text(max_size=40) | st.none()
           | st.just(UNDEFINED)
           | st.builds(AMF0Date, st.floats(allow_nan=False), st.integers(-32768, 32767)))
values = st.recursive(
    scalars,
    lambda inner: (st.lists(inner, max_size=5)
                   | st.dictionaries(keys.filter(bool), inner, max_size=5)
                   | st.dictionaries(keys.filter(bool), inner, max_size=5).map(ECMAArray)
                   | st.builds(TypedObject, keys,
                               st.dictionaries(keys.filter(bool), inner, max_size=3))),
    max_leaves=25,
)


@settings(max_examples=300, deadline=None)
@given(st.lists(values, max_size=4))
def test_round_trip(vals):
    assert decode_values(encode_values(vals)) == vals


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_garbage_raises_only_amf0error(data):
    try:
        decode_values(data)
    except AMF0Error:
        pass


@settings(max_examples=300, deadline=None)
@given(values, st.data())
def test_mutated_encodings_raise_only_amf0error(value, data):
    wire = bytearray(encode_value(value))
    for _ in range(data.draw(st.integers(1, 4))):
        i = data.draw(st.integers(0, len(wire) - 1))
        wire[i] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(wire)))
    try:
        decode_values(bytes(wire[:cut]))
    except AMF0Error:
        pass


def test_nan_survives():
    assert math.isnan(decode_value(encode_value(float("nan")))[0])


# ---------------------------------------------------------------- AMF3 inside AMF0 (0x11)

def test_amf3_values_round_trip_through_the_avmplus_marker():
    value = {"app": "live", "n": 7, "neg": -5, "big": 1 << 30, "x": 2.5, "ok": True,
             "none": None, "list": [1, "two", [3.0]], "raw": b"\x00\x01", "nested": {"k": "v"}}
    wire = amf0.encode_values(["connect", 1.0, amf0.AMF3(value)])
    assert wire[wire.index(b"\x11")] == 0x11
    assert amf0.decode_values(wire) == ["connect", 1.0, value]


def test_amf3_references_traits_and_typed_objects():
    # An array holding: "ab" twice (second by string reference), a typed object with one
    # sealed member, then a second object reusing its traits by reference, and a reference
    # to the first object.
    wire = bytes([0x11, 0x09, 0x0B, 0x01,          # array, 5 dense items, no assoc part
                  0x06, 0x05]) + b"ab" + bytes([   # "ab" (string table 0)
                  0x06, 0x00,                      # string reference 0 -> "ab"
                  0x0A, 0x13, 0x03]) + b"C" + bytes([0x03]) + b"m" + bytes([  # traits C{m}
                  0x04, 0x05,                      # m = 5
                  0x0A, 0x01,                      # traits reference 0, m =
                  0x04, 0x06,                      # 6
                  0x0A, 0x02])                     # object reference 1 (the first C)
    value, end = decode_value(wire)
    assert end == len(wire)
    first = amf0.TypedObject("C", {"m": 5})
    assert value == ["ab", "ab", first, amf0.TypedObject("C", {"m": 6}), first]


def test_amf3_object_cannot_contain_itself():
    # anonymous dynamic object whose member "a" is a reference to the object being built
    wire = bytes([0x11, 0x0A, 0x0B, 0x01, 0x03]) + b"a" + bytes([0x0A, 0x00, 0x01])
    with pytest.raises(AMF0Error, match="object reference 0"):
        decode_value(wire)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_amf3_random_bytes_raise_only_amf0error(data):
    try:
        decode_value(b"\x11" + data)
    except AMF0Error as exc:
        assert str(exc)
