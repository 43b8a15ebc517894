"""Record what an RTMP publisher sends, driving owncastd's ServerSession.

Usage: python tests/corpus/rtmp/capture.py OUTPUT_FILE [--port N] [--simple]
Prints "PORT <n>" once listening on 127.0.0.1, serves exactly one connection,
writes every byte received from the client to OUTPUT_FILE and a summary of the
events to stdout. Used to (re)build the seed corpus in this folder.
"""
import argparse
import socket
import sys

from owncastd.ingest.rtmp import session as s


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("output")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--simple", action="store_true", help="simple handshake only")
    ap.add_argument("--timeout", type=float, default=30.0)
    args = ap.parse_args()

    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", args.port))
    srv.listen(1)
    srv.settimeout(args.timeout)
    print("PORT", srv.getsockname()[1], flush=True)
    conn, _ = srv.accept()
    conn.settimeout(args.timeout)
    sess = s.ServerSession(handshake_mode="simple" if args.simple else "auto")
    recorded = bytearray()
    counts = {}
    try:
        while True:
            try:
                data = conn.recv(65536)
            except socket.timeout:
                break
            if not data:
                break
            recorded += data
            events = sess.feed(data)
            while events:
                ev = events.pop(0)
                name = type(ev).__name__
                counts[name] = counts.get(name, 0) + 1
                if isinstance(ev, s.PublishRequested):
                    events += sess.accept_publish()
                if not isinstance(ev, (s.AudioData, s.VideoData)):
                    print("EVENT", repr(ev)[:200], flush=True)
            out = sess.data_to_send()
            if out:
                conn.sendall(out)
    finally:
        conn.close()
        srv.close()
        with open(args.output, "wb") as f:
            f.write(recorded)
    print("COUNTS", counts, "digest handshake:", sess.handshake_digest, flush=True)
    print("BYTES", len(recorded), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
