# cython: language_level=3
"""Versions of the FFmpeg libraries this build is linked against (``owncastd --version``)."""
from owncastd.native.libavcodec cimport avcodec_version
from owncastd.native.libavformat cimport avformat_version
from owncastd.native.libavutil cimport av_version_info, avutil_version
from owncastd.native.libswresample cimport swresample_version
from owncastd.native.libswscale cimport swscale_version


cdef str _fmt(unsigned v):
    # libav packs versions as major << 16 | minor << 8 | micro.
    return f"{v >> 16}.{(v >> 8) & 0xff}.{v & 0xff}"


def library_versions():
    """Return ``{library: "major.minor.micro"}`` as reported at run time by the linked libraries."""
    return {
        "libavutil": _fmt(avutil_version()),
        "libavcodec": _fmt(avcodec_version()),
        "libavformat": _fmt(avformat_version()),
        "libswscale": _fmt(swscale_version()),
        "libswresample": _fmt(swresample_version()),
    }


def ffmpeg_version():
    """The FFmpeg release string the libraries were built from (e.g. ``5.1.6-0+deb12u1``)."""
    return av_version_info().decode("utf-8", "replace")
