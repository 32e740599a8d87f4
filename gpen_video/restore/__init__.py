"""Restorers: the contract (``Restorer``), the identity restorer; out-of-memory back-off in ``backoff``."""

from gpen_video.restore.restorer import IdentityRestorer, Restorer, check_batch

__all__ = ["IdentityRestorer", "Restorer", "check_batch"]
