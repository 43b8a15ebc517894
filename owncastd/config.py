"""Settings: built-in defaults < config file < values saved through the admin API < OWNCAST_* < flags.

The rules (key, type, default, check) are `settings.SETTINGS`; this module reads the sources
and applies those rules to each (file, environment, values saved through the API). The config file
(TOML) uses the same keys, grouped in tables by the part before the dot (`instance.name` is
`name` in `[instance]`). The environment variable of a key is `OWNCAST_` + the key upper-cased
with dots as underscores (`OWNCAST_WEB_PORT`, `OWNCAST_INSTANCE_NAME`).

`Config.get()` resolves a key on every call (saved values come from the store), so a value set
through the API is seen at once by every process without any cache to invalidate.
"""
from __future__ import annotations

import json
import os
import tomllib
from typing import Any, Mapping

from .random_ids import url_safe
from .settings import (  # noqa: F401  (re-exported: the rules live in settings.py)
    SERVER_KEYS, SETTINGS, ConfigError, Setting, coerce,
)
from .store import Store


def load_file(path: str | None) -> dict[str, Any]:
    """Read a TOML config file into {key: value}, checking every key and type."""
    if not path:
        return {}
    try:
        with open(path, "rb") as f:
            doc = tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path}: {exc}") from None
    flat: dict[str, Any] = {}

    def walk(table: Mapping, prefix: str) -> None:
        for name, value in table.items():
            key = prefix + name
            if isinstance(value, dict) and key not in SETTINGS:
                walk(value, key + ".")
            else:
                try:
                    flat[key] = coerce(key, value)
                except ConfigError as exc:
                    raise ConfigError(f"config file {path}: {exc}", exc.key, exc.problem) from None

    walk(doc, "")
    return flat


def load_env(environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    environ = os.environ if environ is None else environ
    out = {}
    for setting in SETTINGS.values():
        if setting.env in environ:
            try:
                out[setting.key] = coerce(setting.key, environ[setting.env], from_text=True)
            except ConfigError as exc:
                raise ConfigError(f"environment variable {setting.env}: {exc}", exc.key,
                                  exc.problem) from None
    return out


class Config:
    """Resolved settings for one process.

    `overrides` holds the flags and OWNCAST_* values (they beat everything); `file_values` the
    config file's. Saved values are read from the store on each call.
    """

    def __init__(self, store: Store | None, file_values: dict[str, Any] | None = None,
                 overrides: dict[str, Any] | None = None):
        self.store = store
        self.file_values = dict(file_values or {})
        self.overrides = dict(overrides or {})

    def get(self, key: str) -> Any:
        if key in self.overrides:
            return self.overrides[key]
        if self.store is not None:
            saved = self.store.get_config(key, _MISSING)
            if saved is not _MISSING:
                return saved
        if key in self.file_values:
            return self.file_values[key]
        return _copy(SETTINGS[key].default)

    def snapshot(self) -> dict[str, Any]:
        """Every setting resolved at once (one store query)."""
        saved = self.store.all_config() if self.store is not None else {}
        out = {}
        for key, setting in SETTINGS.items():
            if key in self.overrides:
                out[key] = self.overrides[key]
            elif key in saved:
                out[key] = saved[key]
            elif key in self.file_values:
                out[key] = self.file_values[key]
            else:
                out[key] = _copy(setting.default)
        return out

    def source_of(self, key: str) -> str:
        if key in self.overrides:
            return "override"
        if self.store is not None and self.store.get_config(key, _MISSING) is not _MISSING:
            return "saved"
        if key in self.file_values:
            return "file"
        return "default"

    def save(self, values: dict[str, Any]) -> None:
        """Persist values set through the API (checked first; all or nothing)."""
        checked = {k: coerce(k, v) for k, v in values.items()}
        assert self.store is not None
        self.store.set_configs(checked)

    def ensure_stream_key(self) -> str | None:
        """Generate and save a strong stream key if none is configured; return it if generated."""
        if self.get("stream_key"):
            return None
        key = url_safe(24)
        self.save({"stream_key": key})
        return key


_MISSING = object()


def _copy(value: Any) -> Any:
    # Defaults are shared module constants: hand out copies so callers cannot mutate them.
    return json.loads(json.dumps(value)) if isinstance(value, (list, dict)) else value


def resolve_data_dir(file_values: dict, overrides: dict, base: str | None = None) -> str:
    """The data dir comes only from flags, env or the file (the store lives inside it)."""
    path = overrides.get("data_dir") or file_values.get("data_dir") or SETTINGS["data_dir"].default
    return os.path.abspath(os.path.join(base or os.getcwd(), path))


def resolve_store_url(file_values: dict, overrides: dict) -> str:
    """Like the data dir, the store's location comes only from flags, env or the file."""
    return overrides.get("store_url") or file_values.get("store_url") or ""
