"""What every console script shares: one-line errors and a non-zero exit on bad input."""

from __future__ import annotations

import logging
import sys


class UsageError(Exception):
    """Bad input a command reports in one line before exiting non-zero."""


def run_main(main_impl, argv=None, expected=(Exception,)) -> int:
    """Run ``main_impl(argv)``; print ``<prog>: error: <reason>`` and return 2 on a known failure."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        return int(main_impl(argv) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except expected as exc:  # noqa: BLE001 - every known failure becomes one line
        reason = " ".join(str(exc).split()) or type(exc).__name__
        print(f"error: {reason}", file=sys.stderr)
        return 2
