"""The error every tool finder raises."""

from __future__ import annotations

__all__ = ["ToolchainError"]


class ToolchainError(RuntimeError):
    """A tool the flow needs is missing or not runnable."""
