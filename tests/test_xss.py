"""XSS corpus (tests/corpus/xss.txt) through the chat renderer (chat and system messages) and
the page-content renderer: the output must be inert.

The output is parsed with a real HTML5 parser (html5lib, what browsers do) inside a container
followed by a sentinel element, and must have: only harmless formatting elements (no script,
iframe, object, embed, style, svg, math, form, ...), only harmless attributes (no `on*`, no
style, no srcdoc/formaction/xlink:href), link and image URLs that are relative or http, https
(and mailto for links) once the browser's own URL clean-up (control characters, tabs and
newlines removed) is applied, chat images only from /img/emoji/, `rel=noopener` on every
`target=_blank` link, and nothing that escapes the container (the sentinel stays its sibling).
"""
from __future__ import annotations

import pathlib
import re
import html5lib
import pytest

from owncastd.chat.render import chat_html, system_html
from owncastd.markup import page_html

CORPUS = pathlib.Path(__file__).parent / "corpus" / "xss.txt"
_ESCAPE = re.compile(r"\\(n|t|u[0-9A-Fa-f]{4}|x[0-9A-Fa-f]{2})")


def _unescape(line: str) -> str:
    def one(m):
        code = m.group(1)
        return {"n": "\n", "t": "\t"}.get(code) or chr(int(code[1:], 16))
    return _ESCAPE.sub(one, line)


PAYLOADS = [_unescape(line) for line in CORPUS.read_text(encoding="utf-8").splitlines()
            if line.strip() and not line.startswith("#|")]

# Emoji as `/api/emoji` lists them, one with a src that tries to break out of its attribute.
EMOJI = {"ok": "/img/emoji/ok.png", "bad": '/img/emoji/x.png" onerror="alert(1)'}

SAFE_ELEMENTS = {"a", "p", "br", "strong", "em", "b", "i", "u", "s", "del", "code", "pre", "img",
                 "span", "div", "blockquote", "ul", "ol", "li", "hr",
                 "h1", "h2", "h3", "h4", "h5", "h6"}
SAFE_ATTRIBUTES = {"href", "src", "alt", "title", "target", "rel", "class"}
LINK_SCHEMES = {"http", "https", "mailto"}
IMAGE_SCHEMES = {"http", "https"}
SENTINEL = "xss-sentinel"


def browser_url(value: str) -> str:
    """What a browser's URL parser looks at: leading/trailing C0 controls and spaces stripped,
    tabs and newlines removed anywhere (WHATWG URL)."""
    value = value.strip("".join(chr(c) for c in range(0x21)))
    return re.sub(r"[\t\n\r]", "", value)


def url_problem(value: str, schemes: set[str]) -> str | None:
    """None when a browser would load `value` as relative or with an allowed scheme. A
    browser's scheme is ASCII letters, digits, + - . before the first colon (WHATWG URL);
    anything else before a colon makes the whole value a relative path, which is harmless."""
    scheme = re.match(r"([A-Za-z][A-Za-z0-9+.\-]*):", browser_url(value))
    if scheme and scheme.group(1).lower() not in schemes:
        return f"URL {value!r} has scheme {scheme.group(1)!r}"
    return None


def inert_problems(output: str, chat: bool) -> list[str]:
    doc = html5lib.parse(f'<!DOCTYPE html><html><head></head><body><div id="container">{output}'
                         f'</div><p id="{SENTINEL}">end</p></body></html>',
                         namespaceHTMLElements=False)
    problems = []
    body = doc.find("body")
    if [c.tag for c in body] != ["div", "p"] or body[1].get("id") != SENTINEL \
            or body[0].get("id") != "container":
        problems.append(f"output escapes its container: body has {[c.tag for c in body]}")
    if doc.find("head") is not None and len(doc.find("head")):
        problems.append("output put elements into <head>")
    for el in body[0].iter():
        if el is body[0]:
            continue
        tag = el.tag if isinstance(el.tag, str) else "<comment>"
        if tag == "<comment>":
            continue  # a comment node is inert
        if "}" in tag or tag not in SAFE_ELEMENTS:
            problems.append(f"element <{tag}>")
        for name, value in el.attrib.items():
            if name.lower().startswith("on") or name not in SAFE_ATTRIBUTES:
                problems.append(f"attribute {name}={value!r} on <{tag}>")
        if tag == "a" and el.get("href") is not None:
            problem = url_problem(el.get("href"), LINK_SCHEMES)
            if problem:
                problems.append(problem)
        if tag == "a" and el.get("target") == "_blank" and "noopener" not in el.get("rel", ""):
            problems.append("target=_blank link without rel=noopener")
        if tag == "img":
            src = el.get("src") or ""
            problem = url_problem(src, IMAGE_SCHEMES)
            if problem:
                problems.append(problem)
            if chat and src and not browser_url(src).startswith("/img/emoji/"):
                problems.append(f"chat image from {src!r}, not our emoji")
    return problems


RENDERERS = {
    "chat": (lambda text: chat_html(text, EMOJI), True),
    "system": (lambda text: system_html(text, EMOJI), False),
    "page": (page_html, False),
}


def test_corpus_is_substantial():
    assert len(PAYLOADS) >= 100
    kinds = ["<script", "onerror", "javascript:", "data:", "<svg", "<math", "style", "\u202e"]
    for kind in kinds:
        assert any(kind in p.lower() for p in PAYLOADS), kind


@pytest.mark.parametrize("renderer", RENDERERS)
def test_corpus_comes_out_inert(renderer):
    render, chat = RENDERERS[renderer]
    failures = {}
    for payload in PAYLOADS:
        problems = inert_problems(render(payload), chat)
        if problems:
            failures[payload] = (render(payload), problems)
    assert not failures, "\n".join(f"{p!r}\n  -> {out!r}\n  {probs}"
                                   for p, (out, probs) in failures.items())


@pytest.mark.parametrize("renderer", RENDERERS)
def test_the_checker_catches_live_markup(renderer):
    """The checks above fail for what an unsafe renderer would emit (so passing means something)."""
    _, chat = RENDERERS[renderer]
    for live in ['<script>alert(1)</script>', '<img src=x onerror=alert(1)>',
                 '<a href="java\tscript:alert(1)">x</a>', '<a href="javascript&colon;x">x</a>',
                 '<svg><a>x</a></svg>', '</div><p>out</p><div>', '<p style="color:red">x</p>',
                 '<iframe src="https://ok.example"></iframe>',
                 '<img src="data:image/png;base64,AA">', '<a href="x" target="_blank">x</a>']:
        assert inert_problems(live, chat), live
    assert inert_problems('<img src="https://ok.example/a.png">', chat=True)
    assert not inert_problems('<p><a href="https://ok.example" target="_blank" '
                              'rel="noopener">x</a> <img src="/img/emoji/ok.png"></p>', chat=True)


def test_emoji_and_links_still_render():
    """Inert does not mean empty: the renderers still produce what they are for."""
    out = chat_html("hi :ok: **bold** https://ok.example", EMOJI)
    assert '<img src="/img/emoji/ok.png"' in out and "<strong>bold</strong>" in out
    assert 'href="https://ok.example"' in out
    assert "<h1>Title</h1>" in page_html("# Title")
