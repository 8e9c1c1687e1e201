"""OrangeCrab r0.2 with the ECP5-25F (LFE5U-25F-8MG285C): 24,288 LUT4, 56 EBRs of
18 Kbit, 28 MULT18X18D, a 48 MHz clock. It has no USB UART: the SoC's UART is on the
feather header's TX/RX pins (a 3.3 V USB serial adapter), and it is flashed over USB
DFU (the bootloader's VID:PID 1209:5af0, a DFU suffix on the bitstream)."""

from amaranth.build import Attrs
from amaranth_boards.orangecrab_r0_2 import OrangeCrabR0_2_25FPlatform

from amaranth_boards.resources import UARTResource

from hw.config import NPUConfig

from . import Board

#: 2x2 with the `tiny` preset's memories: the 4x4 `tiny` needs 25,882 LUT4 and 49 MULT18
#: (measured; the chip has 24,288 and 28), most of them in the store path's requantizer and
#: activation table and in the vector ALU, which grow with the columns.
CONFIG = NPUConfig.preset("tiny", rows=2, cols=2)

BOARD = Board(
    name="orangecrab-r0.2", platform=OrangeCrabR0_2_25FPlatform, config=CONFIG,
    ram="bram", ram_bytes=32 * 1024, baud=115200,
    programmer=("DFU_UTIL", "dfu-util", ("-a", "0", "-D", "{bitstream}")),
    bitstream_ext="bit",
    # The NPU does not close timing at the oscillator's 48 MHz: a PLL makes 24 MHz.
    soc_clk_hz=24e6,
    # Feather D0 (RX) and D1 (TX).
    resources=(UARTResource(0, rx="0", tx="1", conn=("io", 0), attrs=Attrs(IO_TYPE="LVCMOS33")),),
    description="OrangeCrab r0.2 (ECP5-25F): 2x2 NPU, 32 KiB of block RAM, 24 MHz (PLL)")
