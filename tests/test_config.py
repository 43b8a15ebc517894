import os
import subprocess

import pytest

from owncastd import config as configmod
from owncastd.config import Config, ConfigError, coerce, load_env, load_file
from owncastd.store import Store


@pytest.fixture
def store(tmp_path):
    s = Store(str(tmp_path / "owncast.db"))
    yield s
    s.close()


def write(tmp_path, text):
    path = tmp_path / "owncast.toml"
    path.write_text(text)
    return str(path)


def test_defaults_without_any_source(store):
    c = Config(store)
    assert c.get("web_port") == 8080
    assert c.get("rtmp_port") == 1935
    assert c.get("bind") == "0.0.0.0"
    assert c.get("instance.name") == "Owncast"


def test_precedence_flags_env_saved_file_default(store, tmp_path):
    path = write(tmp_path, 'web_port = 9000\n[instance]\nname = "from file"\n')
    file_values = load_file(path)
    c = Config(store, file_values, {})
    assert c.get("web_port") == 9000 and c.source_of("web_port") == "file"
    c.save({"web_port": 9100, "instance.name": "saved"})
    assert c.get("web_port") == 9100 and c.get("instance.name") == "saved"
    env = load_env({"OWNCAST_WEB_PORT": "9200"})
    c = Config(store, file_values, env)
    assert c.get("web_port") == 9200 and c.source_of("web_port") == "override"
    flags = dict(env, web_port=9300)
    c = Config(store, file_values, flags)
    assert c.get("web_port") == 9300
    # untouched keys still come from their own layer
    assert c.get("instance.name") == "saved"
    assert c.get("rtmp_port") == 1935


def test_snapshot_matches_get(store, tmp_path):
    c = Config(store, load_file(write(tmp_path, "rtmp_port = 2000\n")), {"bind": "127.0.0.1"})
    c.save({"instance.tags": ["a", "b"]})
    snap = c.snapshot()
    for key in configmod.SETTINGS:
        assert snap[key] == c.get(key), key


def test_defaults_are_not_shared_mutable(store):
    c = Config(store)
    c.get("instance.tags").append("oops")
    assert c.get("instance.tags") == ["owncast", "streaming"]


def test_coerce_from_text_and_types():
    assert coerce("web_port", "8081", from_text=True) == 8081
    assert coerce("instance.nsfw", "yes", from_text=True) is True
    assert coerce("instance.tags", '["x"]', from_text=True) == ["x"]
    with pytest.raises(ConfigError, match="web_port"):
        coerce("web_port", "eighty", from_text=True)
    with pytest.raises(ConfigError, match="1 to 65535"):
        coerce("web_port", 70000)
    with pytest.raises(ConfigError, match="expected int"):
        coerce("web_port", True)
    with pytest.raises(ConfigError, match="unknown setting"):
        coerce("no_such", 1)


def test_bad_file_values_name_file_and_key(tmp_path):
    with pytest.raises(ConfigError, match=r"owncast.toml.*web_port"):
        load_file(write(tmp_path, 'web_port = "x"\n'))
    with pytest.raises(ConfigError, match="unknown setting 'colour'"):
        load_file(write(tmp_path, 'colour = "blue"\n'))
    with pytest.raises(ConfigError, match="does not exist"):
        load_file(str(tmp_path / "missing.toml"))
    with pytest.raises(ConfigError, match="owncast.toml"):
        load_file(write(tmp_path, "web_port = \n"))


def test_bad_env_names_variable():
    with pytest.raises(ConfigError, match="OWNCAST_RTMP_PORT"):
        load_env({"OWNCAST_RTMP_PORT": "0"})


def test_shipped_config_file_is_valid_and_documents_every_key():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    path = os.path.join(root, "etc", "owncast.toml")
    values = load_file(path)
    text = open(path).read()
    for key, setting in configmod.SETTINGS.items():
        if key == "yp.key":
            continue  # set by the directory, not by operators
        leaf = key.split(".")[-1]
        assert leaf in text, f"etc/owncast.toml does not document {key}"
        if key in values:
            assert values[key] == setting.default, f"{key} in etc/owncast.toml differs from the default"


def test_stream_key_generated_once_and_strong(store):
    c = Config(store)
    key = c.ensure_stream_key()
    assert key and len(key) >= 32
    assert c.get("stream_key") == key
    assert c.ensure_stream_key() is None  # already there
    assert Config(store, {}, {"stream_key": "flag-key"}).ensure_stream_key() is None


# -- the rules bite from every source (issue 14): a bad key or latency level never starts -----

BAD_SETTINGS = [("stream_key", "ab", "at least 8"), ("video.latency_level", 99, "latency level")]


@pytest.mark.parametrize("key,value,problem", BAD_SETTINGS)
def test_file_and_env_refuse_values_the_api_refuses(tmp_path, key, value, problem):
    section, _, leaf = key.rpartition(".")
    toml = (f"[{section}]\n" if section else "") + f"{leaf} = {value!r}\n".replace("'", '"')
    with pytest.raises(ConfigError, match=rf"owncast.toml: {key}: .*{problem}"):
        load_file(write(tmp_path, toml))
    env = configmod.SETTINGS[key].env
    with pytest.raises(ConfigError, match=rf"{env}: {key}: .*{problem}"):
        load_env({env: str(value)})


def _start(tmp_path, *args, env=None):
    from conftest import OWNCASTD
    e = {k: v for k, v in os.environ.items() if not k.startswith("OWNCAST")}
    e.update(env or {})
    return subprocess.run([OWNCASTD, "start", "--data-dir", str(tmp_path / "data"),
                           "--bind", "127.0.0.1", "--web-port", "1", "--rtmp-port", "2", *args],
                          capture_output=True, text=True, env=e, timeout=30)


def test_owncastd_start_refuses_a_bad_setting_from_flag_env_and_file(tmp_path):
    r = _start(tmp_path, "--stream-key", "ab")
    assert r.returncode == 2, r
    assert "--stream-key" in r.stderr and "stream_key" in r.stderr and "at least 8" in r.stderr
    r = _start(tmp_path, env={"OWNCAST_VIDEO_LATENCY_LEVEL": "99"})
    assert r.returncode == 2, r
    assert "OWNCAST_VIDEO_LATENCY_LEVEL" in r.stderr and "video.latency_level" in r.stderr
    conf = write(tmp_path, '[video]\nlatency_level = 99\n')
    r = _start(tmp_path, "--config", conf)
    assert r.returncode == 2, r
    assert "owncast.toml" in r.stderr and "video.latency_level" in r.stderr
    assert not os.path.exists(tmp_path / "data" / "owncast.db"), "refused before anything started"


def test_every_setting_default_obeys_its_own_rules():
    for key, setting in configmod.SETTINGS.items():
        assert coerce(key, setting.default) == setting.default, key
