"""The NPU core: memories, array, DMA engines and the controller that drives them.

The controller fetches 128-bit instructions through the DMA, checks and
dispatches them (in order) to three queues, and runs the queues decoupled:

* the **load unit** walks a LOAD's 2D pattern, sends one DMA read per vector and
  writes padding rows itself, formatting each row for its memory;
* the **compute unit** has a front stage that takes tokens and preloads a GEMM's
  weights into the idle weight buffer, and a streamer that feeds activation
  rows to the array, so the next tile's weights load while this tile computes;
  results are accumulated on write at the array's output; ALU, CONFIG and SYNC
  run once the array has drained;
* the **store unit** loads a parameter group, streams accumulator rows through
  the requantizer and writes int8 rows to DRAM.

Tokens are counters between the queues (a GEMM's pushes are reserved when it
starts and given when its last row is written back). An illegal instruction, a
field out of range, an access outside the DMA window or a deadlock stops the
core with an error code and the index of the failing instruction; bursts
already on the bus finish, so the bus is left clean.

The core restarts from a clean state through its reset (the top resets it on
START); memory contents persist.
"""

from __future__ import annotations

import enum as py_enum
from contextlib import contextmanager

from amaranth.hdl import Cat, Const, Module, Mux, Signal, signed
from amaranth.lib import data, wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.wiring import In, Out
from amaranth.utils import exact_log2

from ..array import SystolicArray
from ..axi import AXI4Signature, BURST_INCR
from ..config import NPUConfig
from ..csr import COUNTERS
from ..dma import DMAReader, DMAWriter, ReadArbiter
from ..isa import (DEP_FLAGS, INSTRUCTION, PARAM_GROUP_ROWS, TOKEN_PUSHES, ErrorCode, Mem,
                   Opcode, Queue, allowed_deps, fields_of, queue_of)
from ..requant import Requantizer
from ..sram import BankedMemory
from .tokens import Tokens
from .vector import VectorALU

__all__ = ["Core"]

_DEADLOCK_CYCLES = 16


def _enum_fields_legal(opcode, word):
    """Every enum-typed field of ``opcode``'s format in ``word`` holds a member."""
    legal = Const(1)
    for name, shape, offset, width in fields_of(opcode):
        if isinstance(shape, py_enum.EnumMeta) and name != "opcode":
            value = word[offset:offset + width]
            legal &= Cat(*[value == member.value for member in shape]).any()
    return legal


def _stray_flags(hdr, queue):
    """A dependency flag is set that ``queue`` (``None``: FINISH) does not use."""
    return Cat(Const(0, 1), *[getattr(hdr, f) for f in DEP_FLAGS
                              if f not in allowed_deps(queue)]).any()


def _connect_flags(m, unit, hdr):
    """Drive a queue unit's token flags from its head instruction's header."""
    for flag in DEP_FLAGS:
        m.d.comb += getattr(unit.flags, flag).eq(getattr(hdr, flag))


def _give_pushes(m, unit, queue, hdr, finished):
    """Give every push of ``queue``'s head instruction in the cycle it is ``finished``."""
    for flag in TOKEN_PUSHES[queue]:
        m.d.comb += getattr(unit.done, flag).eq(finished & getattr(hdr, flag))


@contextmanager
def _queue_head(m, fifo, word, index, tokens, halt, stall):
    """The IDLE and WAIT states every queue unit shares.

    IDLE takes the head of the unit's instruction queue; WAIT holds it until its
    tokens can be taken (``tokens.ready``), counting the cycles in ``stall``. The body
    runs in the cycle the tokens are taken (``tokens.start``) and sets ``m.next``.
    """
    with m.State("IDLE"):
        with m.If(fifo.r_rdy & ~halt):
            m.d.comb += fifo.r_en.eq(1)
            m.d.sync += [word.eq(fifo.r_data[:128]), index.eq(fifo.r_data[128:])]
            m.next = "WAIT"
    with m.State("WAIT"):
        with m.If(~halt):
            with m.If(tokens.ready):
                m.d.comb += tokens.start.eq(1)
                yield
            with m.Else():
                m.d.sync += stall.eq(stall + 1)


class Core(wiring.Component):
    """The NPU without its CSR bank.

    Ports
    -----
    m_axi: the AXI4 master (DRAM).
    enable: run (level; the core is reset before each run).
    insn_base, insn_count, win_lo, win_hi: the program and the DMA window.
    done: the program finished. error, error_code, error_index: why it stopped.
    quiesced: no AXI transaction outstanding.
    compute_layer: the layer id of the last CONFIG the compute unit executed (0 after
    START): the layer whose GEMMs and ALU operations run now, for attributing cycles.
    layer: the last CONFIG layer id. counters: the performance counters.
    """

    def __init__(self, config: NPUConfig) -> None:
        if not isinstance(config, NPUConfig):
            raise TypeError(f"config must be an NPUConfig, not {type(config).__name__}")
        self.config = config
        ports = {
            "m_axi": Out(AXI4Signature(addr_width=32, data_width=config.dma_data_width,
                                       id_width=2)),
            "enable": In(1),
            "insn_base": In(32), "insn_count": In(32), "win_lo": In(32), "win_hi": In(32),
            "done": Out(1), "error": Out(1), "error_code": Out(4), "error_index": Out(32),
            "quiesced": Out(1), "layer": Out(32), "compute_layer": Out(32),
        }
        for name, _ in COUNTERS:
            if name != "CYCLES":
                ports[f"cnt_{name.lower()}"] = Out(64)
        for op in Opcode:
            ports[f"cnt_insns_{op.name.lower()}"] = Out(32)
        super().__init__(ports)

    def elaborate(self, platform):
        m = Module()
        cfg = self.config
        R, C = cfg.rows, cfg.cols
        B = cfg.dma_bytes
        tok_depth = cfg.token_queue_depth

        # ---------------------------------------------------------------- datapath
        # Every bank has one read and one write port, shared by priority (hw/sram.py): the
        # GEMM pipeline, whose timing is fixed, comes first; the others wait for the bank.
        # Scratchpad reads: 0 the activation streamer, 1 the weight preload; write: the load unit.
        m.submodules.spad = spad = BankedMemory(
            width=8 * R, depth=cfg.spad_depth, banks=cfg.spad_banks, reads=2, writes=1)
        # Accumulator reads: 0 the GEMM accumulate read or the ALU destination, 1 the ALU
        # source, 2 the store unit; writes: 0 the GEMM writeback or the ALU, 1 the load unit.
        m.submodules.acc = acc = BankedMemory(
            width=32 * C, depth=cfg.acc_depth, banks=cfg.acc_banks, reads=3, writes=2,
            transparent=True)
        m.submodules.param = par = BankedMemory(
            width=32 * C, depth=cfg.param_depth, banks=1, reads=1, writes=1)
        sp_stream, sp_wload = spad.read
        acc_rd, acc_src, acc_store = acc.read
        acc_wr, acc_load = acc.write
        m.submodules.array = array = SystolicArray(rows=R, cols=C)
        m.submodules.requant = rq = Requantizer(lanes=C, tag_width=32)
        L = array.latency

        m.submodules.fetch_dma = fdma = DMAReader(
            data_width=cfg.dma_data_width, max_bytes=16, burst_len=cfg.dma_burst_len,
            tag_width=32, queue_depth=4)
        load_max = max(R, 4 * C)
        m.submodules.load_dma = ldma = DMAReader(
            data_width=cfg.dma_data_width, max_bytes=load_max, burst_len=cfg.dma_burst_len,
            tag_width=14, queue_depth=4)
        m.submodules.store_dma = sdma = DMAWriter(
            data_width=cfg.dma_data_width, max_bytes=C, burst_len=cfg.dma_burst_len, tag_width=32)
        m.submodules.read_arbiter = arb = ReadArbiter(n=2, data_width=cfg.dma_data_width, id_width=2)

        # AXI wiring: fetch is ID 0, load is ID 1; writes use ID 0.
        axi = self.m_axi
        for i, rd in enumerate((fdma, ldma)):
            m.d.comb += [
                getattr(arb, f"s{i}_araddr").eq(rd.araddr),
                getattr(arb, f"s{i}_arlen").eq(rd.arlen),
                getattr(arb, f"s{i}_arvalid").eq(rd.arvalid),
                rd.arready.eq(getattr(arb, f"s{i}_arready")),
                rd.rdata.eq(getattr(arb, f"s{i}_rdata")),
                rd.rresp.eq(getattr(arb, f"s{i}_rresp")),
                rd.rvalid.eq(getattr(arb, f"s{i}_rvalid")),
                getattr(arb, f"s{i}_rready").eq(rd.rready),
                rd.lo.eq(self.win_lo), rd.hi.eq(self.win_hi),
            ]
        m.d.comb += [
            axi.arid.eq(arb.arid), axi.araddr.eq(arb.araddr), axi.arlen.eq(arb.arlen),
            axi.arsize.eq(exact_log2(B)), axi.arburst.eq(BURST_INCR),
            axi.arvalid.eq(arb.arvalid), arb.arready.eq(axi.arready),
            arb.rid.eq(axi.rid), arb.rdata.eq(axi.rdata), arb.rresp.eq(axi.rresp),
            arb.rvalid.eq(axi.rvalid), axi.rready.eq(arb.rready),
            axi.awid.eq(0), axi.awaddr.eq(sdma.awaddr), axi.awlen.eq(sdma.awlen),
            axi.awsize.eq(exact_log2(B)), axi.awburst.eq(BURST_INCR),
            axi.awvalid.eq(sdma.awvalid), sdma.awready.eq(axi.awready),
            axi.wdata.eq(sdma.wdata), axi.wstrb.eq(sdma.wstrb), axi.wlast.eq(sdma.wlast),
            axi.wvalid.eq(sdma.wvalid), sdma.wready.eq(axi.wready),
            sdma.bresp.eq(axi.bresp), sdma.bvalid.eq(axi.bvalid), axi.bready.eq(sdma.bready),
            sdma.lo.eq(self.win_lo), sdma.hi.eq(self.win_hi),
        ]
        # Outstanding bursts, to know when the bus is clean.
        ar_out = Signal(16)
        aw_out = Signal(16)
        m.d.sync += [
            ar_out.eq(ar_out + (axi.arvalid & axi.arready) - (axi.rvalid & axi.rready & axi.rlast)),
            aw_out.eq(aw_out + (axi.awvalid & axi.awready) - (axi.bvalid & axi.bready)),
        ]
        m.d.comb += self.quiesced.eq((ar_out == 0) & (aw_out == 0) & (fdma.arvalid == 0)
                                     & (ldma.arvalid == 0) & sdma.idle)

        # ---------------------------------------------------------------- errors
        halt = Signal()
        m.d.comb += [halt.eq(self.error)]
        raises = []   # (condition, code, index), first listed wins

        # ---------------------------------------------------------------- counters
        cnt = {name: getattr(self, f"cnt_{name.lower()}") for name, _ in COUNTERS if name != "CYCLES"}
        insn_cnt = {op.name: getattr(self, f"cnt_insns_{op.name.lower()}") for op in Opcode}

        # ---------------------------------------------------------------- tokens
        m.submodules.tokens = tokens = Tokens(depth=tok_depth)
        lu_tok = tokens.queue[Queue.LOAD.value]
        cu_tok = tokens.queue[Queue.COMPUTE.value]
        su_tok = tokens.queue[Queue.STORE.value]

        # ---------------------------------------------------------------- fetch
        fifo_w = 128 + 32 + 1
        m.submodules.fetch_fifo = ffifo = SyncFIFOBuffered(width=fifo_w, depth=8)
        fpc = Signal(32)
        f_inflight = Signal(range(16))
        f_err = Signal()
        f_marker = Signal()
        f_addr = Signal(33)
        m.d.comb += f_addr.eq(self.insn_base + (fpc << 4))
        f_in_window = (f_addr >= self.win_lo) & (f_addr + 16 <= self.win_hi) & ~f_addr[32]
        misaligned = self.insn_base[:4] != 0
        f_can = Signal()
        m.d.comb += f_can.eq(self.enable & ~halt & ~f_err & ~misaligned & (fpc < self.insn_count)
                             & (ffifo.level + f_inflight < 8))
        f_issue = Signal()
        f_take = Signal()
        with m.If(f_can):
            with m.If(f_in_window):
                m.d.comb += [
                    fdma.req_valid.eq(1), fdma.req_addr.eq(f_addr), fdma.req_nbytes.eq(16),
                    fdma.req_tag.eq(fpc),
                ]
                with m.If(fdma.req_ready):
                    m.d.comb += f_issue.eq(1)
                    m.d.sync += fpc.eq(fpc + 1)
            with m.Else():
                m.d.sync += f_err.eq(1)
        m.d.comb += [
            ffifo.w_data.eq(Cat(Cat(*[fdma.resp_data[i] for i in range(16)]), fdma.resp_tag, 0)),
            ffifo.w_en.eq(fdma.resp_valid),
            fdma.resp_ready.eq(ffifo.w_rdy),
            f_take.eq(fdma.resp_valid & ffifo.w_rdy),
        ]
        with m.If(f_err & ~f_marker & (f_inflight == 0) & ~fdma.resp_valid & ffifo.w_rdy):
            m.d.comb += [ffifo.w_en.eq(1), ffifo.w_data.eq(Cat(Const(0, 128), fpc, 1))]
            m.d.sync += f_marker.eq(1)
        m.d.sync += f_inflight.eq(f_inflight + f_issue - f_take)
        raises.append((self.enable & misaligned, ErrorCode.FIELD_RANGE, 0))

        # ---------------------------------------------------------------- decode and dispatch
        queues = []
        for q in Queue:
            fifo = SyncFIFOBuffered(width=160, depth=cfg.insn_queue_depth)
            m.submodules[f"{q.name.lower()}_queue"] = fifo
            queues.append(fifo)
        head = ffifo.r_data
        word = head[:128]
        h_index = head[128:160]
        h_ferr = head[160]
        v = data.View(INSTRUCTION, word)
        hdr = v.load.hdr
        opv = hdr.opcode.as_value()
        is_op = {op: opv == op.value for op in Opcode}
        ld, st, gm, al, cf, sy = v.load, v.store, v.gemm, v.alu, v.config, v.sync

        # Legal: a known opcode whose every enum field holds a member of its enum; the
        # queue and the meaningful dependency flags come from the ISA's tables.
        illegal = Signal()
        target_queue = Signal(Queue)
        target = target_queue.as_value()
        bad_deps = Signal()
        m.d.comb += illegal.eq(1)
        with m.Switch(opv):
            for op in Opcode:
                with m.Case(op.value):
                    m.d.comb += illegal.eq(~_enum_fields_legal(op, word))
                    queue = queue_of(op, sy.queue)
                    if queue is not None:
                        m.d.comb += target_queue.eq(queue)
        with m.If(is_op[Opcode.FINISH]):
            m.d.comb += bad_deps.eq(_stray_flags(hdr, None))
        with m.Else():
            with m.Switch(target):
                for q in Queue:
                    with m.Case(q):
                        m.d.comb += bad_deps.eq(_stray_flags(hdr, q))

        # LOAD range checks
        ld_width = Mux(ld.mem == Mem.SPAD, R, C)
        ld_depth = Mux(ld.mem == Mem.SPAD, cfg.spad_depth,
                       Mux(ld.mem == Mem.ACC, cfg.acc_depth, cfg.param_depth))
        ld_ny = Signal(12)
        ld_nx = Signal(12)
        ld_total = Signal(24)
        m.d.comb += [
            ld_ny.eq(ld.pad_top + ld.y_size + ld.pad_bottom),
            ld_nx.eq(ld.pad_left + ld.x_size + ld.pad_right),
            ld_total.eq(ld_ny * ld_nx),
        ]
        ld_bad = ((ld.y_size == 0) | (ld.x_size == 0) | (ld.length == 0) | (ld.length > ld_width)
                  | (ld.sram + ld_total > ld_depth))
        st_bad = ((st.rows == 0) | (st.length == 0) | (st.length > C)
                  | (st.acc + st.rows > cfg.acc_depth) | (st.param >= cfg.param_groups)
                  | (st.clamp_lo > st.clamp_hi))
        gm_bad = ((gm.m == 0) | (gm.inp + gm.m > cfg.spad_depth) | (gm.acc + gm.m > cfg.acc_depth)
                  | (~gm.keep_wgt & (gm.wgt + C > cfg.spad_depth)))
        al_last_dst = Signal(24)
        al_last_src = Signal(24)
        m.d.comb += [
            al_last_dst.eq(al.dst + (al.count - 1) * al.dst_stride),
            al_last_src.eq(al.src + (al.count - 1) * al.src_stride),
        ]
        al_bad = ((al.count == 0) | (al_last_dst >= cfg.acc_depth)
                  | (~al.use_imm & (al_last_src >= cfg.acc_depth)))
        field_bad = Signal()
        m.d.comb += field_bad.eq(
            bad_deps
            | (is_op[Opcode.LOAD] & ld_bad) | (is_op[Opcode.STORE] & st_bad)
            | (is_op[Opcode.GEMM] & gm_bad) | (is_op[Opcode.ALU] & al_bad))

        dispatched = Signal(32)
        finished = Signal()
        all_dispatched = Signal()
        m.d.comb += all_dispatched.eq(finished | (dispatched >= self.insn_count))
        disp_blocked = Signal()
        queue_w_rdy = Signal()
        m.d.comb += queue_w_rdy.eq(Cat(*[q.w_rdy for q in queues]).bit_select(target, 1))
        for i, q in enumerate(queues):
            m.d.comb += q.w_data.eq(Cat(word, h_index))
        can_dispatch = ffifo.r_rdy & ~all_dispatched & ~halt & self.enable
        raises.append((can_dispatch & h_ferr, ErrorCode.DMA_WINDOW, h_index))
        raises.append((can_dispatch & ~h_ferr & illegal, ErrorCode.ILLEGAL_OPCODE, h_index))
        raises.append((can_dispatch & ~h_ferr & ~illegal & field_bad, ErrorCode.FIELD_RANGE,
                       h_index))
        dispatch_ok = can_dispatch & ~h_ferr & ~illegal & ~field_bad
        with m.If(dispatch_ok):
            with m.If(is_op[Opcode.FINISH]):
                m.d.comb += ffifo.r_en.eq(1)
                m.d.sync += [finished.eq(1), dispatched.eq(dispatched + 1)]
            with m.Elif(queue_w_rdy):
                m.d.comb += ffifo.r_en.eq(1)
                for i, q in enumerate(queues):
                    with m.If(target == i):
                        m.d.comb += q.w_en.eq(1)
                m.d.sync += dispatched.eq(dispatched + 1)
                with m.If(is_op[Opcode.CONFIG]):
                    m.d.sync += self.layer.eq(cf.value)
            with m.If(is_op[Opcode.FINISH] | queue_w_rdy):
                m.d.sync += cnt["INSN_RD_BYTES"].eq(cnt["INSN_RD_BYTES"] + 16)
                for op in Opcode:
                    with m.If(is_op[op]):
                        m.d.sync += insn_cnt[op.name].eq(insn_cnt[op.name] + 1)
        m.d.comb += disp_blocked.eq(all_dispatched | (ffifo.r_rdy & ~h_ferr & ~queue_w_rdy
                                                      & ~is_op[Opcode.FINISH]))

        # ---------------------------------------------------------------- load unit
        lq = queues[Queue.LOAD.value]
        lu_word = Signal(128)
        lu_index = Signal(32)
        lu = data.View(INSTRUCTION, lu_word).load
        _connect_flags(m, lu_tok, lu.hdr)
        lu_finished = Signal()
        _give_pushes(m, lu_tok, Queue.LOAD, lu.hdr, lu_finished)
        lu_ny = Signal(12)
        lu_nx = Signal(12)
        m.d.comb += [
            lu_ny.eq(lu.pad_top + lu.y_size + lu.pad_bottom),
            lu_nx.eq(lu.pad_left + lu.x_size + lu.pad_right),
        ]
        yy = Signal(12)
        xx = Signal(12)
        row = Signal(24)
        y_addr = Signal(32)
        x_addr = Signal(32)
        outstanding = Signal(8)
        lu_nbytes = Signal(range(load_max + 1))
        m.d.comb += lu_nbytes.eq(Mux(lu.mem == Mem.PARAM, lu.length << 2, lu.length))
        data_row = (yy >= lu.pad_top) & (yy < lu.pad_top + lu.y_size)
        data_vec = data_row & (xx >= lu.pad_left) & (xx < lu.pad_left + lu.x_size)
        walk_done = yy == lu_ny
        lu_advance = Signal()
        lu_req = Signal()
        lu_resp = Signal()
        lu_pad_write = Signal()

        # Row formatting for each memory (elements past `length` take the pad value).
        def sext32(v8):
            return Cat(v8, v8[7].replicate(24))

        pad8 = lu.pad_value[:8]
        pad32 = sext32(pad8)
        rb = ldma.resp_data
        spad_row = Cat(*[Mux(j < lu.length, rb[j], pad8) for j in range(R)])
        acc_row = Cat(*[Mux(j < lu.length, sext32(rb[j]), pad32) for j in range(C)])
        par_row = Cat(*[Mux(j < lu.length,
                            Cat(rb[4 * j], rb[4 * j + 1], rb[4 * j + 2], rb[4 * j + 3]), pad32)
                        for j in range(C)])
        spad_pad = Cat(*[pad8 for _ in range(R)])
        acc_pad = Cat(*[pad32 for _ in range(C)])

        # One write per cycle: a DMA response, else a padding row. A response waits (the
        # DMA holds it) while the accumulator bank's write port is taken by compute.
        lu_wr_addr = Signal(14)
        lu_wr_req = Signal()
        lu_wr_grant = Signal()
        with m.If(ldma.resp_valid):
            m.d.comb += lu_wr_addr.eq(ldma.resp_tag)
        with m.Else():
            m.d.comb += lu_wr_addr.eq(row)
        to_spad = lu.mem == Mem.SPAD
        to_acc = lu.mem == Mem.ACC
        to_par = lu.mem == Mem.PARAM
        spad_wr, par_wr = spad.write[0], par.write[0]
        m.d.comb += [
            spad_wr.addr.eq(lu_wr_addr),
            acc_load.addr.eq(lu_wr_addr),
            par_wr.addr.eq(lu_wr_addr),
            spad_wr.data.eq(Mux(ldma.resp_valid, spad_row, spad_pad)),
            acc_load.data.eq(Mux(ldma.resp_valid, acc_row, acc_pad)),
            par_wr.data.eq(Mux(ldma.resp_valid, par_row, acc_pad)),
            spad_wr.en.eq(lu_wr_req & to_spad),
            acc_load.en.eq(lu_wr_req & to_acc),
            par_wr.en.eq(lu_wr_req & to_par),
            lu_wr_grant.eq((spad_wr.grant & to_spad) | (acc_load.grant & to_acc)
                           | (par_wr.grant & to_par)),
            ldma.resp_ready.eq(lu_wr_grant),
            lu_resp.eq(ldma.resp_valid & lu_wr_grant),
            lu_wr_req.eq(ldma.resp_valid | lu_pad_write),
        ]
        m.d.sync += outstanding.eq(outstanding + lu_req - lu_resp)

        with m.FSM(name="load_unit") as lu_fsm:
            with _queue_head(m, lq, lu_word, lu_index, lu_tok, halt, cnt["STALL_LOAD"]):
                m.d.sync += [yy.eq(0), xx.eq(0), row.eq(lu.sram), y_addr.eq(lu.dram),
                             x_addr.eq(lu.dram)]
                m.next = "RUN"
            with m.State("RUN"):
                with m.If(~walk_done & ~halt):
                    with m.If(data_vec):
                        m.d.comb += [
                            ldma.req_valid.eq(1), ldma.req_addr.eq(x_addr),
                            ldma.req_nbytes.eq(lu_nbytes), ldma.req_tag.eq(row),
                        ]
                        with m.If(ldma.req_ready):
                            m.d.comb += [lu_req.eq(1), lu_advance.eq(1)]
                            m.d.sync += cnt["DMA_RD_BYTES"].eq(cnt["DMA_RD_BYTES"] + lu_nbytes)
                    with m.Elif(~ldma.resp_valid):
                        m.d.comb += lu_pad_write.eq(1)
                        with m.If(lu_wr_grant):
                            m.d.comb += lu_advance.eq(1)
                with m.If(walk_done & (outstanding == 0) & ~lu_resp & ~halt):
                    m.d.comb += lu_finished.eq(1)
                    m.next = "IDLE"
        with m.If(lu_advance):
            m.d.sync += row.eq(row + 1)
            with m.If(data_vec):
                m.d.sync += x_addr.eq(x_addr + lu.x_stride)
            with m.If(xx + 1 == lu_nx):
                m.d.sync += [xx.eq(0), yy.eq(yy + 1)]
                with m.If(data_row):
                    m.d.sync += [y_addr.eq(y_addr + lu.y_stride), x_addr.eq(y_addr + lu.y_stride)]
                with m.Else():
                    m.d.sync += x_addr.eq(y_addr)
            with m.Else():
                m.d.sync += xx.eq(xx + 1)
        raises.append((ldma.error, ErrorCode.DMA_WINDOW, lu_index))
        raises.append((ldma.bus_error | fdma.bus_error | sdma.bus_error, ErrorCode.BUS_ERROR, lu_index))

        # ---------------------------------------------------------------- compute unit
        cq = queues[Queue.COMPUTE.value]
        cu_word = Signal(128)
        cu_index = Signal(32)
        cv = data.View(INSTRUCTION, cu_word)
        cu_hdr = cv.gemm.hdr
        cu_op = cu_hdr.opcode.as_value()
        cg, ca, cc = cv.gemm, cv.alu, cv.config
        _connect_flags(m, cu_tok, cu_hdr)

        # Streamer state (one GEMM at a time) and the array's input stage.
        s_busy = Signal()
        s_i = Signal(14)
        s_inp = Signal(14)
        s_acc = Signal(14)
        s_m = Signal(14)
        s_accum = Signal()
        s_buf = Signal()
        s_pp = Signal()
        s_pn = Signal()
        meta_layout = data.StructLayout({
            "valid": 1, "acc": 14, "accum": 1, "last": 1, "push_prev": 1, "push_next": 1})
        p_valid = Signal()
        p_buf = Signal()
        p_meta = Signal(meta_layout)
        meta = [p_meta]
        for k in range(1, L + 1):
            reg = Signal(meta_layout, name=f"meta_{k}")
            m.d.sync += reg.eq(meta[-1])
            meta.append(reg)
        pipe_busy = Signal()
        m.d.comb += pipe_busy.eq(Cat(*[mm.valid for mm in meta]).any() | s_busy)

        # A weight buffer may be rewritten once its last user has passed every row: column c
        # is written c cycles after column 0, and the last activation reaches PE (r, c)
        # r + c cycles after it entered, so R + 1 cycles of margin are enough.
        busy_cnt = [Signal(range(R + 3), name=f"wbuf{b}_busy") for b in range(2)]
        for b in range(2):
            with m.If(p_valid & (p_buf == b)):
                m.d.sync += busy_cnt[b].eq(R + 1)
            with m.Elif(busy_cnt[b] != 0):
                m.d.sync += busy_cnt[b].eq(busy_cnt[b] - 1)

        m.d.comb += [sp_stream.en.eq(s_busy), sp_stream.addr.eq(s_inp + s_i)]
        with m.If(s_busy):
            m.d.sync += [
                p_valid.eq(1), p_buf.eq(s_buf),
                p_meta.valid.eq(1), p_meta.acc.eq(s_acc + s_i), p_meta.accum.eq(s_accum),
                p_meta.last.eq(s_i + 1 == s_m),
                p_meta.push_prev.eq(s_pp & (s_i + 1 == s_m)),
                p_meta.push_next.eq(s_pn & (s_i + 1 == s_m)),
                s_i.eq(s_i + 1),
            ]
            with m.If(s_i + 1 == s_m):
                m.d.sync += s_busy.eq(0)
        with m.Else():
            m.d.sync += [p_valid.eq(0), p_meta.eq(0)]
        m.d.comb += [
            array.a_valid.eq(p_valid),
            array.a_sel.eq(p_buf),
            array.a.eq(sp_stream.data),
        ]
        with m.If(p_valid):
            m.d.sync += [
                cnt["ARRAY_BUSY"].eq(cnt["ARRAY_BUSY"] + 1),
                cnt["MACS"].eq(cnt["MACS"] + R * C),
            ]

        # Writeback: read the old row one stage early (only to accumulate), add at the output.
        # The ALU, which runs only while the pipeline is empty, takes the same ports.
        wb = meta[L]
        alu_active = Signal()
        alu_rd_dst = Signal(14)
        alu_rd_src = Signal(14)
        alu_need_d = Signal()
        alu_need_s = Signal()
        alu_wr_en = Signal()
        alu_wr_addr = Signal(14)
        alu_wr_data = Signal(32 * C)
        alu_issue = Signal()
        alu_live_d = Signal()
        alu_live_s = Signal()
        alu_wr_pend = Signal()
        alu_d_lat = Signal(32 * C)
        alu_s_lat = Signal(32 * C)
        m.d.comb += acc_src.addr.eq(alu_rd_src)
        with m.If(alu_active):
            m.d.comb += [acc_rd.en.eq(alu_issue & alu_need_d), acc_rd.addr.eq(alu_rd_dst),
                         acc_src.en.eq(alu_issue & alu_need_s)]
        with m.Else():
            m.d.comb += [acc_rd.en.eq(meta[L - 1].valid & meta[L - 1].accum),
                         acc_rd.addr.eq(meta[L - 1].acc)]
        old = data.View(data.ArrayLayout(signed(32), C), acc_rd.data)
        gemm_row = Cat(*[(array.out[c] + Mux(wb.accum, old[c], 0))[:32] for c in range(C)])
        with m.If(alu_wr_en):
            m.d.comb += [acc_wr.en.eq(1), acc_wr.addr.eq(alu_wr_addr), acc_wr.data.eq(alu_wr_data)]
        with m.Else():
            m.d.comb += [acc_wr.en.eq(wb.valid), acc_wr.addr.eq(wb.acc), acc_wr.data.eq(gemm_row)]
        # A GEMM gives its push_prev token (to the load queue) once it has read its last
        # scratchpad row, so the next load can reuse the slot while the array drains; its
        # push_next token (to the store queue) once its last accumulator row is written.
        gemm_done_pp = s_busy & (s_i + 1 == s_m) & s_pp
        gemm_done_pn = wb.valid & wb.push_next

        # Front stage.
        nb = Signal()          # buffer the weights go to
        last_buf = Signal()    # buffer of the most recently loaded tile
        wi = Signal(range(C + 2))
        alu_i = Signal(15)
        nongemm_done = Signal()
        # The preload reads weight column wi when the streamer leaves its bank free; the
        # column is written to the array the cycle after.
        wl_valid = Signal()
        wl_col = Signal(range(C))
        wl_free = ((busy_cnt[0] == 0) | nb) & ((busy_cnt[1] == 0) | ~nb)
        m.d.comb += sp_wload.addr.eq(cg.wgt + wi)
        m.d.sync += [wl_valid.eq(sp_wload.en & sp_wload.grant), wl_col.eq(wi)]
        m.d.comb += [
            array.w_en.eq(wl_valid),
            array.w_buf.eq(nb),
            array.w_col.eq(wl_col),
            array.w_data.eq(sp_wload.data),
        ]
        with m.FSM(name="compute_unit") as cu_fsm:
            with _queue_head(m, cq, cu_word, cu_index, cu_tok, halt, cnt["STALL_COMPUTE"]):
                with m.If(cu_op == Opcode.GEMM.value):
                    with m.If(cg.keep_wgt):
                        m.d.sync += nb.eq(last_buf)
                        m.next = "HANDOFF"
                    with m.Else():
                        m.d.sync += [nb.eq(~last_buf), wi.eq(0)]
                        m.next = "WLOAD"
                with m.Else():
                    m.next = "DRAIN"
            with m.State("WLOAD"):
                # Wait until nothing in the array still uses buffer nb, then C reads.
                with m.If(wi != C):
                    m.d.comb += sp_wload.en.eq(wl_free)
                    with m.If(wl_free & sp_wload.grant):
                        m.d.sync += wi.eq(wi + 1)
                with m.Else():
                    m.d.sync += last_buf.eq(nb)
                    m.next = "HANDOFF"
            with m.State("HANDOFF"):
                # The streamer takes the next GEMM in the cycle it issues its last row.
                with m.If(~s_busy | (s_i + 1 == s_m)):
                    m.d.sync += [
                        s_busy.eq(1), s_i.eq(0), s_inp.eq(cg.inp), s_acc.eq(cg.acc),
                        s_m.eq(cg.m), s_accum.eq(cg.accumulate), s_buf.eq(nb),
                        s_pp.eq(cu_hdr.push_prev), s_pn.eq(cu_hdr.push_next),
                    ]
                    m.next = "IDLE"
            with m.State("DRAIN"):
                with m.If(~pipe_busy):
                    with m.If(cu_op == Opcode.ALU.value):
                        m.d.sync += [alu_i.eq(0), alu_rd_dst.eq(ca.dst), alu_rd_src.eq(ca.src),
                                     alu_need_d.eq(1), alu_need_s.eq(~ca.use_imm)]
                        m.next = "ALU"
                    with m.Else():
                        m.d.comb += nongemm_done.eq(1)
                        with m.If(cu_op == Opcode.CONFIG.value):
                            m.d.sync += self.compute_layer.eq(cc.value)
                        m.next = "IDLE"
            with m.State("ALU"):
                # Row alu_i's destination and source are read (both in one cycle when they
                # are in different banks, else the destination first); the cycle after its
                # last read, the row is written while the next row is read.
                m.d.comb += alu_active.eq(1)
                got_d = ~alu_need_d | acc_rd.grant
                got_s = ~alu_need_s | acc_src.grant
                m.d.sync += [alu_live_d.eq(alu_need_d & acc_rd.grant),
                             alu_live_s.eq(alu_need_s & acc_src.grant)]
                with m.If(alu_i != ca.count):
                    m.d.comb += alu_issue.eq(1)
                    with m.If(got_d & got_s):
                        m.d.sync += [
                            alu_i.eq(alu_i + 1),
                            alu_rd_dst.eq(alu_rd_dst + ca.dst_stride),
                            alu_rd_src.eq(alu_rd_src + ca.src_stride),
                            alu_wr_addr.eq(alu_rd_dst),
                            alu_wr_pend.eq(1),
                            alu_need_d.eq(1),
                            alu_need_s.eq(~ca.use_imm),
                        ]
                    with m.Else():
                        m.d.sync += [alu_wr_pend.eq(0), alu_need_d.eq(~got_d),
                                     alu_need_s.eq(~got_s)]
                with m.Else():
                    m.d.sync += alu_wr_pend.eq(0)
                    m.d.comb += nongemm_done.eq(1)
                    m.next = "IDLE"
        # The ALU datapath: an operand read in an earlier cycle comes from its latch.
        m.d.comb += alu_wr_en.eq(alu_active & alu_wr_pend)
        with m.If(alu_live_d):
            m.d.sync += alu_d_lat.eq(acc_rd.data)
        with m.If(alu_live_s):
            m.d.sync += alu_s_lat.eq(acc_src.data)
        m.submodules.vector_alu = valu = VectorALU(lanes=C)
        m.d.comb += [
            valu.op.eq(ca.op),
            valu.d.eq(Mux(alu_live_d, acc_rd.data, alu_d_lat)),
            valu.s.eq(Mux(alu_live_s, acc_src.data, alu_s_lat)),
            alu_wr_data.eq(valu.out),
        ]
        with m.If(ca.use_imm):
            m.d.comb += [valu.s[c].eq(ca.imm) for c in range(C)]

        # Compute's token completions.
        cu_pp_done = Signal()
        cu_pn_done = Signal()
        m.d.comb += [
            cu_pp_done.eq(gemm_done_pp | (nongemm_done & cu_hdr.push_prev)),
            cu_pn_done.eq(gemm_done_pn | (nongemm_done & cu_hdr.push_next)),
            cu_tok.done.push_prev.eq(cu_pp_done),
            cu_tok.done.push_next.eq(cu_pn_done),
        ]

        # ---------------------------------------------------------------- store unit
        sq = queues[Queue.STORE.value]
        su_word = Signal(128)
        su_index = Signal(32)
        su = data.View(INSTRUCTION, su_word).store
        _connect_flags(m, su_tok, su.hdr)
        su_finished = Signal()
        _give_pushes(m, su_tok, Queue.STORE, su.hdr, su_finished)
        bias = Signal(32 * C)
        mult = Signal(32 * C)
        shift = Signal(32 * C)
        pi = Signal(3)
        ri = Signal(13)
        row_addr = Signal(32)
        rq_inflight = Signal(4)
        rd_valid = Signal()
        rd_addr = Signal(32)
        ofifo_depth = 8
        m.submodules.store_fifo = ofifo = SyncFIFOBuffered(width=8 * C + 32, depth=ofifo_depth)
        m.d.comb += [
            par.read[0].en.eq(1),
            par.read[0].addr.eq(su.param * PARAM_GROUP_ROWS + pi),
            acc_store.addr.eq(su.acc + ri),
            rq.bias.eq(bias), rq.mult.eq(mult), rq.shift.eq(shift),
            rq.out_zp.eq(su.out_zp), rq.clamp_lo.eq(su.clamp_lo), rq.clamp_hi.eq(su.clamp_hi),
            rq.i_valid.eq(rd_valid), rq.i_acc.eq(acc_store.data), rq.i_tag.eq(rd_addr),
            ofifo.w_en.eq(rq.o_valid), ofifo.w_data.eq(Cat(rq.o_data, rq.o_tag)),
        ]
        su_issue = Signal()
        m.d.sync += [
            rd_valid.eq(su_issue), rd_addr.eq(row_addr),
            rq_inflight.eq(rq_inflight + su_issue - rq.o_valid),
        ]
        with m.FSM(name="store_unit") as su_fsm:
            with _queue_head(m, sq, su_word, su_index, su_tok, halt, cnt["STALL_STORE"]):
                m.d.sync += pi.eq(0)
                m.next = "PARAM"
            with m.State("PARAM"):
                m.d.sync += pi.eq(pi + 1)
                with m.Switch(pi):
                    with m.Case(1):
                        m.d.sync += bias.eq(par.read[0].data)
                    with m.Case(2):
                        m.d.sync += mult.eq(par.read[0].data)
                    with m.Case(3):
                        m.d.sync += [shift.eq(par.read[0].data), ri.eq(0), row_addr.eq(su.dram)]
                        m.next = "RUN"
            with m.State("RUN"):
                # A row is read when the FIFO has room and compute leaves its bank free.
                m.d.comb += acc_store.en.eq(~halt & (ofifo.level + rq_inflight < ofifo_depth - 1))
                with m.If(acc_store.en & acc_store.grant):
                    m.d.comb += su_issue.eq(1)
                    m.d.sync += [ri.eq(ri + 1), row_addr.eq(row_addr + su.stride)]
                    with m.If(ri + 1 == su.rows):
                        m.next = "FLUSH"
            with m.State("FLUSH"):
                with m.If(~halt & (rq_inflight == 0) & ~su_issue & ~rd_valid & ~ofifo.r_rdy
                          & sdma.idle & ~sdma.req_valid):
                    m.d.comb += su_finished.eq(1)
                    m.next = "IDLE"
        m.d.comb += [
            sdma.req_valid.eq(ofifo.r_rdy & ~halt),
            sdma.req_addr.eq(ofifo.r_data[8 * C:]),
            sdma.req_nbytes.eq(su.length),
            sdma.req_data.eq(ofifo.r_data[:8 * C]),
            sdma.req_tag.eq(su_index),
            ofifo.r_en.eq(sdma.req_valid & sdma.req_ready),
            sdma.halt.eq(halt),
            fdma.halt.eq(halt),
            ldma.halt.eq(halt),
        ]
        with m.If(sdma.req_valid & sdma.req_ready):
            m.d.sync += cnt["DMA_WR_BYTES"].eq(cnt["DMA_WR_BYTES"] + su.length)
        raises.insert(0, (sdma.error, ErrorCode.DMA_WINDOW, sdma.error_tag))

        # ---------------------------------------------------------------- done and deadlock
        lu_idle = lu_fsm.ongoing("IDLE") & ~lq.r_rdy
        cu_idle = cu_fsm.ongoing("IDLE") & ~cq.r_rdy & ~pipe_busy
        su_idle = su_fsm.ongoing("IDLE") & ~sq.r_rdy
        lu_wait = lu_fsm.ongoing("WAIT") & ~lu_tok.ready
        cu_wait = cu_fsm.ongoing("WAIT") & ~cu_tok.ready & ~pipe_busy
        su_wait = su_fsm.ongoing("WAIT") & ~su_tok.ready
        m.d.comb += self.done.eq(self.enable & ~self.error & all_dispatched & lu_idle & cu_idle
                                 & su_idle & sdma.idle & self.quiesced)
        stuck = Signal()
        m.d.comb += stuck.eq(self.enable & ~self.error & ~self.done & disp_blocked
                             & (lu_idle | lu_wait) & (cu_idle | cu_wait) & (su_idle | su_wait)
                             & sdma.idle & (outstanding == 0))
        stuck_cnt = Signal(range(_DEADLOCK_CYCLES + 1))
        with m.If(stuck):
            m.d.sync += stuck_cnt.eq(stuck_cnt + 1)
        with m.Else():
            m.d.sync += stuck_cnt.eq(0)
        big = (1 << 32) - 1
        i_l = Mux(lu_wait, lu_index, big)
        i_c = Mux(cu_wait, cu_index, big)
        i_s = Mux(su_wait, su_index, big)
        i_lc = Mux(i_l < i_c, i_l, i_c)
        dl_index = Mux(i_lc < i_s, i_lc, i_s)
        raises.append((stuck_cnt == _DEADLOCK_CYCLES, ErrorCode.DEADLOCK, dl_index))

        # The first error wins; the core then halts.
        with m.If(~self.error):
            for k, (cond, code, index) in enumerate(raises):
                stmt = m.If if k == 0 else m.Elif
                with stmt(cond):
                    m.d.sync += [self.error.eq(1), self.error_code.eq(code),
                                 self.error_index.eq(index)]
        return m

