"""Hugging Face modules through the torch.export front end: what traces, what runs, how
close the quantized output is to the float one.

Each module is built from a small config with random weights (no download), quantized
with ``frontend="export"`` on random calibration batches, compiled for the small (8x8)
configuration and run on the functional model; the output is checked bit-exact against
the golden, then compared with the float model (max |error| over max |output|, a figure,
not a pass criterion). The full ``BertModel`` and ``GPT2Model`` are traced too and the
operations they still lack are counted (docs/user-guide.md, "torch.export and Hugging
Face models"). With ``--zoo``, every model of the zoo is also traced by both front ends
on one example and the layers compared (the same operators in the same order).

    python bench/hf_export.py [--samples 64] [--zoo]
"""
from __future__ import annotations

import argparse
import re
import time

import torch

import sw
from hw import NPUConfig


def modules():
    from transformers import BertConfig, GPT2Config
    from transformers.models.bert.modeling_bert import BertIntermediate
    from transformers.models.gpt2.modeling_gpt2 import GPT2MLP

    bert = BertConfig(hidden_size=64, num_attention_heads=4, intermediate_size=256)
    gpt2 = GPT2Config(n_embd=64, n_head=4, activation_function="gelu_pytorch_tanh")
    yield "BertIntermediate (64 -> 256, GELU)", BertIntermediate(bert), 64
    yield "GPT2MLP (Conv1D 64 -> 256, GELU tanh, Conv1D 256 -> 64)", GPT2MLP(256, gpt2), 64
    yield "GPT2MLP, default gelu_new (NewGELUActivation as one table)", \
        GPT2MLP(256, GPT2Config(n_embd=64, n_head=4)), 64


def full_models():
    from transformers import BertConfig, BertModel, GPT2Config, GPT2Model
    yield "BertModel (2 layers, 64 wide)", BertModel(BertConfig(
        vocab_size=100, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
        intermediate_size=256, max_position_embeddings=32))
    yield "GPT2Model (2 layers, 64 wide)", GPT2Model(GPT2Config(
        vocab_size=100, n_embd=64, n_layer=2, n_head=4, n_positions=32,
        activation_function="gelu_pytorch_tanh"))


def _kind(line: str) -> str:
    """What one line of the unsupported-operations error is about: its operation."""
    if "returns" in line:
        return "several outputs"
    m = re.match(r"\s*- (?:unsupported operation )?'?(?:<function )?([\w.]+)", line)
    return m.group(1) if m else line.strip()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=64, help="calibration samples")
    parser.add_argument("--tokens", type=int, default=16)
    parser.add_argument("--zoo", action="store_true", help="compare the front ends on the zoo")
    args = parser.parse_args()
    import transformers
    transformers.logging.set_verbosity_error()
    config = NPUConfig.preset("small")
    torch.manual_seed(0)
    print(f"transformers {transformers.__version__}, torch {torch.__version__}, "
          f"{config.describe()}, {args.tokens} tokens, {args.samples} calibration samples")
    for name, model, width in modules():
        model.eval()
        calib = torch.randn(args.samples, args.tokens, width)
        t0 = time.perf_counter()
        qmodel = sw.quantize(model, [calib], frontend="export")
        seconds = time.perf_counter() - t0
        program = sw.compile(qmodel, config)
        x = torch.randn(8, args.tokens, width)
        device = sw.Device(config)
        y = device.run(program, x)
        exact = torch.equal(y, qmodel(x))
        ref = model(x).detach()
        rel = float((y - ref).abs().max() / ref.abs().max())
        print(f"{name}: {len(qmodel.nodes) - 1} layers, traced and quantized in {seconds:.2f} s, "
              f"func bit-exact: {exact}, max |error| / max |output| = {rel:.4f}")
    for name, model in full_models():
        ids = torch.randint(0, 100, (4, args.tokens))
        try:
            sw.quantize(model.eval(), [ids])
            print(f"{name}: runs")
        except sw.UnsupportedOpError as exc:
            kinds = [_kind(line) for line in str(exc).splitlines()[1:]]
            count = {k: kinds.count(k) for k in dict.fromkeys(kinds)}
            print(f"{name}: {len(kinds)} unsupported: "
                  + ", ".join(f"{k} x{n}" for k, n in count.items()))
    if args.zoo:
        from sw import zoo
        from sw.frontend import trace
        same = []
        for name in zoo.ZOO:
            model, shape = zoo.build(name)
            x = torch.randn(1, *shape)
            ops = [[n.op for n in trace(model, x, frontend=f).nodes] for f in ("fx", "export")]
            (same if ops[0] == ops[1] else []).append(name)
            if ops[0] != ops[1]:
                print(f"zoo {name}: the front ends differ")
        print(f"zoo: {len(same)} of {len(zoo.ZOO)} models trace to the same layers through "
              f"torch.export as through fx: {', '.join(same)}")


if __name__ == "__main__":
    main()
