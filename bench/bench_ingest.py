"""RTMP ingest throughput: owncastd against nginx-rtmp, with ffmpeg publishing as fast as it can.

A 60 s 720p30 H.264/AAC FLV (~20 MB, generated once, see conftest.CACHE_DIR) is published with
`-c copy` and no `-re`, once as it is and once looped ten times (`-stream_loop 9`, ~200 MB), to
a real `owncastd start` and to nginx with libnginx-mod-rtmp (`live on`, no players). The two
servers are measured in the same run, alternately (A B B A), on 127.0.0.1 and free ports.

Measured per publish: wall time (ffmpeg start to exit), MB/s of the published file, x realtime,
and the server's CPU seconds per MB (owncastd: the ingest child; nginx: its single process).
owncastd hands media on over ZeroMQ; the benchmark runs its own consumer (a PULL socket bound at
`media_address(data_dir)`) so frames really travel, and checks that every frame ffprobe counts
in the input is accounted for in `event.stream_stopped` (handed + dropped) and that the consumer
received exactly the handed ones.

Targets: owncastd's throughput >= 0.8 x nginx-rtmp's for both publishes (best round of each
side), every frame accounted for.
"""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time

import psutil
import pytest
import zmq

from conftest import Daemon, cached_media, free_port, wait_until
from owncastd import bus
from owncastd.media import handoff
from owncastd.ingest.server import media_address

NGINX_RTMP_MODULE = "/usr/lib/nginx/modules/ngx_rtmp_module.so"
LOOPS = {"single": 1, "loop10": 10}
THROUGHPUT_TARGET = 0.8
# ffmpeg's FLV muxer ends every publish with an AVC end-of-sequence tag (VIDEODATA with
# AVCPacketType 2, written by its trailer); ingest counts it as a video frame, while ffprobe's FLV
# demuxer does not return the one at the end of the input file as a packet. So a publish carries
# exactly one video frame more than ffprobe counts, looped or not.
EOS_TAGS = 1
# Frames ffmpeg might not send at all (none seen: the measured difference is 0).
FRAME_SLACK = 2
PUBLISH_TIMEOUT = 600

# (publish, round, server): alternate the servers A B B A so drift and neighbours' load
# affect both sides alike; the ratio uses each side's best round.
PLAN = [(p, r, s) for p in LOOPS for r, order in ((1, ("owncastd", "nginx")),
                                                  (2, ("nginx", "owncastd"))) for s in order]

pytestmark = pytest.mark.skipif(
    not (shutil.which("ffmpeg") and shutil.which("ffprobe") and shutil.which("nginx")
         and os.path.exists(NGINX_RTMP_MODULE)),
    reason="needs ffmpeg, ffprobe, nginx and libnginx-mod-rtmp")


# -- fixtures -----------------------------------------------------------------------------------

@pytest.fixture(scope="session")
def media_file():
    return cached_media("in-720p30-60s.flv", [
        "-f", "lavfi", "-i", "testsrc2=size=1280x720:rate=30", "-f", "lavfi", "-i", "sine",
        "-t", "60", "-c:v", "libx264", "-preset", "veryfast", "-b:v", "2500k", "-g", "60",
        "-c:a", "aac", "-b:a", "128k"])


class MediaConsumer:
    """Stands in for the transcoder: binds the media address, drains and counts."""

    def __init__(self, address: str):
        self.ctx = zmq.Context()
        self.sock = self.ctx.socket(zmq.PULL)
        self.sock.setsockopt(zmq.LINGER, 0)
        # Queue without bound on this side: the benchmark measures ingest, so frames should
        # leave ingest's bounded queue (ingest.server.MEDIA_QUEUE) as fast as the ipc socket allows,
        # whenever this Python thread gets the CPU.
        self.sock.setsockopt(zmq.RCVHWM, 0)
        # libzmq binds an ipc path over an existing socket file without EADDRINUSE; whoever
        # binds last gets the new connections. Nothing to catch, but a failure would be loud.
        self.sock.bind(address)
        self.lock = threading.Lock()
        self.reset()
        self.stopping = False
        self.thread = threading.Thread(target=self._run, name="media-consumer", daemon=True)
        self.thread.start()

    def reset(self) -> None:
        with getattr(self, "lock", threading.Lock()):
            self.video = self.audio = self.headers = self.repeats = self.other = 0
            self.bytes = 0
            self.starts = self.stops = 0

    def counts(self) -> dict:
        with self.lock:
            return dict(video=self.video, audio=self.audio, headers=self.headers,
                        repeats=self.repeats, other=self.other, bytes=self.bytes,
                        starts=self.starts, stops=self.stops)

    def _run(self) -> None:
        sock = self.sock
        while not self.stopping:
            if not sock.poll(100):
                continue
            while True:
                try:
                    # copy=False: read the batch in ZeroMQ's buffer, as the transcoder does
                    batch = sock.recv(flags=zmq.NOBLOCK, copy=False).buffer
                except zmq.Again:
                    break
                with self.lock:
                    for kind, flags, _, _, payload in handoff.unpack(batch):
                        if kind in (handoff.VIDEO, handoff.AUDIO):
                            self.bytes += len(payload)
                            if flags & handoff.FLAG_REPEAT:
                                self.repeats += 1
                            elif flags & handoff.FLAG_SEQUENCE_HEADER:
                                self.headers += 1
                            elif kind == handoff.VIDEO:
                                self.video += 1
                            else:
                                self.audio += 1
                        elif kind == handoff.START:
                            self.starts += 1
                        elif kind == handoff.STOP:
                            self.stops += 1
                        else:
                            self.other += 1

    def close(self) -> None:
        self.stopping = True
        self.thread.join(timeout=5)
        self.sock.close()
        self.ctx.term()


class OwncastdServer:
    name = "owncastd"

    def __init__(self, tmp: str):
        self.daemon = Daemon(os.path.join(tmp, "d"))
        os.makedirs(self.daemon.data_dir)
        self.consumer = None
        self.events = None
        self.notes: list[str] = []

    def start(self) -> None:
        self.daemon.start()
        self.consumer = MediaConsumer(media_address(self.daemon.data_dir))
        transcoders = self.daemon.children_named("owncastd.transcode")
        if transcoders:
            # A transcoder child binds the same address. Bound after it, the consumer owns the
            # path, but an ingest that already connected stays on the transcoder's socket: a
            # restarted ingest connects afresh, to us. Only this daemon's own child is killed.
            self.notes.append(f"transcoder child {transcoders[0].pid} also binds the media "
                              "address; ingest restarted so that it connects to the consumer")
            [old] = self.daemon.children_named("owncastd.ingest")
            old.kill()
            wait_until(lambda: [p for p in self.daemon.children_named("owncastd.ingest")
                                if p.pid != old.pid], 15, what="the ingest child to restart")
            wait_until(self._rtmp_open, 10, what="RTMP accepting after the restart")
            self.daemon.remember_tree()
        self.events = bus.Subscriber(self.daemon.data_dir, ["event.stream_"])
        time.sleep(0.3)  # let the subscription reach the bus proxy

    def _rtmp_open(self) -> bool:
        with socket.create_connection(("127.0.0.1", self.daemon.rtmp_port), timeout=1):
            return True

    @property
    def url(self) -> str:
        return f"rtmp://127.0.0.1:{self.daemon.rtmp_port}/live/{self.daemon.key}"

    def process(self) -> psutil.Process:
        [ingest] = self.daemon.children_named("owncastd.ingest")
        return ingest

    def before(self) -> None:
        while self.events.recv(timeout_ms=0):
            pass  # stale events
        self.consumer.reset()

    def after(self, timeout: float = 60.0) -> dict:
        """Wait for the end of the stream; return the stream_stopped payload."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            msg = self.events.recv(timeout_ms=500)
            if msg and msg[0] == bus.EVENT_STREAM_STOPPED:
                stats = msg[1]
                handed = stats["handed_video"] + stats["handed_audio"]
                # the consumer drains what was queued before the stop
                def drained():
                    got = self.consumer.counts()
                    # STOP itself is not awaited: ingest drops it like any message when
                    # its queue is full (see the run's note)
                    return got["video"] + got["audio"] >= handed
                try:
                    wait_until(drained, 10, interval=0.02, what="the consumer to drain")
                except AssertionError as exc:
                    raise AssertionError(f"{exc}: consumer counts {self.consumer.counts()}, "
                                         f"ingest reports {stats}") from None
                time.sleep(0.05)  # a STOP right behind the last frame
                return stats
        raise AssertionError(f"no {bus.EVENT_STREAM_STOPPED} within {timeout} s")

    def stop(self) -> None:
        if self.events:
            self.events.close()
        try:
            self.daemon.stop()
        except AssertionError:
            pass
        finally:
            self.daemon.kill_everything()
            if self.consumer:
                self.consumer.close()


class NginxServer:
    name = "nginx"

    def __init__(self, tmp: str):
        self.dir = os.path.join(tmp, "nginx")
        os.makedirs(self.dir)
        self.port = free_port()
        self.proc: subprocess.Popen | None = None
        self.notes: list[str] = []

    def start(self) -> None:
        conf = os.path.join(self.dir, "nginx.conf")
        with open(conf, "w") as f:
            f.write(f"""load_module {NGINX_RTMP_MODULE};
daemon off;
master_process off;
worker_processes 1;
pid {self.dir}/nginx.pid;
error_log {self.dir}/error.log info;
events {{ worker_connections 64; }}
rtmp {{
    server {{
        listen 127.0.0.1:{self.port};
        application live {{ live on; }}
    }}
}}
""")
        self.log = open(os.path.join(self.dir, "output.log"), "ab")
        self.proc = subprocess.Popen(["nginx", "-p", self.dir + "/", "-c", conf,
                                      "-e", os.path.join(self.dir, "error.log")],
                                     stdout=self.log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL)

        def up():
            if self.proc.poll() is not None:
                raise AssertionError(f"nginx exited with {self.proc.returncode}: "
                                     + open(os.path.join(self.dir, "error.log")).read())
            with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                return True
        wait_until(up, 10, what="nginx-rtmp to listen")

    @property
    def url(self) -> str:
        return f"rtmp://127.0.0.1:{self.port}/live/bench"

    def process(self) -> psutil.Process:
        return psutil.Process(self.proc.pid)

    def before(self) -> None:
        pass

    def after(self, timeout: float = 30.0) -> dict:
        """nginx says nothing when a publisher leaves: wait until its CPU time stops moving."""
        p = self.process()
        last = -1.0
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            t = sum(p.cpu_times()[:2])
            if t == last:
                return {}
            last = t
            time.sleep(0.2)
        return {}

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGQUIT)  # graceful; master_process off: this is it
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if getattr(self, "log", None):
            self.log.close()


@pytest.fixture(scope="session")
def servers(media_file, bench_report):
    tmp = tempfile.mkdtemp(prefix="ocb-")  # short: unix socket paths are limited
    started = []
    try:
        for cls in (OwncastdServer, NginxServer):
            server = cls(tmp)
            started.append(server)
            server.start()
        for server in started:  # warm up both (page cache, code paths) with 2 s of the file
            publish(server, media_file, loops=1, extra=("-t", "2"))
        for server in started:
            bench_report.notes.extend(f"{server.name}: {n}" for n in server.notes)
        yield {s.name: s for s in started}
    finally:
        for server in started:
            server.stop()
        shutil.rmtree(tmp, ignore_errors=True)


# -- publishing ---------------------------------------------------------------------------------

def ffmpeg_command(server, media_file, loops: int, extra=()) -> list[str]:
    cmd = ["ffmpeg", "-hide_banner", "-nostdin", "-loglevel", "error"]
    if loops > 1:
        cmd += ["-stream_loop", str(loops - 1)]
    return cmd + ["-i", media_file.path, *extra, "-c", "copy", "-f", "flv", server.url]


def run_ffmpeg(cmd: list[str], server_name: str) -> float:
    """The measured part: ffmpeg start to exit. Returns the wall time."""
    began = time.perf_counter()
    ff = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        _, err = ff.communicate(timeout=PUBLISH_TIMEOUT)
    except subprocess.TimeoutExpired:
        ff.kill()
        ff.wait()
        raise AssertionError(f"ffmpeg did not finish publishing to {server_name} "
                             f"within {PUBLISH_TIMEOUT} s")
    wall = time.perf_counter() - began
    assert ff.returncode == 0, f"ffmpeg -> {server_name} failed: {err.decode(errors='replace')}"
    return wall


class Measurement:
    """Server CPU and end-of-stream around one publish."""

    def __init__(self, server):
        self.server = server
        server.before()
        self.proc = server.process()
        self.cpu0 = sum(self.proc.cpu_times()[:2])

    def finish(self, wall: float) -> dict:
        ended = time.perf_counter()
        stats = self.server.after()
        return dict(wall=wall, stats=stats, tail=time.perf_counter() - ended,
                    cpu=sum(self.proc.cpu_times()[:2]) - self.cpu0)


def publish(server, media_file, loops: int, extra=()) -> dict:
    """Publish the file `loops` times in one connection; measure wall time and server CPU."""
    m = Measurement(server)
    return m.finish(run_ffmpeg(ffmpeg_command(server, media_file, loops, extra), server.name))


@pytest.mark.parametrize("publish_kind, round_, server_name", PLAN,
                         ids=[f"{p}-{s}-r{r}" for p, r, s in PLAN])
def test_publish(benchmark, servers, media_file, bench_report, publish_kind, round_, server_name):
    server = servers[server_name]
    loops = LOOPS[publish_kind]
    benchmark.group = f"ingest {publish_kind} ({loops * media_file.size / 1e6:.0f} MB)"
    m = Measurement(server)
    # only ffmpeg's run is timed; waiting for the server to finish is not
    wall = benchmark.pedantic(run_ffmpeg, args=(ffmpeg_command(server, media_file, loops),
                                                server_name),
                              rounds=1, iterations=1, warmup_rounds=0)
    result = m.finish(wall)
    mb = loops * media_file.size / 1e6
    row = dict(publish=publish_kind, server=server_name, round=round_, mb=mb,
               wall=result["wall"], mbps=mb / result["wall"],
               realtime=loops * media_file.duration / result["wall"], cpu=result["cpu"],
               cpu_per_mb=result["cpu"] / mb, note="")
    benchmark.extra_info.update({k: v for k, v in row.items() if isinstance(v, (int, float))})
    if server_name != "owncastd":
        bench_report.run(**row)
        return

    stats = result["stats"]
    got = server.consumer.counts()
    exp_v, exp_a = loops * media_file.video_packets + EOS_TAGS, loops * media_file.audio_packets
    acc_v = stats["handed_video"] + stats["dropped_video"]
    acc_a = stats["handed_audio"] + stats["dropped_audio"]
    row.update(expected_frames=exp_v + exp_a, accounted=acc_v + acc_a,
               note=(f"v {stats['handed_video']}+{stats['dropped_video']}/{exp_v} "
                     f"a {stats['handed_audio']}+{stats['dropped_audio']}/{exp_a}; "
                     f"done {result['tail']:.2f} s after ffmpeg"))
    lost = [k[:-1].upper() for k in ("starts", "stops") if got[k] != 1]
    if lost:
        row["note"] += f"; {'/'.join(lost)} message lost (queue full)"
    benchmark.extra_info.update(stats)
    bench_report.run(**row)
    name = f"{publish_kind} r{round_}"
    ok_v = bench_report.check(f"{name}: video frames handed+dropped", acc_v,
                              f"{exp_v} (-{FRAME_SLACK})", exp_v - FRAME_SLACK <= acc_v <= exp_v)
    ok_a = bench_report.check(f"{name}: audio frames handed+dropped", acc_a,
                              f"{exp_a} (-{FRAME_SLACK})", exp_a - FRAME_SLACK <= acc_a <= exp_a)
    got_frames = got["video"] + got["audio"]
    handed = stats["handed_video"] + stats["handed_audio"]
    ok_c = bench_report.check(f"{name}: consumer received == handed", got_frames, str(handed),
                              got_frames == handed and got["video"] == stats["handed_video"])
    assert ok_v and ok_a, f"frames not accounted for: {row['note']} ({stats})"
    assert ok_c, f"consumer got {got}, ingest reports {stats}"


@pytest.mark.parametrize("publish_kind", list(LOOPS))
def test_throughput_ratio(bench_report, publish_kind):
    best = {}
    for server in ("owncastd", "nginx"):
        rows = [r for r in bench_report.runs if r["publish"] == publish_kind
                and r["server"] == server]
        if not rows:
            pytest.skip(f"no {server} {publish_kind} measurement (publish test failed?)")
        best[server] = max(r["mbps"] for r in rows)
    ratio = best["owncastd"] / best["nginx"]
    note = f"best MB/s: owncastd {best['owncastd']:.1f}, nginx {best['nginx']:.1f}"
    ok = bench_report.check(f"{publish_kind}: throughput owncastd/nginx", ratio,
                            f">= {THROUGHPUT_TARGET}", ratio >= THROUGHPUT_TARGET, note)
    assert ok, f"owncastd reaches {ratio:.2f} x nginx-rtmp's throughput ({note})"
