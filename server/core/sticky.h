// Sticky experiments (sticky: true; docs/config.md, "Sticky experiments")
// serve each exposed unit the variant it was first exposed to. This file is
// the read side of that rule, between the assigner and the EventStore:
//
//  - StickyLookupsForUnits: which (experiment, unit) pairs of a call need a
//    store lookup (StickyLookups in assigner.h, for every unit at once);
//  - StickyReader: reads them in one EventStore::RecordedVariants call, and
//    acts as a circuit breaker: a store failure never fails the call, is
//    logged at most once per interval, and after UNAVAILABLE or
//    DEADLINE_EXCEEDED lookups are skipped for a short pause;
//  - ApplyRecordedVariants: turns the answers into each unit's
//    AssignOptions::recorded_variants (units never exposed are left out, so
//    they are bucketed by hash; a failed lookup is kUnreadVariant, so the
//    unit is bucketed by hash with reason kStickyUnread).
//
//   StickyReader reader(options);
//   absl::StatusOr<std::vector<RecordedVariants>> recorded =
//       reader.ReadForUnits(*config, units, assign_options);
//   assign_options.recorded_variants = std::move((*recorded)[i]);
//
// Thread-safe: StickyReader may be called concurrently (one mutex guards the
// pause and the log limit; the store call runs outside it). The free
// functions are pure.
#ifndef ABEXP_SERVER_CORE_STICKY_H_
#define ABEXP_SERVER_CORE_STICKY_H_

#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "server/core/assigner.h"
#include "server/core/config.h"
#include "server/core/event_store.h"
#include "server/core/indexed_config.h"

namespace abexp {

// How a StickyReader reads the recorded variants of sticky experiments.
struct StickyOptions {
  // Where exposures are recorded (the Recorder's store). Null: nowhere, and
  // sticky experiments are bucketed by hash like the others. Not owned.
  EventStore* store = nullptr;
  // Receives a warning line when lookups fail, at most one per
  // log_interval (with a count of the failures not logged). Default (empty):
  // the line is written to stderr.
  std::function<void(absl::string_view)> log;
  // Default: 10s.
  absl::Duration log_interval = absl::Seconds(10);
  // After the store fails with UNAVAILABLE or DEADLINE_EXCEEDED, calls skip
  // the lookups for this long and serve computed variants, so a hung Redis
  // holds up about one call per interval for its command timeout rather than
  // every call. Default: 1s.
  absl::Duration retry_after = absl::Seconds(1);
  // How long a call may wait for its recorded variants, all told. The
  // reader does not enforce it: its user sets the store's timeouts to it
  // (abexp-server's --sticky_read_budget), and a call that has waited this
  // long for a thread to read on skips the read (SkipForUnits). Default:
  // no limit.
  absl::Duration budget = absl::InfiniteDuration();
  // The clock for the pause and the log interval. Default (empty):
  // absl::Now.
  std::function<absl::Time()> clock = nullptr;
};

// One unit's recorded variants: experiment (pointing into the Config) ->
// variant index, as AssignOptions::recorded_variants takes them.
using RecordedVariants = absl::flat_hash_map<const Experiment*, int>;

// The sticky lookups of several units, in one list.
struct UnitStickyLookups {
  std::vector<StickyLookup> lookups;  // unit order, then config order
  std::vector<size_t> unit_of;        // lookups[i] is for units[unit_of[i]]
};

// StickyLookups (assigner.h) for each of `units` with `options`. Empty,
// without looking at the units, when no experiment of `config` is sticky.
// Errors: those Assign would return for a unit and the options (e.g.
// INVALID_ARGUMENT for a unit that breaks a limit, NOT_FOUND for an unknown
// key in options.experiment_keys).
absl::StatusOr<UnitStickyLookups> StickyLookupsForUnits(
    const IndexedConfig& config, absl::Span<const Unit> units,
    const AssignOptions& options);

// Each unit's recorded variants: result i answers lookups.lookups[i]. A
// unit never exposed adds nothing (the unit is bucketed by hash); a failed
// result adds kUnreadVariant (bucketed by hash, reason kStickyUnread).
// Returns `unit_count` maps.
// REQUIRES: results.size() == lookups.lookups.size(), and every
// lookups.unit_of[i] < unit_count.
std::vector<RecordedVariants> ApplyRecordedVariants(
    const UnitStickyLookups& lookups,
    absl::Span<const RecordedVariantResult> results, size_t unit_count);

class StickyReader {
 public:
  // REQUIRES: options.store, when set, outlives the reader.
  explicit StickyReader(StickyOptions options);

  StickyReader(const StickyReader&) = delete;
  StickyReader& operator=(const StickyReader&) = delete;

  // One result per lookup, in order, from at most one store call; never
  // fails as a whole. A lookup that could not be served has the reason as
  // its status:
  //  - FAILED_PRECONDITION saying there is no event store (options.store
  //    null; nothing is logged);
  //  - UNAVAILABLE naming the time lookups are paused until and the error
  //    that paused them (the store is not called);
  //  - the store's own error; INTERNAL when the store answered another
  //    number of results than lookups.
  // Store errors are logged (rate-limited) and UNAVAILABLE or
  // DEADLINE_EXCEEDED starts a pause of options.retry_after.
  std::vector<RecordedVariantResult> Read(
      const IndexedConfig& config, absl::Span<const StickyLookup> lookups)
      ABSL_LOCKS_EXCLUDED(mu_);

  // StickyLookupsForUnits, Read and ApplyRecordedVariants: the
  // recorded_variants each unit's Assign should use, one map per unit.
  // Errors as for StickyLookupsForUnits (never a store error).
  absl::StatusOr<std::vector<RecordedVariants>> ReadForUnits(
      const IndexedConfig& config, absl::Span<const Unit> units,
      const AssignOptions& options) ABSL_LOCKS_EXCLUDED(mu_);

  // As ReadForUnits, without calling the store: every lookup fails with
  // `why`, which is logged as a store failure would be (and starts a pause
  // if UNAVAILABLE or DEADLINE_EXCEEDED). For a call that cannot wait for
  // the store, e.g. when no thread is free to wait for it.
  // REQUIRES: !why.ok().
  absl::StatusOr<std::vector<RecordedVariants>> SkipForUnits(
      const IndexedConfig& config, absl::Span<const Unit> units,
      const AssignOptions& options, const absl::Status& why)
      ABSL_LOCKS_EXCLUDED(mu_);

  const StickyOptions& options() const { return options_; }

  // Whether a call on `config` may call the store: there is a store, some
  // experiment is sticky, and lookups are not paused. When false, Read
  // answers without waiting on anything.
  bool WouldRead(const IndexedConfig& config) ABSL_LOCKS_EXCLUDED(mu_);

  // The lookup Assign would make for `unit` in `experiment` at `now`, for
  // Explain (its `recorded` argument), so that both give the same variant:
  // nullopt when the experiment is not sticky or StickyLookups does not
  // name it (including when the unit fails its checks). When `skip` is not
  // OK, the store is not called and the lookup's result is `skip`, as in
  // SkipForUnits.
  // REQUIRES: `experiment` points into `config`.
  std::optional<RecordedVariantResult> ReadForExplain(
      const IndexedConfig& config, const Unit& unit,
      const Experiment& experiment, absl::Time now,
      const absl::Status& skip = absl::OkStatus()) ABSL_LOCKS_EXCLUDED(mu_);

 private:
  // Logs the failures among `results` (rate-limited) and starts a pause
  // when the store is down.
  void ReportFailures(absl::Span<const StickyLookup> lookups,
                      const std::vector<RecordedVariantResult>& results,
                      absl::Time now) ABSL_LOCKS_EXCLUDED(mu_);

  StickyOptions options_;  // log and clock always set
  absl::Mutex mu_;
  // Lookups are skipped before this time, because of pause_reason_.
  absl::Time paused_until_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
  absl::Status pause_reason_ ABSL_GUARDED_BY(mu_);
  // No warning line is written before this time.
  absl::Time next_log_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
  // Failed lookups since the last warning line.
  int64_t unlogged_failures_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace abexp

#endif  // ABEXP_SERVER_CORE_STICKY_H_
