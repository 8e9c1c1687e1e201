"""The public API: quantize, compile, Device, Program; and its errors."""
import numpy as np
import pytest
import torch
import torch.nn as nn

import sw
from hw import NPUConfig
from hw import isa
from sw import zoo

TINY = NPUConfig.preset("tiny")


@pytest.fixture(scope="module")
def lenet():
    model, shape = zoo.build("lenet5")
    qmodel = sw.quantize(model, [torch.randn(4, *shape) for _ in range(2)])
    return model, qmodel, sw.compile(qmodel, TINY), shape


def test_api_flow_and_stats(lenet):
    model, qmodel, program, shape = lenet
    device = sw.Device(TINY, backend="func")
    x = torch.randn(3, *shape)
    y = device.run(program, x)
    assert y.shape == (3, 10) and y.dtype == torch.float32
    assert torch.equal(y, qmodel(x))
    stats = device.stats
    assert stats["runs"] == 3
    layer_macs = sum(layer["mac_slots"] for layer in stats["layers"])
    assert stats["macs"] == 3 * layer_macs
    assert stats["dram_write_bytes"] > 0 and stats["dram_read_bytes"] > 0
    assert [layer["op"] for layer in stats["layers"]] == \
        ["conv", "avgpool", "conv", "maxpool", "linear", "linear", "linear"]


def test_program_save_load_disassemble(lenet, tmp_path):
    _, qmodel, program, shape = lenet
    path = tmp_path / "m.npuprog"
    program.save(path)
    again = sw.Program.load(path)
    assert again.config == program.config and again.insn_count == program.insn_count
    assert np.array_equal(again.dram, program.dram)
    x = torch.randn(2, *shape)
    assert torch.equal(sw.Device(TINY).run(again, x), qmodel(x))
    text = program.disassemble()
    lines = text.splitlines()
    assert len(lines) == program.insn_count
    assert lines[-1].strip().endswith("FINISH")
    assert isa.assemble(text) == program.instructions()
    bad = tmp_path / "bad.npuprog"
    bad.write_bytes(b"not a program")
    with pytest.raises(sw.ProgramError, match="not a program file"):
        sw.Program.load(bad)


def test_config_hash_mismatch_is_refused(lenet):
    _, _, program, shape = lenet
    other = NPUConfig.preset("tiny", cols=6)
    with pytest.raises(sw.DeviceError, match=f"compiled for configuration {TINY.hash:08x}"):
        sw.Device(other).run(program, torch.randn(*shape))


def test_wrong_shapes_and_dtypes(lenet):
    _, qmodel, program, shape = lenet
    device = sw.Device(TINY)
    with pytest.raises(ValueError, match=r"input shape \(1, 28\) does not match"):
        device.run(program, torch.randn(1, 28))
    with pytest.raises(ValueError, match="does not match"):
        device.run(program, torch.randn(2, 1, 28, 27))
    with pytest.raises(TypeError, match="float tensor"):
        device.run(program, torch.zeros(1, 1, 28, 28, dtype=torch.int8))
    with pytest.raises(TypeError, match="torch.Tensor"):
        device.run(program, np.zeros((1, 28, 28)))
    with pytest.raises(TypeError, match="Program"):
        device.run(qmodel, torch.randn(*shape))
    with pytest.raises(ValueError, match="does not match"):
        qmodel(torch.randn(3, 28, 28))
    with pytest.raises(ValueError, match="unknown backend 'gpu'"):
        sw.Device(TINY, backend="gpu")


class Softplus(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 4)
        self.act = nn.Softplus()

    def forward(self, x):
        return self.act(self.fc(x))


class Stack(nn.Module):
    def forward(self, x):
        return torch.stack([x, x], dim=1)


class Mul(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(2, 2, 1)

    def forward(self, x):
        return self.conv(x) * 2


@pytest.mark.parametrize("model, shape, message", [
    (Softplus(), (4,), r"unsupported module Softplus at 'act'"),
    (Stack(), (4,), r"unsupported operation 'stack' at stack"),
    (Mul(), (2, 3, 3), r"mul at mul \(in the model's forward\): multiplying by a constant"),
    (nn.Sequential(nn.Conv2d(2, 2, 3, dilation=2)), (2, 8, 8), "dilation"),
    (nn.Sequential(nn.Conv2d(2, 2, 1), nn.MaxPool2d(2, return_indices=True)), (2, 4, 4),
     r"MaxPool2d at '?1'?: return_indices=True is not supported"),
    (nn.Sequential(nn.BatchNorm2d(2, affine=False, track_running_stats=False)), (2, 4, 4),
     "track_running_stats=False is not supported"),
])
def test_unsupported_ops_are_named(model, shape, message):
    with pytest.raises(sw.UnsupportedOpError, match=message):
        sw.quantize(model, [torch.randn(2, *shape)])


def test_calibration_errors():
    model = nn.Sequential(nn.Linear(4, 2))
    with pytest.raises(ValueError, match="calibration is empty"):
        sw.quantize(model, [])
    with pytest.raises(ValueError, match="float tensors"):
        sw.quantize(model, [torch.zeros(2, 4, dtype=torch.int64)])
    with pytest.raises(ValueError, match="differ in shape"):
        sw.quantize(model, [torch.randn(2, 4), torch.randn(2, 5)])
    with pytest.raises(TypeError, match="nn.Module"):
        sw.quantize(lambda x: x, [torch.randn(2, 4)])


def test_calibration_mistakes_get_clear_errors_or_warnings(lenet):
    model, shape = zoo.build("lenet5")
    # A single tensor is one batch: the same quantization as a list holding it.
    batch = torch.randn(8, *shape, generator=torch.Generator().manual_seed(1))
    x = torch.randn(3, *shape)
    assert torch.equal(sw.quantize(model, batch)(x), sw.quantize(model, [batch])(x))
    with pytest.raises(ValueError, match=r"cannot run calibration batch 0 of shape \(1, 28, 28\)"
                                         r".*without its batch dimension"):
        sw.quantize(model, [torch.randn(*shape)])
    bad = batch.clone()
    bad[2, 0, 3, 3] = float("nan")
    with pytest.raises(ValueError, match="calibration batch 1 holds NaN or infinite"):
        sw.quantize(model, [batch, bad])
    bad[2, 0, 3, 3] = float("inf")
    with pytest.raises(ValueError, match="calibration batch 0 holds NaN or infinite"):
        sw.quantize(model, bad)
    with pytest.warns(RuntimeWarning, match="calibrated range of 'x' is \\[0, 0\\]"):
        sw.quantize(model, [torch.zeros(4, *shape)])
    # The caller's model keeps its mode.
    model.train()
    sw.quantize(model, batch)
    assert model.training and all(m.training for m in model.modules())


def test_one_sample_in_gives_one_sample_out_on_device_and_golden(lenet):
    _, qmodel, program, shape = lenet
    x = torch.randn(*shape)
    device = sw.Device(TINY)
    y = device.run(program, x)
    assert y.shape == qmodel(x).shape == (10,) and torch.equal(y, qmodel(x))
    assert torch.equal(qmodel(x.unsqueeze(0))[0], y)
    for value in (float("nan"), float("inf")):
        bad = x.clone()
        bad[0, 1, 1] = value
        with pytest.raises(ValueError, match="input holds NaN or infinite values"):
            device.run(program, bad)


def test_a_run_that_times_out_on_rtl_is_a_clear_error_and_the_next_run_is_right(lenet):
    """A cycle budget too small for the program: a DeviceError naming the timeout and the
    budget, never a partial result; the device resets the NPU and runs correctly after."""
    _, qmodel, program, shape = lenet
    device = sw.Device(TINY, backend="rtl", max_cycles=300)
    x = torch.randn(1, *shape)
    with pytest.raises(sw.DeviceError, match="timed out.*300 cycles"):
        device.run(program, x)
    device.max_cycles = None
    assert torch.equal(device.run(program, x), qmodel(x))


@pytest.mark.parametrize("value, error", [(0, ValueError), (-5, ValueError), (2.5, TypeError),
                                          (True, TypeError)])
def test_bad_max_cycles_are_refused(value, error):
    with pytest.raises(error, match="max_cycles"):
        sw.Device(TINY, max_cycles=value)
