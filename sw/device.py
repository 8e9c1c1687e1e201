"""Moved to :mod:`sw.runtime` (driver, backends, device); kept so that
``from sw.device import Device`` keeps working."""

from .runtime.backends import BACKENDS
from .runtime.device import Device, DeviceError

__all__ = ["Device", "DeviceError", "BACKENDS"]
