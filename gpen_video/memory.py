"""Keep a long run's memory flat: large buffers go back to the system when freed.

glibc raises its mmap threshold each time a large block is freed, so after a while the frames,
crops and tensors (hundreds of kB to MB each, allocated from several threads) come from the heap
arenas instead, which fragment and never shrink: a run's resident memory then grows step by step
with its length. Pinning the threshold keeps frame-sized buffers on mmap, returned to the system on
free.

The threshold is 4 MiB: buffers below it (crops, masks, boxes) are reused from the heap, frame-sized
ones (1080p and up) are not. Measured with a small GPEN, six faces, 2 cores: 480x270, 180 frames, RSS
between frames 30-60 and 120-180 943 -> 1109 MB unpinned, 742 -> 802 MB at 4 MiB (flat from frame ~180
on over 600 frames). At 128 kB memory was as flat but every crop-sized buffer was fresh pages from the
kernel: 1080p, 400 frames took 255 s at 128 kB, 220 s at 4 MiB, 206 s at 32 MiB, and over the last
half RSS rose 30, 80 and 148 MB; at 4 MiB a 1000-frame 1080p run rose ~60 MB from frame 300 to 1000
(1639 -> 1698 MB) and was levelling off.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import sys

log = logging.getLogger(__name__)

_M_MMAP_THRESHOLD = -3  # glibc malloc.h
_MMAP_THRESHOLD_BYTES = 4 * 1024 * 1024
_pinned = False


def pin_malloc_mmap_threshold() -> bool:
    """Fix glibc's mmap threshold at 4 MiB (once per process); a no-op elsewhere. True if pinned."""
    global _pinned
    if _pinned or not sys.platform.startswith("linux"):
        return _pinned
    name = ctypes.util.find_library("c")
    if not name:
        return False
    try:
        libc = ctypes.CDLL(name)
        if not hasattr(libc, "mallopt") or not hasattr(libc, "gnu_get_libc_version"):
            return False  # not glibc (e.g. musl)
        _pinned = bool(libc.mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD_BYTES))
    except OSError:
        return False
    log.debug("malloc mmap threshold pinned at %d bytes: %s", _MMAP_THRESHOLD_BYTES, _pinned)
    return _pinned
