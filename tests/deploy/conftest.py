"""Fixtures of the deployment tests: ``cluster`` (nginx in front of two nodes)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.deploy.cluster import Cluster, running_cluster
from tests.harness import Templates


@pytest.fixture
def node_settings() -> dict[str, str]:
    """Extra DIENHONG_* values of both nodes; a test module overrides this fixture."""
    return {}


@pytest.fixture
async def cluster(
    templates: Templates, tmp_path: Path, node_settings: dict[str, str]
) -> AsyncIterator[Cluster]:
    async with running_cluster(templates, tmp_path, node_settings) as running:
        yield running
