"""Agreement of the integer golden with PyTorch's quantized Linear (fbgemm) and the float model.

fbgemm requantizes in floating point and rounds half to even; the golden follows
TFLite's integer rule (docs/numerics.md). This prints how often they agree; it is
a figure, not a pass criterion.

    python bench/quant_agreement.py [--trials 20]
"""
import argparse
import warnings

import torch

from sw import golden


def one_layer(gen, m, k, n):
    x = torch.randn(m, k, generator=gen)
    w = torch.randn(n, k, generator=gen) / k ** 0.5
    b = 0.1 * torch.randn(n, generator=gen)
    y = x @ w.T + b
    s_x = float(x.max() - x.min()) / 255
    zx = int(round(-128 - float(x.min()) / s_x))
    s_w = w.abs().amax(dim=1) / 127
    s_y = float(y.max() - y.min()) / 255
    zy = int(round(-128 - float(y.min()) / s_y))
    xq = torch.clamp(torch.round(x / s_x) + zx, -128, 127).to(torch.int8)
    wq = torch.clamp(torch.round(w / s_w[:, None]), -128, 127).to(torch.int8)
    bq = torch.round(b / (s_x * s_w)).to(torch.int64)
    bias = bq - zx * wq.to(torch.int64).sum(dim=1)          # zero point folded into the bias
    qm = [golden.quantize_multiplier(float(s_x * sw / s_y)) for sw in s_w]
    mult = torch.tensor([q[0] for q in qm])
    shift = torch.tensor([q[1] for q in qm])
    ours = golden.requantize(golden.gemm(xq, wq), bias, mult, shift, zy)

    # PyTorch's quantized Linear: uint8 activations (our int8 + 128), per-channel weights.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        qlin = torch.ao.nn.quantized.Linear(k, n, dtype=torch.qint8)
        qw = torch._make_per_channel_quantized_tensor(wq, s_w.double(), torch.zeros(n, dtype=torch.long), 0)
        qlin.set_weight_bias(qw, bq.double().mul(s_x * s_w.double()).float())
        qlin.scale, qlin.zero_point = s_y, zy + 128
        qx = torch._make_per_tensor_quantized_tensor((xq.to(torch.int16) + 128).to(torch.uint8), s_x, zx + 128)
        theirs = (qlin(qx).int_repr().to(torch.int16) - 128).to(torch.int8)
    float_q = torch.clamp(torch.round(y / s_y) + zy, -128, 127).to(torch.int8)
    return ours, theirs, float_q, y, s_y, zy


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=20)
    args = parser.parse_args()
    gen = torch.Generator().manual_seed(0)
    total = same = off1 = float_same = 0
    worst = 0
    err_sum = 0.0
    for t in range(args.trials):
        m, k, n = 32, 64 + 16 * (t % 8), 48
        ours, theirs, float_q, y, s_y, zy = one_layer(gen, m, k, n)
        diff = (ours.to(torch.int16) - theirs.to(torch.int16)).abs()
        total += diff.numel()
        same += int((diff == 0).sum())
        off1 += int((diff == 1).sum())
        worst = max(worst, int(diff.max()))
        float_same += int((ours == float_q).sum())
        err_sum += float(((ours.float() - zy) * s_y - y).abs().mean())
    print(f"elements compared:                 {total}")
    print(f"golden == fbgemm quantized Linear: {100 * same / total:.3f} %  "
          f"(off by one: {100 * off1 / total:.3f} %, worst difference {worst})")
    print(f"golden == round(float / scale):    {100 * float_same / total:.3f} %")
    print(f"mean |dequantized - float|:        {err_sum / args.trials:.5f}")


if __name__ == "__main__":
    main()
