"""The Ray calls of the Ray engine whose spelling depends on the Ray release, in one place (private).

Tested range: ``ray[data] >= 2.40, < 3`` (the ``ray`` extra of pyproject.toml).

- **Actor pool of map_batches.** Ray 2.9 to 2.50 size a callable class's actor pool with
  ``concurrency=n`` (and warn about ``compute=ActorPoolStrategy(...)``); from Ray 2.51
  ``concurrency`` is deprecated and ``compute=ActorPoolStrategy(size=n)`` is the spelling.
- **Restarts and retries.** Ray Data's actor pools restart a dead actor and retry its tasks
  by default (``max_restarts=-1``, ``max_task_retries=-1``) in every release of the range;
  passing them as ``**ray_remote_args`` is deprecated (removed in 2.64), so nothing is passed.
- **A new local instance.** ``ray.init(address="local")`` starts one even when a cluster
  started with ``ray start`` runs on this machine (plain ``ray.init()`` would join it).
- **A local instance stays local.** Ray's usage statistics are on by default (its dashboard
  reports to usage-stats.ray.io every hour); skinseg makes no network access unless asked, so
  a run on the instance it starts has ``RAY_USAGE_STATS_ENABLED=0`` unless the user set the
  variable: from ``ray.init`` (the daemons inherit it) to ``ray.shutdown`` (the driver's Ray
  Data then records no usage either, and starts no usage-collection actor: about 2 s of a
  400-image run on 2 cores, ``docs/scale-out.md``). A cluster joined with an address keeps its own setting.
- **Ray's token notice.** Recent releases (2.60) start a new local instance with token
  authentication (the token is made once in ``~/.ray/auth_token``) and log a WARNING saying so
  on every start ("Token authentication is enabled for this Ray cluster ..."). For the
  private instance skinseg starts and stops, that line is dropped; Ray's behaviour is
  unchanged, and its other messages (a disabled token, any other warning) still show.
- **Quiet execution.** Ray Data's progress bars and its INFO lines ("Starting execution
  of ...") are switched off for the run and restored afterwards; skinseg shows its own bar.

The environment variable is removed when the connection ends (:func:`disconnect`).

Ray is imported only here and in :mod:`skinseg.runs.ray_engine`, and only when the Ray
engine runs: the local engine never imports it.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import os
from collections.abc import Iterable, Iterator
from typing import Any

from ..errors import ConfigError

RAY_INSTALL = 'pip install "skinseg-dermoscopy[ray]"'
TESTED = ((2, 40), (3, 0))  # [low, high)
LOCAL_INSTANCE_ENV = {"RAY_USAGE_STATS_ENABLED": "0"}  # from ray.init of a local instance to its shutdown
_held_env: list[str] = []  # the variables of LOCAL_INSTANCE_ENV this process set (removed by disconnect)
TOKEN_NOTICE_LOGGER = "ray._private.authentication.authentication_token_setup"
TOKEN_NOTICE = "Token authentication is enabled for this Ray cluster"


class _DropTokenNotice(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith(TOKEN_NOTICE)


class RayMissingError(ConfigError):
    """The Ray engine was asked for but Ray (with Ray Data) is not installed."""


def ray_installed() -> bool:
    """True if Ray can be imported (checked without importing it)."""
    try:
        return importlib.util.find_spec("ray") is not None
    except ValueError:  # a broken or stubbed module in sys.modules
        return False


def import_ray() -> Any:
    """``ray`` with ``ray.data`` imported, or :class:`RayMissingError` saying how to install it."""
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError as exc:
        raise RayMissingError(f"engine='ray' needs Ray: {RAY_INSTALL}") from exc
    return ray


def version(ray: Any) -> tuple[int, int]:
    """(major, minor) of the Ray release."""
    parts = str(ray.__version__).split(".")
    try:
        return int(parts[0]), int(parts[1])
    except (IndexError, ValueError):  # pragma: no cover - a nightly with an odd version
        return TESTED[0]


def actor_pool(ray: Any, size: int) -> dict[str, Any]:
    """The ``map_batches`` keyword arguments for a fixed pool of ``size`` actors."""
    if version(ray) >= (2, 51):
        return {"compute": ray.data.ActorPoolStrategy(size=size)}
    return {"concurrency": size}


def connect(ray: Any, address: str | None) -> bool:
    """Join the cluster at ``address`` ("auto", "HOST:PORT", "ray://...") or start a local instance.

    Reuses the connection when this process already joined one (then ``address`` is not
    checked). Returns True if this call started or joined Ray (and :func:`disconnect` should
    end it).
    """
    if ray.is_initialized():
        return False
    notice, drop = logging.getLogger(TOKEN_NOTICE_LOGGER), _DropTokenNotice()
    added = {} if address else {k: v for k, v in LOCAL_INSTANCE_ENV.items() if k not in os.environ}
    os.environ.update(added)
    if not address:
        notice.addFilter(drop)
    try:
        ray.init(address=address or "local", include_dashboard=False if not address else None,
                 logging_level=logging.WARNING)
    except BaseException as exc:
        _restore(added)
        if not isinstance(exc, ConnectionError | RuntimeError | SystemExit):
            raise
        # an unreachable address makes Ray call sys.exit
        detail = f"exit status {exc.code}" if isinstance(exc, SystemExit) else " ".join(str(exc).split())
        if address:
            raise ConfigError(
                f"Cannot join the Ray cluster at '{address}' ({type(exc).__name__}: {detail}). Check the address "
                "(`ray status` on the head node), or leave out the address to start a local Ray instance."
            ) from None
        raise ConfigError(f"Cannot start a local Ray instance ({type(exc).__name__}: {detail}).") from None
    finally:
        notice.removeFilter(drop)
    _held_env.extend(added)
    return True


def _restore(keys: Iterable[str]) -> None:
    for key in keys:
        os.environ.pop(key, None)


def disconnect(ray: Any, started: bool) -> None:
    """End what :func:`connect` started (``started``): ``ray.shutdown`` and the variables it set."""
    if started and ray.is_initialized():
        ray.shutdown()
    if started:
        _restore(_held_env)
        _held_env.clear()


def cluster_resources(ray: Any) -> dict[str, float]:
    return {k: float(v) for k, v in ray.cluster_resources().items()}


@contextlib.contextmanager
def quiet_data(ray: Any) -> Iterator[None]:
    """Ray Data without its progress bars and INFO lines, restored afterwards."""
    ctx = ray.data.DataContext.get_current()
    logger = logging.getLogger("ray.data")
    saved = (ctx.enable_progress_bars, logger.level)
    ctx.enable_progress_bars = False
    logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        ctx.enable_progress_bars = saved[0]
        logger.setLevel(saved[1])
