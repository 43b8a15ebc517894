"""Chat message bodies to safe HTML (owncast-behavior.md §1 "Body rendering").

A chatter's text goes through markdown-it with raw HTML off (so any HTML typed comes out escaped)
and only a small inline subset enabled: emphasis, strikethrough, code, links and bare URLs
(linkify), line breaks, and `:name:` emoji shortcodes for the files in the emoji folder. nh3 then
keeps only a strict tag whitelist, so nothing a browser would execute survives even if a renderer
bug let it through: links must be http(s) (or relative), get rel="nofollow noreferrer noopener"
and target=_blank; images are only our own emoji.

System messages (from the server or an integration with CAN_SEND_SYSTEM_MESSAGES) may carry
HTML, as in Owncast 0.0.7 (#747), but are sanitised too, with the wider page whitelist.
"""
from __future__ import annotations

import html
import re
from typing import Iterable

import nh3
from markdown_it import MarkdownIt

EMOJI_PREFIX = "/img/emoji/"
_EMOJI_NAME = re.compile(r":([A-Za-z0-9_+\-]{1,64}):")

CHAT_TAGS = {"a", "p", "br", "strong", "em", "code", "pre", "img", "s", "del"}
CHAT_ATTRIBUTES = {"a": {"href", "target"}, "img": {"src", "alt", "class", "title"}}
SYSTEM_TAGS = CHAT_TAGS | {"b", "i", "u", "span", "div", "blockquote", "ul", "ol", "li", "hr",
                           "h1", "h2", "h3", "h4", "h5", "h6"}
LINK_REL = "nofollow noreferrer noopener"


def _emoji_rule(state, silent: bool) -> bool:
    """Inline rule: `:name:` where name is a known emoji becomes an `emoji` token."""
    if state.src[state.pos] != ":":
        return False
    match = _EMOJI_NAME.match(state.src, state.pos)
    emoji = (state.env or {}).get("emoji") or {}
    if match is None or match.group(1) not in emoji:
        return False
    if not silent:
        token = state.push("emoji", "img", 0)
        token.meta = {"name": match.group(1), "src": emoji[match.group(1)]}
    state.pos = match.end()
    return True


def _render_emoji(self, tokens, idx, options, env) -> str:
    meta = tokens[idx].meta
    name = html.escape(meta["name"])
    return (f'<img src="{html.escape(meta["src"])}" alt=":{name}:" title=":{name}:" '
            f'class="emoji">')


def _chat_markdown() -> MarkdownIt:
    md = MarkdownIt("zero", {"html": False, "linkify": True, "breaks": True})
    md.enable(["emphasis", "strikethrough", "backticks", "fence", "link", "autolink",
               "linkify", "newline", "escape", "entity"])
    md.inline.ruler.before("emphasis", "emoji", _emoji_rule)
    md.add_render_rule("emoji", _render_emoji)
    return md


_chat_md = _chat_markdown()
_system_md = MarkdownIt("commonmark", {"html": True, "linkify": True, "breaks": True}).enable(
    ["linkify", "strikethrough"])


def _emoji_src_only(tag: str, attribute: str, value: str) -> str | None:
    # Images are allowed only when they are our emoji (no remote images in chat: 0.0.7 #756).
    if tag == "img" and attribute == "src" and not value.lower().startswith(EMOJI_PREFIX):
        return None
    return value


def _clean(text: str, tags: set[str], emoji_only_images: bool) -> str:
    return nh3.clean(text, tags=tags, attributes=CHAT_ATTRIBUTES,
                     url_schemes={"http", "https", "mailto"}, link_rel=LINK_REL,
                     set_tag_attribute_values={"a": {"target": "_blank"}},
                     attribute_filter=_emoji_src_only if emoji_only_images else None,
                     strip_comments=True).strip()


def emoji_map(entries: Iterable[dict]) -> dict[str, str]:
    """`/api/emoji` entries ({name, emoji}) as {name: url}."""
    return {e["name"]: e["emoji"] for e in entries}


def chat_html(text: str, emoji: dict[str, str] | None = None) -> str:
    """A chatter's message (Markdown subset, no HTML) to sanitised HTML."""
    rendered = _chat_md.render((text or "").strip(), {"emoji": emoji or {}})
    return _clean(rendered, CHAT_TAGS, emoji_only_images=True)


def system_html(text: str, emoji: dict[str, str] | None = None) -> str:
    """A system message (Markdown, HTML allowed) to sanitised HTML."""
    rendered = _system_md.render((text or "").strip(), {"emoji": emoji or {}})
    return _clean(rendered, SYSTEM_TAGS, emoji_only_images=False)
