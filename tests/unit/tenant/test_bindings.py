"""Binding validation: per-backend required fields and secret-reference schemes, answered as
INVALID_ARGUMENT with BadRequest field violations (over the API and as a module)."""

from __future__ import annotations

import grpc
import pytest
from google.protobuf import field_mask_pb2
from makoto.tenant.v1 import tenant_pb2

from services.tenant import bindings
from tests.unit.tenant.conftest import TenantClient, field_violations, rpc_error

B = tenant_pb2


def _violations(b: tenant_pb2.TenantBindings) -> set[str]:
    return {f for f, _ in bindings.violations(b, "tenant.bindings")}


async def test_create_reports_every_bad_binding_field(client: TenantClient) -> None:
    # Contract rules (protovalidate, in the .proto) answer first, before any backend rule runs.
    contract_bad = B.TenantBindings(
        object_store=B.ObjectStoreBinding(backend=B.OBJECT_BACKEND_S3, bucket="b"),
        item_store=B.ItemStoreBinding(backend=B.ITEM_BACKEND_UNSPECIFIED),
        llm=B.LlmBinding(provider=B.LLM_PROVIDER_AZURE_OPENAI, api_key_secret_ref="plaintext-key"),
    )
    err = await rpc_error(client.create("badbind", bindings=contract_bad))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    violations = field_violations(err)
    assert set(violations) == {"tenant.bindings.item_store.backend", "tenant.bindings.llm.api_key_secret_ref"}
    # the refused value itself is not echoed back (it might be a pasted secret)
    assert "plaintext-key" not in (err.details() or "") + "".join(violations.values())

    # Then every backend's own rules (services/common/bindings, the adapters' code), all at once.
    backend_bad = B.TenantBindings(
        object_store=B.ObjectStoreBinding(backend=B.OBJECT_BACKEND_S3, bucket="b"),
        item_store=B.ItemStoreBinding(backend=B.ITEM_BACKEND_POSTGRES),
        llm=B.LlmBinding(provider=B.LLM_PROVIDER_AZURE_OPENAI),
    )
    err = await rpc_error(client.create("badbind", bindings=backend_bad))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    violations = field_violations(err)
    assert set(violations) == {
        "tenant.bindings.object_store.bucket",
        "tenant.bindings.item_store.endpoint",
        "tenant.bindings.llm.endpoint",
        "tenant.bindings.llm.api_version",
    }
    assert "S3" in violations["tenant.bindings.object_store.bucket"]
    # nothing was created or provisioned
    assert (await rpc_error(client.get("badbind"))).code() == grpc.StatusCode.NOT_FOUND
    assert not (client.settings.data_dir / "tenants" / "badbind").exists()


async def test_update_validates_the_new_bindings(client: TenantClient) -> None:
    before = await client.create("rebind-bad")
    err = await rpc_error(
        client.tenants.UpdateTenant(
            B.UpdateTenantRequest(
                tenant=B.Tenant(
                    tenant_id="rebind-bad",
                    bindings=B.TenantBindings(item_store=B.ItemStoreBinding(backend=B.ITEM_BACKEND_COSMOS)),
                ),
                update_mask=field_mask_pb2.FieldMask(paths=["bindings.item_store"]),
            ),
            metadata=client.admin,
        )
    )
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert field_violations(err) == {
        "tenant.bindings.item_store.endpoint": "COSMOS needs the account URL as endpoint"
    }
    assert await client.get("rebind-bad") == before


async def test_valid_cloud_bindings_are_stored_as_given(client: TenantClient) -> None:
    given = B.TenantBindings(
        object_store=B.ObjectStoreBinding(
            backend=B.OBJECT_BACKEND_AZURE_BLOB,
            endpoint="https://acme.blob.core.windows.net",
            bucket="acme",
            credentials_secret_ref="azure-kv://acme-vault/cloudy-blob-key",
            options={"part_size_bytes": "4194304"},
        ),
        item_store=B.ItemStoreBinding(
            backend=B.ITEM_BACKEND_POSTGRES,
            # PostgreSQL on loopback: the tests' dev egress allow-list names localhost.
            endpoint="postgresql://app@localhost:5432/acme",
            database="acme",
            credentials_secret_ref="arn:aws:secretsmanager:ap-northeast-1:123456789012:secret:makoto/cloudy/db-AbC",
        ),
        llm=B.LlmBinding(
            provider=B.LLM_PROVIDER_ANTHROPIC,
            chat_model="claude-sonnet",
            api_key_secret_ref="aws-sm://makoto/cloudy/anthropic",
            rpm_limit=60,
            tpm_limit=100000,
        ),
    )
    created = await client.create("cloudy", bindings=given, cloud_provider=B.CLOUD_PROVIDER_AZURE)
    assert created.bindings == given
    assert created.state == B.TENANT_STATE_ACTIVE
    root = client.settings.data_dir / "tenants" / "cloudy"
    # nothing local to provision for cloud bindings
    assert not (root / "objects").exists() and not (root / "items.sqlite3").exists()


def test_defaults_fill_only_absent_bindings() -> None:
    partial = B.TenantBindings(llm=B.LlmBinding(provider=B.LLM_PROVIDER_ANTHROPIC))
    filled = bindings.with_defaults(partial)
    assert filled.llm == partial.llm
    assert filled.object_store.backend == B.OBJECT_BACKEND_LOCAL
    assert filled.item_store.backend == B.ITEM_BACKEND_SQLITE
    assert bindings.with_defaults(None) == bindings.default_bindings()
    assert _violations(bindings.default_bindings()) == set()


@pytest.mark.parametrize(
    ("binding", "expected"),
    [
        (B.TenantBindings(object_store=B.ObjectStoreBinding()), {"tenant.bindings.object_store.backend"}),
        (
            B.TenantBindings(object_store=B.ObjectStoreBinding(backend=99)),
            {"tenant.bindings.object_store.backend"},
        ),
        (
            B.TenantBindings(
                object_store=B.ObjectStoreBinding(backend=B.OBJECT_BACKEND_S3, region="us-east-1")
            ),
            set(),
        ),
        (
            B.TenantBindings(
                object_store=B.ObjectStoreBinding(backend=B.OBJECT_BACKEND_S3, endpoint="http://minio:9000")
            ),
            set(),
        ),
        (
            B.TenantBindings(
                object_store=B.ObjectStoreBinding(backend=B.OBJECT_BACKEND_S3, endpoint="minio:9000")
            ),
            {"tenant.bindings.object_store.endpoint"},
        ),
        (
            B.TenantBindings(
                object_store=B.ObjectStoreBinding(
                    backend=B.OBJECT_BACKEND_S3, endpoint="https://key:secret@s3.test"
                )
            ),
            {"tenant.bindings.object_store.endpoint"},
        ),
        # The account may come from the secret (its name or connection string), as the adapter
        # reads it: no endpoint needed.
        (B.TenantBindings(object_store=B.ObjectStoreBinding(backend=B.OBJECT_BACKEND_AZURE_BLOB)), set()),
        (
            B.TenantBindings(
                object_store=B.ObjectStoreBinding(
                    backend=B.OBJECT_BACKEND_AZURE_BLOB, options={"max_block_size": "1"}
                )
            ),
            {"tenant.bindings.object_store.options[max_block_size]"},
        ),
        (B.TenantBindings(item_store=B.ItemStoreBinding()), {"tenant.bindings.item_store.backend"}),
        (
            B.TenantBindings(item_store=B.ItemStoreBinding(backend=B.ITEM_BACKEND_POSTGRES)),
            {"tenant.bindings.item_store.endpoint"},
        ),
        (
            B.TenantBindings(
                item_store=B.ItemStoreBinding(
                    backend=B.ITEM_BACKEND_POSTGRES, credentials_secret_ref="env://PG_DSN"
                )
            ),
            {"tenant.bindings.item_store.endpoint"},
        ),
        (
            B.TenantBindings(
                item_store=B.ItemStoreBinding(
                    backend=B.ITEM_BACKEND_POSTGRES, endpoint="postgresql://app:hunter2@db/acme"
                )
            ),
            {"tenant.bindings.item_store.endpoint"},
        ),
        (
            B.TenantBindings(item_store=B.ItemStoreBinding(backend=B.ITEM_BACKEND_DYNAMODB)),
            set(),  # the adapter's default region (us-east-1)
        ),
        (
            B.TenantBindings(item_store=B.ItemStoreBinding(backend=B.ITEM_BACKEND_COSMOS)),
            {"tenant.bindings.item_store.endpoint"},
        ),
        (
            B.TenantBindings(
                item_store=B.ItemStoreBinding(
                    backend=B.ITEM_BACKEND_COSMOS, endpoint="https://acme.documents.azure.com"
                )
            ),
            set(),
        ),
        (B.TenantBindings(llm=B.LlmBinding()), {"tenant.bindings.llm.provider"}),
        (
            B.TenantBindings(
                llm=B.LlmBinding(provider=B.LLM_PROVIDER_AZURE_OPENAI, endpoint="https://x.azure.com")
            ),
            {"tenant.bindings.llm.api_version"},
        ),
        (
            B.TenantBindings(
                llm=B.LlmBinding(provider=B.LLM_PROVIDER_OPENAI, api_key_secret_ref="sk-live-123")
            ),
            {"tenant.bindings.llm.api_key_secret_ref"},
        ),
        (
            B.TenantBindings(llm=B.LlmBinding(provider=B.LLM_PROVIDER_OPENAI, api_key_secret_ref="env://")),
            {"tenant.bindings.llm.api_key_secret_ref"},
        ),
        (
            B.TenantBindings(
                llm=B.LlmBinding(provider=B.LLM_PROVIDER_OPENAI, api_key_secret_ref="env://BAD-NAME")
            ),
            set(),  # well-formed; env:// is then refused by the secret scope (test_binding_egress.py)
        ),
        (
            B.TenantBindings(
                llm=B.LlmBinding(provider=B.LLM_PROVIDER_OPENAI, api_key_secret_ref="local://my key")
            ),
            {"tenant.bindings.llm.api_key_secret_ref"},
        ),
        (
            B.TenantBindings(
                llm=B.LlmBinding(provider=B.LLM_PROVIDER_OPENAI, api_key_secret_ref="env://OPENAI_KEY")
            ),
            set(),
        ),
    ],
)
def test_binding_rules(binding: tenant_pb2.TenantBindings, expected: set[str]) -> None:
    assert _violations(binding) == expected
