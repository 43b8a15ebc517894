"""`owncastctl` against a real owncastd: every command, human and --json output, exit codes
(0 ok, 1 API error, 2 usage error, 3 cannot connect), where connection settings come from,
and the config file permission check.

Commands whose endpoints are not in this build skip, naming the endpoint that answered 404.
"""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import tempfile

import pytest
import requests

from conftest import OWNCASTCTL, TEST_KEY, Daemon, free_port, wait_until

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def server():
    tmp = tempfile.mkdtemp(prefix="oc-ctl-")
    d = Daemon(os.path.join(tmp, "d"))
    os.makedirs(d.data_dir)
    d.start()
    yield d
    if d.proc.poll() is None:
        try:
            d.stop()
        except AssertionError:
            pass
    d.kill_everything()
    import shutil
    shutil.rmtree(tmp, ignore_errors=True)


@pytest.fixture
def home(tmp_path):
    """A HOME of its own, so the operator's ~/.config/owncastctl never leaks into a test."""
    return tmp_path


def ctl(home, *args, server=None, password=TEST_KEY, token=None, env=None, input=None,
        timeout=30) -> subprocess.CompletedProcess:
    e = {k: v for k, v in os.environ.items() if not k.startswith("OWNCAST")}
    e.update(HOME=str(home), XDG_CONFIG_HOME=str(home / ".config"))
    if server is not None:
        e["OWNCAST_SERVER"] = server.url if isinstance(server, Daemon) else server
    if password is not None:
        e["OWNCAST_PASSWORD"] = password
    if token is not None:
        e["OWNCAST_TOKEN"] = token
    e.update(env or {})
    return subprocess.run([OWNCASTCTL, *args], capture_output=True, text=True, env=e,
                          input=input, timeout=timeout)


def ok(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode == 0, f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


def need(server: Daemon, *paths: str) -> None:
    """Skip unless every endpoint exists (a missing route answers 404, a wrong method 405)."""
    for path in paths:
        r = requests.get(server.url + path, auth=server.auth,
                         headers={"Authorization": "Bearer probe"} if "/integrations/" in path
                         else None, timeout=5)
        if r.status_code == 404:
            pytest.skip(f"{path} is not in this build yet (GET answered 404)")


# -- status, connection, exit codes ------------------------------------------------------

def test_status_human_and_json(server, home):
    out = ok(ctl(home, "status", server=server))
    assert re.search(r"^online:\s+no$", out, re.M), out
    # aligned: every value starts in the same column
    columns = {len(m.group(1)) for m in re.finditer(r"^([a-z ]+:\s+)\S", out, re.M)}
    assert len(columns) == 1, out
    data = json.loads(ok(ctl(home, "--json", "status", server=server)))
    assert data["online"] is False and "sessionPeakViewerCount" in data  # the admin status
    public = json.loads(ok(ctl(home, "--json", "status", server=server, password=None)))
    assert "sessionMaxViewerCount" in public and "broadcaster" not in public


def test_server_down_exits_3(home):
    down = f"http://127.0.0.1:{free_port()}"
    r = ctl(home, "--server", down, "status")
    assert r.returncode == 3, r
    assert "cannot connect" in r.stderr and "--server" in r.stderr


def test_usage_errors_exit_2_before_anything_is_sent(server, home):
    r = ctl(home, "no-such-command", server=server)
    assert r.returncode == 2 and "No such command" in r.stderr
    r = ctl(home, "config", "set", "webserverport", "70000", server=server)
    assert r.returncode == 2 and "1 to 65535" in r.stderr, r.stderr
    r = ctl(home, "config", "set", "nsfw", "maybe", server=server)
    assert r.returncode == 2 and "true or false" in r.stderr
    r = ctl(home, "config", "set", "clipsallowed", "everyone", server=server)
    assert r.returncode == 2 and "anyone or moderators" in r.stderr, r.stderr
    r = ctl(home, "config", "set", "clipmaxseconds", "0", server=server)
    assert r.returncode == 2 and "at least 1" in r.stderr, r.stderr
    r = ctl(home, "config", "set", "nosuchsetting", "x", server=server)
    assert r.returncode == 2 and "streamtitle" in r.stderr  # lists the valid names
    r = ctl(home, "config", "set", "streamoutputvariants", '[{"framerate":"fast"}]',
            server=server)
    assert r.returncode == 2 and "framerate: must be an integer" in r.stderr
    r = ctl(home, "--server", "ftp://x", "status")
    assert r.returncode == 2 and "http" in r.stderr
    # Admin commands without a password say how to give one.
    r = ctl(home, "logs", server=server, password=None)
    assert r.returncode == 2 and "OWNCAST_PASSWORD" in r.stderr
    r = ctl(home, "chat", "system", "hi", server=server)
    assert r.returncode == 2 and "--token" in r.stderr
    r = ctl(home, "webhooks", "create", "not a url", "--event", "CHAT", server=server)
    assert r.returncode == 2 and "URL" in r.stderr
    # nothing reached the server: the log has no setting change
    assert "setting web_port changed" not in json.dumps(
        requests.get(server.url + "/api/admin/logs", auth=server.auth, timeout=5).json())


def test_api_errors_exit_1_with_a_hint(server, home):
    r = ctl(home, "status", server=server, password="wrong-password-123")
    assert r.returncode == 1 and "HTTP 401" in r.stderr and "stream key" in r.stderr
    r = ctl(home, "disconnect", server=server)
    assert r.returncode == 1 and "no inbound stream" in r.stderr


def test_flags_beat_environment_beat_file(server, home):
    cfg = home / ".config" / "owncastctl" / "config.toml"
    cfg.parent.mkdir(parents=True)
    down = f"http://127.0.0.1:{free_port()}"
    cfg.write_text(f'server = "{server.url}"\npassword = "{TEST_KEY}"\n')
    cfg.chmod(0o600)
    # the file alone is enough
    assert "sessionPeakViewerCount" in ok(ctl(home, "--json", "status", password=None))
    # the environment wins over the file
    r = ctl(home, "status", server=down, password=None)
    assert r.returncode == 3 and down in r.stderr
    r = ctl(home, "status", password="wrong-password-123")
    assert r.returncode == 1
    # a flag wins over the environment
    ok(ctl(home, "--server", server.url, "status", server=down))
    r = ctl(home, "--password", "wrong-password-123", "status")
    assert r.returncode == 1


def test_config_file_readable_by_others_is_refused(server, home):
    cfg = home / ".config" / "owncastctl" / "config.toml"
    cfg.parent.mkdir(parents=True)
    cfg.write_text(f'server = "{server.url}"\npassword = "{TEST_KEY}"\n')
    cfg.chmod(0o644)
    r = ctl(home, "status", password=None)
    assert r.returncode == 2, r
    assert "0644" in r.stderr and f"chmod 600 {cfg}" in r.stderr
    cfg.chmod(0o600)
    cfg.write_text('passwd = "x"\n')
    r = ctl(home, "status", password=None)
    assert r.returncode == 2 and "unknown key(s) passwd" in r.stderr


def test_shell_completion(home):
    env = {"_OWNCASTCTL_COMPLETE": "bash_complete", "COMP_WORDS": "owncastctl config set stream",
           "COMP_CWORD": "3"}
    out = ok(ctl(home, env=env))
    assert {"streamtitle", "streamlatencylevel", "streamoutputvariants"} <= set(
        re.findall(r"plain,(\S+)", out))
    assert "complete " in ok(ctl(home, env={"_OWNCASTCTL_COMPLETE": "bash_source"}))


# -- config ---------------------------------------------------------------------------------

def test_config_get_everything(server, home):
    out = ok(ctl(home, "config", "get", server=server))
    assert re.search(r"^SETTING\s+VALUE$", out, re.M)
    assert re.search(rf"^webServerPort\s+{server.web_port}$", out, re.M), out
    data = json.loads(ok(ctl(home, "--json", "config", "get", server=server)))
    assert data["webServerPort"] == server.web_port and data["streamKey"] == TEST_KEY


def _variants():
    return [{"videoPassthrough": False, "audioPassthrough": True, "videoBitrate": 800,
             "framerate": 30, "cpuUsageLevel": 1}]


CASES = [  # setting, text given, value `config get --json` should show (None: not compared)
    ("name", "ctl test server", "ctl test server"),
    ("serversummary", "summary from ctl", "summary from ctl"),
    ("streamtitle", "title from ctl", "title from ctl"),
    ("pagecontent", "# Hello *ctl*", None),
    ("customstyles", "body { color: red; }", "body { color: red; }"),
    ("tags", " music, live ,,talk", ["music", "live", "talk"]),
    ("nsfw", "yes", True),
    ("serverurl", "https://live.example.org", "https://live.example.org"),
    ("directoryenabled", "true", True),
    ("ffmpegpath", "", ""),
    ("streamlatencylevel", "3", 3),
    ("streamoutputvariants", json.dumps(_variants()), None),
    ("codec", "libx264", "libx264"),
    ("s3", '{"enabled": false, "bucket": "b"}', None),
    ("socialhandles", "github=https://github.com/owncast,mastodon=https://m.example/@me",
     [{"platform": "github", "url": "https://github.com/owncast"},
      {"platform": "mastodon", "url": "https://m.example/@me"}]),
    ("logo", "logo.svg", None),
    ("clipmaxseconds", "45", 45),
    ("clipsallowed", "moderators", "moderators"),
    ("clipsperaddressperhour", "3", 3),
]


@pytest.mark.parametrize("setting,text,expected", CASES, ids=[c[0] for c in CASES])
def test_config_set_then_get(server, home, setting, text, expected):
    from owncastd.settings import by_cli_name
    need(server, "/api/admin/config/" + by_cli_name()[setting].setter)
    out = ok(ctl(home, "config", "set", setting, text, server=server))
    assert out.strip(), "says what happened"
    got = json.loads(ok(ctl(home, "--json", "config", "get", setting, server=server)))
    if expected is not None:
        assert got == expected
    elif setting == "pagecontent":
        assert "<em>ctl</em>" in got
    elif setting == "streamoutputvariants":
        assert got[0]["videoBitrate"] == 800 and got[0]["framerate"] == 30
    elif setting == "s3":
        assert got["enabled"] is False and got.get("bucket") == "b"
    human = ok(ctl(home, "config", "get", setting, server=server))
    assert human.strip()


def test_config_set_reads_stdin_and_ports_and_key(server, home):
    ok(ctl(home, "config", "set", "streamtitle", "-", server=server, input="from stdin\n"))
    assert json.loads(ok(ctl(home, "--json", "config", "get", "streamtitle",
                             server=server))) == "from stdin"
    # the same port: accepted, nothing to re-bind
    ok(ctl(home, "config", "set", "webserverport", str(server.web_port), server=server))
    new_rtmp = free_port()
    ok(ctl(home, "config", "set", "rtmpserverport", str(new_rtmp), server=server))
    # saved; the server was started with --rtmp-port, and a flag wins over a saved value
    assert json.loads(ok(ctl(home, "--json", "config", "get", "rtmpserverport",
                             server=server))) in (new_rtmp, server.rtmp_port)
    # the key is the password: change it, use the new one, change it back
    r = ctl(home, "config", "set", "key", "short", server=server)
    assert r.returncode == 2 and "at least 8" in r.stderr
    new_key = "another-stream-key-42"
    r = ctl(home, "config", "set", "key", new_key, server=server)
    assert r.returncode == 0 and "--password" in r.stderr
    # the server already took the key through a flag: the flag wins, as documented
    status = ctl(home, "status", server=server)
    if status.returncode == 1:
        ok(ctl(home, "config", "set", "key", TEST_KEY, server=server, password=new_key))
    ok(ctl(home, "status", server=server))


# -- logs -----------------------------------------------------------------------------------

def test_logs_plain_json_warnings_and_follow(server, home):
    out = ok(ctl(home, "logs", server=server))
    assert re.search(r"^\S+\s+INFO\s+\S", out, re.M), out
    entries = json.loads(ok(ctl(home, "--json", "logs", server=server)))
    assert entries and {"time", "level", "message"} <= set(entries[0])
    warnings = json.loads(ok(ctl(home, "--json", "logs", "--warnings", server=server)))
    assert all(e["level"] in ("warning", "error", "critical") for e in warnings)

    e = {k: v for k, v in os.environ.items() if not k.startswith("OWNCAST")}
    e.update(HOME=str(home), OWNCAST_SERVER=server.url, OWNCAST_PASSWORD=TEST_KEY)
    follow = subprocess.Popen([OWNCASTCTL, "--json", "logs", "--follow", "--interval", "0.2"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=e)
    try:
        lines: list[str] = []
        follow.stdout.readline()  # the first batch has started
        ok(ctl(home, "config", "set", "name", "followed name", server=server))

        def seen():
            line = follow.stdout.readline()
            lines.append(line)
            return "instance.name changed" in line
        wait_until(seen, 30, what="the new log line in `logs --follow`")
        assert json.loads(lines[-1])["level"] == "info"
        follow.send_signal(signal.SIGINT)
        assert follow.wait(10) == 0
    finally:
        if follow.poll() is None:
            follow.kill()
            follow.wait()


# -- tokens, chat, webhooks -----------------------------------------------------------------

def test_tokens_and_chat(server, home):
    need(server, "/api/admin/accesstokens", "/api/integrations/chat/system",
         "/api/admin/chat/messages")
    made = json.loads(ok(ctl(home, "--json", "tokens", "create", "ctl-bot",
                             "--scope", "CAN_SEND_SYSTEM_MESSAGES", "--scope",
                             "can_send_messages", server=server)))
    token = made["token"]
    assert made["name"] == "ctl-bot" and sorted(made["scopes"]) == [
        "CAN_SEND_MESSAGES", "CAN_SEND_SYSTEM_MESSAGES"]
    human = ok(ctl(home, "tokens", "create", "ctl-reader", "--scope", "HAS_ADMIN_ACCESS",
                   server=server))
    reader = human.splitlines()[0]
    listed = ok(ctl(home, "tokens", "list", server=server))
    assert re.search(r"^NAME\s+SCOPES\s+CREATED\s+LAST USED\s+TOKEN$", listed, re.M)
    assert re.search(rf"^ctl-bot\s+CAN_SEND_MESSAGES,CAN_SEND_SYSTEM_MESSAGES\s.*{re.escape(token)}$",
                     listed, re.M), listed
    r = ctl(home, "--json", "tokens", "create", "x", "--scope", "NOPE", server=server)
    assert r.returncode == 2

    ok(ctl(home, "chat", "system", "system says hi", server=server, token=token))
    ok(ctl(home, "chat", "send", "--user", "ctl-user", "user says *hi*", server=server,
           token=token))
    ok(ctl(home, "chat", "action", "--author", "ctl-user", "waves", server=server, token=token))
    # a token without the scope: 403, and the hint says how to fix it
    r = ctl(home, "chat", "system", "nope", server=server, token=reader)
    assert r.returncode == 1 and "scope" in r.stderr, r.stderr
    r = ctl(home, "chat", "system", "nope", server=server, token="not-a-token")
    assert r.returncode == 1 and "HTTP 401" in r.stderr

    messages = json.loads(ok(ctl(home, "--json", "chat", "list", server=server)))
    mine = [m for m in messages if m.get("author") == "ctl-user" and "hi" in m.get("body", "")]
    assert mine, messages
    table = ok(ctl(home, "chat", "list", server=server))
    assert re.search(r"^ID\s+TIME\s+TYPE\s+AUTHOR\s+VISIBLE\s+MESSAGE$", table, re.M)
    assert "user says hi" in table  # HTML shown as text

    msg_id = mine[0]["id"]
    ok(ctl(home, "chat", "hide", msg_id, server=server))
    hidden = {m["id"]: m for m in json.loads(ok(ctl(home, "--json", "chat", "list",
                                                    server=server)))}
    assert hidden[msg_id]["visible"] is False
    public = json.loads(ok(ctl(home, "--json", "chat", "list", server=server, password=None)))
    assert msg_id not in {m["id"] for m in public}
    ok(ctl(home, "chat", "show", msg_id, server=server))
    shown = {m["id"]: m for m in json.loads(ok(ctl(home, "--json", "chat", "list",
                                                   server=server)))}
    assert shown[msg_id]["visible"] is True

    ok(ctl(home, "tokens", "delete", token, server=server))
    assert token not in ok(ctl(home, "tokens", "list", server=server))
    r = ctl(home, "chat", "system", "gone", server=server, token=token)
    assert r.returncode == 1 and "HTTP 401" in r.stderr
    ok(ctl(home, "tokens", "delete", reader, server=server))


def test_an_id_starting_with_a_dash_is_explained_and_passes_after_double_dash(server, home):
    r = ctl(home, "chat", "hide", "-Xsz1p69uA", server=server)
    assert r.returncode == 2 and "put -- before it" in r.stderr and "-Xsz1p69uA" in r.stderr, \
        r.stderr
    r = ctl(home, "chat", "hide", "--", "-Xsz1p69uA", server=server)
    assert "No such option" not in r.stderr and r.returncode in (0, 1), r.stderr


def test_webhooks(server, home):
    need(server, "/api/admin/webhooks")
    made = json.loads(ok(ctl(home, "--json", "webhooks", "create", "http://127.0.0.1:9/hook",
                             "--event", "CHAT", "--event", "stream_started", server=server)))
    assert made["url"] == "http://127.0.0.1:9/hook"
    assert sorted(made["events"]) == ["CHAT", "STREAM_STARTED"]
    listed = ok(ctl(home, "webhooks", "list", server=server))
    assert re.search(r"^ID\s+URL\s+EVENTS\s+CREATED\s+LAST USED$", listed, re.M)
    assert re.search(rf"^{made['id']}\s+http://127.0.0.1:9/hook\s+CHAT,STREAM_STARTED\s", listed,
                     re.M), listed
    r = ctl(home, "webhooks", "create", "http://127.0.0.1:9/x", "--event", "NOPE", server=server)
    assert r.returncode == 2
    ok(ctl(home, "webhooks", "delete", str(made["id"]), server=server))
    assert json.loads(ok(ctl(home, "--json", "webhooks", "list", server=server))) == [] or \
        made["id"] not in {w["id"] for w in json.loads(
            ok(ctl(home, "--json", "webhooks", "list", server=server)))}
    r = ctl(home, "webhooks", "delete", str(made["id"]), server=server)
    assert r.returncode == 1 and "HTTP 400" in r.stderr


# -- statistics -----------------------------------------------------------------------------

def test_viewers_clients_hardware(server, home):
    need(server, "/api/admin/viewersOverTime", "/api/admin/clients", "/api/admin/hardwarestats")
    requests.get(server.url + "/api/ping", headers={"User-Agent": "ctl-test"}, timeout=5)
    assert isinstance(json.loads(ok(ctl(home, "--json", "viewers", server=server))), list)
    clients = json.loads(ok(ctl(home, "--json", "clients", server=server)))
    assert isinstance(clients, list)
    out = ok(ctl(home, "clients", server=server))
    assert out.startswith("CLIENT") or out.strip() == "no connected clients"
    hw = json.loads(ok(ctl(home, "--json", "hardware", server=server)))
    assert set(hw) >= {"cpu", "memory", "disk"}
    out = ok(ctl(home, "hardware", server=server))
    assert out.startswith("TIME") or "no hardware samples" in out
    out = ok(ctl(home, "viewers", server=server))
    assert out.startswith("TIME") or "no viewer samples" in out


# -- disconnect a live stream ---------------------------------------------------------------

def test_disconnect_live_stream(server, home):
    import shutil
    if shutil.which("ffmpeg") is None:
        pytest.skip("needs ffmpeg to publish a stream")
    pub = subprocess.Popen(
        ["ffmpeg", "-nostdin", "-loglevel", "error", "-re", "-f", "lavfi", "-i",
         "testsrc=size=320x240:rate=15", "-f", "lavfi", "-i", "sine=frequency=440",
         "-c:v", "libx264", "-preset", "ultrafast", "-g", "15", "-c:a", "aac", "-t", "120",
         "-f", "flv", f"rtmp://127.0.0.1:{_rtmp_port(server, home)}/live/{TEST_KEY}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_until(lambda: json.loads(ok(ctl(home, "--json", "status", server=server)))["online"],
                   30, interval=0.5, what="the stream to be online")
        out = ok(ctl(home, "status", server=server))
        assert re.search(r"^broadcaster:\s+127\.0\.0\.1", out, re.M), out
        out = ok(ctl(home, "disconnect", server=server))
        assert out.strip()
        assert json.loads(ok(ctl(home, "--json", "status", server=server)))["online"] is False
    finally:
        pub.kill()
        pub.wait()


def _rtmp_port(server: Daemon, home) -> int:
    """The RTMP port now (an earlier test may have moved it through the API)."""
    cfg = json.loads(ok(ctl(home, "--json", "config", "get", server=server)))
    return cfg["rtmpServerPort"]
