"""The compiler's driver: walks the quantized graph, lowers each node through the op
table, allocates DRAM, and splits the program at host operators."""

from __future__ import annotations

import gc

import numpy as np

from hw import isa
from hw.config import NPUConfig
from hw.isa import Instruction
from sim.functional import instruction_cost

from .. import ops
from ..ir import QNode, QParams
from ..program import HostSegment, NpuSegment, Program, TensorInfo, layout_regions
from ..quant import QuantizedModel
from . import CompileError
from .alu import AluSchedule
from .fold import fold_channel_maps
from .gemm import GemmSchedule
from .memory import Allocator, DramImage

__all__ = ["Compiler", "Tensor", "compile"]


class Tensor:
    """An activation tensor in DRAM as the compiler sees it."""

    def __init__(self, name, shape, q: QParams, addr=None, chw=None, pad_w=0, pstride=None,
                 flat=False, strides=None):
        self.name = name
        self.shape = tuple(shape)      # PyTorch layout per sample
        # PyTorch's row-major order in DRAM (not a channel-last image): matmul outputs and
        # the head views of :mod:`sw.ops.reshape`; 1-D and 2-D tensors always are.
        self.flat = flat or len(self.shape) != 3
        self.strides = None if strides is None else tuple(strides)   # elements, a strided view
        self.q = q
        self.addr = addr
        self.chw = chw                 # (C, H, W) when this is a flatten of a 3-D tensor
        self.pad_w = pad_w             # zero-point columns each side of a row (the input only)
        self.pstride = pstride         # bytes between pixels, when not the channels (a slice)
        self.in_place = False          # stored into its slice of a concatenation
        self.dtype = "int8"            # "int64": token ids (the model input of an embedding)
        #: (kh, kw, sh, sw, ph, pw, k_pad): the model input, written by the host as its
        #: first convolution's im2col matrix (sw.program.im2col; the input only)
        self.im2col: tuple[int, ...] | None = None

    @property
    def pixel_stride(self) -> int:
        """Bytes between the pixels of this tensor in DRAM: its channels, or the channels
        of the concatenation whose slice it is stored in."""
        return self.pstride if self.pstride is not None else self.geometry[0]

    @property
    def nbytes(self):
        return self.info().nbytes         # the runtime's rule, for the layout it is stored in

    @property
    def elem_strides(self) -> tuple[int, ...]:
        """Elements between neighbours along each dimension in PyTorch's order: a view's
        strides; row-major for a flat tensor; ``(1, W * P, P)`` for a channel-last image
        (``P`` its pixel stride; one without a row border)."""
        if self.strides is not None:
            return self.strides
        if not self.flat:
            c, h, w = self.shape
            return (1, w * self.pixel_stride, self.pixel_stride)
        out, step = [], 1
        for n in reversed(self.shape):
            out.append(step)
            step *= n
        return tuple(reversed(out))

    @property
    def geometry(self):
        """(C, H, W) of the bytes in DRAM (a 1-D tensor is C channels of one pixel; a
        token-shaped [T, F] one, or any flat one, is rows of its last dimension as pixels,
        a T x 1 image)."""
        if len(self.shape) == 3 and not self.flat:
            return self.shape
        if len(self.shape) >= 3:
            return (self.shape[-1], int(np.prod(self.shape[:-1])), 1)
        if len(self.shape) == 2:
            return (self.shape[1], self.shape[0], 1)
        return (self.shape[0], 1, 1)

    def info(self, stored: bool = False) -> TensorInfo:
        """How the runtime finds this tensor; ``stored``: a flatten view as the 3-D tensor
        whose bytes it reads (what a host operator needs to see PyTorch's order)."""
        nhwc = stored and self.chw is not None or len(self.shape) == 3 and not self.flat
        shape = self.chw if stored and self.chw is not None else self.shape
        layout = "im2col" if self.im2col is not None else "nhwc" if nhwc else "flat"
        return TensorInfo(self.name, self.addr, shape, self.q.scale, self.q.zero_point,
                          layout, self.pad_w, self.dtype, self.im2col)


class Compiler(GemmSchedule, AluSchedule):
    """One compilation: the instruction list, the DRAM image, the tensors so far.

    The operators' ``lower`` methods emit through it (``emit``, ``check``, ``const``,
    ``param_load`` and the schedules of :class:`GemmSchedule` and :class:`AluSchedule`).
    """
    # Field limits of the ISA that bound what one instruction can do.
    MAX_PAD = isa.field_max(isa.Opcode.LOAD, "pad_top")           # padding vectors per side
    MAX_Y_STRIDE = isa.field_max(isa.Opcode.LOAD, "y_stride")
    MAX_X_STRIDE = isa.field_max(isa.Opcode.LOAD, "x_stride")
    MAX_VECTORS = isa.field_max(isa.Opcode.LOAD, "y_size")        # rows one LOAD brings in

    def __init__(self, config: NPUConfig, model: QuantizedModel, *, im2col: bool = True):
        self.cfg = config
        self.im2col = im2col
        # Channel shuffles absorbed by their readers run no instructions (sw.compiler.fold).
        self.model = fold_channel_maps(model)
        self.img = DramImage()
        self.memory = Allocator(self.img)
        self.insns: list[Instruction] = []
        self.layers: list[dict] = []
        self.segments: list[NpuSegment | HostSegment] = []
        self.tensors: dict[str, Tensor] = {}
        self._zero_row: int | None = None      # sw.compiler.gemm.GemmSchedule.zero_row
        R, C = config.rows, config.cols
        self.R, self.C = R, C
        self.m_max = min(config.acc_depth // 2, (config.spad_depth - 2 * C) // 2, self.MAX_VECTORS)
        if self.m_max < 1:
            raise CompileError(f"configuration {config.describe()} has too little scratchpad")

    # ------------------------------------------------------------------ helpers
    def const(self, data: bytes) -> int:
        """Place constant bytes in the image; returns their address."""
        return self.memory.const(data)

    def const_blocks(self, blocks: np.ndarray) -> list[int]:
        """Place equal constant blocks (``blocks[i]``) one after another, as :meth:`const`
        of each would; returns their addresses."""
        return self.memory.const_blocks(blocks)

    def emit(self, *insns: Instruction) -> None:
        self.insns.extend(insns)

    def param_load(self, group: int, bias, mult, shift, table=None) -> Instruction:
        """A LOAD of one parameter group (bias, multiplier, shift rows; scalars broadcast)
        and, with ``table`` (256 int8 entries, for a STORE with ``lut``), the activation
        table rows after it."""
        C = self.C
        G = isa.PARAM_GROUP_ROWS
        n = G if table is None else G + isa.table_rows(C)
        if G * group + n > self.cfg.param_depth:
            raise CompileError(f"configuration {self.cfg.describe()}: an activation table needs "
                               f"{n} parameter rows, param_depth is {self.cfg.param_depth}")
        rows = np.zeros((n, C), "<i4")
        for r, v in enumerate((bias, mult, shift)):
            v = np.broadcast_to(np.asarray(v, dtype=np.int64), (C,)) if np.ndim(v) == 0 else np.asarray(v)
            rows[r, :len(v)] = v
        if table is not None:
            entries = np.asarray(table, dtype=np.int8)
            rows[G:].reshape(-1).view(np.int8)[:isa.LUT_ENTRIES] = entries
        addr = self.const(rows.tobytes())
        return isa.load(mem="param", sram=G * group, dram=addr, y_size=n, x_size=1,
                        y_stride=isa.PARAM_ELEM_BYTES * C, length=C)

    def check(self, cond: bool, node: QNode, message: str) -> None:
        """Raise :class:`CompileError` naming ``node`` with ``message`` unless ``cond``."""
        if not cond:
            raise CompileError(f"layer {node.name} ({node.op} at {node.where}): {message}")

    def tensor(self, node: QNode, addr: int | None = None, chw=None) -> Tensor:
        """The tensor of ``node``'s output (at ``addr``, or unplaced)."""
        return Tensor(node.name, node.shape, node.out, addr, chw)

    # ------------------------------------------------------------------ the whole model
    def run(self) -> Program:
        nodes = self.model.nodes
        last_use: dict[str, int] = {}
        for i, node in enumerate(nodes):
            for src in node.inputs:
                last_use[src] = i
        last_use[self.model.output] = len(nodes)
        # Aliases (views) keep their base alive.
        base_of: dict[str, str] = {}
        for i, node in enumerate(nodes):
            if ops.get(node.op).view:
                base = base_of.get(node.inputs[0], node.inputs[0])
                base_of[node.name] = base
                last_use[base] = max(last_use.get(base, 0), last_use.get(node.name, i))

        # Operands stored straight into their slice of a concatenation (sw.ops.cat): their
        # buffer is the concatenation's, allocated when the first of them is made.
        from ..ops.cat import stored_in_place
        folded = stored_in_place(self.model)
        for x, cat in folded.items():
            base_of[x] = cat
        by_name = {n.name: n for n in nodes}

        seg_start = 0
        self.emit(isa.sync(queue="compute", push_prev=1))   # the first layer's barrier token
        inp = nodes[0]
        t = self.input_tensor()
        if inp.attrs == "int64":
            t.dtype = "int64"
        t.addr = self.memory.alloc(t.nbytes)
        self.tensors[inp.name] = t
        layer_id = 0
        seg_layers = 0
        for i, node in enumerate(nodes[1:], start=1):
            op = ops.get(node.op)
            args = [self.tensors[name] for name in node.inputs]
            for a in args:
                self.check(op.ids == (a.dtype == "int64"), node,
                           f"operand {a.name} is {a.dtype}; {node.op} takes "
                           f"{'token ids' if op.ids else 'int8 activations'}")
                self.check(op.tokens or not a.flat or len(a.shape) == 1, node,
                           f"token-shaped operand {a.name} {list(a.shape)} ([tokens, features]) "
                           f"is not supported by {node.op}; {ops.token_ops()} take token tensors")
                self.check(a.strides is None or op.strided, node,
                           f"operand {a.name} is a strided view (a transpose or permute) of "
                           f"shape {list(a.shape)}, which {node.op} does not read; make it "
                           f".contiguous() first")
            if op.view:
                self.tensors[node.name] = op.lower_view(self, node, args)
                continue
            if node.name in folded:
                out = self.slice_of(by_name[folded[node.name]], node)
            elif node.op == "cat" and node.name in self.tensors:
                out = self.tensors[node.name]          # allocated by an operand stored in it
                if all(a.in_place for a in args):
                    continue                           # nothing to copy: no instructions
            else:
                out = Tensor(node.name, node.shape, node.out,
                             flat=op.flat_output or any(a.flat for a in args if a.shape == node.shape))
                out.addr = self.memory.alloc(out.nbytes)
            self.tensors[node.name] = out
            if op.host:
                self.end_segment(seg_start, seg_layers)
                self.segments.append(HostSegment(
                    name=node.name, op=node.op, where=node.where, inputs=[a.info(stored=True) for a in args],
                    in_shapes=[a.shape for a in args],
                    output=out.info(), params=op.host_params(node)))
                seg_start, seg_layers = len(self.insns), 0
                self.emit(isa.sync(queue="compute", push_prev=1))
            else:
                layer_id += 1
                seg_layers += 1
                n_before = len(self.insns)
                lowered = op.lower(self, node, layer_id, args, out)
                # Real MACs (the model's) and MAC slots (what its tiles occupy on the array).
                macs = op.macs(node)
                # (Only GEMMs occupy MAC slots: the others are not asked.)
                slots = sum(instruction_cost(ins, self.cfg)[0] for ins in self.insns[n_before:]
                            if ins.opcode is isa.Opcode.GEMM)
                if lowered != slots or slots < macs:
                    raise CompileError(f"layer {node.name} ({node.where}): the lowering of "
                                       f"{node.op} reports {lowered:,} MAC slots, its instructions "
                                       f"have {slots:,} for {macs:,} MACs")
                self.layers.append({"id": layer_id, "name": node.name, "op": node.op,
                                    "where": node.where, "shape": list(node.shape),
                                    "macs": macs, "mac_slots": slots,
                                    "instructions": len(self.insns) - n_before})
            # Free buffers whose last reader was this layer.
            for name in dict.fromkeys(node.inputs):   # in operand order: the same in every process
                base = base_of.get(name, name)
                if last_use.get(base, -1) <= i and base != self.model.output:
                    bt = self.tensors[base]
                    if bt.addr is not None and base != nodes[0].name:
                        self.memory.release(bt.addr, bt.nbytes)
        if self.segments:
            self.end_segment(seg_start, seg_layers)
        else:
            self.emit(isa.finish())
        blob = isa.encode_bytes(self.insns)
        insn_base = self.img.alloc(len(blob), blob)
        out_t = self.tensors[self.model.output]
        if out_t.strides is not None:
            raise CompileError(f"the model's output {out_t.name} is a strided view (a transpose "
                               f"or permute); end the model with .contiguous()")
        in_t = self.tensors[nodes[0].name]
        dram, inp, outp = self.img.to_array(), in_t.info(), out_t.info()
        # Regions: the data segments (weights, parameters, instructions) are constants.
        regions = layout_regions(len(dram), [(a, len(d)) for a, d in self.img.segments], inp, outp)
        return Program(config=self.cfg, dram=dram, insn_base=insn_base,
                       insn_count=len(self.insns), input=inp, output=outp,
                       layers=self.layers, host_ops=[s.name for s in self.segments
                                                     if isinstance(s, HostSegment)],
                       segments=self.segments, regions=regions)

    def slice_of(self, cat: QNode, node: QNode) -> Tensor:
        """The tensor of ``node``, an operand of concatenation ``cat`` stored in its slice;
        allocates the concatenation's buffer when it is the first."""
        if cat.name not in self.tensors:
            t = Tensor(cat.name, cat.shape, cat.out)
            t.addr = self.memory.alloc(t.nbytes)
            self.tensors[cat.name] = t
        whole = self.tensors[cat.name]
        offset = sum(self.model.node(i).shape[0] for i in cat.inputs[:cat.inputs.index(node.name)])
        t = Tensor(node.name, node.shape, node.out, whole.addr + offset,
                   pstride=whole.geometry[0] if len(node.shape) == 3 else None)
        t.in_place = True
        return t

    def end_segment(self, start: int, n_layers: int) -> None:
        """Close the NPU segment that began at instruction ``start`` before a host operator
        (or the end): a FINISH after its layers, or nothing at all if it has none."""
        if n_layers:
            self.emit(isa.finish())
            self.segments.append(NpuSegment(start, len(self.insns) - start))
        else:
            del self.insns[start:]

    def input_tensor(self, addr: int | None = None) -> Tensor:
        """The model input as it is stored, which its only user may choose: with a row
        border (``pad_w``), or as the user's im2col matrix (``im2col``, unless the
        compiler was told not to)."""
        nodes = self.model.nodes
        inp = nodes[0]
        t = Tensor(inp.name, inp.shape, inp.out, addr)
        users = [n for n in nodes if inp.name in n.inputs]
        if len(users) == 1:
            op = ops.get(users[0].op)
            t.im2col = op.input_im2col(self, users[0], inp.shape) if self.im2col else None
            if t.im2col is None:
                t.pad_w = op.input_pad_w(self, users[0], inp.shape)
        return t


def compile(model: QuantizedModel, config: NPUConfig, *,  # noqa: A001 - the public name
            im2col: bool = True) -> Program:
    """Lower a quantized model to a program for ``config``.

    ``im2col``: let a first convolution over few channels (an image's) read the model
    input as its im2col matrix, which the host writes (:func:`sw.program.im2col`): fewer,
    fuller reduction chunks, for more bytes of input per sample (ResNet's stem: 1.9 MiB
    instead of 147 KiB); ``False`` where the input crosses a slow link.

    Raises ``TypeError`` for arguments of the wrong type and :class:`CompileError`
    naming the layer when something does not fit.
    """
    if not isinstance(model, QuantizedModel):
        raise TypeError(f"compile expects a QuantizedModel from sw.quantize, not {type(model).__name__}")
    if not isinstance(config, NPUConfig):
        raise TypeError(f"compile expects an NPUConfig, not {type(config).__name__}")
    # The compiler makes 100 000s of small objects (instructions) and no cyclic garbage:
    # the collector, run as they come, took half of ResNet-18's compile time.
    collecting = gc.isenabled()
    gc.disable()
    try:
        return Compiler(config, model, im2col=im2col).run()
    finally:
        if collecting:
            gc.enable()
