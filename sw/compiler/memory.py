"""DRAM allocation of the compiler: the image under construction and the activation
buffers reused once their last reader has run."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

__all__ = ["ALIGN", "DramImage", "Allocator"]

#: Every segment and buffer starts at a multiple of this many bytes.
ALIGN = 64


def _align(x: int, a: int = ALIGN) -> int:
    return -(-x // a) * a


@dataclass
class DramImage:
    """A DRAM image under construction: segments placed at aligned addresses."""
    size: int = 0
    segments: list[tuple[int, bytes]] = field(default_factory=list)

    def alloc(self, nbytes: int, data: bytes | None = None) -> int:
        """Place ``nbytes`` (holding ``data`` if given) after everything so far; returns
        the address. Raises ``ValueError`` if ``data`` is not ``nbytes`` long."""
        addr = _align(self.size)
        self.size = addr + max(nbytes, 1)
        if data is not None:
            if len(data) != nbytes:
                raise ValueError("segment size mismatch")
            self.segments.append((addr, data))
        return addr

    def alloc_blocks(self, blocks: np.ndarray) -> list[int]:
        """Place the equal blocks ``blocks[i]`` (their bytes) at the addresses that one
        :meth:`alloc` per block would give; returns them. One segment holds them all,
        the alignment gaps zero, as they are in the image either way."""
        n = len(blocks)
        if n == 0:
            return []
        flat = np.ascontiguousarray(blocks).reshape(n, -1).view(np.uint8)
        nbytes = flat.shape[1]
        step = _align(max(nbytes, 1))
        first = _align(self.size)
        if step != nbytes:
            gapped = np.zeros((n, step), np.uint8)
            gapped[:, :nbytes] = flat
            flat = gapped
        self.segments.append((first, flat.tobytes()[:(n - 1) * step + nbytes]))
        self.size = first + (n - 1) * step + max(nbytes, 1)
        return list(range(first, first + n * step, step))

    def to_array(self, extra: int = 0) -> np.ndarray:
        """The image as bytes, padded to the alignment, plus ``extra`` zero bytes."""
        mem = np.zeros(_align(self.size) + extra, dtype=np.uint8)
        for addr, data in self.segments:
            mem[addr:addr + len(data)] = np.frombuffer(data, dtype=np.uint8)
        return mem


class Allocator:
    """Activation buffers first-fit from a free list, else new space in the image;
    constants always new space."""

    def __init__(self, image: DramImage) -> None:
        self.image = image
        self.free: list[tuple[int, int]] = []   # (addr, size) of reusable activation buffers

    def alloc(self, nbytes: int) -> int:
        """A buffer of at least ``nbytes``; returns its address."""
        nbytes = _align(max(nbytes, 1))
        for i, (addr, size) in enumerate(self.free):
            if size >= nbytes:
                self.free.pop(i)
                if size > nbytes:
                    self.free.append((addr + nbytes, size - nbytes))
                return addr
        return self.image.alloc(nbytes)

    def release(self, addr: int, nbytes: int) -> None:
        """Give the buffer of ``nbytes`` at ``addr`` back for reuse."""
        self.free.append((addr, _align(max(nbytes, 1))))

    def const(self, data: bytes) -> int:
        """Place constant ``data`` (weights, parameters) in the image; returns its address."""
        return self.image.alloc(len(data), data)

    def const_blocks(self, blocks: np.ndarray) -> list[int]:
        """Place equal constant blocks (``blocks[i]``), as :meth:`const` of each in turn
        would; returns their addresses."""
        return self.image.alloc_blocks(blocks)
