"""Output frame size of a rendition (pure): what the encoder scales a source frame to."""
from __future__ import annotations

import math


def _even(x: float) -> int:
    return max(2, int(math.floor(x / 2.0 + 0.5)) * 2)  # half up, not round()'s half-even


def scaled_size(src_w: int, src_h: int, want_w: int = 0, want_h: int = 0) -> tuple[int, int]:
    """Output size for a source of src_w x src_h when the variant asks for want_w x want_h.

    A missing (0) side keeps the aspect ratio; sizes are even (yuv420p); a target larger than
    the source (by either side) is not an upscale we were asked for, so the source size is kept.
    """
    src_w, src_h = max(2, src_w - src_w % 2), max(2, src_h - src_h % 2)
    if not want_w and not want_h:
        return src_w, src_h
    if want_w and want_h:
        w, h = want_w, want_h
    elif want_w:
        w, h = want_w, want_w * src_h / src_w
    else:
        w, h = want_h * src_w / src_h, want_h
    if w > src_w or h > src_h:
        return src_w, src_h
    return _even(w), _even(h)
