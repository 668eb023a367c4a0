"""What only the S3 adapter's tests show. Reads, listing, delete, signing, lifecycle, failures
and the registry are one suite over every cloud object backend (tests/unit/storage_cloud_objects/);
throttling, rejected credentials and a link failure mid-upload are in the fault contract suite
(tests/contract/test_object_store_faults.py)."""

from __future__ import annotations

from tests.contract.emulators import Emulator, moto_server  # noqa: F401
from tests.unit.storage_s3.conftest import s3_store
from tests.unit.storage_s3.helpers import chunked


async def test_moto_checks_no_credentials(moto_server: Emulator) -> None:  # noqa: F811
    """Documents why the fault suite shows rejected credentials with a fake endpoint: moto
    accepts any key."""
    store = s3_store("t-anykey", moto_server.endpoint)
    try:
        await store.provision()
        assert (await store.put("k", chunked(b"x"), content_type="", user_metadata={})).size == 1
    finally:
        await store.close()
