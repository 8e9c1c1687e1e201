"""Transformer operators on the NPU: accuracy of the integer golden against float, and
cycles on the RTL (Verilator).

    python bench/transformer_ops.py [--tokens 8 --features 24] [--config tiny] [--samples 64]
                                    [--out bench/results/transformer_ops]

For each operator alone on a token tensor [T, F] (its input the model's int8 input):
the error of the golden against the float operator applied to the *dequantized* int8
input (so the input's own rounding is not counted), in output steps (LSB), max and mean
over ``samples`` random inputs; whether the functional model and the RTL equal the golden
bit for bit; and the operator layer's cycles on the RTL (per sample, from the compute
unit's per-layer counter) with its instruction count. Writes ``OUT.json`` and ``OUT.txt``.
"""
from __future__ import annotations

import argparse
import json
import pathlib

import torch
import torch.nn as nn

import sw
from hw import NPUConfig
from sw import ops
from sw.ops.softmax import causal_softmax


class _Causal(nn.Module):
    def forward(self, x):
        return causal_softmax(x)


class _LayerNorm(nn.Module):
    """LayerNorm with random gamma (both signs) and beta, as a trained one has."""

    def __init__(self, f):
        super().__init__()
        self.ln = nn.LayerNorm(f)
        with torch.no_grad():
            self.ln.weight.uniform_(0.2, 2.0)
            self.ln.weight[::3] *= -1
            self.ln.bias.uniform_(-1, 1)

    def forward(self, x):
        return self.ln(x)


def _cases(t, f):
    cases = {
        "softmax": (lambda: nn.Softmax(dim=-1), (t, f)),
        "softmax_causal": (_Causal, (t, t)),
        "layernorm": (lambda: _LayerNorm(f), (t, f)),
        "gelu": (lambda: nn.GELU(), (t, f)),
        "gelu_tanh": (lambda: nn.GELU(approximate="tanh"), (t, f)),
    }
    return cases


def measure(name, factory, shape, cfg, samples, seed=0):
    torch.manual_seed(seed)
    model = factory().eval()
    # Score-like inputs: a spread of a few units, as attention logits and residuals have.
    calib = 3 * torch.randn(samples, *shape)
    qmodel = sw.quantize(model, [calib])
    node = qmodel.nodes[-1]
    op = ops.get(node.op)
    inp = qmodel.nodes[0]
    q_in = inp.out
    x_int = ops.get("input").golden(inp, [calib])
    got = node.out.dequantize(op.golden(node, [x_int]))
    graph = sw.frontend.trace(model, example=calib)
    want = op.forward(graph.node(node.name), [q_in.dequantize(x_int)])
    err = (got - want).abs() / node.out.scale
    program = sw.compile(qmodel, cfg)
    x = torch.randn(*shape) * 3
    func = sw.Device(cfg, "func").run(program, x)
    dev = sw.Device(cfg, "rtl")
    rtl = dev.run(program, x)
    ref = qmodel(x)
    layer = next(entry for entry in dev.stats["layers"] if entry["op"] == node.op)
    return {
        "op": name, "shape": list(shape), "max_err_lsb": round(float(err.max()), 3),
        "mean_err_lsb": round(float(err.mean()), 3), "out_scale": node.out.scale,
        "func_bit_exact": bool(torch.equal(func, ref)), "rtl_bit_exact": bool(torch.equal(rtl, ref)),
        "rtl_cycles": layer["cycles"], "instructions": program.insn_count,
        "cycles_per_element": round(layer["cycles"] / (shape[0] * shape[1]), 2),
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=8)
    parser.add_argument("--features", type=int, default=24)
    parser.add_argument("--config", default="tiny")
    parser.add_argument("--samples", type=int, default=64)
    parser.add_argument("--out", default="bench/results/transformer_ops")
    args = parser.parse_args(argv)
    cfg = NPUConfig.preset(args.config)
    rows = [measure(name, factory, shape, cfg, args.samples)
            for name, (factory, shape) in _cases(args.tokens, args.features).items()]
    lines = [f"{cfg.describe()}; error of the golden vs float on the dequantized int8 input, "
             f"{args.samples} samples; cycles: the layer on the RTL, one sample",
             f"{'op':<16}{'shape':>9}{'max LSB':>9}{'mean LSB':>10}{'func':>6}{'rtl':>5}"
             f"{'cycles':>8}{'cyc/elem':>9}{'insns':>7}"]
    for r in rows:
        shape = "x".join(map(str, r["shape"]))
        lines.append(f"{r['op']:<16}{shape:>9}{r['max_err_lsb']:>9.3f}{r['mean_err_lsb']:>10.3f}"
                     f"{'yes' if r['func_bit_exact'] else 'NO':>6}{'yes' if r['rtl_bit_exact'] else 'NO':>5}"
                     f"{r['rtl_cycles']:>8.0f}{r['cycles_per_element']:>9.2f}{r['instructions']:>7}")
    text = "\n".join(lines)
    print(text)
    out = pathlib.Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".txt").write_text(text + "\n")
    out.with_suffix(".json").write_text(json.dumps({"config": cfg.describe(), "rows": rows},
                                                   indent=1) + "\n")
    return 0 if all(r["func_bit_exact"] and r["rtl_bit_exact"] for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
