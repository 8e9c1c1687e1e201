"""A compiled program: instruction stream, DRAM image, tensor map and memory regions.

The DRAM image is cut into named :class:`Region` s, each of one kind, so that a
device sends each byte only when it must (a UART link cannot resend the whole
image on every run):

* ``constants``: weights, parameters, instructions: sent once per device and program;
* ``input`` / ``output``: the model's input, written before each run, and its
  output, read after it;
* ``scratch``: intermediate activations: never sent (the program writes them
  before it reads them);
* ``state``: persistent state (a KV cache): sent with the constants, then kept
  between runs; read and written on request (``Device.read_state`` /
  ``write_state``).
"""

from __future__ import annotations

import hashlib
import json
import pathlib
import zipfile
import zlib
from dataclasses import asdict, dataclass, field

import numpy as np
import torch

from hw.config import NPUConfig
from hw.isa import INSN_BYTES, bytes_to_words, decode, disassemble

from . import golden

__all__ = ["TensorInfo", "Region", "REGION_KINDS", "Program", "ProgramError", "layout_regions",
           "NpuSegment", "HostSegment", "file_digest"]

FORMAT = "npuprog-3"
#: Formats :meth:`Program.load` reads (npuprog-1 files have no regions, npuprog-1 and -2
#: no checksum).
READ_FORMATS = ("npuprog-1", "npuprog-2", FORMAT)


def file_digest(dram: np.ndarray, meta: dict) -> str:
    """The SHA-256 a program file carries (``meta["sha256"]``): over the DRAM image (the
    instructions and the weights are in it) and the description, its own field left out."""
    h = hashlib.sha256()
    h.update(np.ascontiguousarray(dram, dtype=np.uint8).tobytes())
    h.update(json.dumps({k: v for k, v in meta.items() if k != "sha256"}, sort_keys=True).encode())
    return h.hexdigest()

REGION_KINDS = ("constants", "input", "output", "scratch", "state")
#: The compiler's DRAM alignment: constant ranges closer than this merge into one region.
MERGE_GAP = 64


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
    #: "int8", or "int64" for token ids (the input of a model that starts with an
    #: embedding, which the host reads; no scale or zero point)
    dtype: str = "int8"
    #: With layout "im2col": ``(kh, kw, sh, sw, ph, pw, k_pad)`` of the first convolution,
    #: whose im2col matrix the host writes (:func:`im2col`).
    im2col: tuple[int, ...] | None = None

    @property
    def nbytes(self) -> int:
        if self.layout == "im2col":
            oh, ow = im2col_size(self.shape, self.im2col)
            return oh * ow * self.im2col[6]
        if len(self.shape) == 3 and self.pad_w:
            c, h, w = self.shape
            return c * h * (w + 2 * self.pad_w)
        return int(np.prod(self.shape)) * np.dtype(self.dtype).itemsize

    def to_device(self, q: np.ndarray) -> np.ndarray:
        """int8 sample in PyTorch layout -> bytes in DRAM layout."""
        if self.layout == "im2col":
            return im2col(q, self.im2col, self.zero_point).reshape(-1).view(np.uint8)
        if len(self.shape) == 3 and self.layout == "nhwc":
            q = q.transpose(1, 2, 0)
            if self.pad_w:
                q = np.pad(q, ((0, 0), (self.pad_w, self.pad_w), (0, 0)),
                           constant_values=self.zero_point)
        return np.ascontiguousarray(q.astype(self.dtype, copy=False)).view(np.uint8).reshape(-1)

    def quantize(self, x: torch.Tensor) -> np.ndarray:
        """Float tensor (any leading dimensions) -> int8 with this tensor's scale and zero
        point; token ids (an int64 tensor) as they are."""
        if self.dtype == "int64":
            return x.to(torch.int64).numpy()
        return golden.quantize(x, self.scale, self.zero_point).numpy()

    def dequantize(self, q: np.ndarray) -> torch.Tensor:
        """int8 -> float, as the golden dequantizes."""
        return golden.dequantize(torch.from_numpy(q), self.scale, self.zero_point)

    def from_device(self, raw: np.ndarray) -> np.ndarray:
        """Bytes in DRAM layout -> int8 (or int64) sample in PyTorch layout."""
        if self.layout == "im2col":
            raise ProgramError(f"tensor {self.name} is stored as an im2col matrix, which the "
                               f"host writes and never reads back")
        q = raw.view(np.dtype(self.dtype))
        if len(self.shape) == 3 and self.layout == "nhwc":
            c, h, w = self.shape
            return q.reshape(h, w, c).transpose(2, 0, 1).copy()
        return q.reshape(self.shape).copy()


def im2col_size(shape: tuple[int, ...], spec) -> tuple[int, int]:
    """Output rows and columns of the convolution ``spec`` = ``(kh, kw, sh, sw, ph, pw,
    k_pad)`` over a ``(C, H, W)`` input."""
    kh, kw, sh, sw, ph, pw, _ = spec
    _, h, w = shape
    return (h + 2 * ph - kh) // sh + 1, (w + 2 * pw - kw) // sw + 1


def im2col(q: np.ndarray, spec, zero_point: int) -> np.ndarray:
    """The im2col matrix of an int8 ``(C, H, W)`` sample for the convolution ``spec``
    (:func:`im2col_size`): one row of ``k_pad`` bytes per output pixel, row-major, holding
    the pixel's ``kh * kw * C`` taps in (kernel row, kernel column, channel) order, the
    border and the row's tail filled with the zero point. The first convolution of a
    network reads it as a 1x1 convolution over ``k_pad`` channels: with an image's 3
    channels, ResNet's 7x7 stem reduces over 147 taps in 10 chunks of 16 instead of
    14 (docs/compiler.md)."""
    kh, kw, sh, sw, ph, pw, k_pad = spec
    c = q.shape[0]
    oh, ow = im2col_size(q.shape, spec)
    padded = np.pad(q, ((0, 0), (ph, ph), (pw, pw)), constant_values=zero_point)
    out = np.full((oh, ow, k_pad), zero_point, np.int8)
    for dy in range(kh):
        for dx in range(kw):
            tap = padded[:, dy:dy + sh * (oh - 1) + 1:sh, dx:dx + sw * (ow - 1) + 1:sw]
            k0 = (dy * kw + dx) * c
            out[:, :, k0:k0 + c] = tap.transpose(1, 2, 0)
    return out


@dataclass(frozen=True)
class Region:
    """A named byte range ``[addr, addr + nbytes)`` of a program's DRAM image."""
    name: str
    kind: str      #: one of REGION_KINDS
    addr: int
    nbytes: int

    @property
    def end(self) -> int:
        return self.addr + self.nbytes


def layout_regions(size: int, constants: list[tuple[int, int]], input: TensorInfo,
                   output: TensorInfo, state: list[tuple[str, int, int]] = ()) -> list[Region]:
    """Cut a DRAM image of ``size`` bytes into regions.

    ``constants`` are the ``(addr, nbytes)`` ranges that hold data (weights,
    parameters, instructions), ``state`` the ``(name, addr, nbytes)`` of persistent
    buffers; ``input`` and ``output`` are the model's tensors. Constant ranges less
    than :data:`MERGE_GAP` bytes apart are merged (the gap is alignment padding: no
    buffer fits there); every other byte is scratch.
    """
    marked = [(addr, addr + n, "constants", None) for addr, n in constants if n > 0]
    marked += [(addr, addr + n, "state", name) for name, addr, n in state]
    marked += [(t.addr, t.addr + t.nbytes, kind, t.name)
               for kind, t in (("input", input), ("output", output))]
    marked.sort()
    regions: list[Region] = []
    pos = 0
    count = {"constants": 0, "scratch": 0}

    def add(kind, lo, hi, name=None):
        if name is None:
            name = f"{kind}{count[kind]}"
            count[kind] += 1
        regions.append(Region(name, kind, lo, hi - lo))

    i = 0
    while i < len(marked):
        lo, hi, kind, name = marked[i]
        if lo > pos:
            add("scratch", pos, lo)
        if kind == "constants":
            while (i + 1 < len(marked) and marked[i + 1][2] == "constants"
                   and marked[i + 1][0] - hi < MERGE_GAP):
                i += 1
                hi = max(hi, marked[i][1])
        add(kind, lo, hi, name)
        pos = max(pos, hi)
        i += 1
    if pos < size:
        add("scratch", pos, size)
    return regions


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

    def run(self, read, write) -> None:
        """Run the operator on one sample held in device DRAM: ``read(addr, nbytes)``
        fetches its operands, ``write(addr, data)`` stores its output."""
        from . import ops   # the op table sits above the program format
        args = [torch.from_numpy(t.from_device(read(t.addr, t.nbytes))).reshape(1, *shape)
                for t, shape in zip(self.inputs, self.in_shapes)]
        y = ops.get(self.op).run_host(self.params, args)
        out = self.output
        write(out.addr, out.to_device(y[0].numpy()))

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
    #: The image cut into regions (see the module doc); by default everything but the
    #: input and output is constants (safe for any program, the least economical).
    regions: list[Region] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.regions:
            rest, pos = [], 0
            for t in sorted((self.input, self.output), key=lambda t: t.addr):
                if t.addr > pos:
                    rest.append((pos, t.addr - pos))
                pos = max(pos, t.addr + t.nbytes)
            rest.append((pos, len(self.dram) - pos))
            self.regions = layout_regions(len(self.dram), rest, self.input, self.output)
        self._check_regions()

    def _check_regions(self) -> None:
        names = set()
        pos = 0
        for r in sorted(self.regions, key=lambda r: r.addr):
            if r.kind not in REGION_KINDS:
                raise ProgramError(f"region {r.name!r} has kind {r.kind!r}; kinds: "
                                   f"{', '.join(REGION_KINDS)}")
            if r.name in names:
                raise ProgramError(f"two regions are named {r.name!r}")
            names.add(r.name)
            if r.addr < pos or r.nbytes < 0 or r.end > len(self.dram):
                raise ProgramError(f"region {r.name!r} [{r.addr:#x}, {r.end:#x}) overlaps "
                                   f"another or lies outside the image of {len(self.dram):#x} bytes")
            pos = r.end
        for kind, t in (("input", self.input), ("output", self.output)):
            mine = [r for r in self.regions if r.kind == kind]
            if [(r.addr, r.nbytes) for r in mine] != [(t.addr, t.nbytes)]:
                raise ProgramError(f"the {kind} region must be the {kind} tensor "
                                   f"{t.name!r} at {t.addr:#x}, {t.nbytes} bytes")

    def region(self, name: str) -> Region:
        """The region called ``name``; raises KeyError naming the regions there are."""
        for r in self.regions:
            if r.name == name:
                return r
        raise KeyError(f"no region {name!r}; regions: {', '.join(r.name for r in self.regions)}")

    def regions_of(self, *kinds: str) -> list[Region]:
        """The regions of the given kinds, in address order."""
        return sorted((r for r in self.regions if r.kind in kinds), key=lambda r: r.addr)

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
        """Write the program to one file (``.npuprog``, a NumPy archive with a SHA-256 over
        the image and the description)."""
        meta = {
            "format": FORMAT, "config": self.config.to_dict(), "config_hash": self.config.hash,
            "insn_base": self.insn_base, "insn_count": self.insn_count,
            "input": asdict(self.input), "output": asdict(self.output),
            "layers": self.layers, "host_ops": self.host_ops,
            "regions": [asdict(r) for r in self.regions],
            "segments": [s.to_dict() for s in self.segments],
        }
        meta["sha256"] = file_digest(self.dram, meta)
        with open(path, "wb") as f:
            np.savez_compressed(f, dram=self.dram, meta=np.frombuffer(json.dumps(meta).encode(), np.uint8))

    @classmethod
    def load(cls, path: str | pathlib.Path) -> "Program":
        """Read a program written by :meth:`save` (this format or an older one).

        The file is data: nothing in it is executed (no pickles); its SHA-256
        (:func:`file_digest`) is checked before any field is used, then every field.

        Raises :class:`ProgramError` naming the file and what is wrong with it.
        """
        try:
            with np.load(path, allow_pickle=False) as z:
                dram = z["dram"]
                meta = json.loads(z["meta"].tobytes().decode())
        except (OSError, KeyError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as exc:
            raise ProgramError(f"{path} is not a program file: {exc}") from None
        if not isinstance(meta, dict) or meta.get("format") not in READ_FORMATS:
            found = meta.get("format") if isinstance(meta, dict) else None
            raise ProgramError(f"{path}: unknown program format {found!r} (this version reads "
                               f"{', '.join(READ_FORMATS)})")
        if meta["format"] not in ("npuprog-1", "npuprog-2"):
            if not isinstance(dram, np.ndarray) or dram.dtype != np.uint8 or dram.ndim != 1:
                raise ProgramError(f"{path}: damaged program file (the DRAM image is not a "
                                   f"byte vector)")
            if meta.get("sha256") != file_digest(dram, meta):
                raise ProgramError(f"{path}: checksum mismatch: the DRAM image (instructions, "
                                   f"weights) or the description was changed or damaged")
        try:
            config = NPUConfig.from_dict(meta["config"])
            if config.hash != meta["config_hash"]:
                raise ProgramError("configuration hash mismatch (file damaged?)")

            def tensor(d):
                return TensorInfo(**{**d, "shape": tuple(d["shape"]),
                                     "im2col": tuple(d["im2col"]) if d.get("im2col") else None})
            # npuprog-1 files have no regions: the default (all but input and output
            # constant) is right for any program.
            regions = [Region(**r) for r in meta.get("regions", [])]
            program = cls(config=config, dram=dram.astype(np.uint8), insn_base=meta["insn_base"],
                          insn_count=meta["insn_count"], input=tensor(meta["input"]),
                          output=tensor(meta["output"]), layers=meta["layers"],
                          host_ops=meta.get("host_ops", []), regions=regions,
                          segments=[_segment(d) for d in meta.get("segments", [])])
        except ProgramError as exc:
            raise ProgramError(f"{path}: {exc}") from None
        except (KeyError, TypeError, ValueError) as exc:
            raise ProgramError(f"{path}: damaged program file ({type(exc).__name__}: {exc})") from None
        return program
