"""AMF0 (Action Message Format, version 0) values, as used by RTMP commands and metadata.

Reference: Adobe "Action Message Format -- AMF 0" specification. Python mapping:

=================  ===========  ==========================================
AMF0 type          marker       Python value
=================  ===========  ==========================================
Number             0x00         ``float`` (``int`` accepted when encoding)
Boolean            0x01         ``bool``
String             0x02         ``str`` (UTF-8, < 65536 bytes)
Object             0x03         ``dict`` (insertion ordered)
Null               0x05         ``None``
Undefined          0x06         ``UNDEFINED``
ECMA Array         0x08         ``ECMAArray`` (a ``dict`` subclass)
Object End         0x09         only terminates objects / ECMA arrays
Strict Array       0x0A         ``list`` (``tuple`` accepted when encoding)
Date               0x0B         ``AMF0Date``
Long String        0x0C         ``str`` (chosen when >= 65536 bytes)
XML Document       0x0F         ``XMLDocument`` (a ``str`` subclass)
Typed Object       0x10         ``TypedObject``
AVM+ (AMF3)        0x11         decoded by ``amf3`` (see there); ``AMF3(value)``
                                encodes one
=================  ===========  ==========================================

References (0x07), MovieClip, RecordSet and Unsupported markers are rejected:
no RTMP publisher sends them in commands or metadata.

Strings are decoded with ``surrogateescape`` so bytes that are not valid UTF-8
(seen in metadata written by odd encoders) neither fail the session nor get
lost: encoding the value again restores the original bytes.

Decoding never raises anything but ``AMF0Error``: every length read from the
wire is checked against the bytes actually present, nesting is limited to
``MAX_DEPTH`` and container sizes to ``MAX_ITEMS``.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Any

from . import amf3
from .errors import AMF0Error

__all__ = [
    "AMF0Date", "AMF0Error", "AMF3", "ECMAArray", "MAX_DEPTH", "MAX_ITEMS", "TypedObject",
    "UNDEFINED", "XMLDocument", "decode_value", "decode_values", "encode_value",
    "encode_values",
]

MARKER_NUMBER = 0x00
MARKER_BOOLEAN = 0x01
MARKER_STRING = 0x02
MARKER_OBJECT = 0x03
MARKER_NULL = 0x05
MARKER_UNDEFINED = 0x06
MARKER_ECMA_ARRAY = 0x08
MARKER_OBJECT_END = 0x09
MARKER_STRICT_ARRAY = 0x0A
MARKER_DATE = 0x0B
MARKER_LONG_STRING = 0x0C
MARKER_XML_DOCUMENT = 0x0F
MARKER_TYPED_OBJECT = 0x10
MARKER_AVMPLUS = 0x11  # "switch to AMF3" for the next value

#: Deepest container nesting accepted when decoding (the top-level value is depth 1).
MAX_DEPTH = 32
#: Most entries accepted in one object, ECMA array or strict array.
MAX_ITEMS = 65536
#: Most top-level values accepted by ``decode_values`` (one command message).
MAX_VALUES = 1024

_DOUBLE = struct.Struct(">d")
_U16 = struct.Struct(">H")
_U32 = struct.Struct(">I")
_DATE = struct.Struct(">dh")


class _Undefined:
    """The AMF0 undefined value (distinct from null / ``None``)."""

    _instance = None

    def __new__(cls):
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "UNDEFINED"

    def __reduce__(self):
        return (_Undefined, ())


UNDEFINED = _Undefined()


class ECMAArray(dict):
    """AMF0 ECMA array: "an associative array ... with a count of entries" (used by onMetaData).

    Kept distinct from ``dict`` (an AMF0 anonymous object) so values round-trip.
    """

    def __repr__(self) -> str:
        return f"ECMAArray({dict.__repr__(self)})"


class XMLDocument(str):
    """AMF0 XML document: a long string whose content is XML."""


@dataclass(frozen=True)
class AMF0Date:
    """AMF0 date: "an ActionScript Date is serialized as the number of milliseconds
    elapsed since the epoch of midnight on 1st Jan 1970 in the UTC time zone",
    followed by a reserved signed 16-bit time-zone field (should be 0)."""

    milliseconds: float
    timezone: int = 0


@dataclass
class TypedObject:
    """AMF0 typed object: an object with a registered class name."""

    class_name: str
    properties: dict = field(default_factory=dict)


@dataclass(frozen=True)
class AMF3:
    """Encode ``value`` as AMF3 inside AMF0 (marker 0x11), as Flash clients with
    ``objectEncoding = 3`` do. Decoding never returns this wrapper, only the value."""

    value: Any


# --------------------------------------------------------------------------- encoding


def _encode_utf8(s: str, out: bytearray) -> None:
    """Write a UTF-8-16 key / string body (16-bit length then bytes)."""
    raw = s.encode("utf-8", "surrogateescape")
    if len(raw) > 0xFFFF:
        raise AMF0Error(f"AMF0 short string of {len(raw)} bytes exceeds 65535")
    out += _U16.pack(len(raw))
    out += raw


def _encode_properties(props: dict, out: bytearray) -> None:
    for key, value in props.items():
        if not isinstance(key, str):
            raise TypeError(f"AMF0 object keys must be str, not {type(key).__name__}")
        _encode_utf8(key, out)
        _encode(value, out)
    out += b"\x00\x00\x09"


def _encode(value: Any, out: bytearray) -> None:
    # bool before int: bool is an int subclass.
    if value is None:
        out.append(MARKER_NULL)
    elif value is UNDEFINED:
        out.append(MARKER_UNDEFINED)
    elif isinstance(value, bool):
        out.append(MARKER_BOOLEAN)
        out.append(1 if value else 0)
    elif isinstance(value, (int, float)):
        out.append(MARKER_NUMBER)
        out += _DOUBLE.pack(float(value))
    elif isinstance(value, XMLDocument):
        raw = value.encode("utf-8", "surrogateescape")
        out.append(MARKER_XML_DOCUMENT)
        out += _U32.pack(len(raw))
        out += raw
    elif isinstance(value, str):
        raw = value.encode("utf-8", "surrogateescape")
        if len(raw) <= 0xFFFF:
            out.append(MARKER_STRING)
            out += _U16.pack(len(raw))
        else:
            out.append(MARKER_LONG_STRING)
            out += _U32.pack(len(raw))
        out += raw
    elif isinstance(value, ECMAArray):
        out.append(MARKER_ECMA_ARRAY)
        out += _U32.pack(len(value))
        _encode_properties(value, out)
    elif isinstance(value, dict):
        out.append(MARKER_OBJECT)
        _encode_properties(value, out)
    elif isinstance(value, (list, tuple)):
        out.append(MARKER_STRICT_ARRAY)
        out += _U32.pack(len(value))
        for item in value:
            _encode(item, out)
    elif isinstance(value, AMF0Date):
        out.append(MARKER_DATE)
        out += _DATE.pack(value.milliseconds, value.timezone)
    elif isinstance(value, AMF3):
        out.append(MARKER_AVMPLUS)
        out += amf3.encode_value(value.value)
    elif isinstance(value, TypedObject):
        out.append(MARKER_TYPED_OBJECT)
        _encode_utf8(value.class_name, out)
        _encode_properties(value.properties, out)
    else:
        raise TypeError(f"cannot encode {type(value).__name__} as AMF0")


def encode_value(value: Any) -> bytes:
    """Serialize one Python value as AMF0."""
    out = bytearray()
    _encode(value, out)
    return bytes(out)


def encode_values(values) -> bytes:
    """Serialize a sequence of values back to back (the body of a command/data message)."""
    out = bytearray()
    for value in values:
        _encode(value, out)
    return bytes(out)


# --------------------------------------------------------------------------- decoding


class _Decoder:
    __slots__ = ("data", "end")

    def __init__(self, data, end: int):
        self.data = data
        self.end = end

    def need(self, pos: int, n: int, what: str) -> None:
        if pos + n > self.end:
            raise AMF0Error(f"truncated AMF0 {what} at offset {pos}: need {n} bytes, "
                            f"have {self.end - pos}")

    def utf8(self, pos: int, n: int, what: str) -> tuple[str, int]:
        self.need(pos, n, what)
        return bytes(self.data[pos:pos + n]).decode("utf-8", "surrogateescape"), pos + n

    def short_string(self, pos: int, what: str) -> tuple[str, int]:
        self.need(pos, 2, what + " length")
        (n,) = _U16.unpack_from(self.data, pos)
        return self.utf8(pos + 2, n, what)

    def long_string(self, pos: int, what: str) -> tuple[str, int]:
        self.need(pos, 4, what + " length")
        (n,) = _U32.unpack_from(self.data, pos)
        return self.utf8(pos + 4, n, what)

    def properties(self, pos: int, depth: int, target: dict) -> int:
        """Read key/value pairs until the empty-key + object-end marker."""
        data = self.data
        count = 0
        while True:
            self.need(pos, 2, "property name length")
            (n,) = _U16.unpack_from(data, pos)
            if n == 0:
                self.need(pos + 2, 1, "object end marker")
                if data[pos + 2] != MARKER_OBJECT_END:
                    # An empty key is legal only as the object end; anything else
                    # would be an (unnamed) property no encoder produces.
                    raise AMF0Error(f"empty property name without object end at offset {pos}")
                return pos + 3
            count += 1
            if count > MAX_ITEMS:
                raise AMF0Error(f"AMF0 object has more than {MAX_ITEMS} properties")
            key, pos = self.utf8(pos + 2, n, "property name")
            target[key], pos = self.value(pos, depth)

    def value(self, pos: int, depth: int) -> tuple[Any, int]:
        if depth > MAX_DEPTH:
            raise AMF0Error(f"AMF0 nesting deeper than {MAX_DEPTH}")
        self.need(pos, 1, "type marker")
        data = self.data
        marker = data[pos]
        pos += 1
        if marker == MARKER_NUMBER:
            self.need(pos, 8, "number")
            return _DOUBLE.unpack_from(data, pos)[0], pos + 8
        if marker == MARKER_STRING:
            return self.short_string(pos, "string")
        if marker == MARKER_OBJECT:
            obj: dict = {}
            return obj, self.properties(pos, depth + 1, obj)
        if marker == MARKER_NULL:
            return None, pos
        if marker == MARKER_BOOLEAN:
            self.need(pos, 1, "boolean")
            return data[pos] != 0, pos + 1
        if marker == MARKER_ECMA_ARRAY:
            # The count is only a hint (encoders get it wrong); the end marker rules.
            self.need(pos, 4, "ECMA array count")
            arr = ECMAArray()
            return arr, self.properties(pos + 4, depth + 1, arr)
        if marker == MARKER_STRICT_ARRAY:
            self.need(pos, 4, "strict array count")
            (count,) = _U32.unpack_from(data, pos)
            pos += 4
            # Each element takes at least one byte: bound the count by what is present.
            if count > MAX_ITEMS or count > self.end - pos:
                raise AMF0Error(f"AMF0 strict array count {count} exceeds the data present "
                                f"or the limit {MAX_ITEMS}")
            items = []
            for _ in range(count):
                item, pos = self.value(pos, depth + 1)
                items.append(item)
            return items, pos
        if marker == MARKER_UNDEFINED:
            return UNDEFINED, pos
        if marker == MARKER_LONG_STRING:
            return self.long_string(pos, "long string")
        if marker == MARKER_DATE:
            self.need(pos, 10, "date")
            ms, tz = _DATE.unpack_from(data, pos)
            return AMF0Date(ms, tz), pos + 10
        if marker == MARKER_XML_DOCUMENT:
            text, pos = self.long_string(pos, "XML document")
            return XMLDocument(text), pos
        if marker == MARKER_TYPED_OBJECT:
            name, pos = self.short_string(pos, "typed object class name")
            tobj = TypedObject(name, {})
            return tobj, self.properties(pos, depth + 1, tobj.properties)
        if marker == MARKER_AVMPLUS:
            return amf3.decode_value(data, pos, depth)
        if marker == MARKER_OBJECT_END:
            raise AMF0Error(f"unexpected AMF0 object end marker at offset {pos - 1}")
        raise AMF0Error(f"unsupported AMF0 type marker 0x{marker:02x} at offset {pos - 1}")


def decode_value(data, offset: int = 0) -> tuple[Any, int]:
    """Decode one AMF0 value from ``data`` at ``offset``; return (value, next offset)."""
    if not 0 <= offset <= len(data):
        raise AMF0Error(f"offset {offset} outside data of {len(data)} bytes")
    try:
        return _Decoder(data, len(data)).value(offset, 1)
    except AMF0Error:
        raise
    except (IndexError, struct.error, ValueError, TypeError, RecursionError) as exc:
        # Belt and braces: every bound above is checked explicitly; this keeps the
        # "only AMF0Error escapes" promise even if one was missed.
        raise AMF0Error(f"malformed AMF0 value: {exc!r}") from exc


def decode_values(data, offset: int = 0) -> list:
    """Decode back-to-back AMF0 values until the end of ``data`` (a command/data body)."""
    values = []
    end = len(data)
    while offset < end:
        if len(values) >= MAX_VALUES:
            raise AMF0Error(f"more than {MAX_VALUES} AMF0 values in one message")
        value, offset = decode_value(data, offset)
        values.append(value)
    return values
