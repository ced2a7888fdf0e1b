"""Imports of third-party packages that need care (private).

albumentations asks PyPI for a newer version when it is imported, unless the
environment variable ``NO_ALBUMENTATIONS_UPDATE`` is set. skinseg never goes to the
network unless asked, and library code leaves the user's environment alone, so
:func:`import_albumentations` sets the variable only while the import runs and then
restores it (the CLI sets it for the whole process at start-up).
"""

from __future__ import annotations

import importlib
import os
import sys
import threading
from types import ModuleType

__all__ = ["import_albumentations"]

_LOCK = threading.Lock()
_KEY = "NO_ALBUMENTATIONS_UPDATE"


def import_albumentations() -> ModuleType:
    """``import albumentations`` without its network update check; the environment is restored after."""
    module = sys.modules.get("albumentations")
    if module is not None:
        return module
    with _LOCK:
        old = os.environ.get(_KEY)
        os.environ[_KEY] = "1"
        try:
            return importlib.import_module("albumentations")
        finally:
            if old is None:
                os.environ.pop(_KEY, None)
            else:
                os.environ[_KEY] = old
