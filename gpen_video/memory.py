"""Keep a long run's memory flat (large buffers go back to the system when freed), and give an encoder zeroed
heap blocks (the same pictures every run).

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

libx264's macroblock tree with B-frames (every preset but ultrafast) reads heap memory it has not written. In a
fresh process that memory is the kernel's zeroed pages, so one-off encodes repeat; in a long run it is whatever
the block's last user left, and the same frames encoded twice gave different pictures (a 25-frame segment: 68
down to 53 dB against itself; the ffmpeg CLI does the same under MALLOC_PERTURB_). glibc's M_PERTURB fills each
block malloc hands out with the complement of a byte and each freed block with the byte: at 0xff a block starts
as zeros, as a fresh page would. The fill costs every allocation while it is on (on for a whole 1080p identity run:
+21% CPU), so it is on only while an encoder runs (``zeroed_heap_blocks``: no cost measured, 28.4 against
28.9 s of CPU, three runs each): x264 allocates its frames then (at open,
and in its first encode calls until its pool is full) and reuses them after. Blocks of 4 MiB and over come
from mmap, zeroed anyway; glibc's per-thread cache (blocks up to ~1 kB) bypasses the fill, and x264's reads
were in larger blocks (a segmented batch gave one picture in every run with the fill, most runs differed
without).
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import functools
import logging
import sys
import threading
from collections.abc import Iterator

log = logging.getLogger(__name__)

_M_MMAP_THRESHOLD = -3  # glibc malloc.h
_M_PERTURB = -6
_MMAP_THRESHOLD_BYTES = 4 * 1024 * 1024
_ZEROING_BYTE = 0xFF  # freed blocks are filled with it, handed-out blocks with its complement: zeros
ZEROED_HEAP_ENV = {"MALLOC_PERTURB_": str(_ZEROING_BYTE)}  # the same for a whole child process (the ffmpeg CLI)
_pinned = False
_zeroing = threading.Lock()
_zeroing_depth = 0


def pin_malloc_mmap_threshold() -> bool:
    """Fix glibc's mmap threshold at 4 MiB (once per process); a no-op elsewhere. True if pinned."""
    global _pinned
    if _pinned or not sys.platform.startswith("linux"):
        return _pinned
    libc = _glibc()
    if libc is None:
        return False
    _pinned = bool(libc.mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD_BYTES))
    log.debug("malloc mmap threshold pinned at %d bytes: %s", _MMAP_THRESHOLD_BYTES, _pinned)
    return _pinned


@contextlib.contextmanager
def zeroed_heap_blocks() -> Iterator[None]:
    """While inside, every heap block malloc hands out (in any thread) starts zeroed; a no-op without glibc
    (there an x264 encode may differ from run to run in its last bits). Nests."""
    global _zeroing_depth
    libc = _glibc()
    if libc is None:
        yield
        return
    with _zeroing:
        if _zeroing_depth == 0:
            libc.mallopt(_M_PERTURB, _ZEROING_BYTE)
        _zeroing_depth += 1
    try:
        yield
    finally:
        with _zeroing:
            _zeroing_depth -= 1
            if _zeroing_depth == 0:
                libc.mallopt(_M_PERTURB, 0)


@functools.cache
def _glibc() -> ctypes.CDLL | None:
    """The C library if it is glibc (Linux), else None."""
    if not sys.platform.startswith("linux"):
        return None
    name = ctypes.util.find_library("c")
    if not name:
        return None
    try:
        libc = ctypes.CDLL(name)
    except OSError:
        return None
    if not hasattr(libc, "mallopt") or not hasattr(libc, "gnu_get_libc_version"):
        return None  # not glibc (e.g. musl)
    return libc
