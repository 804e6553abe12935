-- bench/r12.lua: wrk's requests for R12 (bench/r12.sh): one OFREP
-- single-flag evaluation per request, each for a new unit with a user id,
-- a device id and the 11 attributes of bench/experiments-50.yaml drawn
-- from the spreads abexp-loadgen draws an Assign's unit from (bench/
-- loadgen.cc, FillAttributes), so both sides of the ratio assign the same
-- kind of unit stream. The flag is $R12_FLAG (default checkout_flow).
local flag = os.getenv("R12_FLAG") or "checkout_flow"
local path = "/ofrep/v1/evaluate/flags/" .. flag
local headers = { ["Content-Type"] = "application/json" }

local countries = { "US", "CA", "GB", "AU", "DE", "FR", "ES", "IT", "NL", "SE",
                    "PL", "CN", "SG", "JP", "KR", "IN", "ID", "TH", "BR", "MX" }
local platforms = { "ios", "ios", "android", "android", "web" }
local locales = { "en-US", "en-GB", "en", "zh-CN", "de-DE", "fr-FR", "ja-JP",
                  "es-ES", "pt-BR", "ko-KR" }
local channels = { "organic", "paid_search", "social", "referral" }
local tiers = { "basic", "basic", "basic", "basic", "basic", "basic", "silver",
                "silver", "gold", "platinum" }
local rfm = { "champions", "loyal", "at_risk", "hibernating" }

local threads = 0
function setup(thread)
  thread:set("tid", threads)
  threads = threads + 1
end

local n = 0
function init(args)
  math.randomseed(1 + (tid or 0))
end

local function pick(list) return list[math.random(#list)] end
local function spread(mean) return math.floor(-mean * math.log(1 - math.random())) end

function request()
  n = n + 1
  local body = string.format(
    '{"context":{"targetingKey":"u-%d-%d","unitIds":{"device_id":"d-%d-%d"},' ..
    '"country":"%s","platform":"%s","app_version":"%d.%d.%d","locale":"%s",' ..
    '"acquisition_channel":"%s","days_since_signup":%d,' ..
    '"days_since_last_active":%d,"orders_last_90d":%d,"membership_tier":"%s",' ..
    '"rfm_tier":"%s","is_vip":%s}}',
    tid or 0, n, tid or 0, n, pick(countries), pick(platforms),
    4 + math.random(0, 2), math.random(0, 9), math.random(0, 15),
    pick(locales), pick(channels), spread(120), spread(15), spread(1.5),
    pick(tiers), pick(rfm), math.random(20) == 1 and "true" or "false")
  return wrk.format("POST", path, headers, body)
end
