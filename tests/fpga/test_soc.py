"""The whole SoC (NPU, AXI4RAM, bridge, UART) in Verilator behind a byte transport: the
unchanged board backend of sw.Device runs a small quantized model through the UART
bit-exactly against the integer golden; a corrupted frame and a silent link are errors,
never values; the SoC's argument checks."""

import pytest
import torch
from torch import nn

import sw
from fpga.protocol import Link, LinkError, encode_frame, Command
from fpga.sim import SimulatedSoC
from fpga.soc import SoC
from hw import NPUConfig
from sw.runtime.backends import BackendError

TINY = NPUConfig.preset("tiny")


class Faulty:
    """A transport that passes bytes through ``fault(data) -> data`` one way or both."""

    def __init__(self, inner, *, to_soc=None, from_soc=None):
        self.inner, self.to_soc, self.from_soc = inner, to_soc, from_soc

    def write(self, data):
        self.inner.write(self.to_soc(data) if self.to_soc else data)

    def read(self, n, timeout):
        data = self.inner.read(n, timeout)
        return self.from_soc(data) if self.from_soc and data else data


@pytest.fixture(scope="module")
def soc():
    with SimulatedSoC(TINY, ram_bytes=16384) as soc:
        yield soc


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                        nn.Linear(4 * 4 * 4, 4))
    qmodel = sw.quantize(net, [torch.randn(4, 1, 8, 8, generator=torch.Generator().manual_seed(4))])
    return qmodel, sw.compile(qmodel, TINY)


def test_a_model_runs_on_the_simulated_soc_through_the_uart(soc, model):
    qmodel, program = model
    x = torch.randn(2, 1, 8, 8, generator=torch.Generator().manual_seed(5))
    start = soc.cycles
    with sw.Device(TINY, "board", transport=soc, wait=soc.wait, clock_hz=soc.clk_hz,
                   mem_bytes=soc.ram_bytes) as device:
        assert torch.equal(device.run(program, x), qmodel(x))     # the integer golden
        stats = device.stats
        assert stats["cycles"] > 0
        assert stats["host_write_bytes"] >= program.input.nbytes * 2
    # Every byte of the program crossed the UART, ten bits of `divisor` cycles each.
    assert soc.cycles - start > 10 * soc.divisor * len(program.dram)
    print(f"{soc.cycles - start} cycles simulated for {len(program.dram)} bytes of program")
    leds = soc.leds
    assert leds["done"] and not leds["busy"] and not leds["error"]


def test_a_corrupted_request_is_refused_and_a_corrupted_reply_detected(soc):
    def flip_last(data):
        return data[:-1] + bytes([data[-1] ^ 0x01])
    link = Link(Faulty(soc, to_soc=flip_last), timeout=0.05)
    with pytest.raises(LinkError, match="refused it \\(BAD_CRC\\)"):
        link.read32(0)
    link = Link(Faulty(soc, from_soc=lambda d: d[:5] + bytes([d[5] ^ 0x80]) + d[6:]), timeout=0.05)
    with pytest.raises(LinkError, match="corrupted reply"):
        link.read32(0)
    # The bridge is still in step afterwards.
    Link(soc, timeout=0.05).ping()
    assert soc.leds["error"]                 # the refusal lit the error LED


def test_a_silent_link_times_out(soc):
    with pytest.raises(BackendError, match="no reply within"):
        sw.Device(TINY, "board", transport=Faulty(soc, to_soc=lambda d: b""), wait=soc.wait,
                  timeout=0.01)
    # A frame cut short is not answered either; its missing bytes then come as junk.
    soc.write(encode_frame(Command.PING, 1)[:4])
    assert soc.read(16, 0.005) == b""
    soc.write(b"\x00" * 300)                 # completes the partial frame's wait
    soc.read(1000, 0.01)
    Link(soc, timeout=0.05).ping()


def test_soc_argument_errors():
    with pytest.raises(ValueError, match="ram must be one of bram, spram, not 'sram'"):
        SoC(TINY, ram_bytes=4096, clk_hz=12e6, ram="sram")
    with pytest.raises(ValueError, match="multiple of the 4-byte DMA beat"):
        SoC(TINY, ram_bytes=4095, clk_hz=12e6)
    with pytest.raises(ValueError, match="baud 4000000 is too high for a 1.2e\\+07 Hz clock"):
        SoC(TINY, ram_bytes=4096, clk_hz=12e6, baud=4_000_000)
    with pytest.raises(ValueError, match="at most 131072 bytes"):
        SoC(TINY, ram_bytes=1 << 18, clk_hz=12e6, ram="spram")
    with pytest.raises(TypeError, match="config must be an NPUConfig"):
        SoC({"rows": 4}, ram_bytes=4096, clk_hz=12e6)
