#include "server/core/indexed_config.h"

#include <algorithm>
#include <atomic>
#include <iterator>
#include <utility>

namespace abexp {

std::shared_ptr<const IndexedConfig> IndexedConfig::Build(Config config) {
  // Not make_shared: the constructor is private.
  return std::shared_ptr<const IndexedConfig>(
      new IndexedConfig(std::move(config)));
}

IndexedConfig::IndexedConfig(Config config) : Config(std::move(config)) {
  static std::atomic<uint64_t> last_build_id{0};
  build_id = last_build_id.fetch_add(1, std::memory_order_relaxed) + 1;
  IndexKeys();
  // Declared attributes take the first slots, so their types index by slot.
  ConditionCompiler compiler;
  for (const auto& [name, type] : attributes) compiler.SlotOf(name);
  PlanLayersAndHoldout();
  IndexExperiments(compiler);
  IndexFeatureRules(compiler);
  IndexIdTypesAndAttributes(compiler);
  SliceLayers();
  IndexQaOverrides();
  IndexMetricEvents();
}

void IndexedConfig::IndexKeys() {
  for (size_t i = 0; i < features.size(); ++i) {
    feature_by_key.emplace(features[i].key, static_cast<int>(i));
  }
  for (size_t i = 0; i < experiments.size(); ++i) {
    experiment_by_key.emplace(experiments[i].key, static_cast<int>(i));
  }
  for (size_t i = 0; i < metrics.size(); ++i) {
    metric_by_key.emplace(metrics[i].key, static_cast<int>(i));
  }
}

HashPlan IndexedConfig::PlanHash(HashPurpose purpose, const std::string& salt,
                                 const std::string& id_type) {
  HashPlan p;
  p.prefix = HashPrefix(purpose, salt);
  auto it = std::find(id_types.begin(), id_types.end(), id_type);
  p.id_slot = static_cast<int>(it - id_types.begin());
  if (it == id_types.end()) id_types.push_back(id_type);
  return p;
}

void IndexedConfig::PlanLayersAndHoldout() {
  for (const auto& [key, layer] : layers) {
    LayerPlan l;
    l.hash = PlanHash(HashPurpose::kLayer, layer.salt, layer.unit_id_type);
    layer_plans.push_back(std::move(l));
  }
  if (holdout) {
    holdout_hash =
        PlanHash(HashPurpose::kHoldout, holdout->salt, holdout->unit_id_type);
  }
}

int IndexedConfig::LayerIndexOf(const std::string& layer) const {
  if (layer.empty()) return ExperimentPlan::kNoLayer;
  auto it = layers.find(layer);
  if (it == layers.end()) return ExperimentPlan::kUnknownLayer;
  return static_cast<int>(std::distance(layers.begin(), it));
}

void IndexedConfig::IndexExperiments(ConditionCompiler& compiler) {
  experiment_indexes.reserve(experiments.size());
  experiment_plans.reserve(experiments.size());
  for (const Experiment& e : experiments) {
    ExperimentIndex& x = experiment_indexes.emplace_back();
    x.variant_hash = PlanHash(HashPurpose::kVariant, e.salt, e.unit_id_type);
    x.rollout_variant =
        e.rollout_variant.empty() ? -1 : e.VariantIndex(e.rollout_variant);
    x.targeting = compiler.Compile(e.targeting);
    for (const Variant& v : e.variants) {
      std::vector<int>& indices = x.variant_features.emplace_back();
      for (const auto& [feature_key, value] : v.features) {
        auto it = feature_by_key.find(feature_key);
        const int f = it == feature_by_key.end() ? -1 : it->second;
        indices.push_back(f);
        if (f >= 0) x.settable_features.push_back(f);
      }
    }
    std::sort(x.settable_features.begin(), x.settable_features.end());
    x.settable_features.erase(
        std::unique(x.settable_features.begin(), x.settable_features.end()),
        x.settable_features.end());

    ExperimentPlan& p = experiment_plans.emplace_back();
    p.status = e.status;
    p.sticky = e.sticky;
    any_sticky = any_sticky || e.sticky;
    p.has_start = e.start_time.has_value();
    p.has_end = e.end_time.has_value();
    if (p.has_start) p.start = *e.start_time;
    if (p.has_end) p.end = *e.end_time;
    p.id_slot = x.variant_hash.id_slot;
    p.layer_index = LayerIndexOf(e.layer);
    p.layer_range = e.layer_range;
    p.targeting = x.targeting.get();
  }
}

void IndexedConfig::IndexFeatureRules(ConditionCompiler& compiler) {
  rule_indexes.reserve(features.size());
  for (const Feature& f : features) {
    std::vector<FeatureRuleIndex>& rules = rule_indexes.emplace_back();
    for (const FeatureRule& rule : f.rules) {
      FeatureRuleIndex& r = rules.emplace_back();
      r.rollout_hash =
          PlanHash(HashPurpose::kRollout, rule.salt, rule.unit_id_type);
      r.condition = compiler.Compile(rule.condition);
    }
  }
}

void IndexedConfig::IndexIdTypesAndAttributes(
    const ConditionCompiler& compiler) {
  const Attributes::hasher hash;
  for (const std::string& id_type : id_types) {
    id_type_hashes.push_back(hash(id_type));
  }
  attribute_slot_names = compiler.slot_names();
  for (const std::string& name : attribute_slot_names) {
    attribute_slots.emplace(name,
                            static_cast<int>(attribute_slot_types.size()));
    attribute_slot_hashes.push_back(hash(name));
    auto declared = attributes.find(name);
    attribute_slot_types.push_back(
        declared == attributes.end()
            ? std::nullopt
            : std::optional<AttributeType>(declared->second));
  }
}

void IndexedConfig::SliceLayers() {
  for (size_t i = 0; i < experiments.size(); ++i) {
    const ExperimentPlan& p = experiment_plans[i];
    if (p.status == ExperimentStatus::kStopped ||
        p.layer_index == ExperimentPlan::kNoLayer) {
      layer_free_experiments.push_back(static_cast<int>(i));
    } else if (p.layer_index >= 0) {
      layer_plans[p.layer_index].slices.push_back(
          {p.layer_range, static_cast<int>(i)});
    }
    // An unknown layer (kUnknownLayer) has no slice: only a QA override
    // assigns such an experiment.
  }
}

void IndexedConfig::IndexQaOverrides() {
  qa_overrides_by_id.assign(id_types.size(), {});
  for (size_t i = 0; i < experiments.size(); ++i) {
    const Experiment& e = experiments[i];
    const int id_slot = experiment_plans[i].id_slot;
    for (const auto& [unit_id, variant_key] : e.qa_overrides) {
      const int variant = e.VariantIndex(variant_key);
      if (variant < 0) continue;
      qa_overrides_by_id[id_slot][unit_id].emplace_back(static_cast<int>(i),
                                                        variant);
    }
  }
}

void IndexedConfig::IndexMetricEvents() {
  for (size_t i = 0; i < experiments.size(); ++i) {
    const Experiment& e = experiments[i];
    if (e.status == ExperimentStatus::kDraft) continue;
    for (const std::string& key : e.metrics) {
      const Metric* m = FindMetric(key);
      if (m == nullptr) continue;
      std::vector<const std::string*> names = {
          &m->source.event, &m->numerator.event, &m->denominator.event};
      for (const FunnelStep& step : m->steps) names.push_back(&step.event);
      for (const std::string* name : names) {
        if (name->empty()) continue;
        std::vector<int>& list = experiments_by_event[*name];
        if (list.empty() || list.back() != static_cast<int>(i)) {
          list.push_back(static_cast<int>(i));
        }
      }
    }
  }
}

const Experiment* IndexedConfig::FindExperiment(const std::string& key) const {
  auto it = experiment_by_key.find(key);
  return it == experiment_by_key.end() ? nullptr : &experiments[it->second];
}

const Feature* IndexedConfig::FindFeature(const std::string& key) const {
  auto it = feature_by_key.find(key);
  return it == feature_by_key.end() ? nullptr : &features[it->second];
}

const Metric* IndexedConfig::FindMetric(const std::string& key) const {
  auto it = metric_by_key.find(key);
  return it == metric_by_key.end() ? nullptr : &metrics[it->second];
}

}  // namespace abexp
