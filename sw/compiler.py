"""The compiler: a :class:`sw.quant.QuantizedModel` to an NPU :class:`sw.program.Program`.

Activations live in DRAM as int8 NHWC (a pixel's channels contiguous). Layers
lower as follows (docs/compiler.md has the details):

* **conv and linear** are implicit GEMMs. The reduction runs over (kh, kw,
  channel chunk of ``rows``); for each chunk a strided 2D LOAD gathers one
  activation row per output pixel straight from the input tensor, with the
  convolution's border as LOAD padding filled with the input zero point (no
  im2col copy). Weight tiles are pre-arranged in DRAM, one ``cols x rows`` block
  per (output tile, chunk); grouped and depthwise convolutions use
  block-diagonal tiles and skip the chunks outside each group. Activation and
  weight slots, and accumulator tiles, are double-buffered with tokens.
* **max/avg pooling, global average pooling, residual add and standalone ReLU**
  run on the ALU over accumulator rows, then through the store path.
* **flatten** is free (the following linear layer's weights are permuted to
  NHWC order).

Between layers a token barrier orders every STORE of one layer before any LOAD
of the next. Each layer is tagged with ``CONFIG layer=<id>`` for per-layer
counts. The output is deterministic for a given model and configuration.
"""

from __future__ import annotations

import numpy as np

from hw.config import NPUConfig
from hw import isa
from hw.isa import Instruction

from .kernels import DramImage
from .program import Program, TensorInfo, layout_regions
from .quant import QNode, QuantizedModel

__all__ = ["compile", "CompileError"]

# Field limits of the ISA that bound what one instruction can do.
_MAX_PAD = isa.field_max(isa.Opcode.LOAD, "pad_top")           # padding vectors per side
_MAX_Y_STRIDE = isa.field_max(isa.Opcode.LOAD, "y_stride")
_MAX_X_STRIDE = isa.field_max(isa.Opcode.LOAD, "x_stride")
_MAX_VECTORS = isa.field_max(isa.Opcode.LOAD, "y_size")        # rows one LOAD brings in
_G = isa.PARAM_GROUP_ROWS


class CompileError(ValueError):
    """The model cannot be lowered to this configuration; the message names the layer."""


def _ceil(a: int, b: int) -> int:
    return -(-a // b)


class _Tensor:
    def __init__(self, name, shape, q, addr=None, chw=None, pad_w=0):
        self.name = name
        self.shape = tuple(shape)      # PyTorch layout per sample
        self.q = q
        self.addr = addr
        self.chw = chw                 # (C, H, W) when this is a flatten of a 3-D tensor
        self.pad_w = pad_w             # zero-point columns each side of a row (the input only)

    @property
    def nbytes(self):
        if len(self.shape) == 3 and self.pad_w:
            c, h, w = self.shape
            return c * h * (w + 2 * self.pad_w)
        return int(np.prod(self.shape))

    @property
    def geometry(self):
        """(C, H, W) of the bytes in DRAM (a flat tensor is C channels of one pixel)."""
        if len(self.shape) == 3:
            return self.shape
        return (self.shape[0], 1, 1)


class _Compiler:
    def __init__(self, config: NPUConfig, model: QuantizedModel):
        self.cfg = config
        self.model = model
        self.img = DramImage()
        self.insns: list[Instruction] = []
        self.layers: list[dict] = []
        self.tensors: dict[str, _Tensor] = {}
        self.free: list[tuple[int, int]] = []   # (addr, size) of reusable activation buffers
        R, C = config.rows, config.cols
        self.R, self.C = R, C
        self.m_max = min(config.acc_depth // 2, (config.spad_depth - 2 * C) // 2, _MAX_VECTORS)
        if self.m_max < 1:
            raise CompileError(f"configuration {config.describe()} has too little scratchpad")

    # ------------------------------------------------------------------ memory
    def alloc(self, nbytes: int) -> int:
        nbytes = _ceil(max(nbytes, 1), 64) * 64
        for i, (addr, size) in enumerate(self.free):
            if size >= nbytes:
                self.free.pop(i)
                if size > nbytes:
                    self.free.append((addr + nbytes, size - nbytes))
                return addr
        return self.img.alloc(nbytes)

    def release(self, addr: int, nbytes: int) -> None:
        self.free.append((addr, _ceil(max(nbytes, 1), 64) * 64))

    def const(self, data: bytes) -> int:
        return self.img.alloc(len(data), data)

    # ------------------------------------------------------------------ helpers
    def emit(self, *insns: Instruction) -> None:
        self.insns.extend(insns)

    def param_load(self, group: int, bias, mult, shift) -> Instruction:
        C = self.C
        rows = np.zeros((_G, C), "<i4")
        for r, v in enumerate((bias, mult, shift)):
            v = np.broadcast_to(np.asarray(v, dtype=np.int64), (C,)) if np.ndim(v) == 0 else np.asarray(v)
            rows[r, :len(v)] = v
        addr = self.const(rows.tobytes())
        return isa.load(mem="param", sram=_G * group, dram=addr, y_size=_G, x_size=1,
                        y_stride=isa.PARAM_ELEM_BYTES * C, length=C)

    def check(self, cond: bool, node: QNode, message: str) -> None:
        if not cond:
            raise CompileError(f"layer {node.name} ({node.op} at {node.where}): {message}")

    # ------------------------------------------------------------------ the whole model
    def run(self) -> Program:
        nodes = self.model.nodes
        last_use: dict[str, int] = {}
        for i, node in enumerate(nodes):
            for src in node.inputs:
                last_use[src] = i
        last_use[self.model.output] = len(nodes)
        # Aliases (flatten) keep their base alive.
        base_of: dict[str, str] = {}
        for i, node in enumerate(nodes):
            if node.op == "flatten":
                base = base_of.get(node.inputs[0], node.inputs[0])
                base_of[node.name] = base
                last_use[base] = max(last_use.get(base, 0), last_use.get(node.name, i))

        self.emit(isa.sync(queue="compute", push_prev=1))   # the first layer's barrier token
        inp = nodes[0]
        t = _Tensor(inp.name, inp.shape, inp.out, pad_w=self.input_padding())
        t.addr = self.alloc(t.nbytes)
        self.tensors[inp.name] = t
        layer_id = 0
        for i, node in enumerate(nodes[1:], start=1):
            src = self.tensors[node.inputs[0]]
            if node.op == "flatten":
                chw = src.shape if len(src.shape) == 3 else src.chw
                self.tensors[node.name] = _Tensor(node.name, node.shape, node.out, src.addr, chw)
                continue
            out = _Tensor(node.name, node.shape, node.out)
            out.addr = self.alloc(out.nbytes)
            self.tensors[node.name] = out
            layer_id += 1
            n_before = len(self.insns)
            macs = self.lower(node, layer_id, src, out)
            self.layers.append({"id": layer_id, "name": node.name, "op": node.op,
                                "where": node.where, "shape": list(node.shape),
                                "macs": macs, "instructions": len(self.insns) - n_before})
            # Free buffers whose last reader was this layer.
            for name in set(node.inputs):
                base = base_of.get(name, name)
                if last_use.get(base, -1) <= i and base != self.model.output:
                    bt = self.tensors[base]
                    if bt.addr is not None and base != nodes[0].name:
                        self.release(bt.addr, bt.nbytes)
        self.emit(isa.finish())
        blob = isa.words_to_bytes(ins.encode() for ins in self.insns)
        insn_base = self.img.alloc(len(blob), blob)
        out_t = self.tensors[self.model.output]
        in_t = self.tensors[nodes[0].name]

        def info(t: _Tensor) -> TensorInfo:
            return TensorInfo(t.name, t.addr, t.shape, t.q.scale, t.q.zero_point,
                              "nhwc" if len(t.shape) == 3 else "flat", t.pad_w)
        dram, inp, outp = self.img.to_array(), info(in_t), info(out_t)
        # Regions: the data segments (weights, parameters, instructions) are constants.
        regions = layout_regions(len(dram), [(a, len(d)) for a, d in self.img.segments], inp, outp)
        return Program(config=self.cfg, dram=dram, insn_base=insn_base,
                       insn_count=len(self.insns), input=inp, output=outp,
                       layers=self.layers, regions=regions)

    def packed(self, node: QNode, src_shape) -> bool:
        """Whether a convolution reduces over (kw, channel) runs instead of channel chunks.

        With few input channels (an image's 1 or 3), chunks of one pixel's channels
        waste most of the array's rows; the taps of one kernel row are contiguous in
        NHWC when the row is stored with its border, so they pack into full chunks.
        """
        if node.op != "conv" or node.attrs["groups"] != 1 or len(src_shape) != 3:
            return False
        cin = src_shape[0]
        kw = node.attrs["w_q"].shape[3]
        return kw > 1 and 2 * cin <= self.R and node.attrs["padding"][1] <= _MAX_PAD

    def input_padding(self) -> int:
        """Columns of border to store the model input with (for a packed first convolution)."""
        nodes = self.model.nodes
        users = [n for n in nodes if nodes[0].name in n.inputs]
        if len(users) == 1 and self.packed(users[0], nodes[0].shape):
            return users[0].attrs["padding"][1]
        return 0

    def lower(self, node: QNode, layer_id: int, src: _Tensor, out: _Tensor) -> int:
        if node.op in ("conv", "linear"):
            return self.gemm_layer(node, layer_id, src, out)
        if node.op in ("maxpool", "avgpool"):
            self.pool_layer(node, layer_id, src, out)
        elif node.op == "gap":
            self.gap_layer(node, layer_id, src, out)
        elif node.op == "add":
            self.add_layer(node, layer_id, src, self.tensors[node.inputs[1]], out)
        elif node.op in ("relu", "relu6"):
            self.relu_layer(node, layer_id, src, out)
        else:  # pragma: no cover - the quantizer produces only these
            raise CompileError(f"layer {node.name}: no lowering for {node.op}")
        return 0

    # ------------------------------------------------------------------ conv / linear
    def gemm_layer(self, node: QNode, layer_id: int, src: _Tensor, out: _Tensor) -> int:
        cfg, R, C = self.cfg, self.R, self.C
        a = node.attrs
        w_q = a["w_q"].numpy()
        if node.op == "linear":
            cin, h, w = src.geometry
            if src.chw is not None:
                # PyTorch flattened C,H,W; the bytes in DRAM are H,W,C.
                c0, h0, w0 = src.chw
                perm = np.arange(c0 * h0 * w0).reshape(c0, h0, w0).transpose(1, 2, 0).reshape(-1)
                w_q = w_q[:, perm]
            cin, h, w = w_q.shape[1], 1, 1
            kh = kw = 1
            stride = (1, 1)
            pad = (0, 0)
            groups = 1
            wt = w_q.reshape(w_q.shape[0], 1, 1, cin)          # [Cout, KH, KW, Cin_g]
        else:
            cin, h, w = src.geometry
            kh, kw = w_q.shape[2], w_q.shape[3]
            stride, pad, groups = a["stride"], a["padding"], a["groups"]
            wt = w_q.transpose(0, 2, 3, 1)                      # [Cout, KH, KW, Cin_g]
        cout = w_q.shape[0]
        oc, oh_n, ow_n = out.geometry
        assert oc == cout
        sh, sw = stride
        ph, pw = pad
        self.check(ph <= _MAX_PAD and pw <= _MAX_PAD, node,
                   f"padding {pad} is over {_MAX_PAD} (the LOAD padding fields)")
        self.check(ow_n <= self.m_max, node, f"output width {ow_n} is over {self.m_max} rows of the "
                                             f"accumulator slot")
        self.check(sh * (w + 2 * pw) * cin <= _MAX_Y_STRIDE, node,
                   "row stride too large for LOAD.y_stride")
        self.check(sw * cin <= _MAX_X_STRIDE, node, "pixel stride too large for LOAD.x_stride")
        cin_g, cout_g = cin // groups, cout // groups
        nt = _ceil(cout, C)

        packed = node.op == "conv" and src.pad_w == pw and pw > 0 and self.packed(node, src.shape)
        # Weight tiles: for each n-tile the structurally non-zero (kh, kw, chunk) blocks.
        chunks = list(range(0, cin, R))
        tiles: list[list[tuple[int, int, int, int]]] = []   # (kh, kw, c0, dram addr)
        if packed:
            # Reduction over f = kw * cin + c for each kernel row; dx is -1 in the tile list.
            run = kw * cin
            for j in range(nt):
                n0, n1 = j * C, min(cout, (j + 1) * C)
                tl = []
                for dy in range(kh):
                    flat = wt[n0:n1, dy].reshape(n1 - n0, run)       # [n, kw*cin], kw major
                    for f0 in range(0, run, R):
                        blk = np.zeros((C, R), np.int8)
                        blk[:n1 - n0, :min(R, run - f0)] = flat[:, f0:f0 + R]
                        tl.append((dy, -1, f0, self.const(blk.tobytes())))
                tiles.append(tl)
        for j in range(nt if not packed else 0):
            n0, n1 = j * C, min(cout, (j + 1) * C)
            groups_here = set(range(n0 // cout_g, (n1 - 1) // cout_g + 1))
            tl = []
            for dy in range(kh):
                for dx in range(kw):
                    for c0 in chunks:
                        c1 = min(cin, c0 + R)
                        if not any(c0 // cin_g <= g <= (c1 - 1) // cin_g for g in groups_here):
                            continue
                        blk = np.zeros((C, R), np.int8)
                        for o in range(n0, n1):
                            g = o // cout_g
                            lo, hi = max(c0, g * cin_g), min(c1, (g + 1) * cin_g)
                            if lo < hi:
                                blk[o - n0, lo - c0:hi - c0] = wt[o, dy, dx, lo - g * cin_g:hi - g * cin_g]
                        tl.append((dy, dx, c0, self.const(blk.tobytes())))
            tiles.append(tl)
        zp_in = src.q.zero_point
        # A vector of zero points, read with zero strides when a block is all border.
        zp_row = self.const(np.full(R, zp_in, np.int8).tobytes())

        # Reduction chunks: a key per (kh, kw or -1 for packed runs, channel offset).
        chunk_keys = sorted({(dy, dx, c0) for tl in tiles for dy, dx, c0, _ in tl})
        chunk_pos = {k: i for i, k in enumerate(chunk_keys)}
        plan = self.plan_gemm(oh_n, ow_n, nt, len(chunk_keys), [len(tl) for tl in tiles])
        rows_per_block, ng, kg = plan
        lo, hi = node.clamp
        # Scratchpad: two activation groups of kg chunks x M rows, then two weight slots.
        m_blk = rows_per_block * ow_n
        a_group = [0, kg * m_blk]
        w_slot = [2 * kg * m_blk, 2 * kg * m_blk + C]
        # Accumulator: two slots of ng tiles x M rows.
        acc_group = [0, ng * m_blk]

        def a_load(key, oh0, nrows, sram, **pop):
            dy, dx, c0 = key
            if dx < 0:
                return self.packed_a_load(src.addr, cin, h, w + 2 * pw, kw, ow_n, oh0, nrows, dy,
                                          c0, sh, sw, ph, zp_in, zp_row, sram, **pop)
            return self.conv_a_load(src.addr, cin, h, w, ow_n, oh0, nrows, dy, dx, c0, sh, sw,
                                    ph, pw, zp_in, zp_row, sram, **pop)

        # Output tiles whose parameters fit the parameter memory at once form a pass; passes
        # are separated by the same barrier as layers, so parameters are never overwritten
        # while a store still needs them.
        per_pass = cfg.param_groups
        for j0 in range(0, nt, per_pass):
            j1 = min(nt, j0 + per_pass)
            loads = [isa.sync(queue="load", pop_next=1)]
            for j in range(j0, j1):
                sl = slice(j * C, min(cout, (j + 1) * C))
                loads.append(self.param_load(j - j0, a["bias_q"].numpy()[sl],
                                             a["mult"].numpy()[sl], a["shift"].numpy()[sl]))
            self.emit(*loads)
            if j0 == 0:
                self.emit(isa.config(key="layer", value=layer_id))
            # First plan the activation groups ("k-groups") of the pass, then emit them, so
            # that each group's activation loads can be spread over the previous group's
            # weight loads: the next group streams in while this one computes.
            kgroups = []
            group_sizes: list[int] = []
            grp_idx = 0
            for oh0 in range(0, oh_n, rows_per_block):
                nrows = min(rows_per_block, oh_n - oh0)
                m = nrows * ow_n
                for n_lo in range(j0, j1, ng):
                    group = list(range(n_lo, min(j1, n_lo + ng)))
                    acc_base = acc_group[grp_idx % 2]
                    # The accumulator slot was last used two groups ago: wait for its stores
                    # (stores finish in order, so popping that many S2C tokens is enough).
                    pops = group_sizes[grp_idx - 2] if grp_idx >= 2 else 0
                    group_sizes.append(len(group))
                    grp_idx += 1
                    needed = sorted({chunk_pos[(dy, dx, c0)] for j in group
                                     for dy, dx, c0, _ in tiles[j]})
                    k_groups = [needed[i:i + kg] for i in range(0, len(needed), kg)]
                    later = [set() for _ in k_groups]
                    for q in range(len(k_groups) - 2, -1, -1):
                        later[q] = later[q + 1] | set(k_groups[q + 1])
                    seen: set[int] = set()
                    for q, kgrp in enumerate(k_groups):
                        slot = a_group[len(kgroups) % 2]
                        where = {ci: slot + p * m_blk for p, ci in enumerate(kgrp)}
                        gemms = []
                        for jj, j in enumerate(group):
                            mine = [(ci, waddr) for dy, dx, c0, waddr in tiles[j]
                                    for ci in [chunk_pos[(dy, dx, c0)]] if ci in where]
                            rest = any(chunk_pos[(dy, dx, c0)] in later[q] for dy, dx, c0, _ in tiles[j])
                            for pos, (ci, waddr) in enumerate(mine):
                                first = j not in seen
                                seen.add(j)
                                gemms.append(dict(j=j, acc=acc_base + jj * m_blk, inp=where[ci],
                                                  waddr=waddr, first=first,
                                                  last=pos == len(mine) - 1 and not rest))
                        stores = []
                        if q == len(k_groups) - 1:
                            for jj, j in enumerate(group):
                                n0 = j * C
                                stores.append(isa.store(
                                    acc=acc_base + jj * m_blk, dram=out.addr + oh0 * ow_n * cout + n0,
                                    rows=m, stride=cout, length=min(C, cout - n0), param=j - j0,
                                    out_zp=out.q.zero_point, clamp_lo=lo, clamp_hi=hi,
                                    pop_prev=1, push_prev=1))
                        kgroups.append(dict(
                            m=m, gemms=gemms, stores=stores, pops=pops if q == 0 else 0,
                            a_loads=[a_load(chunk_keys[ci], oh0, nrows, where[ci]) for ci in kgrp]))

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
                for i, gm in enumerate(K["gemms"]):
                    g = g_idx % 2
                    unit = carry + [isa.load(mem="spad", sram=w_slot[g], dram=gm["waddr"], y_size=C,
                                             x_size=1, y_stride=R, length=R, push_next=1)]
                    carry = []
                    if g_idx >= 2:
                        unit[0] = unit[0].replace(pop_next=1)
                    self.emit(*unit)
                    # The next group's activations reuse the slot of the group before this one:
                    # safe once this group's second GEMM has its weights (GEMM g-2 has read).
                    if i >= 1 and nxt:
                        share = -(-len(nxt) // (spread - i + 1))
                        self.emit(*nxt[:share])
                        nxt = nxt[share:]
                    deps = dict(pop_prev=1, push_prev=1)
                    if gm["first"]:
                        t_idx += 1
                    if gm["last"]:
                        deps["push_next"] = 1
                    self.emit(isa.gemm(wgt=w_slot[g], inp=gm["inp"], acc=gm["acc"], m=K["m"],
                                       accumulate=0 if gm["first"] else 1, **deps))
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
        return sum(len(tl) for tl in tiles) * oh_n * ow_n * R * C

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
        ih = [oh * sh + dy - ph for oh in range(oh0, oh0 + nrows)]
        top = sum(1 for v in ih if v < 0)
        bottom = sum(1 for v in ih if v >= h)
        vy = nrows - top - bottom
        if vy <= 0:
            return isa.load(mem="spad", sram=sram, dram=zp_row, y_size=nrows, x_size=ow_n,
                            y_stride=0, x_stride=0, length=R, pad_value=zp, **deps)
        return isa.load(mem="spad", sram=sram, dram=base + ih[top] * wp * cin + f0, y_size=vy,
                        x_size=ow_n, y_stride=sh * wp * cin, x_stride=sw * cin,
                        length=min(R, kw * cin - f0), pad_top=top, pad_bottom=bottom,
                        pad_value=zp, **deps)

    def conv_a_load(self, base, cin, h, w, ow_n, oh0, nrows, dy, dx, c0, sh, sw, ph, pw, zp,
                    zp_row, sram, **deps) -> Instruction:
        """One activation row per output pixel of rows [oh0, oh0+nrows), kernel tap (dy, dx)."""
        R = self.R
        ih = [oh * sh + dy - ph for oh in range(oh0, oh0 + nrows)]
        iw = [ow * sw + dx - pw for ow in range(ow_n)]
        top = sum(1 for v in ih if v < 0)
        bottom = sum(1 for v in ih if v >= h)
        left = sum(1 for v in iw if v < 0)
        right = sum(1 for v in iw if v >= w)
        vy, vx = nrows - top - bottom, ow_n - left - right
        length = min(R, cin - c0)
        if vy <= 0 or vx <= 0:
            return isa.load(mem="spad", sram=sram, dram=zp_row, y_size=nrows, x_size=ow_n,
                            y_stride=0, x_stride=0, length=R, pad_value=zp, **deps)
        first = base + (ih[top] * w + iw[left]) * cin + c0
        return isa.load(mem="spad", sram=sram, dram=first, y_size=vy, x_size=vx,
                        y_stride=sh * w * cin, x_stride=sw * cin, length=length,
                        pad_top=top, pad_bottom=bottom, pad_left=left, pad_right=right,
                        pad_value=zp, **deps)

    # ------------------------------------------------------------------ ALU layers
    def chunk(self, layer_id, first, loads, params, alus, stores):
        """One serialized load -> ALU -> store step; leaves one C2L token behind."""
        loads = list(loads)
        if first:
            loads = loads[:1] + params + loads[1:]
        loads[0] = loads[0].replace(pop_next=1)
        loads[-1] = loads[-1].replace(push_next=loads[-1].push_next | 1)
        self.emit(*loads)
        if first:
            self.emit(isa.config(key="layer", value=layer_id))
        if not alus:
            alus = [isa.sync(queue="compute")]
        alus = list(alus)
        alus[0] = alus[0].replace(pop_prev=1)
        if stores:
            alus[-1] = alus[-1].replace(push_next=1)
            stores = list(stores)
            stores[0] = stores[0].replace(pop_prev=1)
            stores[-1] = stores[-1].replace(push_prev=1)
            self.emit(*alus, *stores, isa.sync(queue="compute", pop_next=1, push_prev=1))
        else:
            alus[-1] = alus[-1].replace(push_prev=1)
            self.emit(*alus)

    def blocks(self, channels: int, total: int, per: int):
        """Channel tiles of ``cols`` x runs of at most ``per`` of ``total`` rows, in order:
        ``(first, c0, length, start, n)``; ``first`` marks the layer's first chunk."""
        first = True
        for c0 in range(0, channels, self.C):
            for start in range(0, total, per):
                yield first, c0, min(self.C, channels - c0), start, min(per, total - start)
                first = False

    def acc_load(self, sram, dram, y_size, y_stride, x_size, x_stride, length, **kw):
        return isa.load(mem="acc", sram=sram, dram=dram, y_size=y_size, x_size=x_size,
                        y_stride=y_stride, x_stride=x_stride, length=length, **kw)

    def identity_params(self, group=0):
        return self.param_load(group, 0, 1 << 30, 1)

    def pool_layer(self, node, layer_id, src, out):
        a = node.attrs
        ch, h, w = src.geometry
        _, oh_n, ow_n = out.geometry
        (k_h, k_w), (sh, sw), (ph, pw) = a["kernel"], a["stride"], a["padding"]
        is_max = node.op == "maxpool"
        wp = (ow_n - 1) * sw + k_w
        pad_value = -128 if is_max else node.attrs["zp_in"]
        op = isa.AluOp.MAX if is_max else isa.AluOp.ADD
        params = [self.identity_params(0) if is_max else self.param_load(0, 0, a["mult"], a["shift"])]
        # Output rows per block so that the input rows and the outputs fit the accumulator.
        per = 1
        while per < oh_n and ((per) * sh + k_h) * wp + (per + 1) * ow_n <= self.cfg.acc_depth:
            per += 1
        self.check(((per - 1) * sh + k_h) * wp + per * ow_n <= self.cfg.acc_depth, node,
                   "a pooling window row does not fit the accumulator")
        for first, c0, length, oh0, nout in self.blocks(ch, oh_n, per):
            ny = (nout - 1) * sh + k_h
            ih0 = oh0 * sh - ph
            top = max(0, -ih0)
            first_ih = max(0, ih0)
            last_ih = min(h - 1, ih0 + ny - 1)
            vy = last_ih - first_ih + 1
            bottom = ny - top - vy
            vx = min(w, wp - pw)
            right = wp - pw - vx
            self.check(max(top, bottom, pw, right) <= _MAX_PAD and vy > 0, node,
                       f"pooling padding over {_MAX_PAD} is not supported")
            out_base = ny * wp
            load = self.acc_load(0, src.addr + first_ih * w * ch + c0, vy, w * ch, vx, ch,
                                 length, pad_top=top, pad_bottom=bottom, pad_left=pw,
                                 pad_right=right, pad_value=pad_value)
            alus = []
            for r in range(nout):
                for dy in range(k_h):
                    for dx in range(k_w):
                        first_tap = dy == 0 and dx == 0
                        alus.append(isa.alu(op=isa.AluOp.MOV if first_tap else op,
                                            dst=out_base + r * ow_n,
                                            src=(r * sh + dy) * wp + dx, count=ow_n,
                                            dst_stride=1, src_stride=sw))
            store = isa.store(acc=out_base, dram=out.addr + oh0 * ow_n * ch + c0,
                              rows=nout * ow_n, stride=ch, length=length, param=0,
                              out_zp=0, clamp_lo=-128, clamp_hi=127)
            self.chunk(layer_id, first, [load], params, alus, [store])

    def gap_layer(self, node, layer_id, src, out):
        a = node.attrs
        ch, h, w = src.geometry
        n_pix = h * w
        per = min(self.cfg.acc_depth - 1, _MAX_VECTORS)
        params = [self.param_load(0, 0, a["mult"], a["shift"])]
        for first, c0, length, p0, n in self.blocks(ch, n_pix, per):
            load = self.acc_load(1, src.addr + p0 * ch + c0, n, ch, 1, 0, length)
            alus = []
            if p0 == 0:
                alus.append(isa.alu(op="mov", dst=0, src=1, count=1))
                if n > 1:
                    alus.append(isa.alu(op="add", dst=0, src=2, count=n - 1, src_stride=1))
            else:
                alus.append(isa.alu(op="add", dst=0, src=1, count=n, src_stride=1))
            stores = []
            if p0 + n == n_pix:
                stores = [isa.store(acc=0, dram=out.addr + c0, rows=1, stride=0, length=length,
                                    param=0, out_zp=0, clamp_lo=-128, clamp_hi=127)]
            self.chunk(layer_id, first, [load], params, alus, stores)

    def add_layer(self, node, layer_id, x1, x2, out):
        a = node.attrs
        ch, h, w = x1.geometry
        self.check(x1.geometry == x2.geometry, node, f"operand shapes {x1.shape} and {x2.shape} differ")
        n_pix = h * w
        # The second operand sits in the rows after the first, at a distance that is not a
        # multiple of acc_banks, so each row's two operands are in different banks and the
        # ALU adds a row per cycle (hw/sram.py interleaves rows over banks by low bits).
        per = min((self.cfg.acc_depth - 1) // 2, _MAX_VECTORS)
        lo, hi = node.clamp
        # (x1 - z1) a1 + (x2 - z2) a2 = x1 a1 + x2 a2 - (z1 a1 + z2 a2): the constant goes
        # to the store path's bias, so the ALU makes three passes instead of five.
        bias = -(a["zp1"] * a["a1"] + a["zp2"] * a["a2"])
        params = [self.param_load(0, bias, a["mult"], a["shift"])]
        for first, c0, length, p0, n in self.blocks(ch, n_pix, per):
            x2_row = n + (n % self.cfg.acc_banks == 0)
            loads = [self.acc_load(0, x1.addr + p0 * ch + c0, n, ch, 1, 0, length),
                     self.acc_load(x2_row, x2.addr + p0 * ch + c0, n, ch, 1, 0, length)]
            alus = [
                isa.alu(op="mul", use_imm=1, imm=a["a1"], dst=0, count=n, dst_stride=1),
                isa.alu(op="mul", use_imm=1, imm=a["a2"], dst=x2_row, count=n, dst_stride=1),
                isa.alu(op="add", dst=0, src=x2_row, count=n, dst_stride=1, src_stride=1),
            ]
            store = isa.store(acc=0, dram=out.addr + p0 * ch + c0, rows=n, stride=ch,
                              length=length, param=0, out_zp=out.q.zero_point, clamp_lo=lo,
                              clamp_hi=hi)
            self.chunk(layer_id, first, loads, params, alus, [store])

    def relu_layer(self, node, layer_id, src, out):
        ch, h, w = src.geometry
        n_pix = h * w
        per = min(self.cfg.acc_depth, _MAX_VECTORS)
        lo, hi = node.clamp
        params = [self.identity_params(0)]
        for first, c0, length, p0, n in self.blocks(ch, n_pix, per):
            load = self.acc_load(0, src.addr + p0 * ch + c0, n, ch, 1, 0, length)
            store = isa.store(acc=0, dram=out.addr + p0 * ch + c0, rows=n, stride=ch,
                              length=length, param=0, out_zp=0, clamp_lo=lo, clamp_hi=hi)
            self.chunk(layer_id, first, [load], params, [], [store])


def compile(model: QuantizedModel, config: NPUConfig) -> Program:  # noqa: A001 - the public name
    """Lower a quantized model to a program for ``config``.

    Raises :class:`CompileError` naming the layer when something does not fit.
    """
    if not isinstance(model, QuantizedModel):
        raise TypeError(f"compile expects a QuantizedModel from sw.quantize, not {type(model).__name__}")
    if not isinstance(config, NPUConfig):
        raise TypeError(f"compile expects an NPUConfig, not {type(config).__name__}")
    return _Compiler(config, model).run()

