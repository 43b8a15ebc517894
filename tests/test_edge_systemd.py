"""Issue 19.15: the shipped systemd unit is hardened as listed, and systemd's own rating of it
(`systemd-analyze security --offline=yes`) stays low."""
from __future__ import annotations

import os
import re
import shutil
import subprocess

import pytest

UNIT = os.path.join(os.path.dirname(__file__), "..", "contrib", "systemd", "owncastd.service")

REQUIRED = {
    "UMask": "0027", "SystemCallFilter": "@system-service", "SystemCallArchitectures": "native",
    "ProtectKernelLogs": "true", "ProtectClock": "true", "ProtectHostname": "true",
    "ProtectProc": "invisible", "RestrictRealtime": "true", "RemoveIPC": "true",
    "DevicePolicy": "closed",
}


def directives() -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    with open(UNIT) as f:
        for line in f:
            line = line.strip()
            if line and not line.startswith(("#", "[")) and "=" in line:
                key, _, value = line.partition("=")
                out.setdefault(key, []).append(value)
    return out


def test_unit_has_the_hardening_directives():
    d = directives()
    for key, value in REQUIRED.items():
        assert value in d.get(key, []), f"{key}={value} missing"
    assert int(d["LimitNOFILE"][0]) >= 8192   # above 2 workers x 2000 connections
    assert "PrivateDevices" not in d or d["PrivateDevices"] == ["true"]
    assert any(v.startswith("/dev/dri") for v in d.get("DeviceAllow", []))


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze")
def test_systemd_rates_the_unit_low_exposure(tmp_path):
    unit = tmp_path / "owncastd.service"
    shutil.copy(UNIT, unit)
    done = subprocess.run(["systemd-analyze", "security", "--offline=yes", str(unit)],
                          capture_output=True, text=True, timeout=60)
    match = re.search(r"Overall exposure level for \S+: ([0-9.]+)", done.stdout + done.stderr)
    assert match, done.stdout[-500:] + done.stderr[-500:]
    assert float(match.group(1)) <= 2.5, match.group(0)
