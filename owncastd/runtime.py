"""What one running instance shares with its children and its CLI: pidfile, runtime file, paths.

The supervisor holds an exclusive `flock` on `DATA/owncastd.pid` for its whole life, so a
pidfile left by a crash (no lock) never blocks a new start, and a live instance is detected
even if its pid was reused. `DATA/owncastd.runtime.json` (mode 0600: it holds the overrides,
which may include the stream key) tells children and `owncastd status` how this instance was
started.
"""
from __future__ import annotations

import ctypes
import fcntl
import json
import os
import signal
import sys
from dataclasses import asdict, dataclass, field
from typing import Any

from . import config as configmod
from .datadir import DataDir
from .store import Store



@dataclass
class Runtime:
    pid: int
    data_dir: str
    config_path: str | None
    overrides: dict[str, Any]
    bind: str
    web_port: int
    rtmp_port: int
    started_at: str
    children: dict[str, int] = field(default_factory=dict)

    def write(self) -> None:
        path = DataDir(self.data_dir).runtime_file
        tmp = path + ".tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(asdict(self), f)
        os.replace(tmp, path)

    @classmethod
    def read(cls, data_dir: str) -> "Runtime | None":
        try:
            with open(DataDir(data_dir).runtime_file) as f:
                return cls(**json.load(f))
        except (FileNotFoundError, json.JSONDecodeError, TypeError):
            return None


class PidLock:
    """The data dir's ownership lock (see module doc)."""

    def __init__(self, data_dir: str):
        self.path = DataDir(data_dir).pidfile
        self._fd: int | None = None

    def acquire(self) -> bool:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd
        return True

    def release(self) -> None:
        if self._fd is not None:
            try:
                os.unlink(self.path)
            except FileNotFoundError:
                pass
            os.close(self._fd)
            self._fd = None


def running_pid(data_dir: str) -> int | None:
    """The pid of the live instance owning `data_dir`, or None (no pidfile, or a stale one)."""
    path = DataDir(data_dir).pidfile
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            text = os.read(fd, 64).decode(errors="replace").strip()
            return int(text) if text.isdigit() else None
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None  # nobody holds the lock: stale
    finally:
        os.close(fd)


def child_config(data_dir: str) -> tuple[configmod.Config, Runtime]:
    """Config for a child process, rebuilt from the runtime file its supervisor wrote."""
    rt = Runtime.read(data_dir)
    if rt is None:
        raise SystemExit(f"no runtime file in {data_dir}: children are started by `owncastd start`")
    file_values = configmod.load_file(rt.config_path) if rt.config_path else {}
    store = Store.in_data_dir(data_dir, configmod.resolve_store_url(file_values, rt.overrides))
    return configmod.Config(store, file_values, rt.overrides), rt


PR_SET_PDEATHSIG = 1


def die_with_parent(sig: int = signal.SIGTERM) -> None:
    """Ask the kernel to signal this process when its parent (the supervisor) dies, so a
    SIGKILLed supervisor leaves no orphans; exit at once if the parent is already gone."""
    expected = os.environ.get("OWNCASTD_SUPERVISOR_PID")
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, sig, 0, 0, 0)
    except (OSError, AttributeError):
        pass
    if expected and os.getppid() != int(expected):
        sys.exit(0)


@dataclass
class ChildStart:
    data_dir: str
    fd: int | None
    config: configmod.Config
    runtime: Runtime


def start_child(name: str, argv: list[str] | None = None, *, with_fd: bool = False,
                green: bool = False) -> ChildStart:
    """The common start of every child process: parse `--data-dir` (and `--fd`, the inherited
    listening socket), die with the supervisor, rebuild the config from the runtime file and
    log to stderr and the supervisor as `owncastd-<name>`, and start its heartbeat."""
    import argparse

    from . import heartbeat, logs
    parser = argparse.ArgumentParser(prog=f"owncastd-{name}")
    parser.add_argument("--data-dir", required=True)
    if with_fd:
        parser.add_argument("--fd", type=int, required=True)
    args = parser.parse_args(argv)
    die_with_parent()
    config, rt = child_config(args.data_dir)
    logs.setup(f"owncastd-{name}", config.get("log_level"), args.data_dir, green=green)
    heartbeat.start_beating(green)
    return ChildStart(args.data_dir, getattr(args, "fd", None), config, rt)


def stop_on_signals():
    """A threading.Event set by SIGTERM or SIGINT, for children whose loop waits on it."""
    import threading
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    return stop
