"""The NPU core, built from components: the controller in :mod:`.core`, the dependency
tokens in :mod:`.tokens`, the vector ALU datapath in :mod:`.vector`."""

from .core import Core
from .tokens import Tokens
from .vector import VectorALU

__all__ = ["Core", "Tokens", "VectorALU"]
