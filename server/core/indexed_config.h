// An IndexedConfig is a Config together with everything assignment and
// recording precompute from it: lookups by key, hash prefixes, compiled
// conditions, layer slices and per-event fan-out. It exists only indexed:
// IndexedConfig::Build takes the parsed Config over and fills every index
// before anyone sees it, so code that needs the indexes asks for an
// IndexedConfig and never checks whether they were built.
//
// ParseConfig (config_parser.h) returns one; code that only reads the
// config model (the diff, results, the CLI) takes it as `const Config&`.
//
// Thread-safe: an IndexedConfig is immutable. Build returns it as
// std::shared_ptr<const IndexedConfig> and it cannot be copied, so no
// mutable one exists; every member is safe to read concurrently.
#ifndef ABEXP_SERVER_CORE_INDEXED_CONFIG_H_
#define ABEXP_SERVER_CORE_INDEXED_CONFIG_H_

#include <cstddef>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/time/time.h"
#include "server/core/bucketing.h"
#include "server/core/config.h"
#include "server/core/targeting.h"

namespace abexp {

// How one decision hashes a unit (docs/bucketing.md, section 3), computed
// once so that assignment frames only the unit id.
struct HashPlan {
  std::string prefix;  // HashPrefix(purpose, salt)
  int id_slot = -1;    // the id type's index in IndexedConfig::id_types
};

// What Assign reads of every experiment on every request, packed into one
// cache line per experiment: an Experiment spreads these over ten, and
// most requests need nothing else of most experiments.
struct ExperimentPlan {
  // layer_index when the experiment is in no layer, and when its layer
  // names no layer of the config (no unit is in range).
  static constexpr int kNoLayer = -1;
  static constexpr int kUnknownLayer = -2;

  ExperimentStatus status = ExperimentStatus::kDraft;
  bool sticky = false;
  bool has_start = false;  // start_time is set
  bool has_end = false;    // end_time is set
  int id_slot = -1;        // the variant hash's id slot
  // Index in IndexedConfig::layer_plans, kNoLayer or kUnknownLayer.
  int layer_index = kNoLayer;
  BucketRange layer_range;
  absl::Time start;  // *start_time, when has_start
  absl::Time end;    // *end_time, when has_end
  // Owned by the experiment's ExperimentIndex (null: everyone).
  const CompiledCondition* targeting = nullptr;
};

// The rest of what assignment precomputes for one experiment.
struct ExperimentIndex {
  HashPlan variant_hash;  // purpose "variant", the salt and unit id type
  // VariantIndex(rollout_variant); -1 when it is empty.
  int rollout_variant = -1;
  std::shared_ptr<const CompiledCondition> targeting;  // null iff targeting is
  // Indexes in Config::features of the features some variant sets, ascending.
  std::vector<int> settable_features;
  // By variant: for each entry of Variant::features, in map order, the
  // feature's index in Config::features (-1: not a feature).
  std::vector<std::vector<int>> variant_features;
};

// What assignment precomputes for one feature rule.
struct FeatureRuleIndex {
  HashPlan rollout_hash;  // purpose "rollout", the rule's salt and unit id type
  std::shared_ptr<const CompiledCondition> condition;  // null iff condition is
};

// One layer as assignment uses it: how to hash the unit, and which
// experiments own which slice.
struct LayerPlan {
  HashPlan hash;  // purpose "layer", the layer's salt and unit id type
  struct Slice {
    BucketRange range;    // the experiment's layer_range
    int experiment = -1;  // index in Config::experiments
  };
  // Every experiment of the layer but the stopped ones (whose rollout
  // ignores the layer).
  std::vector<Slice> slices;
};

class IndexedConfig final : public Config {
 public:
  // Takes `config` over (pass it with std::move: nothing is copied) and
  // builds every index below from it. Never fails: a Config that passed
  // ParseConfig's validation, or one built by hand, is indexed as it is
  // (a reference to a missing layer, feature or metric indexes as none).
  static std::shared_ptr<const IndexedConfig> Build(Config config);

  IndexedConfig(const IndexedConfig&) = delete;
  IndexedConfig& operator=(const IndexedConfig&) = delete;

  // By hash, with the same answers as Config's linear lookups.
  const Experiment* FindExperiment(const std::string& key) const;
  const Feature* FindFeature(const std::string& key) const;
  const Metric* FindMetric(const std::string& key) const;

  // Every member below is filled by Build and never changes after.

  // A number no other IndexedConfig this process built has, not even one
  // built after this one is freed (e.g. to key per-config caches, where an
  // address can be reused).
  uint64_t build_id = 0;

  // Key -> index in experiments, features, metrics.
  absl::flat_hash_map<std::string, int> experiment_by_key;
  absl::flat_hash_map<std::string, int> feature_by_key;
  absl::flat_hash_map<std::string, int> metric_by_key;

  // What assignment needs precomputed, so that a request does no string
  // lookups beyond one per id type and one per attribute it sends.

  // Every id type a decision hashes on; HashPlan::id_slot indexes it.
  std::vector<std::string> id_types;
  // Attributes::hasher of each id type, so a request finds its ids without
  // hashing the names. (absl hashes are seeded per process: these are valid
  // in the process that built them, and an IndexedConfig is never
  // serialized.)
  std::vector<size_t> id_type_hashes;
  std::vector<ExperimentPlan> experiment_plans;     // by experiment index
  std::vector<ExperimentIndex> experiment_indexes;  // by experiment index
  // By feature index, then rule index.
  std::vector<std::vector<FeatureRuleIndex>> rule_indexes;
  // The layers in `layers` order; ExperimentPlan::layer_index indexes it.
  std::vector<LayerPlan> layer_plans;
  // The experiments whose outcome does not depend on a layer slice: those in
  // no layer, and stopped ones. With the slices a unit's layer buckets fall
  // in and the unit's QA overrides, they are every experiment that can
  // assign the unit.
  std::vector<int> layer_free_experiments;
  // Whether any experiment is sticky, so that calls on a config without
  // one need not look.
  bool any_sticky = false;
  HashPlan holdout_hash;  // when `holdout` is set
  // Attribute name -> slot (CompiledCondition): the declared attributes
  // first, in `attributes` order, then any other attribute a condition names.
  absl::flat_hash_map<std::string, int> attribute_slots;
  // By slot: the name, its Attributes::hasher hash (see id_type_hashes),
  // and the declared type (nullopt for an undeclared attribute).
  std::vector<std::string> attribute_slot_names;
  std::vector<size_t> attribute_slot_hashes;
  std::vector<std::optional<AttributeType>> attribute_slot_types;
  // By id slot: unit id -> the (experiment index, variant index) pairs its
  // QA overrides force. Entries naming no variant are left out.
  std::vector<
      absl::flat_hash_map<std::string, std::vector<std::pair<int, int>>>>
      qa_overrides_by_id;

  // Event name -> the indexes of the non-draft experiments with a metric on
  // it, ascending: where the recorder sends the event.
  absl::flat_hash_map<std::string, std::vector<int>> experiments_by_event;

 private:
  explicit IndexedConfig(Config config);

  // The parts of Build, in the order it runs them (later parts read what
  // earlier ones filled). The order of PlanHash calls fixes the id slots,
  // and that of compiler.Compile the attribute slots.
  void IndexKeys();
  void PlanLayersAndHoldout();
  void IndexExperiments(ConditionCompiler& compiler);
  void IndexFeatureRules(ConditionCompiler& compiler);
  void IndexIdTypesAndAttributes(const ConditionCompiler& compiler);
  void SliceLayers();
  void IndexQaOverrides();
  void IndexMetricEvents();

  // ExperimentPlan::layer_index of an experiment in `layer`.
  int LayerIndexOf(const std::string& layer) const;
  // The plan of a hash with `purpose` and `salt` on `id_type`, giving the
  // id type a slot in id_types if it has none yet.
  HashPlan PlanHash(HashPurpose purpose, const std::string& salt,
                    const std::string& id_type);
};

}  // namespace abexp

#endif  // ABEXP_SERVER_CORE_INDEXED_CONFIG_H_
