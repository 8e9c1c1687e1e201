"""What every operator's tests check: the golden against the float reference, and the
lowering bit-exact against the golden on the functional model (test helpers)."""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

import sw
from hw import NPUConfig
from sw import ops
from sw.frontend import trace

TINY = NPUConfig.preset("tiny")
CONFIGS = [TINY, NPUConfig.preset("tiny", cols=6)]


class Seq(nn.Module):
    def __init__(self, *mods):
        super().__init__()
        self.body = nn.Sequential(*mods)

    def forward(self, x):
        return self.body(x)


class Residual(nn.Module):
    """Two convolutions of one input added, with an optional ReLU after the add."""

    def __init__(self, c, relu=True):
        super().__init__()
        self.a = nn.Conv2d(c, c, 3, padding=1)
        self.b = nn.Conv2d(c, c, 1)
        self.relu = relu

    def forward(self, x):
        y = self.a(x) + self.b(x)
        return F.relu(y) if self.relu else y


def golden_vs_float(factory, shape, op: str, tolerance, seed: int = 0):
    """Quantize the model ``factory()`` builds (seeded), calibrated on the test batch itself; for each node of ``op``,
    run its golden on the quantized operands and its float reference on their
    dequantized values, and check ``|golden - float| <= tolerance(qnode, float args,
    float node, operand qparams)`` element-wise. Returns the number of nodes checked."""
    torch.manual_seed(seed)
    model = factory().eval()
    x = 2 * torch.randn(4, *shape)
    qmodel = sw.quantize(model, [x])
    graph = trace(model, example=x)
    env: dict[str, torch.Tensor] = {}
    checked = 0
    for q in qmodel.nodes:
        args = [x] if q.op == "input" else [env[i] for i in q.inputs]
        env[q.name] = ops.get(q.op).golden(q, args)
        if q.op != op:
            continue
        node = graph.node(q.name)
        fargs = [qmodel.node(i).out.dequantize(env[i]) for i in q.inputs]
        want = ops.get(op).forward(node, fargs)
        if node.act is not None:
            want = ops.get(node.act).forward(node, [want])
        got = q.out.dequantize(env[q.name])
        assert got.shape == want.shape
        bound = tolerance(q, fargs, node, [qmodel.node(i).out for i in q.inputs])
        assert ((got - want).abs() <= bound).all(), float((got - want).abs().max())
        checked += 1
    assert checked, f"the model has no {op} node"
    return checked


def output_step(q) -> float:
    """The rounding of a requantized output: under one step, as TFLite's rule rounds twice
    (SaturatingRoundingDoublingHighMul, then RoundingDivideByPOT: 125 / 4 gives 32)."""
    return q.out.scale * (1 + 1e-6)


def bit_exact_on_func(factory, shape, configs=CONFIGS, seed: int = 0) -> None:
    """Compile the model ``factory()`` builds (seeded) for each config, run it on the functional model, compare with
    the golden bit for bit; where the first layer reads the input as its im2col matrix, also
    compiled to read it in place."""
    torch.manual_seed(seed)
    model = factory().eval()
    qmodel = sw.quantize(model, [torch.randn(3, *shape) for _ in range(2)])
    x = torch.randn(2, *shape)
    for cfg in configs:
        program = sw.compile(qmodel, cfg)
        y = sw.Device(cfg).run(program, x)
        assert torch.equal(y, qmodel(x)), cfg.describe()
        if program.input.layout == "im2col":      # the first layer read in place, too
            program = sw.compile(qmodel, cfg, im2col=False)
            assert program.input.layout != "im2col"
            assert torch.equal(sw.Device(cfg).run(program, x), qmodel(x)), cfg.describe()
