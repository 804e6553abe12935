// Config diffs: which units a change to the experiment config would move.
//
// DiffConfigs compares two validated Configs and, for every experiment in
// either, computes EXACTLY (over the bucket space, not by sampling) the share
// of units that would change variant, join or leave. A unit's assignment is
// a function of two independent buckets (bucketing.h): its layer bucket
// (HashPurpose::kLayer, layer salt) and its variant bucket
// (HashPurpose::kVariant, experiment salt), each uniform over kNumBuckets.
// When a salt or unit id type changes, the old and new buckets are
// independent, so the joint distribution is the product of the two.
//
// Shares are of units that pass targeting and are not held out; changes to
// targeting, the holdout, schedules and QA overrides are reported as notes,
// not computed.
//
// Thread-safe: DiffConfigs is a pure function.
#ifndef ABEXP_SERVER_CORE_CONFIG_DIFF_H_
#define ABEXP_SERVER_CORE_CONFIG_DIFF_H_

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "server/core/config.h"

namespace abexp {

// An exact fraction, always reduced (numerator 0 has denominator 1).
struct Share {
  uint64_t numerator = 0;
  uint64_t denominator = 1;

  // Builds numerator/denominator in lowest terms; 0/0 is 0.
  static Share Of(uint64_t numerator, uint64_t denominator);
  double value() const {
    return static_cast<double>(numerator) / static_cast<double>(denominator);
  }
  bool zero() const { return numerator == 0; }
  bool operator==(const Share& o) const {
    return numerator == o.numerator && denominator == o.denominator;
  }
  bool operator!=(const Share& o) const { return !(*this == o); }
};

enum class DiffChange { kAdded, kRemoved, kChanged, kUnchanged };
// "added", "removed", "changed", "unchanged".
const char* DiffChangeName(DiffChange change);

struct ExperimentDiff {
  std::string key;
  DiffChange change = DiffChange::kUnchanged;
  // Unset when the experiment is absent from that config.
  std::optional<ExperimentStatus> old_status;
  std::optional<ExperimentStatus> new_status;
  int old_phase = 0;
  int new_phase = 0;

  // Of the units assigned (bucketed into a variant of a running experiment)
  // in both configs, the share whose variant key differs.
  Share moved;
  // Of all eligible units: unassigned before and assigned after.
  Share added;
  // Of all eligible units: assigned before and unassigned after.
  Share removed;

  // The variant hash changed (salt or unit id type), so old and new buckets
  // are independent.
  bool rehashed = false;
  // The phase was increased: a declared re-randomization, results restart.
  bool new_phase_declared = false;
  // The split between variants changed: some variant's share of the
  // bucket space at full traffic (its full_range) differs, e.g. a weight
  // change or a variant added with a positive weight. Even where no unit is
  // moved directly (at partial traffic), units leave one variant and others
  // join another, which biases the comparison.
  bool allocation_changed = false;
  // True when the experiment runs in the new config and, without a declared
  // new phase, moves units (moved > 0) or changes the allocation. Fails the
  // diff.
  bool breaking = false;

  // Human-readable changes, e.g. "traffic 0.25 -> 0.5".
  std::vector<std::string> notes;
};

struct FeatureDiff {
  std::string key;
  DiffChange change = DiffChange::kUnchanged;
  // E.g. "default false -> true", "rule 0 rollout 0.1 -> 0.2".
  std::vector<std::string> notes;
};

struct ConfigDiff {
  std::string old_version;
  std::string new_version;
  // New-config order, then experiments only in the old config in its order.
  // Unchanged experiments are included.
  std::vector<ExperimentDiff> experiments;
  // Only features that were added, removed or changed.
  std::vector<FeatureDiff> features;
  // Config-wide changes: holdout, layers, attributes, segments.
  std::vector<std::string> notes;

  // False when any experiment is breaking.
  bool ok() const;
};

// REQUIRES: both configs passed validation (ParseConfig succeeded).
ConfigDiff DiffConfigs(const Config& old_config, const Config& new_config);

}  // namespace abexp

#endif  // ABEXP_SERVER_CORE_CONFIG_DIFF_H_
