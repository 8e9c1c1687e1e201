"""A compiled program: instruction stream, DRAM image and tensor map."""

from __future__ import annotations

import json
import pathlib
from dataclasses import asdict, dataclass, field

import numpy as np
import torch

from hw.config import NPUConfig
from hw.isa import INSN_BYTES, bytes_to_words, decode, disassemble

from . import golden

__all__ = ["TensorInfo", "Program", "ProgramError", "NpuSegment", "HostSegment"]

FORMAT = "npuprog-1"


class ProgramError(ValueError):
    """A program file is malformed or does not fit the device."""


@dataclass
class TensorInfo:
    name: str
    addr: int                    #: DRAM byte address
    shape: tuple[int, ...]       #: one sample, PyTorch layout: (C, H, W) or (F,)
    scale: float
    zero_point: int
    layout: str = "nhwc"         #: how the bytes sit in DRAM ("nhwc" for 3-D, "flat")
    pad_w: int = 0               #: zero-point columns on each side of every row (3-D only)

    @property
    def nbytes(self) -> int:
        if len(self.shape) == 3 and self.pad_w:
            c, h, w = self.shape
            return c * h * (w + 2 * self.pad_w)
        return int(np.prod(self.shape))

    def to_device(self, q: np.ndarray) -> np.ndarray:
        """int8 sample in PyTorch layout -> bytes in DRAM layout."""
        if len(self.shape) == 3:
            q = q.transpose(1, 2, 0)
            if self.pad_w:
                q = np.pad(q, ((0, 0), (self.pad_w, self.pad_w), (0, 0)),
                           constant_values=self.zero_point)
        return np.ascontiguousarray(q).view(np.uint8).reshape(-1)

    def quantize(self, x: torch.Tensor) -> np.ndarray:
        """Float tensor (any leading dimensions) -> int8 with this tensor's scale and zero point."""
        return golden.quantize(x, self.scale, self.zero_point).numpy()

    def dequantize(self, q: np.ndarray) -> torch.Tensor:
        """int8 -> float, as the golden dequantizes."""
        return golden.dequantize(torch.from_numpy(q), self.scale, self.zero_point)

    def from_device(self, raw: np.ndarray) -> np.ndarray:
        """Bytes in DRAM layout -> int8 sample in PyTorch layout."""
        q = raw.view(np.int8)
        if len(self.shape) == 3:
            c, h, w = self.shape
            return q.reshape(h, w, c).transpose(2, 0, 1).copy()
        return q.reshape(self.shape).copy()


# --- Host segments (sw.ops host operators): the device runs them between NPU segments.
@dataclass
class NpuSegment:
    """Instructions ``start`` .. ``start + count - 1`` of the stream, ending in FINISH."""
    start: int
    count: int

    def to_dict(self) -> dict:
        return {**asdict(self), "kind": "npu"}


@dataclass
class HostSegment:
    """One host operator: reads its operands from DRAM, writes its output there."""
    name: str
    op: str                      #: a key of the op table (sw.ops)
    where: str
    inputs: list[TensorInfo]     #: the operands as stored (a flatten view as its 3-D base)
    in_shapes: list[tuple[int, ...]]   #: the operands' shapes as the operator reads them
    output: TensorInfo
    params: dict = field(default_factory=dict)   #: the operator's parameters (JSON values)

    def run(self, dram: np.ndarray) -> None:
        """Run the operator on one sample in the DRAM image ``dram`` (in place)."""
        from . import ops   # the op table sits above the program format
        args = [torch.from_numpy(t.from_device(dram[t.addr:t.addr + t.nbytes])).reshape(1, *shape)
                for t, shape in zip(self.inputs, self.in_shapes)]
        y = ops.get(self.op).run_host(self.params, args)
        out = self.output
        dram[out.addr:out.addr + out.nbytes] = out.to_device(y[0].numpy())

    def to_dict(self) -> dict:
        return {**asdict(self), "kind": "host"}


def _segment(d: dict) -> NpuSegment | HostSegment:
    d = dict(d)
    if d.pop("kind") == "npu":
        return NpuSegment(**d)

    def tensor(t):
        return TensorInfo(**{**t, "shape": tuple(t["shape"])})
    return HostSegment(**{**d, "inputs": [tensor(t) for t in d["inputs"]],
                          "in_shapes": [tuple(s) for s in d["in_shapes"]],
                          "output": tensor(d["output"])})
# ---


@dataclass
class Program:
    """What ``sw.compile`` produces and ``Device.run`` executes."""
    config: NPUConfig
    dram: np.ndarray             #: initial DRAM image (weights, parameters, instructions)
    insn_base: int
    insn_count: int
    input: TensorInfo
    output: TensorInfo
    layers: list[dict] = field(default_factory=list)   #: id, name, op, macs, ...
    host_ops: list[str] = field(default_factory=list)  #: names of the operations run on the host
    #: NPU segments and host operations in order; empty: the whole stream is one NPU segment
    segments: list[NpuSegment | HostSegment] = field(default_factory=list)

    @property
    def config_hash(self) -> int:
        return self.config.hash

    @property
    def words(self) -> list[int]:
        end = self.insn_base + INSN_BYTES * self.insn_count
        return bytes_to_words(self.dram[self.insn_base:end].tobytes())

    def image(self, sample: np.ndarray) -> np.ndarray:
        """A DRAM image to run: this program's, with one int8 input sample (PyTorch
        layout) in place."""
        dram = self.dram.copy()
        dram[self.input.addr:self.input.addr + self.input.nbytes] = self.input.to_device(sample)
        return dram

    def read_output(self, dram: np.ndarray) -> np.ndarray:
        """The int8 output sample (PyTorch layout) of a DRAM image after a run."""
        out = self.output
        return out.from_device(dram[out.addr:out.addr + out.nbytes])

    def instructions(self):
        return [decode(w) for w in self.words]

    def disassemble(self) -> str:
        """The program as assembly text, one numbered instruction per line."""
        return disassemble(self.words, numbered=True)

    def save(self, path: str | pathlib.Path) -> None:
        """Write the program to one file (``.npuprog``, a NumPy archive)."""
        meta = {
            "format": FORMAT, "config": self.config.to_dict(), "config_hash": self.config.hash,
            "insn_base": self.insn_base, "insn_count": self.insn_count,
            "input": asdict(self.input), "output": asdict(self.output),
            "layers": self.layers, "host_ops": self.host_ops,
            "segments": [s.to_dict() for s in self.segments],
        }
        with open(path, "wb") as f:
            np.savez_compressed(f, dram=self.dram, meta=np.frombuffer(json.dumps(meta).encode(), np.uint8))

    @classmethod
    def load(cls, path: str | pathlib.Path) -> "Program":
        try:
            with np.load(path, allow_pickle=False) as z:
                dram = z["dram"]
                meta = json.loads(z["meta"].tobytes().decode())
        except (OSError, KeyError, ValueError) as exc:
            raise ProgramError(f"{path} is not a program file: {exc}") from None
        if meta.get("format") != FORMAT:
            raise ProgramError(f"{path}: unknown program format {meta.get('format')!r}")
        config = NPUConfig.from_dict(meta["config"])
        if config.hash != meta["config_hash"]:
            raise ProgramError(f"{path}: configuration hash mismatch (file damaged?)")

        def tensor(d):
            return TensorInfo(**{**d, "shape": tuple(d["shape"])})
        return cls(config=config, dram=dram.astype(np.uint8), insn_base=meta["insn_base"],
                   insn_count=meta["insn_count"], input=tensor(meta["input"]),
                   output=tensor(meta["output"]), layers=meta["layers"],
                   host_ops=meta.get("host_ops", []),
                   segments=[_segment(d) for d in meta.get("segments", [])])
