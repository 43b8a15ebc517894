"""/hls serving in the real daemon: types, cache headers, CORS, ranges, HEAD, 404s, traversal,
and that segment bodies go out with sendfile (not copied through Python)."""
import os
import shutil
import socket
import subprocess

import pytest
import requests

from owncastd.api.files import UNSATISFIABLE, parse_range

MASTER = "#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1000000\n0/stream.m3u8\n"
MEDIA = "#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXTINF:2.0,\nstream-1.ts\n"


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """One daemon for the module, with a fake HLS tree (the transcoder is idle)."""
    import tempfile
    from conftest import Daemon
    root = tempfile.mkdtemp(prefix="oc-")
    d = Daemon(os.path.join(root, "d"))
    os.makedirs(os.path.join(d.data_dir, "hls", "0"))
    d.start()
    hls = os.path.join(d.data_dir, "hls")
    body = os.urandom(3_000_000)
    with open(os.path.join(hls, "stream.m3u8"), "w") as f:
        f.write(MASTER)
    with open(os.path.join(hls, "0", "stream.m3u8"), "w") as f:
        f.write(MEDIA)
    with open(os.path.join(hls, "0", "stream-1.ts"), "wb") as f:
        f.write(body)
    with open(os.path.join(hls, "0", ".stream-2.ts.tmp"), "wb") as f:
        f.write(b"partial")
    with open(os.path.join(d.data_dir, "secret.txt"), "w") as f:
        f.write("outside")
    os.symlink(os.path.join(d.data_dir, "secret.txt"), os.path.join(hls, "0", "link.ts"))
    yield d, body
    try:
        d.stop()
    finally:
        d.kill_everything()
        shutil.rmtree(root, ignore_errors=True)


def test_playlists_have_type_no_cache_and_cors(served):
    d, _ = served
    for path in ("/hls/stream.m3u8", "/hls/0/stream.m3u8"):
        r = d.get(path)
        assert r.status_code == 200
        assert r.headers["content-type"] == "application/vnd.apple.mpegurl"
        assert r.headers["cache-control"] == "no-cache"
        assert r.headers["access-control-allow-origin"] == "*"
    assert d.get("/hls/stream.m3u8").text == MASTER


def test_segment_is_immutable_and_complete(served):
    d, body = served
    r = d.get("/hls/0/stream-1.ts")
    assert r.status_code == 200
    assert r.headers["content-type"] == "video/mp2t"
    assert "immutable" in r.headers["cache-control"] and "max-age=31536000" in r.headers["cache-control"]
    assert r.headers["accept-ranges"] == "bytes"
    assert r.headers["access-control-allow-origin"] == "*"
    assert int(r.headers["content-length"]) == len(body)
    assert r.content == body


def test_range_requests(served):
    d, body = served
    r = d.get("/hls/0/stream-1.ts", headers={"Range": "bytes=100-199"})
    assert r.status_code == 206
    assert r.headers["content-range"] == f"bytes 100-199/{len(body)}"
    assert r.content == body[100:200]
    r = d.get("/hls/0/stream-1.ts", headers={"Range": "bytes=-10"})
    assert r.status_code == 206 and r.content == body[-10:]
    r = d.get("/hls/0/stream-1.ts", headers={"Range": f"bytes={len(body) - 5}-"})
    assert r.status_code == 206 and r.content == body[-5:]
    r = d.get("/hls/0/stream-1.ts", headers={"Range": f"bytes={len(body)}-"})
    assert r.status_code == 416
    assert r.headers["content-range"] == f"bytes */{len(body)}"
    # Not a single bytes range: the whole file, as RFC 9110 allows.
    r = d.get("/hls/0/stream-1.ts", headers={"Range": "bytes=0-1,5-6"})
    assert r.status_code == 200 and r.content == body


def test_head_has_headers_and_no_body(served):
    d, body = served
    r = requests.head(d.url + "/hls/0/stream-1.ts", timeout=5)
    assert r.status_code == 200
    assert int(r.headers["content-length"]) == len(body)
    assert r.content == b""


def test_missing_temp_and_outside_files_are_404(served):
    d, _ = served
    for path in ("/hls/0/stream-999.ts", "/hls/7/stream.m3u8", "/hls/0/.stream-2.ts.tmp",
                 "/hls/0/link.ts", "/hls/0", "/hls/"):
        r = d.get(path)
        assert r.status_code == 404, path
        assert r.json()["success"] is False


def raw_get(d, target: str) -> bytes:
    """Send the request line exactly as given (no client-side normalisation of ..)."""
    with socket.create_connection(("127.0.0.1", d.web_port), timeout=5) as s:
        s.sendall(f"GET {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    return data


@pytest.mark.parametrize("target", [
    "/hls/../secret.txt", "/hls/0/../../secret.txt", "/hls/%2e%2e/secret.txt",
    "/hls/..%2fsecret.txt", "/hls/0/%2e%2e/%2e%2e/owncast.db", "/hls//etc/passwd",
    "/hls/%2fetc%2fpasswd", "/hls/0/..%5c..%5csecret.txt",
])
def test_traversal_is_impossible(served, target):
    d, _ = served
    response = raw_get(d, target)
    status = response.split(b"\r\n", 1)[0]
    assert b" 200 " not in status, (target, status)
    assert b"outside" not in response and b"root:" not in response and b"SQLite" not in response


def test_parse_range():
    assert parse_range("bytes=0-9", 100) == (0, 9)
    assert parse_range("bytes=90-200", 100) == (90, 99)
    assert parse_range("bytes=-20", 100) == (80, 99)
    assert parse_range("bytes=-200", 100) == (0, 99)
    assert parse_range("bytes=100-", 100) is UNSATISFIABLE
    assert parse_range("bytes=5-1", 100) is None
    assert parse_range("items=0-1", 100) is None
    assert parse_range("bytes=a-b", 100) is None
    assert parse_range("bytes=0-1,3-4", 100) is None


@pytest.mark.skipif(shutil.which("strace") is None, reason="strace not installed")
def test_segment_body_goes_out_with_sendfile(served):
    d, body = served
    workers = [p for p in d.tree() if "owncastd.web" in p.cmdline()]  # master and workers
    assert workers, "no API workers found"
    traces = []
    for w in workers:
        out = os.path.join(d.data_dir, f"strace-{w.pid}.txt")
        traces.append((out, subprocess.Popen(
            ["strace", "-f", "-e", "trace=sendfile", "-o", out, "-p", str(w.pid)],
            stdout=subprocess.DEVNULL, stderr=open(out + ".err", "w"))))
    try:
        import time
        time.sleep(1.0)  # strace attaches asynchronously
        for _ in range(4):  # reach both workers
            assert d.get("/hls/0/stream-1.ts").content == body
    finally:
        for _, p in traces:
            p.terminate()
            p.wait(timeout=10)
    text = "".join(open(out).read() for out, _ in traces if os.path.exists(out))
    if "Operation not permitted" in text or not text.strip():
        pytest.skip("ptrace not permitted here")
    assert "sendfile(" in text


def test_request_header_parser_matches_http_semantics():
    import io

    from owncastd.api.sendfile import RequestHeaders
    raw = (b"Host: x\r\nContent-Type: text/plain\r\nX-Folded: a\r\n b\r\n"
           b"Content-Length: 3\r\nnot a header\r\n\r\nrest")
    fp = io.BytesIO(raw)
    h = RequestHeaders.read(fp)
    assert h.status == "" and fp.read() == b"rest"
    assert h.get("content-type") == h.typeheader == "text/plain"
    assert h.getheader("CONTENT-LENGTH") == "3" and "host" in h
    assert h.get("x-folded") == "a b" and h.get("missing", "d") == "d"
    del h["content-length"]
    assert h.get("content-length") is None
    assert h.headers == ["Host: x\r\n", "Content-Type: text/plain\r\n", "X-Folded: a b\r\n"]
    assert RequestHeaders.read(io.BytesIO(b"A: " + b"x" * 70000 + b"\r\n\r\n")).status == "Line too long"
    many = b"".join(b"H%d: v\r\n" % i for i in range(150)) + b"\r\n"
    assert RequestHeaders.read(io.BytesIO(many)).status == "Too many headers"
