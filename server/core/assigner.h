// Assignment: which experiments a unit is in, which variant it gets, and the
// resolved feature values, for one immutable Config.
//
// Order of evaluation for one experiment (docs/bucketing.md, section 5):
// status and schedule, unit id present, QA override, global
// holdout, targeting, layer range, recorded variant (sticky experiments
// only), traffic and variant range. (Holdout, targeting and layer must all
// pass, so Assign tests the cheap layer range first: same answer. Explain
// reports them in the spec's order.)
//
// Cost: Assign does its string lookups once per request (ids, attributes,
// QA overrides) and hashes each layer once; it evaluates only the
// experiments whose layer slice holds the unit, layer-free and stopped ones,
// and QA overrides. IndexedConfig::Build prepares all of this at load, so
// every function here that needs it takes an IndexedConfig.
//
// Sticky experiments: the caller reads the variant each unit was first
// exposed to (EventStore::RecordedVariant) for the experiments StickyLookups
// names and passes them in AssignOptions::recorded_variants. A recorded
// variant is served, with reason kSticky, to a unit that passes every check
// before traffic, so weight and traffic changes neither move nor drop an
// exposed unit, while a QA override, the holdout, targeting and the layer
// still decide.
//
// Feature precedence: a running experiment's variant, then a stopped
// experiment's rollout_variant, then the feature's own rules in order, then
// its default.
//
// Thread-safe: pure functions of their arguments.
#ifndef ABEXP_SERVER_CORE_ASSIGNER_H_
#define ABEXP_SERVER_CORE_ASSIGNER_H_

#include <optional>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "server/core/config.h"
#include "server/core/indexed_config.h"

namespace abexp {

// Limits on a unit, enforced by ValidateUnit.
inline constexpr size_t kMaxAttributes = 100;
inline constexpr size_t kMaxUnitIds = 16;
inline constexpr size_t kMaxAttributeNameBytes = 128;
inline constexpr size_t kMaxAttributeValueBytes = 1024;

struct Unit {
  // Id type -> id, e.g. "user_id" -> "u-123".
  absl::flat_hash_map<std::string, std::string> ids;
  Attributes attributes;
};

// Returns INVALID_ARGUMENT naming the field (e.g. "unit.ids[user_id]") when
// the unit breaks a limit, or sends an attribute whose type differs from the
// type the config declares for it. Attributes the config does not declare
// are allowed and ignored.
absl::Status ValidateUnit(const IndexedConfig& config, const Unit& unit);

// ValidateUnit, with the unit named `field` in the message instead of
// "unit" (e.g. "events[3].unit.attributes has 101 entries; ..."). The one
// unit check of every RPC that takes a unit.
absl::Status ValidateUnit(const IndexedConfig& config, const Unit& unit,
                          absl::string_view field);

// kStickyUnread: a sticky experiment whose recorded variant could not be
// read (the store failed, was paused after failing, or did not answer
// within its budget), so the unit got the variant its bucket gives, as
// kBucketed would, and may have been shown another one before.
enum class AssignmentReason {
  kBucketed,
  kQaOverride,
  kRollout,
  kSticky,
  kStickyUnread
};

// A recorded_variants value (see AssignOptions) saying the lookup failed.
inline constexpr int kUnreadVariant = -1;
enum class FeatureSource { kDefault, kRule, kExperiment, kRollout };

struct ExperimentAssignment {
  const Experiment* experiment = nullptr;  // points into the Config
  int variant_index = -1;
  AssignmentReason reason = AssignmentReason::kBucketed;
};

struct ResolvedFeature {
  const Feature* feature = nullptr;     // points into the Config
  const FeatureValue* value = nullptr;  // points into the Config
  FeatureSource source = FeatureSource::kDefault;
  const Experiment* experiment = nullptr;  // kExperiment, kRollout
  int variant_index = -1;                  // kExperiment, kRollout
  int rule_index = -1;                     // kRule
};

struct AssignOptions {
  // Empty: every experiment. Unknown keys are NOT_FOUND.
  std::vector<std::string> experiment_keys;
  // Empty: every feature. Unknown keys are NOT_FOUND.
  std::vector<std::string> feature_keys;
  // The clock used for start and end times.
  absl::Time now = absl::InfinitePast();
  // Sticky experiments only: the variant index the unit was first exposed to
  // in the experiment's current phase, by experiment (pointing into the
  // Config). Served with reason kSticky where StickyLookups says so.
  // kUnreadVariant: the lookup failed, and the unit is bucketed by hash with
  // reason kStickyUnread. Any other index that is not one of the
  // experiment's variants is ignored. Experiments not in the map are
  // bucketed by hash. Default: empty.
  absl::flat_hash_map<const Experiment*, int> recorded_variants;
};

// A sticky experiment whose recorded variant Assign would serve the unit.
struct StickyLookup {
  const Experiment* experiment = nullptr;  // points into the Config
  std::string unit_id;  // the unit's id of the experiment's unit id type
};

// The result refers into the Config it was computed from: keep the Config
// alive (hold its shared_ptr) while using it.
struct AssignResult {
  bool in_holdout = false;
  std::vector<ExperimentAssignment> assignments;  // config order
  std::vector<ResolvedFeature> features;          // config order
};

// Whether the unit is in the config's global holdout. False when the config
// has none or the unit lacks the holdout's unit id type.
bool InHoldout(const Config& config, const Unit& unit);

// Step 7 of docs/bucketing.md alone: the index of the variant whose active
// range holds the unit's variant bucket in config.experiments[experiment],
// or -1 when the bucket is in none (traffic below 1). The checks before it
// are the caller's.
// REQUIRES: experiment < config.experiments.size().
int BucketedVariant(const IndexedConfig& config, size_t experiment,
                    absl::string_view unit_id);

// Errors: ValidateUnit's for an invalid unit; NOT_FOUND for an unknown key
// in options.
absl::StatusOr<AssignResult> Assign(const IndexedConfig& config,
                                    const Unit& unit,
                                    const AssignOptions& options);

// The experiments whose options.recorded_variants entry Assign would use for
// this unit, in config order: those Assign evaluates (returned, or setting a
// wanted feature) with sticky: true, running and inside their schedule,
// where the unit has the experiment's id type, has no QA override, is not in
// the holdout, passes targeting and is in the layer range. Only these need
// a store lookup. Errors as for Assign (options.recorded_variants unused).
absl::StatusOr<std::vector<StickyLookup>> StickyLookups(
    const IndexedConfig& config, const Unit& unit,
    const AssignOptions& options);

// Explain's answer for one unit and one experiment.
struct ExplainStep {
  std::string check;  // "status", "schedule", "unit_id", "qa_override",
                      // "holdout", "targeting", "layer", "sticky",
                      // "traffic"
  bool passed = false;
  std::string detail;
};

struct ExplainResult {
  const Experiment* experiment = nullptr;
  int variant_index = -1;  // -1: no variant
  AssignmentReason reason = AssignmentReason::kBucketed;
  std::string summary;
  std::vector<ExplainStep> steps;
  std::vector<RuleTraceEntry> targeting;
  bool has_variant_hash = false;
  BucketTrace variant_hash;
  std::string unit_id;  // the id hashed, when one was found
  bool has_layer = false;
  BucketTrace layer_hash;
  bool in_layer_range = false;
  bool has_holdout = false;
  BucketTrace holdout_hash;
  bool held_out = false;
};

// NOT_FOUND when experiment_key is not in the config.
//
// `recorded`: for a sticky experiment, what the event store said about the
// unit (its first exposed variant, nullopt for none, or why it could not be
// read), explained in a "sticky" step before "traffic"; null when it was
// not looked up (not sticky, or StickyLookups does not name it).
absl::StatusOr<ExplainResult> Explain(
    const IndexedConfig& config, const Unit& unit,
    const std::string& experiment_key, absl::Time now,
    const absl::StatusOr<std::optional<int>>* recorded = nullptr);

}  // namespace abexp

#endif  // ABEXP_SERVER_CORE_ASSIGNER_H_
