"""Custom emoji: the image files in DATA/emoji, listed for `/api/emoji` and the chat renderer.

The first start copies the bundled set there (`seed`); the operator adds or removes files.
"""
from __future__ import annotations

import os
import shutil
from importlib import resources

from .datadir import DataDir

URL_PREFIX = "/img/emoji/"
EXTENSIONS = (".svg", ".png", ".gif", ".jpg", ".jpeg", ".webp")


def list_emoji(data_dir: DataDir) -> list[dict]:
    """One `{name, emoji}` per image file in the emoji folder (D6: a plain array)."""
    try:
        names = sorted(os.listdir(data_dir.emoji))
    except FileNotFoundError:
        return []
    return [{"name": os.path.splitext(n)[0], "emoji": URL_PREFIX + n}
            for n in names if n.lower().endswith(EXTENSIONS) and not n.startswith(".")]


def seed(data_dir: DataDir) -> None:
    """First start: a few emoji to pick from."""
    if not os.path.isdir(data_dir.emoji):
        # Plain copies: the package's 0755/0644 would otherwise be copied over the umask.
        shutil.copytree(str(resources.files("owncastd") / "assets" / "emoji"), data_dir.emoji,
                        copy_function=shutil.copyfile)
        for root, _, _ in os.walk(data_dir.emoji):
            os.chmod(root, 0o750)
