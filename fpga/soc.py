"""The SoC top for FPGA boards: the NPU, its on-chip RAM, the UART bridge to the host.

::

    host UART ──rx──> UARTRx ──bytes──> Bridge ──AXI4-Lite──────────────> NPU CSRs
              <──tx── UARTTx <──bytes──┘   └──AXI4──> AXI4Arbiter ──> AXI4RAM
                                                NPU DMA (AXI4) ──┘    (BRAM or SPRAM)

Memory map: the RAM is at address 0 for both masters (``ram_bytes`` long); the host's
``READ_CSR``/``WRITE_CSR`` offsets are the NPU's register map (:mod:`hw.csr`), 4 KiB.
LEDs, in order: heartbeat (1 Hz), NPU busy, NPU done, error (the NPU stopped on an
error, or the bridge refused a request in the last quarter second).
"""

from amaranth.build import ResourceError
from amaranth.hdl import Cat, Module, Signal
from amaranth.lib import io, wiring
from amaranth.lib.wiring import In, Out, connect

from hw.array import MacOptions
from hw.axi_ram import RAM_KINDS, AXI4Arbiter, AXI4RAM
from hw.config import NPUConfig, require_config
from hw.npu import NPU

from .bridge import Bridge
from .uart import UARTRx, UARTTx, divisor

__all__ = ["SoC", "LEDS", "ICE40_BRAM_BYTES"]

#: What each LED shows, in order.
LEDS = ("heartbeat", "busy", "done", "error")
#: Block RAM of the iCE40UP5K (30 EBRs of 4 Kbit), for the check of ``ram="bram"``.
ICE40_BRAM_BYTES = 30 * 512


class SoC(wiring.Component):
    """The NPU of ``config`` with ``ram_bytes`` of on-chip RAM behind a UART bridge.

    Parameters
    ----------
    config: the NPU's :class:`~hw.config.NPUConfig`.
    ram_bytes: bytes of RAM (the DMA target, at address 0), a multiple of the DMA beat.
    clk_hz: the clock's frequency (the UART divisor and the heartbeat derive from it).
    baud: the UART's rate.
    ram: ``"bram"`` (block RAM) or ``"spram"`` (the iCE40UP5K's SPRAM, at most 128 KiB
        and a 64-bit DMA).
    ram_init: initial RAM contents (simulation and block RAM only).
    mac: how the array builds its products (:class:`hw.array.MacOptions` or a preset name:
        ``"ice40_dual"`` puts two products on each iCE40 SB_MAC16).

    Ports (used when elaborated without a platform, for simulation and Verilog):
    ``uart_rx`` (from the host), ``uart_tx`` (to the host), ``leds`` (:data:`LEDS`).
    On a platform, the board's ``uart`` resource and as many ``led`` resources as it has
    (up to four) are requested instead.

    Raises TypeError for a config that is not an NPUConfig, ValueError for a RAM that
    does not fit, an unknown RAM kind, or a baud rate that the clock cannot make.
    """

    uart_rx: In(1, init=1)
    uart_tx: Out(1, init=1)
    leds: Out(len(LEDS))

    def __init__(self, config: NPUConfig, *, ram_bytes: int, clk_hz: float, baud: int = 115200,
                 ram: str = "bram", ram_init=b"", mac=None) -> None:
        self.config = require_config(config)
        self.mac = MacOptions.cast(mac)
        if ram not in RAM_KINDS:
            raise ValueError(f"SoC ram must be one of {', '.join(RAM_KINDS)}, not {ram!r}")
        beat = config.dma_bytes
        if not isinstance(ram_bytes, int) or ram_bytes <= 0 or ram_bytes % beat:
            raise ValueError(f"SoC ram_bytes must be a positive multiple of the {beat}-byte DMA "
                             f"beat, not {ram_bytes!r}")
        self.divisor = divisor(clk_hz, baud)
        self.clk_hz = clk_hz
        self.baud = baud
        self.ram_bytes = ram_bytes
        self.ram_kind = ram
        # Built here so that argument errors (an SPRAM too small or too narrow) come now.
        self._ram = AXI4RAM(size=ram_bytes, data_width=config.dma_data_width, kind=ram,
                            init=ram_init)
        super().__init__()

    def elaborate(self, platform):
        m = Module()
        cfg = self.config
        if platform is not None and self.ram_kind == "bram" \
                and getattr(platform, "device", "").startswith("iCE40UP") \
                and self.ram_bytes > ICE40_BRAM_BYTES:
            raise ValueError(f"SoC ram_bytes {self.ram_bytes} in block RAM does not fit the "
                             f"{platform.device}'s {ICE40_BRAM_BYTES} bytes of EBR: use "
                             f"ram=\"spram\" (up to 128 KiB)")
        m.submodules.npu = npu = NPU(cfg, mac=self.mac)
        m.submodules.ram = ram = self._ram
        m.submodules.arbiter = arbiter = AXI4Arbiter(data_width=cfg.dma_data_width)
        m.submodules.bridge = bridge = Bridge(data_width=cfg.dma_data_width,
                                              mem_bytes=self.ram_bytes)
        m.submodules.uart_rx = rx = UARTRx(divisor=self.divisor)
        m.submodules.uart_tx = tx = UARTTx(divisor=self.divisor)
        connect(m, npu.m_axi, arbiter.s0)
        connect(m, bridge.m_axi, arbiter.s1)
        connect(m, arbiter.m, ram.s_axi)
        connect(m, bridge.m_axil, npu.s_axil)
        connect(m, rx.o, bridge.i)
        connect(m, bridge.o, tx.i)

        # LEDs: a 1 Hz heartbeat, the NPU's state, errors held for a quarter second.
        half_second = max(1, int(self.clk_hz // 2))
        beat_count = Signal(range(half_second))
        heartbeat = Signal()
        with m.If(beat_count == half_second - 1):
            m.d.sync += [beat_count.eq(0), heartbeat.eq(~heartbeat)]
        with m.Else():
            m.d.sync += beat_count.eq(beat_count + 1)
        hold = max(1, int(self.clk_hz // 4))
        refused = Signal(range(hold + 1))
        with m.If(bridge.refused | rx.frame_error):
            m.d.sync += refused.eq(hold)
        with m.Elif(refused != 0):
            m.d.sync += refused.eq(refused - 1)
        leds = Signal(len(LEDS))
        m.d.comb += leds.eq(Cat(heartbeat, npu.busy, npu.done, npu.error | (refused != 0)))

        if platform is None:
            m.d.comb += [rx.rx.eq(self.uart_rx), self.uart_tx.eq(tx.tx), self.leds.eq(leds)]
            return m
        try:
            uart = platform.request("uart", 0, dir="-")
        except ResourceError:
            raise ValueError(f"the board {type(platform).__name__} has no uart resource: add one "
                             f"(e.g. on a PMOD) with platform.add_resources") from None
        m.submodules.uart_rx_pin = rx_pin = io.Buffer("i", uart.rx)
        m.submodules.uart_tx_pin = tx_pin = io.Buffer("o", uart.tx)
        m.d.comb += [rx.rx.eq(rx_pin.i), tx_pin.o.eq(tx.tx)]
        for k in range(len(LEDS)):
            try:
                led = platform.request("led", k, dir="-")
            except ResourceError:
                break
            m.submodules[f"led{k}"] = pin = io.Buffer("o", led)
            m.d.comb += pin.o.eq(leds[k])
        return m
