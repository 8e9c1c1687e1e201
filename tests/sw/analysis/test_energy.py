"""Static traffic counts of a program, and their energy."""
import json

import numpy as np
import pytest

from hw import NPUConfig, isa
from sim.functional import FunctionalModel, place_program
from sw.analysis import energy, traffic


def _program(cfg):
    C = cfg.cols
    return [
        isa.config(key="layer", value=3),
        isa.load(mem="spad", sram=0, dram=0, y_size=2, x_size=3, y_stride=64, x_stride=4,
                 length=4, pad_top=1, pad_left=1),                 # (1+2) * (1+3) = 12 rows
        isa.load(mem="param", sram=0, dram=0, y_size=3, x_size=1, y_stride=4 * C, length=C),
        isa.gemm(wgt=0, inp=4, acc=0, m=5),
        isa.gemm(inp=4, acc=0, m=5, accumulate=1, keep_wgt=1),
        isa.config(key="layer", value=4),
        isa.alu(op="add", dst=0, src=8, count=2),
        isa.alu(op="shr", dst=0, use_imm=1, imm=1, count=3),
        isa.store(acc=0, dram=512, rows=4, stride=8, length=3, param=0, clamp_lo=-128,
                  clamp_hi=127),
        isa.finish(),
    ]


def test_traffic_by_hand_and_against_the_functional_model():
    cfg = NPUConfig.preset("tiny")
    prog = _program(cfg)
    total, layers = traffic.count_traffic([i.encode() for i in prog], cfg)
    assert sorted(layers) == [3, 4]          # a CONFIG counts in the layer it starts
    l3, l4 = layers[3], layers[4]
    assert l3.memories["spad"].write_rows == 12 and l3.memories["param"].write_rows == 3
    assert l3.memories["spad"].read_rows == (5 + 4) + 5          # weights once, inputs twice
    assert l3.memories["acc"].read_rows == 5 and l3.memories["acc"].write_rows == 10
    assert l3.mac_slots == 10 * 16
    assert l3.dram_read_bytes == 2 * 3 * 4 + 3 * 4 * 4
    assert l4.memories["acc"].read_rows == 2 * 2 + 3 + 4 and l4.memories["acc"].write_rows == 5
    assert l4.memories["param"].read_rows == 3
    assert l4.alu_lanes == 5 * 4 and l4.requant_lanes == 4 * 4
    assert l4.dram_write_bytes == 12
    assert total.memories["spad"].write_bits == 12 * 8 * 4
    assert total.instructions == len(prog)
    # The functional model's own counters agree where both count.
    dram = np.zeros(4096, np.uint8)
    n = place_program(dram, 2048, prog)
    counts = FunctionalModel(cfg).run(dram, 2048, n)
    assert counts.macs == total.mac_slots
    assert counts.dram_read_bytes == total.dram_read_bytes
    assert counts.dram_write_bytes == total.dram_write_bytes
    assert counts.insn_read_bytes == total.insn_bytes
    for layer, t in layers.items():
        assert counts.per_layer[layer].macs == t.mac_slots
    assert sum(counts.insns.values()) == total.instructions
    assert sum(counts.per_layer[3].insns.values()) == layers[3].instructions


def test_energy_by_hand():
    cfg = NPUConfig.preset("tiny")
    total, _ = traffic.count_traffic([i.encode() for i in _program(cfg)], cfg)
    table = energy.EnergyTable.load()
    e = energy.estimate(total, cfg, table)
    assert e.mac == pytest.approx(160 * 0.3)                        # 8-bit mult + 32-bit add
    assert e.alu == pytest.approx(20 * 0.1)
    assert e.requant == pytest.approx(16 * 3.2)
    banks = energy.memory_bank_bytes(cfg)
    assert banks == {"spad": 256 * 4 // 2, "acc": 128 * 16 // 2, "param": 96 * 16}
    spad = total.memories["spad"]
    assert e.sram["spad"] == pytest.approx(
        (spad.read_bits + spad.write_bits) / 64 * 10 * (512 / 8192) ** 0.475)
    dram = total.dram_read_bytes + total.dram_write_bytes + total.insn_bytes
    assert e.dram == pytest.approx(dram / 8 * 1300)
    assert e.total == pytest.approx(sum(v for k, v in e.as_dict().items() if k != "total"))


def test_power_law_meets_the_published_sram_points():
    table = energy.EnergyTable.load()
    for size, pj in table.sram_64b_pj.items():
        assert table.sram_64b(size) == pytest.approx(pj, rel=0.04)


def test_user_tables_are_checked(tmp_path):
    good = json.loads(energy.DEFAULT_TABLE.read_text())
    good["pj"]["int8_mult"] = 0.1
    path = tmp_path / "mine.json"
    path.write_text(json.dumps(good))
    assert energy.EnergyTable.load(path).mac_pj == pytest.approx(0.2)
    bad = dict(good)
    del bad["dram_64b_pj"]
    path.write_text(json.dumps(bad))
    with pytest.raises(ValueError, match="missing dram_64b_pj"):
        energy.EnergyTable.load(path)
    path.write_text("{")
    with pytest.raises(ValueError, match="not valid JSON"):
        energy.EnergyTable.load(path)
    good["pj"]["int32_add"] = -1
    path.write_text(json.dumps(good))
    with pytest.raises(ValueError, match="positive"):
        energy.EnergyTable.load(path)
    with pytest.raises(ValueError, match="No such file"):
        energy.EnergyTable.load(tmp_path / "none.json")
