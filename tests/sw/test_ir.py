"""sw/ir.py: graphs with several inputs and outputs, typed attributes, structural checks;
the float reference runs any such graph through the op table."""
import dataclasses

import pytest
import torch
import torch.nn.functional as F

from sw import ops
from sw.ir import Graph, Node, QParams
from sw.ops.pool import Pool
from sw.quant import float_forward


def two_in_two_out() -> Graph:
    return Graph([
        Node("a", "input", []),
        Node("b", "input", []),
        Node("s", "add", ["a", "b"], act="relu"),
        Node("p", "maxpool", ["s"], Pool(kernel=(2, 2), stride=(2, 2), padding=(0, 0))),
        Node("f", "flatten", ["b"]),
    ], ["p", "f"])


def test_several_inputs_and_outputs():
    g = two_in_two_out()
    assert g.inputs == ["a", "b"] and g.outputs == ["p", "f"]
    assert [n.name for n in g.users("b")] == ["s", "f"]
    a, b = torch.randn(2, 3, 4, 4), torch.randn(2, 3, 4, 4)
    out = float_forward(g, {"a": a, "b": b})
    assert list(out) == ["p", "f"]
    assert torch.equal(out["p"], F.max_pool2d(torch.relu(a + b), 2))
    assert torch.equal(out["f"], b.flatten(1))
    with pytest.raises(ValueError, match="the graph has 2 outputs"):
        g.output


def test_attributes_are_typed_and_frozen():
    node = two_in_two_out().node("p")
    assert isinstance(node.attrs, Pool) and node.attrs.kernel == (2, 2)
    with pytest.raises(dataclasses.FrozenInstanceError):
        node.attrs.kernel = (3, 3)
    with pytest.raises(dataclasses.FrozenInstanceError):
        QParams(0.1, 3).scale = 0.2


def test_structure_is_checked():
    with pytest.raises(ValueError, match="node 's' reads 'c', which is not defined before it"):
        Graph([Node("a", "input", []), Node("s", "add", ["a", "c"])], ["s"])
    with pytest.raises(ValueError, match="node name 'a' is used twice"):
        Graph([Node("a", "input", []), Node("a", "relu", ["a"])], ["a"])
    with pytest.raises(ValueError, match="output 'z' is not a node"):
        Graph([Node("a", "input", [])], ["z"])
    with pytest.raises(ValueError, match="input node 'a' has operands"):
        Graph([Node("b", "input", []), Node("a", "input", ["b"])], ["a"])
    with pytest.raises(TypeError, match="list of node names"):
        Graph([Node("a", "input", [])], "a")


def test_op_table():
    assert set(ops.REGISTRY) >= {"input", "conv", "linear", "relu", "relu6", "maxpool", "avgpool",
                                 "gap", "add", "flatten"}
    assert ops.get("conv").fuses_activation and ops.get("flatten").view
    assert [name for name, op in ops.REGISTRY.items() if op.host] == ["embedding"]
    with pytest.raises(KeyError, match="no operator 'rmsnorm' in the op table; it has: input"):
        ops.get("rmsnorm")
    with pytest.raises(ValueError, match="op 'conv' is already registered"):
        ops.register(type("Conv2", (ops.Op,), {"name": "conv"}))
    with pytest.raises(TypeError, match="subclass of sw.ops.Op"):
        ops.register(int)


def test_import_paths_stay():
    import sw
    import sw.compiler
    from sw.frontend import Graph as G, Node as N, UnsupportedOpError, trace
    assert (G, N) == (Graph, Node) and callable(trace)
    assert sw.UnsupportedOpError is UnsupportedOpError and UnsupportedOpError.__module__ == "sw.frontend"
    assert sw.compile is sw.compiler.compile and sw.CompileError.__module__ == "sw.compiler"


def test_every_unsupported_operation_is_named_at_once():
    import torch
    import torch.nn as nn

    import sw

    class Two(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(8, 8)
            self.soft = nn.Softplus()

        def forward(self, x):
            return torch.cumsum(self.soft(self.fc(x)), 1)

    with pytest.raises(sw.UnsupportedOpError) as info:
        sw.quantize(Two(), [torch.randn(2, 8)])
    text = str(info.value)
    assert "the model uses 2 unsupported operations" in text
    assert "Softplus at 'soft'" in text and "'cumsum' at cumsum" in text


def test_functional_operations_are_named_with_their_module_path():
    import torch
    import torch.nn as nn

    import sw

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(8, 8)

        def forward(self, x):
            return torch.cumsum(self.fc(x), 1)

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.stage = nn.Sequential(Block())

        def forward(self, x):
            return torch.cummax(self.stage(x), 1)

    with pytest.raises(sw.UnsupportedOpError) as info:
        sw.quantize(Net(), [torch.randn(2, 8)])
    text = str(info.value)
    assert "'cumsum' at stage.0.cumsum (in Block)" in text
    assert "'cummax' at cummax (in the model's forward)" in text


@pytest.mark.parametrize("make, shape", [
    (lambda nn: nn.Conv2d(3, 4, 3, padding=1), (3, 6, 6)),
    (lambda nn: nn.Linear(10, 3), (10,)),
])
def test_a_lone_layer_is_a_model(make, shape):
    import torch
    import torch.nn as nn

    import sw
    from hw import NPUConfig

    torch.manual_seed(0)
    layer = make(nn).eval()
    x = torch.randn(2, *shape)
    qmodel = sw.quantize(layer, [x])
    cfg = NPUConfig.preset("tiny")
    y = sw.Device(cfg).run(sw.compile(qmodel, cfg), x)
    assert torch.equal(y, qmodel(x))
    assert torch.nn.functional.cosine_similarity(
        y.flatten(), layer(x).detach().flatten(), 0) > 0.99
