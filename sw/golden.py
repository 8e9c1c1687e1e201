"""The numeric golden model, in PyTorch integer arithmetic.

This is the specification every backend (functional model, RTL, board) must
equal bit for bit. It is written directly from the rules in docs/numerics.md,
independently of the functional model in ``sim/``.

All functions take and return integer tensors; intermediate arithmetic is int64
so nothing overflows silently, and results are wrapped or saturated exactly as
the rule says.
"""

from __future__ import annotations

import math

import torch

__all__ = [
    "INT32_MIN", "INT32_MAX", "wrap_int32",
    "saturating_rounding_doubling_high_mul", "rounding_divide_by_pot",
    "multiply_by_quantized_multiplier", "quantize_multiplier",
    "gemm", "matmul", "conv2d", "requantize", "quantize", "dequantize",
]

INT32_MIN = -(1 << 31)
INT32_MAX = (1 << 31) - 1


def _check_int(name: str, t: torch.Tensor) -> None:
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, not {type(t).__name__}")
    if t.dtype.is_floating_point or t.dtype.is_complex or t.dtype == torch.bool:
        raise TypeError(f"{name} must be an integer tensor, not {t.dtype}")


def wrap_int32(x: torch.Tensor) -> torch.Tensor:
    """Two's-complement wrap of an int64 tensor to int32 (returned as int64)."""
    x = x.to(torch.int64)
    return ((x + (1 << 31)) & 0xFFFFFFFF) - (1 << 31)


def saturating_rounding_doubling_high_mul(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """gemmlowp SaturatingRoundingDoublingHighMul on int32 values (int64 tensors in, out).

    ``(a * b + nudge) / 2**31`` with C's truncating division, where ``nudge`` is
    ``2**30`` for a non-negative product and ``1 - 2**30`` otherwise; the only
    overflow, ``INT32_MIN * INT32_MIN``, saturates to ``INT32_MAX``.
    """
    a = a.to(torch.int64)
    b = b.to(torch.int64)
    overflow = (a == INT32_MIN) & (b == INT32_MIN)
    ab = a * b
    nudge = torch.where(ab >= 0, torch.tensor(1 << 30), torch.tensor(1 - (1 << 30)))
    total = ab + nudge
    # Truncating division toward zero by 2**31 (torch's // floors, so correct negatives).
    high = torch.div(total, 1 << 31, rounding_mode="trunc")
    return torch.where(overflow, torch.tensor(INT32_MAX), high)


def rounding_divide_by_pot(x: torch.Tensor, exponent: torch.Tensor | int) -> torch.Tensor:
    """gemmlowp RoundingDivideByPOT: ``x / 2**exponent`` rounded to nearest, ties away from zero."""
    x = x.to(torch.int64)
    exponent = torch.as_tensor(exponent, dtype=torch.int64)
    if bool(((exponent < 0) | (exponent > 31)).any()):
        raise ValueError("rounding_divide_by_pot: exponent must be in 0..31")
    mask = (torch.tensor(1, dtype=torch.int64) << exponent) - 1
    remainder = x & mask
    threshold = (mask >> 1) + (x < 0).to(torch.int64)
    return (x >> exponent) + (remainder > threshold).to(torch.int64)


def multiply_by_quantized_multiplier(x: torch.Tensor, multiplier: torch.Tensor | int,
                                     shift: torch.Tensor | int) -> torch.Tensor:
    """TFLite MultiplyByQuantizedMultiplier, element-wise with broadcasting.

    ``shift > 0`` shifts left before the multiply (wrapping to int32, as the
    hardware does), ``shift < 0`` divides by ``2**-shift`` after it, rounding
    ties away from zero. Returns int64 holding int32 values.
    """
    x = x.to(torch.int64)
    multiplier = torch.as_tensor(multiplier, dtype=torch.int64)
    shift = torch.as_tensor(shift, dtype=torch.int64)
    if bool(((shift < -31) | (shift > 30)).any()):
        raise ValueError("multiply_by_quantized_multiplier: shift must be in -31..30")
    left = torch.clamp(shift, min=0)
    right = torch.clamp(-shift, min=0)
    shifted = wrap_int32(x << left)
    return rounding_divide_by_pot(saturating_rounding_doubling_high_mul(shifted, multiplier), right)


def quantize_multiplier(real: float) -> tuple[int, int]:
    """TFLite QuantizeMultiplier: ``real ~= multiplier * 2**(shift - 31)``.

    ``multiplier`` is in ``[2**30, 2**31)`` (or 0 for a zero scale), ``shift`` in
    ``-31..30``. Scales too small to represent give ``(0, 0)``.
    """
    if not math.isfinite(real) or real < 0:
        raise ValueError(f"quantize_multiplier: scale must be finite and >= 0, got {real}")
    if real == 0.0:
        return 0, 0
    frac, exp = math.frexp(real)  # real = frac * 2**exp, frac in [0.5, 1)
    # std::round: ties away from zero; frac * 2**31 + 0.5 is exact in a double.
    q = math.floor(frac * (1 << 31) + 0.5)
    if q == 1 << 31:
        q //= 2
        exp += 1
    if exp < -31:
        return 0, 0
    if exp > 30:
        raise ValueError(f"quantize_multiplier: scale {real} is too large (shift {exp} > 30)")
    return int(q), int(exp)


def quantize(x: torch.Tensor, scale: float, zero_point: int) -> torch.Tensor:
    """Float to int8 with a per-tensor ``scale`` and ``zero_point``: ``clamp(round(x / scale) + zp)``.

    ``round`` is ``torch.round`` (half to even) in float32; the result saturates to
    -128..127. Returns int8 with the shape of ``x``.
    """
    if not isinstance(x, torch.Tensor) or not x.dtype.is_floating_point:
        raise TypeError(f"quantize expects a float torch.Tensor, not {getattr(x, 'dtype', type(x))}")
    q = torch.round(x.to(torch.float32) / scale) + zero_point
    return torch.clamp(q, -128, 127).to(torch.int8)


def dequantize(q: torch.Tensor, scale: float, zero_point: int) -> torch.Tensor:
    """int8 to float32: ``(q - zero_point) * scale``."""
    _check_int("q", q)
    return (q.to(torch.float32) - zero_point) * scale


def requantize(acc: torch.Tensor, bias: torch.Tensor, multiplier: torch.Tensor,
               shift: torch.Tensor, out_zp: int, clamp_lo: int = -128,
               clamp_hi: int = 127) -> torch.Tensor:
    """The store path: ``clamp(MBQM(acc + bias) + out_zp)`` per output channel (last dim).

    ``acc + bias`` wraps to int32. Returns int8.
    """
    _check_int("acc", acc)
    if not -128 <= clamp_lo <= clamp_hi <= 127:
        raise ValueError(f"requantize: need -128 <= clamp_lo <= clamp_hi <= 127, "
                         f"got {clamp_lo}, {clamp_hi}")
    total = wrap_int32(acc.to(torch.int64) + torch.as_tensor(bias, dtype=torch.int64))
    scaled = multiply_by_quantized_multiplier(total, multiplier, shift)
    out = torch.clamp(scaled + int(out_zp), clamp_lo, clamp_hi)
    return out.to(torch.int8)


def gemm(a: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """int8 x int8 -> int32: ``a @ w.T`` for ``a`` [M, K] and ``w`` [N, K] (Linear layout).

    Leading dimensions of ``a`` are rows: ``a`` [..., K] (e.g. [batch, tokens, K]) gives
    [..., N], the GEMM of its flattened rows.
    """
    _check_int("a", a)
    _check_int("w", w)
    if a.dim() < 2 or w.dim() != 2 or a.shape[-1] != w.shape[1]:
        raise ValueError(f"gemm: need a [M, K] (or [..., M, K]) and w [N, K], got "
                         f"{tuple(a.shape)} and {tuple(w.shape)}")
    rows = a.reshape(-1, a.shape[-1]).to(torch.int64)
    out = wrap_int32(rows @ w.to(torch.int64).T).to(torch.int32)
    return out.reshape(*a.shape[:-1], w.shape[0])


def matmul(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """int8 x int8 -> int32: ``a @ b`` for ``a`` [..., M, K] and ``b`` [..., K, N] with the
    same leading (batch) dimensions, accumulated in int64 and wrapped to int32 as the
    array's accumulator does. Both operands are symmetric (zero point 0): nothing is
    subtracted."""
    _check_int("a", a)
    _check_int("b", b)
    if a.dim() < 2 or a.dim() != b.dim() or a.shape[:-2] != b.shape[:-2] or a.shape[-1] != b.shape[-2]:
        raise ValueError(f"matmul: need a [..., M, K] and b [..., K, N] with the same leading "
                         f"dimensions, got {tuple(a.shape)} and {tuple(b.shape)}")
    return wrap_int32(a.to(torch.int64) @ b.to(torch.int64)).to(torch.int32)


def conv2d(x: torch.Tensor, w: torch.Tensor, *, stride: int | tuple[int, int] = 1,
           padding: int | tuple[int, int] = 0, groups: int = 1, pad_value: int = 0) -> torch.Tensor:
    """Integer 2D convolution, NCHW: ``x`` [B, Cin, H, W], ``w`` [Cout, Cin/groups, KH, KW].

    Padding fills with ``pad_value`` (the input zero point when ``x`` is not
    zero-point corrected). Returns int32 [B, Cout, OH, OW].
    """
    _check_int("x", x)
    _check_int("w", w)
    sh, sw = (stride, stride) if isinstance(stride, int) else stride
    ph, pw = (padding, padding) if isinstance(padding, int) else padding
    if x.dim() != 4 or w.dim() != 4:
        raise ValueError(f"conv2d: need 4D x and w, got {tuple(x.shape)} and {tuple(w.shape)}")
    b, cin, h, wd = x.shape
    cout, cin_g, kh, kw = w.shape
    if cin % groups or cout % groups or cin // groups != cin_g:
        raise ValueError(f"conv2d: channels {cin} -> {cout} with groups={groups} do not match "
                         f"weight shape {tuple(w.shape)}")
    xp = torch.nn.functional.pad(x.to(torch.int64), (pw, pw, ph, ph), value=int(pad_value))
    oh = (h + 2 * ph - kh) // sh + 1
    ow = (wd + 2 * pw - kw) // sw + 1
    # Patches [B, Cin, OH, OW, KH, KW] by strided views (unfold has no integer kernel).
    patches = xp.unfold(2, kh, sh).unfold(3, kw, sw)[:, :, :oh, :ow]
    patches = patches.reshape(b, groups, cin_g, oh, ow, kh, kw)
    wg = w.to(torch.int64).reshape(groups, cout // groups, cin_g, kh, kw)
    out = torch.einsum("bgchwij,gocij->bgohw", patches, wg)
    return wrap_int32(out.reshape(b, cout, oh, ow)).to(torch.int32)
