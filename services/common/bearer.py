"""The one accepted shape of a credential header: exactly `Bearer <jwt>`.

Envoy's jwt_authn finds a token after "Bearer " anywhere in the header (so `Basic x Bearer <jwt>`
passed it); the edge (services/mesh/strict_token.lua) and every service use this same rule, so
a header one layer refuses is refused by the other too.
"""

from __future__ import annotations

import re

# Compact JWS: three base64url parts (the signature may be empty only to be refused later).
BEARER_PATTERN = r"^Bearer [A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*$"
_BEARER = re.compile(BEARER_PATTERN)


def bearer_token(values: list[str]) -> str | None:
    """The token of the request's `authorization` values, or None when there is none, more than
    one, or its shape is anything but `Bearer <jwt>`."""
    if len(values) != 1 or _BEARER.fullmatch(values[0]) is None:
        return None
    return values[0][len("Bearer ") :]
