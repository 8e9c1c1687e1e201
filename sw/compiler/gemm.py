"""The implicit-GEMM schedule of convolutions and linear layers (docs/compiler.md).

:class:`GemmSchedule` is a part of :class:`sw.compiler.Compiler`: ``gemm_layer``
emits one conv or linear layer from weights arranged ``[Cout, KH, KW, Cin/groups]``
(the operator files of :mod:`sw.ops` arrange them), with activation and weight
slots and accumulator tiles double-buffered and ordered by tokens.
"""

from __future__ import annotations

from typing import Iterator

import numpy as np

from hw import isa
from hw.isa import Instruction

from ..ir import QNode
from . import CompileError

__all__ = ["DramWeights", "GemmSchedule", "outside", "reduction_tiles", "tile_groups",
           "weight_blocks"]

_SPAD = isa.Mem.SPAD     # (a member, not its name: the builders take it without a lookup)


def _ceil(a: int, b: int) -> int:
    return -(-a // b)


def outside(n: int, first: int, step: int, size: int) -> tuple[int, int]:
    """Of the ``n`` coordinates ``first + k * step`` (``step`` >= 1), how many lie before 0
    and how many at or past ``size`` (>= 1): the border rows or columns a LOAD pads."""
    before = min(n, max(0, -(first // step)))            # k < ceil(-first / step)
    inside_end = min(n, max(0, -((first - size) // step)))   # k < ceil((size - first) / step)
    return before, n - inside_end


def reduction_tiles(cin: int, cout: int, kh: int, kw: int, groups: int, packed: bool,
                    rows: int, cols: int) -> list[list[tuple[int, int, int]]]:
    """The reduction chunks of each output tile of a conv or linear layer.

    For output tile ``j`` (channels ``j * cols`` to ``(j + 1) * cols``), the ``(dy, dx, c0)``
    keys of its structurally non-zero ``cols x rows`` weight blocks in emission order:
    kernel row ``dy``, kernel column ``dx`` and ``rows`` input channels from ``c0``; for
    a ``packed`` layer ``dx`` is -1 and ``c0`` an offset into the kernel row's
    ``kw * cin`` (kernel column, channel) run. Grouped and depthwise layers skip the
    chunks outside each tile's groups.
    """
    nt = _ceil(cout, cols)
    if packed:
        return [[(dy, -1, f0) for dy in range(kh) for f0 in range(0, kw * cin, rows)]
                for _ in range(nt)]
    if groups == 1:
        every = [(dy, dx, c0) for dy in range(kh) for dx in range(kw) for c0 in range(0, cin, rows)]
        return [list(every) for _ in range(nt)]
    cin_g, cout_g = cin // groups, cout // groups
    tiles = []
    for j in range(nt):
        n0, n1 = j * cols, min(cout, (j + 1) * cols)
        groups_here = range(n0 // cout_g, (n1 - 1) // cout_g + 1)
        tiles.append([(dy, dx, c0) for dy in range(kh) for dx in range(kw)
                      for c0 in range(0, cin, rows)
                      if any(c0 // cin_g <= g <= (min(cin, c0 + rows) - 1) // cin_g
                             for g in groups_here)])
    return tiles


def tile_groups(tile_chunks: list[list[int]], j0: int, j1: int, oh_n: int, rows_per_block: int,
                ng: int, kg: int) -> Iterator[tuple[int, int, list[int], list[list[int]]]]:
    """The order a pass over output tiles ``[j0, j1)`` runs in: for each block of
    ``rows_per_block`` output rows and each group of ``ng`` output tiles,
    ``(oh0, nrows, group, k_groups)``, where ``k_groups`` splits the reduction chunks the
    group needs (``tile_chunks[j]``: chunk indices of tile ``j``) into activation groups
    of at most ``kg``."""
    groups = []
    for n_lo in range(j0, j1, ng):
        group = list(range(n_lo, min(j1, n_lo + ng)))
        needed = sorted({ci for j in group for ci in tile_chunks[j]})
        groups.append((group, [needed[i:i + kg] for i in range(0, len(needed), kg)]))
    for oh0 in range(0, oh_n, rows_per_block):
        nrows = min(rows_per_block, oh_n - oh0)
        for group, k_groups in groups:
            yield oh0, nrows, group, k_groups


def weight_blocks(wt: np.ndarray, keys: list[list[tuple[int, int, int]]], cin: int,
                  groups: int, packed: bool, rows: int, cols: int) -> np.ndarray:
    """The ``cols x rows`` int8 weight blocks of :func:`reduction_tiles` ``keys``, in their
    order (tile by tile), as one array ``[blocks, cols, rows]``: block row ``n`` holds output
    channel ``j * cols + n`` (zero past ``Cout``), column ``k`` input channel ``c0 + k`` of
    kernel tap ``(dy, dx)``, zero outside the channel's group (grouped layers) and past the
    channels; for a ``packed`` layer, element ``c0 + k`` of kernel row ``dy``'s (kernel
    column, channel) run. ``wt``: int8 ``[Cout, KH, KW, Cin/groups]``."""
    cout, kh, kw, cin_g = wt.shape
    if packed:
        full = wt.reshape(cout, kh, 1, kw * cin)       # a kernel row's run as one "tap"
    elif groups == 1:
        full = wt
    else:                                              # block diagonal over the groups
        full = np.zeros((cout, kh, kw, cin), np.int8)
        cout_g = cout // groups
        for g in range(groups):
            o = slice(g * cout_g, (g + 1) * cout_g)
            full[o, :, :, g * cin_g:(g + 1) * cin_g] = wt[o]
    taps, width = full.shape[2], full.shape[3]
    nt, nchunks = len(keys), _ceil(width, rows)
    padded = np.zeros((nt * cols, kh, taps, nchunks * rows), np.int8)
    padded[:cout, :, :, :width] = full
    # [tile, n, dy, dx, chunk, k] -> [tile, dy, dx, chunk, n, k]: a block is [n, k].
    by_key = padded.reshape(nt, cols, kh, taps, nchunks, rows).transpose(0, 2, 3, 4, 1, 5)
    tile = np.repeat(np.arange(nt), [len(tile_keys) for tile_keys in keys])
    dy, dx, c0 = np.array([k for tile_keys in keys for k in tile_keys],
                          dtype=np.int64).reshape(-1, 3).T
    return by_key[tile, dy, np.maximum(dx, 0), c0 // rows]


class DramWeights:
    """The stationary operand of a matmul of two activations: ``W[n, k]`` (output channel
    ``n``, reduction index ``k``) at DRAM byte ``base + n * n_stride + k`` for ``n <
    cout``, ``k < cin``; ``shape`` is the ``[Cout, 1, 1, Cin]`` of constant weights. A tile
    is one strided LOAD of its rows (``k`` contiguous, so ``W``'s rows are the weight
    slot's rows), after a zero fill of the slot where the tile has fewer than ``cols``
    rows (the rest of a row is filled with zeros by the LOAD itself)."""

    def __init__(self, base: int, n_stride: int, cout: int, cin: int) -> None:
        self.base, self.n_stride = base, n_stride
        self.shape = (cout, 1, 1, cin)

    def tile_loads(self, c, n0: int, n1: int, k0: int):
        """A function of the weight slot's first row and ``pop`` giving the LOADs of tile
        (n0..n1, k0): the first pops a C2L token if ``pop``, the last pushes an L2C one."""
        R, C = c.R, c.C
        zeros = c.zero_row() if n1 - n0 < C else None
        dram = self.base + n0 * self.n_stride + k0
        length = min(R, self.shape[3] - k0)

        def loads(sram: int, pop: bool) -> list[Instruction]:
            fill = [] if zeros is None else [isa.load(mem="spad", sram=sram, dram=zeros, y_size=C,
                                                      x_size=1, y_stride=0, length=R)]
            unit = fill + [isa.load(mem="spad", sram=sram, dram=dram, y_size=n1 - n0, x_size=1,
                                    y_stride=self.n_stride if n1 - n0 > 1 else 0, length=length,
                                    push_next=1)]
            if pop:
                unit[0] = unit[0].replace(pop_next=1)
            return unit
        return loads

    def __repr__(self) -> str:
        return f"DramWeights(base={self.base}, n_stride={self.n_stride}, shape={self.shape})"


class GemmSchedule:
    """The GEMM schedule, mixed into the compiler (it uses ``cfg``, ``R``, ``C``,
    ``m_max``, ``const``, ``emit``, ``check``, ``param_load`` and the ISA limits)."""

    def gemm_layer(self, node: QNode, layer_id: int, src, out, wt,
                   geometry: tuple[int, int, int], stride: tuple[int, int],
                   pad: tuple[int, int], groups: int, packed: bool,
                   src_stride: int | None = None) -> int:
        """Emit one conv or linear layer; returns its MAC slots.

        ``wt``: int8 weights [Cout, KH, KW, Cin/groups], or weights that are an activation
        in DRAM (:class:`DramWeights`: a matmul's stationary operand, 1x1, ungrouped);
        ``geometry``: (Cin, H, W) of the operand as the layer reads it; ``packed``: reduce
        over (kw, channel) runs of a row-padded operand (:meth:`sw.ops.conv.ConvOp.packed`);
        ``src_stride``: bytes between the operand's pixels when not ``Cin`` (a view of
        every ``src_stride``-th row, as a head of a [T, H*D] tensor). ``node.attrs`` holds
        the per-channel ``bias_q``, ``mult`` and ``shift``.
        """
        cfg, R, C = self.cfg, self.R, self.C
        a = node.attrs
        cin, h, w = geometry
        kh, kw = wt.shape[1], wt.shape[2]
        cout = wt.shape[0]
        oc, oh_n, ow_n = out.geometry
        assert oc == cout
        sh, sw = stride
        ph, pw = pad
        self.check_gemm(node, geometry, ow_n, stride, pad, oh_n=oh_n)
        nt = _ceil(cout, C)

        # Weight tiles: for each n-tile the structurally non-zero (kh, kw, chunk) blocks.
        keys = reduction_tiles(cin, cout, kh, kw, groups, packed, R, C)
        # For each n-tile, a weight tile per chunk, and ``tile_loads(tile, sram, pop)``: its
        # LOADs into the weight slot at row ``sram``, the first popping a token if ``pop``,
        # the last pushing one.
        if isinstance(wt, DramWeights):
            loaders = [[wt.tile_loads(self, j * C, min(cout, (j + 1) * C), c0)
                        for dy, dx, c0 in tile_keys] for j, tile_keys in enumerate(keys)]

            def tile_loads(loads, sram: int, pop: bool) -> list[Instruction]:
                return loads(sram, pop)
        else:
            # The layer's blocks in emission order, placed one after another in one go; a
            # tile is its address.
            addrs = self.const_blocks(weight_blocks(wt, keys, cin, groups, packed, R, C))
            loaders, pos = [], 0
            for tile_keys in keys:
                loaders.append(addrs[pos:pos + len(tile_keys)])
                pos += len(tile_keys)
            made: dict[tuple[int, int, bool], list[Instruction]] = {}

            def tile_loads(addr: int, sram: int, pop: bool) -> list[Instruction]:
                # Made once per (slot, token): a tile is loaded once per block of rows.
                insns = made.get((addr, sram, pop))
                if insns is None:
                    insns = made[addr, sram, pop] = [isa.load(
                        mem=_SPAD, sram=sram, dram=addr, y_size=C, x_size=1, y_stride=R,
                        length=R, pop_next=int(pop), push_next=1)]
                return insns
        zp_in = src.q.zero_point
        # A vector of zero points, read with zero strides when a block is all border.
        zp_row = self.const(np.full(R, zp_in, np.int8).tobytes())

        # Reduction chunks: a key per (kh, kw or -1 for packed runs, channel offset).
        chunk_keys = sorted({k for tile_keys in keys for k in tile_keys})
        chunk_pos = {k: i for i, k in enumerate(chunk_keys)}
        # A tile's keys are in ascending order (reduction_tiles), so are its chunk indices.
        tile_chunks = [[chunk_pos[k] for k in tk] for tk in keys]
        loader_of = [dict(zip(tc, tl)) for tc, tl in zip(tile_chunks, loaders)]
        plan = self.plan_gemm(oh_n, ow_n, nt, len(chunk_keys), [len(tk) for tk in keys])
        rows_per_block, ng, kg = plan
        lo, hi = node.clamp
        # Scratchpad: two activation groups of kg chunks x M rows, then two weight slots.
        m_blk = rows_per_block * ow_n
        a_group = [0, kg * m_blk]
        w_slot = [2 * kg * m_blk, 2 * kg * m_blk + C]
        # Accumulator: two slots of ng tiles x M rows.
        acc_group = [0, ng * m_blk]

        def a_load(key, oh0, nrows, sram) -> list[Instruction]:
            dy, dx, c0 = key
            if dx < 0:
                return [self.packed_a_load(src.addr, cin, h, w + 2 * pw, kw, ow_n, oh0, nrows,
                                           dy, c0, sh, sw, ph, zp_in, zp_row, sram)]
            return self.conv_a_loads(src.addr, cin, h, w, ow_n, oh0, nrows, dy, dx, c0, sh, sw,
                                     ph, pw, zp_in, zp_row, sram, src_stride)

        # Output tiles whose parameters fit the parameter memory at once form a pass; passes
        # are separated by the same barrier as layers, so parameters are never overwritten
        # while a store still needs them.
        per_pass = cfg.param_groups
        emit = self.emit
        for j0 in range(0, nt, per_pass):
            j1 = min(nt, j0 + per_pass)
            loads = [isa.sync(queue="load", pop_next=1)]
            for j in range(j0, j1):
                sl = slice(j * C, min(cout, (j + 1) * C))
                loads.append(self.param_load(j - j0, a.bias_q.numpy()[sl],
                                             a.mult.numpy()[sl], a.shift.numpy()[sl]))
            self.emit(*loads)
            if j0 == 0:
                self.emit(isa.config(key="layer", value=layer_id))
            # First plan the activation groups ("k-groups") of the pass, then emit them, so
            # that each group's activation loads can be spread over the previous group's
            # weight loads: the next group streams in while this one computes.
            kgroups = []
            group_sizes: list[int] = []
            grp_idx = 0
            for oh0, nrows, group, k_groups in tile_groups(tile_chunks, j0, j1, oh_n,
                                                           rows_per_block, ng, kg):
                m = nrows * ow_n
                acc_base = acc_group[grp_idx % 2]
                # The accumulator slot was last used two groups ago: wait for its stores
                # (stores finish in order, so popping that many S2C tokens is enough).
                pops = group_sizes[grp_idx - 2] if grp_idx >= 2 else 0
                group_sizes.append(len(group))
                grp_idx += 1
                seen: set[int] = set()
                for q, kgrp in enumerate(k_groups):
                    slot = a_group[len(kgroups) % 2]
                    where = {ci: slot + p * m_blk for p, ci in enumerate(kgrp)}
                    gemms = []          # (tile, accumulator row, input row, LOADs, first, last)
                    for jj, j in enumerate(group):
                        # The tile's chunks in this group, in the tile's order (ascending, as
                        # the group's); a later group has more of them if the tile goes on.
                        mine = [ci for ci in kgrp if ci in loader_of[j]]
                        rest = tile_chunks[j][-1] > kgrp[-1]
                        for pos, ci in enumerate(mine):
                            first = j not in seen
                            seen.add(j)
                            gemms.append((j, acc_base + jj * m_blk, where[ci], loader_of[j][ci],
                                          first, pos == len(mine) - 1 and not rest))
                    stores = []
                    if q == len(k_groups) - 1:
                        for jj, j in enumerate(group):
                            n0 = j * C
                            stores.append(isa.store(
                                acc=acc_base + jj * m_blk,
                                dram=out.addr + oh0 * ow_n * out.pixel_stride + n0,
                                rows=m, stride=out.pixel_stride, length=min(C, cout - n0),
                                param=j - j0,
                                out_zp=out.q.zero_point, clamp_lo=lo, clamp_hi=hi,
                                pop_prev=1, push_prev=1))
                    kgroups.append(dict(
                        m=m, gemms=gemms, stores=stores, pops=pops if q == 0 else 0,
                        a_loads=[insn for ci in kgrp
                                 for insn in a_load(chunk_keys[ci], oh0, nrows, where[ci])]))

            g_idx = 0          # GEMMs so far: weight slot g % 2, C2L tokens
            t_idx = 0          # output tiles stored (one S2C token each)
            popped = 0
            carry: list[Instruction] = list(kgroups[0]["a_loads"]) if kgroups else []
            for k, K in enumerate(kgroups):
                nxt = list(kgroups[k + 1]["a_loads"]) if k + 1 < len(kgroups) else []
                spread = len(K["gemms"]) - 1        # weight loads after which they may go
                for _ in range(K["pops"]):
                    self.emit(isa.sync(queue="compute", pop_next=1))
                popped += K["pops"]
                for i, (j, acc, inp, wload, first, last) in enumerate(K["gemms"]):
                    g = g_idx % 2
                    # The weight LOADs push a token for the GEMM and, from the third GEMM, the
                    # first LOAD of the unit waits for GEMM g-2 to have read its slot.
                    if carry:
                        unit = carry + tile_loads(wload, w_slot[g], False)
                        if g_idx >= 2:
                            unit[0] = unit[0].replace(pop_next=1)
                    else:
                        unit = tile_loads(wload, w_slot[g], g_idx >= 2)
                    carry = []
                    emit(*unit)
                    # The next group's activations reuse the slot of the group before this one:
                    # safe once this group's second GEMM has its weights (GEMM g-2 has read).
                    if i >= 1 and nxt:
                        share = -(-len(nxt) // (spread - i + 1))
                        emit(*nxt[:share])
                        nxt = nxt[share:]
                    if first:
                        t_idx += 1
                    emit(isa.gemm(wgt=w_slot[g], inp=inp, acc=acc, m=K["m"],
                                       accumulate=0 if first else 1, pop_prev=1, push_prev=1,
                                       push_next=1 if last else 0))
                    g_idx += 1
                carry = nxt          # not placed (a group of one GEMM): before the next unit
                self.emit(*K["stores"])
            # Drain the leftover tokens and hand the barrier on: the S2C tokens of the stores
            # no later GEMM waited for, and the C2L tokens of the last two GEMMs.
            k = t_idx - popped
            for i in range(k):
                self.emit(isa.sync(queue="compute", pop_next=1, push_prev=1 if i == k - 1 else 0))
            for _ in range(min(g_idx, 2)):
                self.emit(isa.sync(queue="load", pop_next=1))
        return sum(len(tk) for tk in keys) * oh_n * ow_n * R * C

    def zero_row(self) -> int:
        """DRAM address of ``rows`` zero bytes (one constant per program)."""
        if self._zero_row is None:
            self._zero_row = self.const(bytes(self.R))
        return self._zero_row

    def check_gemm(self, node: QNode, geometry: tuple[int, int, int], ow_n: int,
                   stride: tuple[int, int], pad: tuple[int, int], oh_n: int | None = None) -> None:
        """Raise :class:`CompileError` naming ``node`` if a conv or linear layer of input
        ``geometry`` (Cin, H, W), output width ``ow_n`` (and height ``oh_n``, when known),
        ``stride`` and ``pad`` exceeds the ISA's LOAD fields or the accumulator slot.

        A LOAD strides over pixels only when an output row has more than one pixel, and
        over rows only when there is more than one output row: a linear layer (one pixel)
        of any width fits. Pixels or rows further apart than ``x_stride`` or ``y_stride``
        reach are loaded one output row per LOAD, the row's pixels as its ``y`` dimension
        (:meth:`conv_a_loads`), up to pixels ``y_stride`` bytes apart."""
        cin, h, w = geometry
        sw, (ph, pw) = stride[1], pad
        self.check(ph <= self.MAX_PAD and pw <= self.MAX_PAD, node,
                   f"padding {pad} is over {self.MAX_PAD} (the LOAD padding fields)")
        self.check(ow_n <= self.m_max, node, f"output width {ow_n} is over {self.m_max} rows of the "
                                             f"accumulator slot")
        if ow_n > 1:
            self.check(sw * cin <= self.MAX_Y_STRIDE, node,
                       f"input pixels {sw} x {cin} channels apart are over the "
                       f"{self.MAX_Y_STRIDE} bytes a LOAD can stride (LOAD.y_stride)")

    def plan_gemm(self, oh_n: int, ow_n: int, nt: int, n_chunks: int,
                  chunks_per_tile: list[int]) -> tuple[int, int, int]:
        """Pick (output rows per block, output tiles per group, chunks per activation group).

        A bigger block amortizes each GEMM's fixed cost; a bigger group reuses each loaded
        activation chunk for more output tiles. A rough cost model (cycles of compute and
        of DMA vectors, which overlap) chooses among the block sizes that fit.
        """
        cfg, C = self.cfg, self.C
        ng_cap = max(1, cfg.token_queue_depth // 2)   # stores in flight stay within a token queue
        best = None
        per_gemm = 8                                  # fixed cycles of a GEMM and its loads
        for rows in range(1, oh_n + 1):
            m = rows * ow_n
            if m > self.m_max:
                break
            ng = max(1, min(nt, ng_cap, (cfg.acc_depth // 2) // m))
            kg = max(1, min(n_chunks, (cfg.spad_depth - 2 * C) // (2 * m)))
            # Activation groups of equal size rather than full ones and a remainder: a small
            # last group gives the next block's loads too few GEMMs to hide behind (ResNet-18
            # at 224x224: 8.43 M cycles instead of 8.70 M, the performance model).
            kg = _ceil(n_chunks, _ceil(n_chunks, kg))
            if 2 * kg * m + 2 * C > cfg.spad_depth or 2 * ng * m > cfg.acc_depth:
                continue
            blocks = -(-oh_n // rows)
            gemms = sum(chunks_per_tile)
            compute = gemms * (m + per_gemm)
            groups = -(-nt // ng)
            a_vectors = groups * min(n_chunks, max(chunks_per_tile) * ng) * m
            loads = a_vectors + gemms * (C + per_gemm)
            cost = blocks * max(compute, loads)
            if best is None or cost < best[0]:
                best = (cost, rows, ng, kg)
        if best is None:
            raise CompileError(f"output width {ow_n} does not fit the accumulator")
        return best[1], best[2], best[3]

    def packed_a_load(self, base, cin, h, wp, kw, ow_n, oh0, nrows, dy, f0, sh, sw, ph, zp,
                      zp_row, sram, **deps) -> Instruction:
        """Rows of (kw, channel) runs from a row-padded input: kernel row dy, offset f0."""
        R = self.R
        top, bottom = outside(nrows, oh0 * sh + dy - ph, sh, h)
        vy = nrows - top - bottom
        if vy <= 0:
            return isa.load(mem=_SPAD, sram=sram, dram=zp_row, y_size=nrows, x_size=ow_n,
                            y_stride=0, x_stride=0, length=R, pad_value=zp, **deps)
        ih_top = (oh0 + top) * sh + dy - ph
        return isa.load(mem=_SPAD, sram=sram, dram=base + ih_top * wp * cin + f0, y_size=vy,
                        x_size=ow_n, y_stride=sh * wp * cin if vy > 1 else 0,
                        x_stride=sw * cin if ow_n > 1 else 0,
                        length=min(R, kw * cin - f0), pad_top=top, pad_bottom=bottom,
                        pad_value=zp, **deps)

    def conv_a_loads(self, base, cin, h, w, ow_n, oh0, nrows, dy, dx, c0, sh, sw, ph, pw, zp,
                     zp_row, sram, ps=None) -> list[Instruction]:
        """The LOADs of one activation row per output pixel of rows [oh0, oh0+nrows),
        kernel tap (dy, dx): one strided LOAD, or, where input pixels or rows are further
        apart than ``x_stride`` or ``y_stride`` reach, one LOAD per output row with the
        row's pixels as its ``y`` dimension (the row's border as its top and bottom
        padding) and one zero-point LOAD per run of output rows in the border. ``ps``:
        bytes between input pixels (default ``cin``)."""
        R = self.R
        ps = cin if ps is None else ps
        top, bottom = outside(nrows, oh0 * sh + dy - ph, sh, h)
        left, right = outside(ow_n, dx - pw, sw, w)
        vy, vx = nrows - top - bottom, ow_n - left - right
        length = min(R, cin - c0)

        def border(sram, n):
            return isa.load(mem=_SPAD, sram=sram, dram=zp_row, y_size=n, x_size=ow_n,
                            y_stride=0, x_stride=0, length=R, pad_value=zp)
        if vy <= 0 or vx <= 0:
            return [border(sram, nrows)]
        first = base + (((oh0 + top) * sh + dy - ph) * w + left * sw + dx - pw) * ps + c0
        y_stride = sh * w * ps if vy > 1 else 0
        x_stride = sw * ps if vx > 1 else 0
        if y_stride <= self.MAX_Y_STRIDE and x_stride <= self.MAX_X_STRIDE:
            return [isa.load(mem=_SPAD, sram=sram, dram=first, y_size=vy, x_size=vx,
                             y_stride=y_stride, x_stride=x_stride, length=length,
                             pad_top=top, pad_bottom=bottom, pad_left=left, pad_right=right,
                             pad_value=zp)]
        loads = []
        if top:
            loads.append(border(sram, top))
        for r in range(vy):
            loads.append(isa.load(mem=_SPAD, sram=sram + (top + r) * ow_n,
                                  dram=first + r * sh * w * ps, y_size=vx, x_size=1,
                                  y_stride=x_stride, x_stride=0, length=length, pad_top=left,
                                  pad_bottom=right, pad_value=zp))
        if bottom:
            loads.append(border(sram + (top + vy) * ow_n, bottom))
        return loads

