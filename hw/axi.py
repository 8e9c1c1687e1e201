"""AXI4 and AXI4-Lite interface signatures.

Members are flat and named as in the AMBA specification (``arvalid``, ``rdata``,
...), so a port named ``m_axi`` appears in Verilog as ``m_axi__arvalid`` and
cocotbext-axi finds it with ``AxiBus.from_prefix(dut, "m_axi_")``.
"""

from __future__ import annotations

from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out
from amaranth.utils import exact_log2

__all__ = ["AXI4Signature", "AXI4LiteSignature", "AXI4ReadSignature", "BURST_INCR", "RESP_OKAY", "RESP_SLVERR"]

BURST_INCR = 0b01
RESP_OKAY = 0b00
RESP_SLVERR = 0b10


class AXI4Signature(wiring.Signature):
    """AXI4 from the master's side (INCR bursts; no lock, cache, prot, qos, user)."""

    def __init__(self, *, addr_width: int = 32, data_width: int = 128, id_width: int = 2):
        if data_width not in (32, 64, 128, 256, 512, 1024):
            raise ValueError(f"AXI4 data_width must be 32 to 1024, a power of two, not {data_width}")
        self.addr_width = addr_width
        self.data_width = data_width
        self.id_width = id_width
        super().__init__({
            "awid": Out(id_width), "awaddr": Out(addr_width), "awlen": Out(8), "awsize": Out(3),
            "awburst": Out(2), "awvalid": Out(1), "awready": In(1),
            "wdata": Out(data_width), "wstrb": Out(data_width // 8), "wlast": Out(1),
            "wvalid": Out(1), "wready": In(1),
            "bid": In(id_width), "bresp": In(2), "bvalid": In(1), "bready": Out(1),
            "arid": Out(id_width), "araddr": Out(addr_width), "arlen": Out(8), "arsize": Out(3),
            "arburst": Out(2), "arvalid": Out(1), "arready": In(1),
            "rid": In(id_width), "rdata": In(data_width), "rresp": In(2), "rlast": In(1),
            "rvalid": In(1), "rready": Out(1),
        })


class AXI4ReadSignature(wiring.Signature):
    """The read channels (AR, R) of an AXI4 master, as a DMA reader uses them: INCR bursts
    of the bus width (size and burst type are set where the port leaves the core), with
    IDs only when ``id_width`` is not 0 (the arbiter adds them)."""

    def __init__(self, *, addr_width: int = 32, data_width: int = 128, id_width: int = 0):
        members = {
            "araddr": Out(addr_width), "arlen": Out(8), "arvalid": Out(1), "arready": In(1),
            "rdata": In(data_width), "rresp": In(2), "rvalid": In(1), "rready": Out(1),
        }
        if id_width:
            members.update({"arid": Out(id_width), "rid": In(id_width)})
        super().__init__(members)


class AXI4WriteSignature(wiring.Signature):
    """The write channels (AW, W, B) of an AXI4 master, as the DMA writer uses them: INCR
    bursts of the bus width, no IDs (size, burst type and ID are set where the port
    leaves the core)."""

    def __init__(self, *, addr_width: int = 32, data_width: int = 128):
        super().__init__({
            "awaddr": Out(addr_width), "awlen": Out(8), "awvalid": Out(1), "awready": In(1),
            "wdata": Out(data_width), "wstrb": Out(data_width // 8), "wlast": Out(1),
            "wvalid": Out(1), "wready": In(1),
            "bresp": In(2), "bvalid": In(1), "bready": Out(1),
        })


def join_channels(m, full, part, *, beat_bytes: int) -> None:
    """Drive the channels of the AXI4 master port ``full`` (an :class:`AXI4Signature`
    interface) from ``part``, an interface of a subset of its members (a read or write
    signature above), in both directions; the members ``part`` lacks are fixed: size
    ``beat_bytes``, INCR bursts, ID 0 where ``part`` has no ID."""
    members = part.signature.members
    for name, member in members.items():
        ours, theirs = getattr(full, name), getattr(part, name)
        m.d.comb += ours.eq(theirs) if member.flow == Out else theirs.eq(ours)
    fixed = {"size": exact_log2(beat_bytes), "burst": BURST_INCR, "id": 0}
    for channel in ("ar", "aw"):
        if f"{channel}addr" in members:
            for field, value in fixed.items():
                if f"{channel}{field}" not in members:
                    m.d.comb += getattr(full, f"{channel}{field}").eq(value)


class AXI4LiteSignature(wiring.Signature):
    """AXI4-Lite from the master's side, 32-bit data."""

    def __init__(self, *, addr_width: int = 12):
        self.addr_width = addr_width
        super().__init__({
            "awaddr": Out(addr_width), "awprot": Out(3), "awvalid": Out(1), "awready": In(1),
            "wdata": Out(32), "wstrb": Out(4), "wvalid": Out(1), "wready": In(1),
            "bresp": In(2), "bvalid": In(1), "bready": Out(1),
            "araddr": Out(addr_width), "arprot": Out(3), "arvalid": Out(1), "arready": In(1),
            "rdata": In(32), "rresp": In(2), "rvalid": In(1), "rready": Out(1),
        })
