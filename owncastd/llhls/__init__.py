"""Low-Latency HLS (issue 15), independent of the transcoder backend: `bmff` reads fragmented
MP4, `packager` cuts parts/segments and writes files and playlists (`playlist`), `feed` connects
an fMP4 byte stream to the packager. The web side is `owncastd.api.llhls`. See docs/LLHLS.md."""
