-- Envoy's 400 for a REST body it could not transcode names the field at the start of its text
-- ("item.attributes[0].value: invalid value ..."). local_reply_config (services/mesh/
-- local_replies.py) puts that text into BadRequest.fieldViolations[0].description, with an
-- empty field: a format string cannot cut the path out, so this copies it into "field".
-- Only Envoy's own replies match: its JSON keys are sorted ("description" before "field"),
-- the services' transcoded errors write "field" first.
function envoy_on_response(handle)
  local headers = handle:headers()
  if headers:get(":status") ~= "400" then
    return
  end
  local content_type = headers:get("content-type") or ""
  if content_type:sub(1, 16) ~= "application/json" then
    return
  end
  local body = handle:body()
  if body == nil then
    return
  end
  local text = body:getBytes(0, body:length())
  local field = text:match('"fieldViolations":%[{"description":"([%w_%.%[%]]+): ')
    -- an unknown query parameter: Could not find field \"bogus\" in the type ...
    or text:match('"fieldViolations":%[{"description":"Could not find field \\"([%w_%.]+)\\"')
  if field == nil then
    return
  end
  local fixed, count = text:gsub('","field":""}', '","field":"' .. field .. '"}', 1)
  if count == 1 then
    body:setBytes(fixed)
  end
end
