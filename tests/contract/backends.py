"""The backends the contract suites run against (tests/contract/test_*_contract.py).

There is ONE object-store suite and ONE item-store suite; every backend listed here runs all
of it. A backend that lacks a feature says so through its capabilities (the suites follow
them, e.g. sign_url); a backend never gets its own copy of a test.

How to add a backend
--------------------
1. Write a module tests/contract/backends_<name>.py with one factory fixture (any scope; use
   "session" when it starts an emulator, so the emulator starts once). The fixture yields an
   async callable that returns a FRESH, EMPTY, ready store each time it is called (a new
   bucket/container/table/schema, or a new tenant id), e.g.

       @pytest.fixture(scope="session")
       async def s3_object_store_factory(moto_server) -> AsyncIterator[ObjectStoreFactory]:
           made = []
           async def make() -> ObjectStore:
               store = await build_s3_store(moto_server.endpoint, bucket=f"ct-{uuid4().hex[:12]}")
               await store.provision()
               made.append(store)
               return store
           yield make
           ...  # deprovision what `made` holds; stop what you started

   The suite closes each store after its test (await store.close()); anything else (deleting
   buckets, stopping the emulator) is the fixture's own teardown. Helper fixtures the factory
   needs (e.g. the emulator) may live in the same module or be imported into it: the module is
   registered as a pytest plugin, so all its fixtures are visible.
2. Add one line below: Backend("<name>", "tests.contract.backends_<name>", "<fixture name>")
   to OBJECT_BACKENDS or ITEM_BACKENDS. The name becomes the test id: `pytest -k "[s3]"`.
3. Known emulator gaps: add ("<name>", "<test function name>"): "<emulator>: <why>" to
   EMULATOR_GAPS. That test is then marked `emulator_gap` and expected to fail
   (xfail strict=True): if the emulator gets fixed, the test passes and the run fails, so
   the entry is removed. The adapter itself must still do the right thing against the real
   service; the reason must name the emulator, e.g.
       ("cosmos", "test_transaction_is_atomic"):
           "@vercel/cosmosdb-server: transactional batch is not atomic",
   Never use a gap for something the adapter could do but does not.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from aiohttp import web

from services.storage.ports import ItemStore, ObjectStore

ObjectStoreFactory = Callable[[], Awaitable[ObjectStore]]
ItemStoreFactory = Callable[[], Awaitable[ItemStore]]


@dataclass(frozen=True)
class FaultRig:
    """What the object fault suite (test_object_store_faults.py) needs from a network backend.

    Every store it builds is for a fresh tenant, with max_attempts 2 and a part size small
    enough that a few MiB go through the multipart path."""

    upstream: str  # the emulator's base URL, http://127.0.0.1:<port>
    # A provisioned store whose requests go to http://127.0.0.1:<port> (a proxy in front of
    # upstream); the second argument: with credentials the backend rejects.
    store_via: Callable[[int, bool], Awaitable[ObjectStore]]
    throttled: Callable[[], web.Response]  # what the backend answers when throttling (Retry-After: 1)
    # What the backend answers to rejected credentials, when its emulator checks none (moto):
    # the suite then serves it through the HTTP fault proxy; None: the emulator checks them.
    rejected: Callable[[], web.Response] | None
    secrets: tuple[str, ...]  # credential values no error message may contain


@dataclass(frozen=True)
class Backend:
    name: str  # test id
    module: str  # module holding the factory fixture (registered as a pytest plugin)
    fixture: str  # the factory fixture's name


OBJECT_BACKENDS: list[Backend] = [
    Backend("local", "tests.contract.backends_local", "local_object_store_factory"),
    Backend("s3", "tests.contract.backends_s3", "s3_object_store_factory"),
    Backend("azure_blob", "tests.contract.backends_azure_blob", "azure_blob_object_store_factory"),
]

# Network object backends for the fault suite; the fixture yields a FaultRig. The local backend
# has no network between the service and its files: its failed and cancelled uploads are in the
# object contract suite.
OBJECT_FAULT_BACKENDS: list[Backend] = [
    Backend("s3", "tests.contract.backends_s3", "s3_fault_rig"),
    Backend("azure_blob", "tests.contract.backends_azure_blob", "azure_blob_fault_rig"),
]

ITEM_BACKENDS: list[Backend] = [
    Backend("sqlite", "tests.contract.backends_local", "sqlite_item_store_factory"),
    Backend("dynamodb", "tests.contract.backends_dynamodb", "dynamodb_item_store_factory"),
    Backend("cosmos", "tests.contract.backends_cosmos", "cosmos_item_store_factory"),
    Backend("postgres", "tests.contract.backends_postgres", "postgres_item_store_factory"),
]

# (backend name, test function name) -> reason, naming the emulator.
_COSMOS_READ_MISSING = (
    "@vercel/cosmosdb-server: reading a missing item answers 500 instead of 404 "
    "(the adapter maps the real service's 404 to NOT_FOUND)"
)
_COSMOS_BATCH_CREATE_ONLY = (
    "@vercel/cosmosdb-server: transactional batch only supports create operations (replace, "
    "delete and read fail to parse the partition key) and is not atomic"
)
EMULATOR_GAPS: dict[tuple[str, str], str] = {
    ("cosmos", "test_put_get_delete"): _COSMOS_READ_MISSING,
    ("cosmos", "test_etag_conditions"): _COSMOS_READ_MISSING,
    ("cosmos", "test_batch_write"): _COSMOS_READ_MISSING,
    ("cosmos", "test_transaction_is_atomic"): _COSMOS_READ_MISSING,
    ("cosmos", "test_transaction_refuses_duplicate_keys"): _COSMOS_READ_MISSING,
    ("cosmos", "test_transaction_applies_all"): _COSMOS_BATCH_CREATE_ONLY,
    ("cosmos", "test_transaction_delete_of_missing_item_is_a_no_op"): _COSMOS_READ_MISSING,
}


def gap(backend: str, test_name: str) -> str | None:
    """Why this test cannot pass on this backend's emulator, or None."""
    return EMULATOR_GAPS.get((backend, test_name))
