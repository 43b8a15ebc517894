"""The Debian package: `make deb`, lintian, install it on this machine, run the packaged
owncastd as the `owncast` user with the packaged config, ask `owncastctl status`, purge.

Needs root and dpkg (CI runs as root on Debian 12). The machine is left as found: the package,
any dependency apt pulled in for it, the `owncast` user (when the test created it) go again.
"""
from __future__ import annotations

import glob
import json
import os
import pwd
import re
import shutil
import signal
import subprocess
import tempfile

import pytest
import requests

from conftest import free_port, wait_until

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(os.geteuid() != 0, reason="installs a .deb: needs root (CI runs as root)"),
    pytest.mark.skipif(shutil.which("dpkg") is None or shutil.which("apt-get") is None,
                       reason="needs a Debian system (dpkg, apt-get)"),
]


def sh(*args, timeout=600, check=True, **kw) -> subprocess.CompletedProcess:
    proc = subprocess.run(args, capture_output=True, text=True, timeout=timeout, **kw)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(args)} exited {proc.returncode}:\n"
                             f"{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}")
    return proc


def installed_packages() -> set[str]:
    out = sh("dpkg-query", "-W", "-f", "${Package} ${db:Status-Status}\n").stdout
    return {line.split()[0] for line in out.splitlines() if line.endswith(" installed")}


def user_exists(name: str) -> bool:
    try:
        pwd.getpwnam(name)
        return True
    except KeyError:
        return False


@pytest.fixture(scope="module")
def installed_deb():
    if "owncastd" in installed_packages():
        pytest.skip("an owncastd package is installed already; not touching it")
    sh("make", "deb", cwd=ROOT, timeout=900)
    debs = glob.glob(os.path.join(ROOT, "dist", "owncastd_*.deb"))
    assert len(debs) == 1, debs
    before = installed_packages()
    had_user = user_exists("owncast")
    had_data = os.path.exists("/var/lib/owncast")
    try:
        sh("apt-get", "install", "-y", "-q", "--no-install-recommends", debs[0],
           env=dict(os.environ, DEBIAN_FRONTEND="noninteractive"))
        yield debs[0]
    finally:
        added = installed_packages() - before
        if added:
            sh("apt-get", "purge", "-y", "-q", *sorted(added), check=False,
               env=dict(os.environ, DEBIAN_FRONTEND="noninteractive"))
        if not had_user and user_exists("owncast"):
            sh("deluser", "--system", "owncast", check=False)
            sh("delgroup", "--system", "owncast", check=False)
        if not had_data:
            shutil.rmtree("/var/lib/owncast", ignore_errors=True)


def test_lintian_reports_no_errors(installed_deb):
    out = sh("lintian", "--no-tag-display-limit", installed_deb, check=False, timeout=600)
    errors = [l for l in out.stdout.splitlines() if l.startswith("E:")]
    assert not errors, "\n".join(errors)
    assert out.returncode == 0, out.stdout + out.stderr


def test_packaged_owncastd_runs_as_owncast_user(installed_deb):
    # What the package put in place.
    owncast = pwd.getpwnam("owncast")
    assert owncast.pw_uid < 1000 and owncast.pw_shell.endswith("nologin"), owncast
    st = os.stat("/var/lib/owncast")
    assert (st.st_uid, oct(st.st_mode & 0o777)) == (owncast.pw_uid, "0o750")
    conffiles = sh("dpkg-query", "-W", "-f", "${Conffiles}", "owncastd").stdout
    assert "/etc/owncast/owncast.toml" in conffiles
    assert os.path.isfile("/lib/systemd/system/owncastd.service")
    unit = open("/lib/systemd/system/owncastd.service").read()
    assert "ExecStart=/usr/bin/owncastd start --config /etc/owncast/owncast.toml" in unit
    for page in ("owncastd.1.gz", "owncastctl.1.gz"):
        assert os.path.isfile(f"/usr/share/man/man1/{page}")
    version = sh("/usr/bin/owncastd", "--version").stdout
    assert "built with FFmpeg" in version  # the compiled extension loads

    # The packaged server, as owncast, with the packaged config, on free ports.
    tmp = tempfile.mkdtemp(prefix="oc-deb-")
    os.chmod(tmp, 0o755)
    data = os.path.join(tmp, "data")
    os.mkdir(data, 0o750)
    os.chown(data, owncast.pw_uid, owncast.pw_gid)
    web, rtmp = free_port(), free_port()
    log_path = os.path.join(tmp, "out.log")
    log = open(log_path, "wb")
    env = {"PATH": "/usr/bin:/bin", "HOME": data, "LANG": "C.UTF-8"}
    proc = subprocess.Popen(
        ["setpriv", f"--reuid={owncast.pw_uid}", f"--regid={owncast.pw_gid}", "--clear-groups",
         "/usr/bin/owncastd", "start", "--config", "/etc/owncast/owncast.toml",
         "--data-dir", data, "--bind", "127.0.0.1", "--web-port", str(web),
         "--rtmp-port", str(rtmp)], stdout=log, stderr=subprocess.STDOUT, env=env, cwd=data)
    url = f"http://127.0.0.1:{web}"
    try:
        def ready():
            assert proc.poll() is None, open(log_path).read()
            return requests.get(url + "/api/status", timeout=1).status_code == 200
        wait_until(ready, 60, what="the packaged owncastd to answer")
        match = re.search(r"Generated a stream key \(also the admin password, user 'admin'\): "
                          r"(\S+)", open(log_path).read())
        assert match, open(log_path).read()
        key = match.group(1)
        ctl = ["/usr/bin/owncastctl", "--server", url]
        out = sh(*ctl, "--password", key, "status")
        assert re.search(r"^online:\s+no$", out.stdout, re.M), out.stdout
        data_json = json.loads(sh(*ctl, "--password", key, "--json", "status").stdout)
        assert data_json["online"] is False and "versionNumber" in data_json
        wrong = sh(*ctl, "--password", "not-the-key-000", "status", check=False)
        assert wrong.returncode == 1, wrong
        # The server's files belong to the service user.
        assert os.stat(os.path.join(data, "owncast.db")).st_uid == owncast.pw_uid
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        log.close()
        shutil.rmtree(tmp, ignore_errors=True)
    assert proc.returncode == 0, open(log_path).read() if os.path.exists(log_path) else ""


def test_purge_removes_what_the_package_installed(installed_deb):
    sh("apt-get", "purge", "-y", "-q", "owncastd",
       env=dict(os.environ, DEBIAN_FRONTEND="noninteractive"))
    for path in ("/usr/bin/owncastd", "/usr/bin/owncastctl", "/usr/lib/owncastd",
                 "/etc/owncast", "/var/lib/owncast", "/lib/systemd/system/owncastd.service"):
        assert not os.path.lexists(path), path
