"""Field shapes every binding shares: endpoint URLs and secret-reference syntax."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from services.common.secrets.ref import AWS_SM_ARN_PREFIX

Violations = list[tuple[str, str]]

# Secrets are referenced, never stored: these are the stores a reference may point into.
SECRET_SCHEMES = ("local://", "env://", "aws-sm://", AWS_SM_ARN_PREFIX, "azure-kv://")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_SAFE_REF = re.compile(r"^[A-Za-z0-9._~:/@+=,!*%#-]+$")


def url_violations(value: str, at: str) -> Violations:
    """An endpoint, when given, is an http(s) URL with a host and no embedded credentials."""
    if not value:
        return []
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - raises ValueError on a malformed port
    except ValueError:
        return [(at, "must be an http(s) URL")]
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return [(at, "must be an http(s) URL")]
    if parts.username or parts.password:
        return [(at, "must not carry credentials; use the secret reference field")]
    return []


def secret_ref_violations(value: str, at: str) -> Violations:
    """A reference, when given, has a known scheme and a name; the value is never echoed (a
    malformed "reference" is sometimes the secret itself, pasted by mistake)."""
    if not value:
        return []
    scheme = next((s for s in SECRET_SCHEMES if value.startswith(s)), None)
    if scheme is None:
        return [(at, "must be a secret reference: " + ", ".join(f"{s}..." for s in SECRET_SCHEMES))]
    rest = value[len(scheme) :]
    if not rest or not _SAFE_REF.fullmatch(rest):
        return [(at, f"{scheme} reference needs a name of URL-safe characters")]
    if scheme == "env://" and not _ENV_NAME.fullmatch(rest):
        return [(at, "env:// reference needs an environment variable name")]
    return []
