"""The operator's Markdown (page content, instance summary) to safe HTML (D26).

The admin is trusted but the output is shown to every viewer, so it must stay inert: Markdown is
rendered by markdown-it with raw HTML allowed (as Owncast 0.0.7's goldmark did), then nh3 (an
allow-list sanitiser) keeps only structure and formatting, links (http, https, mailto; opened in
a new tab with rel="nofollow noreferrer noopener"), images (http, https or relative) and iframes
whose `src` is an https URL on one of EMBED_HOSTS (video/audio players). Everything else goes:
scripts, styles, forms, event handlers, `javascript:`/`data:` URLs, other iframes.
"""
from __future__ import annotations

import re
from urllib.parse import urlsplit

import nh3
from markdown_it import MarkdownIt

_md = MarkdownIt("commonmark", {"html": True, "linkify": True, "breaks": False}).enable(
    ["linkify", "strikethrough", "table"])

# Hosts whose players an operator may embed in an iframe (https only). The web page's CSP
# allows exactly these as frame sources (api/webui.py).
EMBED_HOSTS = (
    "www.youtube.com", "youtube.com", "www.youtube-nocookie.com", "youtube-nocookie.com",
    "player.vimeo.com", "player.twitch.tv", "clips.twitch.tv", "open.spotify.com",
    "w.soundcloud.com", "bandcamp.com", "embed.music.apple.com", "www.dailymotion.com",
    "player.bilibili.com", "archive.org",
)

PAGE_TAGS = {
    "a", "p", "br", "hr", "strong", "em", "b", "i", "u", "s", "del", "ins", "mark", "small",
    "sub", "sup", "code", "kbd", "pre", "blockquote", "ul", "ol", "li", "dl", "dt", "dd",
    "h1", "h2", "h3", "h4", "h5", "h6", "img", "table", "thead", "tbody", "tr", "th", "td",
    "div", "span", "figure", "figcaption", "iframe",
}
PAGE_ATTRIBUTES = {
    "a": {"href", "title", "target"},
    "img": {"src", "alt", "title", "width", "height"},
    "iframe": {"src", "title", "width", "height", "allow", "allowfullscreen"},
    "ol": {"start"},
    "th": {"colspan", "rowspan"},
    "td": {"colspan", "rowspan"},
}
# Permissions an embedded player may ask for (the `allow` attribute); others are dropped, so an
# embed can never get the camera, microphone, location, payment, ...
IFRAME_PERMISSIONS = {"autoplay", "encrypted-media", "fullscreen", "picture-in-picture",
                      "clipboard-write", "accelerometer", "gyroscope", "web-share"}
_SIZE = re.compile(r"^[0-9]{1,4}%?$")
# An <iframe> element in nh3's output (attribute values always double-quoted, `"` escaped).
_IFRAME = re.compile(r'<iframe((?:\s+[^\s"\'>/=]+(?:="[^"]*")?)*)\s*>.*?</iframe>', re.S)


def embed_allowed(url: str) -> bool:
    """Whether `url` is an https player URL on an allow-listed host."""
    try:
        parts = urlsplit(url.strip())
        host = (parts.hostname or "").lower()
    except ValueError:
        return False
    return parts.scheme == "https" and host in EMBED_HOSTS and not parts.username \
        and not parts.password and parts.port in (None, 443)


def _filter(tag: str, attribute: str, value: str) -> str | None:
    if tag == "iframe":
        if attribute == "src":
            return value if embed_allowed(value) else None
        if attribute == "allow":
            wanted = [p.strip() for p in value.split(";")]
            kept = [p for p in wanted if p.split(" ")[0] in IFRAME_PERMISSIONS]
            return "; ".join(kept) or None
        if attribute == "allowfullscreen":
            return ""
    if attribute in ("width", "height") and not _SIZE.match(value.strip()):
        return None
    if attribute in ("start", "colspan", "rowspan") and not value.strip().isdigit():
        return None
    return value


def _drop_unsourced_iframes(html: str) -> str:
    # nh3 can drop an attribute but not the element: an iframe left without a src (its URL was
    # not allowed) would be an empty box, so it goes entirely.
    return _IFRAME.sub(lambda m: m.group(0) if re.search(r'\ssrc="', m.group(1)) else "", html)


def page_html(markdown: str) -> str:
    """Render the operator's Markdown (raw HTML allowed) to sanitised HTML."""
    html = _md.render(markdown or "")
    cleaned = nh3.clean(html, tags=PAGE_TAGS, attributes=PAGE_ATTRIBUTES,
                        attribute_filter=_filter, clean_content_tags={"script", "style"},
                        url_schemes={"http", "https", "mailto"},
                        link_rel="nofollow noreferrer noopener",
                        set_tag_attribute_values={"a": {"target": "_blank"}},
                        strip_comments=True)
    return _drop_unsourced_iframes(cleaned).strip()
