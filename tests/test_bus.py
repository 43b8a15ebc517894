import threading
import time

import zmq

from owncastd import bus


def test_run_dir_falls_back_for_long_paths(tmp_path):
    long_dir = str(tmp_path / ("x" * 120))
    path = bus.sub_address(long_dir)[len("ipc://"):]
    assert len(path) < 108
    assert bus.run_dir(long_dir) == bus.run_dir(long_dir)  # stable
    assert bus.run_dir("/d") == "/d/run"


def test_encode_decode_roundtrip():
    frames = bus.encode("event.x", {"a": [1, "b"]})
    assert bus.decode(frames) == ("event.x", {"a": [1, "b"]})


def test_proxy_fans_out_to_subscribers(short_tmp):
    proxy = bus.Proxy(short_tmp)
    thread = threading.Thread(target=proxy.run, daemon=True)
    thread.start()
    subs = [bus.Subscriber(short_tmp, ["event."]) for _ in range(2)]
    other = bus.Subscriber(short_tmp, ["chat"])
    pub = bus.Publisher(short_tmp)
    try:
        # Slow joiner: publish probes until the subscription has propagated.
        deadline = time.monotonic() + 5
        got = [None, None]
        while time.monotonic() < deadline and None in got:
            pub.publish(bus.EVENT_STREAM_STARTED, {"n": 1})
            for i, s in enumerate(subs):
                msg = s.recv(timeout_ms=50)
                if msg:
                    got[i] = msg
        assert got[0] == (bus.EVENT_STREAM_STARTED, {"n": 1})
        assert got[1] == (bus.EVENT_STREAM_STARTED, {"n": 1})
        assert other.recv(timeout_ms=100) is None  # prefix filtering
    finally:
        pub.close()
        for s in subs + [other]:
            s.close()
        proxy.stop()
        thread.join(timeout=15)  # generous: a loaded machine may be slow to schedule it
    assert not thread.is_alive()


def test_log_channel_queues_until_the_sink_binds(short_tmp):
    import os
    os.makedirs(bus.run_dir(short_tmp), exist_ok=True)
    pusher = bus.Publisher(short_tmp, kind=zmq.PUSH, address=bus.log_address(short_tmp))
    pusher.publish(bus.LOG, {"message": "early"})  # sent before anyone listens
    sink = bus.Subscriber.log_sink(short_tmp)
    try:
        assert sink.recv(timeout_ms=3000) == (bus.LOG, {"message": "early"})
    finally:
        pusher.close()
        sink.close()
