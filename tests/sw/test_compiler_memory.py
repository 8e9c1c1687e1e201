"""sw/compiler/memory.py: the DRAM image and the activation allocator."""
import numpy as np
import pytest

from sw.compiler.memory import ALIGN, Allocator, DramImage


def test_image_places_aligned_segments():
    img = DramImage()
    a = img.alloc(3, b"abc")
    b = img.alloc(100)
    c = img.alloc(0, b"")
    assert (a, b, c) == (0, ALIGN, 3 * ALIGN)
    mem = img.to_array(extra=8)
    assert len(mem) == 4 * ALIGN + 8 and bytes(mem[:4]) == b"abc\0" and not mem[ALIGN:].any()
    with pytest.raises(ValueError, match="segment size mismatch"):
        img.alloc(4, b"abc")


def test_allocator_reuses_released_buffers_first_fit():
    img = DramImage()
    mem = Allocator(img)
    x, y = mem.alloc(200), mem.alloc(64)
    assert (x, y) == (0, 256)
    mem.release(x, 200)                      # 256 bytes free at 0
    assert mem.alloc(64) == 0                # first fit, the rest (192 at 64) stays free
    assert mem.alloc(100) == 64
    assert mem.alloc(100) == 320             # 64 bytes left at 192 do not fit: new space
    assert mem.const(b"\1\2") == 448 and img.segments[-1] == (448, b"\1\2")
    assert np.array_equal(img.to_array()[448:450], [1, 2])


@pytest.mark.parametrize("nbytes", [16, 64, 100])
def test_blocks_placed_as_one_const_each(nbytes):
    # alloc_blocks gives the addresses, size and image that one alloc per block gives.
    rng = np.random.default_rng(nbytes)
    blocks = rng.integers(-128, 128, size=(5, nbytes), dtype=np.int8)
    one, many = DramImage(), DramImage()
    one.alloc(3, b"abc")
    many.alloc(3, b"abc")
    addrs = [one.alloc(nbytes, b.tobytes()) for b in blocks]
    assert Allocator(many).const_blocks(blocks) == addrs
    assert many.size == one.size and np.array_equal(many.to_array(), one.to_array())
    assert many.alloc(1) == one.alloc(1)
    assert DramImage().alloc_blocks(blocks[:0]) == []
