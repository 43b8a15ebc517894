"""The real daemon: `owncastd start` on free ports in a temp data dir, driven from outside."""
import json
import os
import signal
import sqlite3
import subprocess
import time

import psutil
import pytest

from conftest import OWNCASTD, TEST_KEY, free_port, wait_until, write_config

pytestmark = pytest.mark.slow


def web_master(d):
    [master] = [p for p in d.children_named("owncastd.web") if p.ppid() == d.proc.pid]
    return master


def web_workers(d):
    return web_master(d).children()


def test_serves_public_and_admin_api_then_stops_cleanly(daemon):
    assert daemon.get("/api/status").json()["online"] is False
    assert daemon.get("/api/config").json()["name"] == "Owncast"
    assert isinstance(daemon.get("/api/emoji").json(), list)
    assert daemon.get("/api/yp").status_code == 200
    assert daemon.get("/api/admin/status").status_code == 401
    assert daemon.get("/api/admin/status", auth=("admin", "nope")).status_code == 401
    assert daemon.get("/api/admin/status", auth=daemon.auth).status_code == 200
    assert len(web_workers(daemon)) == 2  # default worker count
    daemon.remember_tree()
    took = daemon.stop()
    assert took < 10
    assert daemon.proc.returncode == 0
    assert daemon.leftovers() == []
    assert not os.path.exists(os.path.join(daemon.data_dir, "owncastd.pid"))


def test_sigint_stops_everything_within_10_seconds(daemon):
    daemon.remember_tree()
    assert len(daemon.seen_pids) >= 3
    assert daemon.stop(signal.SIGINT) < 10
    assert daemon.leftovers() == []


def test_logs_from_every_process_reach_the_admin_api(daemon):
    def logged():
        entries = daemon.get("/api/admin/logs", auth=daemon.auth).json()
        text = "\n".join(e["message"] for e in entries)
        return "supervisor started" in text and "API worker ready" in text and entries
    entries = wait_until(logged, 10, what="supervisor and worker log lines")
    assert {"time", "level", "message"} <= set(entries[0])
    assert TEST_KEY not in json.dumps(entries)


def test_killed_api_worker_is_replaced(daemon):
    victim = web_workers(daemon)[0]
    victim.kill()
    # The API keeps answering throughout (the other worker and the shared socket).
    for _ in range(20):
        assert daemon.get("/api/status").status_code == 200
    wait_until(lambda: len(web_workers(daemon)) == 2 and victim.pid not in
               [w.pid for w in web_workers(daemon)], 15, what="a replacement worker")
    assert daemon.get("/api/config").status_code == 200


@pytest.mark.parametrize("child", ["owncastd.services.sampler", "owncastd.ingest.server"])
def test_hung_child_is_killed_and_respawned(daemon_factory, child):
    """A child that stops beating (SIGSTOP: a thread child and a gevent child) is SIGKILLed
    after child_timeout and started again; the others keep running."""
    d = daemon_factory(env={"OWNCAST_CHILD_TIMEOUT": "2"}).start()
    [victim] = [p for p in d.children_named(child) if p.ppid() == d.proc.pid]
    [bystander] = [p for p in d.children_named("owncastd.services.directory")]
    os.kill(victim.pid, signal.SIGSTOP)
    began = time.monotonic()

    def replaced():
        now = [p for p in d.children_named(child) if p.ppid() == d.proc.pid]
        return now and now[0].pid != victim.pid and now[0]
    fresh = wait_until(replaced, 20, what=f"a new {child} after the hung one")
    assert time.monotonic() - began >= 1.5, "not killed before the timeout"
    assert not psutil.pid_exists(victim.pid) or victim.status() == psutil.STATUS_ZOMBIE
    assert bystander.is_running() and bystander.status() != psutil.STATUS_STOPPED
    assert "sent no heartbeat" in d.output()
    # The new one beats: it is still the same process well after the timeout.
    time.sleep(4)
    assert fresh.is_running() and [p.pid for p in d.children_named(child)
                                   if p.ppid() == d.proc.pid] == [fresh.pid]
    assert d.get("/api/status").status_code == 200


def test_killed_gunicorn_master_gets_a_new_pool(daemon):
    master = web_master(daemon)
    old_workers = [w.pid for w in master.children()]
    daemon.remember_tree()
    master.kill()

    def new_pool():
        m = web_master(daemon)
        return m.pid != master.pid and len(m.children()) == 2
    wait_until(new_pool, 20, what="the supervisor to start a new gunicorn pool")
    wait_until(lambda: daemon.get("/api/status").status_code == 200, 10, what="the API")
    # the orphaned workers of the killed master are gone
    wait_until(lambda: not any(psutil.pid_exists(p) and psutil.Process(p).status() != "zombie"
                               for p in old_workers), 10, what="old workers to exit")
    assert "child web" in daemon.output() and "SIGKILL" in daemon.output()


def test_restart_keeps_saved_config_and_peak_counts(daemon_factory):
    d = daemon_factory().start()
    r = d.post("/api/admin/config/name", auth=d.auth, json={"value": "Persistent Show"})
    assert r.status_code == 200
    d.stop()
    db = sqlite3.connect(os.path.join(d.data_dir, "owncast.db"))
    with db:
        db.execute("INSERT OR REPLACE INTO state(key, value) VALUES ('overallPeakViewerCount', '17')")
        db.execute("INSERT OR REPLACE INTO state(key, value) VALUES ('lastDisconnectTime', "
                   "'\"2026-11-01T10:00:00+00:00\"')")
    db.close()
    d.start()
    assert d.get("/api/config").json()["name"] == "Persistent Show"
    status = d.get("/api/status").json()
    assert status["overallMaxViewerCount"] == 17
    assert status["lastDisconnectTime"] == "2026-11-01T10:00:00+00:00"


def test_second_start_on_same_data_dir_is_refused(daemon):
    other = subprocess.run([OWNCASTD, "start", "--data-dir", daemon.data_dir, "--bind", "127.0.0.1",
                            "--web-port", str(free_port()), "--rtmp-port", str(free_port())],
                           capture_output=True, text=True, timeout=20)
    assert other.returncode != 0
    assert "already running" in other.stderr and str(daemon.proc.pid) in other.stderr
    assert daemon.get("/api/status").status_code == 200


def test_stale_pidfile_does_not_block_start(daemon_factory):
    d = daemon_factory()
    with open(os.path.join(d.data_dir, "owncastd.pid"), "w") as f:
        f.write(f"{os.getpid()}\n")  # a live pid that holds no lock: a crash leftover
    d.start()
    assert d.get("/api/status").status_code == 200


def test_killed_supervisor_leaves_no_orphans_and_restarts(daemon_factory):
    d = daemon_factory().start()
    d.remember_tree()
    children = set(d.seen_pids)
    os.kill(d.proc.pid, signal.SIGKILL)
    d.proc.wait()
    wait_until(lambda: not d.leftovers(), 10, what=f"children {children} to exit")
    d.start()  # stale pidfile, sockets and ports do not block a new start
    assert d.get("/api/status").status_code == 200


def test_port_in_use_is_a_clear_error(daemon_factory, short_tmp):
    d = daemon_factory()
    import socket
    blocker = socket.socket()
    blocker.bind(("127.0.0.1", d.web_port))
    blocker.listen()
    try:
        r = subprocess.run(d.args(), capture_output=True, text=True, timeout=20)
    finally:
        blocker.close()
    assert r.returncode == 1
    assert f"cannot listen for the web server on 127.0.0.1:{d.web_port}" in r.stderr


def test_generated_key_printed_once_and_is_the_admin_password(daemon_factory):
    d = daemon_factory(key=None).start()
    out = d.output()
    assert out.count("Generated a stream key") == 1
    key = out.split("user 'admin'): ")[1].split()[0]
    assert len(key) >= 32
    assert d.get("/api/admin/status", auth=("admin", key)).status_code == 200
    logs = d.get("/api/admin/logs", auth=("admin", key)).text
    assert key not in logs
    d.stop()
    d.start()
    assert d.output().count("Generated a stream key") == 1  # not again
    assert d.get("/api/admin/status", auth=("admin", key)).status_code == 200


def test_env_and_config_file_precedence(daemon_factory):
    d = daemon_factory(env={"OWNCAST_INSTANCE_NAME": "From Env", "OWNCAST_WEB_WORKERS": "1"})
    write_config(d, '[instance]\nname = "From File"\nsummary = "file summary"\n')
    d.start()
    body = d.get("/api/config").json()
    assert body["name"] == "From Env" and body["summary"] == "file summary"
    assert len(web_workers(d)) == 1


def test_bad_config_is_refused_with_a_message(daemon_factory):
    d = daemon_factory()
    conf = os.path.join(d.data_dir, "bad.toml")
    with open(conf, "w") as f:
        f.write("web_port = 99999\n")
    r = subprocess.run([OWNCASTD, "start", "--config", conf, "--data-dir", d.data_dir],
                       capture_output=True, text=True, timeout=20)
    assert r.returncode == 2 and "web_port" in r.stderr and "65535" in r.stderr


def test_version_status_and_stop_commands(daemon):
    v = subprocess.run([OWNCASTD, "--version"], capture_output=True, text=True, timeout=20)
    assert v.returncode == 0
    assert v.stdout.startswith("owncastd ")
    assert "libavcodec" in v.stdout and "libavformat" in v.stdout and "libswscale" in v.stdout
    s = subprocess.run([OWNCASTD, "status", "--data-dir", daemon.data_dir, "--json"],
                       capture_output=True, text=True, timeout=20)
    info = json.loads(s.stdout)
    assert s.returncode == 0 and info["running"] and info["pid"] == daemon.proc.pid
    assert info["webPort"] == daemon.web_port and info["rtmpPort"] == daemon.rtmp_port
    assert info["online"] is False
    daemon.remember_tree()
    st = subprocess.run([OWNCASTD, "stop", "--data-dir", daemon.data_dir],
                        capture_output=True, text=True, timeout=30)
    assert st.returncode == 0 and "stopped" in st.stdout
    assert daemon.proc.wait(timeout=5) == 0
    assert daemon.leftovers() == []
    s = subprocess.run([OWNCASTD, "status", "--data-dir", daemon.data_dir],
                       capture_output=True, text=True, timeout=20)
    assert s.returncode == 3 and "not running" in s.stdout
