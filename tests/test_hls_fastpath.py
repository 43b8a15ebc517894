"""The web workers' fast path for playlists (api/fastpath.py): its answers are the Falcon
route's byte for byte, it shares keep-alive connections with the slow path (mixed and
pipelined requests), it leaves everything it does not handle to pywsgi (a malformed request
line still gets 400 and a closed connection), and it keeps the viewer counting and the S3
copies. The server is the workers' own (`EdgeServer` + `EdgeHandler`) on a real socket, in this
process under gevent, around the real app, so a spy can tell which path answered."""
import os
import re
import time

import gevent
import pytest
from gevent import socket

from conftest import in_process_app
from owncastd.api import fastpath
from owncastd.api.edge import EdgeHandler, EdgeServer
from owncastd.api.fastpath import parse_head

MASTER = b"#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1000000\n0/stream.m3u8\n"
MEDIA = b"#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXTINF:2.0,\nstream-1.ts\n"


def request(target: str, method: str = "GET", headers: str = "") -> bytes:
    return f"{method} {target} HTTP/1.1\r\nHost: x\r\n{headers}\r\n".encode()


# -- the request head parser (pure) -------------------------------------------------------------

def test_parse_head_takes_plain_playlist_requests():
    r = parse_head(request("/hls/0/stream.m3u8", headers="User-Agent: a b\r\n"), 32768)
    assert (r.method, r.path, r.rendition, r.params, r.user_agent) == \
        (b"GET", "0/stream.m3u8", "0", {}, "a b")
    r = parse_head(request("/hls/stream.m3u8?x=1", "HEAD") + b"GET /next", 32768)
    assert (r.method, r.path, r.rendition, r.params) == (b"HEAD", "stream.m3u8", None, {"x": "1"})
    assert r.length == len(request("/hls/stream.m3u8?x=1", "HEAD"))
    r = parse_head(request("/hls/12/stream.m3u8?_HLS_msn=3&_HLS_part=1",
                           headers="X-Forwarded-For: 10.0.0.1\r\nConnection: keep-alive\r\n"),
                   32768)
    assert r.params == {"_HLS_msn": "3", "_HLS_part": "1"} and r.forwarded_for == "10.0.0.1"
    for name in ("0/stream-17.ts", "3/abc0-p12.m4s", "0/init-abc0.mp4"):
        r = parse_head(request(f"/hls/{name}"), 32768)
        assert (r.path, r.rendition, r.params) == (name, None, {})


@pytest.mark.parametrize("head", [
    request("/hls/0/stream.m3u8")[:-2],                          # incomplete
    request("/hls/0/stream-delta.m3u8"),                         # not one of ours
    request("/hls/0/stream-1.ts?x=1"),
    request("/hls/stream-1.ts"),
    request("/hls/0/.stream-2.ts"),
    request("/hls/0/stream-1.ts.tmp"),
    request("/hls/0/index.html"),
    request("/hls/100/stream.m3u8"),
    request("/hls/0/stream.m3u8/"),
    request("/hls/%30/stream.m3u8"),                             # escapes: Falcon decodes
    request("/hls/0/stream.m3u8?a=%20"),
    request("/hls/0/stream.m3u8?a"),                             # odd queries
    request("/hls/0/stream.m3u8?a=1&a=2"),
    request("/hls/0/stream.m3u8?a=1&&b=2"),
    request("/hls/0/stream.m3u8", "POST"),
    request("/hls/0/stream.m3u8", "OPTIONS"),
    b"GET /hls/0/stream.m3u8 HTTP/1.0\r\nHost: x\r\n\r\n",
    b"GET  /hls/0/stream.m3u8 HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET /hls/0/stream.m3u8 HTTP/1.1\r\nHost: x\n\r\n\r\n",        # bare LF
    request("/hls/0/stream.m3u8", headers="Range: bytes=0-1\r\n"),
    request("/hls/0/stream.m3u8", headers="Content-Length: 0\r\n"),
    request("/hls/0/stream.m3u8", headers="Transfer-Encoding: chunked\r\n"),
    request("/hls/0/stream.m3u8", headers="Connection: close\r\n"),
    request("/hls/0/stream.m3u8", headers="Connection: Upgrade\r\nUpgrade: websocket\r\n"),
    request("/hls/0/stream.m3u8", headers="Expect: 100-continue\r\n"),
    request("/hls/0/stream.m3u8", headers="User-Agent: a\r\nUser-Agent: b\r\n"),
    request("/hls/0/stream.m3u8", headers="X-A: 1\r\n folded\r\n"),
    request("/hls/0/stream.m3u8", headers="no colon\r\n"),
    request("/hls/0/stream.m3u8", headers="Name : v\r\n"),
])
def test_parse_head_leaves_everything_else_to_the_slow_path(head):
    assert parse_head(head, 32768) is None


def test_parse_head_respects_the_header_limit():
    head = request("/hls/0/stream.m3u8", headers="X-Pad: " + "a" * 200 + "\r\n")
    assert parse_head(head, len(head)) is not None
    assert parse_head(head, len(head) - 1) is None


# -- the real handler, in process ---------------------------------------------------------------

class Served:
    """The app behind an EdgeServer on a free port, with a spy on the fast path."""

    def __init__(self, data_dir: str, overrides=None):
        _, self.config, _, self.app = in_process_app(data_dir, overrides, emoji=False)
        self.fast = self.app.hls_fast_path
        self.fast_answers = 0
        answer = self.fast.answer

        def spy(handler, max_header_bytes):
            answered = answer(handler, max_header_bytes)
            self.fast_answers += answered
            return answered

        self.fast.answer = spy
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        listener.listen(128)
        self.port = listener.getsockname()[1]
        self.server = EdgeServer(listener, application=self.app, handler_class=EdgeHandler,
                                 log=None)
        self.server.start()

    def connect(self, source: str = "127.0.0.1"):
        return Connection(socket.create_connection(("127.0.0.1", self.port),
                                                   source_address=(source, 0)))

    def stop(self):
        self.server.stop(timeout=1)
        self.config.store.close()


class Connection:
    def __init__(self, sock):
        self.sock = sock
        self.file = sock.makefile("rb")

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def response(self, head_only: bool = False) -> bytes:
        """One response, its Date header made constant (the seconds may tick in between)."""
        head = b""
        while not head.endswith(b"\r\n\r\n"):
            line = self.file.readline()
            assert line, f"connection closed after {head!r}"
            head += line
        m = re.search(rb"(?i)\r\ncontent-length: (\d+)\r\n", head)
        body = self.file.read(int(m.group(1))) if m and not head_only else b""
        return re.sub(rb"\r\nDate: [^\r]*\r\n", b"\r\nDate: -\r\n", head) + body

    def ask(self, data: bytes, head_only: bool = False) -> bytes:
        self.send(data)
        return self.response(head_only)

    def closed(self) -> bool:
        self.sock.settimeout(5)
        return self.file.read() == b""

    def close(self):
        self.file.close()
        self.sock.close()


def write_tree(data_dir: str) -> str:
    hls = os.path.join(data_dir, "hls")
    os.makedirs(os.path.join(hls, "0"))
    for path, data in (("stream.m3u8", MASTER), ("0/stream.m3u8", MEDIA),
                       ("0/stream-1.ts", os.urandom(5000)), ("0/big.ts", os.urandom(300_000)),
                       ("0/empty.ts", b""), ("0/init-ab12.mp4", os.urandom(800)),
                       ("0/ab12-p7.m4s", os.urandom(20_000))):
        with open(os.path.join(hls, path), "wb") as f:
            f.write(data)
    return hls


@pytest.fixture
def served(short_tmp):
    data_dir = os.path.join(short_tmp, "d")
    os.makedirs(data_dir)
    write_tree(data_dir)
    s = Served(data_dir)
    yield s
    s.stop()


@pytest.mark.parametrize("data,head_only", [
    (request("/hls/0/stream.m3u8"), False),
    (request("/hls/stream.m3u8"), False),
    (request("/hls/0/stream.m3u8", "HEAD"), True),
    (request("/hls/stream.m3u8?cachebust=1", headers="User-Agent: player/1.0\r\n"), False),
    (request("/hls/0/stream.m3u8", headers="Connection: keep-alive\r\n"), False),
    # an MPEG-TS playlist asked with blocking parameters: served as the file
    (request("/hls/0/stream.m3u8?_HLS_msn=1&_HLS_part=0"), False),
])
def test_answers_are_the_slow_paths_byte_for_byte(served, data, head_only):
    c = served.connect()
    slow = c.ask(data, head_only)            # the first request of a connection: pywsgi + Falcon
    assert served.fast_answers == 0
    fast = c.ask(data, head_only)
    assert served.fast_answers == 1
    assert fast == slow
    assert fast.startswith(b"HTTP/1.1 200 OK\r\n")
    c.close()


@pytest.mark.parametrize("name", ["stream-1.ts", "big.ts", "empty.ts", "init-ab12.mp4",
                                  "ab12-p7.m4s"])
@pytest.mark.parametrize("method", ["GET", "HEAD"])
def test_media_files_are_the_slow_paths_byte_for_byte(served, short_tmp, name, method):
    c = served.connect()
    slow = c.ask(request(f"/hls/0/{name}", method), method == "HEAD")
    fast = c.ask(request(f"/hls/0/{name}", method), method == "HEAD")
    assert served.fast_answers == 1
    assert fast == slow and fast.startswith(b"HTTP/1.1 200 OK\r\n")
    assert b"\r\ncache-control: public, max-age=31536000, immutable\r\n" in fast
    if method == "GET":
        with open(os.path.join(short_tmp, "d", "hls", "0", name), "rb") as f:
            assert fast.endswith(b"\r\n\r\n" + f.read())
    c.close()


def test_media_files_the_fast_path_leaves_alone(served, short_tmp):
    hls = os.path.join(short_tmp, "d", "hls", "0")
    with open(os.path.join(short_tmp, "secret.ts"), "wb") as f:
        f.write(b"outside")
    os.symlink(os.path.join(short_tmp, "secret.ts"), os.path.join(hls, "link.ts"))
    os.makedirs(os.path.join(hls, "dir.ts"))
    c = served.connect()
    c.ask(request("/hls/0/stream.m3u8"))
    for name in ("link.ts", "dir.ts", "missing.ts", "ab12-p8.m4s"):   # p8: neither there nor hinted
        answer = c.ask(request(f"/hls/0/{name}"))
        assert answer.startswith(b"HTTP/1.1 404 "), name
        assert b"outside" not in answer
    ranged = c.ask(request("/hls/0/big.ts", headers="Range: bytes=-5\r\n"))
    assert ranged.startswith(b"HTTP/1.1 206 ") and b"content-range: bytes 299995-299999/300000" \
        in ranged
    assert served.fast_answers == 0
    c.close()


def test_keep_alive_mixes_fast_and_slow_requests(served):
    c = served.connect()
    assert c.ask(request("/hls/0/stream.m3u8")).endswith(MEDIA)
    assert c.ask(request("/hls/0/stream.m3u8")).endswith(MEDIA)
    assert served.fast_answers == 1
    assert b'"online"' in c.ask(request("/api/status"))
    assert c.ask(request("/hls/stream.m3u8")).endswith(MASTER)
    assert served.fast_answers == 2
    segment = c.ask(request("/hls/0/stream-1.ts", headers="Range: bytes=0-9\r\n"))
    assert segment.startswith(b"HTTP/1.1 206 ") and b"content-range: bytes 0-9/5000" in segment
    missing = c.ask(request("/hls/7/stream.m3u8"))      # the fast path leaves 404s to Falcon
    assert missing.startswith(b"HTTP/1.1 404 ") and b'"success": false' in missing
    assert c.ask(request("/hls/0/stream.m3u8")).endswith(MEDIA)
    assert served.fast_answers == 3
    closing = c.ask(request("/hls/0/stream.m3u8", headers="Connection: close\r\n"))
    assert closing.endswith(MEDIA)
    assert c.closed()
    assert served.fast_answers == 3


def test_pipelined_requests_are_answered_in_order(served):
    c = served.connect()
    c.ask(request("/hls/0/stream.m3u8"))
    batch = [request("/hls/0/stream.m3u8"), request("/api/status"), request("/hls/stream.m3u8"),
             request("/hls/0/stream.m3u8", "HEAD"), request("/hls/9/stream.m3u8"),
             request("/hls/0/stream.m3u8")]
    c.send(b"".join(batch))
    answers = [c.response(head_only=(n == 3)) for n in range(len(batch))]
    assert answers[0].endswith(MEDIA)
    assert b'"online"' in answers[1]
    assert answers[2].endswith(MASTER)
    assert answers[3].startswith(b"HTTP/1.1 200 ") and not answers[3].endswith(MEDIA)
    assert answers[4].startswith(b"HTTP/1.1 404 ")
    assert answers[5].endswith(MEDIA)
    assert served.fast_answers == 4
    c.close()


def test_a_client_that_reads_slowly_gets_every_byte(served, short_tmp):
    big = b"#EXTM3U\n" + b"#EXT-X-COMMENT:" + os.urandom(30000).hex().encode() + b"\n"
    with open(os.path.join(short_tmp, "d", "hls", "0", "stream.m3u8"), "wb") as f:
        f.write(big)
    c = served.connect()
    c.ask(request("/hls/0/stream.m3u8"))
    c.send(request("/hls/0/stream.m3u8") * 200)   # ~12 MB of answers: the socket fills up
    gevent.sleep(0.5)
    for _ in range(200):
        assert c.response().endswith(big)
    gevent.sleep(0.1)   # the last answer's greenlet resumes after its bytes were read
    # a request cut in two by the end of the handler's read buffer (8 KiB) goes the slow way
    assert 190 <= served.fast_answers <= 200
    c.close()


@pytest.mark.parametrize("bad", [b"GET /hls/0/stream.m3u8 HTTP/1.1 extra\r\n\r\n",
                                 b"GET /hls/0/stream.m3u8 HTTQ/1.1\r\n\r\n",
                                 b"\x16\x03\x01\x02\x00\x01\x00\r\n\r\n"])
def test_malformed_request_after_fast_ones_is_400_and_closed(served, bad):
    c = served.connect()
    c.ask(request("/hls/0/stream.m3u8"))
    c.ask(request("/hls/0/stream.m3u8"))
    assert served.fast_answers == 1
    answer = c.ask(bad)
    assert answer.startswith(b"HTTP/1.1 400 Bad Request\r\n")
    assert c.closed()


def test_a_failing_fast_path_ends_only_its_connection(served):
    c = served.connect()
    c.ask(request("/hls/0/stream.m3u8"))

    def broken(path):
        raise RuntimeError("a bug")

    working, served.fast.cache.get = served.fast.cache.get, broken
    c.send(request("/hls/0/stream.m3u8"))
    assert c.closed()
    served.fast.cache.get = working
    other = served.connect()
    other.ask(request("/hls/0/stream.m3u8"))
    assert other.ask(request("/hls/0/stream.m3u8")).endswith(MEDIA)


def test_a_playlist_renamed_into_place_is_served_at_once(served, short_tmp):
    hls = os.path.join(short_tmp, "d", "hls", "0")
    c = served.connect()
    c.ask(request("/hls/0/stream.m3u8"))
    assert c.ask(request("/hls/0/stream.m3u8")).endswith(MEDIA)
    for n in range(2, 6):   # same size each time: the inode tells them apart
        newer = MEDIA.replace(b"stream-1.ts", f"stream-{n}.ts".encode())
        with open(os.path.join(hls, ".tmp"), "wb") as f:
            f.write(newer)
        os.rename(os.path.join(hls, ".tmp"), os.path.join(hls, "stream.m3u8"))
        assert c.ask(request("/hls/0/stream.m3u8")).endswith(newer)
    os.unlink(os.path.join(hls, "stream.m3u8"))
    assert c.ask(request("/hls/0/stream.m3u8")).startswith(b"HTTP/1.1 404 ")
    assert served.fast_answers == 5


def test_symlinked_or_large_playlists_are_left_to_the_slow_path(served, short_tmp):
    hls = os.path.join(short_tmp, "d", "hls")
    with open(os.path.join(short_tmp, "secret"), "wb") as f:
        f.write(b"outside")
    os.symlink(os.path.join(short_tmp, "secret"), os.path.join(hls, "1"))   # a directory link
    os.makedirs(os.path.join(hls, "2"))
    os.symlink(os.path.join(short_tmp, "secret"), os.path.join(hls, "2", "stream.m3u8"))
    os.makedirs(os.path.join(hls, "3"))
    big = b"#EXTM3U\n" + b"#" * (fastpath.SMALL_FILE + 1)
    with open(os.path.join(hls, "3", "stream.m3u8"), "wb") as f:
        f.write(big)
    c = served.connect()
    c.ask(request("/hls/0/stream.m3u8"))
    assert c.ask(request("/hls/2/stream.m3u8")).startswith(b"HTTP/1.1 404 ")
    assert c.ask(request("/hls/3/stream.m3u8")).endswith(big)
    assert served.fast_answers == 0


def test_viewers_are_counted_with_the_forwarded_address(short_tmp):
    data_dir = os.path.join(short_tmp, "d")
    os.makedirs(data_dir)
    write_tree(data_dir)
    s = Served(data_dir, {"http.trusted_proxies": ["127.0.0.2/32"]})
    try:
        s.config.store.set_state("online", True)
        proxied = s.connect("127.0.0.2")
        direct = s.connect("127.0.0.1")
        for c in (proxied, direct):
            c.ask(request("/hls/0/stream.m3u8"))   # slow
        for c in (proxied, direct):
            c.ask(request("/hls/0/stream.m3u8", headers="User-Agent: fastplayer\r\n"
                          "X-Forwarded-For: 203.0.113.9, 127.0.0.2\r\n"))
        assert s.fast_answers == 2
        seen = {(v["ip_address"], v["user_agent"])
                for v in s.config.store.current_viewers(time.time() - 10)}
        # from the trusted proxy: the client it names; directly: the peer (the header is a lie)
        assert ("203.0.113.9", "fastplayer") in seen
        assert ("127.0.0.1", "fastplayer") in seen
    finally:
        s.stop()


def test_fresh_s3_copies_are_served_as_by_the_slow_path(served, short_tmp):
    overlay = os.path.join(short_tmp, "d", "hls-s3", "0")
    os.makedirs(overlay)
    remote = b"#EXTM3U\n#EXTINF:2.0,\nhttps://cdn.example/0/stream-1.ts\n"
    with open(os.path.join(overlay, "stream.m3u8"), "wb") as f:
        f.write(remote)
    gevent.sleep(1.1)   # the overlay directory's existence is looked at once a second
    c = served.connect()
    slow = c.ask(request("/hls/0/stream.m3u8"))
    fast = c.ask(request("/hls/0/stream.m3u8"))
    assert served.fast_answers == 1
    assert fast == slow and fast.endswith(remote)
    stale = time.time() - 60   # older than the local playlist by more than 10 s: local again
    os.utime(os.path.join(overlay, "stream.m3u8"), (stale, stale))
    assert c.ask(request("/hls/0/stream.m3u8")).endswith(MEDIA)
    assert served.fast_answers == 2


# -- LL-HLS: blocking reloads and delta updates ------------------------------------------------

@pytest.fixture(scope="module")
def ll_media(tmp_path_factory):
    from test_llhls_package import make_fmp4
    return make_fmp4(str(tmp_path_factory.mktemp("m") / "a.mp4"), "160x120", seconds=5)


def package(data_dir: str, media: bytes, share: float):
    """An LL-HLS rendition 0 under data_dir/hls made of the first `share` of `media`'s
    fragments (no bus)."""
    from owncastd.llhls.bmff import FragmentReader
    from owncastd.llhls.feed import FMP4Feeder
    from owncastd.llhls.packager import Packager
    packager = Packager(os.path.join(data_dir, "hls"), [{"video_bitrate": 500}],
                        segment_seconds=1, notify=lambda topic, payload: None)
    events = FragmentReader().feed(media)
    feeder = FMP4Feeder(packager.rendition(0))
    feeder.feed(events[0][1])
    fragments = events[1:]
    for _, fragment in fragments[:int(len(fragments) * share)]:
        feeder.feed(fragment.data)
    return packager


@pytest.fixture
def ll_served(short_tmp, ll_media):
    from owncastd.llhls.playlist import parse_position
    data_dir = os.path.join(short_tmp, "d")
    os.makedirs(data_dir)
    package(data_dir, ll_media, 0.7)
    with open(os.path.join(data_dir, "hls", "0", "stream.m3u8")) as f:
        position = parse_position(f.read())
    s = Served(data_dir)
    yield s, position
    s.stop()


def test_blocking_reload_answers_are_the_slow_paths(ll_served):
    s, (msn, part, complete) = ll_served
    for query in (f"_HLS_msn={msn}&_HLS_part={part}", f"_HLS_msn={complete}",
                  f"_HLS_msn={msn}&_HLS_part={part}&_HLS_skip=YES", "_HLS_skip=v2",
                  f"_HLS_msn={msn - 1}&_HLS_part=0&other=1"):
        c = s.connect()
        before = s.fast_answers
        slow = c.ask(request(f"/hls/0/stream.m3u8?{query}"))
        fast = c.ask(request(f"/hls/0/stream.m3u8?{query}"))
        assert s.fast_answers == before + 1, query
        assert fast == slow, query
        assert fast.startswith(b"HTTP/1.1 200 OK\r\n") and b"#EXT-X-PART:" in fast, query
        expected = b"no-cache" if query.startswith("_HLS_skip") else b"public, max-age=1"
        assert b"\r\ncache-control: " + expected + b"\r\n" in fast, query
        assert (b"#EXT-X-SKIP:" in fast) == ("skip" in query), query
        c.close()


def test_bad_blocking_requests_get_the_slow_paths_400(ll_served):
    s, (msn, part, _) = ll_served
    c = s.connect()
    c.ask(request("/hls/0/stream.m3u8"))
    for query in (f"_HLS_msn={msn + 3}", f"_HLS_msn={msn}&_HLS_part={part + 4}", "_HLS_part=1",
                  "_HLS_msn=x", "_HLS_msn=", f"_HLS_msn={msn}&_HLS_skip=MAYBE"):
        answer = c.ask(request(f"/hls/0/stream.m3u8?{query}"))
        assert answer.startswith(b"HTTP/1.1 400 "), query
        assert b'"success": false' in answer, query
    assert s.fast_answers == 0
    assert c.ask(request("/hls/0/stream.m3u8")).startswith(b"HTTP/1.1 200 ")   # still open
    assert s.fast_answers == 1


def test_a_blocking_reload_that_times_out_is_the_slow_paths_503(ll_served):
    s, (msn, part, _) = ll_served
    c = s.connect()
    ahead = request(f"/hls/0/stream.m3u8?_HLS_msn={msn}&_HLS_part={part + 1}")
    began = time.monotonic()
    slow = c.ask(ahead)                  # nothing is being produced: 3 x TARGETDURATION (1 s)
    middle = time.monotonic()
    fast = c.ask(ahead)
    assert s.fast_answers == 1
    assert 2.9 < middle - began < 6 and 2.9 < time.monotonic() - middle < 6
    assert fast == slow and fast.startswith(b"HTTP/1.1 503 Service Unavailable\r\n")
    assert b'"success": false' in fast


def test_blocking_reload_on_a_kept_alive_connection_wakes_with_the_part(ll_media):
    """In the real daemon: the reload waits in the fast path (the second request of its
    connection) and is answered within 100 ms of the part's bus notification."""
    import socket as std_socket
    import threading

    from conftest import temporary_daemon
    from test_llhls_serving import Producer
    with temporary_daemon() as d:
        producer = Producer(d, ll_media)
        try:
            producer.until_part()
            time.sleep(0.5)   # the workers' bus subscriptions are up long before; margin
            c = Connection(std_socket.create_connection(("127.0.0.1", d.web_port), timeout=20))
            first = c.ask(request("/hls/0/stream.m3u8"))
            assert first.startswith(b"HTTP/1.1 200 ")
            for _ in range(3):
                msn, part = producer.until_part()
                result = {}

                def ask():
                    result["r"] = c.ask(request(
                        f"/hls/0/stream.m3u8?_HLS_msn={msn}&_HLS_part={part + 1}"))
                    result["at"] = time.monotonic()

                t = threading.Thread(target=ask)
                t.start()
                time.sleep(0.4)
                assert "r" not in result, "answered before the part existed"
                got = producer.until_part()
                t.join(10)
                assert result["r"].startswith(b"HTTP/1.1 200 OK\r\n")
                assert b"\r\ncache-control: public, max-age=1\r\n" in result["r"]
                late = result["at"] - producer.written[got]
                assert late < 0.1, f"answered {late:.3f} s late"
                # the same question on a new connection (the slow path), now answered at once
                with std_socket.create_connection(("127.0.0.1", d.web_port), timeout=20) as s:
                    slow = Connection(s).ask(request(
                        f"/hls/0/stream.m3u8?_HLS_msn={msn}&_HLS_part={part + 1}"))
                assert slow == result["r"]
            c.close()
        finally:
            producer.close()
