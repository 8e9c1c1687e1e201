"""The iCEBreaker's configuration (its area options: the activation table in block RAM,
one requantizer lane, the vector ALU's multiplier sequential) runs a small model on the
Verilated NPU bit-exactly against the integer golden."""
import torch
from torch import nn

import sw
from fpga.boards import BOARDS
from hw import isa

CONFIG = BOARDS["icebreaker"].config


class _Small(nn.Module):
    """A linear layer, a sigmoid (an activation table), another linear layer and a softmax
    (MULH on the vector ALU)."""

    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(12, 8)
        self.fc2 = nn.Linear(8, 6)

    def forward(self, x):
        return torch.softmax(self.fc2(torch.sigmoid(self.fc1(x))), dim=-1)


def test_the_board_config_uses_the_area_options():
    assert CONFIG.table_write_bytes and CONFIG.requant_lanes == 1 and CONFIG.alu_mul_bits


def test_a_small_model_runs_bit_exactly_on_the_rtl():
    torch.manual_seed(3)
    model = _Small().eval()
    qmodel = sw.quantize(model, [torch.randn(16, 12)])
    program = sw.compile(qmodel, CONFIG)
    insns = program.instructions()
    # The program uses what the options changed: a STORE through the table, MULH.
    assert any(i.opcode is isa.Opcode.STORE and i.lut for i in insns)
    assert any(i.opcode is isa.Opcode.ALU and isa.AluOp(i.op) is isa.AluOp.MULH for i in insns)
    x = torch.randn(5, 12)
    device = sw.Device(CONFIG, backend="rtl")
    y = device.run(program, x)
    assert torch.equal(y, qmodel(x))
