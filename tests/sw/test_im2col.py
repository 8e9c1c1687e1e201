"""The model input written as its first convolution's im2col matrix (sw.program.im2col):
the layout against torch's unfold, the compiler's choice, fewer MAC slots, bit-exact
against the golden with and without it, and programs saved with it."""
import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import sw
from hw import NPUConfig
from sw.program import ProgramError, im2col, im2col_size

TINY = NPUConfig.preset("tiny")


@pytest.mark.parametrize("shape, kernel, stride, pad, k_pad", [
    ((3, 9, 11), (7, 7), (2, 2), (3, 3), 160),
    ((1, 8, 8), (5, 5), (1, 1), (0, 0), 28),
    ((2, 7, 6), (3, 2), (2, 1), (1, 0), 12),
])
def test_im2col_matches_unfold(shape, kernel, stride, pad, k_pad):
    rng = np.random.default_rng(0)
    q = rng.integers(-128, 128, shape, dtype=np.int8)
    zp = -7
    spec = (*kernel, *stride, *pad, k_pad)
    got = im2col(q, spec, zp)
    # torch's unfold, independent of the code under test: columns (c, kh, kw) per pixel.
    x = torch.from_numpy(q.astype(np.float32))[None] - zp
    cols = F.unfold(x, kernel, padding=pad, stride=stride)[0] + zp       # [C*kh*kw, L]
    c = shape[0]
    want = cols.reshape(c, kernel[0] * kernel[1], -1).permute(2, 1, 0).reshape(-1, c * kernel[0] * kernel[1])
    oh, ow = im2col_size(shape, spec)
    assert got.shape == (oh, ow, k_pad)
    flat = got.reshape(oh * ow, k_pad)
    assert np.array_equal(flat[:, :want.shape[1]], want.numpy().astype(np.int8))
    assert (flat[:, want.shape[1]:] == zp).all()


class Stem(nn.Module):
    """A ResNet stem in small: 7x7/2 over an image's 3 channels, then a 3x3 convolution."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 7, stride=2, padding=3)
        self.body = nn.Conv2d(8, 4, 3, padding=1)

    def forward(self, x):
        return self.body(F.relu(self.stem(x)))


@pytest.fixture(scope="module")
def stem():
    torch.manual_seed(0)
    model = Stem().eval()
    qmodel = sw.quantize(model, [torch.randn(4, 3, 18, 20)])
    return qmodel, torch.randn(2, 3, 18, 20)


@pytest.mark.parametrize("cfg", [TINY, NPUConfig()], ids=["tiny", "16x16"])
def test_stem_reads_its_im2col_matrix(stem, cfg):
    qmodel, x = stem
    program = sw.compile(qmodel, cfg)
    plain = sw.compile(qmodel, cfg, im2col=False)
    assert program.input.layout == "im2col" and plain.input.layout == "nhwc"
    assert program.input.nbytes == 9 * 10 * program.input.im2col[6]
    # 147 taps in ceil(147 / R) chunks instead of, read in place, 7 kernel rows of
    # ceil(21 / R) chunks of a row-padded input (packed: 3 channels fill R = 16 well) or 49
    # taps of one chunk of 3 channels (R = 4).
    packed = 2 * 3 <= cfg.rows
    assert plain.input.pad_w == (3 if packed else 0)
    chunks = -(-147 // cfg.rows), 7 * -(-21 // cfg.rows) if packed else 49
    assert program.layers[0]["mac_slots"] * chunks[1] == plain.layers[0]["mac_slots"] * chunks[0]
    assert program.layers[1:] == plain.layers[1:]
    for p in (program, plain):
        assert torch.equal(sw.Device(cfg, "func").run(p, x), qmodel(x))


def test_a_program_with_an_im2col_input_saves_and_runs(stem, tmp_path):
    qmodel, x = stem
    program = sw.compile(qmodel, TINY)
    program.save(tmp_path / "stem.npuprog")
    again = sw.Program.load(tmp_path / "stem.npuprog")
    assert again.input == program.input
    assert torch.equal(sw.Device(TINY, "func").run(again, x), qmodel(x))
    with pytest.raises(ProgramError, match="stored as an im2col matrix"):
        program.input.from_device(np.zeros(program.input.nbytes, np.uint8))


def test_no_im2col_where_it_does_not_pay_or_the_input_has_two_readers():
    torch.manual_seed(0)
    wide = nn.Sequential(nn.Conv2d(16, 4, 3, padding=1)).eval()       # 16 channels: full chunks
    q = sw.quantize(wide, [torch.randn(2, 16, 6, 6)])
    assert sw.compile(q, TINY).input.layout == "nhwc"

    class TwoReaders(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.Conv2d(3, 4, 3, padding=1)
            self.b = nn.Conv2d(3, 4, 1)

        def forward(self, x):
            return self.a(x) + self.b(x)
    q = sw.quantize(TwoReaders().eval(), [torch.randn(2, 3, 6, 6)])
    program = sw.compile(q, TINY)
    assert program.input.layout == "nhwc"
    x = torch.randn(2, 3, 6, 6)
    assert torch.equal(sw.Device(TINY, "func").run(program, x), q(x))
