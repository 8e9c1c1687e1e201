"""The NPU core, built from components: the top in :mod:`.core`, the fetch unit in
:mod:`.fetch`, the dispatcher in :mod:`.dispatch`, the load unit in :mod:`.load`, the
compute unit (with the array) in :mod:`.compute`, the store unit in :mod:`.store`, the
dependency tokens in :mod:`.tokens`, the vector ALU datapath in :mod:`.vector`."""

from .compute import ComputeUnit
from .core import Core
from .dispatch import Dispatcher
from .fetch import FetchUnit
from .load import LoadUnit
from .store import StoreUnit
from .tokens import Tokens
from .vector import VectorALU

__all__ = ["ComputeUnit", "Core", "Dispatcher", "FetchUnit", "LoadUnit", "StoreUnit", "Tokens",
           "VectorALU"]
