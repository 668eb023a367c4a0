"""names.py: stored blob names whose UTF-16 order (Azure's listing order) is UTF-8 byte order."""

from __future__ import annotations

import random

from services.storage.adapters.azure_blob.names import ESCAPE, from_blob_name, to_blob_name
from tests.unit.storage_blob.conftest import MakeStore
from tests.unit.storage_s3.helpers import chunked

# Characters around every boundary that matters: ASCII, below/at the escape, the surrogate gap,
# private use, fullwidth forms, the last BMP characters, and beyond the BMP.
ALPHABET = [
    "0",
    "a",
    "\u00e9",
    "\ud7fb",
    ESCAPE,
    "\ue000",
    "\uf8ff",
    "\uff01",
    "\uff5e",
    "\ufffd",
    "\U00010000",
    "\U0001f600",
    "\U0010fffd",
    "/",
]


def utf16(s: str) -> bytes:
    return s.encode("utf-16-be")


def test_ordinary_keys_keep_their_names() -> None:
    for key in ("a/b c.txt", "\u65e5\u672c/\ud55c\uad6d\uc5b4", "emoji/\U0001f600\u200d", "x" * 1000):
        assert to_blob_name(key) == key


def test_mapping_turns_utf16_order_into_byte_order_and_round_trips() -> None:
    rnd = random.Random(5)
    keys = {"".join(rnd.choice(ALPHABET) for _ in range(rnd.randint(1, 5))) for _ in range(3000)}
    by_bytes = sorted(keys, key=lambda k: k.encode())
    assert sorted(keys, key=utf16) != by_bytes  # the raw names would list in the wrong order
    assert sorted(keys, key=lambda k: utf16(to_blob_name(k))) == by_bytes
    for key in keys:
        assert from_blob_name(to_blob_name(key)) == key
        for cut in range(len(key) + 1):  # prefix-free: prefix listing on stored names is exact
            prefix = key[:cut]
            assert to_blob_name(key).startswith(to_blob_name(prefix))
    for a in list(keys)[:200]:
        for b in list(keys)[:200]:
            assert to_blob_name(b).startswith(to_blob_name(a)) == b.startswith(a)


async def test_fullwidth_keys_list_in_byte_order_on_azurite(make_store: MakeStore) -> None:
    store = await make_store()
    keys = ["\uff08memo\uff09.txt", "\U0001f600.txt", "\ue000", "z", ESCAPE + "x"]
    for key in keys:
        await store.put(key, chunked(key.encode()), content_type="", user_metadata={})
    listed = [o.key for o in (await store.list("", 100, "")).objects]
    assert listed == sorted(keys, key=lambda k: k.encode())
    stored = [b.name async for b in store.container.list_blobs()]
    assert "\U0001f600.txt" in stored and ESCAPE + "\uff08memo" + ESCAPE + "\uff09.txt" in stored
    info, stream = await store.get("\uff08memo\uff09.txt")
    assert info.key == "\uff08memo\uff09.txt" and b"".join([c async for c in stream]) == keys[0].encode()
    assert [o.key for o in (await store.list("\uff08", 100, "")).objects] == ["\uff08memo\uff09.txt"]
