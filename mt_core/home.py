"""The data directory (``MT_HOME``): created on first write, with a warning when it is the default."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .user_warnings import warn


def prepare_home(settings: Any) -> Path:
    """``settings.home``, created when missing.

    Creating the default ``./.mt`` (``MT_HOME`` unset) warns once: it lives in the current
    directory, so scripts started from different directories would silently use different stores.
    """
    home = Path(settings.home)
    if not home.is_dir():
        home.mkdir(parents=True, exist_ok=True)
        if getattr(settings, "home_is_default", False):
            warn(
                f"MT_HOME is not set: created the data directory {home.resolve()} in the current directory."
                " A script started from another directory uses another one; set MT_HOME to one absolute"
                " path to keep a single store."
            )
    return home
