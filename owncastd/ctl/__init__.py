"""`owncastctl`: a REST client of a running owncastd for admin and integration tasks.

Exit codes: 0 success, 1 API error, 2 usage error, 3 cannot connect.

Connection settings come from flags, else `OWNCAST_*` environment variables, else
`~/.config/owncastctl/config.toml` (`$XDG_CONFIG_HOME` honoured; keys server, username,
password, token), else the defaults. Admin commands send basic auth (`--username` and the
admin password as `--password`: the stream key until one is set); integration commands (chat
send/system/action) send `--token`.

Rooms: `client` (connection settings and HTTP), `output` (tables, --json), `main` (the
top-level group and `run`), one module per command group (`stream`, `config`, `chat`,
`tokens`, `webhooks`, `stats`). Setting values are checked by the server's own rules
(`owncastd.settings`) before they are sent.
"""
from __future__ import annotations

from . import chat, config, recordings, stats, stream, tokens, webhooks  # noqa: F401  (commands)
from .main import main, run

__all__ = ["main", "run"]

if __name__ == "__main__":
    run()
