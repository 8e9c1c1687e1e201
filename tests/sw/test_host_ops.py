"""Host operators: an op declared ``host`` splits the program into NPU segments; the device
runs it between them, bit-exact with the golden, and the stats list it with its time.

No operator of the table needs the host yet, so the test registers one of its own: a
sigmoid computed on the host (dequantize, float sigmoid, quantize)."""
from dataclasses import asdict, dataclass

import pytest
import torch
import torch.nn as nn

import sw
from hw import NPUConfig
from sw import golden, ops
from sw.frontend import fx
from sw.ir import Node, QNode
from sw.program import HostSegment, NpuSegment

TINY = NPUConfig.preset("tiny")


@dataclass(frozen=True)
class QSigmoid:
    in_scale: float
    in_zp: int
    out_scale: float
    out_zp: int


class HostSigmoid(ops.Op):
    name = "test_host_sigmoid"
    host = True

    def forward(self, node, args):
        return torch.sigmoid(args[0])

    def quantize(self, node, ctx):
        q_in, out = ctx.q(node.inputs[0]), ctx.out(node)
        attrs = QSigmoid(q_in.scale, q_in.zero_point, out.scale, out.zero_point)
        return QNode(node.name, node.op, node.inputs, out, ctx.shape(node.name), attrs, None,
                     node.where)

    def host_params(self, node):
        return asdict(node.attrs)

    def run_host(self, params, args):
        x = golden.dequantize(args[0], params["in_scale"], params["in_zp"])
        return golden.quantize(torch.sigmoid(x), params["out_scale"], params["out_zp"])


def _from_sigmoid(t, fx_node, mod, inp, where):
    t.add(Node(fx_node.name, HostSigmoid.name, [inp], where=where))


@pytest.fixture
def host_sigmoid(monkeypatch):
    """The test operator in the op table and nn.Sigmoid in the fx patterns, for one test."""
    monkeypatch.setitem(ops.REGISTRY, HostSigmoid.name, HostSigmoid())
    monkeypatch.setitem(fx.MODULES, nn.Sigmoid, _from_sigmoid)


def seq(*mods):
    return nn.Sequential(*mods).eval()


MODELS = {
    # NPU, host, NPU
    "middle": (lambda: seq(nn.Linear(6, 8), nn.Sigmoid(), nn.Linear(8, 3)), (6,),
               ["npu", "host", "npu"]),
    # the host reads a flatten view of a 3-D tensor (PyTorch's CHW order from NHWC bytes)
    # and writes a 3-D tensor that a later flatten and linear read
    "layouts": (lambda: seq(nn.Conv2d(2, 3, 3), nn.Sigmoid(), nn.Conv2d(3, 4, 1), nn.Flatten(),
                            nn.Sigmoid(), nn.Linear(36, 5)), (2, 5, 5),
                ["npu", "host", "npu", "host", "npu"]),
    # the host reads the model input and writes the model output
    "ends": (lambda: seq(nn.Sigmoid(), nn.Linear(4, 4), nn.Sigmoid()), (4,),
             ["host", "npu", "host"]),
}


@pytest.mark.parametrize("name", list(MODELS))
def test_host_ops_run_between_npu_segments(host_sigmoid, name, tmp_path):
    factory, shape, kinds = MODELS[name]
    torch.manual_seed(0)
    model = factory()
    qmodel = sw.quantize(model, [torch.randn(4, *shape)])
    program = sw.compile(qmodel, TINY)
    assert [("host" if isinstance(s, HostSegment) else "npu") for s in program.segments] == kinds
    hosts = [s.name for s in program.segments if isinstance(s, HostSegment)]
    assert program.host_ops == hosts
    assert all(n.op != HostSigmoid.name for n in map(qmodel.node, [x["name"] for x in program.layers]))
    # Every NPU segment ends in FINISH; together they are the whole stream.
    insns = program.instructions()
    npu = [s for s in program.segments if isinstance(s, NpuSegment)]
    assert sum(s.count for s in npu) == program.insn_count
    assert all(insns[s.start + s.count - 1].opcode.name == "FINISH" for s in npu)

    device = sw.Device(TINY)
    x = torch.randn(3, *shape)
    y = device.run(program, x)
    assert torch.equal(y, qmodel(x))
    # The quantized model tracks the float one (a sanity bound, not the pass criterion).
    ref = model(x)
    assert (y - ref).abs().max() <= 0.25 * ref.abs().max() + 0.05
    stats = device.stats
    assert [h["name"] for h in stats["host_ops"]] == hosts
    assert all(h["op"] == HostSigmoid.name and h["seconds"] > 0 for h in stats["host_ops"])
    assert stats["macs"] == 3 * sum(layer["mac_slots"] for layer in program.layers)
    assert [layer["name"] for layer in stats["layers"]] == [x["name"] for x in program.layers]

    path = tmp_path / "host.npuprog"
    program.save(path)
    again = sw.Program.load(path)
    assert again.segments == program.segments
    assert torch.equal(sw.Device(TINY).run(again, x), y)


def test_programs_without_host_ops_have_no_segments():
    torch.manual_seed(0)
    qmodel = sw.quantize(seq(nn.Linear(4, 4)), [torch.randn(2, 4)])
    program = sw.compile(qmodel, TINY)
    device = sw.Device(TINY)
    device.run(program, torch.randn(4))
    assert program.segments == [] and program.host_ops == [] and device.stats["host_ops"] == []


def test_without_the_test_op_sigmoid_runs_on_the_npu():
    """The fixture swaps nn.Sigmoid's pattern; without it Sigmoid is the NPU's table op."""
    qmodel = sw.quantize(seq(nn.Linear(4, 4), nn.Sigmoid()), [torch.randn(2, 4)])
    assert [n.op for n in qmodel.nodes][-1] == "sigmoid"
    program = sw.compile(qmodel, TINY)
    assert program.segments == [] and program.host_ops == []
