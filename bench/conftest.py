"""Benchmark helpers: collection of bench_*.py, the cached input, the results table.

`make bench` runs `pytest -q bench`; pytest's default `python_files` (test_*.py) would skip
bench_*.py when the folder is given, so `pytest_collect_file` below collects them here.
Every benchmark records its measurements and its targets with the `bench_report` fixture;
`pytest_terminal_summary` prints them as tables at the end (visible with `-q`, unlike prints).
"""
from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from dataclasses import dataclass, field

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

# bench/.cache is not in .gitignore, so generated media is cached outside the work tree.
CACHE_DIR = os.environ.get("OWNCASTD_BENCH_CACHE", "/tmp/owncastd-bench-cache")


def _load_tests_conftest():
    """tests/conftest.py (Daemon, temporary_daemon, config_file, free_port, wait_until),
    loaded under its own module name so it neither registers its fixtures here nor shadows
    any `conftest` module."""
    name = "_owncastd_tests_conftest"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, os.path.join(ROOT, "tests", "conftest.py"))
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


_tests = _load_tests_conftest()
Daemon = _tests.Daemon
temporary_daemon = _tests.temporary_daemon
config_file = _tests.config_file
free_port = _tests.free_port
wait_until = _tests.wait_until


def pytest_collect_file(parent, file_path):
    if (file_path.suffix == ".py" and file_path.name.startswith("bench_")
            and str(file_path.parent) == HERE and not parent.session.isinitpath(file_path)):
        return pytest.Module.from_parent(parent, path=file_path)
    return None


# -- the input media ----------------------------------------------------------------------------

@dataclass(frozen=True)
class MediaFile:
    path: str
    size: int                 # bytes
    duration: float           # seconds
    video_packets: int        # as ffprobe counts them (sequence headers are not packets)
    audio_packets: int


def probe(path: str) -> MediaFile:
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-count_packets",
         "-show_entries", "stream=codec_type,nb_read_packets:format=duration",
         "-of", "json", path], check=True, capture_output=True, text=True).stdout
    info = json.loads(out)
    counts = {s["codec_type"]: int(s["nb_read_packets"]) for s in info["streams"]}
    return MediaFile(path, os.path.getsize(path), float(info["format"]["duration"]),
                     counts["video"], counts["audio"])


def cached_media(name: str, ffmpeg_args: list[str]) -> MediaFile:
    """Generate `name` under CACHE_DIR once (keyed by its ffmpeg arguments) and probe it."""
    os.makedirs(CACHE_DIR, exist_ok=True)
    path = os.path.join(CACHE_DIR, name)
    args_path = path + ".args.json"
    try:
        with open(args_path) as f:
            fresh = json.load(f) == ffmpeg_args and os.path.getsize(path) > 0
    except (OSError, ValueError):
        fresh = False
    if not fresh:
        tmp = path + f".tmp{os.getpid()}" + os.path.splitext(name)[1]
        subprocess.run(["ffmpeg", "-hide_banner", "-loglevel", "error", "-y", *ffmpeg_args, tmp],
                       check=True, stdin=subprocess.DEVNULL)
        os.replace(tmp, path)
        with open(args_path, "w") as f:
            json.dump(ffmpeg_args, f)
    return probe(path)


# -- the report ---------------------------------------------------------------------------------

@dataclass
class BenchReport:
    runs: list[dict] = field(default_factory=list)     # one row per measured publish
    checks: list[dict] = field(default_factory=list)   # one row per target
    notes: list[str] = field(default_factory=list)     # printed under the tables

    def run(self, **row) -> dict:
        self.runs.append(row)
        return row

    def check(self, name: str, measured: float, target: str, ok: bool, note: str = "") -> bool:
        self.checks.append(dict(name=name, measured=measured, target=target, ok=bool(ok),
                                note=note))
        return bool(ok)


_REPORT = BenchReport()


@pytest.fixture(scope="session")
def bench_report() -> BenchReport:
    return _REPORT


def _table(rows: list[list[str]]) -> list[str]:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in
                       enumerate(zip(r, widths))).rstrip() for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return lines


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    rep = _REPORT
    if not rep.runs and not rep.checks and not rep.notes:
        return
    tr = terminalreporter
    if rep.runs:
        tr.section("benchmark measurements")
        rows = [["publish", "server", "round", "MB", "wall s", "MB/s", "x realtime",
                 "server CPU s", "CPU s/MB", "frames sent", "handed+dropped", "note"]]
        for r in rep.runs:
            rows.append([r["publish"], r["server"], str(r["round"]), f"{r['mb']:.1f}",
                         f"{r['wall']:.2f}", f"{r['mbps']:.1f}", f"{r['realtime']:.1f}",
                         f"{r['cpu']:.2f}", f"{r['cpu_per_mb']:.4f}",
                         str(r.get("expected_frames", "")), str(r.get("accounted", "")),
                         r.get("note", "")])
        for line in _table(rows):
            tr.write_line(line)
    if rep.checks:
        tr.section("benchmark targets")
        rows = [["check", "measured", "target", "result", "note"]]
        for c in rep.checks:
            m = c["measured"]
            measured = f"{m:.3f}" if isinstance(m, float) else str(m)
            rows.append([c["name"], measured, c["target"], "PASS" if c["ok"] else "FAIL",
                         c["note"]])
        for line in _table(rows):
            tr.write_line(line)
    for note in rep.notes:
        tr.write_line(f"note: {note}")
