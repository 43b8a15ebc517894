"""Compiled extensions over FFmpeg's libraries (PyAV's layout: each .pyx beside its .pxd).

The transcoder's public face is ``owncastd.native.transcode``; ``avinfo`` reports the linked
library versions. These modules import nothing of owncastd but ``owncastd.media``.
"""
