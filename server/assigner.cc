#include "server/assigner.h"

#include <cmath>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"

namespace abexp {
namespace {

// The outcome of one experiment for one unit.
struct Outcome {
  int variant_index = -1;
  AssignmentReason reason = AssignmentReason::kBucketed;
};

const std::string* FindId(const Unit& unit, const std::string& id_type) {
  auto it = unit.ids.find(id_type);
  return it == unit.ids.end() ? nullptr : &it->second;
}

bool InSchedule(const Experiment& e, absl::Time now) {
  if (e.start_time && now < *e.start_time) return false;
  if (e.end_time && now >= *e.end_time) return false;
  return true;
}

bool InLayerRange(const Config& config, const Experiment& e, const Unit& unit) {
  if (e.layer.empty()) return true;
  const Layer* layer = config.FindLayer(e.layer);
  if (layer == nullptr) return false;
  const std::string* id = FindId(unit, layer->unit_id_type);
  if (id == nullptr) return false;
  return e.layer_range.Contains(Bucket(HashPurpose::kLayer, layer->salt, *id));
}

// The variant a QA override forces on the unit, if any.
std::optional<int> QaOverride(const Experiment& e, const std::string& id) {
  if (e.qa_overrides.empty()) return std::nullopt;
  auto it = e.qa_overrides.find(id);
  if (it == e.qa_overrides.end()) return std::nullopt;
  const int index = e.VariantIndex(it->second);
  if (index < 0) return std::nullopt;
  return index;
}

// The checks between the QA override and traffic: holdout, targeting, layer.
bool PassesGates(const Config& config, const Experiment& e, const Unit& unit,
                 bool in_holdout) {
  if (in_holdout) return false;
  if (e.targeting && !abexp::Evaluate(*e.targeting, unit.attributes)) return false;
  return InLayerRange(config, e, unit);
}

// The unit's id when Evaluate would reach the recorded-variant check of a
// sticky experiment: running, in schedule, id present, no QA override,
// through the gates. Null otherwise.
const std::string* StickyCandidate(const Config& config, const Experiment& e,
                                   const Unit& unit, bool in_holdout, absl::Time now) {
  if (!e.sticky || e.status != ExperimentStatus::kRunning || !InSchedule(e, now)) {
    return nullptr;
  }
  const std::string* id = FindId(unit, e.unit_id_type);
  if (id == nullptr || QaOverride(e, *id).has_value()) return nullptr;
  if (!PassesGates(config, e, unit, in_holdout)) return nullptr;
  return id;
}

// The caller's recorded variant of a sticky experiment, when it is one of
// the experiment's variants.
std::optional<int> RecordedVariantOf(
    const Experiment& e, const absl::flat_hash_map<const Experiment*, int>& recorded) {
  if (!e.sticky || recorded.empty()) return std::nullopt;
  auto it = recorded.find(&e);
  if (it == recorded.end() || it->second < 0 ||
      it->second >= static_cast<int>(e.variants.size())) {
    return std::nullopt;
  }
  return it->second;
}

// The decision procedure of docs/bucketing.md, without tracing.
std::optional<Outcome> Evaluate(const Config& config, const Experiment& e, const Unit& unit,
                                bool in_holdout, absl::Time now,
                                const absl::flat_hash_map<const Experiment*, int>& recorded) {
  if (e.status == ExperimentStatus::kStopped) {
    if (e.rollout_variant.empty() || in_holdout) return std::nullopt;
    if (e.targeting && !abexp::Evaluate(*e.targeting, unit.attributes)) return std::nullopt;
    const int index = e.VariantIndex(e.rollout_variant);
    if (index < 0) return std::nullopt;
    return Outcome{index, AssignmentReason::kRollout};
  }
  if (e.status != ExperimentStatus::kRunning || !InSchedule(e, now)) return std::nullopt;
  const std::string* id = FindId(unit, e.unit_id_type);
  if (id == nullptr) return std::nullopt;
  if (std::optional<int> forced = QaOverride(e, *id)) {
    return Outcome{*forced, AssignmentReason::kQaOverride};
  }
  if (!PassesGates(config, e, unit, in_holdout)) return std::nullopt;
  if (std::optional<int> sticky = RecordedVariantOf(e, recorded)) {
    return Outcome{*sticky, AssignmentReason::kSticky};
  }
  const uint32_t bucket = Bucket(HashPurpose::kVariant, e.salt, *id);
  for (size_t i = 0; i < e.variants.size(); ++i) {
    if (e.variants[i].active_range.Contains(bucket)) {
      return Outcome{static_cast<int>(i), AssignmentReason::kBucketed};
    }
  }
  return std::nullopt;
}

bool RuleApplies(const FeatureRule& rule, const Unit& unit) {
  if (rule.condition && !abexp::Evaluate(*rule.condition, unit.attributes)) return false;
  if (rule.rollout_bp >= kNumBuckets) return true;
  const std::string* id = FindId(unit, rule.unit_id_type);
  if (id == nullptr) return false;
  return Bucket(HashPurpose::kRollout, rule.salt, *id) < rule.rollout_bp;
}

// Which experiments Assign returns and which features it resolves.
struct Wanted {
  std::vector<bool> experiments;  // by config index
  std::vector<bool> features;     // by config index
};

// NOT_FOUND for an unknown filter key.
absl::StatusOr<Wanted> WantedBy(const Config& config, const AssignOptions& options) {
  const size_t num_experiments = config.experiments.size();
  const size_t num_features = config.features.size();
  Wanted wanted;
  wanted.experiments.assign(num_experiments, options.experiment_keys.empty());
  for (const std::string& key : options.experiment_keys) {
    auto it = config.experiment_index.find(key);
    if (it == config.experiment_index.end()) {
      return absl::NotFoundError(absl::StrCat("experiment_keys: no experiment '", key,
                                              "' in config version ", config.version,
                                              "; list them with `abexp experiments list`"));
    }
    wanted.experiments[it->second] = true;
  }
  wanted.features.assign(num_features, false);
  if (options.feature_keys.empty()) {
    if (options.experiment_keys.empty()) {
      wanted.features.assign(num_features, true);
    } else {
      // Filtering by experiment returns the features those experiments set.
      for (size_t i = 0; i < num_experiments; ++i) {
        if (!wanted.experiments[i]) continue;
        for (const Variant& v : config.experiments[i].variants) {
          for (const auto& [feature_key, value] : v.features) {
            auto it = config.feature_index.find(feature_key);
            if (it != config.feature_index.end()) wanted.features[it->second] = true;
          }
        }
      }
    }
  }
  for (const std::string& key : options.feature_keys) {
    auto it = config.feature_index.find(key);
    if (it == config.feature_index.end()) {
      return absl::NotFoundError(absl::StrCat("feature_keys: no feature '", key,
                                              "' in config version ", config.version));
    }
    wanted.features[it->second] = true;
  }
  return wanted;
}

// Whether Assign evaluates experiment i: it is returned, or may set a
// wanted feature.
bool Needed(const Config& config, size_t i, const Wanted& wanted) {
  if (wanted.experiments[i]) return true;
  for (const Variant& v : config.experiments[i].variants) {
    for (const auto& [feature_key, value] : v.features) {
      auto it = config.feature_index.find(feature_key);
      if (it != config.feature_index.end() && wanted.features[it->second]) return true;
    }
  }
  return false;
}

std::string TypeOfValue(const AttributeValue& value) {
  if (std::holds_alternative<std::string>(value)) return "a string";
  if (std::holds_alternative<double>(value)) return "a number";
  return "a bool";
}

const char* ProtoFieldFor(AttributeType type) {
  switch (type) {
    case AttributeType::kString:
    case AttributeType::kSemver:
      return "string_value";
    case AttributeType::kNumber:
      return "number_value";
    case AttributeType::kBool:
      return "bool_value";
  }
  return "string_value";
}

}  // namespace

bool InHoldout(const Config& config, const Unit& unit) {
  if (!config.holdout || config.holdout->bp == 0) return false;
  const std::string* id = FindId(unit, config.holdout->unit_id_type);
  if (id == nullptr) return false;
  return Bucket(HashPurpose::kHoldout, config.holdout->salt, *id) < config.holdout->bp;
}

absl::Status ValidateUnit(const Config& config, const Unit& unit) {
  if (unit.ids.empty()) {
    return absl::InvalidArgumentError(
        "unit.ids is empty; pass at least one id to bucket on, e.g. user_id");
  }
  if (unit.ids.size() > kMaxUnitIds) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "unit.ids has %d entries; pass at most %d id types", unit.ids.size(), kMaxUnitIds));
  }
  for (const auto& [type, id] : unit.ids) {
    if (type.empty()) {
      return absl::InvalidArgumentError(
          "unit.ids has an entry with an empty id type; name it, e.g. user_id or device_id");
    }
    if (id.empty()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "unit.ids[", type, "] is empty; pass the user or device id to bucket on, or leave ",
          type, " out"));
    }
    if (id.size() > kMaxUnitIdBytes) {
      return absl::InvalidArgumentError(
          absl::StrFormat("unit.ids[%s] is %d bytes; ids may be at most %d bytes", type,
                          id.size(), kMaxUnitIdBytes));
    }
  }
  if (unit.attributes.size() > kMaxAttributes) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "unit.attributes has %d entries; send at most %d (only those targeting uses)",
        unit.attributes.size(), kMaxAttributes));
  }
  for (const auto& [name, value] : unit.attributes) {
    if (name.empty() || name.size() > kMaxAttributeNameBytes) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "unit.attributes has a name of %d bytes; names must be 1 to %d bytes", name.size(),
          kMaxAttributeNameBytes));
    }
    if (const auto* s = std::get_if<std::string>(&value);
        s != nullptr && s->size() > kMaxAttributeValueBytes) {
      return absl::InvalidArgumentError(
          absl::StrFormat("unit.attributes[%s] is %d bytes; values may be at most %d bytes",
                          name, s->size(), kMaxAttributeValueBytes));
    }
    if (const auto* d = std::get_if<double>(&value); d != nullptr && !std::isfinite(*d)) {
      return absl::InvalidArgumentError(
          absl::StrCat("unit.attributes[", name, "] is not a finite number; send a real value"));
    }
    auto declared = config.attributes.find(name);
    if (declared == config.attributes.end()) continue;
    const AttributeType type = declared->second;
    const bool matches =
        (type == AttributeType::kNumber && std::holds_alternative<double>(value)) ||
        (type == AttributeType::kBool && std::holds_alternative<bool>(value)) ||
        ((type == AttributeType::kString || type == AttributeType::kSemver) &&
         std::holds_alternative<std::string>(value));
    if (!matches) {
      return absl::InvalidArgumentError(absl::StrCat(
          "unit.attributes[", name, "] is ", TypeOfValue(value), ", but the config declares it ",
          AttributeTypeName(type), "; send it as ", ProtoFieldFor(type)));
    }
    if (type == AttributeType::kSemver && !SemVer::Parse(std::get<std::string>(value))) {
      return absl::InvalidArgumentError(
          absl::StrCat("unit.attributes[", name, "] = \"", std::get<std::string>(value),
                       "\" is not a version; send a semantic version such as 5.2.0"));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<AssignResult> Assign(const Config& config, const Unit& unit,
                                    const AssignOptions& options) {
  if (absl::Status s = ValidateUnit(config, unit); !s.ok()) return s;
  const size_t num_experiments = config.experiments.size();
  const size_t num_features = config.features.size();

  absl::StatusOr<Wanted> wanted = WantedBy(config, options);
  if (!wanted.ok()) return wanted.status();
  const std::vector<bool>& wanted_experiment = wanted->experiments;
  const std::vector<bool>& wanted_feature = wanted->features;

  AssignResult result;
  result.in_holdout = InHoldout(config, unit);
  const absl::Time now = options.now == absl::InfinitePast() ? absl::Now() : options.now;

  // Evaluate every experiment that is returned or may set a wanted feature.
  std::vector<ResolvedFeature> resolved(num_features);
  std::vector<bool> done(num_features, false);
  std::vector<ExperimentAssignment> rollouts;
  for (size_t i = 0; i < num_experiments; ++i) {
    const Experiment& e = config.experiments[i];
    if (!Needed(config, i, *wanted)) continue;
    const std::optional<Outcome> outcome =
        Evaluate(config, e, unit, result.in_holdout, now, options.recorded_variants);
    if (!outcome) continue;
    const ExperimentAssignment assignment{&e, outcome->variant_index, outcome->reason};
    if (wanted_experiment[i]) result.assignments.push_back(assignment);
    if (outcome->reason == AssignmentReason::kRollout) {
      rollouts.push_back(assignment);
      continue;
    }
    const Variant& variant = e.variants[outcome->variant_index];
    for (const auto& [feature_key, value] : variant.features) {
      auto it = config.feature_index.find(feature_key);
      if (it == config.feature_index.end() || done[it->second]) continue;
      resolved[it->second] = {&config.features[it->second], &value, FeatureSource::kExperiment,
                              &e, outcome->variant_index, -1};
      done[it->second] = true;
    }
  }
  for (const ExperimentAssignment& rollout : rollouts) {
    const Variant& variant = rollout.experiment->variants[rollout.variant_index];
    for (const auto& [feature_key, value] : variant.features) {
      auto it = config.feature_index.find(feature_key);
      if (it == config.feature_index.end() || done[it->second]) continue;
      resolved[it->second] = {&config.features[it->second], &value, FeatureSource::kRollout,
                              rollout.experiment, rollout.variant_index, -1};
      done[it->second] = true;
    }
  }
  for (size_t f = 0; f < num_features; ++f) {
    if (!wanted_feature[f]) continue;
    const Feature& feature = config.features[f];
    if (!done[f]) {
      resolved[f] = {&feature, &feature.default_value, FeatureSource::kDefault, nullptr, -1, -1};
      for (size_t r = 0; r < feature.rules.size(); ++r) {
        if (RuleApplies(feature.rules[r], unit)) {
          resolved[f] = {&feature, &feature.rules[r].value, FeatureSource::kRule, nullptr, -1,
                         static_cast<int>(r)};
          break;
        }
      }
    }
    result.features.push_back(resolved[f]);
  }
  return result;
}

absl::StatusOr<std::vector<StickyLookup>> StickyLookups(const Config& config,
                                                        const Unit& unit,
                                                        const AssignOptions& options) {
  if (absl::Status s = ValidateUnit(config, unit); !s.ok()) return s;
  absl::StatusOr<Wanted> wanted = WantedBy(config, options);
  if (!wanted.ok()) return wanted.status();
  const bool in_holdout = InHoldout(config, unit);
  const absl::Time now = options.now == absl::InfinitePast() ? absl::Now() : options.now;
  std::vector<StickyLookup> lookups;
  for (size_t i = 0; i < config.experiments.size(); ++i) {
    const Experiment& e = config.experiments[i];
    if (!e.sticky || !Needed(config, i, *wanted)) continue;
    if (const std::string* id = StickyCandidate(config, e, unit, in_holdout, now)) {
      lookups.push_back({&e, *id});
    }
  }
  return lookups;
}

namespace {

std::string RangeText(const BucketRange& r) { return absl::StrFormat("[%d, %d)", r.start, r.end); }

}  // namespace

absl::StatusOr<ExplainResult> Explain(const Config& config, const Unit& unit,
                                      const std::string& experiment_key, absl::Time now,
                                      const absl::StatusOr<std::optional<int>>* recorded) {
  const Experiment* e = config.FindExperiment(experiment_key);
  if (e == nullptr) {
    return absl::NotFoundError(absl::StrCat("experiment_key: no experiment '", experiment_key,
                                            "' in config version ", config.version,
                                            "; list them with `abexp experiments list`"));
  }
  if (absl::Status s = ValidateUnit(config, unit); !s.ok()) return s;

  ExplainResult x;
  x.experiment = e;
  // Gather every trace first, then walk the decision in spec order.
  const std::string* id = FindId(unit, e->unit_id_type);
  if (id != nullptr) {
    x.unit_id = *id;
    x.has_variant_hash = true;
    x.variant_hash = TraceBucket(HashPurpose::kVariant, e->salt, *id);
  }
  if (config.holdout && config.holdout->bp > 0) {
    if (const std::string* hid = FindId(unit, config.holdout->unit_id_type)) {
      x.has_holdout = true;
      x.holdout_hash = TraceBucket(HashPurpose::kHoldout, config.holdout->salt, *hid);
      x.held_out = x.holdout_hash.bucket < config.holdout->bp;
    }
  }
  bool targeted = true;
  if (e->targeting) {
    targeted = EvaluateWithTrace(*e->targeting, unit.attributes, &x.targeting);
  }
  const Layer* layer = e->layer.empty() ? nullptr : config.FindLayer(e->layer);
  if (layer != nullptr) {
    if (const std::string* lid = FindId(unit, layer->unit_id_type)) {
      x.has_layer = true;
      x.layer_hash = TraceBucket(HashPurpose::kLayer, layer->salt, *lid);
      x.in_layer_range = e->layer_range.Contains(x.layer_hash.bucket);
    }
  }

  auto step = [&x](const char* check, bool passed, std::string detail) {
    x.steps.push_back({check, passed, std::move(detail)});
    if (!passed) x.summary = x.steps.back().detail;
    return passed;
  };
  auto finish_with_variant = [&](int index, AssignmentReason reason, std::string summary) {
    x.variant_index = index;
    x.reason = reason;
    x.summary = std::move(summary);
    return x;
  };

  const std::string status = ExperimentStatusName(e->status);
  if (e->status == ExperimentStatus::kStopped) {
    if (!step("status", !e->rollout_variant.empty(),
              e->rollout_variant.empty()
                  ? "experiment is stopped with no rollout_variant: nobody is assigned"
                  : absl::StrCat("experiment is stopped; rollout_variant '", e->rollout_variant,
                                 "' is served to every eligible unit"))) {
      return x;
    }
    if (!step("holdout", !x.held_out,
              x.held_out ? "unit is in the global holdout: it gets default feature values"
                         : "unit is not in the global holdout")) {
      return x;
    }
    if (!step("targeting", targeted,
              targeted ? "targeting matched" : "targeting did not match: no variant")) {
      return x;
    }
    return finish_with_variant(e->VariantIndex(e->rollout_variant), AssignmentReason::kRollout,
                               absl::StrCat("stopped experiment: rollout variant '",
                                            e->rollout_variant, "' is served"));
  }
  if (!step("status", e->status == ExperimentStatus::kRunning,
            e->status == ExperimentStatus::kRunning
                ? "experiment is running"
                : absl::StrCat("experiment is ", status, ": only running experiments assign"))) {
    return x;
  }
  const bool scheduled = InSchedule(*e, now);
  if (!step("schedule", scheduled,
            scheduled ? "now is inside the experiment's start/end window"
                      : absl::StrCat("now (", absl::FormatTime(absl::RFC3339_sec, now,
                                                               absl::UTCTimeZone()),
                                     ") is outside the experiment's start/end window"))) {
    return x;
  }
  if (!step("unit_id", id != nullptr,
            id != nullptr ? absl::StrCat("hashing ", e->unit_id_type, " \"", *id, "\"")
                          : absl::StrCat("unit has no ", e->unit_id_type,
                                         ", which this experiment hashes on: no variant"))) {
    return x;
  }
  if (auto it = e->qa_overrides.find(*id); it != e->qa_overrides.end()) {
    step("qa_override", true,
         absl::StrCat("QA override forces variant '", it->second, "' (not counted in results)"));
    return finish_with_variant(e->VariantIndex(it->second), AssignmentReason::kQaOverride,
                               absl::StrCat("QA override forces variant '", it->second, "'"));
  }
  step("qa_override", true, "no QA override for this unit");
  if (config.holdout && config.holdout->bp > 0) {
    const std::string detail =
        !x.has_holdout
            ? absl::StrCat("unit has no ", config.holdout->unit_id_type,
                           " for the holdout hash: not held out")
            : absl::StrFormat("holdout bucket %d %s threshold %d: %s", x.holdout_hash.bucket,
                              x.held_out ? "<" : ">=", config.holdout->bp,
                              x.held_out ? "unit is in the global holdout" : "not held out");
    if (!step("holdout", !x.held_out, detail)) return x;
  }
  if (!step("targeting", targeted,
            !e->targeting ? "no targeting: every unit is eligible"
                          : (targeted ? absl::StrCat("targeting matched: ", e->targeting_text)
                                      : absl::StrCat("targeting did not match: ",
                                                     e->targeting_text)))) {
    return x;
  }
  if (!e->layer.empty()) {
    std::string detail;
    bool passed = false;
    if (layer == nullptr || !x.has_layer) {
      detail = absl::StrCat("unit has no ", layer ? layer->unit_id_type : "id",
                            " for layer '", e->layer, "'");
    } else {
      passed = x.in_layer_range;
      detail = absl::StrFormat("layer '%s' bucket %d is %s the experiment's layer range %s",
                               e->layer, x.layer_hash.bucket, passed ? "inside" : "outside",
                               RangeText(e->layer_range));
    }
    if (!step("layer", passed, detail)) return x;
  }
  const uint32_t bucket = x.variant_hash.bucket;
  if (e->sticky && recorded != nullptr) {
    const int num_variants = static_cast<int>(e->variants.size());
    if (!recorded->ok()) {
      step("sticky", false,
           absl::StrCat("could not read the unit's recorded exposure (",
                        recorded->status().ToString(),
                        "): serving the variant its bucket gives, which may differ from the "
                        "one it was shown"));
    } else if (!recorded->value().has_value()) {
      step("sticky", true,
           absl::StrFormat("no recorded exposure in phase %d: bucketing by hash", e->phase));
    } else if (int index = *recorded->value(); index < 0 || index >= num_variants) {
      step("sticky", true,
           absl::StrFormat("recorded variant index %d is not among the %d variants any more: "
                           "ignored, bucketing by hash",
                           index, num_variants));
    } else {
      std::string by_hash = absl::StrFormat(
          "bucket %d alone would give no variant at traffic %.2f%%", bucket,
          e->traffic_bp / 100.0);
      for (const Variant& v : e->variants) {
        if (v.active_range.Contains(bucket)) {
          by_hash = absl::StrFormat("bucket %d alone would give '%s'", bucket, v.key);
        }
      }
      const std::string& key = e->variants[index].key;
      step("sticky", true,
           absl::StrFormat("unit was first exposed to variant '%s' in phase %d and keeps it "
                           "(sticky: true); %s",
                           key, e->phase, by_hash));
      return finish_with_variant(
          index, AssignmentReason::kSticky,
          absl::StrFormat("sticky: unit keeps variant '%s', the one it was first exposed to",
                          key));
    }
  }
  for (size_t i = 0; i < e->variants.size(); ++i) {
    const Variant& v = e->variants[i];
    if (v.active_range.Contains(bucket)) {
      std::string detail = absl::StrFormat("bucket %d is in variant '%s' range %s", bucket,
                                           v.key, RangeText(v.active_range));
      step("traffic", true, detail);
      return finish_with_variant(static_cast<int>(i), AssignmentReason::kBucketed, detail);
    }
  }
  step("traffic", false,
       absl::StrFormat("bucket %d is outside every variant's active range at traffic %.2f%%: "
                       "not in the experiment",
                       bucket, e->traffic_bp / 100.0));
  return x;
}

}  // namespace abexp
