"""SCALE-Sim v3 estimates for GEMMs and zoo models, cached under bench/results/scalesim/.

    python bench/scalesim_ref.py [WORKLOAD ...] [--preset P] [--rows R --cols C]
                                 [--gemm-sizes 128 256 512] [--resume] [--unpatched]

WORKLOAD is ``gemm`` (square GEMMs of --gemm-sizes) or a zoo model name (every
convolution and linear layer, shapes traced from ``sw.zoo.build(name)``); default
``gemm resnet18``. SCALE-Sim (PyPI ``scalesim`` 3.0.0) is not a project dependency: the
first run creates its own virtual environment (--venv, default build/scalesim-venv,
ignored by git) with the pinned packages of ``PINNED`` (numpy < 2.4: SCALE-Sim 3.0.0's
``int(max(ndarray))`` in memory/read_buffer.py fails under numpy 2.4) and runs
``bench/scalesim_runner.py`` there, one subprocess per layer, sequentially. Each
workload's results go to ``<out>/<workload>_<rows>x<cols>.json``, rewritten after every
layer, with the command line, the SCALE-Sim config and the per-layer figures; read them
with :mod:`sw.analysis.scalesim`.

How our NPU maps onto SCALE-Sim's three SRAMs and three DRAM interfaces
(``scalesim_config``): SCALE-Sim's word is one byte (its fixed ``word_size``), as is
our int8 operand. Our unified scratchpad (``spad_depth x rows`` bytes) holds inputs and
weights: half of it is the ifmap SRAM, half the filter SRAM (each double-buffered by
SCALE-Sim, as the compiler double-buffers the scratchpad). The accumulator holds
``acc_depth x cols`` int32 outputs: the ofmap SRAM gets that many words. Every interface
gets the AXI bus's bytes per beat (``dma_bytes``) per cycle; SCALE-Sim's three
interfaces are independent, where our one bus is shared, so its bandwidth is up to three
times ours. For the default 16x16 config: 32 + 32 + 16 KiB, 16 words/cycle.

Layers: SCALE-Sim knows neither padding nor dilation. A convolution's ifmap is the
padded input cropped to the rows and columns its outputs read,
``(out - 1) * stride + kernel``, so SCALE-Sim's output size equals PyTorch's. GEMMs and
linear layers (M rows, reduction K, N outputs) use SCALE-Sim's GEMM topology (M, N, K). A depthwise convolution becomes
SCALE-Sim's "DP" layer (split per channel); other grouped or dilated convolutions are
refused.

Figures per layer, from SCALE-Sim's COMPUTE_REPORT.csv: ``total_cycles`` is its
"Total Cycles (incl. prefetch)" (from the first DRAM read to the last DRAM write),
``stall_cycles`` its "Stall Cycles" (the array waiting on its read buffers),
``compute_cycles`` its "Total Cycles" minus the stalls (the array's own schedule,
prefetch excluded), with "Overall Util %", "Mapping Efficiency %" and "Compute Util %".
"""
import argparse
import csv
import dataclasses
import json
import math
import os
import pathlib
import shlex
import subprocess
import sys
import tempfile
import time
import venv

import torch
from torch import nn

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from hw import NPUConfig  # noqa: E402
from sw import zoo  # noqa: E402

#: The SCALE-Sim environment, pinned (scalesim 3.0.0 and what pip resolved for it).
PINNED = [
    "scalesim==3.0.0", "numpy==2.3.5", "absl-py==2.5.1", "configparser==7.3.0",
    "matplotlib==3.11.2", "numba==0.68.1", "llvmlite==0.50.0", "pandas==3.1.1",
    "tqdm==4.70.1",
]
RUNNER = ROOT / "bench" / "scalesim_runner.py"
DEFAULT_OUT = ROOT / "bench" / "results" / "scalesim"
FORMAT = 1

# COMPUTE_REPORT.csv columns (SCALE-Sim 3.0.0, scalesim/simulator.py).
_COL_TOTAL = "Total Cycles (incl. prefetch)"
_COL_MEMORY = "Total Cycles"
_COL_STALL = "Stall Cycles"
_COL_UTIL = "Overall Util %"
_COL_MAPPING = "Mapping Efficiency %"
_COL_COMPUTE_UTIL = "Compute Util %"


@dataclasses.dataclass(frozen=True)
class Layer:
    """One SCALE-Sim layer, in the convolution terms of its topology parser.

    A GEMM (kind ``gemm``, or ``linear`` for an nn.Linear) of M rows, reduction K and N
    outputs is held as SCALE-Sim's GEMM mode holds it (topology_utils.load_arrays_gemm):
    an M x K ifmap, a 1 x K filter, one channel, N filters, stride 1.
    """

    name: str
    kind: str           # "gemm", "linear", "conv" or "depthwise"
    ifmap_h: int
    ifmap_w: int
    filter_h: int
    filter_w: int
    channels: int
    filters: int
    stride: int

    @classmethod
    def gemm(cls, name: str, m: int, n: int, k: int, kind: str = "gemm") -> "Layer":
        return cls(name, kind, m, k, 1, k, 1, n, 1)

    @property
    def is_gemm(self) -> bool:
        return self.kind in ("gemm", "linear")

    @property
    def macs(self) -> int:
        out_h = (self.ifmap_h - self.filter_h) // self.stride + 1
        out_w = (self.ifmap_w - self.filter_w) // self.stride + 1
        per_filter = 1 if self.kind == "depthwise" else self.channels
        return out_h * out_w * self.filter_h * self.filter_w * per_filter * self.filters

    def topology(self) -> tuple[str, str]:
        """The header and the row of a one-layer topology CSV (GEMM or conv format)."""
        if self.is_gemm:
            return ("Layer, M, N, K,",
                    f"{self.name}, {self.ifmap_h}, {self.filters}, {self.ifmap_w},")
        # SCALE-Sim splits a layer whose name contains "DP" per channel (depthwise).
        name = f"DP_{self.name}" if self.kind == "depthwise" else self.name
        filters = 1 if self.kind == "depthwise" else self.filters
        return ("Layer name, IFMAP height, IFMAP width, Filter height, Filter width, "
                "Channels, Num filter, Strides,",
                f"{name}, {self.ifmap_h}, {self.ifmap_w}, {self.filter_h}, {self.filter_w}, "
                f"{self.channels}, {filters}, {self.stride},")


def gemm_layers(sizes: list[int]) -> list[Layer]:
    """Square GEMMs n x n x n."""
    return [Layer.gemm(f"gemm{n}", n, n, n) for n in sizes]


def model_layers(name: str) -> list[Layer]:
    """Every nn.Conv2d and nn.Linear of zoo model ``name``, in execution order.

    Raises
    ------
    KeyError
        ``name`` is not in the zoo.
    ValueError
        A grouped (not depthwise) or dilated convolution, which SCALE-Sim cannot express.
    """
    model, shape = zoo.build(name)
    model.eval()
    layers: list[Layer] = []

    def hook(module, inputs, output):
        qual = names[module].replace(".", "_").replace("DP", "dp") or "layer"
        if isinstance(module, nn.Linear):
            rows = math.prod(inputs[0].shape[:-1])
            layers.append(Layer.gemm(qual, rows, module.out_features, module.in_features,
                                     kind="linear"))
            return
        if module.dilation != (1, 1):
            raise ValueError(f"{name}: {names[module]} has dilation {module.dilation}; "
                             f"SCALE-Sim models no dilation")
        if module.stride[0] != module.stride[1]:
            raise ValueError(f"{name}: {names[module]} has stride {module.stride}; "
                             f"SCALE-Sim takes one stride for both axes")
        cin, cout, groups = module.in_channels, module.out_channels, module.groups
        if groups == 1:
            kind = "conv"
        elif groups == cin == cout:
            kind = "depthwise"
        else:
            raise ValueError(f"{name}: {names[module]} has groups={groups} with {cin} in and "
                             f"{cout} out channels; SCALE-Sim has only dense and depthwise")
        (kh, kw), s = module.kernel_size, module.stride[0]
        out_h, out_w = output.shape[-2:]
        layers.append(Layer(qual, kind, (out_h - 1) * s + kh, (out_w - 1) * s + kw, kh, kw,
                            cin, cout, s))

    names = {m: n for n, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))}
    handles = [m.register_forward_hook(hook) for m in names]
    with torch.no_grad():
        model(torch.zeros(1, *shape))
    for h in handles:
        h.remove()
    return layers


def scalesim_config(cfg: NPUConfig) -> dict:
    """SCALE-Sim's architecture parameters for ``cfg`` (see the module docstring).

    Raises
    ------
    ValueError
        Half the scratchpad or the accumulator's element count is not a whole KiB
        (SCALE-Sim takes SRAM sizes in whole KiB).
    """
    spad_bytes = cfg.spad_depth * cfg.rows
    acc_words = cfg.acc_depth * cfg.cols
    if spad_bytes % 2048 or acc_words % 1024:
        raise ValueError(f"{cfg.describe()}: half the scratchpad ({spad_bytes // 2} B) and the "
                         f"accumulator ({acc_words} words) must be whole KiB for SCALE-Sim")
    return {
        "ArrayHeight": cfg.rows, "ArrayWidth": cfg.cols, "Dataflow": "ws",
        "ifmapsramszkB": spad_bytes // 2048, "filtersramszkB": spad_bytes // 2048,
        "ofmapsramszkB": acc_words // 1024, "bandwidth_words_per_cycle": cfg.dma_bytes,
    }


def config_text(arch: dict) -> str:
    """A SCALE-Sim 3.0.0 config file (the sections scale_config.read_conf_file reads)."""
    bw = arch["bandwidth_words_per_cycle"]
    return f"""[general]
run_name = npu

[run_presets]
InterfaceBandwidth = USER
UseRamulatorTrace = False

[architecture_presets]
ArrayHeight = {arch['ArrayHeight']}
ArrayWidth = {arch['ArrayWidth']}
ifmapsramszkB = {arch['ifmapsramszkB']}
filtersramszkB = {arch['filtersramszkB']}
ofmapsramszkB = {arch['ofmapsramszkB']}
IfmapOffset = 0
FilterOffset = 10000000
OfmapOffset = 20000000
Bandwidth = {bw}
Dataflow = {arch['Dataflow']}
ReadRequestBuffer = 32
WriteRequestBuffer = 32

[layout]
IfmapCustomLayout = False
FilterCustomLayout = False
IfmapSRAMBankBandwidth = {bw}
IfmapSRAMBankNum = 1
IfmapSRAMBankPort = 2
FilterSRAMBankBandwidth = {bw}
FilterSRAMBankNum = 1
FilterSRAMBankPort = 2

[sparsity]
SparsitySupport = false
"""
# In USER mode SCALE-Sim 3.0.0 feeds its ifmap and filter read buffers at
# [layout] *SRAMBankBandwidth words per cycle and its ofmap write buffer at Bandwidth
# (single_layer_sim.run), so all three carry the bus width.


def ensure_venv(path: pathlib.Path) -> pathlib.Path:
    """The SCALE-Sim environment's python, creating the environment if needed."""
    python = path / "bin" / "python"
    stamp = path / "pinned.txt"
    if python.exists() and stamp.exists() and stamp.read_text().split() == PINNED:
        return python
    if not python.exists():
        if path.exists() and any(path.iterdir()):
            raise SystemExit(f"error: {path} exists and is not a virtual environment; "
                             f"give --venv a new directory")
        print(f"creating the SCALE-Sim environment in {path} ...", flush=True)
        venv.create(path, with_pip=True)
    subprocess.run([str(python), "-m", "pip", "install", "-q", *PINNED], check=True)
    stamp.write_text("\n".join(PINNED) + "\n")
    return python


def run_layer(python: pathlib.Path, layer: Layer, arch: dict, patched: bool = True,
              reports: dict | None = None) -> dict:
    """Run SCALE-Sim on one layer; its COMPUTE_REPORT.csv figures and the wall time.

    ``reports``, if given, receives the bytes of every report file SCALE-Sim wrote.

    Raises
    ------
    RuntimeError
        SCALE-Sim failed or wrote no report.
    """
    with tempfile.TemporaryDirectory(prefix="scalesim-") as tmp:
        tmp = pathlib.Path(tmp)
        (tmp / "npu.cfg").write_text(config_text(arch))
        header, row = layer.topology()
        (tmp / "topo.csv").write_text(f"{header}\n{row}\n")
        # Only read with a custom layout (off); SCALE-Sim still opens the file.
        (tmp / "layout.csv").write_text("Layer name,\n")
        cmd = [str(python), str(RUNNER), "-c", "npu.cfg", "-t", "topo.csv",
               "-l", "layout.csv", "-p", "out"]
        cmd += (["--gemm"] if layer.is_gemm else []) + ([] if patched else ["--unpatched"])
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, cwd=tmp, capture_output=True, text=True)
        wall = time.perf_counter() - t0
        report = tmp / "out" / "npu" / "COMPUTE_REPORT.csv"
        if proc.returncode or not report.exists():
            raise RuntimeError(f"SCALE-Sim failed on {layer.name} (exit {proc.returncode}):\n"
                               f"{proc.stdout[-2000:]}{proc.stderr[-2000:]}")
        rows = read_compute_report(report)
        if reports is not None:
            reports.update({p.name: p.read_bytes() for p in sorted(report.parent.glob("*.csv"))})
    # A depthwise layer is one report row per channel: the channels run one after another.
    total = {k: sum(r[k] for r in rows) for k in (_COL_TOTAL, _COL_MEMORY, _COL_STALL)}
    first = rows[0]
    return {
        "name": layer.name, "kind": layer.kind, "topology": layer.topology()[1],
        "macs": layer.macs,
        "total_cycles": int(total[_COL_TOTAL]), "stall_cycles": int(total[_COL_STALL]),
        "compute_cycles": int(total[_COL_MEMORY] - total[_COL_STALL]),
        "overall_util_pct": first[_COL_UTIL] if len(rows) == 1 else None,
        "mapping_efficiency_pct": first[_COL_MAPPING] if len(rows) == 1 else None,
        "compute_util_pct": first[_COL_COMPUTE_UTIL] if len(rows) == 1 else None,
        "wall_s": round(wall, 2),
    }


def read_compute_report(path: pathlib.Path) -> list[dict]:
    """COMPUTE_REPORT.csv as one dict of floats per row (its trailing comma dropped)."""
    with open(path, newline="") as f:
        table = [[c.strip() for c in row] for row in csv.reader(f)]
    head = [c for c in table[0] if c]
    for col in (_COL_TOTAL, _COL_MEMORY, _COL_STALL):
        if col not in head:
            raise RuntimeError(f"{path}: no column {col!r} in {head}")
    return [dict(zip(head, map(float, row[:len(head)]))) for row in table[1:] if row]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        epilog="Example: python bench/scalesim_ref.py gemm resnet18")
    parser.add_argument("workloads", nargs="*", default=["gemm", "resnet18"],
                        help=f"'gemm' or zoo models ({', '.join(zoo.ZOO)}); "
                             f"default: gemm resnet18")
    parser.add_argument("--preset", default="default", help="NPUConfig preset (default: default)")
    parser.add_argument("--rows", type=int, help="array rows (overrides the preset)")
    parser.add_argument("--cols", type=int, help="array columns (overrides the preset)")
    parser.add_argument("--gemm-sizes", type=int, nargs="+", default=[128, 256, 512])
    parser.add_argument("--venv", type=pathlib.Path, default=ROOT / "build" / "scalesim-venv")
    parser.add_argument("--out", type=pathlib.Path, default=DEFAULT_OUT)
    parser.add_argument("--resume", action="store_true",
                        help="keep layers already in the result file (same config) and run "
                             "only the rest")
    parser.add_argument("--unpatched", action="store_true",
                        help="run SCALE-Sim's quadratic read buffer as installed (slow)")
    parser.add_argument("--compare-unpatched", action="store_true",
                        help="run every layer patched and unpatched, check that the reports "
                             "are byte-identical and print both times; writes no cache")
    args = parser.parse_args(argv)

    overrides = {k: v for k, v in (("rows", args.rows), ("cols", args.cols)) if v is not None}
    try:
        cfg = NPUConfig.preset(args.preset, **overrides)
        arch = scalesim_config(cfg)
    except ValueError as exc:
        parser.error(str(exc))
    for w in args.workloads:
        if w != "gemm" and w not in zoo.ZOO:
            parser.error(f"unknown workload {w!r}; use 'gemm' or a zoo model: "
                         f"{', '.join(zoo.ZOO)}")
    python = ensure_venv(args.venv)
    args.out.mkdir(parents=True, exist_ok=True)
    command = "python bench/scalesim_ref.py " + shlex.join(argv if argv is not None
                                                           else sys.argv[1:])
    for w in args.workloads:
        layers = gemm_layers(args.gemm_sizes) if w == "gemm" else model_layers(w)
        if args.compare_unpatched:
            if not compare_unpatched(python, layers, arch):
                return 1
            continue
        path = args.out / f"{w}_{cfg.rows}x{cfg.cols}.json"
        result = {
            "format": FORMAT, "tool": "scalesim 3.0.0", "workload": w,
            "command": command, "npu_config": cfg.to_dict(), "scalesim_config": arch,
            "scalesim_cfg_file": config_text(arch), "read_buffer_patched": not args.unpatched, "complete": False, "layers": [],
        }
        done = {}
        if args.resume and path.exists():
            old = json.loads(path.read_text())
            if old.get("scalesim_config") == arch:
                done = {r["name"]: r for r in old["layers"]}
        for i, layer in enumerate(layers):
            record = done.get(layer.name)
            if record is None or record["topology"] != layer.topology()[1]:
                record = run_layer(python, layer, arch, patched=not args.unpatched)
            result["layers"].append(record)
            print(f"{w} [{i + 1}/{len(layers)}] {layer.name:24} total {record['total_cycles']:>11,}"
                  f"  stall {record['stall_cycles']:>11,}  compute {record['compute_cycles']:>10,}"
                  f"  ({record['wall_s']:.1f} s)", flush=True)
            _write(path, result)
        result["complete"] = True
        result["totals"] = {k: sum(r[k] for r in result["layers"])
                            for k in ("total_cycles", "stall_cycles", "compute_cycles", "macs")}
        _write(path, result)
        print(f"{w}: {result['totals']} -> {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}")
    return 0


def compare_unpatched(python: pathlib.Path, layers: list[Layer], arch: dict) -> bool:
    """Run each layer patched and unpatched; True if every report is byte-identical."""
    same = True
    for layer in layers:
        fast, slow = {}, {}
        a = run_layer(python, layer, arch, patched=True, reports=fast)
        b = run_layer(python, layer, arch, patched=False, reports=slow)
        ok = fast == slow and bool(fast)
        same &= ok
        print(f"{layer.name:24} patched {a['wall_s']:7.1f} s  unpatched {b['wall_s']:7.1f} s  "
              f"reports {', '.join(fast)}: {'byte-identical' if ok else 'DIFFER'}", flush=True)
    return same


def _write(path: pathlib.Path, result: dict) -> None:
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(result, indent=1) + "\n")
    os.replace(tmp, path)


if __name__ == "__main__":
    sys.exit(main())
