"""Warnings that point at the user's line of code, not at mt-core's internals."""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

PACKAGE_DIR = str(Path(__file__).resolve().parent)  # mt_core itself


def warn(message: str, category: type[Warning] = UserWarning) -> None:
    """Emit ``message`` attributed to the first caller frame outside the mt_core package."""
    level, frame = 2, sys._getframe(1)
    while frame is not None and str(Path(frame.f_code.co_filename).resolve()).startswith(PACKAGE_DIR):
        frame = frame.f_back
        level += 1
    warnings.warn(message, category, stacklevel=level)
