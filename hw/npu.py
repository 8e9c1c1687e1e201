"""The NPU top: the core, its CSR bank, start/reset control and the interrupt."""

from __future__ import annotations

from amaranth.hdl import Module, ResetInserter, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out, connect, flipped

from .array import MacOptions
from .axi import AXI4LiteSignature, AXI4Signature
from .config import NPUConfig, require_config
from .core import Core
from .isa import Opcode, Queue
from .csr import COUNTERS, CSR_ADDR_WIDTH, CSRBank, NPU_ID, NPU_VERSION, STATUS_BITS

__all__ = ["NPU"]


class NPU(wiring.Component):
    """One NPU instance.

    START (when not busy) resets the core and runs the program; SOFT_RESET stops a run:
    the core starts nothing new, lets the bursts it has on the bus finish (STATUS shows
    BUSY meanwhile, a START is ignored), then resets; memory contents persist.

    Ports
    -----
    m_axi: AXI4 master to DRAM (``m_axi__arvalid`` ... in Verilog).
    s_axil: AXI4-Lite slave for the CSRs.
    irq: DONE or ERROR, when IRQ_ENABLE is set.
    done, error, busy: the STATUS bits, for harnesses that wait on a pin.
    layer: the layer the compute unit is in (its last CONFIG layer id), for harnesses
    that attribute cycles to layers (a cycle counts in CYCLES when busy is high).
    trace_begin, trace_end, trace_stall: the core's trace port (one bit per queue: an
    instruction starts, completes; the queue waits for tokens), for simulation harnesses
    that record instruction timelines; a board may leave them unconnected.

    ``mac`` picks how the systolic array builds its products (:class:`~hw.array.MacOptions`
    or a name from :data:`~hw.array.MAC_PRESETS`: ``"generic"``, the default, ``"pipelined"``,
    ``"ice40_dual"``, ...). It is an implementation choice, not part of ``config`` or its
    hash: every option computes the same results (the array's latency may differ by one
    cycle, and the core follows it).
    """

    def __init__(self, config: NPUConfig, *, mac=None) -> None:
        self.config = require_config(config)
        self.mac = MacOptions.cast(mac)
        super().__init__({
            "m_axi": Out(AXI4Signature(addr_width=32, data_width=config.dma_data_width, id_width=2)),
            "s_axil": In(AXI4LiteSignature(addr_width=CSR_ADDR_WIDTH)),
            "irq": Out(1),
            "done": Out(1),
            "error": Out(1),
            "busy": Out(1),
            "layer": Out(32),
            "trace_begin": Out(len(Queue)), "trace_end": Out(len(Queue)),
            "trace_stall": Out(len(Queue)),
        })

    def elaborate(self, platform):
        m = Module()
        cfg = self.config
        m.submodules.csr = csr = CSRBank()
        core_rst = Signal()
        m.submodules.core = core = ResetInserter(core_rst)(Core(cfg, mac=self.mac))
        connect(m, flipped(self.s_axil), csr.s_axil)
        connect(m, flipped(self.m_axi), core.m_axi)

        running = Signal()
        done = Signal()
        error = Signal()
        cycles = Signal(64)
        # SOFT_RESET stops the core at once but resets it only once the bursts it has on
        # the bus are over (``draining``, seen as BUSY): a burst cut short would leave the
        # memory's answer to a core that no longer expects it, and the next run would hang.
        draining = Signal()
        m.d.comb += [
            core.abort.eq(draining),
            core_rst.eq((csr.start & ~running & ~draining)
                        | ((csr.soft_reset | draining) & core.quiesced)),
        ]
        with m.If(csr.soft_reset):
            m.d.sync += [running.eq(0), done.eq(0), error.eq(0), draining.eq(~core.quiesced)]
        with m.Elif(draining):
            with m.If(core.quiesced):
                m.d.sync += draining.eq(0)
        with m.Elif(csr.start & ~running):
            m.d.sync += [running.eq(1), done.eq(0), error.eq(0), cycles.eq(0)]
        with m.Elif(running):
            m.d.sync += cycles.eq(cycles + 1)
            with m.If(core.done):
                m.d.sync += [running.eq(0), done.eq(1)]
            with m.Elif(core.error & core.quiesced):
                m.d.sync += [running.eq(0), error.eq(1)]

        m.d.comb += [
            core.enable.eq(running),
            core.insn_base.eq(csr.reg_insn_base),
            core.insn_count.eq(csr.reg_insn_count),
            core.win_lo.eq(csr.reg_window_base),
            core.win_hi.eq(csr.reg_window_limit),
            self.done.eq(done),
            self.error.eq(error),
            self.busy.eq(running),
            self.layer.eq(core.compute_layer),
            self.trace_begin.eq(core.trace_begin),
            self.trace_end.eq(core.trace_end),
            self.trace_stall.eq(core.trace_stall),
            self.irq.eq((done | error) & csr.reg_ctrl[2]),
            csr.val_id.eq(NPU_ID),
            csr.val_version.eq(NPU_VERSION),
            csr.val_config_hash.eq(cfg.hash),
            csr.val_shape.eq(cfg.rows | (cfg.cols << 8) | (cfg.dma_bytes << 16)),
            csr.val_status.eq(((running | draining) << STATUS_BITS["BUSY"])
                              | (done << STATUS_BITS["DONE"])
                              | (error << STATUS_BITS["ERROR"])),
            csr.val_error_code.eq(core.error_code),
            csr.val_error_index.eq(core.error_index),
            csr.val_layer.eq(core.layer),
            csr.val_cycles_lo.eq(cycles[:32]),
            csr.val_cycles_hi.eq(cycles[32:]),
        ]
        for name, _ in COUNTERS:
            if name == "CYCLES":
                continue
            value = getattr(core, f"cnt_{name.lower()}")
            m.d.comb += [
                getattr(csr, f"val_{name.lower()}_lo").eq(value[:32]),
                getattr(csr, f"val_{name.lower()}_hi").eq(value[32:]),
            ]
        for op in Opcode:
            name = op.name.lower()
            m.d.comb += getattr(csr, f"val_insns_{name}").eq(getattr(core, f"cnt_insns_{name}"))
        return m
