"""Transformers on the NPU: per model, instructions, MACs, host operators, bit-exactness,
float agreement, and cycles with utilization per layer.

Models: the zoo's BERT-style encoder and GPT-2 style decoder (2 layers, hidden 64, 2
heads, 16 tokens), ``nn.TransformerEncoderLayer`` (batch_first, 64, 2 heads, FFN 256), and,
with ``transformers`` installed, Hugging Face ``BertModel`` and ``GPT2Model`` from small
configs with random weights (token ids in, through the torch.export front end).

Float agreement is a figure, not a pass criterion: the cosine and the SQNR (dB) of the
NPU's dequantized output against the float model on random inputs, for the model and for
every layer (the golden's output at each node against the float model's there). Every run is checked
bit-exact against the integer golden on ``func``; cycles are the performance model's on
the configuration (default 16x16) and, with ``--rtl``, measured in Verilator on the tiny
4x4 configuration for the small variants (hidden 16, 8 tokens), with each layer's cycles
and utilization (real MACs / MAC slots of its span).

    python bench/transformer_models.py [--models bert_encoder,...] [--rtl] [--json FILE]
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time

import torch
import torch.nn as nn

import sw
from hw import NPUConfig
from sw.analysis.metrics import model_timing
from sw.zoo_transformer import BertEncoder, GPT2Block, GPT2Decoder


def _encoder_layer(hidden=64, heads=2, ffn=256):
    return nn.TransformerEncoderLayer(hidden, heads, ffn, dropout=0.0, batch_first=True)


def _hf(kind: str, hidden: int, layers: int, heads: int):
    import transformers
    if kind == "bert":
        cfg = transformers.BertConfig(vocab_size=128, hidden_size=hidden, num_hidden_layers=layers,
                                      num_attention_heads=heads, intermediate_size=4 * hidden,
                                      max_position_embeddings=64, hidden_dropout_prob=0.0,
                                      attention_probs_dropout_prob=0.0)
        return transformers.BertModel(cfg, add_pooling_layer=False)
    cfg = transformers.GPT2Config(vocab_size=128, n_embd=hidden, n_layer=layers, n_head=heads,
                                  n_positions=64, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
                                  bos_token_id=0, eos_token_id=0)
    return transformers.GPT2Model(cfg)


class HiddenStates(nn.Module):
    """A Hugging Face model's last hidden state, from token ids."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, ids):
        return self.model(input_ids=ids).last_hidden_state


#: name -> (full factory, sample shape, small factory for the RTL, its shape, token ids?)
MODELS = {
    "bert_encoder": (BertEncoder, (16, 64), lambda: BertEncoder(1, 16, 2, 32), (8, 16), False),
    "gpt2_decoder": (GPT2Decoder, (16, 64), lambda: GPT2Block(16, 2), (8, 16), False),
    "encoder_layer": (_encoder_layer, (16, 64), lambda: _encoder_layer(16, 2, 32), (8, 16), False),
    "hf_bert": (lambda: HiddenStates(_hf("bert", 64, 2, 2)), (16,),
                lambda: HiddenStates(_hf("bert", 16, 1, 2)), (8,), True),
    "hf_gpt2": (lambda: HiddenStates(_hf("gpt2", 64, 2, 2)), (16,),
                lambda: HiddenStates(_hf("gpt2", 16, 1, 2)), (8,), True),
}


def _inputs(shape, ids: bool, batch: int, gen):
    if ids:
        return torch.randint(0, 128, (batch, *shape), generator=gen)
    return torch.randn(batch, *shape, generator=gen)


def _agreement(y: torch.Tensor, f: torch.Tensor) -> tuple[float, float]:
    cos = torch.nn.functional.cosine_similarity(y.flatten(1), f.flatten(1), 1)
    noise = (y - f).pow(2).sum()
    sqnr = 10 * math.log10(float(f.pow(2).sum() / noise)) if noise > 0 else math.inf
    return float(cos.mean()), sqnr


def layer_agreement(model: nn.Module, qmodel, x: torch.Tensor) -> list[dict]:
    """Per layer: the golden's dequantized output against the float model's at the same
    node (float all the way from the input: the error each layer has accumulated)."""
    from sw import ops
    from sw.frontend import trace
    from sw.ir import Graph
    from sw.quant import float_forward
    graph = trace(model, example=x)
    every = Graph(graph.nodes, [n.name for n in graph.nodes])     # every node's output
    fenv = float_forward(every, {graph.nodes[0].name: x})
    env = qmodel.node_outputs(x)
    rows = []
    for q in qmodel.nodes:
        if q.op == "input" or q.name not in fenv or ops.get(q.op).view:
            continue
        got = q.out.dequantize(env[q.name]) if env[q.name].dtype == torch.int8 else None
        if got is None or got.shape != fenv[q.name].shape:
            continue
        cos, sqnr = _agreement(got.flatten(1), fenv[q.name].flatten(1).float())
        rows.append({"name": q.name, "op": q.op, "where": q.where, "cosine": cos, "sqnr_db": sqnr})
    return rows


def run_one(name: str, cfg: NPUConfig, batch: int, rtl: bool) -> dict:
    factory, shape, small, small_shape, ids = MODELS[name]
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(1)
    model = factory().eval()
    calib = [_inputs(shape, ids, batch, gen) for _ in range(2)]
    x = _inputs(shape, ids, batch, gen)
    t0 = time.perf_counter()
    qmodel = sw.quantize(model, calib)
    t1 = time.perf_counter()
    program = sw.compile(qmodel, cfg)
    t2 = time.perf_counter()
    y = sw.Device(cfg).run(program, x)
    with torch.no_grad():
        f = model(x)
    cos, sqnr = _agreement(y, f)
    timing = model_timing(program)
    macs = sum(layer["macs"] for layer in program.layers)
    row = {
        "model": name, "input": list(shape), "bit_exact": bool(torch.equal(y, qmodel(x))),
        "instructions": program.insn_count, "macs": macs, "host_ops": list(program.host_ops),
        "cosine": cos, "sqnr_db": sqnr, "compile_s": t2 - t1, "quantize_s": t1 - t0,
        "cycles": timing.cycles, "utilization": macs / (timing.cycles * cfg.macs),
        "layers": layer_agreement(model, qmodel, x),
    }
    if rtl:
        tiny = NPUConfig.preset("tiny")
        torch.manual_seed(0)
        m = small().eval()
        q = sw.quantize(m, [_inputs(small_shape, ids, 4, gen) for _ in range(2)])
        p = sw.compile(q, tiny)
        xs = _inputs(small_shape, ids, 1, gen)
        dev = sw.Device(tiny, backend="rtl")
        ys = dev.run(p, xs)
        stats = dev.stats
        row["rtl"] = {
            "input": list(small_shape), "bit_exact": bool(torch.equal(ys, q(xs))),
            "instructions": p.insn_count, "cycles": stats["cycles_per_run"],
            "utilization": stats["utilization"],
            "layers": [{k: layer[k] for k in ("name", "op", "cycles", "macs", "utilization")
                        if k in layer} for layer in stats["layers"]],
        }
    return row


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default=",".join(MODELS),
                    help=f"comma-separated names (default: {','.join(MODELS)})")
    ap.add_argument("--batch", type=int, default=4, help="random inputs per model (default 4)")
    ap.add_argument("--rows", type=int, default=16)
    ap.add_argument("--cols", type=int, default=16)
    ap.add_argument("--rtl", action="store_true",
                    help="also run the small variants on Verilator (tiny 4x4), per layer")
    ap.add_argument("--json", metavar="FILE", help="also write the rows as JSON")
    args = ap.parse_args(argv)
    names = [n for n in args.models.split(",") if n]
    unknown = [n for n in names if n not in MODELS]
    if unknown:
        ap.error(f"unknown model(s) {', '.join(unknown)}; known: {', '.join(MODELS)}")
    if args.batch < 1:
        ap.error("--batch must be at least 1")
    cfg = NPUConfig(rows=args.rows, cols=args.cols)
    print(f"{cfg.describe()}; {args.batch} random inputs per model; cycles from the "
          f"performance model, utilization = real MACs / MAC slots of the run", flush=True)
    print(f"{'model':<14} {'input':>8} {'exact':>5} {'host':>4} {'insns':>7} {'MMACs':>7} "
          f"{'cos':>7} {'SQNR':>6} {'compile':>8} {'kcycles':>8} {'util':>6}")
    rows = []
    for name in names:
        r = run_one(name, cfg, args.batch, args.rtl)
        rows.append(r)
        print(f"{name:<14} {'x'.join(map(str, r['input'])):>8} {'yes' if r['bit_exact'] else 'NO':>5} "
              f"{len(r['host_ops']):>4} {r['instructions']:>7,} {r['macs'] / 1e6:>7.2f} "
              f"{r['cosine']:>7.4f} {r['sqnr_db']:>5.1f}dB {r['compile_s']:>7.1f}s "
              f"{r['cycles'] / 1e3:>8.1f} {100 * r['utilization']:>5.1f}%", flush=True)
    for r in rows:
        print(f"\n{r['model']}: float agreement per layer (golden vs float at each node)")
        print(f"  {'layer':<40} {'op':<10} {'cos':>7} {'SQNR':>7}")
        for layer in r["layers"]:
            print(f"  {layer['name'][:40]:<40} {layer['op']:<10} {layer['cosine']:>7.4f} "
                  f"{layer['sqnr_db']:>5.1f}dB")
    if args.rtl:
        for r in rows:
            s = r["rtl"]
            print(f"\n{r['model']} on rtl, tiny 4x4, input {'x'.join(map(str, s['input']))}: "
                  f"{'bit-exact' if s['bit_exact'] else 'MISMATCH'}, {s['instructions']:,} "
                  f"instructions, {s['cycles']:,.0f} cycles, utilization "
                  f"{100 * s['utilization']:.1f}%")
            print(f"  {'layer':<34} {'op':<10} {'cycles':>8} {'MACs':>8} {'util':>6}")
            for layer in s["layers"]:
                util = layer.get("utilization")
                print(f"  {layer['name'][:34]:<34} {layer['op']:<10} {layer['cycles']:>8,.0f} "
                      f"{layer['macs']:>8,.0f} "
                      f"{'' if util is None or not layer['macs'] else f'{100 * util:5.1f}%':>6}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)
    ok = all(r["bit_exact"] and (not args.rtl or r["rtl"]["bit_exact"]) for r in rows)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
