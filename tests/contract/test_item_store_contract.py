"""The item-store contract: every ItemStore adapter (backends.py) must pass all of it."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from services.common.errors import Aborted, AlreadyExists, FailedPrecondition, InvalidArgument, NotFound
from services.storage.ports import (
    AttrValue,
    ConditionCheckOp,
    DeleteOp,
    ItemKey,
    ItemQuery,
    ItemScanner,
    ItemStore,
    PutOp,
    SortKeyCondition,
    StoredItem,
)

C = "things"


def k(sort_key: str, partition: str = "p1", collection: str = C) -> ItemKey:
    return ItemKey(collection, partition, sort_key)


def same(a: Any, b: Any) -> bool:
    """Equal in value AND type, recursively: 1 is not 1.0 is not True, -0.0 is not 0.0,
    Decimal("1.50") is not Decimal("1.5")."""
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        return a == b and math.copysign(1.0, a) == math.copysign(1.0, b)
    if isinstance(a, Decimal):
        return a.as_tuple() == b.as_tuple()
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[key], b[key]) for key in a)
    return bool(a == b)


async def query_all(store: ItemStore, query: ItemQuery) -> tuple[list[str], int]:
    """Every sort key across all pages, and the number of pages."""
    keys: list[str] = []
    token = query.page_token
    pages = 0
    while True:
        page = await store.query(
            ItemQuery(
                query.collection,
                query.partition_key,
                query.condition,
                query.descending,
                query.page_size,
                token,
            )
        )
        pages += 1
        assert len(page.items) <= query.page_size
        keys += [i.key.sort_key for i in page.items]
        token = page.next_page_token
        if not token:
            return keys, pages
        assert pages < 200


# -- single items --------------------------------------------------------------------------


async def test_put_get_delete(item_store: ItemStore) -> None:
    attrs: dict[str, AttrValue] = {"name": "Ada", "age": 36, "score": 9.5, "tags": ["x", "y"]}
    stored = await item_store.put(k("s1"), attrs)
    assert stored.key == k("s1")
    assert same(stored.attributes, attrs)
    assert stored.etag
    assert stored.created <= stored.updated
    assert abs(stored.updated - datetime.now(UTC)) < timedelta(minutes=5)

    got = await item_store.get(k("s1"))
    assert got.key == k("s1")
    assert same(got.attributes, attrs)
    assert got.etag == stored.etag

    await item_store.delete(k("s1"))
    with pytest.raises(NotFound):
        await item_store.get(k("s1"))
    with pytest.raises(NotFound):
        await item_store.delete(k("s1"))


async def test_overwrite_changes_etag_keeps_create_time(item_store: ItemStore) -> None:
    first = await item_store.put(k("s"), {"v": 1})
    second = await item_store.put(k("s"), {"w": "two"})
    assert second.etag != first.etag
    assert abs(second.created - first.created) < timedelta(milliseconds=1)
    assert second.updated >= first.updated
    got = await item_store.get(k("s"))
    assert same(got.attributes, {"w": "two"})  # a put replaces, it does not merge


async def test_keys_are_independent(item_store: ItemStore) -> None:
    await item_store.put(ItemKey("a", "p", "s"), {"v": "a"})
    await item_store.put(ItemKey("b", "p", "s"), {"v": "b"})
    await item_store.put(ItemKey("a", "q", "s"), {"v": "q"})
    await item_store.put(ItemKey("a", "p", "t"), {"v": "t"})
    assert (await item_store.get(ItemKey("a", "p", "s"))).attributes == {"v": "a"}
    assert (await item_store.get(ItemKey("b", "p", "s"))).attributes == {"v": "b"}
    assert (await item_store.get(ItemKey("a", "q", "s"))).attributes == {"v": "q"}
    await item_store.delete(ItemKey("a", "p", "s"))
    assert (await item_store.get(ItemKey("b", "p", "s"))).attributes == {"v": "b"}


async def test_unicode_and_awkward_keys(item_store: ItemStore) -> None:
    keys = [
        ItemKey(C, "tenant/with/slashes", "a b c"),
        ItemKey(C, "é😀", "שלום/مرحبا"),
        ItemKey(C, "p#1|x", "s#2|y"),
        ItemKey(C, "'quote\"", "%2e%2e/.."),
        ItemKey(C, "x" * 1000, "y" * 1000),
    ]
    for i, key in enumerate(keys):
        await item_store.put(key, {"i": i})
    for i, key in enumerate(keys):
        got = await item_store.get(key)
        assert got.key == key
        assert same(got.attributes, {"i": i})


async def test_must_not_exist(item_store: ItemStore) -> None:
    first = await item_store.put(k("once"), {"v": 1}, must_not_exist=True)
    with pytest.raises(AlreadyExists):
        await item_store.put(k("once"), {"v": 2}, must_not_exist=True)
    got = await item_store.get(k("once"))
    assert same(got.attributes, {"v": 1}) and got.etag == first.etag


async def test_etag_conditions(item_store: ItemStore) -> None:
    e1 = (await item_store.put(k("e"), {"v": 1})).etag
    e2 = (await item_store.put(k("e"), {"v": 2}, expected_etag=e1)).etag
    assert e2 != e1
    with pytest.raises(Aborted):
        await item_store.put(k("e"), {"v": 3}, expected_etag=e1)
    with pytest.raises(Aborted):
        await item_store.put(k("missing"), {"v": 3}, expected_etag=e1)
    with pytest.raises(NotFound):
        await item_store.get(k("missing"))
    with pytest.raises(Aborted):
        await item_store.delete(k("e"), expected_etag=e1)
    assert same((await item_store.get(k("e"))).attributes, {"v": 2})
    await item_store.delete(k("e"), expected_etag=e2)
    with pytest.raises(NotFound):
        await item_store.get(k("e"))


# -- queries -------------------------------------------------------------------------------

SORT_KEYS = ["a", "a/1", "a/2", "ab", "b", "b/1", "c", "ca", "d"]


async def _seed_query(store: ItemStore) -> None:
    for sk in SORT_KEYS:
        await store.put(k(sk), {"sk": sk})
    # neighbours that must never leak into p1's results
    await store.put(k("a", partition="p2"), {"sk": "other partition"})
    await store.put(k("a", partition="p10"), {"sk": "prefix-sharing partition"})
    await store.put(k("a", collection="Other"), {"sk": "other collection"})


@pytest.mark.parametrize(
    ("condition", "expected"),
    [
        (None, SORT_KEYS),
        (SortKeyCondition("eq", value="ab"), ["ab"]),
        (SortKeyCondition("eq", value="zz"), []),
        (SortKeyCondition("prefix", value="a"), ["a", "a/1", "a/2", "ab"]),
        (SortKeyCondition("prefix", value="a/"), ["a/1", "a/2"]),
        (SortKeyCondition("prefix", value="q"), []),
        (SortKeyCondition("range", start="ab", end="c"), ["ab", "b", "b/1", "c"]),
        (SortKeyCondition("range", start="b"), ["b", "b/1", "c", "ca", "d"]),
        (SortKeyCondition("range", end="a/2"), ["a", "a/1", "a/2"]),
        (SortKeyCondition("range", start="a/15", end="b/0"), ["a/2", "ab", "b"]),
    ],
    ids=lambda v: repr(v) if not isinstance(v, list) else "",
)
async def test_query_conditions(
    item_store: ItemStore, condition: SortKeyCondition | None, expected: list[str]
) -> None:
    await _seed_query(item_store)
    asc = await item_store.query(ItemQuery(C, "p1", condition, page_size=100))
    assert [i.key.sort_key for i in asc.items] == expected
    assert asc.next_page_token == ""
    for item in asc.items:
        assert item.key.partition_key == "p1" and item.key.collection == C
        assert same(item.attributes, {"sk": item.key.sort_key})
    desc = await item_store.query(ItemQuery(C, "p1", condition, descending=True, page_size=100))
    assert [i.key.sort_key for i in desc.items] == list(reversed(expected))


async def test_query_pagination_across_pages(item_store: ItemStore) -> None:
    sort_keys = [f"item#{i:03d}" for i in range(23)] + ["other#1"]
    for sk in sort_keys:
        await item_store.put(k(sk), {"n": sk})
    everything, pages = await query_all(item_store, ItemQuery(C, "p1", page_size=5))
    assert everything == sorted(sort_keys) and pages == 5
    backwards, _ = await query_all(item_store, ItemQuery(C, "p1", descending=True, page_size=5))
    assert backwards == sorted(sort_keys, reverse=True)
    prefixed, pages = await query_all(
        item_store, ItemQuery(C, "p1", SortKeyCondition("prefix", value="item#"), page_size=4)
    )
    assert prefixed == [f"item#{i:03d}" for i in range(23)] and pages == 6
    ranged, _ = await query_all(
        item_store,
        ItemQuery(C, "p1", SortKeyCondition("range", start="item#005", end="item#014"), True, 3),
    )
    assert ranged == [f"item#{i:03d}" for i in range(14, 4, -1)]
    # an exact multiple of the page size: the last full page carries no token
    exact, pages = await query_all(
        item_store, ItemQuery(C, "p1", SortKeyCondition("range", start="item#000", end="item#009"), False, 5)
    )
    assert exact == [f"item#{i:03d}" for i in range(10)] and pages == 2


async def test_query_pages_are_stable_under_writes(item_store: ItemStore) -> None:
    for i in range(0, 20, 2):
        await item_store.put(k(f"s{i:02d}"), {})
    first = await item_store.query(ItemQuery(C, "p1", page_size=3))
    assert [i.key.sort_key for i in first.items] == ["s00", "s02", "s04"]
    await item_store.put(k("s01"), {})  # before the cursor: not revisited
    await item_store.put(k("s99"), {})  # after it: seen
    await item_store.delete(k("s10"))  # ahead of it: gone
    rest, _ = await query_all(item_store, ItemQuery(C, "p1", page_size=3, page_token=first.next_page_token))
    assert rest == ["s06", "s08", "s12", "s14", "s16", "s18", "s99"]


async def test_page_token_from_another_query_is_refused(item_store: ItemStore) -> None:
    for i in range(5):
        await item_store.put(k(f"s{i}"), {})
        await item_store.put(k(f"s{i}", partition="p2"), {})
    page = await item_store.query(ItemQuery(C, "p1", page_size=2))
    with pytest.raises(InvalidArgument):
        await item_store.query(ItemQuery(C, "p2", page_size=2, page_token=page.next_page_token))
    with pytest.raises(InvalidArgument):
        await item_store.query(ItemQuery(C, "p1", page_size=2, page_token="not-a-token"))


async def test_sort_keys_order_bytewise(item_store: ItemStore) -> None:
    # UTF-8 byte order: "B" < "a" < "é"; U+FF5E (3 bytes) < U+1F600 (4 bytes) although UTF-16
    # would put the emoji's surrogates first; control characters sort before everything.
    sort_keys = ["a", "B", "é", "Z", "aa", "a\x01", "\uff5e", "\U0001f600", "0", "~", "a\u0301", "\u00e1"]
    for sk in sort_keys:
        await item_store.put(k(sk), {})
    expected = sorted(sort_keys, key=lambda s: s.encode("utf-8"))
    keys, _ = await query_all(item_store, ItemQuery(C, "p1", page_size=5))
    assert keys == expected
    keys, _ = await query_all(item_store, ItemQuery(C, "p1", descending=True, page_size=5))
    assert keys == list(reversed(expected))
    ranged = await item_store.query(ItemQuery(C, "p1", SortKeyCondition("range", start="B", end="é")))
    assert [i.key.sort_key for i in ranged.items] == [
        s for s in expected if b"B" <= s.encode() <= "é".encode()
    ]


# -- batches -------------------------------------------------------------------------------


async def test_batch_get(item_store: ItemStore) -> None:
    for sk in ("x", "y", "z"):
        await item_store.put(k(sk), {"sk": sk})
    asked = [k("z"), k("nope"), k("x"), ItemKey("Other", "p1", "y"), k("y")]
    found = await item_store.batch_get(asked)
    assert [i.key for i in found] == [k("z"), k("x"), k("y")]
    for item in found:
        assert same(item.attributes, {"sk": item.key.sort_key})
    assert await item_store.batch_get([k("nope")]) == []


async def test_batch_write(item_store: ItemStore) -> None:
    await item_store.put(k("old"), {"v": "old"})
    stored = await item_store.batch_write(
        [
            PutOp(k("n1"), {"v": 1}),
            DeleteOp(k("old")),
            PutOp(k("n2"), {"v": Decimal("2.50")}),
            DeleteOp(k("never-existed")),
            PutOp(k("n3", partition="p2"), {"v": None}),
        ]
    )
    assert [i.key for i in stored] == [k("n1"), k("n2"), k("n3", partition="p2")]
    assert all(i.etag for i in stored)
    assert same((await item_store.get(k("n2"))).attributes, {"v": Decimal("2.50")})
    assert same((await item_store.get(k("n3", partition="p2"))).attributes, {"v": None})
    with pytest.raises(NotFound):
        await item_store.get(k("old"))
    many = await item_store.batch_write([PutOp(k(f"m{i:03d}"), {"i": i}) for i in range(100)])
    assert len(many) == 100
    keys, _ = await query_all(
        item_store, ItemQuery(C, "p1", SortKeyCondition("prefix", value="m"), page_size=100)
    )
    assert keys == [f"m{i:03d}" for i in range(100)]


# -- transactions --------------------------------------------------------------------------


async def test_transaction_applies_all(item_store: ItemStore) -> None:
    keep = await item_store.put(k("keep"), {"v": "keep"})
    gone = await item_store.put(k("gone"), {"v": "gone"})
    upd = await item_store.put(k("upd"), {"v": 1})
    stored = await item_store.transact_write(
        [
            PutOp(k("new"), {"v": "new"}, must_not_exist=True),
            DeleteOp(k("gone"), expected_etag=gone.etag),
            ConditionCheckOp(k("keep"), expected_etag=keep.etag),
            PutOp(k("upd"), {"v": 2}, expected_etag=upd.etag),
            ConditionCheckOp(k("absent"), must_not_exist=True),
        ]
    )
    assert [i.key for i in stored] == [k("new"), k("upd")]
    assert same((await item_store.get(k("new"))).attributes, {"v": "new"})
    assert same((await item_store.get(k("upd"))).attributes, {"v": 2})
    with pytest.raises(NotFound):
        await item_store.get(k("gone"))
    assert (await item_store.get(k("keep"))).etag == keep.etag


@pytest.mark.parametrize("failing", ["exists", "etag", "check_missing", "check_etag", "delete_etag"])
async def test_transaction_is_atomic(item_store: ItemStore, failing: str) -> None:
    existing = await item_store.put(k("existing"), {"v": "existing"})
    victim = await item_store.put(k("victim"), {"v": "victim"})
    bad = {
        "exists": PutOp(k("existing"), {"v": "overwritten"}, must_not_exist=True),
        "etag": PutOp(k("existing"), {"v": "overwritten"}, expected_etag="0" * 32),
        "check_missing": ConditionCheckOp(k("not-there")),
        "check_etag": ConditionCheckOp(k("existing"), expected_etag="0" * 32),
        "delete_etag": DeleteOp(k("existing"), expected_etag="0" * 32),
    }[failing]
    ops = [
        PutOp(k("fresh"), {"v": "fresh"}),
        DeleteOp(k("victim"), expected_etag=victim.etag),
        bad,
        PutOp(k("fresh2"), {"v": "fresh2"}),
    ]
    with pytest.raises(Aborted) as caught:
        await item_store.transact_write(ops)
    assert caught.value.metadata.get("operation_index") == "2"
    # nothing was written
    for missing in ("fresh", "fresh2"):
        with pytest.raises(NotFound):
            await item_store.get(k(missing))
    assert (await item_store.get(k("victim"))).etag == victim.etag
    got = await item_store.get(k("existing"))
    assert got.etag == existing.etag and same(got.attributes, {"v": "existing"})


async def test_transaction_delete_of_missing_item_is_a_no_op(item_store: ItemStore) -> None:
    stored = await item_store.transact_write([DeleteOp(k("never-there")), PutOp(k("written"), {"v": 1})])
    assert [i.key for i in stored] == [k("written")]
    assert same((await item_store.get(k("written"))).attributes, {"v": 1})
    with pytest.raises(NotFound):
        await item_store.get(k("never-there"))


async def test_transaction_refuses_duplicate_keys(item_store: ItemStore) -> None:
    with pytest.raises(InvalidArgument):
        await item_store.transact_write([PutOp(k("d"), {"v": 1}), DeleteOp(k("d"))])
    with pytest.raises(NotFound):
        await item_store.get(k("d"))


async def test_transaction_across_partitions_follows_capability(item_store: ItemStore) -> None:
    ops = [PutOp(k("x", partition="pa"), {"v": 1}), PutOp(k("x", partition="pb"), {"v": 2})]
    if not item_store.capabilities.cross_partition_transactions:
        # A backend that cannot (Cosmos DB) refuses with FAILED_PRECONDITION and writes nothing.
        with pytest.raises(FailedPrecondition):
            await item_store.transact_write(ops)
        page = await item_store.query(
            ItemQuery(collection=k("x", partition="pa").collection, partition_key="pa")
        )
        assert list(page.items) == []
        return
    stored = await item_store.transact_write(ops)
    assert [i.key for i in stored] == [k("x", partition="pa"), k("x", partition="pb")]


# -- attribute values ----------------------------------------------------------------------

ROUND_TRIP: list[tuple[str, AttrValue]] = [
    ("int64_max", 2**63 - 1),
    ("int64_min", -(2**63)),
    ("int_2p53_plus_1", 2**53 + 1),
    ("int_zero", 0),
    ("int_negative", -42),
    ("decimal_long", Decimal("12345678901234567890.123456789")),
    ("decimal_trailing_zero", Decimal("1.50")),
    ("decimal_integral", Decimal("10")),
    ("decimal_small", Decimal("0.0000001")),
    ("decimal_negative_zero_fraction", Decimal("-0.00")),
    ("decimal_38_digits", Decimal("12345678901234567890123456789012345678")),
    ("float_0_1", 0.1),
    ("float_negative_zero", -0.0),
    ("float_1e300", 1e300),
    ("float_subnormal", 5e-324),
    ("float_integral", 1.0),
    ("float_big_integral", 2.0**60),
    ("float_negative", -2.5),
    ("true", True),
    ("false", False),
    ("null", None),
    ("empty_string", ""),
    ("string", "plain"),
    ("string_emoji", "😀👨‍👩‍👧🏳️‍🌈"),
    ("string_controls", "\x01\x02\x1f\t\n\r\x7f"),
    ("string_rtl", "שלום עולם مرحبا بالعالم"),
    ("string_combining", "e\u0301 \u00e9 \ufeff \u2028\u2029"),
    ("string_like_tag", '{"i": "1"}'),
    ("string_number_like", "12345678901234567890"),
    ("string_null_word", "null"),
    ("string_long", "ü" * 50_000),
    ("empty_map", {}),
    ("empty_list", []),
    ("list_of_empties", [{}, [], "", None]),
    ("map_with_tag_keys", {"i": "1", "m": {}, "d": "x", "f": 1.5, "n": None, "z": True}),
    ("map_unicode_keys", {"é": 1, "😀": 2, "a b": 3, "$x.y": 4}),
    ("mixed_list", [1, 1.0, Decimal("1"), True, "1", None]),
    ("nested", {"a": {"b": [1, 2.5, "x", None, True, {"c": Decimal("1.0"), "d": [[], [[{}]]]}]}}),
    ("long_list", list(range(500))),
]


@pytest.mark.parametrize(("name", "value"), ROUND_TRIP, ids=[n for n, _ in ROUND_TRIP])
async def test_attribute_values_round_trip(item_store: ItemStore, name: str, value: AttrValue) -> None:
    attrs: dict[str, AttrValue] = {"v": value, "tag": name}
    stored = await item_store.put(k(name), attrs)
    assert same(stored.attributes, attrs), stored.attributes
    got = await item_store.get(k(name))
    assert same(got.attributes["v"], value), f"{got.attributes['v']!r} != {value!r}"
    queried = await item_store.query(ItemQuery(C, "p1", SortKeyCondition("eq", value=name)))
    assert same(queried.items[0].attributes, attrs)
    batch = await item_store.batch_get([k(name)])
    assert same(batch[0].attributes, attrs)
    written = await item_store.transact_write([PutOp(k(name + "-tx"), attrs)])
    assert same(written[0].attributes, attrs)
    assert same((await item_store.get(k(name + "-tx"))).attributes, attrs)


async def test_all_values_in_one_item(item_store: ItemStore) -> None:
    attrs: dict[str, AttrValue] = {name: value for name, value in ROUND_TRIP}
    await item_store.put(k("all"), attrs)
    got: StoredItem = await item_store.get(k("all"))
    assert set(got.attributes) == set(attrs)
    for name, value in attrs.items():
        assert same(got.attributes[name], value), name


async def test_scan_returns_every_item_once(item_store: ItemStore) -> None:
    """The offboarding export reads a whole store with scan(): every item of every collection
    and partition exactly once, attributes intact, across pages."""
    assert isinstance(item_store, ItemScanner)
    written = {
        k(f"s{i:03d}", partition=f"p{i % 3}", collection="scan-a" if i % 2 else "scan-b"): {
            "i": i,
            "d": Decimal("2.50"),
        }
        for i in range(25)
    }
    for key, attrs in written.items():
        await item_store.put(key, attrs)
    found = [item async for item in item_store.scan(page_size=4)]
    mine = [item for item in found if item.key.collection in ("scan-a", "scan-b")]
    assert len(mine) == len({item.key for item in mine}) == len(written)
    for item in mine:
        assert same(item.attributes, written[item.key])
