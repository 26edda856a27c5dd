"""lookalike: visual product search over a native ANN core."""

from lookalike._core import hardware_acceleration, simd_levels

__version__ = "0.1.0"
__all__ = ["hardware_acceleration", "simd_levels", "__version__"]
