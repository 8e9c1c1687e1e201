"""A GPU reference: the float model on a CUDA device, measured with the torch profiler.

:func:`profile` runs a model in eager PyTorch (fp16 by default) and reports

* the time of one forward pass (CUDA events around repeated runs after a
  warm-up, with no hooks installed);
* per module, children excluded: the GPU time of the kernels it launched
  (``torch.profiler``, a ``record_function`` range per module), its span on the
  GPU stream (CUDA events in forward hooks: its kernels and the idle gaps
  between them, which is what batch-1 latency is made of in eager mode; the
  hooks themselves add CPU time, so spans are an upper bound), its FLOPs
  (convolutions, linear layers, attention), the bytes it must move (parameters,
  input and output activations, KV cache), and the FLOP/s and bandwidth its
  kernels achieve;
* model-level FLOP/s and MFU, and MBU: the compulsory bytes of one forward
  (parameters once, KV cache read and written, the model's input and output) per
  second, over the GPU's peak bandwidth.

Peaks come from ``data/gpus.json`` (datasheet figures, cited there), matched by
the device name, or are given by the caller. Without a CUDA device
:func:`profile` raises :class:`NoGPUError` and the CLI says so and exits with 2.

``python -m sw.analysis.gpu resnet18 --batch 1,64`` or
``python -m sw.analysis.gpu llama2-7b --phase decode --seq 2048 --batch 1,8,32``
(an LLM proxy name runs ``--layers`` of its layers, one by default).
"""

from __future__ import annotations

import argparse
import json
import pathlib
import statistics
import sys
import warnings
from dataclasses import asdict, dataclass, field

import torch
import torch.nn as nn

from .workload import ModuleWork, count_modules, nbytes

__all__ = ["GPUPeaks", "ModuleCost", "GPUProfile", "NoGPUError", "load_peaks", "find_peaks", "print_profile",
           "profile", "workload", "main"]

_DATA = pathlib.Path(__file__).resolve().parent / "data" / "gpus.json"
_DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}


class NoGPUError(RuntimeError):
    """No CUDA device is available for the GPU reference."""


@dataclass(frozen=True)
class GPUPeaks:
    """A GPU's peak dense compute (per dtype class) and DRAM bandwidth."""
    name: str
    flops_fp16: float
    flops_fp32: float
    bytes_s: float
    memory_bytes: float = 0.0
    source: str = ""

    def flops(self, dtype: torch.dtype) -> float:
        return self.flops_fp32 if dtype == torch.float32 else self.flops_fp16


def load_peaks(path: str | pathlib.Path = _DATA) -> list[tuple[str, GPUPeaks]]:
    """The (match, peaks) table of a GPU data file."""
    try:
        table = json.loads(pathlib.Path(path).read_text())["gpus"]
        return [(row["match"], GPUPeaks(**{k: v for k, v in row.items() if k != "match"}))
                for row in table]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"GPU data file {path}: {exc}") from None


def find_peaks(device_name: str) -> GPUPeaks | None:
    """The peaks of the first entry whose ``match`` is in ``device_name``, or None."""
    for match, peaks in load_peaks():
        if match in device_name:
            return peaks
    return None


@dataclass
class ModuleCost(ModuleWork):
    """One module's own share of a forward pass on the GPU (its children excluded)."""
    time_s: float = 0.0          # its own span on the GPU stream (CUDA events, hooks on), per forward
    kernel_s: float = 0.0        # GPU time of the kernels it launched itself (torch profiler)

    @property
    def flop_s(self) -> float:
        """Achieved FLOP/s while its kernels run."""
        return self.flops / self.kernel_s if self.kernel_s else 0.0

    @property
    def bytes_s(self) -> float:
        """Achieved bandwidth while its kernels run."""
        return self.bytes / self.kernel_s if self.kernel_s else 0.0


@dataclass
class GPUProfile:
    """The result of :func:`profile`."""
    model: str
    device: str
    dtype: str
    batch: int
    peaks: GPUPeaks | None
    time_s: float                # one forward, end to end (median of the timed runs)
    kernel_s: float              # GPU busy time of one forward (sum of its kernels)
    flops: int
    compulsory_bytes: int        # parameters once + KV cache + model input and output
    modules: list[ModuleCost] = field(default_factory=list)

    @property
    def flop_s(self) -> float:
        return self.flops / self.time_s

    @property
    def mfu(self) -> float | None:
        if self.peaks is None:
            return None
        return self.flop_s / self.peaks.flops(_DTYPES[self.dtype])

    @property
    def mbu(self) -> float | None:
        if self.peaks is None:
            return None
        return self.compulsory_bytes / self.time_s / self.peaks.bytes_s

    def to_dict(self) -> dict:
        d = asdict(self)
        d.update(flop_s=self.flop_s, mfu=self.mfu, mbu=self.mbu)
        return d


def _to(value, device, dtype):
    if isinstance(value, torch.Tensor):
        return value.to(device=device, dtype=dtype if value.is_floating_point() else value.dtype)
    if isinstance(value, (tuple, list)):
        return type(value)(_to(v, device, dtype) for v in value)
    return value


def profile(model: nn.Module, args: tuple, *, name: str = "model", dtype: str = "fp16",
            warmup: int = 5, iters: int = 20, peaks: GPUPeaks | None = None,
            device: str = "cuda") -> GPUProfile:
    """Measure ``model(*args)`` on a CUDA device (see the module docstring).

    ``args`` are moved to the device (floating-point tensors cast to ``dtype``:
    ``"fp16"``, ``"bf16"`` or ``"fp32"``). Raises :class:`NoGPUError` without a CUDA
    device and :class:`ValueError` for a bad dtype or count.
    """
    if not torch.cuda.is_available():
        raise NoGPUError("no CUDA device is available: the GPU reference needs one")
    if dtype not in _DTYPES:
        raise ValueError(f"dtype is {dtype!r}; allowed: {', '.join(_DTYPES)}")
    if warmup < 0 or iters < 1:
        raise ValueError(f"warmup={warmup} must be >= 0 and iters={iters} >= 1")
    tdtype = _DTYPES[dtype]
    dev = torch.device(device)
    model = model.to(device=dev, dtype=tdtype).eval()
    args = _to(args, dev, tdtype)
    device_name = torch.cuda.get_device_name(dev)
    peaks = peaks or find_peaks(device_name)
    batch = args[0].shape[0] if args and isinstance(args[0], torch.Tensor) else 1

    names = {m: (n or "model") for n, m in model.named_modules()}
    costs, kv_bytes, out = count_modules(model, args, ModuleCost)
    mode = {"value": None}            # None, "events" or "profile"
    open_: dict[nn.Module, list] = {}
    spans: dict[nn.Module, list] = {m: [] for m in names}

    def pre(module, a, kw):
        if mode["value"] == "events":
            start = torch.cuda.Event(enable_timing=True)
            start.record()
            open_.setdefault(module, []).append(start)
        elif mode["value"] == "profile":
            rf = torch.profiler.record_function(f"module::{names[module]}")
            rf.__enter__()
            open_.setdefault(module, []).append(rf)

    def post(module, a, kw, out):
        if mode["value"] == "events":
            end = torch.cuda.Event(enable_timing=True)
            end.record()
            spans[module].append((open_[module].pop(), end))
        elif mode["value"] == "profile":
            open_[module].pop().__exit__(None, None, None)

    with torch.no_grad():
        # End to end first, with no hooks in the way.
        for _ in range(warmup):
            model(*args)
        torch.cuda.synchronize(dev)
        times = []
        for _ in range(iters):
            start = torch.cuda.Event(enable_timing=True)
            end = torch.cuda.Event(enable_timing=True)
            start.record()
            model(*args)
            end.record()
            end.synchronize()
            times.append(start.elapsed_time(end) / 1e3)
    handles = []
    for m in names:
        handles.append(m.register_forward_pre_hook(pre, with_kwargs=True))
        handles.append(m.register_forward_hook(post, with_kwargs=True))
    try:
        with torch.no_grad():
            mode["value"] = "events"
            for _ in range(iters):
                model(*args)
            torch.cuda.synchronize(dev)
            mode["value"] = "profile"
            activities = [torch.profiler.ProfilerActivity.CPU, torch.profiler.ProfilerActivity.CUDA]
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)   # "Profiler clears events ..."
                with torch.profiler.profile(activities=activities) as prof:
                    for _ in range(iters):
                        model(*args)
                    torch.cuda.synchronize(dev)
                events = prof.events()
            mode["value"] = None
    finally:
        for h in handles:
            h.remove()

    # A module's span holds its children's too: its own share is the difference.
    span_s = {m: sum(s.elapsed_time(e) for s, e in spans[m]) / 1e3 / iters for m in names}
    kernel_us: dict[str, float] = {}
    busy_us = 0.0
    for evt in events:
        # A range appears on the CPU (its device_time_total sums the kernels launched in
        # it) and again as a GPU annotation with the same name: count the CPU one.
        if evt.name.startswith("module::") and evt.device_type == torch.autograd.DeviceType.CPU:
            key = evt.name[len("module::"):]
            kernel_us[key] = kernel_us.get(key, 0.0) + evt.device_time_total
        elif (evt.device_type == torch.autograd.DeviceType.CUDA
              and not evt.name.startswith("module::")):
            busy_us += evt.device_time
    called = {m for m in names if spans[m]}

    def called_children(m: nn.Module) -> list[nn.Module]:
        """The nearest descendants that ran (a ModuleList is a container, never called)."""
        out = []
        for c in m.children():
            out.extend([c] if c in called else called_children(c))
        return out

    for m, cost in costs.items():
        children = called_children(m)
        cost.time_s = max(span_s[m] - sum(span_s[c] for c in children), 0.0)
        own_k = kernel_us.get(names[m], 0.0) - sum(kernel_us.get(names[c], 0.0) for c in children)
        cost.kernel_s = max(own_k, 0.0) / 1e6 / iters

    params = sum(p.numel() * p.element_size() for p in model.parameters())
    compulsory = params + kv_bytes + nbytes(args[:1]) + nbytes([out])
    modules = sorted((c for c in costs.values() if c.kernel_s > 0 or c.flops),
                     key=lambda c: -c.kernel_s)
    return GPUProfile(model=name, device=device_name, dtype=dtype, batch=batch, peaks=peaks,
                      time_s=statistics.median(times), kernel_s=busy_us / 1e6 / iters,
                      flops=sum(c.flops for c in costs.values()), compulsory_bytes=compulsory,
                      modules=modules)


# The workloads the CLI knows ----------------------------------------------------------------

def workload(name: str, *, batch: int, phase: str = "decode", seq: int = 2048,
             layers: int = 1, image: int | None = None) -> tuple[nn.Module, tuple]:
    """A zoo model or an LLM proxy's layers, with inputs for ``batch``.

    LLM proxies: ``phase="decode"`` is one token against a preallocated KV cache
    of ``seq`` tokens; ``"prefill"`` is ``seq`` tokens. Raises :class:`KeyError`
    for an unknown name.
    """
    from . import llm
    from .. import zoo
    if name in llm.MODELS:
        cfg = llm.get(name)
        model = llm.DecoderStack(cfg, layers)
        if phase == "prefill":
            return model, (torch.randn(batch, seq, cfg.hidden),)
        if phase != "decode":
            raise ValueError(f"phase is {phase!r}; allowed: prefill, decode")
        if not cfg.causal:
            raise ValueError(f"{name} is an encoder: it has no decode phase")
        shape = (batch, cfg.kv_heads, seq + 1, cfg.head_dim)
        caches = [(torch.randn(shape), torch.randn(shape)) for _ in range(layers)]
        return model, (torch.randn(batch, 1, cfg.hidden), caches, seq)
    if name in zoo.ZOO:
        model, shape = zoo.build(name)
        if image is not None:
            shape = (shape[0], image, image)
        return model, (torch.randn(batch, *shape),)
    raise KeyError(f"unknown model {name!r}; zoo: {', '.join(zoo.ZOO)}; "
                   f"LLM proxies: {', '.join(llm.MODELS)}")


def _int_list(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected integers separated by commas, got {text!r}")
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected positive integers, got {text!r}")
    return values


def print_profile(p: GPUProfile, top: int) -> None:
    """Print a profile's totals and its ``top`` modules by time."""
    peak = p.peaks
    print(f"{p.model} batch {p.batch} {p.dtype} on {p.device}: {p.time_s * 1e3:.3f} ms per "
          f"forward (kernels {p.kernel_s * 1e3:.3f} ms), {p.flop_s / 1e12:.2f} TFLOP/s"
          + (f", MFU {p.mfu:.2%}, MBU {p.mbu:.2%} of {peak.bytes_s / 1e12:.2f} TB/s"
             if peak else " (unknown GPU: no peaks, no MFU/MBU)"))
    print(f"  {'module':<30} {'kind':<16} {'span us':>9} {'kern us':>9} {'GFLOP':>8} {'MB':>8} "
          f"{'TFLOP/s':>8} {'GB/s':>8}")
    for c in p.modules[:top]:
        print(f"  {c.name[:30]:<30} {c.kind[:16]:<16} {c.time_s * 1e6:>9.1f} "
              f"{c.kernel_s * 1e6:>9.1f} {c.flops / 1e9:>8.3f} {c.bytes / 1e6:>8.2f} "
              f"{c.flop_s / 1e12:>8.2f} {c.bytes_s / 1e9:>8.1f}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m sw.analysis.gpu",
        description="Measure a model in eager PyTorch on a CUDA GPU (torch profiler): time, "
                    "per-module time, FLOP/s, bandwidth, MFU and MBU against the GPU's peaks.")
    parser.add_argument("model", help="a zoo model (resnet18, resnet50, ...) or an LLM proxy "
                                      "(llama2-7b, opt-13b, bert-base)")
    parser.add_argument("--batch", type=_int_list, default=[1], help="batch sizes, e.g. 1,8,64")
    parser.add_argument("--phase", choices=["decode", "prefill"], default="decode",
                        help="LLM proxies: one token against a KV cache, or a prefill")
    parser.add_argument("--seq", type=int, default=2048, help="LLM: KV cache / prompt length")
    parser.add_argument("--layers", type=int, default=1, help="LLM: layers measured")
    parser.add_argument("--image", type=int, help="CNNs: input height and width")
    parser.add_argument("--dtype", choices=list(_DTYPES), default="fp16")
    parser.add_argument("--iters", type=int, default=20)
    parser.add_argument("--top", type=int, default=12, help="modules listed per run")
    parser.add_argument("--json", help="write the results to this file")
    args = parser.parse_args(argv)
    from . import llm
    if not torch.cuda.is_available():
        print("no CUDA device is available: the GPU reference needs one", file=sys.stderr)
        return 2
    results = []
    for batch in args.batch:
        try:
            model, inputs = workload(args.model, batch=batch, phase=args.phase, seq=args.seq,
                                     layers=args.layers, image=args.image)
        except (KeyError, ValueError) as exc:
            parser.error(str(exc.args[0] if isinstance(exc, KeyError) else exc))
        label = args.model if args.model not in llm.MODELS else \
            f"{args.model} {args.layers} layer(s) {args.phase} L={args.seq}"
        result = profile(model, inputs, name=label, dtype=args.dtype, iters=args.iters)
        print_profile(result, args.top)
        results.append(result.to_dict())
        del model, inputs
        torch.cuda.empty_cache()
    if args.json:
        pathlib.Path(args.json).write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
