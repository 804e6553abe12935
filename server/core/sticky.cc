#include "server/core/sticky.h"

#include <algorithm>
#include <cstdio>
#include <map>
#include <set>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"

namespace abexp {
namespace {

// Whether any experiment of the config is sticky: otherwise no call looks
// anything up.
bool HasSticky(const IndexedConfig& config) { return config.any_sticky; }

}  // namespace

absl::StatusOr<UnitStickyLookups> StickyLookupsForUnits(
    const IndexedConfig& config, absl::Span<const Unit> units,
    const AssignOptions& options) {
  UnitStickyLookups all;
  if (!HasSticky(config)) return all;
  for (size_t u = 0; u < units.size(); ++u) {
    absl::StatusOr<std::vector<StickyLookup>> mine =
        StickyLookups(config, units[u], options);
    if (!mine.ok()) return mine.status();
    for (StickyLookup& l : *mine) {
      all.lookups.push_back(std::move(l));
      all.unit_of.push_back(u);
    }
  }
  return all;
}

std::vector<RecordedVariants> ApplyRecordedVariants(
    const UnitStickyLookups& lookups,
    absl::Span<const RecordedVariantResult> results, size_t unit_count) {
  std::vector<RecordedVariants> recorded(unit_count);
  for (size_t i = 0; i < lookups.lookups.size(); ++i) {
    RecordedVariants& mine = recorded[lookups.unit_of[i]];
    if (!results[i].ok()) {
      mine[lookups.lookups[i].experiment] = kUnreadVariant;
    } else if (results[i]->has_value()) {
      mine[lookups.lookups[i].experiment] = **results[i];
    }
  }
  return recorded;
}

StickyReader::StickyReader(StickyOptions options)
    : options_(std::move(options)) {
  if (!options_.log) {
    options_.log = [](absl::string_view line) {
      std::fprintf(stderr, "%s\n", std::string(line).c_str());
    };
  }
  if (!options_.clock) options_.clock = [] { return absl::Now(); };
}

std::vector<RecordedVariantResult> StickyReader::Read(
    const IndexedConfig& config, absl::Span<const StickyLookup> lookups) {
  if (lookups.empty()) return {};
  if (options_.store == nullptr) {
    // A server built without a store: nothing to warn about per call.
    return std::vector<RecordedVariantResult>(
        lookups.size(),
        absl::FailedPreconditionError(
            "this abexp-server has no event store to read recorded "
            "exposures from, so sticky experiments are bucketed by hash"));
  }
  const absl::Time now = options_.clock();
  {
    absl::MutexLock lock(&mu_);
    if (now < paused_until_) {
      unlogged_failures_ += static_cast<int64_t>(lookups.size());
      return std::vector<RecordedVariantResult>(
          lookups.size(), absl::UnavailableError(absl::StrCat(
                              "sticky lookups are paused until ",
                              absl::FormatTime("%H:%M:%E3SZ", paused_until_,
                                               absl::UTCTimeZone()),
                              " after the event store failed with ",
                              pause_reason_.ToString())));
    }
  }
  // std::map: the queries point at its layouts, which must not move.
  std::map<const Experiment*, ExperimentLayout> layouts;
  for (const StickyLookup& l : lookups) {
    if (!layouts.count(l.experiment)) {
      layouts.emplace(l.experiment, LayoutOf(config, *l.experiment));
    }
  }
  std::vector<RecordedVariantQuery> queries;
  queries.reserve(lookups.size());
  for (const StickyLookup& l : lookups) {
    queries.push_back({&layouts.at(l.experiment), l.unit_id});
  }
  std::vector<RecordedVariantResult> results =
      options_.store->RecordedVariants(queries);
  if (results.size() != lookups.size()) {
    // A store breaking its contract must not take the call down.
    results.assign(lookups.size(),
                   absl::InternalError(absl::StrFormat(
                       "the event store answered %d of %d sticky lookups",
                       results.size(), lookups.size())));
  }
  ReportFailures(lookups, results, now);
  return results;
}

absl::StatusOr<std::vector<RecordedVariants>> StickyReader::ReadForUnits(
    const IndexedConfig& config, absl::Span<const Unit> units,
    const AssignOptions& options) {
  absl::StatusOr<UnitStickyLookups> lookups =
      StickyLookupsForUnits(config, units, options);
  if (!lookups.ok()) return lookups.status();
  const std::vector<RecordedVariantResult> results =
      Read(config, lookups->lookups);
  return ApplyRecordedVariants(*lookups, results, units.size());
}

absl::StatusOr<std::vector<RecordedVariants>> StickyReader::SkipForUnits(
    const IndexedConfig& config, absl::Span<const Unit> units,
    const AssignOptions& options, const absl::Status& why) {
  absl::StatusOr<UnitStickyLookups> lookups =
      StickyLookupsForUnits(config, units, options);
  if (!lookups.ok()) return lookups.status();
  const std::vector<RecordedVariantResult> results(lookups->lookups.size(),
                                                   why);
  ReportFailures(lookups->lookups, results, options_.clock());
  return ApplyRecordedVariants(*lookups, results, units.size());
}

bool StickyReader::WouldRead(const IndexedConfig& config) {
  if (options_.store == nullptr || !HasSticky(config)) return false;
  const absl::Time now = options_.clock();
  absl::MutexLock lock(&mu_);
  return now >= paused_until_;
}

std::optional<RecordedVariantResult> StickyReader::ReadForExplain(
    const IndexedConfig& config, const Unit& unit, const Experiment& experiment,
    absl::Time now, const absl::Status& skip) {
  if (!experiment.sticky) return std::nullopt;
  AssignOptions options;
  options.experiment_keys = {experiment.key};
  options.now = now;
  absl::StatusOr<std::vector<StickyLookup>> lookups =
      StickyLookups(config, unit, options);
  if (!lookups.ok() || lookups->empty()) return std::nullopt;
  if (!skip.ok()) {
    const std::vector<RecordedVariantResult> results(lookups->size(), skip);
    ReportFailures(*lookups, results, options_.clock());
    return results[0];
  }
  return std::move(Read(config, *lookups)[0]);
}

void StickyReader::ReportFailures(
    absl::Span<const StickyLookup> lookups,
    const std::vector<RecordedVariantResult>& results, absl::Time now) {
  int64_t failures = 0;
  absl::Status first;
  std::set<std::string> experiments;
  bool store_down = false;
  for (size_t i = 0; i < results.size(); ++i) {
    if (results[i].ok()) continue;
    const absl::Status& s = results[i].status();
    if (first.ok()) first = s;
    ++failures;
    experiments.insert(lookups[i].experiment->key);
    store_down =
        store_down || absl::IsUnavailable(s) || absl::IsDeadlineExceeded(s);
  }
  if (failures == 0) return;
  std::string line;
  {
    absl::MutexLock lock(&mu_);
    if (store_down) {
      paused_until_ = now + options_.retry_after;
      pause_reason_ = first;
    }
    if (now < next_log_) {
      unlogged_failures_ += failures;
      return;
    }
    line = absl::StrCat(
        "warning: sticky assignment could not read the recorded variants "
        "of experiment(s) ",
        absl::StrJoin(experiments, ", "), ": ", first.ToString(),
        "; serving the variants computed from the config instead (an "
        "exposed unit may see another variant than before)",
        store_down ? absl::StrCat("; retrying in ",
                                  absl::FormatDuration(options_.retry_after))
                   : std::string(),
        unlogged_failures_ > 0
            ? absl::StrCat(" (", unlogged_failures_,
                           " more lookups were not served from the record "
                           "since the last such line)")
            : std::string());
    unlogged_failures_ = 0;
    next_log_ = now + options_.log_interval;
  }
  options_.log(line);
}

}  // namespace abexp
