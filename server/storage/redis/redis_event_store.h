// RedisEventStore: the EventStore kept in Redis (docs/storage.md has the key
// schema, encodings and memory cost; docs/attribution.md the rules).
//
// Exposures and events are applied by Lua scripts (EVALSHA), a chunk of up
// to 256 items of one experiment phase per call, atomically and in order. A
// batch of exposures is one RedisClient::RunScripts call, i.e. one round
// trip (one per master, in parallel, on a Redis Cluster). A batch of events is
// two: one that reads the units' records, then the scripts for only those
// events whose unit is exposed (an event fans out to every experiment with a
// metric on it, and most of those never exposed its unit). Per-unit records are
// packed into bucketed small hashes, so an exposed unit costs a few tens of
// bytes, and aggregates live in one hash per cohort day (their sum is the
// experiment's), so reading results never touches units.
//
//   RedisOptions redis;  // address, password, db, key prefix, timeouts
//   auto pool = RedisPool::Create(redis);  // or RedisCluster::Create
//   auto store = RedisEventStore::Create(pool->get());
//
// Thread-safe: all methods may be called concurrently.
#ifndef ABEXP_SERVER_STORAGE_REDIS_REDIS_EVENT_STORE_H_
#define ABEXP_SERVER_STORAGE_REDIS_REDIS_EVENT_STORE_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "server/core/event_store.h"
#include "server/storage/redis/redis_connection.h"

namespace abexp {

struct RedisEventStoreOptions {
  // How long idempotency keys are remembered: a retry later than this may
  // count twice. Kept in hashes per generation of this length, of which a
  // write checks the current and the previous one, so a key is remembered
  // for between this and twice this. Default: 7 days.
  absl::Duration idempotency_ttl = absl::Hours(24 * 7);
  // Hashes the unit records of one experiment phase are spread over. Fixed
  // when the phase is first written (later values are ignored for it).
  // Sized so each hash holds about 76 units at 10 million units, below
  // Redis's hash-max-listpack-entries (128), keeping the compact encoding.
  // Default: 131072.
  int unit_buckets = 131072;
  // Hashes per generation (one TTL long) the idempotency keys of one
  // experiment phase are spread over; fixed like unit_buckets. Each hash
  // stays in Redis's compact encoding up to 128 keys, so up to about 8
  // million exposures and events per experiment per TTL; beyond that the
  // keys still work but cost about four times the memory. Default: 65536.
  int idempotency_buckets = 65536;
  // Distinct config versions whose exposures are counted apart per
  // experiment phase (agg's cv|<version> fields); exposures under further
  // versions are counted under "other". Keeps callers from growing the
  // hash and the results response without bound. 1 to 1000.
  // Default: kDefaultMaxConfigVersions (32).
  int max_config_versions = kDefaultMaxConfigVersions;
  // Shards S an experiment phase's keys are split into, each under a hash
  // tag of its own, so one experiment spreads over every master of a Redis
  // Cluster; a unit's records (and its exposures' and events' idempotency
  // keys) all live in the shard its hash picks. Fixed when the phase is
  // first written, like the bucket counts (later values are ignored for
  // it); unit_buckets and idempotency_buckets are then divided among the
  // shards. 1 is the single-node layout (docs/storage.md). 0: one per
  // master (RedisClient::MasterCount()), at most 16, when the phase is
  // first written, so 1 on one Redis and 3 on a 3-master cluster: each
  // shard's script calls then carry as many of a batch's items as the
  // spread allows (every script call costs Redis a fixed part,
  // docs/PERFORMANCE.md R11). 0 to 1024. Default: 1.
  int shards = 1;
  // The clock that decides the idempotency generation. Tests move it.
  std::function<absl::Time()> clock = absl::Now;
};

class RedisEventStore final : public EventStore {
 public:
  // `redis` (a RedisPool, or a RedisCluster) must outlive the store.
  // INVALID_ARGUMENT for bad options. Does not talk to Redis; the scripts
  // are loaded on first use.
  static absl::StatusOr<std::unique_ptr<RedisEventStore>> Create(
      RedisClient* redis, RedisEventStoreOptions options = {});

  RedisEventStore(const RedisEventStore&) = delete;
  RedisEventStore& operator=(const RedisEventStore&) = delete;

  // FAILED_PRECONDITION when the layout's variant keys are incompatible
  // with those first recorded for the phase (see CheckVariantKeys in
  // docs/storage.md); errors of the RedisPool (UNAVAILABLE,
  // DEADLINE_EXCEEDED) otherwise. Retrying a failed batch is safe.
  absl::StatusOr<std::vector<WriteOutcome>> WriteExposures(
      const ExperimentLayout& layout,
      absl::Span<const Exposure> exposures) override;
  // Events of units not exposed in the phase (or multi-exposed, or before
  // their first exposure) are kIgnored without running a script or storing
  // anything. Two round trips (one when no event's unit is exposed), plus
  // one before them while the phase's bucket counts are not cached; a phase
  // never written costs only that one.
  absl::StatusOr<std::vector<WriteOutcome>> WriteEvents(
      const ExperimentLayout& layout, absl::Span<const Event> events) override;
  // The same round trips for all batches together (three while some phase's
  // bucket counts are not cached, else two, fewer when nothing is exposed).
  std::vector<WriteResult> WriteEventBatches(
      absl::Span<const EventBatch> batches) override;
  // Two round trips (one per master each, in parallel, on a cluster), plus
  // one before them while the phase's shard count is not cached; 2·S +
  // (cohort days of each shard) commands for S shards.
  absl::StatusOr<ExperimentAggregates> ReadAggregates(
      const ExperimentLayout& layout) override;
  absl::StatusOr<std::optional<int>> RecordedVariant(
      const ExperimentLayout& layout, absl::string_view unit_id) override;
  // One round trip, plus one before it when some phase's bucket counts are
  // not cached yet (always so for a phase never written).
  std::vector<RecordedVariantResult> RecordedVariants(
      absl::Span<const RecordedVariantQuery> queries) override;

  // "<key_prefix>:{e:<experiment key>:<phase>}:", the start of every key of
  // the experiment phase's shard 0 (its meta holds the phase's shard and
  // bucket counts); the braces are the Redis Cluster hash tag.
  std::string KeyBase(const ExperimentLayout& layout) const;
  // The start of every key of shard `shard` of `shards` of the phase whose
  // KeyBase() is `base`: `base` itself for shard 0, else
  // "<key_prefix>:{e:<experiment key>:<phase>:s<shard>.<n>}:" with the
  // salt n that SpreadShardTag (cluster_slots.h) picks to put the shards'
  // slots one in each 1/S of the slot space. Cached per phase.
  std::string ShardBase(const std::string& base, int64_t shard, int64_t shards)
      ABSL_LOCKS_EXCLUDED(mu_);

 private:
  // How a phase's keys are laid out, as stored in its shard 0 meta.
  struct Buckets {
    int64_t units = 0;        // per shard
    int64_t idempotency = 0;  // per shard
    int64_t shards = 1;       // absent (a phase written before shards): 1
  };

  RedisEventStore(RedisClient* redis, RedisEventStoreOptions options);

  // The bucket counts of the experiment phase: those stored in its meta
  // hash, else the options' values, stored now (for its first exposures;
  // events use BucketsOfPhases, which stores nothing).
  absl::StatusOr<Buckets> CreateBuckets(const std::string& base);
  // The bucket counts of each phase in `bases` (KeyBase()s, repeats
  // allowed), nullopt for a phase never written: cached ones cost nothing,
  // the others are read together in one round trip.
  absl::StatusOr<absl::flat_hash_map<std::string, std::optional<Buckets>>>
  BucketsOfPhases(const std::vector<std::string>& bases);
  // What the scripts of S > 1 shards cannot see alone, settled in shard 0
  // before the exposures are sent: the layout's variant keys checked
  // against (and merged into) those shard 0 stores, and which config
  // versions are counted apart (the phase's first max_config_versions, in
  // shard 0's registry <base>cvreg) and which as "other". Returns the config
  // version each exposure is to be counted under. Cached per process.
  absl::StatusOr<std::vector<std::string>> SettleShardedPhase(
      const std::string& base, const ExperimentLayout& layout,
      absl::Span<const Exposure> exposures);
  // Settles the segment of every exposure in every dimension of `layout`
  // in the phase's registry <base>seg (docs/storage.md, "Segments"): a
  // value gets a slot of its own while fewer than the dimension's
  // max_values have one, first come first served over every exposure
  // written. Returns each exposure's segments entry for write_exposures
  // (per dimension its id byte and slot byte; "" without dimensions).
  // Slots and dimension ids are cached per process.
  absl::StatusOr<std::vector<std::string>> SettleSegments(
      const std::string& base, const ExperimentLayout& layout,
      absl::Span<const Exposure> exposures);
  // Adds the figures of `layout`'s dimensions to out->segments: reads the
  // registry, then every segment hash of every shard.
  absl::Status ReadSegments(const std::string& base,
                            const ExperimentLayout& layout, int64_t shards,
                            ExperimentAggregates* out);
  // BucketsOfPhases of one phase.
  absl::StatusOr<std::optional<Buckets>> BucketsOfPhase(
      const std::string& base);
  // Reads the HMGET of the meta hash's bucket counts and caches them;
  // nullopt when none are stored.
  absl::StatusOr<std::optional<Buckets>> ParseBuckets(const std::string& base,
                                                      const RedisReply& got);
  // WriteEventBatches()'s steps, over one plan per batch.
  struct UnitRef;
  struct EventPlan;
  // Refuses batches with an event the scripts would refuse; activates those
  // whose phase was written, with its bucket counts (one round trip for
  // counts not cached).
  void PlanPhases(absl::Span<const EventBatch> batches,
                  std::vector<EventPlan>* plans,
                  std::vector<WriteResult>* results);
  // One HMGET per bucket hash holding a unit of an active plan's events;
  // records in each plan where its units' records will be.
  std::vector<RedisCommand> PlanUnitReads(absl::Span<const EventBatch> batches,
                                          std::vector<EventPlan>* plans);
  // Adds to plan->called the events whose unit record (read) shows them
  // able to count: exposed, not multi-exposed, not before the exposure.
  absl::Status SelectEventsThatCount(
      const EventBatch& batch, const std::vector<RedisCommand>& reads,
      const std::vector<RedisReply>& records,
      const std::vector<absl::Status>& read_status, EventPlan* plan);
  // The write_events script calls for plan->called, kItemsPerScript each.
  void AppendEventCalls(const EventBatch& batch,
                        const std::vector<std::string>& generation,
                        EventPlan* plan, std::vector<RedisScriptCall>* calls);
  // `meta`: the meta hash of the shard whose script call failed.
  absl::Status ScriptError(const ExperimentLayout& layout,
                           const std::string& meta, const RedisReply& reply);
  // The outcomes in the script calls' replies (arrays of codes), in order;
  // INTERNAL unless there are `items` of them.
  absl::StatusOr<std::vector<WriteOutcome>> Outcomes(
      const ExperimentLayout& layout, absl::Span<const RedisScriptCall> calls,
      absl::Span<const RedisReply> replies, size_t items);

  RedisClient* const redis_;
  const RedisEventStoreOptions options_;
  const RedisScript write_exposures_;
  const RedisScript write_events_;
  const RedisScript settle_segments_;

  absl::Mutex mu_;
  // By KeyBase(); bucket counts never change once stored.
  absl::flat_hash_map<std::string, Buckets> buckets_ ABSL_GUARDED_BY(mu_);
  // By KeyBase(): the variant keys (joined) last checked against shard 0.
  absl::flat_hash_map<std::string, std::string> checked_variants_
      ABSL_GUARDED_BY(mu_);
  // By KeyBase() + "\n" + config version: whether it is counted apart.
  absl::flat_hash_map<std::string, bool> counted_apart_ ABSL_GUARDED_BY(mu_);
  // By KeyBase() + "\n" + dimension attribute: the dimension's id.
  absl::flat_hash_map<std::string, int> dimension_ids_ ABSL_GUARDED_BY(mu_);
  // By KeyBase() + "\n" + attribute + "\n" + value: the value's slot.
  absl::flat_hash_map<std::string, int> segment_slots_ ABSL_GUARDED_BY(mu_);
  // KeyBase() + "\n" + attribute + "\n" + max_values of the dimensions
  // whose slots are all taken.
  absl::flat_hash_set<std::string> full_dimensions_ ABSL_GUARDED_BY(mu_);
  // By KeyBase() + "\n" + shard count: each shard's ShardBase().
  absl::flat_hash_map<std::string, std::vector<std::string>> shard_bases_
      ABSL_GUARDED_BY(mu_);
};

}  // namespace abexp

#endif  // ABEXP_SERVER_STORAGE_REDIS_REDIS_EVENT_STORE_H_
