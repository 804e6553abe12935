// MemoryEventStore: the reference implementation of the EventStore
// semantics (docs/attribution.md), kept in process memory. Used by unit
// tests and as the oracle the Redis store is checked against. Nothing
// survives the process.
//
// It stores times in whole milliseconds and accumulates sums in long double
// from per-event double deltas, as RedisEventStore does, so both give the
// same figures. Unlike Redis it remembers idempotency keys for ever.
//
// Thread-safe: one mutex guards all data.
#ifndef ABEXP_SERVER_TESTING_MEMORY_EVENT_STORE_H_
#define ABEXP_SERVER_TESTING_MEMORY_EVENT_STORE_H_

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/synchronization/mutex.h"
#include "server/core/event_store.h"

namespace abexp {

class MemoryEventStore final : public EventStore {
 public:
  // Counts at most `max_config_versions` distinct config versions per
  // experiment phase, as RedisEventStoreOptions::max_config_versions.
  explicit MemoryEventStore(int max_config_versions = kDefaultMaxConfigVersions)
      : max_config_versions_(max_config_versions) {}
  MemoryEventStore(const MemoryEventStore&) = delete;
  MemoryEventStore& operator=(const MemoryEventStore&) = delete;

  absl::StatusOr<std::vector<WriteOutcome>> WriteExposures(
      const ExperimentLayout& layout,
      absl::Span<const Exposure> exposures) override;
  absl::StatusOr<std::vector<WriteOutcome>> WriteEvents(
      const ExperimentLayout& layout, absl::Span<const Event> events) override;
  absl::StatusOr<ExperimentAggregates> ReadAggregates(
      const ExperimentLayout& layout) override;
  absl::StatusOr<std::optional<int>> RecordedVariant(
      const ExperimentLayout& layout, absl::string_view unit_id) override;
  std::vector<RecordedVariantResult> RecordedVariants(
      absl::Span<const RecordedVariantQuery> queries) override;

 private:
  // A unit's running state in one metric (by metric signature).
  struct MetricState {
    MetricType type = MetricType::kBinomial;
    double a = 0;         // kSum: x; kRatio: numerator
    double b = 0;         // kRatio: denominator
    int step = 0;         // kFunnel: the furthest step reached (1-based)
    int64_t step_ms = 0;  // kFunnel: when it was reached
  };
  struct UnitRecord {
    int variant = 0;
    bool multi_exposed = false;
    int64_t first_ms = 0;
    std::map<std::string, MetricState> states;
    // Metric signature -> the unit's covariate, for the layout's metrics
    // with one, as at the unit's first exposure.
    std::map<std::string, double> covariates;
    // Dimension attribute -> the unit's segment, fixed at its first exposure.
    std::map<std::string, std::string> segments;
  };
  // Figures of all units, or of one cohort day.
  struct Figures {
    std::map<int, int64_t> exposed;
    std::map<std::pair<int, std::string>, MetricAggregate>
        metrics;  // (variant, signature)
  };
  struct ExperimentData {
    std::string variant_keys;  // joined, as first written
    absl::flat_hash_set<std::string> idempotency_keys;
    absl::flat_hash_map<std::string, UnitRecord> units;
    Figures total;
    int64_t multi_exposed = 0;
    std::map<std::string, int64_t> config_versions;
    std::map<int64_t, Figures> days;
    // Dimension attribute -> the values given figures of their own, in the
    // order first written (at most the dimension's max_values).
    std::map<std::string, absl::flat_hash_set<std::string>> dimension_values;
    // (dimension attribute, segment) -> figures of the units in it.
    std::map<std::pair<std::string, std::string>, Figures> segments;
  };

  // Adds (sign +1) or removes (-1) the unit's exposure and every metric
  // contribution to `figures`.
  static void ApplyUnit(int sign, const UnitRecord& unit, Figures* figures);
  // Counts event `e`, at store time `t`, in `metric` (whose signature is
  // `signature`): in the unit's state and in each of `aggs` (the unit's
  // aggregates among all units and in its cohort day). Returns whether any
  // figure changed.
  static bool CountEvent(const Metric& metric, const std::string& signature,
                         const Event& e, int64_t t,
                         absl::Span<MetricAggregate* const> aggs,
                         UnitRecord* unit);
  static VariantAggregate ToVariant(const ExperimentLayout& layout,
                                    const Figures& figures, int v);

  // The segment of `dimension` an exposure with these values counts in,
  // giving its value figures of its own while fewer than max_values have.
  static std::string Segment(const Dimension& dimension,
                             const std::map<std::string, std::string>& values,
                             ExperimentData* data);
  // The segment figures `unit` counts in.
  static std::vector<Figures*> SegmentFigures(const UnitRecord& unit,
                                              ExperimentData* data);

  ExperimentData* Data(const ExperimentLayout& layout)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const int max_config_versions_;
  absl::Mutex mu_;
  // By "<key>\n<phase>".
  std::map<std::string, ExperimentData> experiments_ ABSL_GUARDED_BY(mu_);
};

}  // namespace abexp

#endif  // ABEXP_SERVER_TESTING_MEMORY_EVENT_STORE_H_
