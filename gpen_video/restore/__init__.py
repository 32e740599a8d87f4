"""The restorer contract: what a restorer is (``restorer``), where it runs and in what precision (``device``),
out-of-memory back-off (``backoff``) and CUDA stage streams (``streams``). Restorers themselves and the one
loader live in ``gpen_video.models``; the stage that batches crops into them in ``gpen_video.run``."""

from gpen_video.restore.device import Device, Precision
from gpen_video.restore.restorer import DeviceRestorer, IdentityRestorer, Restorer, check_batch

__all__ = ["Device", "DeviceRestorer", "IdentityRestorer", "Precision", "Restorer", "check_batch"]
