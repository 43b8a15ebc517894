"""Owncast video settings -> native transcoder parameters (owncastd.transcode.ladder)."""
import pytest

from owncastd.media.scaling import scaled_size
from owncastd.transcode import ladder


@pytest.mark.parametrize("level, expected", [
    (0, (1, 3)), (1, (2, 2)), (2, (3, 3)), (3, (4, 3)), (4, (5, 4)),
    (None, (3, 3)),   # unset -> level 2
    (7, (5, 4)),      # above 4 clamps, as Owncast
])
def test_latency_levels(level, expected):
    assert ladder.latency_settings(level) == expected


@pytest.mark.parametrize("level, preset", [
    (0, "ultrafast"), (1, "superfast"), (2, "veryfast"), (3, "faster"), (4, "fast"),
    (5, "superfast"), (-1, "superfast"), (None, "superfast"),
])
def test_x264_presets(level, preset):
    assert ladder.encoder_preset("libx264", level) == preset


def test_nvenc_presets():
    assert [ladder.encoder_preset("h264_nvenc", i) for i in range(5)] == ["p1", "p2", "p3", "p4", "p5"]
    assert ladder.encoder_preset("h264_nvenc", 9) == "p3"


def test_defaults_like_owncast():
    v = ladder.normalize_variant({"framerate": 0, "videoBitrate": 0, "audioBitrate": 0}, segment_seconds=3)
    assert v["framerate"] == 24
    assert v["video_bitrate"] == 1200
    assert v["audio_passthrough"] is True and v["audio_bitrate"] == 0
    assert v["maxrate"] == 1272 and v["bufsize"] == 1440   # 1.06x, 1.2x
    assert v["gop"] == 72                                   # segment seconds x fps
    assert v["codec"] == "libx264" and v["tune"] == "zerolatency" and v["profile"] == "high"


def test_default_ladder_is_one_variant():
    out = ladder.build_ladder(None)
    assert (out["segment_seconds"], out["list_size"]) == (3, 3)
    [v] = out["variants"]
    assert v["video_bitrate"] == 1200 and v["framerate"] == 24 and v["audio_passthrough"]
    assert v["preset"] == "veryfast" and not v["video_passthrough"]


def test_encoded_audio_and_gop_follow_latency():
    out = ladder.build_ladder([{"videoBitrate": 2500, "audioBitrate": 128, "framerate": 30,
                                "scaledHeight": 720, "cpuUsageLevel": 2}], latency_level=1)
    [v] = out["variants"]
    assert v["audio_bitrate"] == 128 and not v["audio_passthrough"]
    assert v["gop"] == 60 and v["height"] == 720 and v["width"] == 0
    assert v["maxrate"] == 2650 and v["bufsize"] == 3000


def test_passthrough_reports_no_framerate():
    v = ladder.normalize_variant({"videoPassthrough": True, "framerate": 30})
    assert v["video_passthrough"] and v["framerate"] == 0 and v["gop"] == 0


def test_display_names():
    assert ladder.display_name({"name": "HD"}) == "HD"
    assert ladder.display_name({"videoPassthrough": True}) == "Source"
    assert ladder.display_name({"videoBitrate": 1200, "framerate": 24}) == "1.2Mbps@24fps"
    assert ladder.display_name({"scaledHeight": 480, "framerate": 30}) == "480p@30fps"


@pytest.mark.parametrize("src, want, expected", [
    ((1280, 720), (0, 0), (1280, 720)),
    ((1280, 720), (640, 0), (640, 360)),       # height from the aspect ratio
    ((1280, 720), (0, 360), (640, 360)),
    ((1280, 720), (0, 240), (426, 240)),       # 426.67 -> even
    ((1280, 720), (854, 480), (854, 480)),
    ((640, 360), (1280, 720), (640, 360)),     # never upscale unasked
    ((640, 360), (0, 720), (640, 360)),
    ((1921, 1081), (0, 0), (1920, 1080)),      # odd source sizes become even
    ((1280, 720), (0, 101), (180, 102)),       # odd request -> even
])
def test_scaled_size(src, want, expected):
    assert scaled_size(*src, *want) == expected


def test_validate_accepts_owncast_settings():
    ladder.validate([{"videoPassthrough": True}, {"videoBitrate": 800, "scaledWidth": 640,
                                                  "framerate": 30, "cpuUsageLevel": 4}],
                    latency_level=4)


@pytest.mark.parametrize("variants, field", [
    ([{"videoBitrate": -1}], "videoBitrate"),
    ([{"videoBitrate": 10**7}], "videoBitrate"),
    ([{"audioBitrate": -64}], "audioBitrate"),
    ([{"scaledWidth": 100000}], "scaledWidth"),
    ([{"scaledHeight": -2}], "scaledHeight"),
    ([{"scaledHeight": 4}], "scaledHeight"),
    ([{"framerate": 1000}], "framerate"),
    ([{"framerate": "30"}], "framerate"),
    ([{"cpuUsageLevel": 9}], "cpuUsageLevel"),
    ([{"videoBitrate": True}], "videoBitrate"),
    ([{"videoPassthrough": "yes"}], "videoPassthrough"),
    ([{"name": 5}], "name"),
    (["720p"], "videoQualityVariants[0]"),
    ([], "videoQualityVariants"),
    ([{}] * 11, "videoQualityVariants"),
])
def test_validate_names_the_bad_field(variants, field):
    with pytest.raises(ValueError, match=field.replace("[", r"\[").replace("]", r"\]")):
        ladder.validate(variants)


@pytest.mark.parametrize("level", [-1, 5, "2", True])
def test_validate_latency_level(level):
    with pytest.raises(ValueError, match="latencyLevel"):
        ladder.validate([{}], latency_level=level)


def test_validate_codec():
    with pytest.raises(ValueError, match="videoCodec"):
        ladder.validate([{}], codec="h265_magic")
    with pytest.raises(ValueError, match="videoCodec: h264_nvenc is not available"):
        ladder.validate([{}], codec="h264_nvenc", available_codecs=["libx264"])
    ladder.validate([{}], codec="h264_nvenc", available_codecs=["libx264", "h264_nvenc"])


def test_validate_codec_against_linked_libavcodec():
    from owncastd.native.transcode import available_h264_encoders
    available = available_h264_encoders()
    assert "libx264" in available
    for codec in ladder.KNOWN_CODECS:
        if codec in available:
            ladder.validate([{}], codec=codec)
        else:
            with pytest.raises(ValueError, match="videoCodec"):
                ladder.validate([{}], codec=codec)
