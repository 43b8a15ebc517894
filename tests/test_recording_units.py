"""The recorder and the recordings library on real files and a real store, without a daemon:
format-agnostic following (MPEG-TS and fMP4 with EXT-X-MAP), gaps become discontinuities,
hard links, the disk-space floor, retention."""
from __future__ import annotations

import logging
import os
from datetime import datetime, timedelta, timezone

from owncastd.config import Config
from owncastd.datadir import DataDir
from owncastd.recordings import library, playlist
from owncastd.services.recorder import Recorder
from owncastd.store import Store


def live_playlist(folder: str, segments: list[tuple[str, bytes]], map_uri: str | None = None,
                  first_seq: int = 0) -> None:
    os.makedirs(folder, exist_ok=True)
    lines = ["#EXTM3U", "#EXT-X-VERSION:7", "#EXT-X-TARGETDURATION:2",
             f"#EXT-X-MEDIA-SEQUENCE:{first_seq}"]
    if map_uri:
        lines.append(f'#EXT-X-MAP:URI="{map_uri}"')
    for name, body in segments:
        with open(os.path.join(folder, name), "wb") as f:
            f.write(body)
        lines += ["#EXT-X-PART:DURATION=0.5,URI=\"part.m4s\"", "#EXTINF:2.000,", name]
    with open(os.path.join(folder, "stream.m3u8"), "w") as f:
        f.write("\n".join(lines) + "\n")


def recorder_in(tmp_path, policy: dict) -> tuple[Recorder, Config, str]:
    data = str(tmp_path)
    config = Config(Store.in_data_dir(data), {}, {})
    config.save({"recording": {"enabled": True, **policy}})
    config.store.set_state("online", True)
    hls = DataDir(data).hls
    os.makedirs(hls, exist_ok=True)
    with open(os.path.join(hls, "stream.m3u8"), "w") as f:
        f.write("#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1\n0/stream.m3u8\n"
                "#EXT-X-STREAM-INF:BANDWIDTH=2\n1/stream.m3u8\n")
    return Recorder(config, data), config, hls


def test_fmp4_segments_are_kept_by_hard_link_with_their_init_segment(tmp_path):
    rec, config, hls = recorder_in(tmp_path, {"minFreeMB": 0})
    live = os.path.join(hls, "0")
    live_playlist(live, [("a.m4s", b"A" * 100), ("b.m4s", b"B" * 100)], "init.mp4")
    with open(os.path.join(live, "init.mp4"), "wb") as f:
        f.write(b"INIT")
    rec.cycle(now=0)
    rec_id = rec.current.id
    folder = os.path.join(library.folder(str(tmp_path), rec_id), "0")
    assert os.stat(os.path.join(folder, "seg-0.m4s")).st_ino == \
        os.stat(os.path.join(live, "a.m4s")).st_ino          # a link, not a copy
    text = open(os.path.join(folder, "stream.m3u8")).read()
    assert '#EXT-X-MAP:URI="init-0.mp4"' in text and "#EXT-X-PLAYLIST-TYPE:EVENT" in text
    assert "EXT-X-PART" not in text
    # The window slides past a segment we never saw (c.m4s): d.m4s follows a discontinuity.
    os.unlink(os.path.join(live, "a.m4s"))
    live_playlist(live, [("b.m4s", b"B" * 100)], "init.mp4")
    rec.cycle(now=1)
    live_playlist(live, [("d.m4s", b"D" * 100)], "init.mp4", first_seq=3)
    rec.cycle(now=2)
    kept = library.kept_segments(str(tmp_path), rec_id, 0)
    assert [k.name for k in kept] == ["seg-0.m4s", "seg-1.m4s", "seg-2.m4s"]
    assert [k.discontinuity for k in kept] == [False, False, True]
    # Offline past the grace: finished, VOD, and the master lists only rendition 0.
    config.store.set_state("online", False)
    rec.cycle(now=3)
    rec.cycle(now=3 + config.get("recording_grace") + 1)
    assert rec.current is None
    r = config.store.recording(rec_id)
    assert r["endTime"] and r["durationSeconds"] == 6.0 and r["size"] >= 304
    text = open(os.path.join(folder, "stream.m3u8")).read()
    assert text.endswith("#EXT-X-ENDLIST\n") and "#EXT-X-PLAYLIST-TYPE:VOD" in text
    master = open(os.path.join(library.folder(str(tmp_path), rec_id), "stream.m3u8")).read()
    assert "0/stream.m3u8" in master and "1/stream.m3u8" not in master


def test_below_the_disk_floor_recording_pauses_with_a_warning(tmp_path, caplog):
    rec, config, hls = recorder_in(tmp_path, {"minFreeMB": 10 ** 9})
    live_playlist(os.path.join(hls, "0"), [("stream-0.ts", b"x" * 188)])
    with caplog.at_level(logging.WARNING, "owncastd.recorder"):
        rec.cycle(now=0)
        rec.cycle(now=1)
    assert rec.current is None and config.store.recordings() == []
    assert len([r for r in caplog.records if "recording paused" in r.message]) == 1
    config.save({"recording": {"enabled": True, "minFreeMB": 0}})
    rec.cycle(now=2)
    assert [k.name for k in library.kept_segments(str(tmp_path), rec.current.id, 0)] == \
        ["seg-0.ts"]


def test_a_restarted_recorder_resumes_the_recording_in_progress(tmp_path):
    rec, config, hls = recorder_in(tmp_path, {"minFreeMB": 0})
    live = os.path.join(hls, "0")
    live_playlist(live, [("stream-0.ts", b"x" * 188), ("stream-1.ts", b"y" * 188)])
    rec.cycle(now=0)
    rec_id = rec.current.id
    again = Recorder(config, str(tmp_path))          # the child restarted
    assert again.current.id == rec_id
    live_playlist(live, [("stream-1.ts", b"y" * 188), ("stream-2.ts", b"z" * 188)])
    again.cycle(now=1)
    kept = library.kept_segments(str(tmp_path), rec_id, 0)
    assert [k.name for k in kept] == ["seg-0.ts", "seg-1.ts", "seg-2.ts"]   # nothing twice
    assert kept[2].discontinuity


def _recording(store, data_dir, rec_id, days_ago, size, ended=True):
    start = datetime.now(timezone.utc) - timedelta(days=days_ago)
    store.add_recording(rec_id, "t", start.isoformat(), [0])
    os.makedirs(os.path.join(library.folder(data_dir, rec_id), "0"))
    with open(os.path.join(library.folder(data_dir, rec_id), "0", "seg-0.ts"), "wb") as f:
        f.write(b"\0" * size)
    store.update_recording(rec_id, size=size, end_time=start.isoformat() if ended else None)


def test_retention_removes_the_oldest_over_the_size_and_never_the_live_one(tmp_path):
    data = str(tmp_path)
    store = Store.in_data_dir(data)
    _recording(store, data, "live", 3, 900_000, ended=False)   # oldest, but being written
    _recording(store, data, "old", 2, 400_000)
    _recording(store, data, "new", 1, 400_000)
    _recording(store, data, "ancient", 40, 10)
    policy = {"maxAgeDays": 30, "maxTotalMB": 1}
    deleted = library.apply_retention(store, data, policy, current="live")
    assert deleted == ["ancient", "old", "new"]     # by age, then oldest first while > 1 MB
    assert [r["id"] for r in store.recordings()] == ["live"]
    assert os.path.isdir(library.folder(data, "live"))
    assert not os.path.exists(library.folder(data, "old"))


def test_covering_segments_and_vod_render():
    kept = [playlist.Kept(f"seg-{i}.ts", 2.0) for i in range(5)]
    assert playlist.covering(kept, 3.0, 7.0) == (1, 4, 2.0)
    assert playlist.covering(kept, 0.0, 10.0) == (0, 5, 0.0)
    assert playlist.render_vod(kept[:1], True).splitlines()[-1] == "#EXT-X-ENDLIST"


def test_the_clip_buffer_keeps_the_last_max_seconds_while_recording_is_off(tmp_path):
    rec, config, hls = recorder_in(tmp_path, {"minFreeMB": 0})
    config.save({"recording": {"enabled": False}, "clips.max_seconds": 4})
    live = os.path.join(hls, "0")
    for i in range(6):     # a live window of two 2 s segments slides over 12 s
        live_playlist(live, [(f"stream-{j}.ts", bytes([j]) * 188) for j in (i, i + 1)],
                      first_seq=i)
        rec.cycle(now=i)
    folder = os.path.join(str(tmp_path), "clipbuffer", "0")
    kept = playlist.parse_vod(open(os.path.join(folder, "stream.m3u8")).read())
    # 4 s plus ClipBuffer.SPARE segments, the newest; older links removed
    assert [k.name for k in kept] == ["seg-3.ts", "seg-4.ts", "seg-5.ts", "seg-6.ts"]
    assert sorted(n for n in os.listdir(folder) if n.startswith("seg-")) == \
        ["seg-3.ts", "seg-4.ts", "seg-5.ts", "seg-6.ts"]
    assert config.store.recordings() == []
    config.store.set_state("online", False)
    rec.cycle(now=10)
    rec.cycle(now=10 + config.get("recording_grace") + 1)
    assert not os.path.exists(folder)


def test_an_earlier_broadcasts_segments_in_the_live_window_are_not_kept(tmp_path):
    import time as _time
    from owncastd.store import utcnow
    rec, config, hls = recorder_in(tmp_path, {"minFreeMB": 0})
    live = os.path.join(hls, "0")
    # The new stream's playlist continues the old one's window after a discontinuity.
    live_playlist(live, [("stream-7.ts", b"old" * 60), ("stream-8.ts", b"old" * 60)])
    past = _time.time() - 3600
    for name in ("stream-7.ts", "stream-8.ts"):
        os.utime(os.path.join(live, name), (past, past))
    config.store.set_state("lastConnectTime", utcnow())
    rec.cycle(now=0)
    assert rec.current.empty
    live_playlist(live, [("stream-7.ts", b"old" * 60), ("stream-8.ts", b"old" * 60),
                         ("stream-9.ts", b"new" * 60)])
    os.utime(os.path.join(live, "stream-7.ts"), (past, past))
    os.utime(os.path.join(live, "stream-8.ts"), (past, past))
    rec.cycle(now=1)
    kept = library.kept_segments(str(tmp_path), rec.current.id, 0)
    assert [k.name for k in kept] == ["seg-0.ts"] and not kept[0].discontinuity
    assert open(os.path.join(library.folder(str(tmp_path), rec.current.id), "0",
                             "seg-0.ts"), "rb").read().startswith(b"new")
