"""Recordings of broadcasts (replays), their export to MP4 and clips (issue 17).

`playlist` reads live HLS playlists and writes VOD ones (pure), `library` knows a recording's
files, ids, sizes and retention, `export` remuxes segments to MP4 with ffmpeg, `clips` makes
clips. The recorder child that follows the live output is `services/recorder.py`.
"""
