"""The NPU core: memories, array, DMA engines and the controller that drives them.

The controller fetches 128-bit instructions through the DMA (:mod:`.fetch`), checks
and dispatches them (in order) to three queues (:mod:`.dispatch`), and runs the queues
decoupled:

* the **load unit** (:mod:`.load`) walks a LOAD's 2D pattern, sends one DMA read
  per vector and writes padding rows itself, formatting each row for its memory;
* the **compute unit** (:mod:`.compute`) has a front stage that takes tokens and preloads a GEMM's
  weights into the idle weight buffer, and a streamer that feeds activation
  rows to the array, so the next tile's weights load while this tile computes;
  results are accumulated on write at the array's output; ALU, CONFIG and SYNC
  run once the array has drained, the ALU through its datapath (:mod:`.vector`);
* the **store unit** (:mod:`.store`) loads a parameter group, streams accumulator
  rows through the requantizer and writes int8 rows to DRAM.

The memories are banks of one read and one write port shared by priority
(:mod:`hw.sram`): the GEMM pipeline first, then the ALU, the store and load units.
Tokens are counters between the queues (:mod:`.tokens`; every push is reserved when
its instruction starts and given when it completes: a GEMM's when its last row is
written back). An illegal instruction, a
field out of range, an access outside the DMA window or a deadlock stops the
core with an error code and the index of the failing instruction; bursts
already on the bus finish, so the bus is left clean.

The core restarts from a clean state through its reset (the top resets it on
START); memory contents persist.
"""

from __future__ import annotations


from amaranth.hdl import Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.wiring import In, Out

from ..array import MacOptions
from ..axi import AXI4Signature, join_channels
from ..config import NPUConfig, require_config
from ..csr import COUNTERS
from ..dma import DMAReader, DMAWriter, ReadArbiter
from ..isa import INSN_BYTES, ErrorCode, Opcode, Queue
from ..sram import BankedMemory
from .compute import ComputeUnit
from .dispatch import Dispatcher
from .fetch import FetchUnit
from .load import LoadUnit, load_max_bytes
from .store import StoreUnit
from .tokens import QUEUE_ENTRY, Tokens

__all__ = ["Core"]

_DEADLOCK_CYCLES = 16


def _join_reader(m, unit, dma) -> None:
    """A unit's DMA request and response streams onto a DMA reader's ports."""
    req, resp = unit.dma_req, unit.dma_resp
    m.d.comb += [
        dma.req_valid.eq(req.valid), dma.req_addr.eq(req.payload.addr),
        dma.req_nbytes.eq(req.payload.nbytes), dma.req_tag.eq(req.payload.tag),
        req.ready.eq(dma.req_ready),
        resp.valid.eq(dma.resp_valid), resp.payload.data.eq(dma.resp_data),
        resp.payload.tag.eq(dma.resp_tag), dma.resp_ready.eq(resp.ready),
    ]


class Core(wiring.Component):
    """The NPU without its CSR bank.

    Ports
    -----
    m_axi: the AXI4 master (DRAM).
    enable: run (level; the core is reset before each run).
    abort: stop as on an error, without one: nothing new starts, bursts on the bus
    finish (``quiesced`` then rises), so that a reset leaves the bus clean.
    insn_base, insn_count, win_lo, win_hi: the program and the DMA window.
    done: the program finished. error, error_code, error_index: why it stopped.
    quiesced: no AXI transaction outstanding.
    compute_layer: the layer id of the last CONFIG the compute unit executed (0 after
    START): the layer whose GEMMs and ALU operations run now, for attributing cycles.
    layer: the last CONFIG layer id. counters: the performance counters.
    trace_begin, trace_end, trace_stall: one bit per :class:`~hw.isa.Queue` (bit
    ``q.value``): an instruction of the queue starts in its unit, completes (pulses, both
    in one cycle for a one-cycle instruction); the queue's head waits for tokens (counted
    in ``STALL_<QUEUE>``). Outputs only, for simulation traces; see each unit for when its
    instructions start and complete.

    ``mac``: how the systolic array builds its products (:class:`~hw.array.MacOptions` or a
    preset name); an implementation option, not part of the configuration.
    """

    def __init__(self, config: NPUConfig, *, mac=None) -> None:
        self.config = require_config(config)
        self.mac = MacOptions.cast(mac)
        ports = {
            "m_axi": Out(AXI4Signature(addr_width=32, data_width=config.dma_data_width,
                                       id_width=2)),
            "enable": In(1), "abort": In(1),
            "insn_base": In(32), "insn_count": In(32), "win_lo": In(32), "win_hi": In(32),
            "done": Out(1), "error": Out(1), "error_code": Out(4), "error_index": Out(32),
            "quiesced": Out(1), "layer": Out(32), "compute_layer": Out(32),
            "trace_begin": Out(len(Queue)), "trace_end": Out(len(Queue)),
            "trace_stall": Out(len(Queue)),
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

        m.submodules.fetch_dma = fdma = DMAReader(
            data_width=cfg.dma_data_width, max_bytes=16, burst_len=cfg.dma_burst_len,
            tag_width=32, queue_depth=4)
        load_max = load_max_bytes(cfg)
        m.submodules.load_dma = ldma = DMAReader(
            data_width=cfg.dma_data_width, max_bytes=load_max, burst_len=cfg.dma_burst_len,
            tag_width=14, queue_depth=4)
        m.submodules.store_dma = sdma = DMAWriter(
            data_width=cfg.dma_data_width, max_bytes=C, burst_len=cfg.dma_burst_len, tag_width=32)
        m.submodules.read_arbiter = arb = ReadArbiter(n=2, data_width=cfg.dma_data_width, id_width=2)

        # AXI wiring: fetch is ID 0, load is ID 1; writes use ID 0.
        axi = self.m_axi
        for i, rd in enumerate((fdma, ldma)):
            wiring.connect(m, rd.axi, arb.s[i])
            m.d.comb += [rd.lo.eq(self.win_lo), rd.hi.eq(self.win_hi)]
        # The AXI4 master: the arbiter's shared read port and the writer's write port.
        join_channels(m, axi, arb.m, beat_bytes=B)
        join_channels(m, axi, sdma.axi, beat_bytes=B)
        m.d.comb += [sdma.lo.eq(self.win_lo), sdma.hi.eq(self.win_hi)]
        # Outstanding bursts, to know when the bus is clean.
        ar_out = Signal(16)
        aw_out = Signal(16)
        m.d.sync += [
            ar_out.eq(ar_out + (axi.arvalid & axi.arready) - (axi.rvalid & axi.rready & axi.rlast)),
            aw_out.eq(aw_out + (axi.awvalid & axi.awready) - (axi.bvalid & axi.bready)),
        ]
        m.d.comb += self.quiesced.eq((ar_out == 0) & (aw_out == 0) & (fdma.axi.arvalid == 0)
                                     & (ldma.axi.arvalid == 0) & sdma.idle)

        # ---------------------------------------------------------------- errors
        halt = Signal()
        m.d.comb += [halt.eq(self.error | self.abort)]
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
        m.submodules.fetch = fu = FetchUnit()
        m.d.comb += [
            fu.enable.eq(self.enable), fu.halt.eq(halt),
            fu.insn_base.eq(self.insn_base), fu.insn_count.eq(self.insn_count),
            fu.win_lo.eq(self.win_lo), fu.win_hi.eq(self.win_hi),
        ]
        _join_reader(m, fu, fdma)
        raises.append((self.enable & fu.misaligned, ErrorCode.FIELD_RANGE, 0))

        # ---------------------------------------------------------------- decode and dispatch
        m.submodules.dispatch = disp = Dispatcher(cfg)
        wiring.connect(m, fu.insns, disp.insns)
        m.d.comb += [disp.enable.eq(self.enable), disp.halt.eq(halt),
                     disp.insn_count.eq(self.insn_count), self.layer.eq(disp.layer)]
        queues = []
        for q in Queue:
            fifo = SyncFIFOBuffered(width=QUEUE_ENTRY.size, depth=cfg.insn_queue_depth)
            m.submodules[f"{q.name.lower()}_queue"] = fifo
            queues.append(fifo)
            out = disp.queue[q.value]
            m.d.comb += [fifo.w_en.eq(out.valid), fifo.w_data.eq(out.payload),
                         out.ready.eq(fifo.w_rdy)]
        raises.append((disp.error, disp.error_code, disp.error_index))
        all_dispatched = disp.all_dispatched
        disp_blocked = disp.blocked
        with m.If(disp.retired):
            m.d.sync += cnt["INSN_RD_BYTES"].eq(cnt["INSN_RD_BYTES"] + INSN_BYTES)
            for op in Opcode:
                with m.If(disp.opcode == op):
                    m.d.sync += insn_cnt[op.name].eq(insn_cnt[op.name] + 1)

        # ---------------------------------------------------------------- load unit
        lq = queues[Queue.LOAD.value]
        m.submodules.load_unit = lu = LoadUnit(cfg)
        lu_index = lu.index
        m.d.comb += [
            lu.insn.valid.eq(lq.r_rdy), lu.insn.payload.eq(lq.r_data), lq.r_en.eq(lu.insn.ready),
            lu.halt.eq(halt),
        ]
        _join_reader(m, lu, ldma)
        wiring.connect(m, lu.tokens, lu_tok)
        wiring.connect(m, lu.spad, spad.write[0])
        wiring.connect(m, lu.acc, acc_load)
        wiring.connect(m, lu.param, par.write[0])
        with m.If(lu.stalled):
            m.d.sync += cnt["STALL_LOAD"].eq(cnt["STALL_LOAD"] + 1)
        with m.If(ldma.req_valid & ldma.req_ready):
            m.d.sync += cnt["DMA_RD_BYTES"].eq(cnt["DMA_RD_BYTES"] + ldma.req_nbytes)
        raises.append((ldma.error, ErrorCode.DMA_WINDOW, lu_index))
        # A bus error names the instruction whose access it answered: the fetched word, the
        # LOAD or the STORE being executed.
        raises.append((fdma.bus_error, ErrorCode.BUS_ERROR, fdma.bus_error_tag))
        raises.append((ldma.bus_error, ErrorCode.BUS_ERROR, lu_index))

        # ---------------------------------------------------------------- compute unit
        cq = queues[Queue.COMPUTE.value]
        m.submodules.compute_unit = cu = ComputeUnit(cfg, mac=self.mac)
        m.d.comb += [
            cu.insn.valid.eq(cq.r_rdy), cu.insn.payload.eq(cq.r_data), cq.r_en.eq(cu.insn.ready),
            cu.halt.eq(halt),
            self.compute_layer.eq(cu.layer),
        ]
        wiring.connect(m, cu.tokens, cu_tok)
        wiring.connect(m, cu.spad_stream, sp_stream)
        wiring.connect(m, cu.spad_wload, sp_wload)
        wiring.connect(m, cu.acc_rd, acc_rd)
        wiring.connect(m, cu.acc_src, acc_src)
        wiring.connect(m, cu.acc_wr, acc_wr)
        with m.If(cu.stalled):
            m.d.sync += cnt["STALL_COMPUTE"].eq(cnt["STALL_COMPUTE"] + 1)
        with m.If(cu.array_busy):
            m.d.sync += [
                cnt["ARRAY_BUSY"].eq(cnt["ARRAY_BUSY"] + 1),
                cnt["MACS"].eq(cnt["MACS"] + R * C),
            ]

        # ---------------------------------------------------------------- store unit
        sq = queues[Queue.STORE.value]
        m.submodules.store_unit = su = StoreUnit(cfg)
        m.d.comb += [
            su.insn.valid.eq(sq.r_rdy), su.insn.payload.eq(sq.r_data), sq.r_en.eq(su.insn.ready),
            su.halt.eq(halt),
            su.dma_idle.eq(sdma.idle),
        ]
        wiring.connect(m, su.tokens, su_tok)
        wiring.connect(m, su.acc, acc_store)
        wiring.connect(m, su.param, par.read[0])
        with m.If(su.stalled):
            m.d.sync += cnt["STALL_STORE"].eq(cnt["STALL_STORE"] + 1)
        m.d.comb += [
            sdma.req_valid.eq(su.dma.valid),
            sdma.req_addr.eq(su.dma.payload.addr),
            sdma.req_nbytes.eq(su.dma.payload.nbytes),
            sdma.req_data.eq(su.dma.payload.data),
            sdma.req_tag.eq(su.dma.payload.tag),
            su.dma.ready.eq(sdma.req_ready),
            sdma.halt.eq(halt),
            fdma.halt.eq(halt),
            ldma.halt.eq(halt),
        ]
        with m.If(sdma.req_valid & sdma.req_ready):
            m.d.sync += cnt["DMA_WR_BYTES"].eq(cnt["DMA_WR_BYTES"] + sdma.req_nbytes)
        raises.insert(0, (sdma.error, ErrorCode.DMA_WINDOW, sdma.error_tag))
        raises.append((sdma.bus_error, ErrorCode.BUS_ERROR, su.index))

        # ---------------------------------------------------------------- trace port
        for q, unit in ((Queue.LOAD, lu), (Queue.COMPUTE, cu), (Queue.STORE, su)):
            m.d.comb += [self.trace_begin[q.value].eq(unit.begin),
                         self.trace_end[q.value].eq(unit.end),
                         self.trace_stall[q.value].eq(unit.stalled)]

        # ---------------------------------------------------------------- done and deadlock
        lu_idle = lu.idle
        cu_idle = cu.idle
        su_idle = su.idle
        lu_wait = lu.waiting
        cu_wait = cu.waiting
        su_wait = su.waiting
        m.d.comb += self.done.eq(self.enable & ~self.error & all_dispatched & lu_idle & cu_idle
                                 & su_idle & sdma.idle & self.quiesced)
        stuck = Signal()
        m.d.comb += stuck.eq(self.enable & ~self.error & ~self.done & disp_blocked
                             & (lu_idle | lu_wait) & (cu_idle | cu_wait) & (su_idle | su_wait)
                             & sdma.idle & ~lu.in_flight)
        stuck_cnt = Signal(range(_DEADLOCK_CYCLES + 1))
        with m.If(stuck):
            m.d.sync += stuck_cnt.eq(stuck_cnt + 1)
        with m.Else():
            m.d.sync += stuck_cnt.eq(0)
        big = (1 << 32) - 1
        i_l = Mux(lu_wait, lu_index, big)
        i_c = Mux(cu_wait, cu.index, big)
        i_s = Mux(su_wait, su.index, big)
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

