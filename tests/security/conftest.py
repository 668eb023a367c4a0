"""The security tests attack the real mesh started as `make up` starts it: the session `mesh`
fixture from tests/mesh_fixture.py (registered in tests/conftest.py, shared with tests/e2e)."""
