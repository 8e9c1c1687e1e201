"""The board backend: sw.Device(config, "board", ...) over the host link, here with the
Verilated NPU behind a simulated link (no board is attached to this machine)."""

import pytest
import torch

import sw
from fpga.protocol import BridgeModel
from hw import NPUConfig
from sim.rtl import FastRTLSimulator
from sw import zoo
from sw.runtime.backends import BackendError

from .test_protocol import Loopback

TINY = NPUConfig.preset("tiny")


@pytest.fixture(scope="module")
def lenet():
    model, shape = zoo.build("lenet5")
    qmodel = sw.quantize(model, [torch.randn(4, *shape, generator=torch.Generator().manual_seed(4))])
    return qmodel, sw.compile(qmodel, TINY), shape


def test_a_model_runs_on_the_board_backend_bit_exact(lenet):
    qmodel, program, shape = lenet
    x = torch.randn(3, *shape, generator=torch.Generator().manual_seed(5))
    with FastRTLSimulator(TINY).session() as session:
        session.reset()
        session.clear()
        bridge = BridgeModel(session.ram_bytes, backend=session, on_frame=lambda: session.wait(100))
        with sw.Device(TINY, "board", transport=Loopback(bridge), wait=session.wait,
                       mem_bytes=session.ram_bytes) as device:
            assert torch.equal(device.run(program, x), qmodel(x))
            first = device.stats
            assert first["cycles"] > 0 and first["macs"] == 3 * sum(
                layer["mac_slots"] for layer in program.layers)
            # Once the constants are loaded only inputs and outputs cross the link.
            device.run(program, x[:1])
            again = device.stats
            assert again["host_write_bytes"] == program.input.nbytes
            assert again["host_read_bytes"] == program.output.nbytes
        # Another configuration's program is refused by the board's CONFIG_HASH.
        with pytest.raises(BackendError, match="configuration hash"):
            sw.Device(NPUConfig.preset("small"), "board", transport=Loopback(bridge),
                      wait=session.wait)


def test_board_errors_are_clear():
    with pytest.raises(BackendError, match="needs port="):
        sw.Device(TINY, "board")
    with pytest.raises(BackendError, match="cannot open the board's serial port /dev/nonexistent"):
        sw.Device(TINY, "board", port="/dev/nonexistent")
    with pytest.raises(BackendError, match="no reply within"):
        sw.Device(TINY, "board", transport=Loopback(BridgeModel(64), lambda r: b""), timeout=0.01)
    with pytest.raises(TypeError, match="takes no option port"):
        sw.Device(TINY, "func", port="/dev/ttyUSB0")
