"""ServerSession: replay of real client captures and scripted command flows."""
import pathlib
import random
import shutil
import socket
import subprocess
import threading

import pytest

from owncastd.ingest.rtmp import session as s
from owncastd.ingest.rtmp.amf0 import AMF3, ECMAArray, encode_values
from owncastd.ingest.rtmp.chunk import ChunkReader, ChunkWriter, RawMessage
from owncastd.ingest.rtmp.errors import ProtocolError
from owncastd.ingest.rtmp.handshake import C1, HANDSHAKE_SIZE, make_digest_c1
from owncastd.ingest.rtmp.messages import (
    Acknowledgement, Aggregate, CommandAMF0, DataAMF0, SetChunkSize, SetPeerBandwidth,
    UserControlPingRequest, UserControlPingResponse, UserControlStreamBegin,
    UserControlStreamEOF, WindowAckSize, decode_message,
)

CORPUS = pathlib.Path(__file__).parent / "corpus" / "rtmp"
HANDSHAKE_REPLY = 1 + 2 * HANDSHAKE_SIZE


def run(data, pieces):
    """Replay ``data`` in pieces of the given sizes, accepting every publish."""
    sess = s.ServerSession(random=bytes)
    events, pos, i = [], 0, 0
    while pos < len(data):
        n = pieces[i % len(pieces)]
        i += 1
        for ev in sess.feed(data[pos:pos + n]):
            events.append(ev)
            if isinstance(ev, s.PublishRequested):
                events += sess.accept_publish()
        pos += n
    return events, sess


def check_publish_events(events, *, audio, min_frames=30, min_span_ms=1500):
    names = [type(e).__name__ for e in events]
    assert names[:3] == ["HandshakeDone", "Connected", "PublishRequested"]
    assert events[1].app == "live"
    assert events[1].tc_url.startswith("rtmp://127.0.0.1:")
    assert events[2].stream_name == "testkey" and events[2].app == "live"
    meta = [e for e in events if isinstance(e, s.MetaData)]
    assert meta and meta[0].metadata["width"] == 320 and meta[0].metadata["height"] == 240
    assert names.index("MetaData") < names.index("VideoData")
    video = [e for e in events if isinstance(e, s.VideoData)]
    audio_ev = [e for e in events if isinstance(e, s.AudioData)]
    assert len(video) >= min_frames
    # AVC sequence header first: keyframe + AVC codec (0x17), AVCPacketType 0.
    assert video[0].payload[0] == 0x17 and video[0].payload[1] == 0
    assert any(v.payload[0] == 0x27 for v in video)  # inter frames follow
    for stream in (video, audio_ev):
        ts = [e.timestamp_ms for e in stream]
        assert ts == sorted(ts)
    assert video[-2].timestamp_ms > min_span_ms
    if audio:
        assert len(audio_ev) >= min_frames
        assert audio_ev[0].payload[0] >> 4 == 10 and audio_ev[0].payload[1] == 0  # AAC config
    assert names[-1] == "Unpublished" and events[-1].stream_name == "testkey"


@pytest.mark.parametrize("pieces", [[10 ** 9], [1000], [7, 1, 4096, 13], [65536]])
def test_ffmpeg_capture_replay(pieces):
    data = (CORPUS / "ffmpeg_publish.bin").read_bytes()
    events, sess = run(data, pieces)
    check_publish_events(events, audio=True)
    assert sess.handshake_digest  # ffmpeg signs C1; it validated our digest answer live
    assert sess.bytes_received == len(data)


@pytest.mark.parametrize("pieces", [[10 ** 9], [777], [3, 5000]])
def test_raw_publisher_amf3_and_aggregate_capture_replay(pieces):
    data = (CORPUS / "raw_publisher_amf3_aggregate.bin").read_bytes()
    events, _ = run(data, pieces)
    names = [type(e).__name__ for e in events]
    assert names[:3] == ["HandshakeDone", "Connected", "PublishRequested"]
    assert events[1].app == "live"  # read from the AMF3 connect object
    assert (names.count("VideoData"), names.count("AudioData")) == (12, 46)
    for kind in (s.VideoData, s.AudioData):
        ts = [e.timestamp_ms for e in events if isinstance(e, kind)]
        assert ts == sorted(ts) and ts[-1] > 800
    assert names[-1] == "Unpublished"


def test_ffmpeg_capture_same_events_for_any_split():
    data = (CORPUS / "ffmpeg_publish.bin").read_bytes()
    reference, _ = run(data, [len(data)])
    rng = random.Random(7)
    for _ in range(3):
        pieces = [rng.randint(1, 3000) for _ in range(50)]
        assert run(data, pieces)[0] == reference


@pytest.mark.parametrize("pieces", [[10 ** 9], [999], [3, 128, 1]])
def test_gstreamer_rtmpsink_capture_replay(pieces):
    # librtmp (GStreamer rtmpsink; OBS's RTMP output descends from it): simple
    # handshake, 128-byte chunks throughout, metadata repeated.
    data = (CORPUS / "gstreamer_rtmpsink_publish.bin").read_bytes()
    events, sess = run(data, pieces)
    check_publish_events(events, audio=True)
    assert not sess.handshake_digest


# ------------------------------------------------------------------ scripted client


class Client:
    def __init__(self, c1=None):
        self.writer = ChunkWriter(128)
        self.reader = ChunkReader()
        self.c1 = c1 if c1 is not None else C1(0, 0, bytes(1528)).marshal()
        self.got_handshake = False

    def handshake(self):
        return b"\x03" + self.c1 + bytes(HANDSHAKE_SIZE)

    def cmd(self, name, tid, obj=None, *args, stream=0):
        return self.send(CommandAMF0(name, float(tid), obj, list(args),
                                     message_stream_id=stream))

    def send(self, msg):
        return self.writer.write(msg.marshal())

    def receive(self, data):
        if not self.got_handshake:
            assert data[0] == 3 and len(data) >= HANDSHAKE_REPLY
            data = data[HANDSHAKE_REPLY:]
            self.got_handshake = True
        return [decode_message(m) for m in self.reader.feed(data)]


def connected(**kw):
    sess = s.ServerSession(random=bytes, **kw)
    cl = Client()
    events = sess.feed(cl.handshake() + cl.cmd("connect", 1, {
        "app": "live", "tcUrl": "rtmp://127.0.0.1/live", "flashVer": "FMLE/3.0"}))
    return sess, cl, events


def publishing():
    sess, cl, _ = connected()
    cl.receive(sess.data_to_send())
    events = sess.feed(cl.cmd("releaseStream", 2, None, "key")
                       + cl.cmd("FCPublish", 3, None, "key")
                       + cl.cmd("createStream", 4)
                       + cl.cmd("publish", 5, None, "key", "live", stream=1))
    assert isinstance(events[-1], s.PublishRequested)
    sess.accept_publish()
    cl.receive(sess.data_to_send())
    return sess, cl


def test_connect_replies_like_ffmpeg_and_obs_expect():
    sess, cl, events = connected(chunk_size=4096, window_ack_size=2_500_000)
    assert events == [s.HandshakeDone(), s.Connected(
        "live", "rtmp://127.0.0.1/live",
        {"app": "live", "tcUrl": "rtmp://127.0.0.1/live", "flashVer": "FMLE/3.0"})]
    msgs = cl.receive(sess.data_to_send())
    assert msgs[:3] == [WindowAckSize(2_500_000), SetPeerBandwidth(2_500_000, 2),
                        SetChunkSize(4096)]
    result = msgs[3]
    assert (result.name, result.transaction_id) == ("_result", 1.0)
    assert result.arguments[0]["code"] == "NetConnection.Connect.Success"
    assert result.arguments[0]["level"] == "status"
    assert cl.reader.chunk_size == 4096
    assert sess.state == "connected" and sess.app == "live"


def test_publish_flow_accept():
    sess, cl, _ = connected()
    cl.receive(sess.data_to_send())
    assert sess.feed(cl.cmd("releaseStream", 2, None, "key")) == []
    assert [(m.name, m.transaction_id) for m in cl.receive(sess.data_to_send())] == [
        ("_result", 2.0)]
    sess.feed(cl.cmd("FCPublish", 3, None, "key"))
    replies = cl.receive(sess.data_to_send())
    assert replies[0].name == "onFCPublish"
    sess.feed(cl.cmd("createStream", 4))
    (created,) = cl.receive(sess.data_to_send())
    assert (created.name, created.transaction_id, created.arguments) == ("_result", 4.0, [1.0])
    events = sess.feed(cl.cmd("publish", 5, None, "key", "live", stream=1))
    assert events == [s.PublishRequested("live", "key", "live")]
    assert sess.data_to_send() == b""  # nothing until the server decides
    assert sess.accept_publish() == []
    begin, status = cl.receive(sess.data_to_send())
    assert begin == UserControlStreamBegin(1)
    assert status.name == "onStatus" and status.message_stream_id == 1
    assert status.arguments[0]["code"] == "NetStream.Publish.Start"
    assert sess.state == "publishing" and sess.stream_name == "key"

    events = sess.feed(
        cl.send(DataAMF0(["@setDataFrame", "onMetaData", ECMAArray(width=1280.0)],
                         message_stream_id=1))
        + cl.writer.write(RawMessage(6, 0, 9, 1, b"\x17\x00seq"))
        + cl.writer.write(RawMessage(4, 0, 8, 1, b"\xaf\x00cfg"))
        + cl.writer.write(RawMessage(6, 33, 9, 1, b"\x27\x01frame")))
    assert events == [s.MetaData({"width": 1280.0}), s.VideoData(0, b"\x17\x00seq"),
                      s.AudioData(0, b"\xaf\x00cfg"), s.VideoData(33, b"\x27\x01frame")]
    events = sess.feed(cl.cmd("FCUnpublish", 6, None, "key")
                       + cl.cmd("deleteStream", 7, None, 1.0)
                       + cl.writer.write(RawMessage(6, 66, 9, 1, b"late")))
    assert events == [s.Unpublished("key")]


def test_metadata_without_setdataframe():
    sess, cl = publishing()
    events = sess.feed(cl.send(DataAMF0(["onMetaData", {"width": 320.0}], message_stream_id=1)))
    assert events == [s.MetaData({"width": 320.0})]
    assert sess.feed(cl.send(DataAMF0(["onTextData", {"text": "hi"}]))) == []


def test_reject_publish():
    sess, cl, _ = connected()
    cl.receive(sess.data_to_send())
    sess.feed(cl.cmd("createStream", 2) + cl.cmd("publish", 3, None, "bad", stream=1))
    cl.receive(sess.data_to_send())
    sess.reject_publish("no such key")
    (status,) = cl.receive(sess.data_to_send())
    assert status.name == "onStatus"
    assert status.arguments[0] == {"level": "error", "code": "NetStream.Publish.BadName",
                                   "description": "no such key", "details": "bad"}
    assert sess.closing
    assert sess.feed(cl.writer.write(RawMessage(6, 0, 9, 1, b"x"))) == []
    with pytest.raises(RuntimeError):
        sess.accept_publish()


def test_messages_behind_publish_are_held_until_the_decision():
    sess, cl, _ = connected()
    burst = (cl.cmd("createStream", 2) + cl.cmd("publish", 3, None, "k", stream=1)
             + cl.send(DataAMF0(["@setDataFrame", "onMetaData", {"width": 320.0}], 1))
             + cl.writer.write(RawMessage(6, 0, 9, 1, b"\x17\x00")))
    assert [type(e) for e in sess.feed(burst)] == [s.PublishRequested]
    events = sess.feed(cl.writer.write(RawMessage(6, 40, 9, 1, b"\x27\x01")))
    assert events == []
    assert sess.accept_publish() == [s.MetaData({"width": 320.0}), s.VideoData(0, b"\x17\x00"),
                                     s.VideoData(40, b"\x27\x01")]


def test_held_bytes_bounded():
    sess, cl, _ = connected(max_held_bytes=1000)
    sess.feed(cl.cmd("createStream", 2) + cl.cmd("publish", 3, None, "k", stream=1))
    with pytest.raises(ProtocolError, match="pending"):
        sess.feed(cl.writer.write(RawMessage(6, 0, 9, 1, bytes(1001))))


def test_partial_messages_of_an_unpublished_connection_are_bounded():
    # Before a publish is accepted a connection may hold only a little in partial messages
    # (issue 19: 32 idle connections each held ~25 MiB); once publishing, the full bound.
    sess, cl, _ = connected(max_unpublished_bytes=10_000)
    cl.receive(sess.data_to_send())
    big = cl.writer.write(RawMessage(6, 0, 9, 1, bytes(50_000)))
    with pytest.raises(ProtocolError, match="buffered"):
        sess.feed(big[:20_000])
    sess, cl = publishing()
    big = cl.writer.write(RawMessage(6, 0, 9, 1, bytes(500_000)))
    assert sess.feed(big[:300_000]) == []
    assert [len(e.payload) for e in sess.feed(big[300_000:])] == [500_000]


def test_aggregate_messages_are_unpacked_with_renormalised_timestamps():
    sess, cl = publishing()
    subs = [RawMessage(0, 1000, 9, 7, b"\x17\x01key"), RawMessage(0, 1010, 8, 7, b"\xaf\x01a"),
            RawMessage(0, 1040, 9, 7, b"\x27\x01inter"),
            RawMessage(0, 1040, 18, 7, encode_values(["onMetaData", {"width": 2.0}])),
            RawMessage(0, 1050, 20, 7, encode_values(["publish", 0.0]))]  # ignored inside
    events = sess.feed(cl.send(Aggregate(subs, 5000, message_stream_id=1)))
    assert events == [s.VideoData(5000, b"\x17\x01key"), s.AudioData(5010, b"\xaf\x01a"),
                      s.VideoData(5040, b"\x27\x01inter"), s.MetaData({"width": 2.0})]


@pytest.mark.parametrize("cut", [5, 11, 20])
def test_truncated_aggregate_is_a_protocol_error(cut):
    sess, cl = publishing()
    raw = Aggregate([RawMessage(0, 0, 9, 1, bytes(10))], 0, 1).marshal()
    raw.payload = raw.payload[:cut]
    with pytest.raises(ProtocolError, match="aggregate"):
        sess.feed(cl.writer.write(raw))


def test_amf3_values_in_connect_do_not_kill_the_connection():
    sess = s.ServerSession(random=bytes)
    cl = Client()
    events = sess.feed(cl.handshake() + cl.cmd(
        "connect", 1, AMF3({"app": "live", "objectEncoding": 3}), AMF3(["extra", 1])))
    assert events[1].app == "live"
    replies = cl.receive(sess.data_to_send())
    assert replies[-1].arguments[0]["code"] == "NetConnection.Connect.Success"


def test_media_before_publish_is_dropped():
    sess, cl, _ = connected()
    assert sess.feed(cl.writer.write(RawMessage(6, 0, 9, 1, b"\x17\x00"))) == []
    assert sess.feed(cl.send(DataAMF0(["onMetaData", {"a": 1.0}]))) == []


def test_ping_both_ways():
    sess, cl = publishing()
    assert sess.feed(cl.send(UserControlPingRequest(1234))) == []
    assert cl.receive(sess.data_to_send()) == [UserControlPingResponse(1234)]
    sess.ping(77)
    assert cl.receive(sess.data_to_send()) == [UserControlPingRequest(77)]
    assert sess.feed(cl.send(UserControlPingResponse(77))) == [s.PingResponse(77)]


def test_unknown_commands():
    sess, cl, _ = connected()
    cl.receive(sess.data_to_send())
    assert sess.feed(cl.cmd("_checkbw", 0)) == []
    assert sess.data_to_send() == b""
    assert sess.feed(cl.cmd("someCall", 9, None, "x")) == []
    (err,) = cl.receive(sess.data_to_send())
    assert (err.name, err.transaction_id) == ("_error", 9.0)
    assert err.arguments[0]["code"] == "NetConnection.Call.Failed"
    assert sess.feed(cl.cmd("_result", 3) + cl.cmd("onBWDone", 0)) == []
    assert sess.data_to_send() == b""


def test_amf3_command_variant():
    sess = s.ServerSession(random=bytes)
    cl = Client()
    body = b"\x00" + encode_values(["connect", 1.0, {"app": "a3"}])
    events = sess.feed(cl.handshake() + cl.writer.write(RawMessage(3, 0, 17, 0, body)))
    assert events[1] == s.Connected("a3", None, {"app": "a3"})


def test_command_before_connect_is_a_protocol_error_and_sticks():
    sess = s.ServerSession(random=bytes)
    cl = Client()
    with pytest.raises(ProtocolError, match="before connect") as info:
        sess.feed(cl.handshake() + cl.cmd("publish", 1, None, "x"))
    assert info.value.events == [s.HandshakeDone()]
    with pytest.raises(ProtocolError, match="already failed"):
        sess.feed(b"")


def test_connect_twice_and_publish_without_name():
    sess, cl, _ = connected()
    with pytest.raises(ProtocolError, match="twice"):
        sess.feed(cl.cmd("connect", 2, {"app": "x"}))
    sess, cl, _ = connected()
    with pytest.raises(ProtocolError, match="stream name"):
        sess.feed(cl.cmd("publish", 2, None, None, stream=1))


def test_bad_version_is_a_protocol_error():
    with pytest.raises(ProtocolError, match="version 6"):
        s.ServerSession().feed(b"\x06" + bytes(1536))


def test_acknowledgement_sent_when_window_crossed():
    sess, cl = publishing()
    sess.feed(cl.send(WindowAckSize(20000)))
    sess.feed(cl.writer.write(RawMessage(4, 0, 8, 1, bytes(2000))))
    assert sess.bytes_received < 20000
    assert sess.data_to_send() == b""
    sess.feed(cl.writer.write(RawMessage(4, 1, 8, 1, bytes(16000))))
    assert sess.bytes_received >= 20000  # counted from the first handshake byte
    acks = cl.receive(sess.data_to_send())
    assert acks == [Acknowledgement(sess.bytes_received)]
    sess.feed(cl.writer.write(RawMessage(4, 2, 8, 1, bytes(1000))))
    assert sess.data_to_send() == b""


def test_timestamps_unwrap_across_32_bits():
    sess, cl = publishing()
    data = b"".join(cl.writer.write(RawMessage(6, t, 9, 1, b"\x27\x01"))
                    for t in (0xFFFFFF00, 0xFFFFFFF0))
    # type 2 delta carries the clock over 2**32
    data += bytes([0x80 | 6]) + (0x20).to_bytes(3, "big") + b"\x27\x01"
    events = sess.feed(data)
    assert [e.timestamp_ms for e in events] == [0xFFFFFF00, 0xFFFFFFF0, 0x100000010]


def test_digest_handshake_through_session():
    sess = s.ServerSession(random=bytes)
    cl = Client(c1=make_digest_c1())
    assert sess.feed(cl.handshake()) == [s.HandshakeDone()]
    out = sess.data_to_send()
    assert out[5:9] != bytes(4)  # S1 announces a version: digest answer
    sess = s.ServerSession(handshake_mode="simple")
    sess.feed(cl.handshake())
    assert sess.data_to_send()[1 + HANDSHAKE_SIZE:] == cl.c1


def test_close_while_publishing_sends_stream_eof():
    sess, cl = publishing()
    sess.close()
    assert cl.receive(sess.data_to_send()) == [UserControlStreamEOF(1)]
    assert sess.closing and sess.state == "closed"
    assert sess.feed(cl.writer.write(RawMessage(6, 0, 9, 1, b"x"))) == []


def test_republish_after_unpublish():
    sess, cl = publishing()
    assert sess.feed(cl.cmd("FCUnpublish", 6, None, "key")) == [s.Unpublished("key")]
    events = sess.feed(cl.cmd("publish", 7, None, "key2", stream=1))
    assert events == [s.PublishRequested("live", "key2", "live")]
    sess.accept_publish()
    assert sess.feed(cl.writer.write(RawMessage(6, 5, 9, 1, b"v"))) == [s.VideoData(5, b"v")]


# ------------------------------------------------------------------ live client


def serve_one(listener, result):
    """Drive a ServerSession over one accepted socket (what the ingest server will do)."""
    conn, _ = listener.accept()
    conn.settimeout(20)
    sess = s.ServerSession()
    events = []
    try:
        while not sess.closing:
            data = conn.recv(65536)
            if not data:
                break
            new = sess.feed(data)
            while new:
                ev = new.pop(0)
                events.append(ev)
                if isinstance(ev, s.PublishRequested):
                    new += sess.accept_publish()
            conn.sendall(sess.data_to_send())
    except Exception as exc:  # reported to the test thread
        result["error"] = exc
    finally:
        conn.close()
        result["events"] = events
        result["digest"] = sess.handshake_digest


def live_publish(argv_for_port):
    """Run a real client against a socket served by ServerSession; return its result."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(20)
    port = listener.getsockname()[1]
    result = {}
    server = threading.Thread(target=serve_one, args=(listener, result), daemon=True)
    server.start()
    proc = subprocess.Popen(argv_for_port(port), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    server.join(20)
    listener.close()
    assert proc.returncode == 0, err.decode(errors="replace")
    assert "error" not in result, result.get("error")
    return result


@pytest.mark.skipif(not shutil.which("ffmpeg"), reason="ffmpeg not installed")
def test_live_ffmpeg_publish():
    """ffmpeg validates our digest handshake answer and publishes through the session."""
    result = live_publish(lambda port: [
        "ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error",
        "-f", "lavfi", "-i", "testsrc2=size=320x240:rate=15", "-f", "lavfi", "-i", "sine",
        "-t", "1", "-c:v", "libx264", "-preset", "ultrafast", "-g", "15", "-c:a", "aac",
        "-f", "flv", f"rtmp://127.0.0.1:{port}/live/testkey"])
    assert result["digest"]
    check_publish_events(result["events"], audio=True, min_frames=14, min_span_ms=800)


def _gst_elements(*names):
    return shutil.which("gst-launch-1.0") and all(
        subprocess.run(["gst-inspect-1.0", n], capture_output=True).returncode == 0
        for n in names)


@pytest.mark.skipif(not _gst_elements("rtmpsink", "x264enc", "voaacenc", "flvmux"),
                    reason="GStreamer with rtmpsink/x264enc/voaacenc not installed")
def test_live_gstreamer_rtmpsink_publish():
    """librtmp (GStreamer rtmpsink): simple handshake, 128-byte chunks."""
    result = live_publish(lambda port: [
        "gst-launch-1.0", "-q", "flvmux", "name=m", "streamable=true", "!", "rtmpsink",
        f"location=rtmp://127.0.0.1:{port}/live/testkey live=1",
        "videotestsrc", "num-buffers=15", "!", "video/x-raw,width=320,height=240,framerate=15/1",
        "!", "x264enc", "speed-preset=ultrafast", "key-int-max=15", "!", "h264parse", "!", "m.",
        "audiotestsrc", "num-buffers=20", "!", "audio/x-raw,rate=44100", "!", "voaacenc", "!",
        "aacparse", "!", "m."])
    assert not result["digest"]
    check_publish_events(result["events"], audio=True, min_frames=14, min_span_ms=800)


def test_raw_publisher_tag_schedules():
    # the test tool's own transformations (tests/rtmp_publisher.py), used by media tests
    from rtmp_publisher import AUDIO, VIDEO, delayed, shifted, without
    tags = [(VIDEO, 0, b"v0"), (AUDIO, 0, b"a0"), (VIDEO, 40, b"v1"), (AUDIO, 23, b"a1")]
    assert [(k, t, s) for k, t, _, s in delayed(tags, AUDIO, 1500)] == [
        (VIDEO, 0, 0), (VIDEO, 40, 40), (AUDIO, 0, 1500), (AUDIO, 23, 1523)]
    assert without(tags, 20, 50) == tags[:2]
    assert without(tags, 20, 50, kinds=(AUDIO,)) == tags[:3]
    wrapped = shifted(tags, (1 << 32) - 30, after_ms=0)
    assert [t for _, t, _, _ in wrapped] == [(1 << 32) - 30, (1 << 32) - 30, 10, (1 << 32) - 7]
    assert [s for *_, s in wrapped] == [0, 0, 40, 23]
    assert [t for _, t, _, _ in shifted(tags, -20, after_ms=40)] == [0, 0, 20, 23]
