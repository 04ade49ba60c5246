"""edgewise: interference-aware, SLO-bound resource management for deep-learning services.

The public Python API is re-exported here; everything else is internal.
"""

from edgewise.clock import Clock, VirtualClock, WallClock
from edgewise.config import (
    SLO,
    BackgroundApp,
    DevicePool,
    DeviceSpec,
    FlavorCatalog,
    FlavorSpec,
    ModelVariant,
    ServiceSpec,
    StressSpace,
    load_devices,
    load_flavors,
    load_service,
    load_stress_space,
)
from edgewise.errors import EdgewiseError, InfeasibleError, SpecError, TraceError, UnknownNameError

__version__ = "0.1.0"

__all__ = [
    "SLO",
    "BackgroundApp",
    "Clock",
    "DevicePool",
    "DeviceSpec",
    "EdgewiseError",
    "FlavorCatalog",
    "FlavorSpec",
    "InfeasibleError",
    "ModelVariant",
    "ServiceSpec",
    "SpecError",
    "StressSpace",
    "TraceError",
    "UnknownNameError",
    "VirtualClock",
    "WallClock",
    "__version__",
    "load_devices",
    "load_flavors",
    "load_service",
    "load_stress_space",
]
