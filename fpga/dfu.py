"""The USB DFU file suffix (DFU 1.1, appendix B), as dfu-util's ``dfu-suffix -a``.

The OrangeCrab's bootloader takes bitstreams through ``dfu-util``, which checks the
16-byte suffix: bcdDevice, idProduct, idVendor (2 bytes each, little-endian), bcdDFU
(0x0100), the signature ``"UFD"``, the suffix length (16) and a CRC-32 of the file and
the suffix up to the CRC, without the final inversion. amaranth-boards' OrangeCrab
build runs ``dfu-suffix -v 1209 -p 5af0 -a NAME.bit``; when dfu-util is not installed
the flow runs this module in its place: ``python -m fpga.dfu -v 1209 -p 5af0 -a FILE``.
"""

from __future__ import annotations

import argparse
import pathlib
import struct
import sys
import zlib

__all__ = ["dfu_suffix", "has_suffix", "main"]

_LENGTH = 16


def dfu_suffix(data: bytes, *, vendor: int, product: int, device: int = 0xFFFF) -> bytes:
    """``data`` with the DFU suffix appended."""
    for name, value in (("vendor", vendor), ("product", product), ("device", device)):
        if not 0 <= value <= 0xFFFF:
            raise ValueError(f"DFU {name} id must fit 16 bits, not {value:#x}")
    body = data + struct.pack("<HHHH3sB", device, product, vendor, 0x0100, b"UFD", _LENGTH)
    crc = zlib.crc32(body) ^ 0xFFFFFFFF   # the standard CRC-32 without its final inversion
    return body + struct.pack("<I", crc)


def has_suffix(data: bytes) -> bool:
    """Whether ``data`` ends with a DFU suffix whose CRC checks."""
    if len(data) < _LENGTH or data[-8:-5] != b"UFD" or data[-5] != _LENGTH:
        return False
    return struct.unpack("<I", data[-4:])[0] == zlib.crc32(data[:-4]) ^ 0xFFFFFFFF


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fpga.dfu",
                                     description="Append a USB DFU suffix to a file "
                                                 "(as dfu-suffix -a).")
    parser.add_argument("-v", "--vid", required=True, help="vendor id, hex")
    parser.add_argument("-p", "--pid", required=True, help="product id, hex")
    parser.add_argument("-d", "--did", default="ffff", help="device release, hex (default ffff)")
    parser.add_argument("-a", "--add", required=True, metavar="FILE", help="the file to suffix")
    args = parser.parse_args(argv)
    path = pathlib.Path(args.add)
    try:
        data = path.read_bytes()
        if has_suffix(data):
            print(f"{path} already has a DFU suffix", file=sys.stderr)
            return 1
        path.write_bytes(dfu_suffix(data, vendor=int(args.vid, 16), product=int(args.pid, 16),
                                    device=int(args.did, 16)))
    except (OSError, ValueError) as exc:
        print(f"python -m fpga.dfu: error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
