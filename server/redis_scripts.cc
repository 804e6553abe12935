#include "server/redis_scripts.h"

#include <string>

namespace abexp::redis_scripts {
namespace {

// Shared by both scripts. A unit record is struct '<BBi6' (variant, flags
// with bit 0 = multi-exposed, first exposure ms) followed by one entry per
// metric the unit counts in: metric id byte, state length byte, state
// ('' for binomial/retention, '<d' total for sum, '<dd' numerator and
// denominator for ratio).
constexpr char kCommon[] = R"lua(
local MS_DAY = 86400000
local meta = KEYS[1]
local base = ARGV[1]
local agg = base .. 'agg'

local function day_of(ms) return math.floor(ms / MS_DAY) end
local function day_key(day) return base .. 'd:' .. string.format('%d', day) end

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

-- Adds sign times the unit's exposure and metric figures to hash `key`.
local function apply_unit(key, sign, v, states, order)
  redis.call('HINCRBY', key, 'exposed|' .. v, sign)
  for _, id in ipairs(order) do
    local s = states[id]
    local p = v .. '|' .. redis.call('HGET', meta, 'mname|' .. id) .. '|'
    redis.call('HINCRBY', key, p .. 'units', sign)
    if #s == 0 then
      -- Binomial and retention sums are counts (see the event script).
      redis.call('HINCRBY', key, p .. 'sum', sign)
      redis.call('HINCRBY', key, p .. 'sum_sq', sign)
    elseif #s == 8 then
      local x = struct.unpack('<d', s)
      redis.call('HINCRBYFLOAT', key, p .. 'sum', sign * x)
      redis.call('HINCRBYFLOAT', key, p .. 'sum_sq', sign * (x * x))
    else
      local n, d = struct.unpack('<dd', s)
      redis.call('HINCRBYFLOAT', key, p .. 'sum_num', sign * n)
      redis.call('HINCRBYFLOAT', key, p .. 'sum_den', sign * d)
      redis.call('HINCRBYFLOAT', key, p .. 'sum_num_sq', sign * (n * n))
      redis.call('HINCRBYFLOAT', key, p .. 'sum_den_sq', sign * (d * d))
      redis.call('HINCRBYFLOAT', key, p .. 'sum_num_den', sign * (n * d))
    end
  end
end

-- True when the idempotency key was seen within the TTL; else remembers it
-- in today's bucketed hash, which expires TTL after the day ends.
local function seen(today, span, ttl, bucket, field)
  for d = today - span, today - 1 do
    if redis.call('HEXISTS', base .. 'i:' .. string.format('%d', d) .. ':' .. bucket, field) == 1 then
      return true
    end
  end
  -- Today's hash is checked and written in one call.
  local k = base .. 'i:' .. string.format('%d', today) .. ':' .. bucket
  if redis.call('HSETNX', k, field, '') == 0 then return true end
  if redis.call('HLEN', k) == 1 then
    redis.call('EXPIREAT', k, (today + 1) * 86400 + ttl)
  end
  return false
end
)lua";

constexpr char kExposure[] = R"lua(
local variants = ARGV[2]
local stored = redis.call('HGET', meta, 'variants')
if not stored then
  redis.call('HSET', meta, 'variants', variants)
  redis.call('HSETNX', meta, 'unit_buckets', ARGV[3])
  redis.call('HSETNX', meta, 'idempotency_buckets', ARGV[4])
elseif stored ~= variants then
  if #variants > #stored and string.sub(variants, 1, #stored + 1) == stored .. '\n' then
    redis.call('HSET', meta, 'variants', variants)
  elseif not (#stored > #variants and string.sub(stored, 1, #variants + 1) == variants .. '\n') then
    return redis.error_reply('ABEXP_VARIANTS ' .. stored)
  end
end

if seen(tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7]), ARGV[8], ARGV[9]) then
  return 1
end
redis.call('HINCRBY', agg, 'cv|' .. ARGV[14], 1)

local ukey = base .. 'u:' .. ARGV[10]
local ufield = ARGV[11]
local v = tonumber(ARGV[12])
local t = tonumber(ARGV[13])
local rec = redis.call('HGET', ukey, ufield)
if not rec then
  redis.call('HSET', ukey, ufield, struct.pack('<BBi6', v, 0, t))
  local day = day_of(t)
  redis.call('HINCRBY', agg, 'exposed|' .. v, 1)
  redis.call('HINCRBY', day_key(day), 'exposed|' .. v, 1)
  redis.call('SADD', base .. 'days', string.format('%d', day))
  return 0
end

local rv, flags, first, states, order = parse(rec)
if flags % 2 == 1 then return 2 end
if rv == v then
  if t < first then
    -- An earlier exposure arrived late: the cohort is the earliest day.
    local old_day, new_day = day_of(first), day_of(t)
    if old_day ~= new_day then
      apply_unit(day_key(old_day), -1, rv, states, order)
      apply_unit(day_key(new_day), 1, rv, states, order)
      redis.call('SADD', base .. 'days', string.format('%d', new_day))
    end
    redis.call('HSET', ukey, ufield, serialize(rv, flags, t, states, order))
  end
  return 1
end

apply_unit(agg, -1, rv, states, order)
apply_unit(day_key(day_of(first)), -1, rv, states, order)
redis.call('HINCRBY', agg, 'multi', 1)
redis.call('HSET', ukey, ufield, struct.pack('<BBi6', rv, flags + 1, first))
return 3
)lua";

constexpr char kEvent[] = R"lua(
-- The unit check comes first: an event that cannot count (unit not exposed,
-- multi-exposed, or before its first exposure) costs one HGET and leaves no
-- idempotency key, so a retry after the exposure arrived is judged afresh.
local ukey = base .. 'u:' .. ARGV[7]
local ufield = ARGV[8]
local rec = redis.call('HGET', ukey, ufield)
if not rec then return 2 end
local t = tonumber(ARGV[9])
local rv, flags, first, states, order = parse(rec)
if flags % 2 == 1 or t < first then return 2 end
if seen(tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4]), ARGV[5], ARGV[6]) then
  return 1
end

local value = nil
if ARGV[10] ~= '' then value = tonumber(ARGV[10]) end
local dkey = day_key(day_of(first))
local changed = false

local function metric_id(sig)
  local id = redis.call('HGET', meta, 'mid|' .. sig)
  if id then return tonumber(id) end
  id = redis.call('HINCRBY', meta, 'mnext', 1)
  if id > 255 then return nil end
  redis.call('HSET', meta, 'mid|' .. sig, id, 'mname|' .. id, sig)
  return id
end
local function delta_of(aggregation)
  if aggregation == 1 then return 1 elseif aggregation == 2 then return value end
  return nil
end

local nmetrics = tonumber(ARGV[11])
if nmetrics == 0 then return 2 end  -- no metric uses the event
-- The metrics' ids, in one read.
local mid_fields = {}
for i = 0, nmetrics - 1 do mid_fields[i + 1] = 'mid|' .. ARGV[12 + i * 6] end
local ids = redis.call('HMGET', meta, unpack(mid_fields))

for i = 0, nmetrics - 1 do
  local o = 12 + i * 6
  local sig, typ = ARGV[o], ARGV[o + 1]
  local a_agg, b_agg = tonumber(ARGV[o + 2]), tonumber(ARGV[o + 3])
  local window_end = first + tonumber(ARGV[o + 4])
  local rday = tonumber(ARGV[o + 5])
  local id = ids[i + 1]
  if id then id = tonumber(id) end
  local s = nil
  if id then s = states[id] end
  local counted = s ~= nil
  local p = rv .. '|' .. sig .. '|'

  local inside = false
  local dn, dd = nil, nil
  if typ == 'b' then
    inside = t < window_end
  elseif typ == 't' then
    local from = first + rday * MS_DAY
    inside = t >= from and t < from + MS_DAY
  else
    dn, dd = delta_of(a_agg), delta_of(b_agg)
    inside = (dn ~= nil or dd ~= nil) and t < window_end
  end
  if (typ == 'b' or typ == 't') and counted then inside = false end

  if inside then
    if not id then
      id = metric_id(sig)
      if not id then
        return redis.error_reply('ABEXP_METRICS more than 255 metric definitions in this phase')
      end
    end
    if not counted then
      order[#order + 1] = id
      redis.call('HINCRBY', agg, p .. 'units', 1)
      redis.call('HINCRBY', dkey, p .. 'units', 1)
    end
    local deltas
    local incr = 'HINCRBYFLOAT'
    if typ == 'b' or typ == 't' then
      states[id] = ''
      deltas = {'sum', 1, 'sum_sq', 1}
      -- Only ever moved by whole units, so HINCRBY (cheaper) stores the same
      -- text HINCRBYFLOAT would.
      incr = 'HINCRBY'
      changed = true
    elseif typ == 's' then
      local x = 0
      if counted then x = struct.unpack('<d', s) end
      states[id] = struct.pack('<d', x + dn)
      deltas = {'sum', dn, 'sum_sq', 2 * x * dn + dn * dn}
      if not counted or dn ~= 0 then changed = true end
    else
      local n, d = 0, 0
      if counted then n, d = struct.unpack('<dd', s) end
      local nn, nd = n + (dn or 0), d + (dd or 0)
      states[id] = struct.pack('<dd', nn, nd)
      deltas = {'sum_num', nn - n, 'sum_den', nd - d, 'sum_num_sq', nn * nn - n * n,
                'sum_den_sq', nd * nd - d * d, 'sum_num_den', nn * nd - n * d}
      if not counted or nn ~= n or nd ~= d then changed = true end
    end
    for j = 1, #deltas, 2 do
      redis.call(incr, agg, p .. deltas[j], deltas[j + 1])
      redis.call(incr, dkey, p .. deltas[j], deltas[j + 1])
    end
  end
end

if not changed then return 2 end
redis.call('HSET', ukey, ufield, serialize(rv, flags, first, states, order))
return 0
)lua";

}  // namespace

const std::string& WriteExposure() {
  static const std::string* script =
      new std::string(std::string(kCommon) + kExposure);
  return *script;
}

const std::string& WriteEvent() {
  static const std::string* script =
      new std::string(std::string(kCommon) + kEvent);
  return *script;
}

}  // namespace abexp::redis_scripts
