#include "server/storage/redis/redis_event_store.h"

#include <xxhash.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <iterator>
#include <limits>
#include <map>
#include <utility>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "server/core/event_store_internal.h"
#include "server/storage/redis/cluster_slots.h"
#include "server/storage/redis/redis_scripts.h"

namespace abexp {
namespace {

using internal::DayOfMillis;
using internal::StoreMillis;

constexpr int64_t kOutcomeRecorded = 0;
constexpr int64_t kOutcomeDuplicate = 1;
constexpr int64_t kOutcomeIgnored = 2;
constexpr int64_t kOutcomeConflict = 3;

// The most shards a phase can have.
constexpr int kMaxShards = 1024;
// The most shards the default (one per master) gives a phase: past it a
// batch would split into script calls of a few items each, and a big
// cluster's masters are shared among its many phases anyway.
constexpr int kMaxDefaultShards = 16;

// Items per script call: a call blocks Redis while it runs (about 1 ms for
// 256 items), and a batch's calls all go in one round trip anyway.
constexpr size_t kItemsPerScript = 256;

// XXH3-64 of a domain tag and the bytes, so unit ids and idempotency keys
// never hash alike.
uint64_t TaggedHash(absl::string_view tag, absl::string_view bytes) {
  std::string input = absl::StrCat(tag, absl::string_view("\0", 1), bytes);
  return XXH3_64bits(input.data(), input.size());
}

// 8 raw bytes, big-endian: the hash field of a unit or idempotency key.
std::string HashField(uint64_t h) {
  std::string out(8, '\0');
  for (int i = 7; i >= 0; --i) {
    out[i] = static_cast<char>(h & 0xff);
    h >>= 8;
  }
  return out;
}

// The bucket is taken from the high half so it is independent of the low
// bits Redis's own dict hashing would see.
std::string BucketOf(uint64_t h, int64_t buckets) {
  return absl::StrCat((h >> 32) % static_cast<uint64_t>(buckets));
}

// Shortest text that parses back to exactly the same double.
std::string DoubleArg(double v) { return absl::StrFormat("%.17g", v); }

absl::StatusOr<int64_t> ParseInt(const std::string& s, absl::string_view what) {
  int64_t v = 0;
  if (!absl::SimpleAtoi(s, &v)) {
    return absl::DataLossError(absl::StrFormat(
        "Redis holds '%s' for %s; expected an integer", s, what));
  }
  return v;
}

absl::StatusOr<long double> ParseFloat(const std::string& s,
                                       absl::string_view what) {
  char* end = nullptr;
  long double v = std::strtold(s.c_str(), &end);
  if (s.empty() || end != s.c_str() + s.size()) {
    return absl::DataLossError(
        absl::StrFormat("Redis holds '%s' for %s; expected a number", s, what));
  }
  return v;
}

absl::Status CheckReply(const RedisReply& reply, RedisReply::Type want,
                        absl::string_view what) {
  if (reply.type == RedisReply::Type::kError) {
    return RedisErrorStatus(reply.str, what);
  }
  if (reply.type != want) {
    return absl::InternalError(
        absl::StrCat("unexpected Redis reply type to ", what));
  }
  return absl::OkStatus();
}

// Adds the fields of one aggregate hash (HGETALL reply) to `variants`.
// `metric_keys` maps stored metric signatures to the layout's metrics;
// figures of other signatures (old definitions) are skipped. Binomial and
// retention metrics store only `units`: their x is 0 or 1, so Σx and Σx²
// equal it (hashes written before that layout also hold equal `sum` and
// `sum_sq` fields, which are skipped).
absl::Status ParseFigures(
    const RedisReply& hash,
    const absl::flat_hash_map<std::string, const Metric*>& metric_keys,
    std::vector<VariantAggregate>* variants, int64_t* multi_exposed,
    std::map<std::string, int64_t>* config_versions) {
  for (size_t i = 0; i + 1 < hash.elements.size(); i += 2) {
    const std::string& field = hash.elements[i].str;
    const std::string& value = hash.elements[i + 1].str;
    if (field == "multi") {
      if (multi_exposed == nullptr) continue;
      absl::StatusOr<int64_t> n = ParseInt(value, field);
      if (!n.ok()) return n.status();
      *multi_exposed = *n;
      continue;
    }
    if (absl::StartsWith(field, "cv|")) {
      if (config_versions == nullptr) continue;
      absl::StatusOr<int64_t> n = ParseInt(value, field);
      if (!n.ok()) return n.status();
      (*config_versions)[field.substr(3)] = *n;
      continue;
    }
    if (absl::StartsWith(field, "exposed|")) {
      int v = 0;
      if (!absl::SimpleAtoi(absl::string_view(field).substr(8), &v)) continue;
      if (v < 0 || v >= static_cast<int>(variants->size())) continue;
      absl::StatusOr<int64_t> n = ParseInt(value, field);
      if (!n.ok()) return n.status();
      (*variants)[v].exposed = *n;
      continue;
    }
    // "<variant>|<metric signature>|<statistic>"
    size_t first = field.find('|');
    size_t last = field.rfind('|');
    if (first == std::string::npos || first == last) continue;
    int v = 0;
    if (!absl::SimpleAtoi(absl::string_view(field).substr(0, first), &v))
      continue;
    if (v < 0 || v >= static_cast<int>(variants->size())) continue;
    auto key = metric_keys.find(field.substr(first + 1, last - first - 1));
    if (key == metric_keys.end()) continue;
    MetricAggregate& m = (*variants)[v].metrics[key->second->key];
    const bool zero_one = key->second->type == MetricType::kBinomial ||
                          key->second->type == MetricType::kRetention;
    std::string stat = field.substr(last + 1);
    if (stat == "cuped_units") {
      absl::StatusOr<int64_t> n = ParseInt(value, field);
      if (!n.ok()) return n.status();
      m.cuped_units = *n;
      continue;
    }
    if (long double* cuped = stat == "cuped_sum_x"      ? &m.cuped_sum_x
                             : stat == "cuped_sum_x_sq" ? &m.cuped_sum_x_sq
                             : stat == "cuped_sum_y"    ? &m.cuped_sum_y
                             : stat == "cuped_sum_y_sq" ? &m.cuped_sum_y_sq
                             : stat == "cuped_sum_xy"   ? &m.cuped_sum_xy
                                                        : nullptr) {
      absl::StatusOr<long double> x = ParseFloat(value, field);
      if (!x.ok()) return x.status();
      *cuped = *x;
      continue;
    }
    if (stat == "units") {
      absl::StatusOr<int64_t> n = ParseInt(value, field);
      if (!n.ok()) return n.status();
      m.units = *n;
      if (zero_one) m.sum = m.sum_sq = *n;
      continue;
    }
    if (absl::StartsWith(stat, "step")) {
      // A funnel's "step<k>": the units that reached step k.
      size_t k = 0;
      if (!absl::SimpleAtoi(absl::string_view(stat).substr(4), &k) || k < 1 ||
          k > m.steps.size()) {
        continue;
      }
      absl::StatusOr<int64_t> n = ParseInt(value, field);
      if (!n.ok()) return n.status();
      m.steps[k - 1] = *n;
      continue;
    }
    if (zero_one) continue;
    long double* target = stat == "sum"           ? &m.sum
                          : stat == "sum_sq"      ? &m.sum_sq
                          : stat == "sum_num"     ? &m.sum_num
                          : stat == "sum_den"     ? &m.sum_den
                          : stat == "sum_num_sq"  ? &m.sum_num_sq
                          : stat == "sum_den_sq"  ? &m.sum_den_sq
                          : stat == "sum_num_den" ? &m.sum_num_den
                                                  : nullptr;
    if (target == nullptr) continue;
    absl::StatusOr<long double> x = ParseFloat(value, field);
    if (!x.ok()) return x.status();
    *target = *x;
  }
  return absl::OkStatus();
}

// A unit's values of `metrics`' covariates as the write_exposures script
// takes them: 8 bytes per metric, a little-endian double, NaN where the unit
// lacks the covariate; "" when it has none of them.
std::string PackCovariates(const std::vector<const Metric*>& metrics,
                           const std::map<std::string, double>& values) {
  std::string out;
  bool any = false;
  for (const Metric* m : metrics) {
    auto it = values.find(m->covariate);
    double x = std::numeric_limits<double>::quiet_NaN();
    if (it != values.end()) {
      x = it->second;
      any = true;
    }
    uint64_t bits = 0;
    std::memcpy(&bits, &x, sizeof bits);
    for (int i = 0; i < 8; ++i) {
      out.push_back(static_cast<char>((bits >> (8 * i)) & 0xff));
    }
  }
  return any ? out : std::string();
}

// Settles segment slots in a phase's registry KEYS[1] (<base>seg). ARGV:
// triples of dimension attribute, value ('' to learn only the dimension's
// id), max_values. Returns per triple the dimension's id (1 to 255, given
// in order of first use) and the value's slot: 0 for '', its slot when it
// has one, a new one while fewer than max_values are taken, else 255
// (other). Registry fields: d|<attr> -> id, dnext, n|<id> -> slots taken,
// v|<id>|<value> -> slot, s|<id>|<slot> -> value.
constexpr char kSettleSegmentsScript[] = R"lua(
local reg = KEYS[1]
local out = {}
for i = 1, #ARGV - 2, 3 do
  local attr, value, max = ARGV[i], ARGV[i + 1], tonumber(ARGV[i + 2])
  local id = redis.call('HGET', reg, 'd|' .. attr)
  if not id then
    id = redis.call('HINCRBY', reg, 'dnext', 1)
    if id > 255 then
      return redis.error_reply('ABEXP_DIMENSIONS more than 255 dimensions')
    end
    redis.call('HSET', reg, 'd|' .. attr, id)
  end
  id = tonumber(id)
  local slot = 0
  if value ~= '' then
    local got = redis.call('HGET', reg, 'v|' .. id .. '|' .. value)
    if got then
      slot = tonumber(got)
    else
      local taken = tonumber(redis.call('HGET', reg, 'n|' .. id) or '0')
      if taken < max then
        slot = taken + 1
        redis.call('HSET', reg, 'n|' .. id, slot, 'v|' .. id .. '|' .. value,
                   slot, 's|' .. id .. '|' .. slot, value)
      else
        slot = 255
      end
    end
  end
  out[#out + 1] = id
  out[#out + 1] = slot
end
return out
)lua";

// The slot of units without the attribute, and of "(other)".
constexpr int kNoneSlot = 0;
constexpr int kOtherSlot = 255;

std::vector<VariantAggregate> EmptyVariants(const ExperimentLayout& layout) {
  std::vector<VariantAggregate> variants(layout.variant_keys.size());
  for (VariantAggregate& v : variants) {
    for (const Metric& m : layout.metrics) {
      v.metrics[m.key].steps.assign(m.steps.size(), 0);
    }
  }
  return variants;
}

}  // namespace

absl::StatusOr<std::unique_ptr<RedisEventStore>> RedisEventStore::Create(
    RedisClient* redis, RedisEventStoreOptions options) {
  if (redis == nullptr) {
    return absl::InvalidArgumentError(
        "RedisEventStore needs a RedisPool or a RedisCluster");
  }
  if (options.idempotency_ttl < absl::Minutes(1)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "idempotency_ttl is ", absl::FormatDuration(options.idempotency_ttl),
        "; retries are only safe within it, so use at least 1m (default 7 "
        "days)"));
  }
  if (!options.clock) {
    return absl::InvalidArgumentError("RedisEventStore needs a clock");
  }
  constexpr int kMaxConfigVersionsLimit = 1000;
  if (options.max_config_versions < 1 ||
      options.max_config_versions > kMaxConfigVersionsLimit) {
    return absl::InvalidArgumentError(
        absl::StrFormat("max_config_versions is %d; use 1 to %d (default %d)",
                        options.max_config_versions, kMaxConfigVersionsLimit,
                        kDefaultMaxConfigVersions));
  }
  constexpr int kMaxBuckets = 1 << 24;
  if (options.unit_buckets < 1 || options.unit_buckets > kMaxBuckets) {
    return absl::InvalidArgumentError(
        absl::StrFormat("unit_buckets is %d; use 1 to %d (default 131072, for "
                        "~10 million units)",
                        options.unit_buckets, kMaxBuckets));
  }
  if (options.idempotency_buckets < 1 ||
      options.idempotency_buckets > kMaxBuckets) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "idempotency_buckets is %d; use 1 to %d (default 65536)",
        options.idempotency_buckets, kMaxBuckets));
  }
  if (options.shards < 0 || options.shards > kMaxShards) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "shards is %d; use 1 to %d, or 0 for one per master (1 on a single "
        "Redis)",
        options.shards, kMaxShards));
  }
  return std::unique_ptr<RedisEventStore>(
      new RedisEventStore(redis, std::move(options)));
}

RedisEventStore::RedisEventStore(RedisClient* redis,
                                 RedisEventStoreOptions options)
    : redis_(redis),
      options_(std::move(options)),
      write_exposures_(redis_scripts::WriteExposures()),
      write_events_(redis_scripts::WriteEvents()),
      settle_segments_(kSettleSegmentsScript) {}

std::string RedisEventStore::KeyBase(const ExperimentLayout& layout) const {
  return absl::StrCat(redis_->key_prefix(), ":{e:", layout.key, ":",
                      layout.phase, "}:");
}

std::string RedisEventStore::ShardBase(const std::string& base, int64_t shard,
                                       int64_t shards) {
  if (shard == 0) return base;
  const std::string cache_key = absl::StrCat(base, "\n", shards);
  {
    absl::MutexLock lock(&mu_);
    auto it = shard_bases_.find(cache_key);
    if (it != shard_bases_.end()) return it->second[shard];
  }
  // base is "<prefix>:{<tag>}:"; each shard's tag goes inside the braces.
  const absl::string_view prefix = redis_->key_prefix();
  const absl::string_view tag0 = absl::string_view(base).substr(
      prefix.size() + 2, base.size() - prefix.size() - 4);
  std::vector<std::string> bases(shards);
  for (int64_t k = 0; k < shards; ++k) {
    bases[k] = absl::StrCat(
        prefix, ":{",
        SpreadShardTag(tag0, static_cast<int>(k), static_cast<int>(shards)),
        "}:");
  }
  absl::MutexLock lock(&mu_);
  return shard_bases_.try_emplace(cache_key, std::move(bases))
      .first->second[shard];
}

namespace {

// The fields of a phase's shard 0 meta that say how its keys are laid out.
RedisCommand ReadLayoutFields(const std::string& meta) {
  return {"HMGET", meta, "unit_buckets", "idempotency_buckets", "shards"};
}

}  // namespace

absl::StatusOr<RedisEventStore::Buckets> RedisEventStore::CreateBuckets(
    const std::string& base) {
  {
    absl::MutexLock lock(&mu_);
    auto it = buckets_.find(base);
    if (it != buckets_.end()) return it->second;
  }
  std::string meta = base + "meta";
  // Proposed only; the first writer's S stays (HSETNX below).
  const int64_t shards =
      options_.shards > 0
          ? options_.shards
          : std::clamp<int64_t>(redis_->MasterCount(), 1, kMaxDefaultShards);
  if (shards > 1) {
    // A phase written before shards existed has bucket counts and no
    // `shards`: it stays one shard, so it must not be given more.
    absl::StatusOr<std::optional<Buckets>> stored = BucketsOfPhase(base);
    if (!stored.ok()) return stored.status();
    if (stored->has_value()) return **stored;
  }
  // `shards` first: a meta with bucket counts and no `shards` is then
  // always one written before shards existed.
  std::vector<RedisCommand> commands = {
      {"HSETNX", meta, "shards", absl::StrCat(shards)},
      {"HSETNX", meta, "unit_buckets",
       absl::StrCat((options_.unit_buckets + shards - 1) / shards)},
      {"HSETNX", meta, "idempotency_buckets",
       absl::StrCat((options_.idempotency_buckets + shards - 1) / shards)},
      ReadLayoutFields(meta)};
  absl::StatusOr<std::vector<RedisReply>> replies = redis_->Pipeline(commands);
  if (!replies.ok()) return replies.status();
  absl::StatusOr<std::optional<Buckets>> buckets =
      ParseBuckets(base, replies->back());
  if (!buckets.ok()) return buckets.status();
  if (!buckets->has_value())
    return absl::InternalError("bucket counts missing after HSETNX");
  return **buckets;
}

absl::StatusOr<std::optional<RedisEventStore::Buckets>>
RedisEventStore::BucketsOfPhase(const std::string& base) {
  absl::StatusOr<absl::flat_hash_map<std::string, std::optional<Buckets>>>
      phases = BucketsOfPhases({base});
  if (!phases.ok()) return phases.status();
  return (*phases)[base];
}

absl::StatusOr<std::optional<RedisEventStore::Buckets>>
RedisEventStore::ParseBuckets(const std::string& base, const RedisReply& got) {
  std::string meta = base + "meta";
  if (absl::Status s =
          CheckReply(got, RedisReply::Type::kArray, "reading " + meta);
      !s.ok()) {
    return s;
  }
  if (got.elements.size() != 3 ||
      got.elements[0].type != RedisReply::Type::kString ||
      got.elements[1].type != RedisReply::Type::kString) {
    return std::nullopt;
  }
  Buckets buckets;
  absl::StatusOr<int64_t> units =
      ParseInt(got.elements[0].str, meta + " unit_buckets");
  if (!units.ok()) return units.status();
  absl::StatusOr<int64_t> idem =
      ParseInt(got.elements[1].str, meta + " idempotency_buckets");
  if (!idem.ok()) return idem.status();
  if (*units < 1 || *idem < 1) {
    return absl::DataLossError(
        absl::StrCat(meta, " holds bucket counts below 1"));
  }
  buckets.units = *units;
  buckets.idempotency = *idem;
  if (got.elements[2].type == RedisReply::Type::kString) {
    absl::StatusOr<int64_t> shards =
        ParseInt(got.elements[2].str, meta + " shards");
    if (!shards.ok()) return shards.status();
    if (*shards < 1) {
      return absl::DataLossError(
          absl::StrCat(meta, " holds a shard count below 1"));
    }
    buckets.shards = *shards;
  }
  absl::MutexLock lock(&mu_);
  buckets_[base] = buckets;
  return buckets;
}

absl::StatusOr<
    absl::flat_hash_map<std::string, std::optional<RedisEventStore::Buckets>>>
RedisEventStore::BucketsOfPhases(const std::vector<std::string>& bases) {
  absl::flat_hash_map<std::string, std::optional<Buckets>> phases;
  std::vector<std::string> unknown;
  {
    absl::MutexLock lock(&mu_);
    for (const std::string& base : bases) {
      if (phases.contains(base)) continue;
      auto it = buckets_.find(base);
      if (it != buckets_.end()) {
        phases[base] = it->second;
      } else {
        phases[base] = std::nullopt;
        unknown.push_back(base);
      }
    }
  }
  if (unknown.empty()) return phases;
  std::vector<RedisCommand> reads;
  reads.reserve(unknown.size());
  for (const std::string& base : unknown) {
    reads.push_back(ReadLayoutFields(base + "meta"));
  }
  absl::StatusOr<std::vector<RedisReply>> replies = redis_->Pipeline(reads);
  if (!replies.ok()) return replies.status();
  for (size_t i = 0; i < unknown.size(); ++i) {
    absl::StatusOr<std::optional<Buckets>> buckets =
        ParseBuckets(unknown[i], (*replies)[i]);
    if (!buckets.ok()) return buckets.status();
    phases[unknown[i]] = *buckets;
  }
  return phases;
}

absl::Status RedisEventStore::ScriptError(const ExperimentLayout& layout,
                                          const std::string& meta,
                                          const RedisReply& reply) {
  if (absl::StrContains(reply.str, "ABEXP_VARIANTS")) {
    // Redis flattens newlines in error replies, so read the stored keys.
    std::vector<RedisCommand> get = {{"HGET", meta, "variants"}};
    absl::StatusOr<std::vector<RedisReply>> stored = redis_->Pipeline(get);
    if (!stored.ok()) return stored.status();
    std::string merged;
    absl::Status s =
        internal::CheckVariantKeys(layout, (*stored)[0].str, &merged);
    if (!s.ok()) return s;
  }
  if (absl::StrContains(reply.str, "ABEXP_ARGS")) {
    // The store checks what the scripts check before sending, so this is a
    // bug; the script refused before writing anything.
    return absl::InternalError(absl::StrCat(
        "abexp's Redis script refused its arguments and wrote nothing (",
        reply.str, "); this is a bug in abexp-server, please report it"));
  }
  if (absl::StrContains(reply.str, "ABEXP_STATE")) {
    return absl::FailedPreconditionError(absl::StrFormat(
        "experiment '%s' phase %d holds a unit total beyond ±1e150, left by "
        "an abexp-server that did not bound event values, so its figures "
        "cannot be trusted; bump the experiment's `phase` to start afresh",
        layout.key, layout.phase));
  }
  if (absl::StrContains(reply.str, "ABEXP_METRICS")) {
    return absl::FailedPreconditionError(
        absl::StrFormat("experiment '%s' phase %d has had more than 254 metric "
                        "definitions; bump the "
                        "experiment's `phase` to start afresh",
                        layout.key, layout.phase));
  }
  return RedisErrorStatus(reply.str, "abexp's Redis script");
}

absl::StatusOr<std::vector<WriteOutcome>> RedisEventStore::Outcomes(
    const ExperimentLayout& layout, absl::Span<const RedisScriptCall> calls,
    absl::Span<const RedisReply> replies, size_t items) {
  std::vector<WriteOutcome> outcomes;
  outcomes.reserve(items);
  for (size_t c = 0; c < replies.size(); ++c) {
    const RedisReply& chunk = replies[c];
    if (chunk.type == RedisReply::Type::kError)
      return ScriptError(layout, calls[c].keys[0], chunk);
    if (chunk.type != RedisReply::Type::kArray) {
      return absl::InternalError(
          "abexp's Redis script returned a reply that is not an array");
    }
    for (const RedisReply& r : chunk.elements) {
      if (r.type != RedisReply::Type::kInteger) {
        return absl::InternalError(
            "abexp's Redis script returned a non-integer outcome");
      }
      switch (r.integer) {
        case kOutcomeRecorded:
          outcomes.push_back(WriteOutcome::kRecorded);
          break;
        case kOutcomeDuplicate:
          outcomes.push_back(WriteOutcome::kDuplicate);
          break;
        case kOutcomeIgnored:
          outcomes.push_back(WriteOutcome::kIgnored);
          break;
        case kOutcomeConflict:
          outcomes.push_back(WriteOutcome::kConflict);
          break;
        default:
          return absl::InternalError(
              absl::StrCat("abexp's Redis script returned ", r.integer));
      }
    }
  }
  if (outcomes.size() != items) {
    return absl::InternalError(absl::StrCat("abexp's Redis script returned ",
                                            outcomes.size(), " outcomes for ",
                                            items, " items"));
  }
  return outcomes;
}

namespace {

// The call-wide idempotency arguments of both scripts: the generation
// floor(now / TTL) and when its hashes expire (the end of the next one).
void AppendGenerationArgs(absl::Duration ttl, absl::Time now,
                          std::vector<std::string>* args) {
  const int64_t ttl_s = absl::ToInt64Seconds(ttl);
  const int64_t gen = absl::ToUnixSeconds(now) / ttl_s;
  args->push_back(absl::StrCat(gen));
  args->push_back(absl::StrCat((gen + 2) * ttl_s));
}

// An item's idempotency arguments: bucket and field.
void AppendIdempotencyArgs(int64_t buckets, absl::string_view kind,
                           const std::string& key,
                           std::vector<std::string>* args) {
  uint64_t h = TaggedHash(absl::StrCat("abexp.idempotency.", kind), key);
  args->push_back(BucketOf(h, buckets));
  args->push_back(HashField(h));
}

// A unit's bucket (from the hash's high half) and field.
void AppendUnitArgs(int64_t buckets, const std::string& unit_id,
                    std::vector<std::string>* args) {
  uint64_t h = TaggedHash("abexp.unit", unit_id);
  args->push_back(BucketOf(h, buckets));
  args->push_back(HashField(h));
}

// The shard of a unit, from its hash's low half so that it is independent
// of its bucket.
int64_t ShardOf(int64_t shards, const std::string& unit_id) {
  if (shards == 1) return 0;
  uint64_t h = TaggedHash("abexp.unit", unit_id);
  return static_cast<int64_t>((h & 0xffffffffu) %
                              static_cast<uint64_t>(shards));
}

// The times a unit record can hold: 6 bytes of signed milliseconds.
constexpr int64_t kMaxStoreMillis = (int64_t{1} << 47) - 1;

// INVALID_ARGUMENT unless `t` fits a unit record; `what` names the item.
absl::Status CheckStoreTime(absl::Time t, absl::string_view what) {
  const int64_t ms = StoreMillis(t);
  if (ms >= -kMaxStoreMillis - 1 && ms <= kMaxStoreMillis) {
    return absl::OkStatus();
  }
  return absl::InvalidArgumentError(absl::StrCat(
      what, ".time is ", absl::FormatTime(t),
      ", beyond the 4,459 years either side of 1970 the store can keep; send "
      "the time it happened"));
}

// INVALID_ARGUMENT naming the first event the scripts would refuse: a value
// that is not finite or beyond ±kMaxEventValue (its square could overflow a
// sum of squares), or a time a unit record cannot hold. Checked before
// anything is sent, so a caller that bypasses the recorder's checks cannot
// reach the scripts with them.
absl::Status CheckEvents(const ExperimentLayout& layout,
                         absl::Span<const Event* const> events) {
  for (size_t j = 0; j < events.size(); ++j) {
    const std::optional<double>& value = events[j]->value;
    // NaN fails the comparison too.
    if (value.has_value() && !(std::fabs(*value) <= kMaxEventValue)) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "events[%d].value is %g (experiment '%s'); values must be finite "
          "and within ±%g so that sums of squares cannot overflow; send it in "
          "a larger unit, or leave it out",
          j, *value, layout.key, kMaxEventValue));
    }
    if (absl::Status s =
            CheckStoreTime(events[j]->time, absl::StrCat("events[", j, "]"));
        !s.ok()) {
      return s;
    }
  }
  return absl::OkStatus();
}

// The 8-byte header of a packed unit record (docs/storage.md, "Unit
// records"): variant, flags, first exposure as 6 bytes little-endian signed
// (Lua struct '<BBi6').
struct UnitHeader {
  int variant = 0;
  bool multi_exposed = false;
  int64_t first_ms = 0;
};

// DATA_LOSS naming `hash` when the record is shorter than its header.
absl::StatusOr<UnitHeader> ParseUnitHeader(absl::string_view record,
                                           absl::string_view hash) {
  if (record.size() < 8) {
    return absl::DataLossError(absl::StrCat(
        "unit record in ", hash, " is shorter than its 8-byte header"));
  }
  UnitHeader header;
  header.variant = static_cast<unsigned char>(record[0]);
  header.multi_exposed = (static_cast<unsigned char>(record[1]) & 1) != 0;
  uint64_t ms = 0;
  for (int i = 7; i >= 2; --i) {
    ms = (ms << 8) | static_cast<unsigned char>(record[i]);
  }
  if (ms & (uint64_t{1} << 47)) ms |= ~((uint64_t{1} << 48) - 1);
  header.first_ms = static_cast<int64_t>(ms);
  return header;
}

}  // namespace

absl::StatusOr<std::vector<WriteOutcome>> RedisEventStore::WriteExposures(
    const ExperimentLayout& layout, absl::Span<const Exposure> exposures) {
  if (absl::Status s = internal::CheckExposures(layout, exposures); !s.ok())
    return s;
  for (size_t i = 0; i < exposures.size(); ++i) {
    if (absl::Status s = CheckStoreTime(exposures[i].time,
                                        absl::StrCat("exposures[", i, "]"));
        !s.ok()) {
      return s;
    }
  }
  if (exposures.empty()) return std::vector<WriteOutcome>{};
  std::string base = KeyBase(layout);
  absl::StatusOr<Buckets> buckets = CreateBuckets(base);
  if (!buckets.ok()) return buckets.status();
  const Buckets& b = *buckets;

  std::vector<std::string> versions;
  int64_t max_versions = options_.max_config_versions;
  if (b.shards > 1) {
    absl::StatusOr<std::vector<std::string>> settled =
        SettleShardedPhase(base, layout, exposures);
    if (!settled.ok()) return settled.status();
    versions = *std::move(settled);
    // Each shard then holds at most the versions counted apart and "other".
    ++max_versions;
  }
  absl::StatusOr<std::vector<std::string>> segments =
      SettleSegments(base, layout, exposures);
  if (!segments.ok()) return segments.status();
  // Each shard's exposures, in order; a unit's are all in one shard.
  std::vector<std::vector<size_t>> of_shard(b.shards);
  for (size_t i = 0; i < exposures.size(); ++i) {
    of_shard[ShardOf(b.shards, exposures[i].unit_id)].push_back(i);
  }
  // Per shard, chunks of kItemsPerScript exposures, one script call each,
  // all in one round trip (one per master on a cluster).
  std::vector<std::string> head = {""};  // the shard's base, set below
  AppendGenerationArgs(options_.idempotency_ttl, options_.clock(), &head);
  head.push_back(internal::JoinVariantKeys(layout.variant_keys));
  head.push_back(absl::StrCat(b.units));
  head.push_back(absl::StrCat(b.idempotency));
  head.push_back(absl::StrCat(max_versions));
  // The metrics with a covariate, and each exposure's values of them.
  std::vector<const Metric*> with_covariate;
  for (const Metric& m : layout.metrics) {
    if (!m.covariate.empty()) with_covariate.push_back(&m);
  }
  std::vector<std::string> covariate_sigs;
  for (const Metric* m : with_covariate) {
    covariate_sigs.push_back(internal::MetricSignature(*m));
  }
  head.push_back(absl::StrJoin(covariate_sigs, "\n"));
  std::vector<RedisScriptCall> calls;
  std::vector<size_t> sent;  // exposure indices in the calls' order
  sent.reserve(exposures.size());
  for (int64_t shard = 0; shard < b.shards; ++shard) {
    const std::vector<size_t>& items = of_shard[shard];
    if (items.empty()) continue;
    head[0] = ShardBase(base, shard, b.shards);
    for (size_t start = 0; start < items.size(); start += kItemsPerScript) {
      const size_t end = std::min(items.size(), start + kItemsPerScript);
      RedisScriptCall& call = calls.emplace_back();
      call.script = &write_exposures_;
      call.keys = {head[0] + "meta"};
      call.args = head;
      call.args.reserve(head.size() + 1 +
                        (end - start) * redis_scripts::kExposureItemArgs);
      call.args.push_back(absl::StrCat(end - start));
      for (size_t k = start; k < end; ++k) {
        const Exposure& e = exposures[items[k]];
        AppendIdempotencyArgs(b.idempotency, "exposure", e.idempotency_key,
                              &call.args);
        AppendUnitArgs(b.units, e.unit_id, &call.args);
        call.args.push_back(absl::StrCat(e.variant_index));
        call.args.push_back(absl::StrCat(StoreMillis(e.time)));
        call.args.push_back(versions.empty() ? e.config_version
                                             : versions[items[k]]);
        call.args.push_back(PackCovariates(with_covariate, e.covariates));
        call.args.push_back((*segments)[items[k]]);
        sent.push_back(items[k]);
      }
    }
  }
  absl::StatusOr<std::vector<RedisReply>> replies = redis_->RunScripts(calls);
  if (!replies.ok()) return replies.status();
  absl::StatusOr<std::vector<WriteOutcome>> applied =
      Outcomes(layout, calls, *replies, exposures.size());
  if (!applied.ok()) return applied.status();
  std::vector<WriteOutcome> outcomes(exposures.size());
  for (size_t k = 0; k < sent.size(); ++k) outcomes[sent[k]] = (*applied)[k];
  return outcomes;
}

absl::StatusOr<std::vector<std::string>> RedisEventStore::SettleSegments(
    const std::string& base, const ExperimentLayout& layout,
    absl::Span<const Exposure> exposures) {
  std::vector<std::string> packed(exposures.size());
  const size_t dims = layout.dimensions.size();
  if (dims == 0) return packed;
  // ids[d]; slots[i * dims + d] of exposure i, -1 until settled.
  std::vector<int> ids(dims, -1);
  std::vector<int> slots(exposures.size() * dims, -1);
  // What to ask the registry: "<d>\n<value>" -> triple index, and the
  // slots waiting on each triple.
  absl::flat_hash_map<std::string, size_t> asked;
  std::vector<std::vector<size_t>> waiting;
  std::vector<size_t> asked_dim;
  std::vector<std::string> asked_value;
  RedisScriptCall call;
  call.script = &settle_segments_;
  call.keys = {base + "seg"};
  auto ask = [&](size_t d, const std::string& value, size_t slot_index) {
    auto [it, fresh] =
        asked.try_emplace(absl::StrCat(d, "\n", value), waiting.size());
    if (fresh) {
      waiting.emplace_back();
      asked_dim.push_back(d);
      asked_value.push_back(value);
      const Dimension& dim = layout.dimensions[d];
      call.args.insert(call.args.end(),
                       {dim.attribute, value, absl::StrCat(dim.max_values)});
    }
    if (slot_index != SIZE_MAX) waiting[it->second].push_back(slot_index);
  };
  {
    absl::MutexLock lock(&mu_);
    for (size_t d = 0; d < dims; ++d) {
      const Dimension& dim = layout.dimensions[d];
      const std::string prefix = absl::StrCat(base, "\n", dim.attribute);
      auto id = dimension_ids_.find(prefix);
      if (id != dimension_ids_.end()) {
        ids[d] = id->second;
      } else {
        ask(d, "", SIZE_MAX);
      }
      const bool full =
          full_dimensions_.contains(absl::StrCat(prefix, "\n", dim.max_values));
      for (size_t i = 0; i < exposures.size(); ++i) {
        const std::string segment =
            internal::SegmentOf(exposures[i].dimensions, dim.attribute);
        int& slot = slots[i * dims + d];
        if (segment == kNoneSegment) {
          slot = kNoneSlot;
        } else if (segment == kOtherSegment) {
          slot = kOtherSlot;
        } else if (auto known =
                       segment_slots_.find(absl::StrCat(prefix, "\n", segment));
                   known != segment_slots_.end()) {
          slot = known->second;
        } else if (full) {
          slot = kOtherSlot;
        } else {
          ask(d, segment, i * dims + d);
        }
      }
    }
  }
  if (!waiting.empty()) {
    absl::StatusOr<std::vector<RedisReply>> replies =
        redis_->RunScripts({call});
    if (!replies.ok()) return replies.status();
    const RedisReply& reply = (*replies)[0];
    if (absl::Status s = CheckReply(reply, RedisReply::Type::kArray,
                                    "the segment registry script");
        !s.ok()) {
      return s;
    }
    if (reply.elements.size() != 2 * waiting.size()) {
      return absl::InternalError(
          "the segment registry script returned a reply of the wrong size");
    }
    absl::MutexLock lock(&mu_);
    for (size_t k = 0; k < waiting.size(); ++k) {
      const int id = static_cast<int>(reply.elements[2 * k].integer);
      const int slot = static_cast<int>(reply.elements[2 * k + 1].integer);
      const size_t d = asked_dim[k];
      const Dimension& dim = layout.dimensions[d];
      const std::string prefix = absl::StrCat(base, "\n", dim.attribute);
      ids[d] = id;
      dimension_ids_[prefix] = id;
      if (slot == kOtherSlot) {
        full_dimensions_.insert(absl::StrCat(prefix, "\n", dim.max_values));
      } else if (!asked_value[k].empty()) {
        segment_slots_[absl::StrCat(prefix, "\n", asked_value[k])] = slot;
      }
      for (size_t index : waiting[k]) slots[index] = slot;
    }
  }
  for (size_t i = 0; i < exposures.size(); ++i) {
    std::string& entry = packed[i];
    for (size_t d = 0; d < dims; ++d) {
      entry.push_back(static_cast<char>(ids[d]));
      entry.push_back(static_cast<char>(slots[i * dims + d]));
    }
  }
  return packed;
}

absl::StatusOr<std::vector<std::string>> RedisEventStore::SettleShardedPhase(
    const std::string& base, const ExperimentLayout& layout,
    absl::Span<const Exposure> exposures) {
  const std::string meta = base + "meta";
  const std::string registry = base + "cvreg";
  const std::string joined = internal::JoinVariantKeys(layout.variant_keys);
  bool variants_known = false;
  std::vector<std::string> unknown;  // versions not settled yet
  {
    absl::MutexLock lock(&mu_);
    auto it = checked_variants_.find(base);
    variants_known = it != checked_variants_.end() && it->second == joined;
    absl::flat_hash_set<std::string> seen;
    for (const Exposure& e : exposures) {
      if (!counted_apart_.contains(
              absl::StrCat(base, "\n", e.config_version)) &&
          seen.insert(e.config_version).second) {
        unknown.push_back(e.config_version);
      }
    }
  }
  // One round trip: the stored variant keys (this layout's if none are),
  // and which unsettled versions the registry holds.
  std::vector<RedisCommand> reads;
  if (!variants_known) {
    reads.push_back({"HSETNX", meta, "variants", joined});
    reads.push_back({"HGET", meta, "variants"});
  }
  for (const std::string& v : unknown) {
    reads.push_back({"HEXISTS", registry, "v|" + v});
  }
  if (!reads.empty()) {
    absl::StatusOr<std::vector<RedisReply>> got = redis_->Pipeline(reads);
    if (!got.ok()) return got.status();
    size_t next = 0;
    if (!variants_known) {
      const RedisReply& stored = (*got)[1];
      if (absl::Status s =
              CheckReply(stored, RedisReply::Type::kString, "HGET variants");
          !s.ok()) {
        return s;
      }
      std::string merged;
      if (absl::Status s =
              internal::CheckVariantKeys(layout, stored.str, &merged);
          !s.ok()) {
        return s;
      }
      if (merged != stored.str) {
        std::vector<RedisCommand> append = {{"HSET", meta, "variants", merged}};
        absl::StatusOr<std::vector<RedisReply>> set = redis_->Pipeline(append);
        if (!set.ok()) return set.status();
      }
      next = 2;
    }
    // A version not registered takes a place while fewer than the limit
    // are taken (HINCRBY, then HSETNX of the version), and gives it back
    // when the places are all taken or another writer registered it first.
    std::vector<std::string> unregistered;
    for (size_t i = 0; i < unknown.size(); ++i) {
      if ((*got)[next + i].integer == 0) unregistered.push_back(unknown[i]);
    }
    std::vector<bool> apart(unknown.size(), true);
    if (!unregistered.empty()) {
      std::vector<RedisCommand> take;
      for (size_t i = 0; i < unregistered.size(); ++i) {
        take.push_back({"HINCRBY", registry, "n", "1"});
      }
      absl::StatusOr<std::vector<RedisReply>> taken = redis_->Pipeline(take);
      if (!taken.ok()) return taken.status();
      std::vector<RedisCommand> settle;
      for (size_t i = 0; i < unregistered.size(); ++i) {
        if ((*taken)[i].integer <= options_.max_config_versions) {
          settle.push_back({"HSETNX", registry, "v|" + unregistered[i], "1"});
        } else {
          settle.push_back({"HINCRBY", registry, "n", "-1"});
        }
      }
      absl::StatusOr<std::vector<RedisReply>> settled =
          redis_->Pipeline(settle);
      if (!settled.ok()) return settled.status();
      std::vector<RedisCommand> give_back;
      absl::flat_hash_set<std::string> other;
      for (size_t i = 0; i < unregistered.size(); ++i) {
        if (settle[i][0] == "HINCRBY") {
          other.insert(unregistered[i]);
        } else if ((*settled)[i].integer == 0) {
          give_back.push_back({"HINCRBY", registry, "n", "-1"});
        }
      }
      if (!give_back.empty()) {
        absl::StatusOr<std::vector<RedisReply>> back =
            redis_->Pipeline(give_back);
        if (!back.ok()) return back.status();
      }
      for (size_t i = 0; i < unknown.size(); ++i) {
        apart[i] = !other.contains(unknown[i]);
      }
    }
    absl::MutexLock lock(&mu_);
    checked_variants_[base] = joined;
    for (size_t i = 0; i < unknown.size(); ++i) {
      counted_apart_[absl::StrCat(base, "\n", unknown[i])] = apart[i];
    }
  }
  std::vector<std::string> versions;
  versions.reserve(exposures.size());
  absl::MutexLock lock(&mu_);
  for (const Exposure& e : exposures) {
    versions.push_back(
        counted_apart_[absl::StrCat(base, "\n", e.config_version)]
            ? e.config_version
            : std::string(kOtherConfigVersion));
  }
  return versions;
}

namespace {

// The event script's arguments for the metrics of `layout` that event `name`
// feeds: their count, then kMetricArgs each.
std::vector<std::string> MetricArgs(const ExperimentLayout& layout,
                                    const std::string& name) {
  std::vector<std::string> args;
  args.push_back("");  // the count, set below
  int count = 0;
  auto aggregation = [&](const MetricSource& source) -> const char* {
    if (source.event != name) return "0";
    return source.aggregation == EventAggregation::kCount ? "1" : "2";
  };
  for (size_t i = 0; i < layout.metrics.size(); ++i) {
    const Metric& m = layout.metrics[i];
    const char* type = "b";
    const char* a = "0";
    const char* d = "0";
    switch (m.type) {
      case MetricType::kBinomial:
        type = "b";
        a = aggregation(m.source);
        break;
      case MetricType::kRetention:
        type = "t";
        a = aggregation(m.source);
        break;
      case MetricType::kSum:
        type = "s";
        a = aggregation(m.source);
        break;
      case MetricType::kRatio:
        type = "r";
        a = aggregation(m.numerator);
        d = aggregation(m.denominator);
        break;
      case MetricType::kFunnel:
        break;
    }
    if (m.type == MetricType::kFunnel) {
      // A funnel: the (1-based) step whose event this is, and that step's
      // own window in ms (0: none).
      size_t step = 0;
      while (step < m.steps.size() && m.steps[step].event != name) ++step;
      if (step == m.steps.size()) continue;
      const std::optional<absl::Duration>& w = m.steps[step].window;
      args.push_back(internal::MetricSignature(m));
      args.push_back("f");
      args.push_back(absl::StrCat(step + 1));
      args.push_back(absl::StrCat(w ? absl::ToInt64Milliseconds(*w) : 0));
      args.push_back(absl::StrCat(absl::ToInt64Milliseconds(m.window)));
      args.push_back("0");
      ++count;
      continue;
    }
    if (a[0] == '0' && d[0] == '0') continue;
    args.push_back(internal::MetricSignature(m));
    args.push_back(type);
    args.push_back(a);
    args.push_back(d);
    args.push_back(absl::StrCat(absl::ToInt64Milliseconds(m.window)));
    args.push_back(absl::StrCat(m.retention_day));
    ++count;
  }
  args[0] = absl::StrCat(count);
  return args;
}

}  // namespace

absl::StatusOr<std::vector<WriteOutcome>> RedisEventStore::WriteEvents(
    const ExperimentLayout& layout, absl::Span<const Event> events) {
  std::vector<const Event*> pointers;
  pointers.reserve(events.size());
  for (const Event& e : events) pointers.push_back(&e);
  const EventBatch batch{&layout, pointers};
  return std::move(WriteEventBatches(absl::MakeConstSpan(&batch, 1))[0]);
}

// A unit an event batch names, and where its record is in the reads.
struct RedisEventStore::UnitRef {
  int64_t shard = 0;
  std::string bucket;
  std::string field;
  size_t read = 0;     // index into reads
  size_t element = 0;  // index into that HMGET's reply
};

// What WriteEventBatches does with one batch.
struct RedisEventStore::EventPlan {
  bool active = false;  // has events and a written phase, no error yet
  std::string base;
  Buckets buckets;
  std::vector<UnitRef> units;
  std::vector<size_t> unit_of;  // event -> units index
  std::vector<size_t> called;   // events that go to the script
  size_t first_call = 0;        // its script calls in `calls`
  size_t call_count = 0;
};

void RedisEventStore::PlanPhases(absl::Span<const EventBatch> batches,
                                 std::vector<EventPlan>* plans,
                                 std::vector<WriteResult>* results) {
  std::vector<bool> valid(batches.size(), false);
  std::vector<std::string> bases;
  for (size_t i = 0; i < batches.size(); ++i) {
    if (batches[i].events.empty()) continue;
    if (absl::Status s = CheckEvents(*batches[i].layout, batches[i].events);
        !s.ok()) {
      (*results)[i] = s;
      continue;
    }
    valid[i] = true;
    (*plans)[i].base = KeyBase(*batches[i].layout);
    bases.push_back((*plans)[i].base);
  }
  absl::StatusOr<absl::flat_hash_map<std::string, std::optional<Buckets>>>
      phases = BucketsOfPhases(bases);
  for (size_t i = 0; i < batches.size(); ++i) {
    if (!valid[i]) continue;
    if (!phases.ok()) {
      (*results)[i] = phases.status();
      continue;
    }
    const std::optional<Buckets>& buckets = (*phases)[(*plans)[i].base];
    if (!buckets.has_value()) continue;
    (*plans)[i].active = true;
    (*plans)[i].buckets = *buckets;
  }
}

std::vector<RedisCommand> RedisEventStore::PlanUnitReads(
    absl::Span<const EventBatch> batches, std::vector<EventPlan>* plans) {
  std::vector<RedisCommand> reads;
  for (size_t i = 0; i < batches.size(); ++i) {
    EventPlan& plan = (*plans)[i];
    if (!plan.active) continue;
    absl::Span<const Event* const> events = batches[i].events;
    absl::flat_hash_map<std::string, size_t> read_of_bucket;
    absl::flat_hash_map<absl::string_view, size_t> unit_index;  // by unit id
    plan.unit_of.resize(events.size());
    for (size_t j = 0; j < events.size(); ++j) {
      auto [it, inserted] =
          unit_index.try_emplace(events[j]->unit_id, plan.units.size());
      plan.unit_of[j] = it->second;
      if (!inserted) continue;
      std::vector<std::string> args;
      AppendUnitArgs(plan.buckets.units, events[j]->unit_id, &args);
      UnitRef& unit = plan.units.emplace_back();
      unit.shard = ShardOf(plan.buckets.shards, events[j]->unit_id);
      unit.bucket = std::move(args[0]);
      unit.field = std::move(args[1]);
      std::string hash =
          absl::StrCat(ShardBase(plan.base, unit.shard, plan.buckets.shards),
                       "u:", unit.bucket);
      auto [r, new_read] = read_of_bucket.try_emplace(hash, reads.size());
      if (new_read) reads.push_back({"HMGET", std::move(hash)});
      unit.read = r->second;
      unit.element = reads[unit.read].size() - 2;
      reads[unit.read].push_back(unit.field);
    }
  }
  return reads;
}

namespace {

// Per HMGET of unit records: OK, or why its reply cannot be used.
std::vector<absl::Status> CheckUnitReads(
    const std::vector<RedisCommand>& reads,
    const std::vector<RedisReply>& records) {
  std::vector<absl::Status> read_status(reads.size());
  for (size_t r = 0; r < reads.size(); ++r) {
    const RedisReply& got = records[r];
    read_status[r] =
        CheckReply(got, RedisReply::Type::kArray, "HMGET of unit records");
    if (read_status[r].ok() && got.elements.size() != reads[r].size() - 2) {
      read_status[r] = absl::InternalError(absl::StrCat(
          "Redis answered HMGET of ", reads[r].size() - 2, " fields of ",
          reads[r][1], " with ", got.elements.size(), " values"));
    }
  }
  return read_status;
}

}  // namespace

absl::Status RedisEventStore::SelectEventsThatCount(
    const EventBatch& batch, const std::vector<RedisCommand>& reads,
    const std::vector<RedisReply>& records,
    const std::vector<absl::Status>& read_status, EventPlan* plan) {
  absl::Span<const Event* const> events = batch.events;
  for (size_t j = 0; j < events.size(); ++j) {
    const UnitRef& unit = plan->units[plan->unit_of[j]];
    if (!read_status[unit.read].ok()) return read_status[unit.read];
    const RedisReply& record = records[unit.read].elements[unit.element];
    if (record.type == RedisReply::Type::kNil) continue;  // not exposed
    if (record.type != RedisReply::Type::kString) {
      return absl::InternalError(absl::StrCat(
          "Redis answered HMGET of a unit record in ", reads[unit.read][1],
          " with a reply that is not a string"));
    }
    absl::StatusOr<UnitHeader> header =
        ParseUnitHeader(record.str, reads[unit.read][1]);
    if (!header.ok()) return header.status();
    if (header->multi_exposed ||
        StoreMillis(events[j]->time) < header->first_ms)
      continue;
    plan->called.push_back(j);
  }
  return absl::OkStatus();
}

void RedisEventStore::AppendEventCalls(
    const EventBatch& batch, const std::vector<std::string>& generation,
    EventPlan* plan, std::vector<RedisScriptCall>* calls) {
  absl::Span<const Event* const> events = batch.events;
  plan->first_call = calls->size();
  // Each call runs on one shard: the events go shard by shard, each
  // shard's in their order.
  auto shard_of = [plan](size_t event) {
    return plan->units[plan->unit_of[event]].shard;
  };
  std::stable_sort(
      plan->called.begin(), plan->called.end(),
      [&](size_t a, size_t b) { return shard_of(a) < shard_of(b); });
  absl::flat_hash_map<absl::string_view, std::vector<std::string>>
      metric_args;  // by event name
  for (size_t start = 0, end = 0; start < plan->called.size(); start = end) {
    const int64_t shard = shard_of(plan->called[start]);
    end = start + 1;
    while (end < plan->called.size() && end - start < kItemsPerScript &&
           shard_of(plan->called[end]) == shard) {
      ++end;
    }
    const std::string base = ShardBase(plan->base, shard, plan->buckets.shards);
    RedisScriptCall& call = calls->emplace_back();
    call.script = &write_events_;
    call.keys = {base + "meta"};
    call.args = {base};
    call.args.insert(call.args.end(), generation.begin(), generation.end());
    call.args.push_back("");  // the group count, set below
    const size_t group_count_arg = call.args.size() - 1;
    absl::flat_hash_map<absl::string_view, int> group_of;  // by event name
    std::vector<std::string> items;
    items.reserve(1 + (end - start) * redis_scripts::kEventItemArgs);
    items.push_back(absl::StrCat(end - start));
    for (size_t k = start; k < end; ++k) {
      const Event& e = *events[plan->called[k]];
      const UnitRef& unit = plan->units[plan->unit_of[plan->called[k]]];
      auto [g, new_group] =
          group_of.try_emplace(e.name, static_cast<int>(group_of.size()) + 1);
      if (new_group) {
        auto [m, new_name] = metric_args.try_emplace(e.name);
        if (new_name) m->second = MetricArgs(*batch.layout, e.name);
        call.args.insert(call.args.end(), m->second.begin(), m->second.end());
      }
      items.push_back(absl::StrCat(g->second));
      AppendIdempotencyArgs(plan->buckets.idempotency, "event",
                            e.idempotency_key, &items);
      items.push_back(unit.bucket);
      items.push_back(unit.field);
      items.push_back(absl::StrCat(StoreMillis(e.time)));
      items.push_back(e.value.has_value() ? DoubleArg(*e.value) : "");
    }
    call.args[group_count_arg] = absl::StrCat(group_of.size());
    call.args.insert(call.args.end(), std::make_move_iterator(items.begin()),
                     std::make_move_iterator(items.end()));
  }
  plan->call_count = calls->size() - plan->first_call;
}

std::vector<WriteResult> RedisEventStore::WriteEventBatches(
    absl::Span<const EventBatch> batches) {
  // All batches share each round trip: one for the bucket counts not cached
  // yet, one reading the units' records, one running the scripts.
  std::vector<WriteResult> results;
  results.reserve(batches.size());
  for (const EventBatch& batch : batches) {
    results.emplace_back(
        std::vector<WriteOutcome>(batch.events.size(), WriteOutcome::kIgnored));
  }
  std::vector<EventPlan> plans(batches.size());
  auto fail = [&](size_t i, const absl::Status& status) {
    results[i] = status;
    plans[i].active = false;
  };

  // A phase without bucket counts was never written (exposures store them
  // first), so no unit is exposed in it and every event is ignored.
  // A batch with an event the scripts would refuse is refused whole, here.
  PlanPhases(batches, &plans, &results);

  // An event fans out to every experiment with a metric on it, and most of
  // those never exposed its unit. So first read the units' records, one
  // HMGET per bucket hash, and run the script only for events that can
  // count. The script checks the record again atomically; an event skipped
  // here is ignored as the script would have ignored it at the time of the
  // read, and like the script it stores nothing.
  const std::vector<RedisCommand> reads = PlanUnitReads(batches, &plans);
  if (reads.empty()) return results;
  absl::StatusOr<std::vector<RedisReply>> records = redis_->Pipeline(reads);
  if (!records.ok()) {
    for (size_t i = 0; i < plans.size(); ++i) {
      if (plans[i].active) fail(i, records.status());
    }
    return results;
  }
  const std::vector<absl::Status> read_status = CheckUnitReads(reads, *records);

  // Chunks of kItemsPerScript events, one script call each, all in one round
  // trip. A chunk lists the metric arguments once per event name in it.
  std::vector<RedisScriptCall> calls;
  std::vector<std::string> generation;  // one clock reading for every chunk
  AppendGenerationArgs(options_.idempotency_ttl, options_.clock(), &generation);
  for (size_t i = 0; i < batches.size(); ++i) {
    EventPlan& plan = plans[i];
    if (!plan.active) continue;
    if (absl::Status s = SelectEventsThatCount(batches[i], reads, *records,
                                               read_status, &plan);
        !s.ok()) {
      fail(i, s);
      continue;
    }
    AppendEventCalls(batches[i], generation, &plan, &calls);
  }
  if (calls.empty()) return results;
  absl::StatusOr<std::vector<RedisReply>> replies = redis_->RunScripts(calls);
  for (size_t i = 0; i < batches.size(); ++i) {
    EventPlan& plan = plans[i];
    if (!plan.active || plan.call_count == 0) continue;
    if (!replies.ok()) {
      fail(i, replies.status());
      continue;
    }
    absl::StatusOr<std::vector<WriteOutcome>> applied = Outcomes(
        *batches[i].layout,
        absl::MakeConstSpan(calls).subspan(plan.first_call, plan.call_count),
        absl::MakeConstSpan(*replies).subspan(plan.first_call, plan.call_count),
        plan.called.size());
    if (!applied.ok()) {
      fail(i, applied.status());
      continue;
    }
    std::vector<WriteOutcome>& outcomes = *results[i];
    for (size_t k = 0; k < plan.called.size(); ++k) {
      outcomes[plan.called[k]] = (*applied)[k];
    }
  }
  return results;
}

absl::StatusOr<ExperimentAggregates> RedisEventStore::ReadAggregates(
    const ExperimentLayout& layout) {
  const std::string base = KeyBase(layout);
  absl::flat_hash_map<std::string, const Metric*> metric_keys;
  for (const Metric& m : layout.metrics)
    metric_keys[internal::MetricSignature(m)] = &m;
  // A phase never written reads as one shard: its keys are all missing.
  absl::StatusOr<std::optional<Buckets>> buckets = BucketsOfPhase(base);
  if (!buckets.ok()) return buckets.status();
  const int64_t shards = buckets->has_value() ? (*buckets)->shards : 1;

  std::vector<RedisCommand> first;
  first.reserve(2 * shards);
  for (int64_t shard = 0; shard < shards; ++shard) {
    const std::string shard_base = ShardBase(base, shard, shards);
    first.push_back({"HGETALL", shard_base + "agg"});
    first.push_back({"SMEMBERS", shard_base + "days"});
  }
  absl::StatusOr<std::vector<RedisReply>> replies = redis_->Pipeline(first);
  if (!replies.ok()) return replies.status();

  // Each shard's `agg` holds its experiment-wide counters (multi-exposed
  // units, config versions); the figures are the sum of the cohort days of
  // every shard. (Hashes written before that layout also keep the figures
  // in `agg`; they are skipped.)
  ExperimentAggregates out;
  out.variants = EmptyVariants(layout);
  std::vector<int64_t> days;  // of each day read, in day_reads' order
  std::vector<RedisCommand> day_reads;
  for (int64_t shard = 0; shard < shards; ++shard) {
    const RedisReply& agg = (*replies)[2 * shard];
    const RedisReply& members = (*replies)[2 * shard + 1];
    if (absl::Status s =
            CheckReply(agg, RedisReply::Type::kArray, "HGETALL agg");
        !s.ok()) {
      return s;
    }
    if (absl::Status s =
            CheckReply(members, RedisReply::Type::kArray, "SMEMBERS days");
        !s.ok()) {
      return s;
    }
    std::vector<VariantAggregate> skipped = EmptyVariants(layout);
    int64_t multi_exposed = 0;
    std::map<std::string, int64_t> config_versions;
    if (absl::Status s = ParseFigures(agg, metric_keys, &skipped,
                                      &multi_exposed, &config_versions);
        !s.ok()) {
      return s;
    }
    out.multi_exposed += multi_exposed;
    for (const auto& [version, n] : config_versions) {
      out.config_versions[version] += n;
    }
    const std::string shard_base = ShardBase(base, shard, shards);
    for (const RedisReply& member : members.elements) {
      absl::StatusOr<int64_t> day =
          ParseInt(member.str, shard_base + "days member");
      if (!day.ok()) return day.status();
      days.push_back(*day);
      day_reads.push_back({"HGETALL", absl::StrCat(shard_base, "d:", *day)});
    }
  }
  if (absl::Status s = ReadSegments(base, layout, shards, &out); !s.ok())
    return s;
  if (day_reads.empty()) return out;
  absl::StatusOr<std::vector<RedisReply>> day_replies =
      redis_->Pipeline(day_reads);
  if (!day_replies.ok()) return day_replies.status();
  for (size_t i = 0; i < days.size(); ++i) {
    const RedisReply& hash = (*day_replies)[i];
    if (absl::Status s =
            CheckReply(hash, RedisReply::Type::kArray, "HGETALL day");
        !s.ok()) {
      return s;
    }
    std::vector<VariantAggregate> variants = EmptyVariants(layout);
    if (absl::Status s =
            ParseFigures(hash, metric_keys, &variants, nullptr, nullptr);
        !s.ok()) {
      return s;
    }
    AddVariantAggregates(variants, &out.variants);
    auto [daily, first_shard] = out.daily.try_emplace(
        internal::FormatDay(days[i]), EmptyVariants(layout));
    AddVariantAggregates(variants, &daily->second);
  }
  return out;
}

absl::Status RedisEventStore::ReadSegments(const std::string& base,
                                           const ExperimentLayout& layout,
                                           int64_t shards,
                                           ExperimentAggregates* out) {
  if (layout.dimensions.empty()) return absl::OkStatus();
  absl::StatusOr<std::vector<RedisReply>> got =
      redis_->Pipeline({{"HGETALL", base + "seg"}});
  if (!got.ok()) return got.status();
  const RedisReply& registry = (*got)[0];
  if (absl::Status s =
          CheckReply(registry, RedisReply::Type::kArray, "HGETALL seg");
      !s.ok()) {
    return s;
  }
  absl::flat_hash_map<std::string, std::string> fields;
  for (size_t i = 0; i + 1 < registry.elements.size(); i += 2) {
    fields[registry.elements[i].str] = registry.elements[i + 1].str;
  }
  // Every (dimension, segment) hash of every shard, and what it is.
  std::vector<RedisCommand> reads;
  std::vector<std::pair<const std::string*, std::string>> of_read;
  for (const Dimension& dim : layout.dimensions) {
    auto id = fields.find("d|" + dim.attribute);
    if (id == fields.end()) continue;  // never written
    std::vector<std::pair<int, std::string>> segments = {
        {kNoneSlot, kNoneSegment}, {kOtherSlot, kOtherSegment}};
    int64_t taken = 0;
    if (auto n = fields.find(absl::StrCat("n|", id->second));
        n != fields.end()) {
      absl::StatusOr<int64_t> parsed = ParseInt(n->second, base + "seg n|");
      if (!parsed.ok()) return parsed.status();
      taken = *parsed;
    }
    for (int64_t slot = 1; slot <= taken; ++slot) {
      auto value = fields.find(absl::StrCat("s|", id->second, "|", slot));
      if (value == fields.end()) continue;
      segments.push_back({static_cast<int>(slot), value->second});
    }
    for (int64_t shard = 0; shard < shards; ++shard) {
      const std::string shard_base = ShardBase(base, shard, shards);
      for (const auto& [slot, name] : segments) {
        reads.push_back(
            {"HGETALL", absl::StrCat(shard_base, "s:", id->second, ":", slot)});
        of_read.push_back({&dim.attribute, name});
      }
    }
  }
  if (reads.empty()) return absl::OkStatus();
  absl::StatusOr<std::vector<RedisReply>> replies = redis_->Pipeline(reads);
  if (!replies.ok()) return replies.status();
  absl::flat_hash_map<std::string, const Metric*> metric_keys;
  for (const Metric& m : layout.metrics)
    metric_keys[internal::MetricSignature(m)] = &m;
  for (size_t i = 0; i < reads.size(); ++i) {
    const RedisReply& hash = (*replies)[i];
    if (absl::Status s =
            CheckReply(hash, RedisReply::Type::kArray, "HGETALL segment");
        !s.ok()) {
      return s;
    }
    if (hash.elements.empty()) continue;
    std::vector<VariantAggregate> variants = EmptyVariants(layout);
    if (absl::Status s =
            ParseFigures(hash, metric_keys, &variants, nullptr, nullptr);
        !s.ok()) {
      return s;
    }
    auto [segment, fresh] = out->segments[*of_read[i].first].try_emplace(
        of_read[i].second, EmptyVariants(layout));
    AddVariantAggregates(variants, &segment->second);
  }
  internal::DropEmptySegments(&out->segments);
  return absl::OkStatus();
}

absl::StatusOr<std::optional<int>> RedisEventStore::RecordedVariant(
    const ExperimentLayout& layout, absl::string_view unit_id) {
  RecordedVariantQuery query{&layout, std::string(unit_id)};
  return std::move(RecordedVariants({query})[0]);
}

std::vector<RecordedVariantResult> RedisEventStore::RecordedVariants(
    absl::Span<const RecordedVariantQuery> queries) {
  std::vector<RecordedVariantResult> results(queries.size(),
                                             std::optional<int>());
  auto fail_all = [&results](const absl::Status& status) {
    for (RecordedVariantResult& r : results) r = status;
    return std::move(results);
  };

  // A phase without bucket counts has never been written, so none of its
  // units were exposed.
  std::vector<std::string> bases;
  bases.reserve(queries.size());
  for (const RecordedVariantQuery& q : queries) {
    bases.push_back(KeyBase(*q.layout));
  }
  absl::StatusOr<absl::flat_hash_map<std::string, std::optional<Buckets>>>
      found = BucketsOfPhases(bases);
  if (!found.ok()) return fail_all(found.status());
  absl::flat_hash_map<std::string, std::optional<Buckets>>& phases = *found;

  // One round trip for the rest: each written phase's stored variant keys
  // (so an index is never read against reordered variants) and each unit's
  // record.
  std::vector<RedisCommand> commands;
  absl::flat_hash_map<std::string, size_t> variants_reply;  // by shard base
  std::vector<size_t> variants_of(queries.size(), 0);
  std::vector<size_t> unit_reply(queries.size(), 0);
  for (size_t i = 0; i < queries.size(); ++i) {
    const std::optional<Buckets>& buckets = phases[bases[i]];
    if (!buckets.has_value()) continue;
    // The variant keys as the unit's shard stored them.
    const std::string shard_base =
        ShardBase(bases[i], ShardOf(buckets->shards, queries[i].unit_id),
                  buckets->shards);
    auto [v, new_shard] =
        variants_reply.try_emplace(shard_base, commands.size());
    if (new_shard)
      commands.push_back({"HGET", shard_base + "meta", "variants"});
    variants_of[i] = v->second;
    std::vector<std::string> unit;
    AppendUnitArgs(buckets->units, queries[i].unit_id, &unit);
    unit_reply[i] = commands.size();
    commands.push_back(
        {"HGET", absl::StrCat(shard_base, "u:", unit[0]), unit[1]});
  }
  if (commands.empty()) return results;
  absl::StatusOr<std::vector<RedisReply>> replies = redis_->Pipeline(commands);
  if (!replies.ok()) return fail_all(replies.status());

  for (size_t i = 0; i < queries.size(); ++i) {
    if (!phases[bases[i]].has_value()) continue;  // never written: nullopt
    const RedisReply& stored = (*replies)[variants_of[i]];
    if (stored.type == RedisReply::Type::kError) {
      results[i] =
          CheckReply(stored, RedisReply::Type::kString, "HGET variants");
      continue;
    }
    // A shard never written has no variant keys, and the unit no record.
    if (stored.type == RedisReply::Type::kNil) continue;
    std::string merged;
    if (absl::Status s =
            internal::CheckVariantKeys(*queries[i].layout, stored.str, &merged);
        !s.ok()) {
      results[i] = s;
      continue;
    }
    const RedisReply& r = (*replies)[unit_reply[i]];
    if (r.type == RedisReply::Type::kNil) continue;  // never exposed
    if (absl::Status s = CheckReply(r, RedisReply::Type::kString, "HGET unit");
        !s.ok()) {
      results[i] = s;
      continue;
    }
    absl::StatusOr<UnitHeader> header =
        ParseUnitHeader(r.str, commands[unit_reply[i]][1]);
    if (!header.ok()) {
      results[i] = header.status();
      continue;
    }
    results[i] = header->variant;
  }
  return results;
}

}  // namespace abexp
