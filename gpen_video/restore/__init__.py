"""Restorers: the contract (``restorer``), device and precision (``device``), the one loader (``loader``),
cross-frame batching (``batcher``), out-of-memory back-off (``backoff``) and CUDA stage streams (``streams``).
The one 16→8-bit rule is ``gpen_video.io.colour.to_8bit``."""

from gpen_video.restore.device import Device, Precision
from gpen_video.restore.restorer import DeviceRestorer, IdentityRestorer, Restorer, check_batch

__all__ = ["Device", "DeviceRestorer", "IdentityRestorer", "Precision", "Restorer", "check_batch"]
