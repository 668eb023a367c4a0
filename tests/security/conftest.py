"""The security tests attack the real mesh, started as `make up` starts it: the e2e `mesh`
session fixture, re-exported for this folder. (pytest registers a fixture per conftest, so a
session that runs tests/e2e and tests/security together starts two meshes; moving `mesh` to
tests/conftest.py would let both folders share one.)"""

from tests.e2e.conftest import mesh  # noqa: F401 - the session fixture, re-exported for this folder
