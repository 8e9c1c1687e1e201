"""iCEBreaker (iCE40UP5K-SG48): 5280 LCs, 30 EBRs of 4 Kbit, 4 SPRAMs of 256 Kbit,
8 SB_MAC16, a 12 MHz clock, the FTDI's second channel as the UART."""

from amaranth_boards.icebreaker import ICEBreakerPlatform

from hw.config import NPUConfig

from . import Board

#: The smallest NPU: 2x4 (8 products, two per SB_MAC16), memories small enough
#: for the EBRs (scratchpad 2 x 128 x 2 B, accumulator 2 x 64 x 16 B), 32-bit DMA, and
#: the area options (docs/fpga.md, "What fits"): the activation table in block RAM, one
#: requantizer lane (4 SB_MAC16 instead of 16), the vector ALU's multiplier sequential
#: (no SB_MAC16 instead of 16), two-entry instruction queues.
CONFIG = NPUConfig(rows=2, cols=4, spad_depth=256, acc_depth=128, param_depth=48,
                   dma_data_width=32, dma_burst_len=8, insn_queue_depth=2, token_queue_depth=4,
                   table_write_bytes=2, requant_lanes=1, alu_mul_bits=1)

BOARD = Board(
    name="icebreaker", platform=ICEBreakerPlatform, config=CONFIG,
    # The DMA target: the four SPRAMs (128 KiB), leaving the EBRs to the NPU.
    ram="spram", ram_bytes=128 * 1024, baud=115200,
    programmer=("ICEPROG", "iceprog", ("{bitstream}",)), bitstream_ext="bin",
    synth_opts="-dsp", mac="ice40_dual",
    description="iCEBreaker (iCE40UP5K): 2x4 NPU, SPRAM as its RAM, 12 MHz")
