"""Random URL-safe strings for the ids and secrets the server makes (stream keys, access
tokens, chat message and user ids)."""
from __future__ import annotations

import secrets


def url_safe(nbytes: int) -> str:
    """`secrets.token_urlsafe(nbytes)`, never starting with "-": such a value given to a command
    line (`owncastctl chat hide ID`, `owncastctl tokens delete TOKEN`) reads as an option, and
    one value in 64 started that way. Redrawing keeps every value equally likely among the rest."""
    while True:
        value = secrets.token_urlsafe(nbytes)
        if value[0] != "-":
            return value
