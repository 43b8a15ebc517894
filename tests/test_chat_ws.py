"""Chat over the `/entry` websocket against the real daemon (2 API workers): fan-out across
workers, limits and ERROR replies, moderation live, clients list, a killed worker."""
import json
import signal
import threading

import psutil
import pytest

from chat_helpers import (clients_on_every_worker, connect, db_rows, named_client, recv_json,
                          recv_until, send)
from conftest import config_file, temporary_daemon, wait_until

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def chat_daemon():
    with temporary_daemon() as d:
        yield d


def is_chat(body_text):
    return lambda e: e.get("type") == "CHAT" and body_text in e.get("body", "")


def test_every_client_on_every_worker_gets_every_message(chat_daemon):
    clients = clients_on_every_worker(chat_daemon, per_worker=2)
    try:
        for i, (ws, name, _) in enumerate(clients):
            send(ws, type="CHAT", author=name, body=f"hello {i} from **{name}** :smile:")
        for ws, _, _ in clients:
            got = []
            while len(got) < len(clients):
                event = recv_json(ws)
                if event["type"] == "CHAT":
                    got.append(event)
            assert sorted(e["author"] for e in got) == sorted(n for _, n, _ in clients)
            for e in got:
                assert set(e) >= {"id", "type", "author", "body", "visible", "timestamp"}
                assert e["visible"] is True and "rawBody" not in e and "clientId" not in e
                assert "<strong>" in e["body"] and 'src="/img/emoji/smile.svg"' in e["body"]
        history = chat_daemon.get("/api/chat").json()
        for _, name, _ in clients:
            assert any(m.get("author") == name for m in history)
    finally:
        for ws, _, _ in clients:
            ws.close()


def test_refused_frames_get_an_error_to_the_sender_only(chat_daemon):
    (a, name_a, _), (b, _, _) = named_client(chat_daemon), named_client(chat_daemon)
    try:
        cases = [
            ("not json at all", "not valid JSON"),
            (json.dumps({"type": 42}), "'type'"),
            (json.dumps({"type": "CHAT", "author": name_a, "body": "x" * 501}),
             "501 characters long; the limit is 500"),
            (json.dumps({"type": "CHAT", "author": name_a}), "'body'"),
            (json.dumps({"type": "NAME_CHANGE", "oldName": name_a}), "newName"),
        ]
        for frame, why in cases:
            a.send(frame)
            error = recv_until(a, lambda e: e["type"] in ("ERROR", "CHAT", "NAME_CHANGE"))
            assert error["type"] == "ERROR", error
            assert why in error["message"]
            assert set(error) == {"type", "message", "id", "timestamp"}
        # Ignored types, then a real message: it is the next thing both see (B saw no ERROR).
        send(a, type="PONG")
        send(a, type="SOMETHING_FROM_THE_FUTURE", x=1)
        send(a, type="CHAT", author=name_a, body="still here")
        for ws in (a, b):
            seen = recv_until(ws, lambda e: e["type"] in ("ERROR", "CHAT"))
            assert is_chat("still here")(seen), seen
    finally:
        a.close()
        b.close()


def test_rate_limit_answers_with_an_error_never_a_silent_drop(chat_daemon):
    ws, name, _ = named_client(chat_daemon)
    try:
        for i in range(8):
            send(ws, type="CHAT", author=name, body=f"burst {i}")
        kinds = []
        while len(kinds) < 8:
            event = recv_json(ws)
            if event["type"] == "CHAT" and "burst" in event["body"]:
                kinds.append("CHAT")
            elif event["type"] == "ERROR":
                assert "rate limit exceeded" in event["message"]
                assert "try again in" in event["message"]
                kinds.append("ERROR")
        # The first user frame was USER_JOINED: 4 more fit in the burst of 5. (ERRORs may
        # arrive first: they go straight to the client, messages round the bus.)
        assert sorted(kinds) == ["CHAT"] * 4 + ["ERROR"] * 4
    finally:
        ws.close()


def test_moderation_hides_and_shows_live_on_every_worker(chat_daemon):
    clients = clients_on_every_worker(chat_daemon, per_worker=1)
    (a, name_a, _), (b, _, _) = clients[0], clients[1]
    try:
        send(a, type="CHAT", author=name_a, body="please hide me")
        msg = recv_until(b, is_chat("please hide me"))
        recv_until(a, is_chat("please hide me"))
        assert any(m["id"] == msg["id"] for m in chat_daemon.get("/api/chat").json())
        r = chat_daemon.post("/api/admin/chat/updatemessagevisibility", auth=chat_daemon.auth,
                             json={"idArray": [msg["id"]], "visible": False})
        assert r.status_code == 200, r.text
        for ws in (a, b):
            update = recv_until(ws, lambda e: e["type"] == "VISIBILITY-UPDATE")
            assert update["id"] == msg["id"] and update["visible"] is False
            assert update["body"] == msg["body"] and update["author"] == name_a
        assert all(m["id"] != msg["id"] for m in chat_daemon.get("/api/chat").json())
        admin = chat_daemon.get("/api/admin/chat/messages", auth=chat_daemon.auth).json()
        assert [m["visible"] for m in admin if m["id"] == msg["id"]] == [False]
        chat_daemon.post("/api/admin/chat/updatemessagevisibility", auth=chat_daemon.auth,
                         json={"idArray": [msg["id"]], "visible": True})
        shown = recv_until(b, lambda e: e["type"] == "VISIBILITY-UPDATE")
        assert shown["visible"] is True
        assert any(m["id"] == msg["id"] for m in chat_daemon.get("/api/chat").json())
    finally:
        for ws, _, _ in clients:
            ws.close()


def test_name_changes_and_clients_list(chat_daemon):
    clients = clients_on_every_worker(chat_daemon, per_worker=1)
    (a, name_a, _), (b, _, _) = clients[0], clients[1]
    new = name_a + "-renamed"
    try:
        send(a, type="NAME_CHANGE", oldName=name_a, newName=new)
        change = recv_until(b, lambda e: e["type"] == "NAME_CHANGE")
        assert change["oldName"] == name_a and change["newName"] == new and change["id"]
        send(a, type="CHAT", author=new, body="one")
        recv_until(b, is_chat("one"))

        def listed():
            rows = chat_daemon.get("/api/admin/clients", auth=chat_daemon.auth).json()
            return [c for c in rows if c.get("username") == new and c.get("messageCount") == 1]
        [row] = wait_until(listed, 15, what="the renamed client in /api/admin/clients")
        assert row["ipAddress"] == "127.0.0.1" and row["userAgent"] == f"chat-test/{name_a}"
        assert row["clientID"] and row["connectedAt"]
    finally:
        for ws, _, _ in clients:
            ws.close()
    wait_until(lambda: not db_rows(chat_daemon, "SELECT 1 FROM chat_clients WHERE username = ?",
                                   (new,)), 15, what="the closed client to leave the list")


def test_killing_an_api_worker_loses_no_stored_message(chat_daemon):
    clients = clients_on_every_worker(chat_daemon, per_worker=1)
    (victim_ws, victim_name, victim_pid), (other_ws, other_name, other_pid) = clients
    sent_ids = []
    try:
        for i in range(4):
            ws, name = ((victim_ws, victim_name), (other_ws, other_name))[i % 2]
            send(ws, type="CHAT", author=name, body=f"durable {i}")
            sent_ids.append(recv_until(other_ws, is_chat(f"durable {i}"))["id"])
        psutil.Process(victim_pid).send_signal(signal.SIGKILL)
        # The survivor keeps chatting; everything anyone saw is in the history.
        send(other_ws, type="CHAT", author=other_name, body="after the kill")
        sent_ids.append(recv_until(other_ws, is_chat("after the kill"), 20)["id"])
        history = {m["id"] for m in chat_daemon.get("/api/chat").json()}
        assert set(sent_ids) <= history
        # The dead worker's connections leave the clients list.
        wait_until(lambda: victim_name not in [
            c.get("username") for c in
            chat_daemon.get("/api/admin/clients", auth=chat_daemon.auth).json()],
            15, what="the killed worker's client to disappear")
        # A replacement worker serves chat again, fanned out to the survivor. Placing the
        # clients waits for it to serve: however long it boots, the connections that land on
        # the survivor meanwhile send nothing, so they cannot exhaust its per-address limit.
        fresh = clients_on_every_worker(chat_daemon, per_worker=1)
        try:
            fresh_pids = {pid for _, _, pid in fresh}
            assert other_pid in fresh_pids and victim_pid not in fresh_pids, fresh_pids
            for ws, name, _ in fresh:
                send(ws, type="CHAT", author=name, body=f"fresh {name}")
            for ws, name, _ in fresh:
                for _, n, _ in fresh:
                    recv_until(ws, is_chat(f"fresh {n}"), 20) if n != name else None
        finally:
            for ws, _, _ in fresh:
                ws.close()
    finally:
        for ws, _, _ in clients:
            ws.close()


def test_a_client_that_stops_reading_is_dropped_and_holds_back_no_one(tmp_path):
    """Frames go straight to a socket that keeps up (chat/hub.py); once one stops reading, its
    kernel buffers fill, the rest queues in its outbox, and at 100 queued it is dropped while
    everyone else gets every message."""
    import socket as socketlib

    fast = config_file("web_workers = 1\n[chat]\nrate_limit_per_minute = 100000\n"
                       "rate_limit_burst = 100000\nrate_limit_per_address_per_minute = 100000\n"
                       "max_message_length = 15000\n")
    with temporary_daemon(fast) as d:
        stalled = socketlib.socket()
        stalled.setsockopt(socketlib.SOL_SOCKET, socketlib.SO_RCVBUF, 4096)
        stalled.connect(("127.0.0.1", d.web_port))
        stalled.sendall(b"GET /entry HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
                        b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                        b"Sec-WebSocket-Version: 13\r\n\r\n")
        assert b" 101 " in stalled.recv(200)   # and never reads again
        reader, sender = connect(d), connect(d)
        text = "x" * 14000
        count = 600            # 8 MB for each client: more than the kernel buffers hold
        bodies: dict = {reader: [], sender: []}

        def read(ws):          # both keep reading all along: only the stalled client stalls
            while len(bodies[ws]) < count:
                event = recv_until(ws, lambda e: e.get("type") in ("CHAT", "ERROR"), 30)
                bodies[ws].append(event.get("body") or event.get("message"))
        threads = [threading.Thread(target=read, args=(ws,)) for ws in (reader, sender)]
        for t in threads:
            t.start()
        for i in range(count):
            send(sender, type="CHAT", author="flood", body=f"{i} {text}")
            # At the readers' pace (a few behind), so only the stalled client falls behind.
            wait_until(lambda: min(map(len, bodies.values())) >= i - 5, 30, 0.002,
                       what="the readers to keep up")
        for t in threads:
            t.join(120)
        bodies = bodies[reader]
        assert [b[:len(f"<p>{i} ")] for i, b in enumerate(bodies)] == \
            [f"<p>{i} " for i in range(count)]
        assert d.output().count("dropping chat client") == 1   # the stalled one
        reader.close()
        sender.close()
        stalled.close()
