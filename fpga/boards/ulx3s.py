"""ULX3S with the ECP5-85F (LFE5U-85F-6BG381C): 83,640 LUT4, 208 EBRs of 18 Kbit,
156 MULT18X18D, a 25 MHz clock, the FT231X as the UART."""

from amaranth_boards.ulx3s import ULX3S_85F_Platform

from hw.config import NPUConfig

from . import Board

#: 8x8 (64 products on MULT18X18Ds), the `small` preset's memories, 64-bit DMA.
CONFIG = NPUConfig(rows=8, cols=8, spad_depth=1024, acc_depth=256, param_depth=48,
                   dma_data_width=64)

BOARD = Board(
    name="ulx3s-85f", platform=ULX3S_85F_Platform, config=CONFIG,
    ram="bram", ram_bytes=128 * 1024, baud=115200,
    programmer=("OPENFPGALOADER", "openFPGALoader", ("-b", "ulx3s", "-m", "{bitstream}")),
    bitstream_ext="bit",
    description="ULX3S (ECP5-85F): 8x8 NPU, 128 KiB of block RAM, 25 MHz")
