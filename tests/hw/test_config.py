import dataclasses
import subprocess
import sys

import pytest

from hw import NPUConfig, ConfigError, PRESETS


@pytest.mark.parametrize("field, value, message", [
    ("rows", 1, "NPUConfig.rows is 1; allowed: 2 to 64"),
    ("rows", 65, "NPUConfig.rows is 65; allowed: 2 to 64"),
    ("cols", 0, "NPUConfig.cols is 0; allowed: 2 to 64"),
    ("operand_width", 4, "NPUConfig.operand_width is 4"),
    ("acc_width", 24, "NPUConfig.acc_width is 24"),
    ("spad_depth", 8, "NPUConfig.spad_depth is 8; allowed: 16 to 16384"),
    ("spad_depth", 1 << 15, "NPUConfig.spad_depth is 32768; allowed: 16 to 16384"),
    ("spad_depth", 4095, "NPUConfig.spad_depth is 4095, which spad_banks=2 does not divide"),
    ("spad_banks", 3, "NPUConfig.spad_banks is 3; allowed: a power of two from 1 to 8"),
    ("acc_depth", 4, "NPUConfig.acc_depth is 4; allowed: 16 to 16384"),
    ("acc_depth", 1023, "NPUConfig.acc_depth is 1023, which acc_banks=2 does not divide"),
    ("acc_banks", 16, "NPUConfig.acc_banks is 16; allowed: a power of two from 1 to 8"),
    ("param_depth", 100, "NPUConfig.param_depth is 100; it must be a multiple of 3"),
    ("param_depth", 2, "NPUConfig.param_depth is 2; allowed: 3 to 3072"),
    ("dma_data_width", 48, "NPUConfig.dma_data_width is 48; allowed: 32, 64, 128, 256, 512"),
    ("dma_burst_len", 3, "NPUConfig.dma_burst_len is 3; allowed: a power of two from 1 to 256"),
    ("insn_queue_depth", 1, "NPUConfig.insn_queue_depth is 1; allowed: a power of two from 2 to 256"),
    ("token_queue_depth", 0, "NPUConfig.token_queue_depth is 0; allowed: 1 to 255"),
    ("table_write_bytes", 3, "NPUConfig.table_write_bytes is 3; allowed: 0 (the activation "
                             "table in registers) or a power of two that divides 4 * cols = 64"),
    ("table_write_bytes", 128, "NPUConfig.table_write_bytes is 128; allowed: 0"),
    ("alu_mul_bits", 32, "NPUConfig.alu_mul_bits is 32; allowed: 0 (a 32 x 32 multiplier per "
                         "lane) or 1, 2, 4, 8, 16 (bits of the source a cycle)"),
    ("requant_lanes", 3, "NPUConfig.requant_lanes is 3; allowed: 0 (cols) or a divisor of "
                         "cols = 16"),
    ("requant_lanes", -2, "NPUConfig.requant_lanes is -2; allowed: 0 (cols)"),
    ("rows", "16", "NPUConfig.rows must be an int, not str '16'"),
    ("cols", True, "NPUConfig.cols must be an int, not bool True"),
])
def test_invalid_field_rejected_with_message(field, value, message):
    with pytest.raises(ConfigError) as info:
        NPUConfig(**{field: value})
    assert message in str(info.value)


def test_every_field_has_a_rejection_case():
    tested = {"rows", "cols", "operand_width", "acc_width", "spad_depth", "spad_banks",
              "acc_depth", "acc_banks", "param_depth", "dma_data_width", "dma_burst_len",
              "insn_queue_depth", "token_queue_depth", "table_write_bytes",
              "alu_mul_bits", "requant_lanes"}
    assert tested == {f.name for f in dataclasses.fields(NPUConfig)}


def test_keyword_only_and_frozen():
    with pytest.raises(TypeError):
        NPUConfig(16, 16)  # positional arguments must fail
    cfg = NPUConfig()
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.rows = 8


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_presets_valid(name):
    cfg = NPUConfig.preset(name)
    assert cfg == NPUConfig(**cfg.to_dict())
    assert cfg.rows == {"tiny": 4, "small": 8, "default": 16, "large": 32}[name]
    assert cfg.rows == cfg.cols


def test_unknown_preset():
    with pytest.raises(ConfigError, match="unknown preset 'huge'; presets: tiny, small"):
        NPUConfig.preset("huge")


def test_preset_overrides():
    cfg = NPUConfig.preset("tiny", cols=6)
    assert (cfg.rows, cfg.cols) == (4, 6)


def test_hash_differs_between_configs():
    hashes = {NPUConfig.preset(n).hash for n in PRESETS}
    hashes.add(NPUConfig(rows=16, cols=8).hash)
    hashes.add(NPUConfig(dma_burst_len=8).hash)
    assert len(hashes) == len(PRESETS) + 2
    assert all(0 <= h < 1 << 32 for h in hashes)


def test_hash_stable_across_processes():
    code = "from hw import NPUConfig; print(NPUConfig(rows=8, cols=12).hash)"
    outs = {subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                           check=True, env={"PYTHONHASHSEED": seed}).stdout
            for seed in ("1", "2")}
    assert outs == {f"{NPUConfig(rows=8, cols=12).hash}\n"}


def test_hash_is_of_canonical_form():
    # Pinned values: changing the canonical form, the fields or the hash function
    # breaks every shipped program and bitstream, so it must be a deliberate change.
    cfg = NPUConfig(rows=16, cols=16)
    assert cfg.canonical().startswith('{"acc_banks":2,"acc_depth":1024,')
    pinned = {"tiny": 0x429CF6AD, "small": 0xB9B1FC34, "default": 0x60E2B659,
              "large": 0xC932DDF6}
    assert {name: NPUConfig.preset(name).hash for name in PRESETS} == pinned
    assert NPUConfig(rows=8, cols=12).hash == 0xAE4F1E75


def test_json_round_trip():
    cfg = NPUConfig(rows=8, cols=12, spad_depth=512)
    assert NPUConfig.from_json(cfg.to_json()) == cfg
    assert NPUConfig.from_json(cfg.to_json()).hash == cfg.hash


def test_json_errors():
    with pytest.raises(ConfigError, match="unknown NPUConfig field"):
        NPUConfig.from_json('{"rows": 4, "colz": 4}')
    with pytest.raises(ConfigError, match="malformed"):
        NPUConfig.from_json('{"rows": ')
    with pytest.raises(ConfigError, match="JSON object"):
        NPUConfig.from_json('[1, 2]')


def test_require_config_names_what_was_given():
    from hw.config import require_config
    cfg = NPUConfig.preset("tiny")
    assert require_config(cfg) is cfg
    with pytest.raises(TypeError, match="config must be an NPUConfig, not dict"):
        require_config({"rows": 4})


def test_new_fields_at_their_default_leave_the_hash_unchanged():
    """A field added later is out of the canonical form at its default, so every existing
    configuration keeps its hash; set, it is in the form and changes the hash."""
    for name in PRESETS:
        cfg = NPUConfig.preset(name)
        assert "table_write_bytes" not in cfg.canonical()
        assert "alu_mul_bits" not in cfg.canonical()
        assert "requant_lanes" not in cfg.canonical()
        for field, value in (("table_write_bytes", 2), ("alu_mul_bits", 1), ("requant_lanes", 1)):
            changed = cfg.replace(**{field: value})
            assert f'"{field}":{value}' in changed.canonical()
            assert changed.hash != cfg.hash
            assert NPUConfig.from_json(changed.to_json()) == changed
    assert NPUConfig.preset("tiny", table_write_bytes=16).table_load_cycles == 16
    assert NPUConfig.preset("tiny", table_write_bytes=1).table_load_cycles == 256
    assert NPUConfig.preset("tiny").table_load_cycles == 16     # table_rows(4)
    assert NPUConfig.preset("tiny", alu_mul_bits=2).alu_mul_cycles == 16
    assert NPUConfig.preset("tiny").alu_mul_cycles == 1
    assert NPUConfig.preset("tiny", requant_lanes=1).requant_passes == 4
    assert NPUConfig.preset("tiny").requant_passes == 1
