"""The runtime, in layers: the CSR driver (:mod:`hw.driver`, over a register bus),
the backends behind one interface in a registry (:mod:`.backends`), the device
that runs programs with named memory regions (:mod:`.device`), and typed
statistics from the one counter schema (:mod:`.stats`).

The driver lives in ``hw`` beside the register map it drives, below ``sim``: the
cocotb bench and the C++ harness session run its sequences, as the FPGA's UART
bridge will, without ``sim`` importing ``sw``.
"""

from .backends import BACKENDS, Backend, BackendError, RunRecord, get_backend, register_backend
from .device import Device, DeviceError
from .stats import COUNTER_KEYS, LAYER_KEYS, Counters, stat_key

__all__ = ["Device", "DeviceError", "BACKENDS", "Backend", "BackendError", "RunRecord",
           "register_backend", "get_backend", "Counters", "COUNTER_KEYS", "LAYER_KEYS", "stat_key"]
