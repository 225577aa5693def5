"""Compression of the store's many small blobs without zlib's per-call set-up.

``zlib.compress`` allocates and frees its ~256 KiB state on every call, which costs
more than compressing a few hundred bytes: a scrape writes ~100 such blobs. One
long-lived raw-deflate compressor ends each blob with a full flush instead, which
resets its state, so every blob still inflates on its own. Blobs are marked with a
leading ``\\x01`` (a zlib stream never starts with it: its first byte has 8 in the
low nibble), so blobs written by ``zlib.compress`` still read.

>>> unpack(pack(b"abc" * 100)) == b"abc" * 100
True
>>> unpack(zlib.compress(b"older blob")) == b"older blob"
True

Because each blob ends with a full flush, consecutive blobs also form one raw deflate
stream, so ``Inflater`` reads many of them through one decompressor instead of
setting one up per blob (a query reads thousands of sketch rows):

>>> inflate = Inflater()
>>> [inflate(pack(b"x" * n)) == b"x" * n for n in (10, 1000, 3)]
[True, True, True]
"""

from __future__ import annotations

import threading
import zlib

_MARK = 1


class _Deflater:
    __slots__ = ("_obj", "_lock")

    def __init__(self) -> None:
        self._obj = zlib.compressobj(1, zlib.DEFLATED, -15)
        self._lock = threading.Lock()

    def pack(self, data: bytes) -> bytes:
        with self._lock:
            return b"\x01" + self._obj.compress(data) + self._obj.flush(zlib.Z_FULL_FLUSH)


_deflater = _Deflater()
pack = _deflater.pack


def unpack(blob: bytes) -> bytes:
    if blob[:1] == b"\x01":
        return zlib.decompressobj(-15).decompress(memoryview(blob)[1:])
    return zlib.decompress(blob)


#: what a full flush ends with (an empty stored block): a blob without it is read alone
_SYNC = b"\x00\x00\xff\xff"


class Inflater:
    """``unpack`` for many blobs in a row, through one decompressor; not thread-safe
    (make one per query)."""

    __slots__ = ("_obj",)

    def __init__(self) -> None:
        self._obj = zlib.decompressobj(-15)

    def __call__(self, blob: bytes) -> bytes:
        if blob[:1] != b"\x01":
            return zlib.decompress(blob)
        if blob[-4:] != _SYNC:  # truncated, or not ours: it cannot share the stream
            return zlib.decompressobj(-15).decompress(memoryview(blob)[1:])
        try:
            return self._obj.decompress(memoryview(blob)[1:])
        except zlib.error:
            self._obj = zlib.decompressobj(-15)
            raise
