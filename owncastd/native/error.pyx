# cython: language_level=3
"""FFmpeg error codes as typed Python exceptions, and libav's log level.

Every exception here is an ``FFmpegError`` (a ``RuntimeError``, which is what the transcoder's
callers catch) carrying ``code``, the AVERROR value. A code that is an errno (``AVERROR(e)``)
raises ``FFmpegOSError``, which is also an ``OSError`` with ``.errno`` set: a full disk arrives
as ``OSError`` with ``errno == errno.ENOSPC`` and is told apart by that, not by its message.
"""
import errno as _errno

from owncastd.native.libavutil cimport (AV_LOG_ERROR, AVERROR_DECODER_NOT_FOUND,
                                        AVERROR_ENCODER_NOT_FOUND, AVERROR_EOF,
                                        AVERROR_INVALIDDATA, av_log_set_level, av_strerror)


class FFmpegError(RuntimeError):
    """An error from FFmpeg's libraries; ``code`` is the (negative) AVERROR value."""

    def __init__(self, code, message):
        super().__init__(message)
        self.code = code


class FFmpegOSError(FFmpegError, OSError):
    """An FFmpeg error that is an errno (``AVERROR(errno)``): ``.errno``, ``.strerror`` set."""

    def __init__(self, code, err, message):
        OSError.__init__(self, err, message)
        self.code = code


class TracksChangedError(RuntimeError):
    """A track appeared after the stream started without it (video after an audio-only start,
    audio after a video-only one): muxers cannot add it, so the caller finishes this pipeline
    and starts a new one, after a discontinuity, with the sequence headers it has. Callers tell
    it apart by ``restart_stream``."""

    restart_stream = True


class InvalidDataError(FFmpegError, ValueError):
    """AVERROR_INVALIDDATA: the input (or a muxer's packet) is malformed."""


class EncoderNotFoundError(FFmpegError, LookupError):
    """AVERROR_ENCODER_NOT_FOUND: this libavcodec has no such encoder."""


class DecoderNotFoundError(FFmpegError, LookupError):
    """AVERROR_DECODER_NOT_FOUND: this libavcodec has no such decoder."""


class EndOfFileError(FFmpegError, EOFError):
    """AVERROR_EOF."""


_BY_CODE = {
    AVERROR_INVALIDDATA: InvalidDataError,
    AVERROR_ENCODER_NOT_FOUND: EncoderNotFoundError,
    AVERROR_DECODER_NOT_FOUND: DecoderNotFoundError,
    AVERROR_EOF: EndOfFileError,
}


cdef str av_error_string(int code):
    cdef char buf[256]
    av_strerror(code, buf, sizeof(buf))
    return buf.decode("utf-8", "replace")


cpdef object make_error(int code, str context=None):
    """The exception for an AVERROR ``code``; its message is ``"<context>: <FFmpeg's text>"``."""
    text = av_error_string(code)
    message = f"{context}: {text}" if context else text
    if code < 0 and -code in _errno.errorcode:
        return FFmpegOSError(code, -code, message)
    return _BY_CODE.get(code, FFmpegError)(code, message)


cdef int err_check(int code, str context=None) except -1:
    """Raise the typed exception for a negative ``code``; return it otherwise."""
    if code < 0:
        raise make_error(code, context)
    return code


def error_from_exception(exc, str context):
    """A Python exception met inside the transcoder (writing a playlist) as an FFmpegError,
    keeping its errno."""
    if isinstance(exc, OSError) and exc.errno:
        return FFmpegOSError(-exc.errno, exc.errno, f"{context}: {exc.strerror or exc}")
    return FFmpegError(-_errno.EINVAL, f"{context}: {exc}")


def set_log_level(int level):
    """libav's log level (AV_LOG_*: 8 fatal, 16 error, 24 warning, 32 info)."""
    av_log_set_level(level)


av_log_set_level(AV_LOG_ERROR)   # x264 and the decoders are chatty at the default level


def retitled(exc, str message):
    """The same error (type, code, errno) under another message."""
    if isinstance(exc, FFmpegOSError):
        return FFmpegOSError(exc.code, exc.errno, message)
    return type(exc)(exc.code, message)
