"""Markdown to safe HTML for text that operators and chatters write.

markdown-it renders with raw HTML disabled (so HTML in the input comes out escaped) and nh3 (a
whitelist sanitiser) then removes anything a browser could execute that got through, such as
`javascript:` links. Links open in a new tab with rel="nofollow noreferrer noopener".
"""
from __future__ import annotations

import nh3
from markdown_it import MarkdownIt

_md = MarkdownIt("commonmark", {"html": False, "linkify": False, "breaks": True})

PAGE_TAGS = {
    "a", "p", "br", "strong", "em", "code", "pre", "blockquote", "ul", "ol", "li", "h1", "h2",
    "h3", "h4", "h5", "h6", "hr", "img",
}
PAGE_ATTRIBUTES = {"a": {"href", "title", "target"}, "img": {"src", "alt", "title"}}


def page_html(markdown: str) -> str:
    """Render the operator's page content (Markdown) to sanitised HTML."""
    html = _md.render(markdown or "")
    return nh3.clean(html, tags=PAGE_TAGS, attributes=PAGE_ATTRIBUTES,
                     url_schemes={"http", "https", "mailto"},
                     link_rel="nofollow noreferrer noopener",
                     set_tag_attribute_values={"a": {"target": "_blank"}}).strip()
