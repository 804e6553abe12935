-- write_exposures.lua: applies a chunk of exposures of one experiment phase,
-- item by item in order, as if each were its own call. abexp-server runs
-- this file's text (embedded at build time) with EVALSHA from
-- RedisEventStore::WriteExposures; docs/storage.md describes the keys and
-- records it reads and writes, and how to try it with redis-cli --eval.
--
-- KEYS[1]  the phase's meta hash, <base>meta
-- ARGV[1]  base: the phase's key prefix, e.g. abexp:{e:checkout:1}:
-- ARGV[2]  idempotency generation g (Unix s / idempotency TTL s)
-- ARGV[3]  expiry (Unix s) of generation g's idempotency hashes
-- ARGV[4]  the phase's variant keys, '\n'-joined
-- ARGV[5]  unit buckets; ARGV[6] idempotency buckets
-- ARGV[7]  the most distinct config versions counted in the phase
-- ARGV[8]  the signatures of the C metrics with a covariate, '\n'-joined
--          ('' for none)
-- ARGV[9]  item count N, then N groups of 9 (redis_scripts::
--          kExposureItemArgs): idempotency bucket, idempotency field
--          (8 bytes), unit bucket, unit field (8 bytes), variant index,
--          time (Unix ms), config version (1 to 64 bytes), the unit's
--          covariates ('' for none, else C '<d' values, NaN for missing),
--          the unit's segments ('' for none, else per dimension its id
--          byte and slot byte, as settled by RedisEventStore beforehand)
--
-- Returns an array of N outcomes (0 recorded, 1 duplicate, 2 ignored,
-- 3 conflict). Fails before writing anything with "ABEXP_ARGS ..." on a bad
-- argument, or "ABEXP_VARIANTS <stored keys>" when the variant keys are
-- incompatible with those stored (appending variants is allowed).

-- BEGIN shared: from here to END shared, every script in this folder is the
-- same text (embed_scripts.py fails the build when they differ). MAX_VALUE
-- is kMaxEventValue in server/core/event_store.h (redis_scripts_test checks).
-- A unit record is struct '<BBi6' (variant, flags with bit 0 =
-- multi-exposed, first exposure ms) followed by one entry per metric the
-- unit counts in: metric id byte, state length byte, state ('' for
-- binomial/retention, '<d' total for sum, '<dd' numerator and denominator
-- for ratio, '<Bi6' furthest step reached and the ms it was reached for
-- funnel). An entry of id 0 holds the unit's covariates, recorded at its
-- first exposure: per metric with a covariate, its id byte and '<d' x.
-- An entry of id SEG_ENTRY (255; metric ids stop at 254) holds the unit's
-- segments, recorded at its first exposure: per dimension, its id byte and
-- the value's slot byte (0 none, 255 other). The unit counts in segment
-- hash <base>s:<dimension id>:<slot> as in its cohort day's hash.
local MAX_VALUE = 1000000000000000
local SEG_ENTRY = 255

local MS_DAY = 86400000
local meta = KEYS[1]
local base = ARGV[1]
local agg = base .. 'agg'

-- Argument checks. Each script checks every argument it will use before its
-- first write, so a bad argument fails the call with nothing written; with
-- them passed, no later step can fail on the data (times fit a record's 6
-- bytes, values are within +-MAX_VALUE so no sum or square overflows).
-- Each returns nil, or the error to return.
local MAX_TIME = 140737488355327  -- 2^47 - 1 ms, struct 'i6'
local MAX_BUCKET = 16777215       -- 2^24 - 1, the store's largest bucket
local function arg_error(i, what, want)
  local s = ARGV[i]
  if s == nil then
    return 'ABEXP_ARGS ARGV[' .. i .. '] (' .. what .. ') is missing'
  end
  if #s > 40 then s = string.sub(s, 1, 40) .. '...' end
  return 'ABEXP_ARGS ARGV[' .. i .. '] (' .. what .. ') is "' .. s ..
         '"; expected ' .. want
end
local function check_int(i, what, lo, hi)
  local s = ARGV[i]
  if s and #s <= 20 and string.find(s, '^%-?%d+$') then
    local n = tonumber(s)
    if n >= lo and n <= hi then return nil end
  end
  return arg_error(i, what, string.format('an integer from %.0f to %.0f', lo, hi))
end
local function check_text(i, what)
  local s = ARGV[i]
  if s and s ~= '' then return nil end
  return arg_error(i, what, 'a non-empty string')
end
-- Unit and idempotency fields are 8-byte hashes.
local function check_field(i, what)
  local s = ARGV[i]
  if s and #s == 8 then return nil end
  return arg_error(i, what, 'an 8-byte hash')
end
local function check_count(i, what, first, width)
  local err = check_int(i, what, 0, #ARGV)
  if err then return err end
  if #ARGV ~= first - 1 + tonumber(ARGV[i]) * width then
    return 'ABEXP_ARGS ' .. #ARGV .. ' arguments for ' .. ARGV[i] .. ' ' ..
           what .. '; expected ' .. (first - 1) .. ' + ' .. width .. ' per item'
  end
  return nil
end
-- The call-wide arguments both scripts start with.
local function check_head()
  return check_text(1, 'key base') or
         check_int(2, 'idempotency generation', 0, MAX_TIME) or
         check_int(3, 'expiry', 0, MAX_TIME)
end

local function day_of(ms) return math.floor(ms / MS_DAY) end
-- Key and field names are cached: every concatenation makes Lua intern a
-- new string, and a chunk's items mostly share them.
local day_keys = {}
local function day_key(day)
  local k = day_keys[day]
  if not k then
    k = base .. 'd:' .. string.format('%d', day)
    day_keys[day] = k
  end
  return k
end
-- The hashes a unit's figures count in: its cohort day's (first exposure
-- at `first` ms) and one per segment in its record's SEG_ENTRY entry.
local seg_keys = {}
local function unit_keys(first, states)
  local keys = {day_key(day_of(first))}
  local s = states[SEG_ENTRY]
  if s then
    for p = 1, #s - 1, 2 do
      local id, slot = string.byte(s, p, p + 1)
      local c = id * 256 + slot
      local k = seg_keys[c]
      if not k then
        k = base .. 's:' .. id .. ':' .. slot
        seg_keys[c] = k
      end
      keys[#keys + 1] = k
    end
  end
  return keys
end
-- fields[v][sig][stat]: '<v>|<sig>|<stat>'; fields[v][0]: 'exposed|<v>'.
local fields = {}
local function field(v, sig, stat)
  local by_v = fields[v]
  if not by_v then
    by_v = {[0] = 'exposed|' .. v}
    fields[v] = by_v
  end
  if sig == nil then return by_v[0] end
  local by_sig = by_v[sig]
  if not by_sig then
    by_sig = {}
    by_v[sig] = by_sig
  end
  local f = by_sig[stat]
  if not f then
    f = v .. '|' .. sig .. '|' .. stat
    by_sig[stat] = f
  end
  return f
end

local function parse(rec)
  local v, flags, first = struct.unpack('<BBi6', rec)
  local states, order = {}, {}
  local pos = 9
  while pos <= #rec do
    local id, len = string.byte(rec, pos, pos + 1)
    states[id] = string.sub(rec, pos + 2, pos + 1 + len)
    order[#order + 1] = id
    pos = pos + 2 + len
  end
  return v, flags, first, states, order
end

local function serialize(v, flags, first, states, order)
  local parts = {struct.pack('<BBi6', v, flags, first)}
  for _, id in ipairs(order) do
    local s = states[id]
    parts[#parts + 1] = string.char(id, #s) .. s
  end
  return table.concat(parts)
end

-- The aggregate increments of this call, summed per hash and field and
-- written once each by flush(): counts with HINCRBY, sums with HINCRBYFLOAT.
-- Nothing in a script reads an aggregate, so deferring them changes nothing
-- but the number of commands.
local counts, sums, new_days = {}, {}, {}
local function add_one(tbl, key, field, delta)
  local h = tbl[key]
  if not h then
    h = {}
    tbl[key] = h
  end
  h[field] = (h[field] or 0) + delta
end
-- `key` is one hash or a list of them (unit_keys).
local function add_to(tbl, key, field, delta)
  if type(key) == 'table' then
    for _, k in ipairs(key) do add_one(tbl, k, field, delta) end
  else
    add_one(tbl, key, field, delta)
  end
end
local function count(key, field, delta) add_to(counts, key, field, delta) end
local function sum(key, field, delta) add_to(sums, key, field, delta) end

local function flush()
  for key, h in pairs(counts) do
    for field, d in pairs(h) do
      if d ~= 0 then redis.call('HINCRBY', key, field, string.format('%d', d)) end
    end
  end
  for key, h in pairs(sums) do
    for field, d in pairs(h) do
      if d ~= 0 then redis.call('HINCRBYFLOAT', key, field, d) end
    end
  end
  local days = {}
  for day in pairs(new_days) do days[#days + 1] = string.format('%d', day) end
  if #days > 0 then redis.call('SADD', base .. 'days', unpack(days)) end
end

local mnames = {}
local function mname(id)
  local s = mnames[id]
  if not s then
    s = redis.call('HGET', meta, 'mname|' .. id)
    mnames[id] = s
  end
  return s
end

-- The unit's covariates: metric id -> x, from its record's entry 0.
local function covariates(states)
  local out = {}
  local s = states[0]
  if s then
    for p = 1, #s - 8, 9 do out[string.byte(s, p)] = struct.unpack('<d', s, p + 1) end
  end
  return out
end

-- Adds a change of a unit's value y of metric `sig` from y0 to y1 to the
-- CUPED sums of `key`, for a unit with covariate x.
local function cuped_y(key, v, sig, x, y0, y1)
  sum(key, field(v, sig, 'cuped_sum_y'), y1 - y0)
  sum(key, field(v, sig, 'cuped_sum_y_sq'), y1 * y1 - y0 * y0)
  sum(key, field(v, sig, 'cuped_sum_xy'), x * (y1 - y0))
end

-- Adds sign times the unit's exposure and metric figures to hash `key` (a
-- cohort day's, or a list from unit_keys). Binomial and retention metrics keep only `units` (their sum and
-- sum of squares equal it); a funnel keeps `units` (step 1 reached) and
-- step<k>, the units that reached step k. A unit with a covariate for a metric also
-- counts in its cuped_* figures (y is 0 for a unit without events).
local function apply_unit(key, sign, v, states, order)
  count(key, field(v), sign)
  local cov = covariates(states)
  for id, x in pairs(cov) do
    local sig = mname(id)
    count(key, field(v, sig, 'cuped_units'), sign)
    sum(key, field(v, sig, 'cuped_sum_x'), sign * x)
    sum(key, field(v, sig, 'cuped_sum_x_sq'), sign * (x * x))
  end
  for _, id in ipairs(order) do
    if id ~= 0 and id ~= SEG_ENTRY then
      local s = states[id]
      local sig = mname(id)
      local y = 1
      count(key, field(v, sig, 'units'), sign)
      if #s == 8 then
        local x = struct.unpack('<d', s)
        sum(key, field(v, sig, 'sum'), sign * x)
        sum(key, field(v, sig, 'sum_sq'), sign * (x * x))
        y = x
      elseif #s == 16 then
        local n, d = struct.unpack('<dd', s)
        sum(key, field(v, sig, 'sum_num'), sign * n)
        sum(key, field(v, sig, 'sum_den'), sign * d)
        sum(key, field(v, sig, 'sum_num_sq'), sign * (n * n))
        sum(key, field(v, sig, 'sum_den_sq'), sign * (d * d))
        sum(key, field(v, sig, 'sum_num_den'), sign * (n * d))
        y = nil
      elseif #s == 7 then
        for k = 1, string.byte(s, 1) do count(key, field(v, sig, 'step' .. k), sign) end
        y = nil
      end
      if y and cov[id] then
        if sign > 0 then cuped_y(key, v, sig, cov[id], 0, y)
        else cuped_y(key, v, sig, cov[id], y, 0) end
      end
    end
  end
end

-- Every metric signature's one-byte id in `sigs`, assigned before anything
-- is written; the new ones only once all fit, so running out of ids writes
-- nothing. Returns the ids by signature, or nil and the error.
local function metric_ids(sigs)
  local ids = {}
  if #sigs == 0 then return ids end
  local fields = {}
  for j, sig in ipairs(sigs) do fields[j] = 'mid|' .. sig end
  local got = redis.call('HMGET', meta, unpack(fields))
  local new_sigs = {}
  for j, sig in ipairs(sigs) do
    if got[j] then
      ids[sig] = tonumber(got[j])
    else
      new_sigs[#new_sigs + 1] = sig
    end
  end
  if #new_sigs > 0 then
    local last = tonumber(redis.call('HGET', meta, 'mnext') or '0')
    if last + #new_sigs > SEG_ENTRY - 1 then
      return nil, 'ABEXP_METRICS more than 254 metric definitions in this phase'
    end
    for _, sig in ipairs(new_sigs) do
      last = last + 1
      redis.call('HSET', meta, 'mid|' .. sig, last, 'mname|' .. last, sig)
      ids[sig] = last
    end
    redis.call('HSET', meta, 'mnext', last)
  end
  return ids
end

-- Idempotency keys live in one hash per generation (g = floor(now / TTL))
-- and bucket. A key is a duplicate when generation g - 1 or g holds it; else
-- it is remembered in generation g, whose hashes expire at the end of
-- generation g + 1. So a key is remembered for at least the TTL and at most
-- twice it, at the cost of two lookups.
local gen = tonumber(ARGV[2]) or 0  -- check_head() refuses a bad one before use
local expire_at = ARGV[3]
local gprev = base .. 'g:' .. string.format('%d', gen - 1) .. ':'
local gcur = base .. 'g:' .. string.format('%d', gen) .. ':'
local function seen(bucket, field)
  if redis.call('HEXISTS', gprev .. bucket, field) == 1 then return true end
  local k = gcur .. bucket
  if redis.call('HSETNX', k, field, '') == 0 then return true end
  if redis.call('HLEN', k) == 1 then redis.call('EXPIREAT', k, expire_at) end
  return false
end
-- END shared

-- A unit record keeps its variant index in one byte: kMaxVariants in
-- server/core/config.h (redis_scripts_test checks).
local MAX_VARIANTS = 255
-- kMaxStoredConfigVersionBytes in server/core/event_store.h.
local MAX_VERSION_BYTES = 64
-- A record's covariate entry holds 9 bytes per metric within 255 bytes:
-- kMaxCovariateMetrics in server/core/event_store.h.
local MAX_COVARIATES = 28
-- kMaxDimensions in server/core/config.h.
local MAX_DIMENSIONS = 8

local function check_version(i)
  local s = ARGV[i]
  if s and s ~= '' and #s <= MAX_VERSION_BYTES then return nil end
  return arg_error(i, 'config version', 'a string of 1 to ' .. MAX_VERSION_BYTES .. ' bytes')
end

local function check_args()
  local err = check_head() or check_text(4, 'variant keys') or
              check_int(5, 'unit buckets', 1, MAX_BUCKET + 1) or
              check_int(6, 'idempotency buckets', 1, MAX_BUCKET + 1) or
              check_int(7, 'config versions', 1, 1000000) or
              check_count(9, 'exposures', 10, 9)
  if err then return err end
  if not ARGV[8] then return arg_error(8, 'covariate metrics', 'a string') end
  local _, newlines = string.gsub(ARGV[4], '\n', '')
  local ncov = 0
  if ARGV[8] ~= '' then
    ncov = select(2, string.gsub(ARGV[8], '\n', '')) + 1
    if ncov > MAX_COVARIATES then
      return arg_error(8, 'covariate metrics', 'at most ' .. MAX_COVARIATES)
    end
  end
  for o = 10, #ARGV, 9 do
    err = check_int(o, 'idempotency bucket', 0, MAX_BUCKET) or
          check_field(o + 1, 'idempotency field') or
          check_int(o + 2, 'unit bucket', 0, MAX_BUCKET) or
          check_field(o + 3, 'unit field') or
          check_int(o + 4, 'variant index', 0, math.min(newlines, MAX_VARIANTS - 1)) or
          check_int(o + 5, 'time (ms)', -MAX_TIME - 1, MAX_TIME) or
          check_version(o + 6)
    if err then return err end
    if ARGV[o + 7] ~= '' and #ARGV[o + 7] ~= 8 * ncov then
      return arg_error(o + 7, 'covariates', "'' or " .. ncov .. " '<d' values")
    end
    local segs = ARGV[o + 8]
    if not segs or #segs % 2 ~= 0 or #segs > 2 * MAX_DIMENSIONS then
      return arg_error(o + 8, 'segments', 'pairs of bytes, at most ' .. MAX_DIMENSIONS)
    end
  end
  return nil
end
local args_error = check_args()
if args_error then return redis.error_reply(args_error) end

local variants = ARGV[4]
local stored = redis.call('HGET', meta, 'variants')
if not stored then
  redis.call('HSET', meta, 'variants', variants)
  redis.call('HSETNX', meta, 'unit_buckets', ARGV[5])
  redis.call('HSETNX', meta, 'idempotency_buckets', ARGV[6])
elseif stored ~= variants then
  if #variants > #stored and string.sub(variants, 1, #stored + 1) == stored .. '\n' then
    redis.call('HSET', meta, 'variants', variants)
  elseif not (#stored > #variants and string.sub(stored, 1, #variants + 1) == variants .. '\n') then
    return redis.error_reply('ABEXP_VARIANTS ' .. stored)
  end
end

-- Exposures are counted per config version in agg's cv|<version> fields,
-- at most ARGV[7] distinct versions per phase: a version first seen once
-- that many are counted goes to cv|other (a real version is 16 hex digits,
-- never "other"). meta's cvn holds how many are counted; a phase written
-- before cvn existed has its cv| fields counted once, here.
local max_versions = tonumber(ARGV[7])
local versions = nil       -- cvn, read on first need
local versions_dirty = false
local function counted_versions()
  if versions then return versions end
  local n = redis.call('HGET', meta, 'cvn')
  if n then
    versions = tonumber(n)
  else
    versions = 0
    for _, f in ipairs(redis.call('HKEYS', agg)) do
      if string.sub(f, 1, 3) == 'cv|' and f ~= 'cv|other' then
        versions = versions + 1
      end
    end
    versions_dirty = true
  end
  return versions
end
local cv_fields = {}
local function version_field(cv)
  local f = cv_fields[cv]
  if f then return f end
  f = 'cv|' .. cv
  if cv ~= 'other' and redis.call('HEXISTS', agg, f) == 0 then
    if counted_versions() < max_versions then
      versions = versions + 1
      versions_dirty = true
    else
      f = 'cv|other'
    end
  end
  cv_fields[cv] = f
  return f
end

-- The metrics with a covariate, in ARGV[8]'s order, and their ids.
local cov_sigs = {}
if ARGV[8] ~= '' then
  for sig in string.gmatch(ARGV[8], '[^\n]+') do cov_sigs[#cov_sigs + 1] = sig end
end
local cov_ids = {}
if #cov_sigs > 0 then
  local ids_error
  cov_ids, ids_error = metric_ids(cov_sigs)
  if not cov_ids then return redis.error_reply(ids_error) end
end

-- A new unit's record: the header, its covariates' entry when it has any
-- (a NaN is a missing covariate), and its segments' entry when it has any.
local function new_record(v, t, covs, segs)
  local rec = struct.pack('<BBi6', v, 0, t)
  if segs ~= '' then rec = rec .. string.char(SEG_ENTRY, #segs) .. segs end
  if covs == '' then return rec end
  local parts = {}
  for j, sig in ipairs(cov_sigs) do
    local x = struct.unpack('<d', covs, 8 * j - 7)
    if x == x then
      parts[#parts + 1] = string.char(cov_ids[sig]) .. string.sub(covs, 8 * j - 7, 8 * j)
    end
  end
  if #parts == 0 then return rec end
  local entry = table.concat(parts)
  return rec .. string.char(0, #entry) .. entry
end

local function expose(ibucket, ifield, ubucket, ufield, v, t, cv, covs, segs)
  if seen(ibucket, ifield) then return 1 end
  count(agg, version_field(cv), 1)

  -- A new unit (the common case) is one HSETNX; only a known one is read.
  local ukey = base .. 'u:' .. ubucket
  local new_rec = new_record(v, t, covs, segs)
  if redis.call('HSETNX', ukey, ufield, new_rec) == 1 then
    local day = day_of(t)
    local _, _, _, states, order = parse(new_rec)
    apply_unit(unit_keys(t, states), 1, v, states, order)
    new_days[day] = true
    return 0
  end
  local rec = redis.call('HGET', ukey, ufield)

  local rv, flags, first, states, order = parse(rec)
  if flags % 2 == 1 then return 2 end
  if rv == v then
    if t < first then
      -- An earlier exposure arrived late: the cohort is the earliest day.
      local old_day, new_day = day_of(first), day_of(t)
      if old_day ~= new_day then
        apply_unit(day_key(old_day), -1, rv, states, order)
        apply_unit(day_key(new_day), 1, rv, states, order)
        new_days[new_day] = true
      end
      redis.call('HSET', ukey, ufield, serialize(rv, flags, t, states, order))
    end
    return 1
  end

  apply_unit(unit_keys(first, states), -1, rv, states, order)
  count(agg, 'multi', 1)
  redis.call('HSET', ukey, ufield, struct.pack('<BBi6', rv, flags + 1, first))
  return 3
end

local n = tonumber(ARGV[9])
local out = {}
local o = 10
for i = 1, n do
  out[i] = expose(ARGV[o], ARGV[o + 1], ARGV[o + 2], ARGV[o + 3],
                  tonumber(ARGV[o + 4]), tonumber(ARGV[o + 5]), ARGV[o + 6],
                  ARGV[o + 7], ARGV[o + 8])
  o = o + 9
end
flush()
if versions_dirty then
  redis.call('HSET', meta, 'cvn', string.format('%d', versions))
end
return out
