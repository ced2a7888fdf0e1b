"""Fixtures of the folder-run tests shared by several modules."""

from __future__ import annotations

import pytest

NO_RAY = "Ray is not installed: pip install 'skinseg-dermoscopy[ray]' (the test extra has it)"


@pytest.fixture(scope="session")
def ray_local():
    """One local Ray instance for the session (2 CPUs, as on the CI machine).

    ``address="local"`` starts a new instance even when a cluster started with ``ray start``
    runs on this machine or ``RAY_ADDRESS`` is set: plain ``ray.init(num_cpus=2)`` would try to
    join it and fail ("num_cpus ... must not be provided").
    """
    ray = pytest.importorskip("ray", reason=NO_RAY)
    if not ray.is_initialized():
        ray.init(address="local", num_cpus=2, include_dashboard=False, logging_level="WARNING",
                 log_to_driver=False)
    yield ray
    ray.shutdown()
