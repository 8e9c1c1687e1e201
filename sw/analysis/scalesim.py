"""SCALE-Sim v3 estimates as a baseline: the cached per-layer results, typed.

SCALE-Sim (PyPI ``scalesim`` 3.0.0) is not a project dependency. ``bench/scalesim_ref.py``
runs it in its own environment and caches its figures as JSON under
``bench/results/scalesim/<workload>_<rows>x<cols>.json``; this module only reads them.
How the NPU config maps onto SCALE-Sim's three SRAMs and interfaces is in that script's
docstring and in docs/analysis.md ("SCALE-Sim v3 as a baseline").
"""
from __future__ import annotations

import dataclasses
import json
import pathlib
from typing import Any

from hw import NPUConfig

__all__ = ["CACHE_DIR", "ScaleSimCacheError", "ScaleSimLayer", "ScaleSimResult", "load",
           "load_cached"]

#: Where bench/scalesim_ref.py writes its results (in a source checkout).
CACHE_DIR = pathlib.Path(__file__).resolve().parents[2] / "bench" / "results" / "scalesim"
_FORMAT = 1


class ScaleSimCacheError(ValueError):
    """A SCALE-Sim result file that is not what bench/scalesim_ref.py writes."""


@dataclasses.dataclass(frozen=True)
class ScaleSimLayer:
    """SCALE-Sim's figures for one layer.

    Attributes
    ----------
    name, kind:
        The layer (the model's module path with ``_`` for ``.``) and ``gemm``,
        ``linear``, ``conv`` or ``depthwise``.
    topology:
        Its row in SCALE-Sim's topology CSV.
    macs:
        Real multiply-accumulates of the layer.
    total_cycles:
        SCALE-Sim's "Total Cycles (incl. prefetch)": first DRAM read to last DRAM write.
    stall_cycles:
        Its "Stall Cycles": the array waiting on the ifmap and filter read buffers.
    compute_cycles:
        Its "Total Cycles" less the stalls: the array's schedule alone.
    overall_util_pct, mapping_efficiency_pct, compute_util_pct:
        Its utilization columns (``None`` for a depthwise layer, which SCALE-Sim reports
        as one row per channel).
    wall_s:
        Seconds SCALE-Sim took on it.
    """

    name: str
    kind: str
    topology: str
    macs: int
    total_cycles: int
    stall_cycles: int
    compute_cycles: int
    overall_util_pct: float | None
    mapping_efficiency_pct: float | None
    compute_util_pct: float | None
    wall_s: float


@dataclasses.dataclass(frozen=True)
class ScaleSimResult:
    """One cached SCALE-Sim run of a workload (every layer, or ``complete=False``).

    ``scalesim_config`` holds the architecture parameters derived from ``npu_config``,
    ``scalesim_cfg_file`` the exact config file SCALE-Sim was given, ``command`` the
    command line that made the file.
    """

    path: pathlib.Path
    workload: str
    command: str
    tool: str
    npu_config: NPUConfig
    scalesim_config: dict[str, Any]
    scalesim_cfg_file: str
    read_buffer_patched: bool
    complete: bool
    layers: tuple[ScaleSimLayer, ...]

    @property
    def total_cycles(self) -> int:
        return sum(layer.total_cycles for layer in self.layers)

    @property
    def stall_cycles(self) -> int:
        return sum(layer.stall_cycles for layer in self.layers)

    @property
    def compute_cycles(self) -> int:
        return sum(layer.compute_cycles for layer in self.layers)

    def layer(self, name: str) -> ScaleSimLayer:
        """The layer called ``name``.

        Raises
        ------
        KeyError
            No such layer; the message lists the layers.
        """
        for layer in self.layers:
            if layer.name == name:
                return layer
        raise KeyError(f"{self.path.name} has no layer {name!r}; layers: "
                       f"{', '.join(x.name for x in self.layers)}")


_LAYER_TYPES: dict[str, tuple[type, ...]] = {
    "name": (str,), "kind": (str,), "topology": (str,), "macs": (int,),
    "total_cycles": (int,), "stall_cycles": (int,), "compute_cycles": (int,),
    "overall_util_pct": (float, int, type(None)),
    "mapping_efficiency_pct": (float, int, type(None)),
    "compute_util_pct": (float, int, type(None)), "wall_s": (float, int),
}
_KINDS = ("gemm", "linear", "conv", "depthwise")


def _field(data: dict, key: str, types: tuple[type, ...], where: str) -> Any:
    if key not in data:
        raise ScaleSimCacheError(f"{where}: missing {key!r}")
    value = data[key]
    if isinstance(value, bool) and bool not in types or not isinstance(value, types):
        raise ScaleSimCacheError(f"{where}: {key!r} is {value!r}; expected "
                                 f"{' or '.join(t.__name__ for t in types)}")
    return value


def _layer(data: Any, where: str) -> ScaleSimLayer:
    if not isinstance(data, dict):
        raise ScaleSimCacheError(f"{where}: a layer must be an object, not {data!r}")
    values = {k: _field(data, k, t, where) for k, t in _LAYER_TYPES.items()}
    if values["kind"] not in _KINDS:
        raise ScaleSimCacheError(f"{where}: kind {values['kind']!r} is not one of {_KINDS}")
    for key in ("macs", "total_cycles", "stall_cycles", "compute_cycles"):
        if values[key] < 0:
            raise ScaleSimCacheError(f"{where}: {key} is negative ({values[key]})")
    for key in ("overall_util_pct", "mapping_efficiency_pct", "compute_util_pct", "wall_s"):
        if values[key] is not None:
            values[key] = float(values[key])
    return ScaleSimLayer(**values)


def load(path: str | pathlib.Path) -> ScaleSimResult:
    """Read one result file written by bench/scalesim_ref.py.

    Raises
    ------
    FileNotFoundError
        No such file (the message says how to make it).
    ScaleSimCacheError
        The file is not valid JSON or lacks a field, or a field has the wrong type.
    """
    path = pathlib.Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no SCALE-Sim result {path}; make it with "
                                f"python bench/scalesim_ref.py WORKLOAD [--rows R --cols C]")
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ScaleSimCacheError(f"{path}: not valid JSON ({exc})") from None
    where = str(path)
    if not isinstance(data, dict):
        raise ScaleSimCacheError(f"{where}: expected a JSON object at the top")
    if _field(data, "format", (int,), where) != _FORMAT:
        raise ScaleSimCacheError(f"{where}: format {data['format']}, this reader knows "
                                 f"{_FORMAT}")
    layers = _field(data, "layers", (list,), where)
    try:
        npu = NPUConfig.from_dict(_field(data, "npu_config", (dict,), where))
    except (TypeError, ValueError) as exc:
        raise ScaleSimCacheError(f"{where}: bad npu_config ({exc})") from None
    return ScaleSimResult(
        path=path,
        workload=_field(data, "workload", (str,), where),
        command=_field(data, "command", (str,), where),
        tool=_field(data, "tool", (str,), where),
        npu_config=npu,
        scalesim_config=_field(data, "scalesim_config", (dict,), where),
        scalesim_cfg_file=_field(data, "scalesim_cfg_file", (str,), where),
        read_buffer_patched=_field(data, "read_buffer_patched", (bool,), where),
        complete=_field(data, "complete", (bool,), where),
        layers=tuple(_layer(x, f"{where}: layer {i}") for i, x in enumerate(layers)),
    )


def load_cached(workload: str, rows: int = 16, cols: int = 16,
                directory: str | pathlib.Path = CACHE_DIR) -> ScaleSimResult:
    """The cached result of ``workload`` (``gemm`` or a zoo model) on a rows x cols array.

    Raises
    ------
    TypeError, ValueError
        ``workload`` is not a non-empty string, or rows/cols not positive ints.
    FileNotFoundError, ScaleSimCacheError
        As :func:`load`.
    """
    if not isinstance(workload, str) or not workload:
        raise TypeError(f"workload must be a non-empty str, not {workload!r}")
    for name, value in (("rows", rows), ("cols", cols)):
        if not isinstance(value, int) or isinstance(value, bool):
            raise TypeError(f"{name} must be an int, not {type(value).__name__}")
        if value < 1:
            raise ValueError(f"{name} must be positive, not {value}")
    return load(pathlib.Path(directory) / f"{workload}_{rows}x{cols}.json")
