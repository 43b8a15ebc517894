"""owncastctl's connection: settings from flags, environment and its config file; JSON over HTTP."""
from __future__ import annotations

import base64
import json
import os
import stat
import tomllib
import urllib.error
import urllib.request
from typing import Any

import click

EXIT_OK, EXIT_API, EXIT_USAGE, EXIT_CONNECT = 0, 1, 2, 3
DEFAULT_SERVER = "http://127.0.0.1:8080"
DEFAULT_USERNAME = "admin"
FILE_KEYS = ("server", "username", "password", "token")


class ApiError(click.ClickException):
    exit_code = EXIT_API


class ConnectError(click.ClickException):
    exit_code = EXIT_CONNECT


class ConfigFileError(click.UsageError):
    """The config file is unreadable, invalid or readable by others (exit 2)."""


# -- connection settings ------------------------------------------------------------------

def config_file_path() -> str:
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return os.path.join(base, "owncastctl", "config.toml")


def load_config_file(path: str) -> dict[str, str]:
    """The file's settings ({} when it does not exist). It holds the admin password, so a
    file that group or others may read is refused rather than silently used."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise ConfigFileError(f"cannot read {path}: {exc.strerror}")
    if st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ConfigFileError(
            f"refusing to use {path}: its mode {stat.S_IMODE(st.st_mode):04o} lets group or "
            f"others read the password in it; run `chmod 600 {path}`")
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigFileError(f"cannot read {path}: {exc}")
    unknown = sorted(set(data) - set(FILE_KEYS))
    if unknown:
        raise ConfigFileError(f"{path}: unknown key(s) {', '.join(unknown)}; "
                              f"known keys: {', '.join(FILE_KEYS)}")
    bad = [k for k, v in data.items() if not isinstance(v, str)]
    if bad:
        raise ConfigFileError(f"{path}: {', '.join(bad)} must be a quoted string")
    return data


class Client:
    """JSON over HTTP with basic auth (admin) or a bearer token (integrations)."""

    def __init__(self, server: str, username: str, password: str | None,
                 token: str | None = None, timeout: float = 10):
        self.server = server.rstrip("/")
        self.username = username
        self.password = password
        self.token = token
        self.timeout = timeout

    def admin(self, method: str, path: str, body: Any = None) -> Any:
        if not self.password:
            raise click.UsageError(
                "this command needs the admin password (the stream key until one is set): "
                "pass --password, "
                "set OWNCAST_PASSWORD or add password = \"...\" to " + config_file_path())
        basic = base64.b64encode(f"{self.username}:{self.password}".encode()).decode()
        return self.request(method, path, body, f"Basic {basic}")

    def integration(self, method: str, path: str, body: Any = None) -> Any:
        if not self.token:
            raise click.UsageError(
                "this command needs an access token: pass --token, set OWNCAST_TOKEN or add "
                "token = \"...\" to " + config_file_path()
                + " (create one with `owncastctl tokens create NAME --scope ...`)")
        return self.request(method, path, body, f"Bearer {self.token}")

    def request(self, method: str, path: str, body: Any = None,
                authorization: str | None = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.server + path, data=data, method=method)
        req.add_header("Accept", "application/json")
        if data is not None:
            req.add_header("Content-Type", "application/json")
        if authorization:
            req.add_header("Authorization", authorization)
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                raw = resp.read()
        except urllib.error.HTTPError as exc:
            raise ApiError(self._describe(method, path, exc, authorization)) from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise ConnectError(f"cannot connect to {self.server}: {reason}; is owncastd running "
                               "there? (set --server or OWNCAST_SERVER)") from None
        try:
            return json.loads(raw) if raw.strip() else None
        except ValueError:
            raise ApiError(f"{method} {path}: the server did not answer JSON; is {self.server} "
                           "an owncastd?") from None

    def _describe(self, method, path, exc: urllib.error.HTTPError, authorization) -> str:
        try:
            message = json.loads(exc.read()).get("message") or exc.reason
        except (ValueError, AttributeError, OSError):
            message = exc.reason
        hint = ""
        if exc.code == 401 and authorization and authorization.startswith("Basic"):
            hint = ("; check --username and --password (the admin password, or the stream key "
                    "until one is set)")
        elif exc.code == 401:
            hint = "; check --token (list tokens with `owncastctl tokens list`)"
        elif exc.code == 403:
            hint = ("; the token lacks the scope this needs: create one with "
                    "`owncastctl tokens create NAME --scope ...`")
        elif exc.code == 404:
            hint = f"; this server does not provide {path} (is it an older owncastd?)"
        return f"{method} {path}: HTTP {exc.code}: {message}{hint}"
