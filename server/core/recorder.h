// A Recorder validates exposures and events, decides which experiments they
// concern, and writes them to an EventStore (docs/attribution.md).
//
//   Recorder recorder(&store);
//   absl::StatusOr<RecordBatchResult> r =
//       recorder.RecordEvents(*config, events, absl::Now());
//
// Rules:
//  - A batch is validated as a whole first: any malformed item fails the
//    call with INVALID_ARGUMENT naming it (e.g. "events[12].value is NaN;
//    ...") and nothing is written.
//  - Exposures to unknown experiments, to experiments that are not running,
//    of QA-override units and of holdout units are accepted and ignored.
//  - An event goes to every non-draft experiment that has a metric using
//    its name and whose unit id type the unit carries. Events no metric
//    uses are accepted and ignored.
//  - Items are grouped per experiment; each group is one store call.
//  - Missing idempotency keys are derived (see DeriveExposureKey and
//    DeriveEventKey) so that a retried batch counts once. Client keys are
//    kept apart from derived ones by a prefix.
//
// Thread-safe: a Recorder has no mutable state; all methods may be called
// concurrently (the store must be thread-safe, as EventStore requires).
#ifndef ABEXP_SERVER_CORE_RECORDER_H_
#define ABEXP_SERVER_CORE_RECORDER_H_

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "server/core/assigner.h"
#include "server/core/config.h"
#include "server/core/event_store.h"
#include "server/core/indexed_config.h"

namespace abexp {

// Limits on a recording call.
inline constexpr size_t kMaxRecordBatch = 50000;
inline constexpr size_t kMaxEventNameBytes = 128;
inline constexpr size_t kMaxIdempotencyKeyBytes = 256;
// Client clocks may run ahead; anything further ahead is a bug (e.g.
// milliseconds sent as seconds).
inline constexpr absl::Duration kMaxFutureSkew = absl::Hours(24);

// A unit was shown a variant. Of the unit's attributes only the covariates
// of the experiment's metrics are used (Metric::covariate): a number, finite
// and within ±kMaxEventValue, is stored with the unit's first exposure;
// anything else is treated as missing.
struct ExposureInput {
  std::string experiment_key;
  Unit unit;
  std::string variant_key;
  std::optional<absl::Time> time;  // nullopt: `now` of the call
  std::string idempotency_key;     // empty: derived
  // Empty: the config's version; else 16 lowercase hex digits (as
  // ConfigVersionOf).
  std::string config_version;
};

// A unit did something. Unit attributes are not used.
struct EventInput {
  Unit unit;
  std::string name;
  std::optional<double> value;
  std::optional<absl::Time> time;  // nullopt: `now` of the call
  std::string idempotency_key;     // empty: derived
};

enum class IgnoreReason {
  kNone,
  kUnknownExperiment,  // no such experiment in the config
  kNotRunning,         // draft, paused, stopped, or outside its schedule
  kQaOverride,         // the unit has a QA override
  kHoldout,            // the unit is in the global holdout
  kMissingUnitId,      // the unit lacks every interested experiment's id type
  kNoMetric,           // no metric of a non-draft experiment uses the event
  kNotAttributed,      // the store counted nothing (not exposed, outside the
                       // window, multi-exposed, already converted, ...)
  kMultiExposed,       // exposure of a unit already multi-exposed
};

// "unknown_experiment", "not_running", ... ("" for kNone).
const char* IgnoreReasonName(IgnoreReason reason);

struct RecordResult {
  // Events: kSpooled when the write to some experiment was spooled (its
  // final outcome is unknown), else kRecorded when some experiment counted
  // it, else kDuplicate when some experiment had seen it, else kIgnored.
  WriteOutcome outcome = WriteOutcome::kIgnored;
  IgnoreReason ignore_reason = IgnoreReason::kNone;  // when kIgnored
  // Events: experiments in which the event changed a metric (spooled
  // writes not included).
  int experiments_recorded = 0;
};

struct RecordBatchResult {
  std::string config_version;
  std::vector<RecordResult> results;  // one per input, in order
  int64_t recorded = 0;
  int64_t duplicate = 0;
  int64_t ignored = 0;
  int64_t conflict = 0;
  int64_t spooled = 0;
};

// The idempotency key used for an exposure without one: "dx:" and 32 hex
// digits of XXH3-128 over the experiment key, phase, the unit id, the
// variant key, the config version and the client time (when given).
// Retrying the same exposure gives the same key.
std::string DeriveExposureKey(const Experiment& experiment,
                              const std::string& unit_id,
                              const std::string& variant_key,
                              const std::string& config_version,
                              std::optional<absl::Time> client_time);

// The idempotency key used for an event without one. With a client time:
// "de:" and 32 hex digits of XXH3-128 over the unit's ids (sorted by type),
// the name, the value and the time, so a retry gives the same key. Without
// one: "dr:" and 32 random hex digits; such events cannot be deduplicated.
std::string DeriveEventKey(const EventInput& event);

// A client-supplied key as stored: "c:" + key, so it never equals a
// derived one.
std::string ClientKey(const std::string& key);

class Recorder {
 public:
  // REQUIRES: store outlives the Recorder.
  explicit Recorder(EventStore* store);

  Recorder(const Recorder&) = delete;
  Recorder& operator=(const Recorder&) = delete;

  // Validates and writes a batch of exposures against `config`. `now` is
  // the time used for exposures without one and for the future-time check.
  //
  // Errors: INVALID_ARGUMENT naming the first malformed item (nothing is
  // written); the store's error (e.g. UNAVAILABLE) when a write fails, in
  // which case the batch may be partly written and retrying it is safe.
  // Items the store spooled (SpooledEventStore) succeed with kSpooled.
  absl::StatusOr<RecordBatchResult> RecordExposures(
      const IndexedConfig& config, absl::Span<const ExposureInput> exposures,
      absl::Time now) const;

  // As RecordExposures, for events.
  absl::StatusOr<RecordBatchResult> RecordEvents(
      const IndexedConfig& config, absl::Span<const EventInput> events,
      absl::Time now) const;

 private:
  EventStore* const store_;  // not owned
};

// An EventStore that is made on first use, for a store whose backend may be
// down when the server starts (Redis). Until `factory` succeeds, every call
// fails with the factory's error; a failed factory is retried at most once
// per `retry_interval`, and meanwhile calls fail with UNAVAILABLE at once.
//
// Thread-safe.
class DeferredEventStore final : public EventStore {
 public:
  // Returns the store; a shared_ptr so it can own what the store needs
  // (e.g. a connection pool) through an aliasing shared_ptr.
  using Factory = std::function<absl::StatusOr<std::shared_ptr<EventStore>>()>;

  // Default retry_interval: 1s.
  explicit DeferredEventStore(Factory factory,
                              absl::Duration retry_interval = absl::Seconds(1));

  // Tries the factory now (e.g. at startup, to log whether the backend is
  // up). Returns its error, or OK once the store exists.
  absl::Status Connect() ABSL_LOCKS_EXCLUDED(mu_);

  absl::StatusOr<std::vector<WriteOutcome>> WriteExposures(
      const ExperimentLayout& layout,
      absl::Span<const Exposure> exposures) override;
  absl::StatusOr<std::vector<WriteOutcome>> WriteEvents(
      const ExperimentLayout& layout, absl::Span<const Event> events) override;
  std::vector<WriteResult> WriteEventBatches(
      absl::Span<const EventBatch> batches) override;
  absl::StatusOr<ExperimentAggregates> ReadAggregates(
      const ExperimentLayout& layout) override;
  absl::StatusOr<std::optional<int>> RecordedVariant(
      const ExperimentLayout& layout, absl::string_view unit_id) override;
  std::vector<RecordedVariantResult> RecordedVariants(
      absl::Span<const RecordedVariantQuery> queries) override;

 private:
  absl::StatusOr<EventStore*> Get() ABSL_LOCKS_EXCLUDED(mu_);

  const Factory factory_;
  const absl::Duration retry_interval_;
  absl::Mutex mu_;
  // Once set, never reset: the store reconnects by itself.
  std::shared_ptr<EventStore> store_ ABSL_GUARDED_BY(mu_);
  absl::Time next_attempt_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
  absl::Status last_error_ ABSL_GUARDED_BY(mu_);
};

}  // namespace abexp

#endif  // ABEXP_SERVER_CORE_RECORDER_H_
