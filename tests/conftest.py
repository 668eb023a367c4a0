from __future__ import annotations

from pathlib import Path

import pytest

from services.common.config import MeshSettings
from tests.support import make_settings

# One mesh per session for tests/e2e and tests/security (and the Envoy spy).
pytest_plugins = ["tests.mesh_fixture", "tests.observed_fixture"]


@pytest.fixture
def settings(tmp_path: Path) -> MeshSettings:
    """Fresh settings: temp home, dev signing key, free ports."""
    return make_settings(tmp_path / "home")
