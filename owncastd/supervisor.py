"""The supervisor: owns the listening sockets and the bus, starts every child and keeps it alive.

Like gunicorn's arbiter it is one loop of four verbs: handle queued signals, kill hung children
(no heartbeat for `child_timeout` seconds: `heartbeat.py`), reap the dead, respawn what is
missing (with backoff). Signal handlers only enqueue the signal; `signal.set_wakeup_fd` wakes
the loop. What else runs here has its own module: the log collector (`log_collector.py`) and
what a dead ingest means for the stream (`stream_state.py`). Children are started with
fork+exec (`python -m ...`), each in its own session, and inherit only the listening sockets
they need: the supervisor binds the web and RTMP ports once, so a restarted child never races
for its port and connections that arrive while it restarts wait in the kernel's backlog
instead of being refused.
"""
from __future__ import annotations

import logging
import os
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Callable

import psutil

from . import bus, heartbeat, metrics, roles, stream_state
from .config import Config, ConfigError, load_file
from .datadir import DataDir
from .log_collector import LogCollector
from .runtime import PidLock, Runtime
from .store import utcnow

log = logging.getLogger("owncastd.supervisor")

SHUTDOWN_GRACE = 7.0        # seconds children get after SIGTERM before SIGKILL (total < 10 s)
BACKOFF_START = 0.5
BACKOFF_MAX = 30.0
STABLE_AFTER = 30.0         # a child that ran this long resets its backoff


class StartupError(RuntimeError):
    """The instance cannot start (port in use, data dir owned...); the message says why."""


@dataclass
class ChildSpec:
    name: str
    argv: Callable[[], list[str]]
    pass_fds: tuple[int, ...] = ()
    env: dict[str, str] = field(default_factory=dict)


@dataclass
class Child:
    spec: ChildSpec
    proc: subprocess.Popen | None = None
    started_at: float = 0.0
    failures: int = 0
    next_start: float = 0.0
    restart_requested: bool = False  # stopped on purpose (reload): respawn at once, no backoff
    heartbeat: str = ""              # the file it touches while it is alive (heartbeat.py)
    spawn_mark: float = 0.0          # the file's time at spawn: unchanged = not beating yet


def listen(bind: str, port: int, what: str) -> socket.socket:
    family = socket.AF_INET6 if ":" in bind else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((bind, port))
    except OSError as exc:
        sock.close()
        raise StartupError(f"cannot listen for {what} on {bind}:{port}: {exc.strerror}") from None
    sock.listen(1024)
    sock.set_inheritable(True)
    return sock


def python_module(module: str, *args: str) -> list[str]:
    # -P: never put the working directory on sys.path, so a source checkout in the cwd cannot
    # shadow the installed package (which has the compiled extensions).
    return [sys.executable, "-P", "-m", module, *args]


class Supervisor:
    def __init__(self, config: Config, data_dir: str, config_path: str | None):
        self.config = config
        self.data_dir = data_dir
        self.config_path = config_path
        self.lock = PidLock(data_dir)
        self.children: list[Child] = []
        self.sockets: dict[str, socket.socket] = {}
        self.signal_queue: list[int] = []
        self.stopping = False
        self._wake_r, self._wake_w = os.pipe()
        self._proxy: bus.Proxy | None = None
        self._events: bus.Publisher | None = None
        self._collector: LogCollector | None = None
        self.timeout = float(config.get("child_timeout"))
        self.runtime: Runtime | None = None

    # -- start ------------------------------------------------------------------------------

    def start(self) -> None:
        if not self.lock.acquire():
            from .runtime import running_pid
            raise StartupError(f"owncastd is already running for data dir {self.data_dir} "
                               f"(pid {running_pid(self.data_dir)}); stop it first with "
                               f"`owncastd stop --data-dir {self.data_dir}`")
        self._end_orphans()
        bind = self.config.get("bind")
        web_port, rtmp_port = self.config.get("web_port"), self.config.get("rtmp_port")
        if web_port == rtmp_port:
            raise StartupError(f"web port and RTMP port are both {web_port}; they must differ")
        self.sockets["web"] = listen(bind, web_port, "the web server")
        if roles.runs_ingest(self.role):   # a web node has no RTMP listener
            self.sockets["rtmp"] = listen(bind, rtmp_port, "RTMP")
        self._start_bus()
        metrics.prepare(self.data_dir)   # before any child: they record into it
        store = self.config.store
        assert store is not None
        # Nothing can be live before ingest starts; a crash may have left `online` set. (Only
        # the node with ingest owns that state: a web node starting must not end a stream.)
        if roles.runs_ingest(self.role):
            stream_state.end_if_online(store)
        self.runtime = Runtime(pid=os.getpid(), data_dir=self.data_dir,
                               config_path=self.config_path, overrides=self.config.overrides,
                               bind=bind, web_port=web_port, rtmp_port=rtmp_port,
                               started_at=utcnow())
        self.runtime.write()
        self.children = [Child(spec) for spec in self.child_specs()]
        self._install_signals()
        log.info("owncastd supervisor started (pid %d): web on %s:%d, RTMP on %s:%d",
                 os.getpid(), bind, web_port, bind, rtmp_port)

    def child_specs(self) -> list[ChildSpec]:
        data = ["--data-dir", self.data_dir]
        web_fd = self.sockets["web"].fileno()
        rtmp_fd = self.sockets["rtmp"].fileno() if "rtmp" in self.sockets else -1
        wanted = roles.children(self.role, bool(self.config.get("redis_url")))
        return [spec for spec in self._all_child_specs(data, web_fd, rtmp_fd)
                if spec.name in wanted]

    @property
    def role(self) -> str:
        return self.config.get("role")

    @staticmethod
    def _all_child_specs(data: list[str], web_fd: int, rtmp_fd: int) -> list[ChildSpec]:
        return [
            ChildSpec("web", lambda: python_module("owncastd.web", *data, "--fd", str(web_fd)),
                      pass_fds=(web_fd,)),
            ChildSpec("ingest", lambda: python_module("owncastd.ingest.server", *data,
                                                      "--fd", str(rtmp_fd)),
                      pass_fds=(rtmp_fd,)),
            ChildSpec("transcoder", lambda: python_module("owncastd.transcode.worker", *data)),
            ChildSpec("sampler", lambda: python_module("owncastd.services.sampler", *data)),
            ChildSpec("storage", lambda: python_module("owncastd.services.storage", *data)),
            ChildSpec("recorder", lambda: python_module("owncastd.services.recorder", *data)),
            ChildSpec("directory", lambda: python_module("owncastd.services.directory", *data)),
            ChildSpec("webhooks", lambda: python_module("owncastd.services.webhooks", *data)),
            ChildSpec("bridge", lambda: python_module("owncastd.bridge", *data)),
        ]

    def _start_bus(self) -> None:
        self._proxy = bus.Proxy(self.data_dir)
        self._collector = LogCollector(self.data_dir, self.config.store.path)
        threading.Thread(target=self._proxy.run, name="bus-proxy", daemon=True).start()
        self._collector.start()
        self._events = bus.Publisher(self.data_dir)

    def _end_orphans(self) -> None:
        """Children of a previous supervisor that was SIGKILLed may still run: end them."""
        previous = Runtime.read(self.data_dir)
        if previous is None:
            return
        for name, pid in previous.children.items():
            try:
                proc = psutil.Process(pid)
                if proc.create_time() > time.time() or "owncastd" not in " ".join(proc.cmdline()):
                    continue
                log.warning("ending %s (pid %d) left by a previous instance", name, pid)
                os.killpg(pid, signal.SIGKILL)
            except (psutil.Error, ProcessLookupError, PermissionError):
                pass

    # -- signals ----------------------------------------------------------------------------

    def _install_signals(self) -> None:
        os.set_blocking(self._wake_w, False)
        signal.set_wakeup_fd(self._wake_w, warn_on_full_buffer=False)
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGCHLD, signal.SIGQUIT):
            signal.signal(sig, self._enqueue_signal)

    def _enqueue_signal(self, signum, frame) -> None:
        self.signal_queue.append(signum)

    def handle_signals(self) -> None:
        while self.signal_queue:
            sig = self.signal_queue.pop(0)
            if sig in (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT):
                log.info("received %s: shutting down", signal.Signals(sig).name)
                self.stopping = True
            elif sig == signal.SIGHUP:
                self.reload()
            # SIGCHLD only wakes the loop; reap() does the work.

    # -- reload (SIGHUP) ---------------------------------------------------------------------

    def reload(self) -> None:
        """SIGHUP (`owncastd reload`, the admin port setters): re-read the config file and the
        ports. A listener whose port changed gets a new socket and only the children using it
        restart on the new fd; if the new port cannot be bound the old socket stays and the
        error is logged. Without a port change every child restarts (re-reading the file)."""
        if self.config_path:
            try:
                self.config.file_values = load_file(self.config_path)
            except ConfigError as exc:
                log.error("reload: %s; keeping the values read before", exc)
        self.timeout = float(self.config.get("child_timeout"))
        port_change, moved = self.rebind()
        if not port_change:
            log.info("received SIGHUP: restarting children")
            for child in self.children:
                self._restart(child)
            return
        specs = {spec.name: spec for spec in self.child_specs()}
        for child in self.children:
            spec = specs.get(child.spec.name)
            if spec is not None and set(spec.pass_fds) != set(child.spec.pass_fds):
                child.spec = spec
                self._restart(child)

    def rebind(self) -> tuple[bool, list[str]]:
        """(whether a listener port changed, names of the sockets now bound to new ports)."""
        rt = self.runtime
        assert rt is not None
        wanted = {"web": self.config.get("web_port"), "rtmp": self.config.get("rtmp_port")}
        current = {"web": rt.web_port, "rtmp": rt.rtmp_port}
        if wanted == current:
            return False, []
        if wanted["web"] == wanted["rtmp"]:
            log.error("reload: web port and RTMP port would both be %d; keeping ports %d and %d",
                      wanted["web"], current["web"], current["rtmp"])
            return True, []
        moved = []
        for name, what in (("web", "the web server"), ("rtmp", "RTMP")):
            if wanted[name] == current[name] or name not in self.sockets:
                continue
            try:
                sock = listen(rt.bind, wanted[name], what)
            except StartupError as exc:
                log.error("reload: %s; %s stays on port %d", exc, what, current[name])
                continue
            self.sockets[name].close()  # the old child keeps its copy until it exits
            self.sockets[name] = sock
            setattr(rt, f"{name}_port", wanted[name])
            moved.append(name)
            log.info("%s now listens on %s:%d (was port %d)", what, rt.bind, wanted[name],
                     current[name])
        if moved:
            rt.write()
        return True, moved

    def _restart(self, child: Child) -> None:
        if child.proc is not None and child.proc.poll() is None:
            child.restart_requested = True
            self._signal_child(child, signal.SIGTERM)

    # -- the loop ---------------------------------------------------------------------------

    def run(self) -> int:
        try:
            while not self.stopping:
                self.handle_signals()
                if self.stopping:
                    break
                self.kill_hung()
                self.reap()
                self.spawn_missing()
                self.sleep()
        finally:
            self.shutdown()
        return 0

    def kill_hung(self) -> None:
        """SIGKILL (the whole process group of) a child whose heartbeat is older than the
        timeout; reap() then restarts it with backoff, as after any crash."""
        now = time.time()
        for child in self.children:
            if child.proc is None or child.proc.poll() is not None or not child.heartbeat:
                continue
            last = heartbeat.last_beat(child.heartbeat)
            booting = last == child.spawn_mark
            limit = max(self.timeout, heartbeat.BOOT_TIMEOUT) if booting else self.timeout
            silent = now - last
            if silent > limit:
                log.error("child %s (pid %d) sent no heartbeat for %.1f s (%s %g s): "
                          "killing it", child.spec.name, child.proc.pid, silent,
                          "timeout to start" if booting else "timeout", limit)
                _kill_group(child.proc.pid, signal.SIGKILL)

    def reap(self) -> None:
        for child in self.children:
            if child.proc is None or child.proc.poll() is None:
                continue
            code = child.proc.returncode
            reason = (f"killed by {signal.Signals(-code).name}" if code < 0
                      else f"exited with status {code}")
            ran = time.monotonic() - child.started_at
            if child.restart_requested:
                child.restart_requested = False
                child.failures, child.next_start = 0, time.monotonic()
                log.info("child %s (pid %d) stopped for a restart", child.spec.name, child.proc.pid)
            else:
                child.failures = 0 if ran > STABLE_AFTER else child.failures + 1
                delay = 0.0 if child.failures == 0 else min(
                    BACKOFF_MAX, BACKOFF_START * 2 ** (child.failures - 1))
                child.next_start = time.monotonic() + delay
                log.warning("child %s (pid %d) %s after %.1f s; restarting in %.1f s",
                            child.spec.name, child.proc.pid, reason, ran, delay)
            # Its own children (gunicorn workers) would linger until they notice: end them now.
            _kill_group(child.proc.pid, signal.SIGTERM)
            metrics.process_exited(child.proc.pid)
            child.proc = None
            self.on_child_exit(child)

    def on_child_exit(self, child: Child) -> None:
        """Policies tied to one kind of child: a dead ingest means the stream went offline."""
        store = self.config.store
        if child.spec.name != "ingest" or store is None:
            return
        now = stream_state.end_if_online(store)
        if now is not None and self._events is not None:
            self._events.publish(bus.EVENT_STREAM_STOPPED,
                                 {"time": now, "reason": "ingest process died"})

    def spawn_missing(self) -> None:
        now = time.monotonic()
        changed = False
        for child in self.children:
            if child.proc is None and now >= child.next_start:
                self._spawn(child)
                changed = True
        if changed and self.runtime is not None:
            self.runtime.children = {c.spec.name: c.proc.pid for c in self.children if c.proc}
            self._write_runtime()

    def _write_runtime(self) -> None:
        # The file only helps a later start end orphans: failing to update it (a full disk)
        # must not stop the supervisor. It is written whole (tmp + rename) or not at all.
        try:
            self.runtime.write()
        except OSError as exc:
            log.error("cannot update the runtime file in %s: %s", self.data_dir, exc)

    def _spawn(self, child: Child) -> None:
        child.heartbeat = DataDir(self.data_dir).heartbeat(child.spec.name)
        env = dict(os.environ, OWNCASTD_SUPERVISOR_PID=str(os.getpid()), **child.spec.env)
        env[heartbeat.ENV_PATH] = child.heartbeat
        env[heartbeat.ENV_INTERVAL] = str(heartbeat.interval_for(self.timeout))
        try:
            child.spawn_mark = heartbeat.touch(child.heartbeat)
            child.proc = subprocess.Popen(child.spec.argv(), pass_fds=child.spec.pass_fds,
                                          env=env, start_new_session=True, cwd=self.data_dir)
        except OSError as exc:
            child.failures += 1
            child.next_start = time.monotonic() + min(BACKOFF_MAX, BACKOFF_START * 2 ** child.failures)
            log.error("cannot start child %s: %s", child.spec.name, exc)
            return
        child.started_at = time.monotonic()
        log.info("started child %s (pid %d)", child.spec.name, child.proc.pid)

    def sleep(self) -> None:
        waits = [c.next_start - time.monotonic() for c in self.children if c.proc is None]
        timeout = max(0.05, min([1.0] + waits))
        try:
            ready, _, _ = select.select([self._wake_r], [], [], timeout)
        except InterruptedError:
            return
        if ready:
            try:
                os.read(self._wake_r, 4096)
            except BlockingIOError:
                pass

    # -- stop -------------------------------------------------------------------------------

    def _signal_child(self, child: Child, sig: int) -> None:
        if child.proc is not None and child.proc.poll() is None:
            try:
                child.proc.send_signal(sig)
            except ProcessLookupError:
                pass

    def shutdown(self) -> None:
        for child in self.children:
            self._signal_child(child, signal.SIGTERM)
        deadline = time.monotonic() + SHUTDOWN_GRACE
        for child in self.children:
            if child.proc is None:
                continue
            try:
                child.proc.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.warning("child %s did not stop in time: killing it", child.spec.name)
            # Whatever is left in its process group (workers of a killed master) goes too.
            _kill_group(child.proc.pid, signal.SIGKILL)
            try:
                child.proc.wait(timeout=2)
            except subprocess.TimeoutExpired:
                pass
        log.info("owncastd stopped")
        metrics.remove()
        if self._collector is not None:
            self._collector.stop()
        if self._events is not None:
            self._events.close()
        if self._proxy is not None:
            self._proxy.stop()
        for sock in self.sockets.values():
            sock.close()
        if self.runtime is not None:
            self.runtime.children = {}
            self._write_runtime()
        self.lock.release()


def _kill_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass
