-- The token rules jwt_authn does not apply, checked after it exactly as the services check them
-- (services/common/bearer.py, services/common/jwt_verify.py):
--  * `authorization` must be one header of exactly `Bearer <jwt>`: jwt_authn takes the token after
--    "Bearer " anywhere in the value, so `Basic x Bearer <jwt>` passed it;
--  * `iat` is required and, like `nbf`, may not lie in the future beyond the shared clock skew
--    (jwt_authn checks nbf and exp, never iat).
-- A refusal is a 401 (gRPC: UNAUTHENTICATED), the same answer the service would give.
local SKEW_SECONDS = __SKEW_SECONDS__
local BEARER = "^Bearer [%w_%-]+%.[%w_%-]+%.[%w_%-]*$"

local function refuse(handle, why)
  handle:respond(
    {[":status"] = "401", ["www-authenticate"] = 'Bearer error="invalid_token"'},
    why
  )
end

function envoy_on_request(handle)
  local verified = handle:streamInfo():dynamicMetadata():get("__JWT_FILTER__")
  local payload = verified and verified["__PAYLOAD_KEY__"]
  if payload == nil then
    -- No verified token: jwt_authn already refused every route that needs one; a public route
    -- (health, the API-key exchange) does not use the header.
    return
  end
  local headers = handle:headers()
  if headers:getNumValues("authorization") ~= 1 then
    return refuse(handle, "exactly one authorization header")
  end
  if not string.match(headers:get("authorization"), BEARER) then
    return refuse(handle, "authorization must be exactly: Bearer <jwt>")
  end
  local now = os.time()
  local iat = tonumber(payload["iat"])
  if iat == nil then
    return refuse(handle, "token has no iat")
  end
  if iat > now + SKEW_SECONDS then
    return refuse(handle, "token issued in the future")
  end
  local nbf = tonumber(payload["nbf"])
  if nbf ~= nil and nbf > now + SKEW_SECONDS then
    return refuse(handle, "token not yet valid")
  end
end
