"""AMF3 values inside AMF0 bodies (the AMF0 "avmplus" marker 0x11), sans I/O.

Reference: Adobe "Action Message Format -- AMF 3" specification. An RTMP command or data
message is AMF0; a value in it may switch to AMF3 with marker 0x11 (Flash/AIR clients with
``objectEncoding = 3`` do this). Each switched value starts fresh reference tables.

Python mapping when decoding:

=================  ======  =============================================================
AMF3 type          marker  Python value
=================  ======  =============================================================
undefined          0x00    ``amf0.UNDEFINED``
null               0x01    ``None``
false / true       0x02/3  ``bool``
integer            0x04    ``int`` (29-bit signed)
double             0x05    ``float``
string             0x06    ``str``
XMLDocument, XML   0x07/B  ``amf0.XMLDocument``
date               0x08    ``amf0.AMF0Date``
array              0x09    ``list`` (dense only) or ``amf0.ECMAArray`` (associative part;
                           dense items under their index as a string key)
object             0x0A    ``dict``, or ``amf0.TypedObject`` with a class name
ByteArray          0x0C    ``bytes``
vectors            0x0D-10 ``list``
dictionary         0x11    ``list`` of (key, value) pairs (keys may be unhashable)
=================  ======  =============================================================

Externalizable objects (their body format is private to the class) are refused. Decoding
raises only ``AMF3Error`` (an ``AMF0Error``): every length is checked against the bytes
present, counts are bounded by the bytes left, nesting by ``MAX_DEPTH``, and references must
name an entry that is already complete (so no decoded value contains itself).

``encode_value`` writes the common types (for tests and clients), without references.
"""
from __future__ import annotations

import struct
from typing import Any

from .errors import AMF3Error

__all__ = ["AMF3Error", "MAX_DEPTH", "decode_value", "encode_value"]

MARKER_UNDEFINED = 0x00
MARKER_NULL = 0x01
MARKER_FALSE = 0x02
MARKER_TRUE = 0x03
MARKER_INTEGER = 0x04
MARKER_DOUBLE = 0x05
MARKER_STRING = 0x06
MARKER_XML_DOC = 0x07
MARKER_DATE = 0x08
MARKER_ARRAY = 0x09
MARKER_OBJECT = 0x0A
MARKER_XML = 0x0B
MARKER_BYTE_ARRAY = 0x0C
MARKER_VECTOR_INT = 0x0D
MARKER_VECTOR_UINT = 0x0E
MARKER_VECTOR_DOUBLE = 0x0F
MARKER_VECTOR_OBJECT = 0x10
MARKER_DICTIONARY = 0x11

MAX_DEPTH = 32
#: Most named members of one object or associative array.
MAX_ITEMS = 65536
#: Entries accepted in one reference table (strings, objects, traits) of one value.
MAX_REFERENCES = 65536
INT_MIN, INT_MAX = -(1 << 28), (1 << 28) - 1

_DOUBLE = struct.Struct(">d")
_I32 = struct.Struct(">i")
_U32 = struct.Struct(">I")
_BUILDING = object()  # an object table slot whose value is still being decoded


class _Decoder:
    __slots__ = ("data", "end", "strings", "objects", "traits")

    def __init__(self, data, end: int):
        self.data = data
        self.end = end
        self.strings: list[str] = []
        self.objects: list[Any] = []
        self.traits: list[tuple[str, bool, list[str]]] = []

    def need(self, pos: int, n: int, what: str) -> None:
        if n < 0 or pos + n > self.end:
            raise AMF3Error(f"truncated AMF3 {what} at offset {pos}: need {n} bytes, "
                            f"have {self.end - pos}")

    def u29(self, pos: int) -> tuple[int, int]:
        value = 0
        for i in range(4):
            self.need(pos, 1, "U29")
            byte = self.data[pos]
            pos += 1
            if i == 3:
                return (value << 8) | byte, pos
            value = (value << 7) | (byte & 0x7F)
            if not byte & 0x80:
                return value, pos
        raise AssertionError("unreachable")

    def count(self, n: int, pos: int, per_item: int, what: str) -> None:
        # Each item takes at least `per_item` bytes: bound the count by what is present.
        if n * per_item > self.end - pos:
            raise AMF3Error(f"AMF3 {what} count {n} exceeds the data present")

    def members(self, have: int) -> None:
        if have >= MAX_ITEMS:
            raise AMF3Error(f"AMF3 object or array has more than {MAX_ITEMS} members")

    def remember(self, table: list, value) -> int:
        if len(table) >= MAX_REFERENCES:
            raise AMF3Error(f"more than {MAX_REFERENCES} AMF3 references in one value")
        table.append(value)
        return len(table) - 1

    def reference(self, table: list, index: int, what: str):
        if index >= len(table) or table[index] is _BUILDING:
            raise AMF3Error(f"AMF3 {what} reference {index} names no complete entry")
        return table[index]

    def string(self, pos: int) -> tuple[str, int]:
        head, pos = self.u29(pos)
        if not head & 1:
            return self.reference(self.strings, head >> 1, "string"), pos
        n = head >> 1
        self.need(pos, n, "string")
        text = bytes(self.data[pos:pos + n]).decode("utf-8", "surrogateescape")
        if text:  # "the empty string is never sent by reference"
            self.remember(self.strings, text)
        return text, pos + n

    def value(self, pos: int, depth: int) -> tuple[Any, int]:
        from .amf0 import UNDEFINED, AMF0Date, ECMAArray, XMLDocument
        if depth > MAX_DEPTH:
            raise AMF3Error(f"AMF3 nesting deeper than {MAX_DEPTH}")
        self.need(pos, 1, "type marker")
        marker = self.data[pos]
        pos += 1
        if marker == MARKER_UNDEFINED:
            return UNDEFINED, pos
        if marker == MARKER_NULL:
            return None, pos
        if marker in (MARKER_FALSE, MARKER_TRUE):
            return marker == MARKER_TRUE, pos
        if marker == MARKER_INTEGER:
            n, pos = self.u29(pos)
            return (n - (1 << 29) if n & (1 << 28) else n), pos
        if marker == MARKER_DOUBLE:
            self.need(pos, 8, "double")
            return _DOUBLE.unpack_from(self.data, pos)[0], pos + 8
        if marker == MARKER_STRING:
            return self.string(pos)
        if marker in (MARKER_XML_DOC, MARKER_XML, MARKER_BYTE_ARRAY, MARKER_DATE):
            head, pos = self.u29(pos)
            if not head & 1:
                return self.reference(self.objects, head >> 1, "object"), pos
            if marker == MARKER_DATE:
                self.need(pos, 8, "date")
                value = AMF0Date(_DOUBLE.unpack_from(self.data, pos)[0])
                pos += 8
            else:
                n = head >> 1
                self.need(pos, n, "byte array" if marker == MARKER_BYTE_ARRAY else "XML")
                raw = bytes(self.data[pos:pos + n])
                pos += n
                value = raw if marker == MARKER_BYTE_ARRAY else \
                    XMLDocument(raw.decode("utf-8", "surrogateescape"))
            self.remember(self.objects, value)
            return value, pos
        if marker == MARKER_ARRAY:
            head, pos = self.u29(pos)
            if not head & 1:
                return self.reference(self.objects, head >> 1, "object"), pos
            dense = head >> 1
            slot = self.remember(self.objects, _BUILDING)
            assoc = ECMAArray()
            while True:
                key, pos = self.string(pos)
                if not key:
                    break
                self.members(len(assoc))
                assoc[key], pos = self.value(pos, depth + 1)
            self.count(dense, pos, 1, "array")
            items = []
            for _ in range(dense):
                item, pos = self.value(pos, depth + 1)
                items.append(item)
            if assoc:
                for i, item in enumerate(items):
                    assoc[str(i)] = item
                result: Any = assoc
            else:
                result = items
            self.objects[slot] = result
            return result, pos
        if marker == MARKER_OBJECT:
            return self.object(pos, depth)
        if MARKER_VECTOR_INT <= marker <= MARKER_VECTOR_OBJECT:
            head, pos = self.u29(pos)
            if not head & 1:
                return self.reference(self.objects, head >> 1, "object"), pos
            n = head >> 1
            self.need(pos, 1, "vector fixed flag")
            pos += 1
            if marker == MARKER_VECTOR_OBJECT:
                _, pos = self.string(pos)  # the element type name
            width = {MARKER_VECTOR_INT: 4, MARKER_VECTOR_UINT: 4, MARKER_VECTOR_DOUBLE: 8}.get(
                marker, 1)
            self.count(n, pos, width, "vector")
            items = []
            if marker == MARKER_VECTOR_OBJECT:
                slot = self.remember(self.objects, _BUILDING)
                for _ in range(n):
                    item, pos = self.value(pos, depth + 1)
                    items.append(item)
                self.objects[slot] = items
                return items, pos
            fmt = {MARKER_VECTOR_INT: _I32, MARKER_VECTOR_UINT: _U32}.get(marker, _DOUBLE)
            for _ in range(n):
                items.append(fmt.unpack_from(self.data, pos)[0])
                pos += width
            self.remember(self.objects, items)
            return items, pos
        if marker == MARKER_DICTIONARY:
            head, pos = self.u29(pos)
            if not head & 1:
                return self.reference(self.objects, head >> 1, "object"), pos
            n = head >> 1
            self.need(pos, 1, "dictionary weak-keys flag")
            pos += 1
            self.count(n, pos, 2, "dictionary")
            slot = self.remember(self.objects, _BUILDING)
            pairs = []
            for _ in range(n):
                key, pos = self.value(pos, depth + 1)
                item, pos = self.value(pos, depth + 1)
                pairs.append((key, item))
            self.objects[slot] = pairs
            return pairs, pos
        raise AMF3Error(f"unsupported AMF3 type marker 0x{marker:02x} at offset {pos - 1}")

    def object(self, pos: int, depth: int) -> tuple[Any, int]:
        from .amf0 import TypedObject
        head, pos = self.u29(pos)
        if not head & 1:
            return self.reference(self.objects, head >> 1, "object"), pos
        if not head & 2:
            class_name, dynamic, sealed = self.reference(self.traits, head >> 2, "traits")
        elif head & 4:
            raise AMF3Error("AMF3 externalizable objects are not supported")
        else:
            dynamic = bool(head & 8)
            class_name, pos = self.string(pos)
            n = head >> 4
            self.count(n, pos, 1, "sealed member")
            sealed = []
            for _ in range(n):
                name, pos = self.string(pos)
                sealed.append(name)
            self.remember(self.traits, (class_name, dynamic, sealed))
        slot = self.remember(self.objects, _BUILDING)
        props: dict = {}
        for name in sealed:
            props[name], pos = self.value(pos, depth + 1)
        if dynamic:
            while True:
                key, pos = self.string(pos)
                if not key:
                    break
                self.members(len(props))
                props[key], pos = self.value(pos, depth + 1)
        result = TypedObject(class_name, props) if class_name else props
        self.objects[slot] = result
        return result, pos


def decode_value(data, offset: int = 0, depth: int = 1) -> tuple[Any, int]:
    """Decode one AMF3 value at ``offset`` (after the AMF0 0x11 marker): (value, next offset)."""
    try:
        return _Decoder(data, len(data)).value(offset, depth)
    except AMF3Error:
        raise
    except (IndexError, struct.error, ValueError, TypeError, RecursionError) as exc:
        raise AMF3Error(f"malformed AMF3 value: {exc!r}") from exc


# --------------------------------------------------------------------------- encoding


def _u29(n: int) -> bytes:
    if n < 0x80:
        return bytes((n,))
    if n < 0x4000:
        return bytes((n >> 7 | 0x80, n & 0x7F))
    if n < 0x200000:
        return bytes((n >> 14 | 0x80, (n >> 7) & 0x7F | 0x80, n & 0x7F))
    if n < 0x20000000:
        return bytes((n >> 22 | 0x80, (n >> 15) & 0x7F | 0x80, (n >> 8) & 0x7F | 0x80, n & 0xFF))
    raise ValueError(f"{n} does not fit an AMF3 U29")


def _string_body(s: str) -> bytes:
    raw = s.encode("utf-8", "surrogateescape")
    return _u29(len(raw) << 1 | 1) + raw


def _encode(value: Any, out: bytearray) -> None:
    from .amf0 import UNDEFINED
    if value is UNDEFINED:
        out.append(MARKER_UNDEFINED)
    elif value is None:
        out.append(MARKER_NULL)
    elif isinstance(value, bool):
        out.append(MARKER_TRUE if value else MARKER_FALSE)
    elif isinstance(value, int) and INT_MIN <= value <= INT_MAX:
        out.append(MARKER_INTEGER)
        out += _u29(value & 0x1FFFFFFF)
    elif isinstance(value, (int, float)):
        out.append(MARKER_DOUBLE)
        out += _DOUBLE.pack(float(value))
    elif isinstance(value, str):
        out.append(MARKER_STRING)
        out += _string_body(value)
    elif isinstance(value, (bytes, bytearray)):
        out.append(MARKER_BYTE_ARRAY)
        out += _u29(len(value) << 1 | 1) + bytes(value)
    elif isinstance(value, (list, tuple)):
        out.append(MARKER_ARRAY)
        out += _u29(len(value) << 1 | 1)
        out += _string_body("")
        for item in value:
            _encode(item, out)
    elif isinstance(value, dict):
        # An anonymous dynamic object: inline traits, no sealed members.
        out.append(MARKER_OBJECT)
        out += _u29(0b1011)
        out += _string_body("")
        for key, item in value.items():
            if not isinstance(key, str) or not key:
                raise TypeError("AMF3 object keys must be non-empty str")
            out += _string_body(key)
            _encode(item, out)
        out += _string_body("")
    else:
        raise TypeError(f"cannot encode {type(value).__name__} as AMF3")


def encode_value(value: Any) -> bytes:
    """Serialize one value as AMF3 (without the AMF0 0x11 marker)."""
    out = bytearray()
    _encode(value, out)
    return bytes(out)
