-- HAProxy forward-auth to authshim (HAProxy 2.5+ with Lua: core.httpclient).
-- For a request that is not an intercepted route, asks authshim's GET /.authshim/session with
-- the session cookie alone, and keeps each answer for as long as authshim says
-- (X-Accel-Expires: session.forward_auth_ttl), keyed by that cookie. A 200 sets the variables
-- txn.authshim_user and txn.authshim_email; haproxy.cfg turns them into the identity headers.
-- A revoked session is refused within that TTL plus authshim's session.cache_ttl.

-- authshim's lean forward-auth listener (session.forward_auth_listen = "127.0.0.1:8082"); the
-- main listener (http://127.0.0.1:8080) gives the same answers at about half the rate.
local AUTHSHIM = os.getenv("AUTHSHIM_URL") or "http://127.0.0.1:8082"
local COOKIE = os.getenv("AUTHSHIM_COOKIE") or "authshim"
local MAX_ENTRIES = 100000
local cache, entries = {}, 0

local function first(headers, name)
  local values = headers and headers[name]
  if values == nil then return nil end
  return values[0] or values[1]
end

local function ask(cookie)
  local client = core.httpclient()
  local answer = client:get{
    url = AUTHSHIM .. "/.authshim/session",
    -- SECURITY: authshim sees the cache key and nothing else, as in the nginx recipe.
    headers = { ["cookie"] = { COOKIE .. "=" .. cookie } },
    timeout = 5000,
  }
  if answer == nil or (answer.status ~= 200 and answer.status ~= 401) then
    core.Warning("authshim: no forward-auth answer (" .. tostring(answer and answer.status) .. ")")
    return nil  -- authshim unavailable: never cached, the request is refused (fail closed)
  end
  local entry = { status = answer.status }
  if answer.status == 200 then
    entry.user = first(answer.headers, "x-forwarded-user")
    entry.email = first(answer.headers, "x-forwarded-email")
  end
  local ttl = tonumber(first(answer.headers, "x-accel-expires") or "0") or 0
  if ttl > 0 then
    if entries >= MAX_ENTRIES then cache, entries = {}, 0 end
    entry.expires = core.now().sec + ttl
    cache[cookie] = entry
    entries = entries + 1
  end
  return entry
end

core.register_action("authshim_session", { "http-req" }, function(txn)
  local cookie = txn.f:req_cook(COOKIE) or ""
  local entry = cache[cookie]
  if entry == nil or entry.expires <= core.now().sec then
    entry = ask(cookie)
  end
  if entry == nil then
    txn:set_var("txn.authshim_down", true)
  elseif entry.status == 200 then
    txn:set_var("txn.authshim_user", entry.user or "")
    txn:set_var("txn.authshim_email", entry.email or "")
  end
end)
