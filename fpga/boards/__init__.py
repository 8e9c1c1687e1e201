"""The boards the FPGA flow knows: one file each, and any amaranth-boards board by name.

A :class:`Board` is an amaranth-boards platform with what the NPU needs on it: the
FPGA family's flow, an NPU configuration that fits the chip, the SoC's RAM (block RAM,
or the iCE40UP5K's SPRAM), the UART rate, and the programmer's command line.

``icebreaker``, ``ulx3s-85f`` and ``orangecrab-r0.2`` are defined in this package
(one module each); :func:`get_board` also takes the name of any amaranth-boards
platform of a supported family (``ice40_up5k_b_evn``, ``versa_ecp5``,
``ULX3S_45F_Platform``, ...), which then needs a configuration from the user.
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import os
import pkgutil
import re

from hw.config import NPUConfig

__all__ = ["Board", "BoardError", "BOARDS", "get_board", "board_names", "platform_family",
           "FAMILIES"]

#: The FPGA families the flow supports.
FAMILIES = ("ice40", "ecp5")


def platform_family(cls: type) -> str | None:
    """``"ice40"`` or ``"ecp5"`` for an amaranth platform class of that family, else None."""
    names = {c.__name__ for c in cls.__mro__}
    device = str(getattr(cls, "device", "") or "")
    if "SiliconBluePlatform" in names and device.startswith("iCE40"):
        return "ice40"
    if "LatticePlatform" in names and device.startswith("LFE5U"):
        return "ecp5"
    return None


class BoardError(ValueError):
    """An unknown board, or one that the flow cannot build for."""


@dataclasses.dataclass(frozen=True)
class Board:
    """A board: its amaranth-boards platform and what the NPU's SoC uses on it.

    ``config`` is the configuration that fits (None for a board known only from
    amaranth-boards: the user gives one). ``programmer`` is ``(env_var, default,
    args)``: the command is ``$env_var or default``, then ``args`` with ``{bitstream}``
    replaced. ``synth_opts`` go to ``synth_<family>`` (``-dsp`` on iCE40: use the
    SB_MAC16s).
    """

    name: str
    platform: type
    config: NPUConfig | None
    ram: str = "bram"
    ram_bytes: int = 16384
    baud: int = 115200
    programmer: tuple[str, str, tuple[str, ...]] = ("OPENFPGALOADER", "openFPGALoader",
                                                     ("{bitstream}",))
    bitstream_ext: str = "bit"
    synth_opts: str = ""
    description: str = ""
    #: Resources the board file adds to the platform (a UART on a header, say).
    resources: tuple = ()
    #: The SoC's clock when it is not the board's oscillator (made by a PLL; ECP5 only).
    soc_clk_hz: float | None = None
    #: How the array builds its products (a :data:`hw.array.MAC_PRESETS` name or
    #: :class:`hw.array.MacOptions`): ``"ice40_dual"`` on the UP5K, two per SB_MAC16.
    mac: object = "generic"

    def make_platform(self):
        """A fresh instance of the board's platform, with the board file's resources."""
        platform = self.platform()
        if self.resources:
            platform.add_resources(list(self.resources))
        return platform

    @property
    def family(self) -> str:
        family = platform_family(self.platform)
        if family:
            return family
        raise BoardError(f"board {self.name}: {self.platform.__name__} is not an iCE40 or ECP5 "
                         f"platform")

    @property
    def device(self) -> str:
        return self.platform.device

    @property
    def clk_hz(self) -> float:
        """The frequency of the board's default clock (its oscillator)."""
        return float(self.platform().default_clk_frequency)

    def pll(self) -> dict | None:
        """The PLL that makes ``soc_clk_hz`` (:func:`fpga.clock.ecp5_pll_params`), or None
        when the SoC runs from the oscillator."""
        if self.soc_clk_hz is None or self.soc_clk_hz == self.clk_hz:
            return None
        if self.family != "ecp5":
            raise BoardError(f"board {self.name}: a PLL for soc_clk_hz is made on ECP5 only")
        from ..clock import ecp5_pll_params

        return ecp5_pll_params(self.clk_hz / 1e6, self.soc_clk_hz / 1e6)

    @property
    def sys_clk_hz(self) -> float:
        """The SoC's clock: the PLL's output, or the oscillator."""
        pll = self.pll()
        return pll["out_mhz"] * 1e6 if pll else self.clk_hz

    def programmer_command(self, bitstream, env: dict[str, str] | None = None) -> list[str]:
        """The command line that flashes ``bitstream`` onto the board."""
        env = os.environ if env is None else env
        var, default, args = self.programmer
        return [env.get(var) or default, *(a.format(bitstream=bitstream) for a in args)]


def _from_module(module, cls_name: str, **kwargs) -> Board:
    return Board(platform=getattr(module, cls_name), **kwargs)


def _defined() -> dict[str, Board]:
    from . import icebreaker, orangecrab, ulx3s

    return {b.name: b for b in (icebreaker.BOARD, ulx3s.BOARD, orangecrab.BOARD)}


#: The boards defined here, with configurations that fit.
BOARDS: dict[str, Board] = _defined()


def _amaranth_platforms() -> dict[str, type]:
    """Every amaranth-boards platform of a supported family, by several names: the class
    name, its name without ``Platform``, and the module's name when it has one platform."""
    import amaranth_boards

    found: dict[str, type] = {}
    for info in pkgutil.iter_modules(amaranth_boards.__path__):
        if info.name.startswith("_") or info.name in ("test", "resources", "extensions"):
            continue
        try:
            module = importlib.import_module(f"amaranth_boards.{info.name}")
        except Exception:   # a board module that needs a vendor package we lack
            continue
        classes = [cls for _, cls in inspect.getmembers(module, inspect.isclass)
                   if cls.__module__ == module.__name__ and not cls.__name__.startswith("_")
                   and platform_family(cls)]
        for cls in classes:
            found[_key(cls.__name__)] = cls
            found[_key(cls.__name__.removesuffix("Platform"))] = cls
        if len(classes) == 1:
            found[_key(info.name)] = classes[0]
    return found


def _key(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower())


def board_names() -> list[str]:
    """The names :func:`get_board` takes: the defined boards, then amaranth-boards' ones."""
    return sorted(BOARDS) + sorted({cls.__name__ for cls in _amaranth_platforms().values()})


def get_board(name: str) -> Board:
    """The board called ``name``: one defined here, else an amaranth-boards platform of a
    supported family (its ``config`` is None). :class:`BoardError` lists the choices."""
    if name in BOARDS:
        return BOARDS[name]
    for board in BOARDS.values():
        if _key(board.name) == _key(name):
            return board
    platforms = _amaranth_platforms()
    cls = platforms.get(_key(name))
    if cls is None:
        raise BoardError(f"unknown board {name!r}; boards with a configuration: "
                         f"{', '.join(sorted(BOARDS))}; or any iCE40/ECP5 board of "
                         f"amaranth-boards (`python -m fpga.build --list-boards`)")
    if platform_family(cls) == "ice40":
        return Board(name=name, platform=cls, config=None, ram="bram", ram_bytes=8192,
                     programmer=("ICEPROG", "iceprog", ("{bitstream}",)), bitstream_ext="bin",
                     synth_opts="-dsp", mac="ice40_dual", description=f"{cls.__name__} (amaranth-boards)")
    return Board(name=name, platform=cls, config=None, ram="bram", ram_bytes=32768,
                 description=f"{cls.__name__} (amaranth-boards)")
