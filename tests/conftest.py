"""Shared fixtures: free ports, temporary data dirs and a real owncastd daemon."""
from __future__ import annotations

import base64
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

import psutil
import pytest
import requests

BIN_DIR = os.path.dirname(sys.executable)
OWNCASTD = os.path.join(BIN_DIR, "owncastd")
OWNCASTCTL = os.path.join(BIN_DIR, "owncastctl")
TEST_KEY = "test-stream-key-0123456789"


def test_store_url() -> str:
    """The store for a new daemon or in-process app: "" (SQLite in its data dir), or a new
    database on this run's PostgreSQL server when OWNCASTD_TEST_STORE=postgresql (tests/pg.py)."""
    if os.environ.get("OWNCASTD_TEST_STORE", "sqlite") != "postgresql":
        return ""
    import pg
    return pg.shared_server().new_database()


test_store_url.__test__ = False  # a helper, not a test


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def short_tmp():
    """A temp dir with a short path (unix socket paths are limited to ~100 bytes)."""
    path = tempfile.mkdtemp(prefix="oc-")
    yield path
    shutil.rmtree(path, ignore_errors=True)


def wait_until(predicate, timeout: float = 10.0, interval: float = 0.1, what: str = "condition"):
    deadline = time.monotonic() + timeout
    last_exc = None
    while time.monotonic() < deadline:
        try:
            value = predicate()
            if value:
                return value
        except Exception as exc:  # the thing we wait for may not answer yet
            last_exc = exc
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}; last error: {last_exc}")


def finished_replays(d) -> list | None:
    """`GET /api/replays` (newest first) once the newest recording has finished; None while
    there is none or it is still being recorded."""
    listed = d.get("/api/replays", auth=d.auth).json()
    return listed if listed and not listed[0]["inProgress"] else None


def wait_for_finished_replays(d, timeout: float = 60) -> list:
    return wait_until(lambda: finished_replays(d), timeout, 0.5, what="the recording to finish")


class Daemon:
    """A real `owncastd start` on 127.0.0.1 and free ports, in its own data dir."""

    def __init__(self, data_dir: str, key: str = TEST_KEY, extra_args=(), env=None):
        self.data_dir = data_dir
        self.key = key
        self.web_port = free_port()
        self.rtmp_port = free_port()
        self.extra_args = list(extra_args)
        self.env = dict(os.environ, **(env or {}))
        if "OWNCAST_STORE_URL" not in self.env and "--store-url" not in self.extra_args:
            store_url = test_store_url()
            if store_url:
                self.env["OWNCAST_STORE_URL"] = store_url
        self.proc: subprocess.Popen | None = None
        self.log_path = os.path.join(data_dir, "daemon-output.log")
        self.seen_pids: set[int] = set()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.web_port}"

    @property
    def auth(self):
        return ("admin", self.key)

    def args(self) -> list[str]:
        args = [OWNCASTD, "start", "--data-dir", self.data_dir, "--bind", "127.0.0.1",
                "--web-port", str(self.web_port), "--rtmp-port", str(self.rtmp_port)]
        if self.key:
            args += ["--stream-key", self.key]
        return args + self.extra_args

    def start(self, wait: bool = True) -> "Daemon":
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(self.args(), stdout=self._log, stderr=subprocess.STDOUT,
                                     env=self.env, cwd=self.data_dir)
        if wait:
            self.wait_ready()
        return self

    def wait_ready(self, timeout: float = 20.0) -> None:
        def ready():
            if self.proc.poll() is not None:
                raise AssertionError(f"owncastd exited with {self.proc.returncode}:\n{self.output()}")
            return requests.get(self.url + "/api/status", timeout=1).status_code == 200
        wait_until(ready, timeout, what="owncastd to answer /api/status")
        self.remember_tree()

    def output(self) -> str:
        with open(self.log_path, "rb") as f:
            return f.read().decode(errors="replace")

    def get(self, path, **kw):
        return requests.get(self.url + path, timeout=5, **kw)

    def post(self, path, **kw):
        return requests.post(self.url + path, timeout=5, **kw)

    def tree(self) -> list[psutil.Process]:
        try:
            return psutil.Process(self.proc.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            return []

    def remember_tree(self) -> None:
        self.seen_pids.update(p.pid for p in self.tree())

    def children_named(self, fragment: str) -> list[psutil.Process]:
        out = []
        for p in self.tree():
            try:
                if fragment in " ".join(p.cmdline()):
                    out.append(p)
            except psutil.Error:
                pass
        return out

    def stop(self, sig=signal.SIGTERM, timeout: float = 10.0) -> float:
        """Signal the supervisor; return how long it took to exit."""
        self.remember_tree()
        began = time.monotonic()
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise AssertionError(f"owncastd did not exit within {timeout} s")
        self._log.close()
        return time.monotonic() - began

    def leftovers(self) -> list[int]:
        alive = []
        for pid in self.seen_pids:
            try:
                p = psutil.Process(pid)
                if p.status() != psutil.STATUS_ZOMBIE:
                    alive.append(pid)
            except psutil.NoSuchProcess:
                pass
        return alive

    def kill_everything(self) -> None:
        """Last-resort cleanup: only processes this daemon started."""
        self.remember_tree() if self.proc and self.proc.poll() is None else None
        for pid in list(self.seen_pids) + ([self.proc.pid] if self.proc else []):
            try:
                os.kill(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass


@contextlib.contextmanager
def temporary_daemon(prepare=None, **kw):
    """A started Daemon in its own temp dir for a module-scoped fixture; `prepare(d)` runs
    before the start (e.g. to write a config file). Stopped and removed afterwards."""
    tmp = tempfile.mkdtemp(prefix="oc-")
    d = Daemon(os.path.join(tmp, "d"), **kw)
    os.makedirs(d.data_dir)
    try:
        if prepare is not None:
            prepare(d)
        d.start()
        yield d
    finally:
        try:
            if d.proc is not None:
                d.stop()
        finally:
            d.kill_everything()
            shutil.rmtree(tmp, ignore_errors=True)


def write_config(d: Daemon, text: str, name: str = "test.toml") -> str:
    """Writes `text` as a config file in the (not yet started) daemon's data dir and adds
    `--config` on it to its arguments; returns the file's path."""
    path = os.path.join(d.data_dir, name)
    with open(path, "w") as f:
        f.write(text)
    d.extra_args += ["--config", path]
    return path


def config_file(text: str, name: str = "test.toml"):
    """A `prepare` for temporary_daemon: `write_config` with `text`."""
    return lambda d: write_config(d, text, name)


class RecordingPublisher:
    """Stands in for the bus publisher of an in-process app; keeps what was published."""

    def __init__(self):
        self.sent = []

    def publish(self, topic, payload):
        self.sent.append((topic, json.loads(json.dumps(payload))))


def basic_auth(password: str, user: str = "admin") -> dict:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def in_process_app(data_dir: str, overrides=None, saved=None, emoji: bool = True):
    """The Falcon app over a real store in `data_dir` (with the bundled emoji when `emoji`):
    returns (falcon TestClient, config, RecordingPublisher, app)."""
    from importlib import resources

    from falcon import testing

    from owncastd.api.app import create_app
    from owncastd.config import Config
    from owncastd.store import Store
    if emoji:
        shutil.copytree(str(resources.files("owncastd") / "assets" / "emoji"),
                        os.path.join(data_dir, "emoji"))
    config = Config(Store.in_data_dir(data_dir, test_store_url()), {}, dict(overrides or {}))
    if saved:
        config.save(saved)
    publisher = RecordingPublisher()
    app = create_app(data_dir, config, publisher)
    return testing.TestClient(app), config, publisher, app


@pytest.fixture
def daemon_factory(short_tmp):
    started: list[Daemon] = []

    def make(**kw) -> Daemon:
        d = Daemon(os.path.join(short_tmp, f"d{len(started)}"), **kw)
        os.makedirs(d.data_dir, exist_ok=True)
        started.append(d)
        return d

    yield make
    for d in started:
        if d.proc is not None and d.proc.poll() is None:
            try:
                d.stop()
            except AssertionError:
                pass
        d.kill_everything()


@pytest.fixture
def daemon(daemon_factory) -> Daemon:
    return daemon_factory().start()
