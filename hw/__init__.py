"""Hardware: the NPU configuration, the ISA definition and the Amaranth generators."""

from .config import PRESETS, ConfigError, NPUConfig

__all__ = ["NPUConfig", "ConfigError", "PRESETS"]
