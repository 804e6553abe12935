#include "server/core/assigner.h"

#include <algorithm>
#include <cmath>
#include <type_traits>
#include <utility>

#include "absl/container/inlined_vector.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "server/core/error_text.h"

namespace abexp {
namespace {

// The outcome of one experiment for one unit: variant_index -1 when the
// unit is not in it. (Eight bytes, returned in a register.)
struct Outcome {
  int variant_index = -1;
  AssignmentReason reason = AssignmentReason::kBucketed;

  bool assigned() const { return variant_index >= 0; }
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

bool InSchedule(const ExperimentPlan& p, absl::Time now) {
  if (p.has_start && now < p.start) return false;
  if (p.has_end && now >= p.end) return false;
  return true;
}

// The unit as one Assign or StickyLookups call sees it: ids, attributes and
// QA overrides looked up once, by the slots IndexedConfig::Build gave
// them, and each layer's bucket hashed at most once.
struct UnitView {
  static constexpr int kNotHashed = -1;
  static constexpr int kNoId = -2;

  absl::InlinedVector<const std::string*, 4> ids;  // by id slot; null: not sent
  absl::InlinedVector<SlotValue, 16> attributes;   // by attribute slot
  // By id slot: the (experiment, variant) pairs QA overrides force on the
  // unit's id, or null.
  absl::InlinedVector<const std::vector<std::pair<int, int>>*, 4> qa;
  // By layer index: the unit's layer bucket, kNotHashed or kNoId.
  absl::InlinedVector<int, 8> layer_buckets;
  bool in_holdout = false;
};

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

// The type check of one attribute the config declares; for a semver
// attribute also its parsed version, into *version when not null.
absl::Status CheckDeclared(const std::string& name, const AttributeValue& value,
                           AttributeType type, std::optional<SemVer>* version) {
  const bool matches =
      (type == AttributeType::kNumber &&
       std::holds_alternative<double>(value)) ||
      (type == AttributeType::kBool && std::holds_alternative<bool>(value)) ||
      ((type == AttributeType::kString || type == AttributeType::kSemver) &&
       std::holds_alternative<std::string>(value));
  if (!matches) {
    return absl::InvalidArgumentError(absl::StrCat(
        "unit.attributes[", ClipForMessage(name), "] is ", TypeOfValue(value),
        ", but the config declares it ", AttributeTypeName(type),
        "; send it as ", ProtoFieldFor(type)));
  }
  if (type == AttributeType::kSemver) {
    std::optional<SemVer> parsed = SemVer::Parse(std::get<std::string>(value));
    if (!parsed) {
      return absl::InvalidArgumentError(absl::StrCat(
          "unit.attributes[", ClipForMessage(name), "] = \"",
          ClipForMessage(std::get<std::string>(value)),
          "\" is not a version; send a semantic version such as 5.2.0"));
    }
    // Kept, so that targeting compares it without parsing it again.
    if (version != nullptr) *version = std::move(parsed);
  }
  return absl::OkStatus();
}

// Attributes::hasher is the hasher of every string-keyed map here, so the
// hashes IndexedConfig::Build computed find keys in a unit's maps too.
static_assert(std::is_same_v<decltype(Unit::ids)::hasher, Attributes::hasher>);

// The limits on the unit's ids.
absl::Status CheckIds(const Unit& unit) {
  if (unit.ids.empty()) {
    return absl::InvalidArgumentError(
        "unit.ids is empty; pass at least one id to bucket on, e.g. user_id");
  }
  if (unit.ids.size() > kMaxUnitIds) {
    return absl::InvalidArgumentError(
        absl::StrFormat("unit.ids has %d entries; pass at most %d id types",
                        unit.ids.size(), kMaxUnitIds));
  }
  for (const auto& [type, id] : unit.ids) {
    if (type.empty()) {
      return absl::InvalidArgumentError(
          "unit.ids has an entry with an empty id type; name it, e.g. user_id "
          "or device_id");
    }
    if (id.empty()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "unit.ids[", ClipForMessage(type),
          "] is empty; pass the user or device id to bucket on, or leave ",
          ClipForMessage(type), " out"));
    }
    if (id.size() > kMaxUnitIdBytes) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "unit.ids[%s] is %d bytes; ids may be at most %d bytes",
          ClipForMessage(type), id.size(), kMaxUnitIdBytes));
    }
  }
  return absl::OkStatus();
}

// The limits on the unit's attributes, whatever the config declares.
absl::Status CheckAttributeLimits(const Unit& unit) {
  if (unit.attributes.size() > kMaxAttributes) {
    return absl::InvalidArgumentError(
        absl::StrFormat("unit.attributes has %d entries; send at most %d (only "
                        "those targeting uses)",
                        unit.attributes.size(), kMaxAttributes));
  }
  for (const auto& [name, value] : unit.attributes) {
    if (name.empty() || name.size() > kMaxAttributeNameBytes) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "unit.attributes has a name of %d bytes; names must be 1 to %d bytes",
          name.size(), kMaxAttributeNameBytes));
    }
    if (const auto* s = std::get_if<std::string>(&value);
        s != nullptr && s->size() > kMaxAttributeValueBytes) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "unit.attributes[%s] is %d bytes; values may be at most %d bytes",
          ClipForMessage(name), s->size(), kMaxAttributeValueBytes));
    }
    if (const auto* d = std::get_if<double>(&value);
        d != nullptr && !std::isfinite(*d)) {
      return absl::InvalidArgumentError(
          absl::StrCat("unit.attributes[", ClipForMessage(name),
                       "] is not a finite number; send a real value"));
    }
  }
  return absl::OkStatus();
}

// The declared types of the attributes the unit sends, filling the slots
// of view->attributes when view is not null. Attributes no condition uses
// and the config does not declare are ignored.
absl::Status CheckAttributeTypes(const IndexedConfig& config, const Unit& unit,
                                 UnitView* view) {
  auto check_slot = [&](int slot, const std::string& name,
                        const AttributeValue& value) {
    SlotValue* sent = view != nullptr ? &view->attributes[slot] : nullptr;
    if (sent != nullptr) sent->value = &value;
    const std::optional<AttributeType>& declared =
        config.attribute_slot_types[slot];
    if (!declared) return absl::OkStatus();
    return CheckDeclared(name, value, *declared,
                         sent != nullptr ? &sent->version : nullptr);
  };
  const size_t num_slots = config.attribute_slot_names.size();
  if (4 * unit.attributes.size() < num_slots) {
    // Far fewer sent than known (hashing a name costs a few probes): hash
    // each name the unit sent.
    for (const auto& [name, value] : unit.attributes) {
      auto it = config.attribute_slots.find(name);
      if (it == config.attribute_slots.end()) continue;
      if (absl::Status s = check_slot(it->second, name, value); !s.ok())
        return s;
    }
  } else {
    // Look each known name up in the unit's map with the hash computed at
    // config load: no hashing per request.
    for (size_t slot = 0; slot < num_slots; ++slot) {
      auto it = unit.attributes.find(config.attribute_slot_names[slot],
                                     config.attribute_slot_hashes[slot]);
      if (it == unit.attributes.end()) continue;
      if (absl::Status s =
              check_slot(static_cast<int>(slot), it->first, it->second);
          !s.ok()) {
        return s;
      }
    }
  }
  return absl::OkStatus();
}

// ValidateUnit, also filling view->attributes when view is not null.
absl::Status CheckUnit(const IndexedConfig& config, const Unit& unit,
                       UnitView* view) {
  if (absl::Status s = CheckIds(unit); !s.ok()) return s;
  if (absl::Status s = CheckAttributeLimits(unit); !s.ok()) return s;
  return CheckAttributeTypes(config, unit, view);
}

bool HeldOut(const IndexedConfig& config, const UnitView& view) {
  if (!config.holdout || config.holdout->bp == 0) return false;
  const std::string* id = view.ids[config.holdout_hash.id_slot];
  if (id == nullptr) return false;
  return BucketWithPrefix(config.holdout_hash.prefix, *id) < config.holdout->bp;
}

// Validates the unit and looks up what every experiment will need.
absl::Status BuildView(const IndexedConfig& config, const Unit& unit,
                       UnitView* view) {
  view->attributes.resize(config.attribute_slot_types.size());
  if (absl::Status s = CheckUnit(config, unit, view); !s.ok()) return s;
  const size_t num_ids = config.id_types.size();
  view->ids.resize(num_ids);
  view->qa.resize(num_ids);
  for (size_t slot = 0; slot < num_ids; ++slot) {
    auto found =
        unit.ids.find(config.id_types[slot], config.id_type_hashes[slot]);
    const std::string* id = found == unit.ids.end() ? nullptr : &found->second;
    view->ids[slot] = id;
    const auto& forced = config.qa_overrides_by_id[slot];
    if (id == nullptr || forced.empty()) continue;
    if (auto it = forced.find(*id); it != forced.end())
      view->qa[slot] = &it->second;
  }
  view->layer_buckets.assign(config.layer_plans.size(), UnitView::kNotHashed);
  view->in_holdout = HeldOut(config, *view);
  return absl::OkStatus();
}

// The unit's bucket in layer l, or UnitView::kNoId; hashed on first use.
int LayerBucket(const IndexedConfig& config, int l, UnitView& view) {
  int& bucket = view.layer_buckets[l];
  if (bucket == UnitView::kNotHashed) {
    const HashPlan& layer = config.layer_plans[l].hash;
    const std::string* id = view.ids[layer.id_slot];
    bucket = id == nullptr
                 ? UnitView::kNoId
                 : static_cast<int>(BucketWithPrefix(layer.prefix, *id));
  }
  return bucket;
}

bool InLayerRange(const IndexedConfig& config, const ExperimentPlan& p,
                  UnitView& view) {
  if (p.layer_index == ExperimentPlan::kNoLayer) return true;
  if (p.layer_index < 0) return false;  // kUnknownLayer
  const int bucket = LayerBucket(config, p.layer_index, view);
  return bucket >= 0 && p.layer_range.Contains(static_cast<uint32_t>(bucket));
}

bool Targeted(const ExperimentPlan& p, const UnitView& view) {
  return p.targeting == nullptr ||
         abexp::Evaluate(*p.targeting, view.attributes);
}

// The variant a QA override forces on the unit in experiment i, or -1.
// (Not std::optional: GCC returns that through memory, and this runs for
// every experiment of every request.)
int QaOverride(const ExperimentPlan& p, size_t i, const UnitView& view) {
  const std::vector<std::pair<int, int>>* forced = view.qa[p.id_slot];
  if (forced == nullptr) return -1;
  for (const auto& [experiment, variant] : *forced) {
    if (experiment == static_cast<int>(i)) return variant;
  }
  return -1;
}

// The checks between the QA override and traffic: holdout, targeting, layer.
// All must pass, so their order changes only the cost: the layer goes
// first, as its bucket is hashed once per layer and rules out every other
// experiment of the layer.
bool PassesGates(const IndexedConfig& config, const ExperimentPlan& p,
                 UnitView& view) {
  if (view.in_holdout) return false;
  return InLayerRange(config, p, view) && Targeted(p, view);
}

// The unit's id when Evaluate would reach the recorded-variant check of a
// sticky experiment: running, in schedule, id present, no QA override,
// through the gates. Null otherwise.
const std::string* StickyCandidate(const IndexedConfig& config, size_t i,
                                   UnitView& view, absl::Time now) {
  const ExperimentPlan& p = config.experiment_plans[i];
  if (!p.sticky || p.status != ExperimentStatus::kRunning ||
      !InSchedule(p, now)) {
    return nullptr;
  }
  const std::string* id = view.ids[p.id_slot];
  if (id == nullptr || QaOverride(p, i, view) >= 0) return nullptr;
  if (!PassesGates(config, p, view)) return nullptr;
  return id;
}

// The caller's recorded variant of a sticky experiment, when it is one of
// the experiment's variants.
std::optional<int> RecordedVariantOf(
    const Experiment& e,
    const absl::flat_hash_map<const Experiment*, int>& recorded) {
  if (!e.sticky || recorded.empty()) return std::nullopt;
  auto it = recorded.find(&e);
  if (it == recorded.end() || it->second < 0 ||
      it->second >= static_cast<int>(e.variants.size())) {
    return std::nullopt;
  }
  return it->second;
}

// Whether `recorded` says the lookup of sticky experiment e failed.
bool IsUnread(const Experiment& e,
              const absl::flat_hash_map<const Experiment*, int>& recorded) {
  auto it = recorded.find(&e);
  return it != recorded.end() && it->second == kUnreadVariant;
}

// The decision procedure of docs/bucketing.md for experiment i, without
// tracing.
Outcome Evaluate(const IndexedConfig& config, size_t i, UnitView& view,
                 absl::Time now,
                 const absl::flat_hash_map<const Experiment*, int>& recorded) {
  const ExperimentPlan& p = config.experiment_plans[i];
  const Experiment& e = config.experiments[i];
  if (p.status == ExperimentStatus::kStopped) {
    // rollout_variant is -1 without a rollout_variant.
    const int rollout = config.experiment_indexes[i].rollout_variant;
    if (rollout < 0 || view.in_holdout) return Outcome{};
    if (!Targeted(p, view)) return Outcome{};
    return Outcome{rollout, AssignmentReason::kRollout};
  }
  if (p.status != ExperimentStatus::kRunning || !InSchedule(p, now))
    return Outcome{};
  const std::string* id = view.ids[p.id_slot];
  if (id == nullptr) return Outcome{};
  if (const int forced = QaOverride(p, i, view); forced >= 0) {
    return Outcome{forced, AssignmentReason::kQaOverride};
  }
  if (!PassesGates(config, p, view)) return Outcome{};
  AssignmentReason by_hash = AssignmentReason::kBucketed;
  if (p.sticky) {
    if (std::optional<int> sticky = RecordedVariantOf(e, recorded)) {
      return Outcome{*sticky, AssignmentReason::kSticky};
    }
    if (IsUnread(e, recorded)) by_hash = AssignmentReason::kStickyUnread;
  }
  return Outcome{BucketedVariant(config, i, *id), by_hash};
}

bool RuleApplies(const FeatureRule& rule, const FeatureRuleIndex& index,
                 const UnitView& view) {
  if (index.condition != nullptr &&
      !abexp::Evaluate(*index.condition, view.attributes)) {
    return false;
  }
  if (rule.rollout_bp >= kNumBuckets) return true;
  const std::string* id = view.ids[index.rollout_hash.id_slot];
  if (id == nullptr) return false;
  return BucketWithPrefix(index.rollout_hash.prefix, *id) < rule.rollout_bp;
}

// Which experiments Assign returns and which features it resolves.
struct Wanted {
  bool everything = true;         // no filter: all of both
  std::vector<bool> experiments;  // by config index, unless everything
  std::vector<bool> features;     // by config index, unless everything

  bool experiment(size_t i) const { return everything || experiments[i]; }
  bool feature(size_t f) const { return everything || features[f]; }
};

// NOT_FOUND for an unknown filter key.
absl::StatusOr<Wanted> WantedBy(const IndexedConfig& config,
                                const AssignOptions& options) {
  Wanted wanted;
  if (options.experiment_keys.empty() && options.feature_keys.empty())
    return wanted;
  wanted.everything = false;
  const size_t num_experiments = config.experiments.size();
  const size_t num_features = config.features.size();
  wanted.experiments.assign(num_experiments, options.experiment_keys.empty());
  for (const std::string& key : options.experiment_keys) {
    auto it = config.experiment_by_key.find(key);
    if (it == config.experiment_by_key.end()) {
      return absl::NotFoundError(
          absl::StrCat("experiment_keys: no experiment '", ClipForMessage(key),
                       "' in config version ", config.version,
                       "; list them with `abexp experiments list`"));
    }
    wanted.experiments[it->second] = true;
  }
  wanted.features.assign(num_features, false);
  if (options.feature_keys.empty()) {
    // Filtering by experiment returns the features those experiments set.
    for (size_t i = 0; i < num_experiments; ++i) {
      if (!wanted.experiments[i]) continue;
      for (int f : config.experiment_indexes[i].settable_features)
        wanted.features[f] = true;
    }
  }
  for (const std::string& key : options.feature_keys) {
    auto it = config.feature_by_key.find(key);
    if (it == config.feature_by_key.end()) {
      return absl::NotFoundError(
          absl::StrCat("feature_keys: no feature '", ClipForMessage(key),
                       "' in config version ", config.version));
    }
    wanted.features[it->second] = true;
  }
  return wanted;
}

// Whether Assign evaluates experiment i: it is returned, or may set a
// wanted feature.
bool Needed(const IndexedConfig& config, size_t i, const Wanted& wanted) {
  if (wanted.experiment(i)) return true;
  for (int f : config.experiment_indexes[i].settable_features) {
    if (wanted.features[f]) return true;
  }
  return false;
}

// In config order, every experiment Evaluate may assign the unit to: the
// layer-free ones, those whose slice holds the unit's bucket in their layer,
// and those a QA override names the unit in. Any other experiment is in a
// layer and fails its layer check, so skipping it changes no answer; most
// of a large config is skipped this way, at one hash per layer.
absl::InlinedVector<int, 16> Candidates(const IndexedConfig& config,
                                        UnitView& view) {
  absl::InlinedVector<int, 16> candidates(config.layer_free_experiments.begin(),
                                          config.layer_free_experiments.end());
  for (size_t l = 0; l < config.layer_plans.size(); ++l) {
    const std::vector<LayerPlan::Slice>& slices = config.layer_plans[l].slices;
    if (slices.empty()) continue;
    const int bucket = LayerBucket(config, static_cast<int>(l), view);
    if (bucket < 0) continue;
    for (const LayerPlan::Slice& slice : slices) {
      if (slice.range.Contains(static_cast<uint32_t>(bucket))) {
        candidates.push_back(slice.experiment);
      }
    }
  }
  for (const std::vector<std::pair<int, int>>* forced : view.qa) {
    if (forced == nullptr) continue;
    for (const auto& [experiment, variant] : *forced)
      candidates.push_back(experiment);
  }
  std::sort(candidates.begin(), candidates.end());
  candidates.erase(std::unique(candidates.begin(), candidates.end()),
                   candidates.end());
  return candidates;
}

}  // namespace

int BucketedVariant(const IndexedConfig& config, size_t experiment,
                    absl::string_view unit_id) {
  const Experiment& e = config.experiments[experiment];
  const uint32_t bucket = BucketWithPrefix(
      config.experiment_indexes[experiment].variant_hash.prefix, unit_id);
  // Active ranges never overlap, so the last match is the only one. Looking
  // at every range, without a branch on the bucket, costs less than the
  // mispredicted branch a search would take on every other unit.
  int found = -1;
  for (size_t i = 0; i < e.variants.size(); ++i) {
    const BucketRange& r = e.variants[i].active_range;
    // r.Contains(bucket) in one unsigned comparison: below r.start wraps.
    found = bucket - r.start < r.size() ? static_cast<int>(i) : found;
  }
  return found;
}

bool InHoldout(const Config& config, const Unit& unit) {
  if (!config.holdout || config.holdout->bp == 0) return false;
  const std::string* id = FindId(unit, config.holdout->unit_id_type);
  if (id == nullptr) return false;
  return Bucket(HashPurpose::kHoldout, config.holdout->salt, *id) <
         config.holdout->bp;
}

absl::Status ValidateUnit(const IndexedConfig& config, const Unit& unit) {
  return CheckUnit(config, unit, nullptr);
}

absl::Status ValidateUnit(const IndexedConfig& config, const Unit& unit,
                          absl::string_view field) {
  absl::Status valid = CheckUnit(config, unit, nullptr);
  if (valid.ok() || field == "unit") return valid;
  absl::string_view message = valid.message();
  if (absl::ConsumePrefix(&message, "unit")) {
    return absl::Status(valid.code(), absl::StrCat(field, message));
  }
  return absl::Status(valid.code(), absl::StrCat(field, ": ", message));
}

absl::StatusOr<AssignResult> Assign(const IndexedConfig& config,
                                    const Unit& unit,
                                    const AssignOptions& options) {
  UnitView view;
  if (absl::Status s = BuildView(config, unit, &view); !s.ok()) return s;
  const size_t num_features = config.features.size();

  absl::StatusOr<Wanted> wanted = WantedBy(config, options);
  if (!wanted.ok()) return wanted.status();

  AssignResult result;
  result.in_holdout = view.in_holdout;
  const absl::Time now =
      options.now == absl::InfinitePast() ? absl::Now() : options.now;

  // result.features first holds every feature by config index (feature ==
  // null: not decided yet), and keeps only the wanted ones at the end.
  std::vector<ResolvedFeature>& resolved = result.features;
  resolved.resize(num_features);
  auto set_features = [&](const ExperimentAssignment& a, FeatureSource source) {
    const Variant& variant = a.experiment->variants[a.variant_index];
    const size_t i =
        static_cast<size_t>(a.experiment - config.experiments.data());
    const std::vector<int>& indices =
        config.experiment_indexes[i].variant_features[a.variant_index];
    size_t k = 0;
    for (const auto& [feature_key, value] : variant.features) {
      const int f = indices[k++];
      if (f < 0 || resolved[f].feature != nullptr) continue;
      resolved[f] = {&config.features[f], &value,          source,
                     a.experiment,        a.variant_index, -1};
    }
  };

  // Evaluate every experiment that is returned or may set a wanted feature,
  // of those that can assign the unit at all.
  const absl::InlinedVector<int, 16> candidates = Candidates(config, view);
  result.assignments.reserve(candidates.size());
  absl::InlinedVector<ExperimentAssignment, 4> rollouts;
  for (const int candidate : candidates) {
    const size_t i = static_cast<size_t>(candidate);
    if (!Needed(config, i, *wanted)) continue;
    const Outcome outcome =
        Evaluate(config, i, view, now, options.recorded_variants);
    if (!outcome.assigned()) continue;
    const ExperimentAssignment assignment{
        &config.experiments[i], outcome.variant_index, outcome.reason};
    if (wanted->experiment(i)) result.assignments.push_back(assignment);
    if (outcome.reason == AssignmentReason::kRollout) {
      rollouts.push_back(assignment);
      continue;
    }
    set_features(assignment, FeatureSource::kExperiment);
  }
  for (const ExperimentAssignment& rollout : rollouts) {
    set_features(rollout, FeatureSource::kRollout);
  }
  size_t kept = 0;
  for (size_t f = 0; f < num_features; ++f) {
    if (!wanted->feature(f)) continue;
    if (resolved[f].feature == nullptr) {
      const Feature& feature = config.features[f];
      resolved[f] = {&feature,
                     &feature.default_value,
                     FeatureSource::kDefault,
                     nullptr,
                     -1,
                     -1};
      for (size_t r = 0; r < feature.rules.size(); ++r) {
        if (RuleApplies(feature.rules[r], config.rule_indexes[f][r], view)) {
          resolved[f] = {
              &feature, &feature.rules[r].value, FeatureSource::kRule, nullptr,
              -1,       static_cast<int>(r)};
          break;
        }
      }
    }
    if (kept != f) resolved[kept] = resolved[f];
    ++kept;
  }
  resolved.resize(kept);
  return result;
}

absl::StatusOr<std::vector<StickyLookup>> StickyLookups(
    const IndexedConfig& config, const Unit& unit,
    const AssignOptions& options) {
  UnitView view;
  if (absl::Status s = BuildView(config, unit, &view); !s.ok()) return s;
  absl::StatusOr<Wanted> wanted = WantedBy(config, options);
  if (!wanted.ok()) return wanted.status();
  const absl::Time now =
      options.now == absl::InfinitePast() ? absl::Now() : options.now;
  std::vector<StickyLookup> lookups;
  for (size_t i = 0; i < config.experiments.size(); ++i) {
    if (!config.experiment_plans[i].sticky || !Needed(config, i, *wanted))
      continue;
    if (const std::string* id = StickyCandidate(config, i, view, now)) {
      lookups.push_back({&config.experiments[i], *id});
    }
  }
  return lookups;
}

namespace {

std::string RangeText(const BucketRange& r) {
  return absl::StrFormat("[%d, %d)", r.start, r.end);
}

// The account Explain builds for one experiment: the result so far, and
// what the traces gathered before the walk found.
struct Account {
  const Experiment& e;
  ExplainResult result = {};
  const std::string* id = nullptr;  // the unit's id e hashes on; null: not sent
  const Layer* layer = nullptr;  // e's layer; null: none, or not in the config
  bool targeted = true;          // e's targeting matched, or it has none
  bool sticky_unread = false;    // e is sticky and its lookup failed

  // Appends a step; a failed step's detail becomes the summary. Returns
  // `passed`.
  bool Step(const char* check, bool passed, std::string detail) {
    result.steps.push_back({check, passed, std::move(detail)});
    if (!passed) result.summary = result.steps.back().detail;
    return passed;
  }

  // Ends the account with the unit in variant `index`.
  void Finish(int index, AssignmentReason reason, std::string summary) {
    result.variant_index = index;
    result.reason = reason;
    result.summary = std::move(summary);
  }
};

// Every hash and the targeting trace, taken before the decision is walked.
void GatherTraces(const IndexedConfig& config, const Unit& unit, Account& a) {
  const Experiment& e = a.e;
  ExplainResult& x = a.result;
  a.id = FindId(unit, e.unit_id_type);
  if (a.id != nullptr) {
    x.unit_id = *a.id;
    x.has_variant_hash = true;
    x.variant_hash = TraceBucket(HashPurpose::kVariant, e.salt, *a.id);
  }
  if (config.holdout && config.holdout->bp > 0) {
    if (const std::string* hid = FindId(unit, config.holdout->unit_id_type)) {
      x.has_holdout = true;
      x.holdout_hash =
          TraceBucket(HashPurpose::kHoldout, config.holdout->salt, *hid);
      x.held_out = x.holdout_hash.bucket < config.holdout->bp;
    }
  }
  if (e.targeting) {
    a.targeted = EvaluateWithTrace(*e.targeting, unit.attributes, &x.targeting);
  }
  a.layer = e.layer.empty() ? nullptr : config.FindLayer(e.layer);
  if (a.layer != nullptr) {
    if (const std::string* lid = FindId(unit, a.layer->unit_id_type)) {
      x.has_layer = true;
      x.layer_hash = TraceBucket(HashPurpose::kLayer, a.layer->salt, *lid);
      x.in_layer_range = e.layer_range.Contains(x.layer_hash.bucket);
    }
  }
}

// A stopped experiment: its rollout variant, to units outside the holdout
// that its targeting matches.
void ExplainStopped(Account& a) {
  const Experiment& e = a.e;
  const bool held_out = a.result.held_out;
  if (!a.Step("status", !e.rollout_variant.empty(),
              e.rollout_variant.empty()
                  ? "experiment is stopped with no rollout_variant: nobody is "
                    "assigned"
                  : absl::StrCat("experiment is stopped; rollout_variant '",
                                 e.rollout_variant,
                                 "' is served to every eligible unit"))) {
    return;
  }
  if (!a.Step(
          "holdout", !held_out,
          held_out
              ? "unit is in the global holdout: it gets default feature values"
              : "unit is not in the global holdout")) {
    return;
  }
  if (!a.Step("targeting", a.targeted,
              a.targeted ? "targeting matched"
                         : "targeting did not match: no variant")) {
    return;
  }
  a.Finish(e.VariantIndex(e.rollout_variant), AssignmentReason::kRollout,
           absl::StrCat("stopped experiment: rollout variant '",
                        e.rollout_variant, "' is served"));
}

// Each Explain* step below appends its steps to the account and returns
// true when the account is finished: a check failed or a variant is chosen.

bool ExplainStatusAndSchedule(Account& a, absl::Time now) {
  const Experiment& e = a.e;
  if (!a.Step(
          "status", e.status == ExperimentStatus::kRunning,
          e.status == ExperimentStatus::kRunning
              ? "experiment is running"
              : absl::StrCat("experiment is ", ExperimentStatusName(e.status),
                             ": only running experiments assign"))) {
    return true;
  }
  const bool scheduled = InSchedule(e, now);
  return !a.Step(
      "schedule", scheduled,
      scheduled
          ? "now is inside the experiment's start/end window"
          : absl::StrCat(
                "now (",
                absl::FormatTime(absl::RFC3339_sec, now, absl::UTCTimeZone()),
                ") is outside the experiment's start/end window"));
}

bool ExplainUnitId(Account& a) {
  const Experiment& e = a.e;
  return !a.Step(
      "unit_id", a.id != nullptr,
      a.id != nullptr
          ? absl::StrCat("hashing ", e.unit_id_type, " \"", *a.id, "\"")
          : absl::StrCat("unit has no ", e.unit_id_type,
                         ", which this experiment hashes on: no variant"));
}

// REQUIRES: a.id != nullptr.
bool ExplainQaOverride(Account& a) {
  const Experiment& e = a.e;
  auto it = e.qa_overrides.find(*a.id);
  if (it == e.qa_overrides.end()) {
    a.Step("qa_override", true, "no QA override for this unit");
    return false;
  }
  a.Step("qa_override", true,
         absl::StrCat("QA override forces variant '", it->second,
                      "' (not counted in results)"));
  a.Finish(e.VariantIndex(it->second), AssignmentReason::kQaOverride,
           absl::StrCat("QA override forces variant '", it->second, "'"));
  return true;
}

bool ExplainHoldout(const IndexedConfig& config, Account& a) {
  if (!config.holdout || config.holdout->bp == 0) return false;
  const ExplainResult& x = a.result;
  std::string detail =
      !x.has_holdout
          ? absl::StrCat("unit has no ", config.holdout->unit_id_type,
                         " for the holdout hash: not held out")
          : absl::StrFormat(
                "holdout bucket %d %s threshold %d: %s", x.holdout_hash.bucket,
                x.held_out ? "<" : ">=", config.holdout->bp,
                x.held_out ? "unit is in the global holdout" : "not held out");
  return !a.Step("holdout", !x.held_out, std::move(detail));
}

bool ExplainTargeting(Account& a) {
  const Experiment& e = a.e;
  return !a.Step(
      "targeting", a.targeted,
      !e.targeting
          ? "no targeting: every unit is eligible"
          : (a.targeted ? absl::StrCat("targeting matched: ", e.targeting_text)
                        : absl::StrCat("targeting did not match: ",
                                       e.targeting_text)));
}

bool ExplainLayer(Account& a) {
  const Experiment& e = a.e;
  if (e.layer.empty()) return false;
  const ExplainResult& x = a.result;
  std::string detail;
  bool passed = false;
  if (a.layer == nullptr || !x.has_layer) {
    detail =
        absl::StrCat("unit has no ", a.layer ? a.layer->unit_id_type : "id",
                     " for layer '", e.layer, "'");
  } else {
    passed = x.in_layer_range;
    detail = absl::StrFormat(
        "layer '%s' bucket %d is %s the experiment's layer range %s", e.layer,
        x.layer_hash.bucket, passed ? "inside" : "outside",
        RangeText(e.layer_range));
  }
  return !a.Step("layer", passed, std::move(detail));
}

// What the event store said about a sticky experiment's unit; decides only
// when it names one of the experiment's variants.
// REQUIRES: the unit has the experiment's id (its variant hash is traced).
bool ExplainSticky(Account& a,
                   const absl::StatusOr<std::optional<int>>* recorded) {
  const Experiment& e = a.e;
  if (!e.sticky || recorded == nullptr) return false;
  const uint32_t bucket = a.result.variant_hash.bucket;
  const int num_variants = static_cast<int>(e.variants.size());
  if (!recorded->ok()) {
    a.sticky_unread = true;
    a.Step("sticky", false,
           absl::StrCat("could not read the unit's recorded exposure (",
                        recorded->status().ToString(),
                        "): serving the variant its bucket gives, which may "
                        "differ from the "
                        "one it was shown"));
    return false;
  }
  if (!recorded->value().has_value()) {
    a.Step("sticky", true,
           absl::StrFormat(
               "no recorded exposure in phase %d: bucketing by hash", e.phase));
    return false;
  }
  const int index = *recorded->value();
  if (index < 0 || index >= num_variants) {
    a.Step(
        "sticky", true,
        absl::StrFormat(
            "recorded variant index %d is not among the %d variants any more: "
            "ignored, bucketing by hash",
            index, num_variants));
    return false;
  }
  std::string by_hash =
      absl::StrFormat("bucket %d alone would give no variant at traffic %.2f%%",
                      bucket, e.traffic_bp / 100.0);
  for (const Variant& v : e.variants) {
    if (v.active_range.Contains(bucket)) {
      by_hash =
          absl::StrFormat("bucket %d alone would give '%s'", bucket, v.key);
    }
  }
  const std::string& key = e.variants[index].key;
  a.Step("sticky", true,
         absl::StrFormat(
             "unit was first exposed to variant '%s' in phase %d and keeps it "
             "(sticky: true); %s",
             key, e.phase, by_hash));
  a.Finish(
      index, AssignmentReason::kSticky,
      absl::StrFormat(
          "sticky: unit keeps variant '%s', the one it was first exposed to",
          key));
  return true;
}

// The last step: the variant whose active range holds the unit's bucket.
void ExplainTraffic(Account& a) {
  const Experiment& e = a.e;
  const uint32_t bucket = a.result.variant_hash.bucket;
  for (size_t i = 0; i < e.variants.size(); ++i) {
    const Variant& v = e.variants[i];
    if (v.active_range.Contains(bucket)) {
      std::string detail =
          absl::StrFormat("bucket %d is in variant '%s' range %s", bucket,
                          v.key, RangeText(v.active_range));
      a.Step("traffic", true, detail);
      a.Finish(static_cast<int>(i),
               a.sticky_unread ? AssignmentReason::kStickyUnread
                               : AssignmentReason::kBucketed,
               std::move(detail));
      return;
    }
  }
  a.Step("traffic", false,
         absl::StrFormat("bucket %d is outside every variant's active range at "
                         "traffic %.2f%%: "
                         "not in the experiment",
                         bucket, e.traffic_bp / 100.0));
}

}  // namespace

absl::StatusOr<ExplainResult> Explain(
    const IndexedConfig& config, const Unit& unit,
    const std::string& experiment_key, absl::Time now,
    const absl::StatusOr<std::optional<int>>* recorded) {
  const Experiment* e = config.FindExperiment(experiment_key);
  if (e == nullptr) {
    return absl::NotFoundError(absl::StrCat(
        "experiment_key: no experiment '", ClipForMessage(experiment_key),
        "' in config version ", config.version,
        "; list them with `abexp experiments list`"));
  }
  if (absl::Status s = ValidateUnit(config, unit); !s.ok()) return s;

  Account a{*e};
  a.result.experiment = e;
  // Gather every trace first, then walk the decision in spec order.
  GatherTraces(config, unit, a);
  if (e->status == ExperimentStatus::kStopped) {
    ExplainStopped(a);
    return std::move(a.result);
  }
  const bool finished = ExplainStatusAndSchedule(a, now) || ExplainUnitId(a) ||
                        ExplainQaOverride(a) || ExplainHoldout(config, a) ||
                        ExplainTargeting(a) || ExplainLayer(a) ||
                        ExplainSticky(a, recorded);
  if (!finished) ExplainTraffic(a);
  return std::move(a.result);
}

}  // namespace abexp
