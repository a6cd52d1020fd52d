"""Give freed image buffers back to the OS, so the pixel budget bounds the server's memory.

glibc keeps memory freed by a thread in that thread's malloc arena, and raises its mmap
threshold (to 32 MB) after a large block is freed, so later large blocks come from the arena
too. A request thread that once decoded a 36 M pixel image then keeps ~36 MB forever, and every
thread of the pool can: 4 concurrent requests took 150 MB of RSS where one took 50 MB, with
one image decoded at a time (tests/serving/test_image_decoding.py). A fixed threshold makes
every block from MMAP_THRESHOLD up (Pillow allocates images in blocks of up to 16 MB) its own
mapping, returned when freed; the cost is a page fault per 4 KB the next time, small next to
decoding those pixels.
"""

from __future__ import annotations

import ctypes
import logging

log = logging.getLogger("vistas.serving")

M_MMAP_THRESHOLD = -3  # glibc <malloc.h>
MMAP_THRESHOLD = 4 * 2**20  # bytes: a 1 M pixel RGB image (Pillow: 4 bytes a pixel) and up


def return_large_frees_to_the_os(threshold: int = MMAP_THRESHOLD) -> bool:
    """Fix glibc's mmap threshold for this process; False where the C library has no mallopt
    (macOS) or refuses (musl's is a stub), which changes nothing else."""
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    ok = bool(mallopt(M_MMAP_THRESHOLD, threshold))
    if not ok:
        log.debug("mallopt(M_MMAP_THRESHOLD) is not supported here; freed image memory may stay with threads")
    return ok
