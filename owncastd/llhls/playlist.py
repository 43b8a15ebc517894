"""LL-HLS playlist text (RFC 8216bis): pure functions of the packager's state, no I/O.

A media playlist lists full segments (`EXTINF`, each with `EXT-X-PROGRAM-DATE-TIME`), the parts
(`EXT-X-PART`) of the segments near the live edge, a `EXT-X-PRELOAD-HINT` for the next part and
a `EXT-X-RENDITION-REPORT` per other rendition. `skip=True` renders the delta update answering
`_HLS_skip=YES`: the segments older than CAN-SKIP-UNTIL are replaced by one `EXT-X-SKIP`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime, timezone

VERSION = 9
PART_WINDOW_TARGETS = 3      # parts are listed for segments ending within 3 target durations
SKIP_UNTIL_TARGETS = 6       # CAN-SKIP-UNTIL, in target durations (the spec's minimum)


@dataclass
class Part:
    number: int              # global part number in the stream (names the file)
    index: int               # index within its segment (the _HLS_part of it)
    duration: float
    independent: bool
    uri: str


@dataclass
class Segment:
    msn: int
    start: float             # media time, seconds
    pdt: float               # wall clock (epoch seconds) of its first frame
    uri: str
    parts: list[Part] = field(default_factory=list)
    duration: float | None = None   # set once complete
    init_uri: str = ""               # its EXT-X-MAP ("" = the playlist's)
    discontinuity: bool = False      # follows a restart of the transcoder (new timeline, new init)
    dseq: int = 0                    # its discontinuity sequence number

    @property
    def complete(self) -> bool:
        return self.duration is not None


@dataclass
class RenditionReport:
    uri: str
    last_msn: int
    last_part: int


def fmt(seconds: float) -> str:
    return f"{seconds:.5f}".rstrip("0").rstrip(".") if seconds else "0"


def part_target_text(part_target: float) -> str:
    return fmt(part_target)


def last_part(segments: list[Segment]) -> tuple[int, int] | None:
    """(msn, part index) of the newest part listed, or None before the first part."""
    for seg in reversed(segments):
        if seg.parts:
            return seg.msn, seg.parts[-1].index
    return None


def server_control(target: int, part_target: float) -> str:
    return (f"#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,"
            f"PART-HOLD-BACK={fmt(3 * part_target)},"
            f"CAN-SKIP-UNTIL={fmt(SKIP_UNTIL_TARGETS * target)}")


def _pdt(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, timezone.utc).isoformat(timespec="milliseconds") \
        .replace("+00:00", "Z")


def media_playlist(*, target: int, part_target: float, init_uri: str,
                   segments: list[Segment], hint_uri: str | None,
                   reports: list[RenditionReport] = (), skip: bool = False,
                   ended: bool = False) -> str:
    """A media playlist; `segments` is the window, oldest first, the last one possibly open."""
    if not segments:
        raise ValueError("a playlist needs at least one segment")
    lines = ["#EXTM3U", f"#EXT-X-VERSION:{VERSION}", f"#EXT-X-TARGETDURATION:{target}",
             server_control(target, part_target),
             f"#EXT-X-PART-INF:PART-TARGET={part_target_text(part_target)}",
             f"#EXT-X-MEDIA-SEQUENCE:{segments[0].msn}"]
    if segments[0].dseq:
        lines.append(f"#EXT-X-DISCONTINUITY-SEQUENCE:{segments[0].dseq}")
    complete = [s for s in segments if s.complete]
    edge = segments[-1].start + (segments[-1].duration or sum(p.duration
                                                              for p in segments[-1].parts))
    skipped = 0
    if skip:
        # Skip the segments that start more than CAN-SKIP-UNTIL seconds before the end.
        limit = edge - SKIP_UNTIL_TARGETS * target
        while skipped < len(complete) - 1 and complete[skipped].start < limit:
            skipped += 1
        lines.append(f"#EXT-X-SKIP:SKIPPED-SEGMENTS={skipped}")
    else:
        lines.append(f'#EXT-X-MAP:URI="{segments[0].init_uri or init_uri}"')
    part_from = edge - PART_WINDOW_TARGETS * target
    for n, seg in enumerate(segments[skipped:]):
        if seg.discontinuity and (n or skipped):
            lines.append("#EXT-X-DISCONTINUITY")
            lines.append(f'#EXT-X-MAP:URI="{seg.init_uri or init_uri}"')
        lines.append(f"#EXT-X-PROGRAM-DATE-TIME:{_pdt(seg.pdt)}")
        if seg.start + (seg.duration or 0) > part_from or not seg.complete:
            for part in seg.parts:
                lines.append(f'#EXT-X-PART:DURATION={fmt(part.duration)},URI="{part.uri}"'
                             + (",INDEPENDENT=YES" if part.independent else ""))
        if seg.complete:
            lines.append(f"#EXTINF:{fmt(seg.duration)},")
            lines.append(seg.uri)
    if ended:
        lines.append("#EXT-X-ENDLIST")
    elif hint_uri:
        lines.append(f'#EXT-X-PRELOAD-HINT:TYPE=PART,URI="{hint_uri}"')
    for report in reports:
        lines.append(f'#EXT-X-RENDITION-REPORT:URI="{report.uri}",LAST-MSN={report.last_msn},'
                     f"LAST-PART={report.last_part}")
    return "\n".join(lines) + "\n"


def master_playlist(variants: list[dict]) -> str:
    """`variants`: dicts with uri, bandwidth (bit/s), optional codecs and resolution."""
    lines = ["#EXTM3U", f"#EXT-X-VERSION:{VERSION}", "#EXT-X-INDEPENDENT-SEGMENTS"]
    for v in variants:
        attrs = [f"BANDWIDTH={int(v['bandwidth'])}"]
        if v.get("codecs"):
            attrs.append(f'CODECS="{v["codecs"]}"')
        if v.get("resolution"):
            attrs.append(f"RESOLUTION={v['resolution']}")
        lines.append("#EXT-X-STREAM-INF:" + ",".join(attrs))
        lines.append(v["uri"])
    return "\n".join(lines) + "\n"


def target_duration(segment_seconds: float) -> int:
    """EXT-X-TARGETDURATION for a segment length: fixed for the life of a playlist."""
    return max(1, math.ceil(segment_seconds))


def parse_position(text: str) -> tuple[int, int, int] | None:
    """(last msn, last part index, last complete msn or -1) from a media playlist written by
    `media_playlist` (full, not a delta); None when it lists no part. The web workers use it."""
    msn = None
    open_parts = 0
    last = None
    last_complete = -1
    for line in text.splitlines():
        if line.startswith("#EXT-X-MEDIA-SEQUENCE:"):
            msn = int(line.split(":", 1)[1])
        elif line.startswith("#EXT-X-PART:") and msn is not None:
            last = (msn, open_parts)
            open_parts += 1
        elif line.startswith("#EXTINF:") and msn is not None:
            if open_parts:
                last = (msn, open_parts - 1)
            last_complete = msn
            msn += 1
            open_parts = 0
    if last is None:
        return None
    return last[0], last[1], last_complete


def read_media_playlist(text: str) -> tuple[int, float, list[Segment]] | None:
    """(TARGETDURATION, PART-TARGET, segments) of a live media playlist `media_playlist`
    wrote (full, not ended), to continue it after a restart; None when it cannot be continued.
    Segment starts are relative to the first listed; a last segment without EXTINF is open."""
    if "#EXT-X-ENDLIST" in text or "#EXT-X-SKIP" in text:
        return None
    target = part_target = msn = None
    dseq, init, pdt, discontinuity, start = 0, "", 0.0, False, 0.0
    segments: list[Segment] = []
    parts: list[Part] = []
    try:
        lines = text.splitlines()
        for i, line in enumerate(lines):
            tag, _, value = line.partition(":")
            if tag == "#EXT-X-TARGETDURATION":
                target = int(value)
            elif tag == "#EXT-X-PART-INF":
                part_target = float(value.split("=", 1)[1])
            elif tag == "#EXT-X-MEDIA-SEQUENCE":
                msn = int(value)
            elif tag == "#EXT-X-DISCONTINUITY-SEQUENCE":
                dseq = int(value)
            elif tag == "#EXT-X-MAP":
                init = value.split('URI="', 1)[1].split('"', 1)[0]
            elif tag == "#EXT-X-DISCONTINUITY":
                discontinuity = True
                dseq += 1 if segments or parts else 0
            elif tag == "#EXT-X-PROGRAM-DATE-TIME":
                pdt = datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
            elif tag == "#EXT-X-PART":
                attrs = dict(a.split("=", 1) for a in value.split(","))
                uri = attrs["URI"].strip('"')
                parts.append(Part(number=int(uri.rsplit("-p", 1)[1][:-4]), index=len(parts),
                                  duration=float(attrs["DURATION"]),
                                  independent=attrs.get("INDEPENDENT") == "YES", uri=uri))
            elif tag == "#EXTINF":
                duration = float(value.rstrip(","))
                segments.append(Segment(msn=msn + len(segments), start=start, pdt=pdt,
                                        uri=lines[i + 1], parts=parts, duration=duration,
                                        init_uri=init, discontinuity=discontinuity, dseq=dseq))
                start += duration
                parts, discontinuity = [], False
        if parts:
            open_msn = msn + len(segments)
            segments.append(Segment(msn=open_msn, start=start, pdt=pdt,
                                    uri=f"{parts[0].uri.rsplit('-p', 1)[0]}-s{open_msn}.m4s",
                                    parts=parts, init_uri=init, discontinuity=discontinuity,
                                    dseq=dseq))
    except (ValueError, IndexError, KeyError, TypeError):
        return None
    if target is None or part_target is None or msn is None or not segments:
        return None
    return target, part_target, segments


def stale_for(path: str, segment_seconds: float) -> bool:
    """Whether an existing media playlist must not be continued by MPEG-TS output with
    `segment_seconds` segments: it is LL-HLS output, or its TARGETDURATION is longer than the
    new segments need (a TARGETDURATION never changes within a playlist, so the old one would
    stay beside shorter segments and players would hold back too far and stall: issue 15)."""
    try:
        with open(path, "rb") as f:
            head = f.read(1024).decode(errors="replace")
    except OSError:
        return False
    if "#EXT-X-PART-INF:" in head:
        return True
    for line in head.splitlines():
        if line.startswith("#EXT-X-TARGETDURATION:"):
            try:
                return int(line.split(":", 1)[1]) > target_duration(segment_seconds) + 1
            except ValueError:
                return True
    return False
