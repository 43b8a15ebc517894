"""Error types of the RTMP protocol layer.

Every problem caused by bytes received from a peer surfaces as ``ProtocolError``
(or a subclass), so a connection handler needs exactly one ``except`` clause to
drop a misbehaving client.
"""


class ProtocolError(Exception):
    """The peer sent bytes that violate RTMP or exceed a configured bound."""


class HandshakeError(ProtocolError):
    """C0/C1/C2 were malformed (e.g. an unsupported version byte)."""


class ChunkError(ProtocolError):
    """The chunk stream was malformed or exceeded a bound."""


class AMF0Error(ProtocolError):
    """An AMF0 value could not be decoded (truncated, unknown marker, too deep...)."""


class AMF3Error(AMF0Error):
    """An AMF3 value (inside AMF0, after the avmplus marker 0x11) could not be decoded."""
