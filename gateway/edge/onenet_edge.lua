-- The gateway's edge: nginx answers plain exchange calls itself, with the Python gateway deciding (ADR 0012).
--
-- Per call, on nginx's event loop: the caller's decision (token, revocation, grant) from a per-worker cache
-- filled by asking the gateway (`/_edge/decide`); the rate-limit buckets (shared memory, or Redis with the
-- gateway's own script, so both share them); the upstream's breaker; the SHA-256 of the request and response
-- bodies; the message-log record, shipped to the gateway in batches (it chains and writes them as its own).
-- Anything the edge does not answer whole goes to the Python gateway unchanged (`@gateway`): refused or masked
-- calls, calls before the gateway pushed its state, HEAD/OPTIONS, bodies that are not JSON.
--
-- Every call the edge passes on carries the gateway's assertion (`X-OneNet-Assertion`, HMAC-SHA256 with the
-- upstream's key, common/assertion.py and ADR 0013): the services answer no call without one.
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

-- OpenSSL's plain SHA-256 (nginx links libcrypto): no algorithm fetch per call, unlike EVP in OpenSSL 3
ffi.cdef [[
typedef struct { unsigned int h[8]; unsigned int Nl, Nh; unsigned int data[16]; unsigned int num, md_len; }
  onenet_sha256_ctx;
int SHA256_Init(onenet_sha256_ctx *c);
int SHA256_Update(onenet_sha256_ctx *c, const void *data, size_t len);
int SHA256_Final(unsigned char *md, onenet_sha256_ctx *c);
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
-- one context per worker: a hash is begun and finished without yielding, so calls never share it
local sha = ffi.new("onenet_sha256_ctx")
local digest = ffi.new("unsigned char[32]")
local hexbuf = ffi.new("uint8_t[64]")
local HEX = ffi.new("const uint8_t[16]", { 48, 49, 50, 51, 52, 53, 54, 55, 56, 57, 97, 98, 99, 100, 101, 102 })
local EMPTY_SHA256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

local function final_hex(ctx)
  C.SHA256_Final(digest, ctx or sha)
  for i = 0, 31 do
    local b = digest[i]
    hexbuf[2 * i] = HEX[bit.rshift(b, 4)]
    hexbuf[2 * i + 1] = HEX[bit.band(b, 15)]
  end
  return ffi.string(hexbuf, 64)
end

-- ---- the gateway's assertion (common/assertion.py): HMAC-SHA256 over the call's parts, one per line --------
-- The key's inner and outer pads are hashed once per worker; a call copies those states and adds its parts.
local CTX_SIZE = ffi.sizeof("onenet_sha256_ctx")
local pads = {}                -- per worker: service -> { inner = ctx, outer = ctx }
local mac_ctx = ffi.new("onenet_sha256_ctx")
local mac = ffi.new("unsigned char[32]")

local function hmac_pads(key)
  if #key > 64 then
    C.SHA256_Init(sha)
    C.SHA256_Update(sha, key, #key)
    C.SHA256_Final(digest, sha)
    key = ffi.string(digest, 32)
  end
  local inner, outer = {}, {}
  for i = 1, 64 do
    local b = i <= #key and key:byte(i) or 0
    inner[i] = string.char(bit.bxor(b, 0x36))
    outer[i] = string.char(bit.bxor(b, 0x5c))
  end
  local state = { inner = ffi.new("onenet_sha256_ctx"), outer = ffi.new("onenet_sha256_ctx") }
  C.SHA256_Init(state.inner)
  C.SHA256_Update(state.inner, table.concat(inner), 64)
  C.SHA256_Init(state.outer)
  C.SHA256_Update(state.outer, table.concat(outer), 64)
  return state
end

local function add(part)
  C.SHA256_Update(mac_ctx, part, #part)
end

-- `v1.<seconds>.<hex mac>` of method \n path \n query \n Authorization \n seconds \n request id
local function assertion(service, method, path, query, authorization, rid)
  local state = pads[service]
  if not state then return "" end -- no key for it: the service refuses the call (and says why)
  local ts = tostring(ngx.time())
  ffi.copy(mac_ctx, state.inner, CTX_SIZE)
  add(method) add("\n") add(path) add("\n") add(query or "") add("\n") add(authorization or "") add("\n")
  add(ts) add("\n") add(rid)
  C.SHA256_Final(mac, mac_ctx)
  ffi.copy(mac_ctx, state.outer, CTX_SIZE)
  C.SHA256_Update(mac_ctx, mac, 32)
  C.SHA256_Final(mac, mac_ctx)
  for i = 0, 31 do
    local b = mac[i]
    hexbuf[2 * i] = HEX[bit.rshift(b, 4)]
    hexbuf[2 * i + 1] = HEX[bit.band(b, 15)]
  end
  return "v1." .. ts .. "." .. ffi.string(hexbuf, 64)
end

local function sha256_hex(s)
  if s == nil or #s == 0 then return EMPTY_SHA256 end
  C.SHA256_Init(sha)
  C.SHA256_Update(sha, s, #s)
  return final_hex()
end

-- the body as nginx passes it on, in chunks: hashed when the last one is in
local function sha256_chunks(chunks, n)
  C.SHA256_Init(sha)
  for i = 1, n do
    local c = chunks[i]
    C.SHA256_Update(sha, c, #c)
  end
  return final_hex()
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

local function by_length_desc(a, b) return #a[1] > #b[1] end

local function load_view(generation)
  local state = cjson.decode(shared:get("state") or "")
  if not state then return nil end
  -- longest prefix first, as the gateway's policy resolves a path
  table.sort(state.scopes, by_length_desc)
  view = { generation = generation, scopes = state.scopes, problems = state.problems, scope_of = {}, known = 0 }
  decisions, decisions_n = {}, 0
  return view
end

-- (kept apart from load_view, whose table.sort and closures the JIT compiler cannot trace through)
local function current_view()
  local generation = shared:get("generation")
  if generation == nil then return nil end
  -- not heard from the gateway for a while (its pushes fail): decisions may be stale, the gateway answers
  if now() - shared:get("pushed_at") > conf.stale_after_seconds then return nil end
  if view.generation ~= generation then return load_view(generation) end
  return view
end

-- The control listener (loopback only): the gateway pushes {generation, scopes, problems}.
function M.control()
  if ngx.req.get_headers()["x-onenet-edge-secret"] ~= conf.secret then
    return ngx.exit(403)
  end
  if ngx.req.get_method() == "GET" then
    ngx.header["content-type"] = "application/json"
    return ngx.say(cjson.encode({ generation = shared:get("generation"), answered = shared:get("answered") or 0,
                                  pending = pending_n }))
  end
  ngx.req.read_body()
  local body = ngx.req.get_body_data()
  local state = body and cjson.decode(body)
  if not state or type(state.generation) ~= "number" or type(state.scopes) ~= "table" then
    return ngx.exit(400)
  end
  if state.generation ~= shared:get("generation") then
    local ok = shared:set("state", body)
    if not ok then return ngx.exit(507) end
    shared:set("generation", state.generation)
  end
  shared:set("pushed_at", now())
  ngx.status = 204
  return ngx.exit(204)
end

local function find_scope(path, scopes)
  for i = 1, #scopes do
    local prefix = scopes[i][1]
    if path:sub(1, #prefix) == prefix then return scopes[i][2] end
  end
  return false
end

-- path -> scope, remembered per view (a loop in the hot path keeps the JIT compiler from compiling it whole)
local function scope_of(path, v)
  local known = v.scope_of[path]
  if known == nil then
    known = find_scope(path, v.scopes)
    if v.known >= 10000 then v.scope_of, v.known = {}, 0 end
    v.scope_of[path] = known
    v.known = v.known + 1
  end
  return known or nil
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
    doc.request_id = ngx.ctx.call and ngx.ctx.call.rid or ngx.var.edge_request_id
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
  local call = ngx.ctx.call
  if call then call.response_hash = sha256_hex(body) end
  ngx.print(body)
  return ngx.exit(ngx.HTTP_OK)
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
  if r:get_reused_times() == 0 then -- a new connection; a pooled one is signed in and on its database already
    if cfg.password then r:auth(cfg.password) end
    if cfg.db and cfg.db ~= 0 then r:select(cfg.db) end
  end
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
  d.expires = now() + d.ttl
  -- a decision made on an older state than the pushed one is used for this call only
  if d.generation == v.generation and d.scope == scope then
    local mine = decisions[token]
    if mine == nil then
      if decisions_n >= MAX_DECISIONS then decisions, decisions_n = {}, 0 end
      decisions_n = decisions_n + 1
      mine = {}
      decisions[token] = mine
    end
    mine[scope] = d
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

local ZERO_TRACE = ("0"):rep(32)

local function new_traceparent(rid)
  local parent = ngx.var.http_traceparent
  local span = rid:sub(17, 32)
  if parent then
    if ngx.re.find(parent, "^00-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$", "joi") then
      local trace = parent:sub(4, 35):lower()
      if trace ~= ZERO_TRACE then return "00-" .. trace .. "-" .. span .. "-" .. parent:sub(54, 55) end
    end
  end
  return "00-" .. rid .. "-" .. span .. "-01"
end

local function request_body()
  ngx.req.read_body()
  local body = ngx.req.get_body_data()
  if body == nil and ngx.req.get_body_file() then
    local fh = io.open(ngx.req.get_body_file(), "rb")
    body = fh and fh:read("*a") or ""
    if fh then fh:close() end
  end
  return body
end

-- A call the edge does not answer goes to the gateway (`@gateway`). Event streams never come here: their routes go
-- to the gateway (gateway/edge/config.py), the one that ends a held answer when its caller is revoked.
function M.access(service)
  local fallback = "@gateway"
  local v = current_view()
  if not v then return ngx.exec(fallback) end
  local method = ngx.req.get_method()
  if method ~= "GET" and method ~= "POST" and method ~= "PUT" and method ~= "PATCH" and method ~= "DELETE" then
    return ngx.exec(fallback)
  end
  local auth = ngx.var.http_authorization
  if not auth or auth:sub(1, 7):lower() ~= "bearer " then return ngx.exec(fallback) end
  local length = ngx.var.content_length
  if length and length ~= "0" then
    if tonumber(length) == nil or tonumber(length) > conf.max_body_bytes then return ngx.exec(fallback) end
    local media = ngx.var.content_type
    if (method == "POST" or method == "PUT" or method == "PATCH")
        and not (media and media:lower():find("json", 1, true)) then
      return ngx.exec(fallback) -- the gateway answers 415
    end
  elseif ngx.var.http_transfer_encoding then
    return ngx.exec(fallback)
  end
  local uri = ngx.var.uri
  local scope = scope_of(uri, v)
  if not scope then return ngx.exec(fallback) end
  local mine = decisions[auth]
  local d = mine and mine[scope]
  if d == nil or d.expires <= now() then
    d = decide(v, auth, scope, service)
    if d == nil then return ngx.exec(fallback) end
  end
  if d.mode ~= "edge" then return ngx.exec(fallback) end

  -- from here on the edge answers, and logs, the call
  local random = ngx.var.request_id -- 32 random hex digits from nginx
  local rid = ngx.var.http_x_request_id
  if not (rid and #rid <= 128 and ngx.re.find(rid, "^[A-Za-z0-9._:-]+$", "jo")) then rid = random end
  local call = { member = d.member, user = d.user, resource = d.resource, owner = d.owner, service = service,
                 rid = rid, tp = new_traceparent(random), method = method, uri = uri,
                 request_hash = sha256_hex(request_body()), chunks = nil, n = 0 }
  ngx.ctx.call = call
  -- what the upstream headers and the access line name (nginx variables) ...
  local var = ngx.var
  var.edge_request_id = rid
  var.edge_traceparent = call.tp
  var.edge_member = d.member
  var.edge_user = d.user
  var.edge_resource = d.resource
  var.edge_service = service
  -- the upstream must serve the path decided on and logged: where nginx normalised the request's own (dot
  -- segments, escapes), setting it makes nginx send the normalised one, escaped again
  local raw = var.request_uri
  local query = raw:find("?", 1, true)
  if (query and raw:sub(1, query - 1) or raw) ~= uri then ngx.req.set_uri(uri) end
  -- ... and what an upstream error page needs besides (ngx.ctx does not survive the internal redirect)
  var.edge_owner = d.owner
  var.edge_request_hash = call.request_hash
  if not backlog_admits(v) then
    return problem(v, "audit_backlog", 503, nil, { ["Retry-After"] = "5" })
  end
  check_limits(v, d)
  local allowed, retry = breaker_allows(service)
  if not allowed then
    return problem(v, "upstream_unavailable:" .. service, 503, nil, { ["Retry-After"] = tostring(retry) })
  end
  -- every check passed: the gateway's word for it, bound to this call
  var.edge_assertion = assertion(service, method, uri, var.args, auth, rid)
end

-- the call as access() left it, or (on an upstream error page) as its nginx variables say
local function this_call()
  local call = ngx.ctx.call
  if call then return call end
  local var = ngx.var
  if var.edge_member == "" then return nil end
  call = { member = var.edge_member, user = var.edge_user, resource = var.edge_resource, owner = var.edge_owner,
           service = var.edge_service, rid = var.edge_request_id, tp = var.edge_traceparent,
           method = ngx.req.get_method(), uri = var.uri, request_hash = var.edge_request_hash, n = 0 }
  ngx.ctx.call = call
  return call
end

-- ---- the answer (its id headers are nginx's add_header: gateway/edge/config.py) -------------------------
function M.body_filter()
  local call = ngx.ctx.call
  if not call then return end
  local chunk = ngx.arg[1]
  if #chunk > 0 then
    local n = call.n + 1
    if n == 1 then call.chunks = { chunk } else call.chunks[n] = chunk end
    call.n = n
  end
  if ngx.arg[2] then
    call.response_hash = call.n > 0 and sha256_chunks(call.chunks, call.n) or EMPTY_SHA256
    call.chunks = nil
  end
end

-- An upstream that could not be reached (502) or did not answer in time (504), as the gateway says it.
function M.upstream_error()
  local call = this_call()
  local service = call and call.service or ngx.var.edge_service
  local v = current_view()
  local upstream = ngx.var.upstream_status
  if ngx.status == 504 or upstream and upstream:find("504", 1, true) then
    return problem(v, "upstream_timeout:" .. service, 504)
  end
  return problem(v, "upstream_unavailable:" .. service, 503, nil, { ["Retry-After"] = "5" })
end

-- A problem the edge answers without the gateway's templates (the gateway may be the one not answering).
local function own_problem(status, code, title, detail, retry_after)
  local en = lang_of() == "en"
  ngx.status = status
  ngx.header["content-type"] = "application/problem+json"
  ngx.header["content-language"] = en and "en" or "zh"
  if retry_after then ngx.header["retry-after"] = retry_after end
  ngx.print(cjson.encode({ type = "urn:onenet:problem:" .. code, status = status, code = code,
                           title = en and title[2] or title[1], detail = en and detail[2] or detail[1],
                           instance = ngx.var.uri }))
  return ngx.exit(ngx.HTTP_OK)
end

-- The Python gateway itself is not answering (starting, restarting): a problem, not nginx's HTML page.
function M.gateway_unavailable()
  return own_problem(503, "gateway_unavailable", { "网关暂不可用", "Gateway unavailable" },
                     { "网关暂时无法处理请求，请稍后重试", "The gateway is not answering; retry later" }, "5")
end

-- A body over what the edge takes in at all (twice the gateway's limit; smaller excess goes to the gateway).
function M.too_large()
  return own_problem(413, "payload_too_large", { "请求体过大", "Payload too large" },
                     { "请求体过大", "The request body is too large" })
end

-- ---- the message log ---------------------------------------------------------------------------------------
function M.log()
  local call = this_call()
  if not call then return end -- not answered by the edge
  local status = ngx.status
  local var = ngx.var
  if var.upstream_status then -- forwarded (refusals made here never reached the upstream)
    breaker_record(call.service, status >= 500)
  end
  local t0 = ngx.req.start_time()
  ngx.update_time()
  shared:incr("answered", 1, 0)
  pending_n = pending_n + 1
  pending[pending_n] = cjson.encode({
    t0, call.member, call.user, call.resource, call.owner,
    var.http_x_onenet_purpose or var.http_x_road_issue or cjson.null, var.http_x_road_userid or cjson.null,
    call.method, call.uri, status, (now() - t0) * 1000, call.rid, call.request_hash,
    call.response_hash or EMPTY_SHA256,
  })
  if pending_n >= conf.audit.batch and not shipping then M.ship_soon() end
end

local ship_failures, ship_after, warned_at = 0, 0, 0

local function ship(premature)
  if shipping or pending_n == 0 or (not premature and now() < ship_after) then return end
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
    -- kept below uvicorn's keep-alive (5 s), so the gateway does not close a connection we are about to reuse
    if line == "" then sock:setkeepalive(3000, 4) else sock:close() end
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
    ship_failures, ship_after = 0, 0
  else
    -- kept; tried again after a pause that doubles up to 2 s, said in the error log at most every 10 s
    ship_failures = ship_failures + 1
    ship_after = now() + min(2, 0.05 * 2 ^ ship_failures)
    if now() - warned_at >= 10 then
      warned_at = now()
      ngx.log(ngx.WARN, "edge: the gateway did not take ", n, " message-log records (", status or err,
              "); kept, ", pending_n, " waiting")
    end
  end
  shipping = false
  if premature and pending_n > 0 and status and status >= 200 and status < 300 then
    return ship(premature) -- exiting: hand over the rest while the gateway takes them
  end
end

function M.ship_soon()
  ngx.timer.at(0, ship)
end

function M.start_worker()
  for service, key in pairs(conf.assertion_keys) do pads[service] = hmac_pads(key) end
  ngx.timer.every(conf.audit.flush_seconds, ship)
end

return M
