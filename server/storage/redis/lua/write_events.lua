-- write_events.lua: applies a chunk of events of one experiment phase, item
-- by item in order, as if each were its own call. abexp-server runs this
-- file's text (embedded at build time) with EVALSHA from
-- RedisEventStore::WriteEvents; docs/storage.md describes the keys and
-- records it reads and writes, and how to try it with redis-cli --eval.
--
-- KEYS[1]  the phase's meta hash, <base>meta
-- ARGV[1]  base: the phase's key prefix, e.g. abexp:{e:checkout:1}:
-- ARGV[2]  idempotency generation g (Unix s / idempotency TTL s)
-- ARGV[3]  expiry (Unix s) of generation g's idempotency hashes
-- ARGV[4]  metric group count G (one group per event name in the chunk),
--          then per group: metric count M and M groups of 6
--          (redis_scripts::kMetricArgs): signature; type (b binomial,
--          s sum, r ratio, t retention, f funnel); source or numerator
--          aggregation (0 not this event, 1 count, 2 value), for a funnel
--          the event's step (1-based); denominator aggregation, for a
--          funnel that step's own window (ms, 0 for none); window (ms);
--          retention day
-- then     item count N and N groups of 7 (redis_scripts::kEventItemArgs):
--          metric group (1-based), idempotency bucket, idempotency field
--          (8 bytes), unit bucket, unit field (8 bytes), time (Unix ms),
--          value ("" for none)
--
-- Returns an array of N outcomes (0 recorded, 1 duplicate, 2 ignored). An
-- event of a unit not exposed, multi-exposed or before its first exposure
-- is ignored without remembering its idempotency key. Fails before writing
-- anything with "ABEXP_ARGS ..." on a bad argument, "ABEXP_METRICS ..." when
-- the phase ran out of metric ids, or "ABEXP_STATE ..." when an item's unit
-- record holds a total beyond +-1e150 (left by a version that did not bound
-- values).

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

local function check_args()
  local err = check_head() or check_int(4, 'metric groups', 0, #ARGV)
  if err then return err end
  local o = 5
  for _ = 1, tonumber(ARGV[4]) do
    err = check_int(o, 'metric count', 0, (#ARGV - o) / 6)
    if err then return err end
    for a = o + 1, o + tonumber(ARGV[o]) * 6, 6 do
      err = check_text(a, 'metric signature')
      if not err and not string.find(ARGV[a + 1], '^[bsrtf]$') then
        err = arg_error(a + 1, 'metric type', 'b, s, r, t or f')
      end
      if not err and ARGV[a + 1] == 'f' then
        err = check_int(a + 2, 'funnel step', 1, 255) or
              check_int(a + 3, 'step window (ms)', 0, 2^63)
      else
        err = err or check_int(a + 2, 'source aggregation', 0, 2) or
              check_int(a + 3, 'denominator aggregation', 0, 2)
      end
      err = err or check_int(a + 4, 'window (ms)', 0, 2^63) or
            check_int(a + 5, 'retention day', 0, MAX_TIME / MS_DAY)
      if err then return err end
    end
    o = o + 1 + tonumber(ARGV[o]) * 6
  end
  err = check_count(o, 'events', o + 1, 7)
  if err then return err end
  for i = o + 1, #ARGV, 7 do
    err = check_int(i, 'metric group', 1, tonumber(ARGV[4])) or
          check_int(i + 1, 'idempotency bucket', 0, MAX_BUCKET) or
          check_field(i + 2, 'idempotency field') or
          check_int(i + 3, 'unit bucket', 0, MAX_BUCKET) or
          check_field(i + 4, 'unit field') or
          check_int(i + 5, 'time (ms)', -MAX_TIME - 1, MAX_TIME)
    if err then return err end
    local v = ARGV[i + 6]
    if v ~= '' then
      local x = #v <= 40 and tonumber(v)
      -- NaN fails both comparisons.
      if not (x and x >= -MAX_VALUE and x <= MAX_VALUE) then
        return arg_error(i + 6, 'value', string.format(
            '"" or a number within +-%.0f', MAX_VALUE))
      end
    end
  end
  return nil
end
local args_error = check_args()
if args_error then return redis.error_reply(args_error) end

-- The metric groups: one per event name in the chunk.
local groups, sigs, listed = {}, {}, {}
local o = 5
for g = 1, tonumber(ARGV[4]) do
  local metrics = {}
  for j = 1, tonumber(ARGV[o]) do
    local a = o + 1 + (j - 1) * 6
    local sig = ARGV[a]
    metrics[j] = {sig = sig, typ = ARGV[a + 1], a = tonumber(ARGV[a + 2]),
                  b = tonumber(ARGV[a + 3]), window = tonumber(ARGV[a + 4]),
                  rday = tonumber(ARGV[a + 5])}
    if not listed[sig] then
      listed[sig] = true
      sigs[#sigs + 1] = sig
    end
  end
  o = o + 1 + #metrics * 6
  groups[g] = metrics
end

-- Every item's unit record, read before the first write. With values
-- within +-MAX_VALUE a unit's total stays far below +-MAX_STATE; one beyond
-- it (written by an abexp before values were bounded) could overflow a
-- square, so it fails the chunk here, whole. record() reads this cache.
local MAX_STATE = 1e150
local function state_ok(x) return x >= -MAX_STATE and x <= MAX_STATE end
local unit_records = {}
for i = o + 1, #ARGV, 7 do
  local ukey = base .. 'u:' .. ARGV[i + 3]
  local by_field = unit_records[ukey]
  if not by_field then
    by_field = {}
    unit_records[ukey] = by_field
  end
  local ufield = ARGV[i + 4]
  if by_field[ufield] == nil then
    local rec = redis.call('HGET', ukey, ufield)
    by_field[ufield] = rec
    local pos = 9
    while rec and pos <= #rec do
      local id, len = string.byte(rec, pos, pos + 1)
      local ok = true
      if id == SEG_ENTRY then
        ok = true
      elseif len == 8 then
        ok = state_ok(struct.unpack('<d', rec, pos + 2))
      elseif len == 16 then
        local n, d = struct.unpack('<dd', rec, pos + 2)
        ok = state_ok(n) and state_ok(d)
      end
      if not ok then
        return redis.error_reply('ABEXP_STATE a unit record in ' .. ukey ..
                                 ' holds a total beyond +-1e150')
      end
      pos = pos + 2 + len
    end
  end
end

local ids, ids_error = metric_ids(sigs)
if not ids then return redis.error_reply(ids_error) end

-- An event's delta for a metric source: 1 for a count, its value for a
-- value aggregation (nil when it has none), nil when the source is another
-- event.
local function delta_of(aggregation, value)
  if aggregation == 1 then return 1 elseif aggregation == 2 then return value end
  return nil
end

-- The unit check comes first: an event that cannot count (unit not exposed,
-- multi-exposed, or before its first exposure) costs one HGET and leaves no
-- idempotency key, so a retry after the exposure arrived is judged afresh.
local function record(metrics, ibucket, ifield, ubucket, ufield, t, value_arg)
  local ukey = base .. 'u:' .. ubucket
  local by_field = unit_records[ukey]
  local rec = by_field[ufield]
  if not rec then return 2 end
  local rv, flags, first, states, order = parse(rec)
  if flags % 2 == 1 or t < first then return 2 end
  if seen(ibucket, ifield) then return 1 end
  if #metrics == 0 then return 2 end  -- no metric uses the event

  local value = nil
  if value_arg ~= '' then value = tonumber(value_arg) end
  local dkey = unit_keys(first, states)
  local changed = false
  local cov = covariates(states)

  for _, m in ipairs(metrics) do
    local typ = m.typ
    local id = ids[m.sig]
    local s = states[id]
    local counted = s ~= nil
    local sig = m.sig
    local window_end = first + m.window

    local inside = false
    local dn, dd = nil, nil
    if typ == 'b' then
      inside = t < window_end and not counted
    elseif typ == 't' then
      local from = first + m.rday * MS_DAY
      inside = t >= from and t < from + MS_DAY and not counted
    elseif typ == 'f' then
      -- The next step only, at or after the unit reached the one before
      -- (step 0: its first exposure), inside both windows.
      local reached, at = 0, first
      if counted then reached, at = struct.unpack('<Bi6', s) end
      inside = reached == m.a - 1 and t >= at and t < window_end and
               (m.b == 0 or t < at + m.b)
    else
      dn, dd = delta_of(m.a, value), delta_of(m.b, value)
      inside = (dn ~= nil or dd ~= nil) and t < window_end
    end

    if inside then
      if not counted then
        order[#order + 1] = id
        count(dkey, field(rv, sig, 'units'), 1)
      end
      local cx = cov[id]
      if typ == 'f' then
        states[id] = struct.pack('<Bi6', m.a, t)
        count(dkey, field(rv, sig, 'step' .. m.a), 1)
        changed = true
      elseif typ == 'b' or typ == 't' then
        states[id] = ''
        changed = true
        if cx then cuped_y(dkey, rv, sig, cx, 0, 1) end
      elseif typ == 's' then
        local x = 0
        if counted then x = struct.unpack('<d', s) end
        states[id] = struct.pack('<d', x + dn)
        sum(dkey, field(rv, sig, 'sum'), dn)
        sum(dkey, field(rv, sig, 'sum_sq'), 2 * x * dn + dn * dn)
        if cx then cuped_y(dkey, rv, sig, cx, x, x + dn) end
        if not counted or dn ~= 0 then changed = true end
      else
        local n, d = 0, 0
        if counted then n, d = struct.unpack('<dd', s) end
        local nn, nd = n + (dn or 0), d + (dd or 0)
        states[id] = struct.pack('<dd', nn, nd)
        sum(dkey, field(rv, sig, 'sum_num'), nn - n)
        sum(dkey, field(rv, sig, 'sum_den'), nd - d)
        sum(dkey, field(rv, sig, 'sum_num_sq'), nn * nn - n * n)
        sum(dkey, field(rv, sig, 'sum_den_sq'), nd * nd - d * d)
        sum(dkey, field(rv, sig, 'sum_num_den'), nn * nd - n * d)
        if not counted or nn ~= n or nd ~= d then changed = true end
      end
    end
  end

  if not changed then return 2 end
  rec = serialize(rv, flags, first, states, order)
  redis.call('HSET', ukey, ufield, rec)
  by_field[ufield] = rec
  return 0
end

local n = tonumber(ARGV[o])
o = o + 1
local out = {}
for i = 1, n do
  out[i] = record(groups[tonumber(ARGV[o])], ARGV[o + 1], ARGV[o + 2],
                  ARGV[o + 3], ARGV[o + 4], tonumber(ARGV[o + 5]), ARGV[o + 6])
  o = o + 7
end
flush()
return out
