"""Secret references: env:// and local:// (Fernet-encrypted file), errors that never leak."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest
from pydantic import SecretStr

from services.common.errors import FailedPrecondition, InvalidArgument
from services.common.secrets import (
    BACKEND_FACTORIES,
    LocalSecretStore,
    SecretRef,
    SecretResolver,
    parse_ref,
)
from tests.support import make_settings

VALUE = "sk-live-9f8e7d6c5b4a-super-secret"


@pytest.fixture
def resolver(tmp_path: Path) -> SecretResolver:
    return SecretResolver.for_settings(make_settings(tmp_path / "home"))


async def test_local_round_trip_and_at_rest_encryption(tmp_path: Path, resolver: SecretResolver) -> None:
    assert resolver.set("llm/openai-key", VALUE) == "local://llm/openai-key"
    got = await resolver.get("local://llm/openai-key")
    assert isinstance(got, SecretStr) and got.get_secret_value() == VALUE
    assert VALUE not in repr(got) and VALUE not in str(got)

    keys = tmp_path / "home" / "keys"
    stored = (keys / "secrets.json").read_bytes()
    assert VALUE.encode() not in stored and b"super-secret" not in stored
    assert "llm/openai-key" in json.loads(stored)["secrets"]
    assert stat.S_IMODE((keys / "secrets.key").stat().st_mode) == 0o600
    assert stat.S_IMODE((keys / "secrets.json").stat().st_mode) == 0o600
    assert stat.S_IMODE(keys.stat().st_mode) == 0o700

    # Overwrite, a second entry, and a second store object reading the same files (another process).
    resolver.set("llm/openai-key", "rotated")
    resolver.set("other", "x")
    again = LocalSecretStore(keys)
    assert again.get("llm/openai-key") == "rotated" and again.names() == ["llm/openai-key", "other"]
    assert again.delete("other") and not again.delete("other")
    assert again.get("other") is None


async def test_env_reference(resolver: SecretResolver, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MAKOTO_TEST_SECRET", VALUE)
    assert (await resolver.get("env://MAKOTO_TEST_SECRET")).get_secret_value() == VALUE


async def test_unknown_references_name_the_reference_never_a_value(
    resolver: SecretResolver, monkeypatch: pytest.MonkeyPatch
) -> None:
    resolver.set("present", VALUE)
    monkeypatch.setenv("MAKOTO_TEST_SECRET", VALUE)
    cases = {
        "local://absent": "local://absent",
        "env://MAKOTO_TEST_NOT_SET_ANYWHERE": "env://MAKOTO_TEST_NOT_SET_ANYWHERE",
        "vault://team/key": "scheme 'vault'",
        "gcp-sm://project/name": "scheme 'gcp-sm'",
    }
    for ref, named in cases.items():
        with pytest.raises(FailedPrecondition) as caught:
            await resolver.get(ref)
        text = f"{caught.value.message} {caught.value.metadata} {caught.value.to_status()}"
        assert named in caught.value.message
        assert VALUE not in text


async def test_a_pasted_secret_is_not_echoed(resolver: SecretResolver) -> None:
    with pytest.raises(FailedPrecondition) as caught:
        await resolver.get(VALUE)  # someone put the key itself where the reference belongs
    assert VALUE not in str(caught.value.to_status())
    assert caught.value.reason == "SECRET_REF_INVALID"


async def test_tampered_or_foreign_store_is_refused(tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    store = LocalSecretStore(keys)
    store.set("a", "value-a")
    store.set("b", "value-b")
    # A token copied onto another name does not decrypt as that name.
    data = json.loads((keys / "secrets.json").read_text())
    data["secrets"]["b"] = data["secrets"]["a"]
    (keys / "secrets.json").write_text(json.dumps(data))
    with pytest.raises(FailedPrecondition) as caught:
        store.get("b")
    assert "value-a" not in caught.value.message
    # Another store's key cannot read these entries.
    (keys / "secrets.key").unlink()
    LocalSecretStore(tmp_path / "other").set("x", "y")
    (keys / "secrets.key").write_bytes((tmp_path / "other" / "secrets.key").read_bytes())
    with pytest.raises(FailedPrecondition, match="cannot be decrypted"):
        store.get("a")


def test_names_are_checked(tmp_path: Path) -> None:
    store = LocalSecretStore(tmp_path)
    for bad in ("", "../escape", "a/../b", "/abs", "white space"):
        with pytest.raises(InvalidArgument):
            store.set(bad, "v")


def test_refs_parse_and_the_backend_table_is_the_extension_point() -> None:
    assert parse_ref("local://a/b") == SecretRef("local", "a/b")
    arn = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:llm-key"
    assert parse_ref(arn) == SecretRef("aws-sm", arn) and str(parse_ref(arn)) == arn
    assert set(BACKEND_FACTORIES) >= {"env", "local"}


async def test_registered_backend_is_used(resolver: SecretResolver) -> None:
    class Fixed:
        async def get(self, ref: SecretRef) -> SecretStr:
            return SecretStr(f"value-of-{ref.path}")

    resolver.register("vault", Fixed())
    assert (await resolver.get("vault://team/key")).get_secret_value() == "value-of-team/key"
    assert "vault" in resolver.schemes and "value-of" not in repr(resolver)
