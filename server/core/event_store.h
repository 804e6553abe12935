// An EventStore keeps, per experiment, who was exposed to which variant and
// the sufficient statistics of every metric, updated as exposures and events
// are written (docs/attribution.md, docs/storage.md).
//
// Implementations: RedisEventStore (redis_event_store.h), the real one, and
// MemoryEventStore (memory_event_store.h) for unit tests. Both pass the same
// conformance tests (event_store_conformance_test.cc).
//
// Thread-safe: all methods may be called concurrently.
#ifndef ABEXP_SERVER_CORE_EVENT_STORE_H_
#define ABEXP_SERVER_CORE_EVENT_STORE_H_

#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "server/core/config.h"

namespace abexp {

// What the store needs to know of one experiment. Built from the Config by
// LayoutOf(); stored data is keyed by (key, phase), so a new phase starts
// from zero.
struct ExperimentLayout {
  std::string key;
  int phase = 1;
  // Variant keys in config order; exposures refer to them by index.
  std::vector<std::string> variant_keys;
  // The experiment's metric definitions, in the experiment's order.
  std::vector<Metric> metrics;
  // The experiment's dimensions (segments), in config order.
  std::vector<Dimension> dimensions;
};

// REQUIRES: every metric key of `experiment` is defined in `config`.
ExperimentLayout LayoutOf(const Config& config, const Experiment& experiment);

// How many distinct config versions a store counts per experiment phase by
// default (ExperimentAggregates::config_versions). Exposures under any
// further version are counted under kOtherConfigVersion, so that callers
// cannot grow the stored counts and the results response without bound.
inline constexpr int kDefaultMaxConfigVersions = 32;
// The entry that counts the exposures past the limit. A real config version
// is 16 hex digits, so it never collides with one.
inline constexpr char kOtherConfigVersion[] = "other";
// The longest config version a store accepts (the recorder accepts only the
// 16 hex digits the server emits; the store bounds what other callers send).
inline constexpr size_t kMaxStoredConfigVersionBytes = 64;

// One exposure: the unit was shown `variant_index` of the experiment.
struct Exposure {
  std::string unit_id;  // the id of the experiment's unit id type
  int variant_index = 0;
  absl::Time time;
  // The config that produced the assignment: 1 to
  // kMaxStoredConfigVersionBytes bytes.
  std::string config_version;
  // Retries with the same key are applied once. Never empty: the recorder
  // derives one when the caller gave none.
  std::string idempotency_key;
  // Covariate attribute (Metric::covariate) -> the unit's value, finite and
  // within ±kMaxEventValue; attributes the unit lacks are absent. Stored at
  // the unit's first recorded exposure; later exposures' values are unused.
  std::map<std::string, double> covariates = {};
  // Dimension attribute (Experiment::dimensions) -> the unit's value, as
  // text (a bool as "true"/"false"); attributes the unit lacks are absent.
  // Stored at the unit's first recorded exposure, as covariates are.
  std::map<std::string, std::string> dimensions = {};
};

// The segment of the units whose dimension value came after the dimension's
// first max_values values (or is longer than kMaxDimensionValueBytes), and
// of the units without the attribute (or with an empty value). A real value
// spelled like one of these counts with it.
inline constexpr char kOtherSegment[] = "(other)";
inline constexpr char kNoneSegment[] = "(none)";
inline constexpr size_t kMaxDimensionValueBytes = 128;

// The largest magnitude of an event value. Metrics keep sums of squares of
// values in doubles; at ±1e15 a square is 1e30, so no realistic count of
// events can overflow an aggregate, while money in cents or durations in
// microseconds still fit with room to spare.
inline constexpr double kMaxEventValue = 1e15;

// One event, as it concerns one experiment.
struct Event {
  std::string unit_id;  // the id of the experiment's unit id type
  std::string name;
  std::optional<double> value;  // finite and within ±kMaxEventValue when set
  absl::Time time;
  std::string idempotency_key;  // never empty, as for Exposure
};

enum class WriteOutcome {
  kRecorded,   // changed the unit's record or a metric
  kDuplicate,  // the idempotency key was seen before, or a repeat exposure
               // to the same variant
  kIgnored,    // an event of a unit never exposed, before its first
               // exposure, outside every metric's window, or of a unit
               // excluded as multi-exposed
  kConflict,   // an exposure to a second variant: the unit is now counted
               // as multi-exposed and removed from every metric
  kSpooled,    // accepted durably into the local spool while the backend
               // failed; applied later, and its final outcome is not
               // reported (only SpooledEventStore returns it)
};

// Sufficient statistics of one metric in one variant. Per-unit totals x are
// over the units exposed to the variant (and not multi-exposed).
struct MetricAggregate {
  // Units with at least one counted event for the metric: converted (binomial),
  // active on the day (retention), or with an event in the window (sum,
  // ratio), even if the event's value was 0.
  int64_t units = 0;
  long double sum = 0;     // Σx (kSum), or the number of converted units
  long double sum_sq = 0;  // Σx²
  // kRatio: per-unit numerator n and denominator d totals.
  long double sum_num = 0;
  long double sum_den = 0;
  long double sum_num_sq = 0;
  long double sum_den_sq = 0;
  long double sum_num_den = 0;
  // A metric with a covariate (Metric::covariate): the sums over the exposed
  // units whose first recorded exposure carried the covariate x, with y the
  // unit's value (0 without events), for CUPED. All 0 without a covariate
  // and for data written before covariates existed.
  int64_t cuped_units = 0;
  long double cuped_sum_x = 0;     // Σx
  long double cuped_sum_x_sq = 0;  // Σx²
  long double cuped_sum_y = 0;     // Σy
  long double cuped_sum_y_sq = 0;  // Σy²
  long double cuped_sum_xy = 0;    // Σxy
  // kFunnel: steps[k] is the number of units that reached step k+1, one
  // entry per step of the metric (`units` equals steps[0]). Empty for
  // other types.
  std::vector<int64_t> steps;
};

struct VariantAggregate {
  int64_t exposed = 0;  // units first exposed to this variant, less the
                        // multi-exposed ones
  std::map<std::string, MetricAggregate> metrics;  // by metric key
};

// Adds every figure of `from` to `to`, variant by variant (the same
// layout); `to` grows to from.size() variants when it has fewer.
void AddVariantAggregates(const std::vector<VariantAggregate>& from,
                          std::vector<VariantAggregate>* to);

struct ExperimentAggregates {
  std::vector<VariantAggregate> variants;  // by variant index
  // Units exposed to more than one variant; kept out of the metrics.
  int64_t multi_exposed = 0;
  // Config version -> exposures recorded under it: at most the store's
  // limit of versions (kDefaultMaxConfigVersions unless configured), plus
  // kOtherConfigVersion for the exposures under any further version.
  // Phases written before the limit existed may list more.
  std::map<std::string, int64_t> config_versions;
  // Cohort day ("2026-11-23", UTC) -> the same figures restricted to the
  // units first exposed that day, including their later events; the days add
  // up to the totals (docs/attribution.md, "Cohort days").
  std::map<std::string, std::vector<VariantAggregate>> daily;
  // Dimension attribute -> segment value (a value, kOtherSegment or
  // kNoneSegment) -> the same figures restricted to the units whose first
  // recorded exposure carried that value. For every dimension of the layout
  // the values add up to the totals; a dimension without exposures is
  // absent.
  std::map<std::string, std::map<std::string, std::vector<VariantAggregate>>>
      segments;
};

// One unit in one experiment phase, for EventStore::RecordedVariants.
struct RecordedVariantQuery {
  const ExperimentLayout* layout = nullptr;  // not owned
  std::string unit_id;  // the id of the experiment's unit id type
};

// RecordedVariant's answer: the variant index, nullopt when the unit was
// never exposed, or why the store could not tell.
using RecordedVariantResult = absl::StatusOr<std::optional<int>>;

// One experiment phase's events, for EventStore::WriteEventBatches. The
// events are pointers so that batches can share them: an event fans out to
// many experiments, and copying it for each cost more than writing it.
struct EventBatch {
  const ExperimentLayout* layout = nullptr;  // not owned
  absl::Span<const Event* const> events;     // not owned
};

// The events `batch` points at, copied (for stores that take a span).
std::vector<Event> EventsOf(const EventBatch& batch);

// WriteEvents's answer for one EventBatch.
using WriteResult = absl::StatusOr<std::vector<WriteOutcome>>;

class EventStore {
 public:
  virtual ~EventStore() = default;

  // Applies each exposure atomically and returns one outcome per input, in
  // order. The batch goes to the store in as few round trips as it allows
  // (RedisEventStore: one for exposures, two for events). On error the batch
  // may be partly applied; retrying it is safe because of the idempotency keys.
  virtual absl::StatusOr<std::vector<WriteOutcome>> WriteExposures(
      const ExperimentLayout& layout, absl::Span<const Exposure> exposures) = 0;

  // As WriteExposures, for events.
  virtual absl::StatusOr<std::vector<WriteOutcome>> WriteEvents(
      const ExperimentLayout& layout, absl::Span<const Event> events) = 0;

  // WriteEvents for several experiment phases at once (an event fans out to
  // every experiment with a metric on it): one result per batch, in order,
  // each as WriteEvents would have returned it. Every batch is attempted
  // even when another fails. The default calls WriteEvents per batch; a
  // store that can share round trips between the batches overrides it.
  virtual std::vector<WriteResult> WriteEventBatches(
      absl::Span<const EventBatch> batches);

  // Reads the aggregates. Its cost does not depend on the number of units.
  // `segments` holds the dimensions of layout.dimensions only, and each one
  // costs reads (a hash per value and shard in Redis): a caller that wants
  // one dimension's segments, or none, passes a layout narrowed to it.
  virtual absl::StatusOr<ExperimentAggregates> ReadAggregates(
      const ExperimentLayout& layout) = 0;

  // The variant the unit was first exposed to, for sticky experiments;
  // nullopt when it was never exposed. Errors as for RecordedVariants.
  virtual absl::StatusOr<std::optional<int>> RecordedVariant(
      const ExperimentLayout& layout, absl::string_view unit_id) = 0;

  // RecordedVariant for many (experiment phase, unit) pairs, e.g. every
  // sticky experiment of one Assign call or every unit of a BatchAssign: one
  // result per query, in order, in one round trip where the store allows.
  // The index refers to the query layout's variant keys: when they are
  // incompatible with the keys first recorded for the phase (reordered,
  // renamed; see CheckVariantKeys in event_store_internal.h) that query
  // fails with FAILED_PRECONDITION rather than name another variant. When the
  // store is unreachable every query fails with its error.
  //
  // The default calls RecordedVariant once per query; stores and decorators
  // override it to batch.
  virtual std::vector<RecordedVariantResult> RecordedVariants(
      absl::Span<const RecordedVariantQuery> queries);
};

}  // namespace abexp

#endif  // ABEXP_SERVER_CORE_EVENT_STORE_H_
