#include "server/core/config.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"

namespace abexp {

bool FeatureValue::operator==(const FeatureValue& o) const {
  if (type != o.type) return false;
  switch (type) {
    case ValueType::kBool:
      return bool_value == o.bool_value;
    case ValueType::kNumber:
      return number_value == o.number_value;
    case ValueType::kString:
    case ValueType::kJson:
      return text == o.text;
  }
  return false;
}

const char* ValueTypeName(ValueType type) {
  switch (type) {
    case ValueType::kBool:
      return "bool";
    case ValueType::kNumber:
      return "number";
    case ValueType::kString:
      return "string";
    case ValueType::kJson:
      return "json";
  }
  return "bool";
}

std::string FormatFeatureValue(const FeatureValue& value) {
  switch (value.type) {
    case ValueType::kBool:
      return value.bool_value ? "true" : "false";
    case ValueType::kNumber:
      return absl::StrCat(value.number_value);
    case ValueType::kString:
      return absl::StrCat("\"", value.text, "\"");
    case ValueType::kJson:
      return value.text;
  }
  return "";
}

const char* ExperimentStatusName(ExperimentStatus status) {
  switch (status) {
    case ExperimentStatus::kDraft:
      return "draft";
    case ExperimentStatus::kRunning:
      return "running";
    case ExperimentStatus::kPaused:
      return "paused";
    case ExperimentStatus::kStopped:
      return "stopped";
  }
  return "draft";
}

const char* MetricTypeName(MetricType type) {
  switch (type) {
    case MetricType::kBinomial:
      return "binomial";
    case MetricType::kSum:
      return "sum";
    case MetricType::kRatio:
      return "ratio";
    case MetricType::kRetention:
      return "retention";
  }
  return "binomial";
}

int Experiment::VariantIndex(const std::string& variant_key) const {
  for (size_t i = 0; i < variants.size(); ++i) {
    if (variants[i].key == variant_key) return static_cast<int>(i);
  }
  return -1;
}

void Config::BuildIndexes() {
  feature_index.clear();
  experiment_index.clear();
  metric_index.clear();
  for (size_t i = 0; i < features.size(); ++i) {
    feature_index.emplace(features[i].key, static_cast<int>(i));
  }
  for (size_t i = 0; i < experiments.size(); ++i) {
    experiment_index.emplace(experiments[i].key, static_cast<int>(i));
  }
  for (size_t i = 0; i < metrics.size(); ++i) {
    metric_index.emplace(metrics[i].key, static_cast<int>(i));
  }

  id_types.clear();
  auto plan = [this](HashPurpose purpose, const std::string& salt,
                     const std::string& id_type) {
    HashPlan p;
    p.prefix = HashPrefix(purpose, salt);
    auto it = std::find(id_types.begin(), id_types.end(), id_type);
    p.id_slot = static_cast<int>(it - id_types.begin());
    if (it == id_types.end()) id_types.push_back(id_type);
    return p;
  };

  // Declared attributes take the first slots, so their types index by slot.
  ConditionCompiler compiler;
  for (const auto& [name, type] : attributes) compiler.SlotOf(name);

  layer_plans.clear();
  absl::flat_hash_map<std::string, int> layer_index;
  for (const auto& [key, layer] : layers) {
    layer_index.emplace(key, static_cast<int>(layer_plans.size()));
    LayerPlan l;
    l.hash = plan(HashPurpose::kLayer, layer.salt, layer.unit_id_type);
    layer_plans.push_back(std::move(l));
  }
  holdout_hash = holdout ? plan(HashPurpose::kHoldout, holdout->salt,
                                holdout->unit_id_type)
                         : HashPlan{};

  for (Experiment& e : experiments) {
    e.variant_hash = plan(HashPurpose::kVariant, e.salt, e.unit_id_type);
    if (e.layer.empty()) {
      e.layer_index = Experiment::kNoLayer;
    } else {
      auto it = layer_index.find(e.layer);
      e.layer_index =
          it == layer_index.end() ? Experiment::kUnknownLayer : it->second;
    }
    e.rollout_variant_index =
        e.rollout_variant.empty() ? -1 : e.VariantIndex(e.rollout_variant);
    e.compiled_targeting = compiler.Compile(e.targeting);
    e.settable_features.clear();
    for (Variant& v : e.variants) {
      v.feature_indices.clear();
      for (const auto& [feature_key, value] : v.features) {
        auto it = feature_index.find(feature_key);
        const int f = it == feature_index.end() ? -1 : it->second;
        v.feature_indices.push_back(f);
        if (f >= 0) e.settable_features.push_back(f);
      }
    }
    std::sort(e.settable_features.begin(), e.settable_features.end());
    e.settable_features.erase(
        std::unique(e.settable_features.begin(), e.settable_features.end()),
        e.settable_features.end());
  }
  for (Feature& f : features) {
    for (FeatureRule& rule : f.rules) {
      rule.rollout_hash =
          plan(HashPurpose::kRollout, rule.salt, rule.unit_id_type);
      rule.compiled_condition = compiler.Compile(rule.condition);
    }
  }

  const Attributes::hasher hash;
  id_type_hashes.clear();
  for (const std::string& id_type : id_types)
    id_type_hashes.push_back(hash(id_type));
  attribute_slots.clear();
  attribute_slot_names = compiler.slot_names();
  attribute_slot_hashes.clear();
  attribute_slot_types.clear();
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

  layer_free_experiments.clear();
  for (size_t i = 0; i < experiments.size(); ++i) {
    const Experiment& e = experiments[i];
    if (e.status == ExperimentStatus::kStopped ||
        e.layer_index == Experiment::kNoLayer) {
      layer_free_experiments.push_back(static_cast<int>(i));
    } else if (e.layer_index >= 0) {
      layer_plans[e.layer_index].slices.push_back(
          {e.layer_range, static_cast<int>(i)});
    }
    // An unknown layer (kUnknownLayer) has no slice: only a QA override
    // assigns such an experiment.
  }

  experiment_plans.clear();
  for (const Experiment& e : experiments) {
    ExperimentPlan p;
    p.status = e.status;
    p.sticky = e.sticky;
    p.has_start = e.start_time.has_value();
    p.has_end = e.end_time.has_value();
    if (p.has_start) p.start = *e.start_time;
    if (p.has_end) p.end = *e.end_time;
    p.id_slot = e.variant_hash.id_slot;
    p.layer_index = e.layer_index;
    p.layer_range = e.layer_range;
    p.targeting = e.compiled_targeting.get();
    experiment_plans.push_back(p);
  }

  qa_overrides_by_id.assign(id_types.size(), {});
  for (size_t i = 0; i < experiments.size(); ++i) {
    const Experiment& e = experiments[i];
    for (const auto& [unit_id, variant_key] : e.qa_overrides) {
      const int variant = e.VariantIndex(variant_key);
      if (variant < 0) continue;
      qa_overrides_by_id[e.variant_hash.id_slot][unit_id].emplace_back(
          static_cast<int>(i), variant);
    }
  }
  experiments_by_event.clear();
  for (size_t i = 0; i < experiments.size(); ++i) {
    const Experiment& e = experiments[i];
    if (e.status == ExperimentStatus::kDraft) continue;
    for (const std::string& key : e.metrics) {
      const Metric* m = FindMetric(key);
      if (m == nullptr) continue;
      for (const std::string* name :
           {&m->source.event, &m->numerator.event, &m->denominator.event}) {
        if (name->empty()) continue;
        std::vector<int>& list = experiments_by_event[*name];
        if (list.empty() || list.back() != static_cast<int>(i)) {
          list.push_back(static_cast<int>(i));
        }
      }
    }
  }

  indexed = true;
}

const Experiment* Config::FindExperiment(const std::string& key) const {
  auto it = experiment_index.find(key);
  return it == experiment_index.end() ? nullptr : &experiments[it->second];
}

const Feature* Config::FindFeature(const std::string& key) const {
  auto it = feature_index.find(key);
  return it == feature_index.end() ? nullptr : &features[it->second];
}

const Metric* Config::FindMetric(const std::string& key) const {
  auto it = metric_index.find(key);
  return it == metric_index.end() ? nullptr : &metrics[it->second];
}

const Layer* Config::FindLayer(const std::string& key) const {
  auto it = layers.find(key);
  return it == layers.end() ? nullptr : &it->second;
}

}  // namespace abexp
