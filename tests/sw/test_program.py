"""sw.Program: regions, save and load (this format and the last), damaged files."""
import json

import numpy as np
import pytest
import torch

import sw
from hw import NPUConfig
from sw import zoo
from sw.program import Region, TensorInfo, file_digest, layout_regions

TINY = NPUConfig.preset("tiny")


@pytest.fixture(scope="module")
def program():
    model, shape = zoo.build("lenet5")
    return sw.compile(sw.quantize(model, [torch.randn(4, *shape)]), TINY)


def test_compiled_regions_cover_the_image(program):
    regions = sorted(program.regions, key=lambda r: r.addr)
    assert regions[0].addr == 0 and regions[-1].end == len(program.dram)
    assert all(a.end == b.addr for a, b in zip(regions, regions[1:]))
    kinds = {r.kind for r in regions}
    assert kinds == {"constants", "input", "output", "scratch"}
    # Every byte of data the compiler placed (weights, parameters, instructions) is constant.
    const = np.zeros(len(program.dram), bool)
    for r in program.regions_of("constants"):
        const[r.addr:r.end] = True
    assert const[program.insn_base:program.insn_base + 16 * program.insn_count].all()
    assert not program.dram[~const].any()
    assert program.region(program.input.name).kind == "input"


def test_layout_regions_merges_only_padding():
    x = TensorInfo("x", 0, (4,), 1.0, 0, "flat")
    y = TensorInfo("y", 64, (4,), 1.0, 0, "flat")
    regions = layout_regions(512, [(128, 10), (192, 16), (384, 8)], x, y,
                             state=[("kv", 448, 32)])
    assert [(r.name, r.kind, r.addr, r.nbytes) for r in regions] == [
        ("x", "input", 0, 4), ("scratch0", "scratch", 4, 60), ("y", "output", 64, 4),
        ("scratch1", "scratch", 68, 60), ("constants0", "constants", 128, 80),
        ("scratch2", "scratch", 208, 176), ("constants1", "constants", 384, 8),
        ("scratch3", "scratch", 392, 56), ("kv", "state", 448, 32), ("scratch4", "scratch", 480, 32)]


def test_bad_regions_are_refused(program):
    def make(regions):
        return sw.Program(config=TINY, dram=program.dram, insn_base=program.insn_base,
                          insn_count=program.insn_count, input=program.input,
                          output=program.output, regions=regions)
    good = program.regions
    with pytest.raises(sw.ProgramError, match="kind 'weights'; kinds: constants, input"):
        make(good + [Region("w", "weights", len(program.dram), 0)])
    with pytest.raises(sw.ProgramError, match="two regions are named 'x'"):
        make(good + [Region("x", "scratch", len(program.dram), 0)])
    with pytest.raises(sw.ProgramError, match="overlaps another or lies outside the image"):
        make(good + [Region("big", "state", len(program.dram) - 4, 8)])
    with pytest.raises(sw.ProgramError, match="the input region must be the input tensor 'x'"):
        make([r for r in good if r.kind != "input"])


def test_save_load_round_trip_keeps_regions(program, tmp_path):
    path = tmp_path / "m.npuprog"
    program.save(path)
    again = sw.Program.load(path)
    assert again.regions == program.regions
    assert np.array_equal(again.dram, program.dram) and again.input == program.input


def rewrite_meta(src, dst, edit):
    with np.load(src) as z:
        dram, meta = z["dram"], json.loads(z["meta"].tobytes().decode())
    edit(meta)
    meta["sha256"] = file_digest(dram, meta)   # a well-formed file with bad fields
    with open(dst, "wb") as f:
        np.savez_compressed(f, dram=dram, meta=np.frombuffer(json.dumps(meta).encode(), np.uint8))


def test_old_files_load_with_every_byte_but_input_and_output_constant(program, tmp_path):
    program.save(tmp_path / "new.npuprog")

    def to_v1(meta):
        meta["format"] = "npuprog-1"
        del meta["regions"]
    rewrite_meta(tmp_path / "new.npuprog", tmp_path / "old.npuprog", to_v1)
    old = sw.Program.load(tmp_path / "old.npuprog")
    assert [r.kind for r in old.regions] == ["input", "output", "constants"]
    assert sum(r.nbytes for r in old.regions) == len(program.dram)
    x = torch.randn(2, *program.input.shape)
    assert torch.equal(sw.Device(TINY).run(old, x), sw.Device(TINY).run(program, x))


@pytest.mark.parametrize("edit, message", [
    (lambda m: m.update(format="npuprog-9"),
     r"unknown program format 'npuprog-9' \(this version reads npuprog-1, npuprog-2, "
     r"npuprog-3\)"),
    (lambda m: m.pop("insn_base"), r"damaged program file \(KeyError: 'insn_base'\)"),
    (lambda m: m["regions"][0].update(kind="weights"), "region 'x' has kind 'weights'"),
    (lambda m: m.update(config_hash=1), "configuration hash mismatch"),
])
def test_damaged_files_get_clear_errors(program, tmp_path, edit, message):
    program.save(tmp_path / "good.npuprog")
    rewrite_meta(tmp_path / "good.npuprog", tmp_path / "bad.npuprog", edit)
    with pytest.raises(sw.ProgramError, match=message):
        sw.Program.load(tmp_path / "bad.npuprog")
    (tmp_path / "cut.npuprog").write_bytes((tmp_path / "good.npuprog").read_bytes()[:200])
    with pytest.raises(sw.ProgramError, match="is not a program file"):
        sw.Program.load(tmp_path / "cut.npuprog")


def test_changed_or_damaged_contents_fail_the_checksum(program, tmp_path):
    good = tmp_path / "good.npuprog"
    program.save(good)
    with np.load(good) as z:
        dram, meta = z["dram"].copy(), json.loads(z["meta"].tobytes().decode())
    assert meta["format"] == "npuprog-3" and meta["sha256"] == file_digest(dram, meta)
    # Weights scrambled inside a valid archive (the zip CRCs are right): caught.
    weights = next(r for r in program.regions if r.kind == "constants")
    dram[weights.addr:weights.addr + 16] ^= 0x5A
    with open(tmp_path / "scrambled.npuprog", "wb") as f:
        np.savez_compressed(f, dram=dram, meta=np.frombuffer(json.dumps(meta).encode(), np.uint8))
    with pytest.raises(sw.ProgramError, match="checksum mismatch"):
        sw.Program.load(tmp_path / "scrambled.npuprog")
    # A field changed without a new checksum: caught too.
    with np.load(good) as z:
        dram = z["dram"]
    meta["insn_count"] -= 1
    with open(tmp_path / "edited.npuprog", "wb") as f:
        np.savez_compressed(f, dram=dram, meta=np.frombuffer(json.dumps(meta).encode(), np.uint8))
    with pytest.raises(sw.ProgramError, match="checksum mismatch"):
        sw.Program.load(tmp_path / "edited.npuprog")
    # Every single flipped byte of the file, empty and truncated files: ProgramError.
    data = good.read_bytes()
    (tmp_path / "empty.npuprog").write_bytes(b"")
    with pytest.raises(sw.ProgramError, match="is not a program file"):
        sw.Program.load(tmp_path / "empty.npuprog")
    rng = np.random.default_rng(0)
    for k, pos in enumerate(rng.choice(len(data), 40, replace=False)):
        bad = bytearray(data)
        bad[pos] ^= 1 << int(rng.integers(8))
        (tmp_path / f"flip{k}.npuprog").write_bytes(bytes(bad))
        with pytest.raises(sw.ProgramError):
            sw.Program.load(tmp_path / f"flip{k}.npuprog")
    for cut in (10, len(data) // 2, len(data) - 1):
        (tmp_path / "cut.npuprog").write_bytes(data[:cut])
        with pytest.raises(sw.ProgramError, match="is not a program file"):
            sw.Program.load(tmp_path / "cut.npuprog")
