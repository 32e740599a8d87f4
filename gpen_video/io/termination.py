"""SIGTERM and SIGHUP unwind like Ctrl-C, so every temporary output is removed (issue 12).

Kept apart from ``io.output`` so the CLI installs it without loading PyAV.
"""

from __future__ import annotations

import signal


class Terminated(KeyboardInterrupt):
    """SIGTERM or SIGHUP: unwinds like Ctrl-C, so every temporary file is removed."""


def install_termination_handlers() -> None:
    """Make SIGTERM and SIGHUP clean up like SIGINT (call once, in the main thread of the CLI)."""

    def handler(signum: int, frame: object) -> None:
        raise Terminated(signal.Signals(signum).name)

    for sig in (signal.SIGTERM, getattr(signal, "SIGHUP", None)):
        if sig is not None:
            signal.signal(sig, handler)
