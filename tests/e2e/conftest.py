"""The e2e fixtures (`mesh`, `envoy_spy`) live in tests/mesh_fixture.py, registered once for the
whole run by tests/conftest.py, so tests/e2e and tests/security share ONE mesh per session.
The names below are re-exported for the test modules that import them from here."""

from tests.mesh_fixture import REPO_ROOT, RunningMesh, _mesh_env

__all__ = ["REPO_ROOT", "RunningMesh", "_mesh_env"]
