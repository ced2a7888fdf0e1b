"""Matplotlib figures without global state (private).

Figures are :class:`matplotlib.figure.Figure` objects drawn on their own Agg canvas:
no pyplot, no backend switch, nothing shown; the user's matplotlib settings stay as
they are. Files are written atomically.
"""

from __future__ import annotations

import os
from typing import Any

from ._files import write_with

__all__ = ["new_figure", "save_figure"]


def new_figure(size: tuple[float, float], dpi: int = 100) -> Any:
    """A new Figure of ``size`` inches with an Agg canvas attached."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=size, dpi=dpi)
    FigureCanvasAgg(fig)
    return fig


def save_figure(fig: Any, path: str | os.PathLike, *, dpi: int | None = None) -> None:
    """Save ``fig`` as a PNG at ``path`` atomically."""
    write_with(path, lambda tmp: fig.savefig(tmp, format="png", dpi=dpi))
