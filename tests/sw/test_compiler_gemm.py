"""sw/compiler/gemm.py: the weight blocks and LOAD borders of the GEMM schedule, against
the definitions they replace (a loop over output channels, a count over coordinates)."""
import itertools

import numpy as np
import pytest

from sw.compiler.gemm import outside, reduction_tiles, weight_blocks


def naive_block(wt, key, j, cin, groups, packed, rows, cols):
    """One block the way the schedule once built it, output channel by output channel."""
    cout, kh, kw, _ = wt.shape
    cin_g, cout_g = cin // groups, cout // groups
    dy, dx, c0 = key
    n0, n1 = j * cols, min(cout, (j + 1) * cols)
    blk = np.zeros((cols, rows), np.int8)
    if packed:
        flat = wt[n0:n1, dy].reshape(n1 - n0, kw * cin)
        blk[:n1 - n0, :min(rows, kw * cin - c0)] = flat[:, c0:c0 + rows]
        return blk
    c1 = min(cin, c0 + rows)
    for o in range(n0, n1):
        g = o // cout_g
        lo, hi = max(c0, g * cin_g), min(c1, (g + 1) * cin_g)
        if lo < hi:
            blk[o - n0, lo - c0:hi - c0] = wt[o, dy, dx, lo - g * cin_g:hi - g * cin_g]
    return blk


@pytest.mark.parametrize("cin,cout,k,groups,packed,rows,cols", [
    (3, 8, 3, 1, True, 16, 4),      # a stem: (kw, channel) runs
    (5, 7, 3, 1, False, 4, 4),      # channels and outputs not multiples of the array
    (16, 16, 3, 16, False, 4, 4),   # depthwise
    (12, 18, 1, 3, False, 8, 4),    # grouped, groups across tiles
    (40, 9, 1, 1, False, 16, 8),    # a linear layer
])
def test_weight_blocks_match_the_per_channel_definition(cin, cout, k, groups, packed, rows, cols):
    rng = np.random.default_rng(cin * cout)
    wt = rng.integers(-128, 128, size=(cout, k, k, cin // groups), dtype=np.int8)
    keys = reduction_tiles(cin, cout, k, k, groups, packed, rows, cols)
    blocks = weight_blocks(wt, keys, cin, groups, packed, rows, cols)
    expected = [naive_block(wt, key, j, cin, groups, packed, rows, cols)
                for j, tile_keys in enumerate(keys) for key in tile_keys]
    assert blocks.shape == (len(expected), cols, rows) and blocks.dtype == np.int8
    assert np.array_equal(blocks, np.stack(expected))


def test_outside_counts_the_border():
    for n, first, step, size in itertools.product(range(9), range(-9, 12), range(1, 4), range(1, 9)):
        coords = [first + k * step for k in range(n)]
        assert outside(n, first, step, size) == (sum(c < 0 for c in coords),
                                                 sum(c >= size for c in coords))
