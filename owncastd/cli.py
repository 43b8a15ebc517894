"""`owncastd`: start (foreground, the systemd way), stop and status of one instance per data dir."""
from __future__ import annotations

import json
import os
import signal
import sys
import time

import click

from . import config as configmod
from . import emoji
from .datadir import DataDir
from .version import __version__

EXIT_NOT_RUNNING = 3  # LSB: "program is not running"


def _print_version(ctx: click.Context, _param, value: bool) -> None:
    if not value or ctx.resilient_parsing:
        return
    click.echo(f"owncastd {__version__}")
    try:
        from .native import avinfo
    except ImportError as exc:
        click.echo(f"native extension unavailable: {exc}", err=True)
        ctx.exit(1)
    click.echo(f"built with FFmpeg {avinfo.ffmpeg_version()}")
    for lib, version in avinfo.library_versions().items():
        click.echo(f"  {lib:<14} {version}")
    ctx.exit(0)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--version", is_flag=True, expose_value=False, is_eager=True,
              callback=_print_version, help="Show the version and the linked libav libraries.")
def main() -> None:
    """owncastd: self-hosted live video and web chat, speaking the Owncast API."""


def _config_option(f):
    return click.option("--config", "config_path", type=click.Path(dir_okay=False),
                        envvar="OWNCAST_CONFIG",
                        help="TOML config file (default: built-in defaults only).")(f)


def _data_dir_option(f):
    return click.option("--data-dir", type=click.Path(file_okay=False),
                        help="Data directory [default: data].")(f)


def _load(config_path: str | None, flags: dict) -> tuple[dict, dict, str]:
    """(file values, overrides = env < flags, absolute data dir); ConfigError on bad values."""
    file_values = configmod.load_file(config_path)
    overrides = configmod.load_env()
    for key, value in flags.items():
        if value is not None:
            try:
                overrides[key] = configmod.coerce(key, value)
            except configmod.ConfigError as exc:
                flag = "--" + key.replace("_", "-")
                raise configmod.ConfigError(f"flag {flag}: {exc}", exc.key, exc.problem) from None
    return file_values, overrides, configmod.resolve_data_dir(file_values, overrides)


def _fail(message: str, code: int = 1) -> None:
    click.echo(f"owncastd: {message}", err=True)
    sys.exit(code)


@main.command()
@_config_option
@_data_dir_option
@click.option("--web-port", type=int, help="Web/API port [default: 8080].")
@click.option("--rtmp-port", type=int, help="RTMP ingest port [default: 1935].")
@click.option("--stream-key", help="Stream key (also the admin password). Visible in `ps`: "
              "prefer --stream-key-file or OWNCAST_STREAM_KEY.")
@click.option("--stream-key-file", type=click.Path(dir_okay=False),
              help="Read the stream key from this file (first line).")
@click.option("--bind", help="Address to listen on [default: 0.0.0.0].")
@click.option("--log-level", type=click.Choice(["debug", "info", "warning", "error"],
                                               case_sensitive=False))
@click.option("--store-url", help="Datastore: postgresql://user:password@host/db "
              "[default: the SQLite file in the data dir].")
@click.option("--role", type=click.Choice(["all", "origin", "web"]),
              help="Children to run: all, origin or web (docs/SCALING.md) [default: all].")
@click.option("--origin-url", help="A web node's origin, for /hls/ (http://origin:8080).")
@click.option("--redis-url", help="Redis shared by the nodes of one instance "
              "(redis://host:6379/0) [default: none, this node's ZeroMQ bus only].")
def start(config_path, data_dir, web_port, rtmp_port, stream_key, stream_key_file, bind,
          log_level, store_url, role, origin_url, redis_url):
    """Run the server in the foreground until SIGTERM or Ctrl-C."""
    os.umask(UMASK)   # before anything is created; every child inherits it
    flags = {"data_dir": data_dir, "web_port": web_port, "rtmp_port": rtmp_port,
             "stream_key": stream_key, "stream_key_file": stream_key_file, "bind": bind,
             "log_level": log_level.lower() if log_level else None, "store_url": store_url,
             "role": role, "origin_url": origin_url, "redis_url": redis_url}
    try:
        file_values, overrides, data_dir = _load(config_path, flags)
        _read_stream_key_file(file_values, overrides)
    except configmod.ConfigError as exc:
        _fail(str(exc), 2)
    try:
        os.makedirs(data_dir, mode=0o700, exist_ok=True)
        os.chmod(data_dir, 0o700)   # also when it existed before, perhaps world-readable
    except OSError as exc:
        _fail(f"cannot create data dir {data_dir}: {exc.strerror}")

    from .runtime import running_pid
    pid = running_pid(data_dir)
    if pid is not None:
        _fail(f"owncastd is already running for data dir {data_dir} (pid {pid}); "
              f"stop it first with `owncastd stop --data-dir {data_dir}`")

    from . import logs
    from .store import Store
    from .store_pg import redact
    from .supervisor import StartupError, Supervisor
    store_url = configmod.resolve_store_url(file_values, overrides)
    try:
        store = Store.in_data_dir(data_dir, store_url)
    except Exception as exc:
        where = redact(store_url) if store_url else f"in {data_dir}"
        _fail(f"cannot open the database {where}: {exc}")
    if store.dialect == "sqlite":
        _restrict_database(store.path)
    config = configmod.Config(store, file_values, overrides)
    emoji.seed(DataDir(data_dir))
    generated = config.ensure_stream_key()
    if generated:
        # Printed once, to the terminal/journal of the first start only, never logged.
        click.echo(f"Generated a stream key (also the admin password, user 'admin'): {generated}\n"
                   f"Publish to rtmp://<host>:{config.get('rtmp_port')}/live/{generated}")
    logs.setup("owncastd", config.get("log_level"), data_dir)
    config_abs = os.path.abspath(config_path) if config_path else None
    supervisor = Supervisor(config, data_dir, config_abs)
    try:
        supervisor.start()
    except StartupError as exc:
        supervisor.shutdown()
        _fail(str(exc))
    sys.exit(supervisor.run())


UMASK = 0o027   # nothing the server creates is writable by its group or readable by others


def _read_stream_key_file(file_values: dict, overrides: dict) -> None:
    """`stream_key_file` (flag, OWNCAST_STREAM_KEY_FILE or config file): the key from a file,
    so it is in neither `ps` nor the config file. A `stream_key` given as well wins."""
    path = overrides.get("stream_key_file") or file_values.get("stream_key_file")
    if not path or overrides.get("stream_key"):
        return
    try:
        with open(path, encoding="utf-8") as f:
            key = f.readline().strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise configmod.ConfigError(f"stream_key_file: cannot read {path}: {exc}") from None
    if not key:
        raise configmod.ConfigError(f"stream_key_file: {path} is empty")
    overrides["stream_key"] = configmod.coerce("stream_key", key)


def _restrict_database(db_path: str) -> None:
    """The database holds the stream key, S3 secret and access tokens: owner only, also for
    a database created before this rule."""
    for suffix in ("", "-wal", "-shm"):
        try:
            os.chmod(db_path + suffix, 0o600)
        except FileNotFoundError:
            pass


def _target(config_path, data_dir) -> str:
    return _target_and_store(config_path, data_dir)[0]


def _target_and_store(config_path, data_dir) -> tuple[str, str]:
    """(absolute data dir, store_url setting)."""
    try:
        file_values, overrides, resolved = _load(config_path, {"data_dir": data_dir})
    except configmod.ConfigError as exc:
        _fail(str(exc), 2)
    return resolved, configmod.resolve_store_url(file_values, overrides)


@main.command()
@_config_option
@_data_dir_option
@click.option("--timeout", type=float, default=15.0, show_default=True,
              help="Seconds to wait for the server to exit.")
def stop(config_path, data_dir, timeout):
    """Stop the instance that owns the data dir and wait for it to exit."""
    from .runtime import running_pid
    data_dir = _target(config_path, data_dir)
    pid = running_pid(data_dir)
    if pid is None:
        click.echo(f"owncastd is not running for data dir {data_dir}")
        return
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        click.echo("owncastd already exited")
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if running_pid(data_dir) is None:
            click.echo(f"owncastd (pid {pid}) stopped")
            return
        time.sleep(0.1)
    _fail(f"owncastd (pid {pid}) did not stop within {timeout:g} s")


@main.command()
@_config_option
@_data_dir_option
def reload(config_path, data_dir):
    """Apply changed ports and config file (SIGHUP): moved listeners re-bind, children restart."""
    from .runtime import running_pid
    data_dir = _target(config_path, data_dir)
    pid = running_pid(data_dir)
    if pid is None:
        _fail(f"owncastd is not running for data dir {data_dir}", EXIT_NOT_RUNNING)
    try:
        os.kill(pid, signal.SIGHUP)
    except ProcessLookupError:
        _fail("owncastd already exited", EXIT_NOT_RUNNING)
    click.echo(f"asked owncastd (pid {pid}) to reload; `owncastd status` shows its ports")


@main.command()
@_config_option
@_data_dir_option
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def status(config_path, data_dir, as_json):
    """Say whether the server runs, its pid, ports and whether a stream is live."""
    from .runtime import Runtime, running_pid
    from .store import Store, store_target
    from .store_pg import is_postgres_url
    data_dir, store_url = _target_and_store(config_path, data_dir)
    pid = running_pid(data_dir)
    info: dict = {"running": pid is not None, "pid": pid, "dataDir": data_dir}
    if pid is not None:
        rt = Runtime.read(data_dir)
        if rt is not None:
            info.update(bind=rt.bind, webPort=rt.web_port, rtmpPort=rt.rtmp_port,
                        startedAt=rt.started_at)
    target = store_target(data_dir, store_url)
    if is_postgres_url(target) or os.path.exists(target):
        try:
            store = Store(target)
        except Exception as exc:
            _fail(f"cannot open the database: {exc}")
        info["online"] = bool(store.get_state("online")) and pid is not None
        info["lastConnectTime"] = store.get_state("lastConnectTime")
        store.close()
    if as_json:
        click.echo(json.dumps(info))
    elif pid is None:
        click.echo(f"owncastd is not running (data dir {data_dir})")
    else:
        live = "live" if info.get("online") else "offline"
        click.echo(f"owncastd is running (pid {pid}, data dir {data_dir})\n"
                   f"  web:    http://{info.get('bind')}:{info.get('webPort')}/\n"
                   f"  rtmp:   rtmp://{info.get('bind')}:{info.get('rtmpPort')}/live\n"
                   f"  stream: {live}")
    sys.exit(0 if pid is not None else EXIT_NOT_RUNNING)


@main.command("migrate-store")
@click.option("--from", "source", required=True, metavar="URL",
              help="Store to copy: sqlite:///path/to/owncast.db (or postgresql://...).")
@click.option("--to", "target", required=True, metavar="URL",
              help="Empty store to fill: postgresql://user:password@host/db (or sqlite:///...).")
def migrate_store(source, target):
    """Copy a whole store (config, state, chat, tokens, webhooks, viewers, samples, logs) into
    an empty one, e.g. an SQLite install into PostgreSQL. Stop the server first."""
    from .settings import store_url_problem
    from .store import Store, copy_store, store_target
    from .store_pg import redact
    for option, url in (("--from", source), ("--to", target)):
        problem = store_url_problem(url) if url else "must not be empty"
        if problem:
            _fail(f"{option}: {problem}", 2)
    source_path = store_target("", source)
    if not source.startswith("postgres") and not os.path.isfile(source_path):
        _fail(f"--from: no SQLite file at {source_path}", 2)
    try:
        src, dst = Store(source_path), Store(store_target("", target))
    except Exception as exc:
        _fail(f"cannot open a store: {exc}")
    try:
        copied = copy_store(src, dst)
    except ValueError as exc:
        _fail(f"nothing copied: {exc}")
    finally:
        src.close()
        dst.close()
    click.echo(f"copied {sum(copied.values())} rows into {redact(target)}: " +
               ", ".join(f"{t} {n}" for t, n in copied.items()))


if __name__ == "__main__":
    main()
