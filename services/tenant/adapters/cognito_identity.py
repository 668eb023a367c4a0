"""IdentityProvider on an Amazon Cognito user pool (the platform's, MAKOTO_AWS_COGNITO_USER_POOL_ID).

A tenant's user is a pool user named `<tenant_id>:<email>` (one person may belong to several
tenants; Cognito usernames are pool-wide) with the attributes the mesh's token checks read,
`custom:tenant_id` and `custom:role` (`tenant-admin` / `member`), and is a member of the tenant's
group `tenant-<tenant_id>` (made by the provisioning workflow, or here on first invite). ID
tokens from the pool carry those attributes, so they pass Envoy and the services once the pool is
a trusted issuer (MAKOTO_EXTRA_JWT_PROVIDERS). The pool must define the two custom attributes.

- invite: AdminCreateUser (Cognito e-mails the temporary password) + AdminAddUserToGroup;
- remove: AdminDisableUser (the account can no longer sign in; tokens already issued expire on
  their own, at most the pool's ID token lifetime); it stays in the group, hidden from lists;
- invite of an address that was removed: ALREADY_EXISTS (the disabled account still holds the
  name; re-enabling is not implemented);
- remove_all (offboarding): every user of the tenant's group, disabled ones included, is deleted
  (TenantManager removes users before the group itself is deprovisioned).
user_id is the Cognito `sub`.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from botocore.exceptions import ClientError

from services.common.errors import AlreadyExists, NotFound
from services.common.identity import Role
from services.tenant.model import UserRecord, UserRole
from services.tenant.provisioning.aws import AwsStep, AwsTarget, SecretSource, error_code

_ROLE_CLAIM = {UserRole.TENANT_ADMIN: Role.TENANT_ADMIN.value, UserRole.MEMBER: Role.MEMBER.value}
_ROLE_FROM_CLAIM = {v: k for k, v in _ROLE_CLAIM.items()}


class _CognitoClient(AwsStep):
    service = "cognito-idp"


class _NoSecrets:
    async def get(self, ref: str) -> Any:
        raise NotFound("no secret store here")


class CognitoIdentityProvider:
    def __init__(self, target: AwsTarget, user_pool_id: str, secrets: SecretSource | None = None) -> None:
        self._target = target
        self._pool = user_pool_id
        self._secrets = secrets or _NoSecrets()
        self._clients = _CognitoClient("", target, self._secrets)

    async def close(self) -> None:
        await self._clients.close()

    def _group(self, tenant_id: str) -> str:
        return f"tenant-{tenant_id}"

    async def invite(self, tenant_id: str, email: str, role: UserRole) -> UserRecord:
        idp = await self._clients.client()
        email = email.lower()
        try:
            created = await idp.admin_create_user(
                UserPoolId=self._pool,
                Username=f"{tenant_id}:{email}",
                UserAttributes=[
                    {"Name": "email", "Value": email},
                    {"Name": "email_verified", "Value": "true"},
                    {"Name": "custom:tenant_id", "Value": tenant_id},
                    {"Name": "custom:role", "Value": _ROLE_CLAIM[role]},
                ],
                DesiredDeliveryMediums=["EMAIL"],
            )
        except ClientError as exc:
            if error_code(exc) == "UsernameExistsException":
                raise AlreadyExists(
                    f"{email} is already a user of tenant {tenant_id}", reason="USER_ALREADY_EXISTS"
                ) from None
            raise
        await self._add_to_group(idp, tenant_id, f"{tenant_id}:{email}")
        return _record(created["User"], tenant_id)

    async def _add_to_group(self, idp: Any, tenant_id: str, username: str) -> None:
        group = self._group(tenant_id)
        try:
            await idp.admin_add_user_to_group(UserPoolId=self._pool, Username=username, GroupName=group)
        except ClientError as exc:
            if error_code(exc) != "ResourceNotFoundException":
                raise
            await idp.create_group(UserPoolId=self._pool, GroupName=group)
            await idp.admin_add_user_to_group(UserPoolId=self._pool, Username=username, GroupName=group)

    async def _members(self, tenant_id: str) -> list[dict[str, Any]]:
        idp = await self._clients.client()
        out: list[dict[str, Any]] = []
        params: dict[str, Any] = {"UserPoolId": self._pool, "GroupName": self._group(tenant_id)}
        while True:
            try:
                page = await idp.list_users_in_group(**params)
            except ClientError as exc:
                if error_code(exc) == "ResourceNotFoundException":
                    return []  # no group yet: no users
                raise
            out.extend(page.get("Users", []))
            if not page.get("NextToken"):
                return out
            params["NextToken"] = page["NextToken"]

    async def list_users(self, tenant_id: str, *, after: str | None, limit: int) -> Sequence[UserRecord]:
        records = sorted(
            (_record(u, tenant_id) for u in await self._members(tenant_id) if u.get("Enabled", True)),
            key=lambda r: r.user_id,
        )
        return [r for r in records if after is None or r.user_id > after][:limit]

    async def has_user(self, tenant_id: str, user_id: str) -> bool:
        # A member of the tenant's group, still enabled (RemoveUser disables, keeps it in the group).
        return any(
            _attributes(u).get("sub") == user_id and u.get("Enabled", True)
            for u in await self._members(tenant_id)
        )

    async def remove(self, tenant_id: str, user_id: str) -> None:
        idp = await self._clients.client()
        for user in await self._members(tenant_id):
            if _attributes(user).get("sub") == user_id:
                # Disabled, kept in the group: offboarding still finds (and deletes) it.
                await idp.admin_disable_user(UserPoolId=self._pool, Username=user["Username"])
                return
        raise NotFound(f"user {user_id} not found in tenant {tenant_id}", reason="USER_NOT_FOUND")

    async def remove_all(self, tenant_id: str) -> int:
        idp = await self._clients.client()
        members = await self._members(tenant_id)
        for user in members:
            try:
                await idp.admin_delete_user(UserPoolId=self._pool, Username=user["Username"])
            except ClientError as exc:
                if error_code(exc) != "UserNotFoundException":
                    raise
        return len(members)


def _attributes(user: dict[str, Any]) -> dict[str, str]:
    raw = user.get("Attributes") or user.get("UserAttributes") or []
    return {a["Name"]: a["Value"] for a in raw}


def _record(user: dict[str, Any], tenant_id: str) -> UserRecord:
    attrs = _attributes(user)
    created = user.get("UserCreateDate")
    if not isinstance(created, datetime):
        created = datetime.now(UTC)
    return UserRecord(
        user_id=attrs.get("sub", user["Username"]),
        tenant_id=tenant_id,
        email=attrs.get("email", ""),
        role=_ROLE_FROM_CLAIM.get(attrs.get("custom:role", ""), UserRole.MEMBER),
        create_time=created.astimezone(UTC) if created.tzinfo else created.replace(tzinfo=UTC),
    )
