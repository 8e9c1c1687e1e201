"""The numeric golden against hand-computed cases and float arithmetic."""
import math

import pytest
import torch

from sw import golden as g

I32_MIN, I32_MAX = g.INT32_MIN, g.INT32_MAX


def t(*values):
    return torch.tensor(values, dtype=torch.int64)


def test_srdhm_hand_cases():
    # 2**30 is 0.5 in Q31: x * 0.5, rounded (ties: +2.5 -> 3; -2.5 -> -2, per gemmlowp's nudge).
    out = g.saturating_rounding_doubling_high_mul(t(4, 5, -5, 3, -3, 0), t(*[1 << 30] * 6))
    assert out.tolist() == [2, 3, -2, 2, -1, 0]
    # The only overflow: INT32_MIN * INT32_MIN saturates.
    assert g.saturating_rounding_doubling_high_mul(t(I32_MIN), t(I32_MIN)).item() == I32_MAX
    # INT32_MIN * INT32_MAX does not overflow: (-2**31 * (2**31-1) + nudge) / 2**31.
    expect = -((2**31 * (2**31 - 1) + (2**30 - 1)) // 2**31)
    assert g.saturating_rounding_doubling_high_mul(t(I32_MIN), t(I32_MAX)).item() == expect
    assert g.saturating_rounding_doubling_high_mul(t(I32_MAX), t(I32_MAX)).item() == I32_MAX - 1


def test_rounding_divide_by_pot_ties_away_from_zero():
    x = t(5, -5, 6, -6, 7, -7, 4, -4, 0, 1, -1)
    assert g.rounding_divide_by_pot(x, 1).tolist() == [3, -3, 3, -3, 4, -4, 2, -2, 0, 1, -1]
    # 2.5 -> 3, -2.5 -> -3, 2.25 -> 2, 2.75 -> 3
    assert g.rounding_divide_by_pot(t(10, -10, 9, 11, -9, -11), 2).tolist() == [3, -3, 2, 3, -2, -3]
    assert g.rounding_divide_by_pot(t(I32_MIN, I32_MAX), 31).tolist() == [-1, 1]
    assert g.rounding_divide_by_pot(t(123), 0).item() == 123
    with pytest.raises(ValueError):
        g.rounding_divide_by_pot(t(1), 32)


def test_mbqm_hand_cases():
    m_half = 1 << 30  # 0.5
    # x * 0.5 * 2**-1 = x / 4: 10 -> 2.5 -> SRDHM 5, then 5/2 = 2.5 -> 3 (away from zero)
    assert g.multiply_by_quantized_multiplier(t(10), m_half, -1).item() == 3
    assert g.multiply_by_quantized_multiplier(t(-10), m_half, -1).item() == -3
    # 6/4 = 1.5 -> 2; -6/4 -> -2; 7/4 -> 2; 5/4 = 1.25 -> 2: TFLite rounds twice
    # (SRDHM takes 2.5 to 3, then 3/2 = 1.5 goes away from zero), and so do we.
    assert g.multiply_by_quantized_multiplier(t(6, -6, 7, 5), m_half, -1).tolist() == [2, -2, 2, 2]
    # left shift: x * 0.5 * 2**2 = 2x
    assert g.multiply_by_quantized_multiplier(t(21, -21), m_half, 2).tolist() == [42, -42]
    # left shift wraps to int32 before the multiply (documented in docs/numerics.md)
    assert g.multiply_by_quantized_multiplier(t(1 << 30), m_half, 2).item() == 0
    # INT32_MIN * INT32_MIN saturates, then the right shift applies
    assert g.multiply_by_quantized_multiplier(t(I32_MIN), I32_MIN, 0).item() == I32_MAX
    assert g.multiply_by_quantized_multiplier(t(I32_MIN), I32_MIN, -1).item() == 1 << 30
    with pytest.raises(ValueError, match="shift"):
        g.multiply_by_quantized_multiplier(t(1), m_half, 31)


def test_requantize_clamp_saturation_zero_point():
    acc = torch.tensor([[1000, -1000, 40000, -40000, 7]], dtype=torch.int32)
    m, s = g.quantize_multiplier(0.01)
    out = g.requantize(acc, 0, m, s, out_zp=-5)
    # 10-5, -10-5, 400 saturates, -400 saturates, 0.07 -> 0 - 5
    assert out.tolist() == [[5, -15, 127, -128, -5]]
    assert out.dtype == torch.int8
    relu = g.requantize(acc, 0, m, s, out_zp=-5, clamp_lo=-5)
    assert relu.tolist() == [[5, -5, 127, -5, -5]]
    # per-channel bias and tie: (2 + 3) * 0.5 = 2.5 -> 3
    out = g.requantize(torch.tensor([[2, 2]]), torch.tensor([3, -7]), 1 << 30, 0, 0)
    assert out.tolist() == [[3, -2]]
    # acc + bias wraps
    out = g.requantize(torch.tensor([[I32_MAX]]), torch.tensor([1]), 1 << 30, -30, 0)
    assert out.tolist() == [[-1]]
    with pytest.raises(ValueError, match="clamp"):
        g.requantize(acc, 0, m, s, 0, clamp_lo=10, clamp_hi=5)
    with pytest.raises(TypeError, match="integer tensor"):
        g.requantize(acc.float(), 0, m, s, 0)


@pytest.mark.parametrize("scale", [1.0, 0.5, 0.25, 0.75, 1e-3, 3.7e-5, 0.999999, 1.5, 17.0, 1e-12])
def test_quantize_multiplier(scale):
    m, s = g.quantize_multiplier(scale)
    if scale < 2 ** -32:
        assert (m, s) == (0, 0)
        return
    assert (1 << 30) <= m < (1 << 31)
    assert math.isclose(m * 2.0 ** (s - 31), scale, rel_tol=2 ** -30)
    # Applying it equals the C reference, transcribed here with Python integers.
    for x in (-1001, -9, -3, -1, 0, 1, 2, 3, 9, 1001, I32_MAX, I32_MIN):
        got = g.multiply_by_quantized_multiplier(t(x), m, s).item()
        assert got == c_reference_mbqm(x, m, s)
        if m and abs(x) < 1 << 20:
            assert abs(got - x * scale) <= 1  # double rounding is off by at most one


def c_reference_mbqm(x, m, shift):
    """gemmlowp/TFLite in C semantics, written independently of sw.golden."""
    def to_i32(v):
        return (v + 2**31) % 2**32 - 2**31
    left, right = max(shift, 0), max(-shift, 0)
    a = to_i32(x * 2**left)
    if a == I32_MIN and m == I32_MIN:
        high = I32_MAX
    else:
        ab = a * m
        nudge = 2**30 if ab >= 0 else 1 - 2**30
        num = ab + nudge
        high = abs(num) // 2**31 * (1 if num >= 0 else -1)   # C truncation
    mask = (1 << right) - 1
    remainder = high & mask
    threshold = (mask >> 1) + (1 if high < 0 else 0)
    return (high >> right) + (1 if remainder > threshold else 0)


def test_quantize_multiplier_errors():
    with pytest.raises(ValueError):
        g.quantize_multiplier(-1.0)
    with pytest.raises(ValueError):
        g.quantize_multiplier(float("nan"))
    with pytest.raises(ValueError, match="too large"):
        g.quantize_multiplier(2.0 ** 40)
    # mantissa rounding up to 2**31 renormalises
    m, s = g.quantize_multiplier(1 - 2 ** -40)
    assert (m, s) == (1 << 30, 1)


@pytest.mark.parametrize("shape", [(1, 1, 1), (7, 13, 5), (64, 300, 33)])
def test_gemm_against_float(shape):
    gen = torch.Generator().manual_seed(sum(shape))
    m, k, n = shape
    a = torch.randint(-128, 128, (m, k), generator=gen, dtype=torch.int8)
    w = torch.randint(-128, 128, (n, k), generator=gen, dtype=torch.int8)
    out = g.gemm(a, w)
    assert out.dtype == torch.int32
    # float64 is exact for these sums (|sum| < 2**53)
    assert torch.equal(out.double(), a.double() @ w.double().T)


def test_gemm_shape_errors():
    with pytest.raises(ValueError, match="K"):
        g.gemm(torch.zeros(2, 3, dtype=torch.int8), torch.zeros(4, 5, dtype=torch.int8))
    with pytest.raises(TypeError):
        g.gemm(torch.zeros(2, 3), torch.zeros(4, 3))


@pytest.mark.parametrize("stride, padding, groups, k", [(1, 0, 1, 3), (2, 1, 1, 3), (1, 1, 4, 3),
                                                         (2, 3, 1, 7), (1, 0, 2, 1)])
def test_conv2d_against_float(stride, padding, groups, k):
    gen = torch.Generator().manual_seed(stride * 100 + padding * 10 + groups + k)
    x = torch.randint(-128, 128, (2, 8, 11, 9), generator=gen, dtype=torch.int8)
    w = torch.randint(-128, 128, (8, 8 // groups, k, k), generator=gen, dtype=torch.int8)
    out = g.conv2d(x, w, stride=stride, padding=padding, groups=groups)
    ref = torch.nn.functional.conv2d(x.double(), w.double(), stride=stride, padding=padding,
                                     groups=groups)
    assert torch.equal(out.double(), ref)


def test_conv2d_pad_value_is_zero_point():
    x = torch.full((1, 1, 2, 2), 5, dtype=torch.int8)
    w = torch.ones((1, 1, 3, 3), dtype=torch.int8)
    out = g.conv2d(x, w, padding=1, pad_value=5)
    assert out.tolist() == [[[[45, 45], [45, 45]]]]
    out0 = g.conv2d(x, w, padding=1)
    assert out0.tolist() == [[[[20, 20], [20, 20]]]]


def test_quantize_rounds_half_to_even_and_saturates():
    x = torch.tensor([0.25, 0.75, -0.25, 1.0, 100.0, -100.0, 0.0])
    q = g.quantize(x, 0.5, 3)
    assert q.dtype == torch.int8
    assert q.tolist() == [3, 5, 3, 5, 127, -128, 3]     # 0.5 -> 0, 1.5 -> 2, -0.5 -> 0
    assert torch.equal(g.dequantize(q, 0.5, 3), torch.tensor([0.0, 1.0, 0.0, 1.0, 62.0, -65.5, 0.0]))
    with pytest.raises(TypeError, match="float torch.Tensor"):
        g.quantize(torch.tensor([1]), 0.5, 0)
    with pytest.raises(TypeError, match="integer tensor"):
        g.dequantize(x, 0.5, 0)


def test_quantize_is_defined_once():
    """The quantizer's QParams and the program's TensorInfo both use the golden's formula."""
    import numpy as np

    from sw.ir import QParams
    from sw.program import TensorInfo
    x = torch.randn(3, 5) * 4
    want = g.quantize(x, 0.037, -7)
    assert torch.equal(QParams(0.037, -7).quantize(x), want)
    info = TensorInfo("x", 0, (5,), 0.037, -7, "flat")
    assert np.array_equal(info.quantize(x), want.numpy())
    assert torch.equal(info.dequantize(want.numpy()), QParams(0.037, -7).dequantize(want))
