-- The gateway's edge: nginx answers plain exchange calls itself, with the Python gateway deciding (ADR 0012).
--
-- Per call, on nginx's event loop: the caller's decision (token, revocation, grant) from a per-worker cache
-- filled by asking the gateway (`/_edge/decide`); the rate-limit buckets (shared memory, or Redis with the
-- gateway's own script, so both share them); the upstream's breaker; the SHA-256 of the request and response
-- bodies; the message-log record, shipped to the gateway in batches (it chains and writes them as its own).
-- Anything the edge does not answer whole goes to the Python gateway unchanged (`@gateway`): refused or masked
-- calls, calls before the gateway pushed its state, HEAD/OPTIONS, bodies that are not JSON.
--
-- Cache validity: every decision carries the gateway's state generation; the gateway pushes a new generation
-- (`PUT /_edge/state` on the control listener) before it answers a revocation, so a cached decision never
-- outlives a revoked grant or member.
local ffi = require "ffi"
local bit = require "bit"
local cjson = require "cjson.safe"

local ngx = ngx
local C = ffi.C
local now, floor, ceil, min, max = ngx.now, math.floor, math.ceil, math.min, math.max

ffi.cdef [[
typedef struct evp_md_ctx_st EVP_MD_CTX;
typedef struct evp_md_st EVP_MD;
typedef struct engine_st ENGINE;
EVP_MD_CTX *EVP_MD_CTX_new(void);
void EVP_MD_CTX_free(EVP_MD_CTX *ctx);
const EVP_MD *EVP_sha256(void);
int EVP_DigestInit_ex(EVP_MD_CTX *ctx, const EVP_MD *type, ENGINE *impl);
int EVP_DigestUpdate(EVP_MD_CTX *ctx, const void *d, size_t cnt);
int EVP_DigestFinal_ex(EVP_MD_CTX *ctx, unsigned char *md, unsigned int *s);
]]

local M = {}
local conf                     -- the rendered configuration (gateway/edge/config.py), set once per master
local shared = ngx.shared.onenet_edge
local decisions = {}           -- per worker: cache key -> decision table
local decisions_n = 0
local MAX_DECISIONS = 20000
local view = { generation = nil } -- per worker: the pushed state, parsed once per generation
local pending, pending_n = {}, 0  -- per worker: message-log records not yet accepted by the gateway
local shipping = false

-- ---- hashing -----------------------------------------------------------------------------------------------
local digest = ffi.new("unsigned char[32]")
local digest_len = ffi.new("unsigned int[1]")
local hexbuf = ffi.new("uint8_t[64]")
local HEX = ffi.new("const char[17]", "0123456789abcdef")
local EMPTY_SHA256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

local function new_hash()
  local h = ffi.gc(C.EVP_MD_CTX_new(), C.EVP_MD_CTX_free)
  C.EVP_DigestInit_ex(h, C.EVP_sha256(), nil)
  return h
end

local function final_hex(h)
  C.EVP_DigestFinal_ex(h, digest, digest_len)
  for i = 0, 31 do
    local b = digest[i]
    hexbuf[2 * i] = HEX[bit.rshift(b, 4)]
    hexbuf[2 * i + 1] = HEX[bit.band(b, 15)]
  end
  return ffi.string(hexbuf, 64)
end

local function sha256_hex(s)
  if s == nil or #s == 0 then return EMPTY_SHA256 end
  local h = new_hash()
  C.EVP_DigestUpdate(h, s, #s)
  return final_hex(h)
end

-- ---- configuration and pushed state -----------------------------------------------------------------------
function M.configure(json)
  conf = assert(cjson.decode(json))
  if conf.redis then
    -- EVALSHA wants the hex digest
    local raw = ngx.sha1_bin(conf.rate.script)
    local out = {}
    for i = 1, #raw do out[i] = string.format("%02x", raw:byte(i)) end
    conf.take_sha = table.concat(out)
  end
end

local function current_view()
  local generation = shared:get("generation")
  if generation == nil then return nil end
  if view.generation ~= generation then
    local state = cjson.decode(shared:get("state") or "")
    if not state then return nil end
    -- longest prefix first, as the gateway's policy resolves a path
    table.sort(state.scopes, function(a, b) return #a[1] > #b[1] end)
    view = { generation = generation, scopes = state.scopes, problems = state.problems }
    decisions, decisions_n = {}, 0
  end
  return view
end

-- The control listener (loopback only): the gateway pushes {generation, scopes, problems}.
function M.control()
  if ngx.req.get_headers()["x-onenet-edge-secret"] ~= conf.secret then
    return ngx.exit(403)
  end
  if ngx.req.get_method() == "GET" then
    ngx.header["content-type"] = "application/json"
    return ngx.say(cjson.encode({ generation = shared:get("generation"), pending = pending_n }))
  end
  ngx.req.read_body()
  local body = ngx.req.get_body_data()
  local state = body and cjson.decode(body)
  if not state or type(state.generation) ~= "number" or type(state.scopes) ~= "table" then
    return ngx.exit(400)
  end
  local ok = shared:set("state", body)
  if not ok then return ngx.exit(507) end
  shared:set("generation", state.generation)
  ngx.status = 204
  return ngx.exit(204)
end

local function scope_of(path, v)
  for _, s in ipairs(v.scopes) do
    local prefix = s[1]
    if path:sub(1, #prefix) == prefix then return s[2] end
  end
  return nil
end

-- ---- problems (the gateway renders them; the edge fills in the call's own parts) ---------------------------
local function lang_of()
  local al = ngx.var.http_accept_language
  if al then
    local first = al:match("^%s*([%a%-]+)")
    if first and first:lower():sub(1, 2) == "en" then return "en" end
  end
  return "zh"
end

local function problem(v, name, status, seconds, headers)
  local lang = lang_of()
  local template = v and v.problems[name] and v.problems[name][lang]
  local body
  if template then
    local doc = {}
    for k, val in pairs(template) do doc[k] = val end
    if seconds then
      doc.detail = doc.detail:gsub("{seconds}", tostring(seconds))
    end
    doc.request_id = ngx.var.edge_request_id
    doc.instance = ngx.var.uri
    body = cjson.encode(doc)
  else
    body = cjson.encode({ type = "urn:onenet:problem:" .. name, title = name, status = status, code = name,
                          request_id = ngx.var.edge_request_id, instance = ngx.var.uri })
  end
  ngx.status = status
  ngx.header["content-type"] = "application/problem+json"
  ngx.header["content-language"] = lang
  if headers then
    for k, val in pairs(headers) do ngx.header[k] = val end
  end
  ngx.var.edge_response_hash = sha256_hex(body)
  ngx.print(body)
  return ngx.exit(status)
end

-- ---- rate limits ------------------------------------------------------------------------------------------
local buckets = ngx.shared.onenet_buckets

local function take_memory(key, rate, burst)
  local t = now()
  local tokens, ts = burst, t
  local v = buckets:get(key)
  if v then
    local i = v:find(":", 1, true)
    tokens, ts = tonumber(v:sub(1, i - 1)), tonumber(v:sub(i + 1))
  end
  tokens = min(burst, tokens + max(0, t - ts) * rate)
  local ttl = burst / rate + 1
  if tokens >= 1 then
    buckets:set(key, (tokens - 1) .. ":" .. t, ttl)
    return true, 0
  end
  buckets:set(key, tokens .. ":" .. t, ttl)
  return false, (1 - tokens) / rate
end

-- lua-resty-redis, as Debian packages it (lua-nginx-redis), or as OpenResty does
local redis_client
do
  local ok, mod = pcall(require, "nginx.redis")
  if not ok then ok, mod = pcall(require, "resty.redis") end
  redis_client = ok and mod or nil
end

local function take_redis(key, rate, burst)
  local r = redis_client:new()
  local cfg = conf.redis
  r:set_timeout(cfg.timeout_ms)
  local ok, err = r:connect(cfg.host, cfg.port)
  if not ok then
    ngx.log(ngx.WARN, "rate limiter: Redis unavailable (", err, "); call let through")
    return true, 0
  end
  if cfg.password then r:auth(cfg.password) end
  if cfg.db and cfg.db ~= 0 then r:select(cfg.db) end
  local full = cfg.prefix .. key
  local res
  res, err = r:evalsha(conf.take_sha, 1, full, rate, burst)
  if not res and err and err:find("NOSCRIPT", 1, true) then
    res, err = r:eval(conf.rate.script, 1, full, rate, burst)
  end
  r:set_keepalive(10000, 64)
  if not res then
    ngx.log(ngx.WARN, "rate limiter: Redis unavailable (", err, "); call let through")
    return true, 0
  end
  return tonumber(res[1]) == 1, tonumber(res[2]) or 0
end

local function limited(v, name, retry)
  local seconds = max(1, ceil(retry))
  return problem(v, name, 429, seconds, { ["Retry-After"] = tostring(seconds) })
end

local function check_limits(v, d)
  local rate = conf.rate
  if not rate then return end
  local take = conf.redis and take_redis or take_memory
  if d.user ~= d.member then
    local ok, retry = take("u:" .. d.member .. ":" .. d.user, rate.user_per_second, rate.user_burst)
    if not ok then return limited(v, "rate_limited_user", retry) end
  end
  local ok, retry = take("m:" .. d.member, rate.member_per_second, rate.member_burst)
  if not ok then return limited(v, "rate_limited_member", retry) end
end

-- ---- the upstream's breaker (closed -> open after N failures in a row -> one trial after the reset) ---------
local function breaker_allows(service)
  local opened = shared:get("b:o:" .. service)
  if not opened then return true end
  local reset = conf.breaker.reset_seconds
  local waited = now() - opened
  if waited < reset then return false, max(1, ceil(reset - waited)) end
  if shared:add("b:t:" .. service, true, reset) then return true end -- the one trial call
  return false, 1
end

local function breaker_record(service, failed)
  if failed then
    local fails = shared:incr("b:f:" .. service, 1, 0)
    shared:delete("b:t:" .. service)
    if shared:get("b:o:" .. service) or fails >= conf.breaker.failures then
      shared:set("b:o:" .. service, now())
    end
  elseif shared:get("b:f:" .. service) then
    shared:delete("b:f:" .. service)
    shared:delete("b:o:" .. service)
    shared:delete("b:t:" .. service)
  end
end

-- ---- decisions ----------------------------------------------------------------------------------------------
local function decide(v, token, scope, service)
  local res = ngx.location.capture("/_edge/decide", {
    method = ngx.HTTP_POST,
    body = cjson.encode({ authorization = ngx.var.http_authorization, method = ngx.req.get_method(),
                          path = ngx.var.uri, service = service }),
  })
  if res.status ~= 200 then
    ngx.log(ngx.WARN, "edge: the gateway's decision failed (", res.status, "); the gateway answers the call")
    return nil
  end
  local d = cjson.decode(res.body)
  if not d then return nil end
  -- a decision made on an older state than the pushed one is used for this call only
  if d.generation == v.generation and d.scope == scope then
    if decisions_n >= MAX_DECISIONS then decisions, decisions_n = {}, 0 end
    decisions_n = decisions_n + 1
    decisions[token .. "\n" .. scope] = d
  end
  return d
end

local function backlog_admits(v)
  if pending_n < conf.audit.soft_backlog then return true end
  -- backpressure: wait for the gateway to take the records, at most admit_wait seconds
  local deadline = now() + conf.audit.admit_wait_seconds
  while pending_n >= conf.audit.soft_backlog and now() < deadline do
    ngx.sleep(0.01)
    if shipping == false then M.ship_soon() end
  end
  return pending_n < conf.audit.max_backlog
end

local function new_traceparent()
  local parent = ngx.var.http_traceparent
  local rid = ngx.var.request_id -- 32 random hex digits from nginx
  local span = rid:sub(17, 32)
  if parent then
    local trace, flags = parent:lower():match("^%s*00%-(%x+)%-%x+%-(%x%x)%s*$")
    if trace and #trace == 32 and trace ~= ("0"):rep(32) then
      return "00-" .. trace .. "-" .. span .. "-" .. flags
    end
  end
  return "00-" .. rid .. "-" .. span .. "-01"
end

function M.access(service)
  local v = current_view()
  if not v then return ngx.exec("@gateway") end
  local method = ngx.req.get_method()
  if method ~= "GET" and method ~= "POST" and method ~= "PUT" and method ~= "PATCH" and method ~= "DELETE" then
    return ngx.exec("@gateway")
  end
  local auth = ngx.var.http_authorization
  if not auth or auth:sub(1, 7):lower() ~= "bearer " then return ngx.exec("@gateway") end
  local length = ngx.var.content_length
  if length and length ~= "0" then
    if tonumber(length) == nil or tonumber(length) > conf.max_body_bytes then return ngx.exec("@gateway") end
    local media = ngx.var.content_type
    if (method == "POST" or method == "PUT" or method == "PATCH")
        and not (media and media:lower():find("json", 1, true)) then
      return ngx.exec("@gateway") -- the gateway answers 415
    end
  elseif ngx.var.http_transfer_encoding then
    return ngx.exec("@gateway")
  end
  local scope = scope_of(ngx.var.uri, v)
  if not scope then return ngx.exec("@gateway") end
  local token = auth:sub(8)
  local d = decisions[token .. "\n" .. scope]
  if d == nil or d.expires <= now() then
    d = decide(v, token, scope, service)
    if d == nil then return ngx.exec("@gateway") end
  end
  if d.mode ~= "edge" then return ngx.exec("@gateway") end

  -- from here on the edge answers, and logs, the call
  local rid = ngx.var.http_x_request_id
  if not (rid and #rid <= 128 and rid:match("^[%w%._:%-]+$")) then rid = ngx.var.request_id end
  ngx.var.edge_request_id = rid
  ngx.var.edge_traceparent = new_traceparent()
  ngx.var.edge_member = d.member
  ngx.var.edge_user = d.user
  ngx.var.edge_resource = d.resource or ""
  ngx.var.edge_owner = d.owner or ""
  ngx.var.edge_service = service
  ngx.req.read_body()
  local body = ngx.req.get_body_data()
  if body == nil and ngx.req.get_body_file() then
    local fh = io.open(ngx.req.get_body_file(), "rb")
    body = fh and fh:read("*a") or ""
    if fh then fh:close() end
  end
  ngx.var.edge_request_hash = sha256_hex(body)
  if not backlog_admits(v) then
    return problem(v, "audit_backlog", 503, nil, { ["Retry-After"] = "5" })
  end
  check_limits(v, d)
  local allowed, retry = breaker_allows(service)
  if not allowed then
    return problem(v, "upstream_unavailable:" .. service, 503, nil, { ["Retry-After"] = tostring(retry) })
  end
end

-- ---- the answer -------------------------------------------------------------------------------------------
function M.header_filter()
  local h = ngx.header
  h["x-request-id"] = ngx.var.edge_request_id
  h["traceparent"] = ngx.var.edge_traceparent
  h["x-onenet-service"] = ngx.var.edge_service
  h["server"] = nil
end

function M.body_filter()
  local ctx = ngx.ctx
  local h = ctx.hash
  if h == nil then
    h = new_hash()
    ctx.hash = h
  end
  local chunk = ngx.arg[1]
  if #chunk > 0 then C.EVP_DigestUpdate(h, chunk, #chunk) end
  if ngx.arg[2] then
    ngx.var.edge_response_hash = final_hex(h)
    ctx.hash = nil
  end
end

-- An upstream that could not be reached (502) or did not answer in time (504), as the gateway says it.
function M.upstream_error()
  local service = ngx.var.edge_service
  local v = current_view()
  if ngx.status == 504 or ngx.var.upstream_status and ngx.var.upstream_status:find("504", 1, true) then
    return problem(v, "upstream_timeout:" .. service, 504)
  end
  return problem(v, "upstream_unavailable:" .. service, 503, nil, { ["Retry-After"] = "5" })
end

-- ---- the message log ---------------------------------------------------------------------------------------
function M.log()
  local member = ngx.var.edge_member
  if member == nil or member == "" then return end -- not answered by the edge
  local status = ngx.status
  if ngx.var.upstream_status then -- forwarded (refusals made here never reached the upstream)
    breaker_record(ngx.var.edge_service, status >= 500)
  end
  local t0 = ngx.req.start_time()
  ngx.update_time()
  pending_n = pending_n + 1
  pending[pending_n] = cjson.encode({
    t0, member, ngx.var.edge_user, ngx.var.edge_resource, ngx.var.edge_owner,
    ngx.var.http_x_onenet_purpose or ngx.var.http_x_road_issue or cjson.null,
    ngx.var.http_x_road_userid or cjson.null, ngx.req.get_method(), ngx.var.uri, status,
    (now() - t0) * 1000, ngx.var.edge_request_id, ngx.var.edge_request_hash,
    ngx.var.edge_response_hash or EMPTY_SHA256,
  })
  if pending_n >= conf.audit.batch and not shipping then M.ship_soon() end
end

local function ship(premature)
  if shipping or pending_n == 0 then return end
  shipping = true
  local n = min(pending_n, conf.audit.batch)
  local body = table.concat(pending, "\n", 1, n)
  local sock = ngx.socket.tcp()
  sock:settimeouts(2000, 10000, 30000)
  local ok, err = sock:connect(conf.gateway.host, conf.gateway.port)
  local status
  if ok then
    ok, err = sock:send({ "POST /exchange/internal/edge/log HTTP/1.1\r\nHost: gateway\r\n",
                          "Content-Type: application/x-ndjson\r\nX-OneNet-Edge-Secret: ", conf.secret,
                          "\r\nContent-Length: ", #body, "\r\n\r\n", body })
  end
  if ok then
    local line
    line, err = sock:receive("*l")
    status = line and tonumber(line:match("^HTTP/1%.%d (%d%d%d)"))
    local length = 0
    while line and line ~= "" do
      line, err = sock:receive("*l")
      local l = line and line:lower():match("^content%-length:%s*(%d+)")
      if l then length = tonumber(l) end
    end
    if line == "" and length > 0 then sock:receive(length) end
    if line == "" then sock:setkeepalive(30000, 4) else sock:close() end
  else
    sock:close()
  end
  if status and status >= 200 and status < 300 then
    -- drop the accepted records; what came in meanwhile moves to the front
    local rest, k = {}, 0
    for i = n + 1, pending_n do
      k = k + 1
      rest[k] = pending[i]
    end
    pending, pending_n = rest, k
  else
    ngx.log(ngx.WARN, "edge: the gateway did not take ", n, " message-log records (", status or err,
            "); kept, ", pending_n, " waiting")
  end
  shipping = false
  if premature and pending_n > 0 and status then return ship(premature) end -- exiting: hand over the rest
end

function M.ship_soon()
  ngx.timer.at(0, ship)
end

function M.start_worker()
  ngx.timer.every(conf.audit.flush_seconds, ship)
end

return M
