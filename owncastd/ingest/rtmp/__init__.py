"""Pure, I/O-free RTMP protocol layer for the RTMP ingest.

``session.ServerSession`` is the entry point for a connection handler; the
modules below it (handshake, chunk, amf0, messages) are usable on their own.
"""
from .errors import AMF0Error, ChunkError, HandshakeError, ProtocolError
from .session import (
    AudioData, Connected, Event, HandshakeDone, MetaData, PingResponse, PublishRequested,
    ServerSession, Unpublished, VideoData,
)

__all__ = [
    "AMF0Error", "AudioData", "ChunkError", "Connected", "Event", "HandshakeDone",
    "HandshakeError", "MetaData", "PingResponse", "ProtocolError", "PublishRequested",
    "ServerSession", "Unpublished", "VideoData",
]
