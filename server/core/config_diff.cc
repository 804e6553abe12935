#include "server/core/config_diff.h"

#include <algorithm>
#include <map>
#include <numeric>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/time.h"
#include "server/core/bucketing.h"

namespace abexp {
namespace {

constexpr uint64_t kN = kNumBuckets;

std::string FormatBp(uint32_t bp) { return absl::StrCat(bp / 10000.0); }

std::string FormatRange(const BucketRange& r) {
  return absl::StrCat("[", FormatBp(r.start), ", ", FormatBp(r.end), ")");
}

std::string FormatTime(const std::optional<absl::Time>& t) {
  if (!t.has_value()) return "none";
  return absl::FormatTime(absl::RFC3339_full, *t, absl::UTCTimeZone());
}

std::string Weights(const Experiment& e) {
  std::vector<std::string> parts;
  for (const Variant& v : e.variants) {
    parts.push_back(absl::StrCat(v.key, "=", v.weight_text));
  }
  return absl::StrJoin(parts, "/");
}

// One config's view of an experiment: what decides a unit's variant.
struct Side {
  bool present = false;
  bool running = false;
  // Variant hash inputs.
  std::string salt;
  std::string unit_id_type;
  // Layer hash inputs; has_layer false means every unit is "in the layer".
  bool has_layer = false;
  std::string layer_salt;
  std::string layer_unit_id_type;
  BucketRange layer_range{0, kNumBuckets};
  std::vector<BucketRange> active;
  std::vector<std::string> keys;
};

Side SideOf(const Config& config, const Experiment* e) {
  Side side;
  if (e == nullptr) return side;
  side.present = true;
  side.running = e->status == ExperimentStatus::kRunning;
  side.salt = e->salt.empty() ? e->key : e->salt;
  side.unit_id_type = e->unit_id_type;
  if (!e->layer.empty()) {
    side.has_layer = true;
    side.layer_range = e->layer_range;
    const Layer* layer = config.FindLayer(e->layer);
    side.layer_salt =
        layer == nullptr || layer->salt.empty() ? e->layer : layer->salt;
    side.layer_unit_id_type =
        layer == nullptr ? e->unit_id_type : layer->unit_id_type;
  }
  for (const Variant& v : e->variants) {
    side.active.push_back(v.active_range);
    side.keys.push_back(v.key);
  }
  return side;
}

// Joint counts over (old variant + 1, new variant + 1); index 0 means
// "no variant". Entries sum to `denominator`.
struct VariantJoint {
  std::vector<std::vector<uint64_t>> counts;
  uint64_t denominator = 1;
};

// Per-bucket variant index + 1 (0: none) for one side.
std::vector<int> VariantOfBucket(const Side& side) {
  std::vector<int> out(kNumBuckets, 0);
  if (!side.running) return out;
  for (uint32_t b = 0; b < kNumBuckets; ++b) {
    out[b] = FindRange(side.active, b) + 1;
  }
  return out;
}

VariantJoint JointVariants(const Side& o, const Side& n, bool same_hash) {
  VariantJoint joint;
  joint.counts.assign(o.keys.size() + 1,
                      std::vector<uint64_t>(n.keys.size() + 1, 0));
  const std::vector<int> vo = VariantOfBucket(o);
  const std::vector<int> vn = VariantOfBucket(n);
  if (same_hash) {
    // One bucket decides both: count bucket by bucket.
    joint.denominator = kN;
    for (uint32_t b = 0; b < kNumBuckets; ++b) ++joint.counts[vo[b]][vn[b]];
    return joint;
  }
  // Independent buckets: the joint is the product of the marginals.
  std::vector<uint64_t> mo(o.keys.size() + 1, 0);
  std::vector<uint64_t> mn(n.keys.size() + 1, 0);
  for (uint32_t b = 0; b < kNumBuckets; ++b) {
    ++mo[vo[b]];
    ++mn[vn[b]];
  }
  joint.denominator = kN * kN;
  for (size_t i = 0; i < mo.size(); ++i) {
    for (size_t j = 0; j < mn.size(); ++j) joint.counts[i][j] = mo[i] * mn[j];
  }
  return joint;
}

// Layer membership before/after; the four counts sum to `denominator`.
struct LayerJoint {
  uint64_t both = 0, old_only = 0, new_only = 0, neither = 0;
  uint64_t denominator = 1;
};

LayerJoint JointLayers(const Side& o, const Side& n) {
  LayerJoint joint;
  const uint64_t lo = o.has_layer ? o.layer_range.size() : kN;
  const uint64_t ln = n.has_layer ? n.layer_range.size() : kN;
  const bool same_hash = o.has_layer == n.has_layer &&
                         o.layer_salt == n.layer_salt &&
                         o.layer_unit_id_type == n.layer_unit_id_type;
  if (same_hash) {
    const uint64_t start = std::max(o.layer_range.start, n.layer_range.start);
    const uint64_t end = std::min(o.layer_range.end, n.layer_range.end);
    const uint64_t inter = end > start ? end - start : 0;
    joint.denominator = kN;
    joint.both = inter;
    joint.old_only = lo - inter;
    joint.new_only = ln - inter;
    joint.neither = kN - lo - ln + inter;
    return joint;
  }
  joint.denominator = kN * kN;
  joint.both = lo * ln;
  joint.old_only = lo * (kN - ln);
  joint.new_only = (kN - lo) * ln;
  joint.neither = (kN - lo) * (kN - ln);
  return joint;
}

void ComputeShares(const Side& o, const Side& n, ExperimentDiff* diff) {
  const bool same_variant_hash =
      o.salt == n.salt && o.unit_id_type == n.unit_id_type;
  diff->rehashed = o.present && n.present && !same_variant_hash;
  const VariantJoint v = JointVariants(o, n, same_variant_hash);
  const LayerJoint l = JointLayers(o, n);

  uint64_t both_assigned = 0, both_differ = 0;
  uint64_t new_not_old = 0, old_not_new = 0;  // variant-only (layer in both)
  uint64_t new_any = 0, old_any = 0;
  for (size_t i = 0; i < v.counts.size(); ++i) {
    for (size_t j = 0; j < v.counts[i].size(); ++j) {
      const uint64_t c = v.counts[i][j];
      if (i > 0) old_any += c;
      if (j > 0) new_any += c;
      if (i > 0 && j > 0) {
        both_assigned += c;
        if (o.keys[i - 1] != n.keys[j - 1]) both_differ += c;
      } else if (j > 0) {
        new_not_old += c;
      } else if (i > 0) {
        old_not_new += c;
      }
    }
  }
  const uint64_t total = l.denominator * v.denominator;
  diff->moved = Share::Of(l.both * both_differ, l.both * both_assigned);
  diff->added = Share::Of(l.both * new_not_old + l.new_only * new_any, total);
  diff->removed = Share::Of(l.both * old_not_new + l.old_only * old_any, total);
}

// The notes on an experiment's layer: which layer, its hash, its range.
void NoteLayerChanges(const Config& oc, const Experiment& o, const Config& nc,
                      const Experiment& n, std::vector<std::string>* notes) {
  if (o.layer != n.layer) {
    notes->push_back(absl::StrCat("layer '", o.layer, "' -> '", n.layer, "'"));
  } else if (!o.layer.empty()) {
    const Layer* ol = oc.FindLayer(o.layer);
    const Layer* nl = nc.FindLayer(n.layer);
    if (ol != nullptr && nl != nullptr &&
        (ol->salt != nl->salt || ol->unit_id_type != nl->unit_id_type)) {
      notes->push_back(absl::StrCat("layer '", o.layer,
                                    "' hash changed (salt or unit): its units "
                                    "are reshuffled"));
    }
  }
  if (!(o.layer_range == n.layer_range) && !n.layer.empty()) {
    notes->push_back(absl::StrCat("layer_range ", FormatRange(o.layer_range),
                                  " -> ", FormatRange(n.layer_range)));
  }
}

// How the features a variant sets changed: new, changed, then unset keys.
std::vector<std::string> FeatureChanges(const Variant& ov, const Variant& nv) {
  std::vector<std::string> changes;
  for (const auto& [key, value] : nv.features) {
    auto it = ov.features.find(key);
    if (it == ov.features.end()) {
      changes.push_back(
          absl::StrCat(key, " (new) = ", FormatFeatureValue(value)));
    } else if (it->second != value) {
      changes.push_back(absl::StrCat(key, " ", FormatFeatureValue(it->second),
                                     " -> ", FormatFeatureValue(value)));
    }
  }
  for (const auto& [key, value] : ov.features) {
    if (nv.features.count(key) == 0) {
      changes.push_back(absl::StrCat(key, " no longer set"));
    }
  }
  return changes;
}

// One note per variant, in both configs, whose features changed.
void NoteFeatureChanges(const Experiment& o, const Experiment& n,
                        std::vector<std::string>* notes) {
  for (const Variant& nv : n.variants) {
    const int oi = o.VariantIndex(nv.key);
    if (oi < 0) continue;
    const Variant& ov = o.variants[oi];
    if (ov.features == nv.features) continue;
    notes->push_back(absl::StrCat("variant ", nv.key, " features: ",
                                  absl::StrJoin(FeatureChanges(ov, nv), ", ")));
  }
}

void NoteExperimentChanges(const Config& oc, const Experiment& o,
                           const Config& nc, const Experiment& n,
                           ExperimentDiff* diff) {
  auto& notes = diff->notes;
  if (o.status != n.status) {
    notes.push_back(absl::StrCat("status ", ExperimentStatusName(o.status),
                                 " -> ", ExperimentStatusName(n.status)));
  }
  if (o.rollout_variant != n.rollout_variant) {
    notes.push_back(absl::StrCat("rollout_variant '", o.rollout_variant,
                                 "' -> '", n.rollout_variant, "'"));
  }
  if (o.phase != n.phase) {
    notes.push_back(absl::StrCat("phase ", o.phase, " -> ", n.phase));
  }
  if (o.salt != n.salt) {
    notes.push_back(absl::StrCat("salt '", o.salt, "' -> '", n.salt, "'"));
  }
  if (o.unit_id_type != n.unit_id_type) {
    notes.push_back(
        absl::StrCat("unit ", o.unit_id_type, " -> ", n.unit_id_type));
  }
  if (o.traffic_bp != n.traffic_bp) {
    notes.push_back(absl::StrCat("traffic ", FormatBp(o.traffic_bp), " -> ",
                                 FormatBp(n.traffic_bp)));
  }
  if (Weights(o) != Weights(n)) {
    notes.push_back(absl::StrCat("variants ", Weights(o), " -> ", Weights(n)));
  }
  NoteLayerChanges(oc, o, nc, n, &notes);
  if (o.targeting_text != n.targeting_text) {
    notes.push_back(absl::StrCat(
        "targeting changed (not computed): '",
        o.targeting_text.empty() ? "everyone" : o.targeting_text, "' -> '",
        n.targeting_text.empty() ? "everyone" : n.targeting_text, "'"));
  }
  if (o.start_time != n.start_time || o.end_time != n.end_time) {
    notes.push_back(absl::StrCat(
        "schedule ", FormatTime(o.start_time), " .. ", FormatTime(o.end_time),
        " -> ", FormatTime(n.start_time), " .. ", FormatTime(n.end_time)));
  }
  if (o.qa_overrides != n.qa_overrides) {
    notes.push_back(absl::StrCat("qa_overrides changed (",
                                 o.qa_overrides.size(), " -> ",
                                 n.qa_overrides.size(), " units)"));
  }
  NoteFeatureChanges(o, n, &notes);
}

// True when any variant key's full-traffic range differs between the two
// (empty ranges, such as zero-weight variants, count as absent).
bool AllocationChanged(const Experiment& o, const Experiment& n) {
  auto ranges = [](const Experiment& e) {
    std::map<std::string, BucketRange> out;
    for (const Variant& v : e.variants) {
      if (!v.full_range.empty()) out.emplace(v.key, v.full_range);
    }
    return out;
  };
  return ranges(o) != ranges(n);
}

ExperimentDiff DiffExperiment(const Config& oc, const Experiment* o,
                              const Config& nc, const Experiment* n) {
  ExperimentDiff diff;
  diff.key = n != nullptr ? n->key : o->key;
  if (o != nullptr) {
    diff.old_status = o->status;
    diff.old_phase = o->phase;
  }
  if (n != nullptr) {
    diff.new_status = n->status;
    diff.new_phase = n->phase;
  }
  ComputeShares(SideOf(oc, o), SideOf(nc, n), &diff);
  if (o == nullptr) {
    diff.change = DiffChange::kAdded;
    diff.notes.push_back(
        absl::StrCat("new experiment (", ExperimentStatusName(n->status), ")"));
  } else if (n == nullptr) {
    diff.change = DiffChange::kRemoved;
    diff.notes.push_back(absl::StrCat("experiment removed (was ",
                                      ExperimentStatusName(o->status), ")"));
  } else {
    NoteExperimentChanges(oc, *o, nc, *n, &diff);
    diff.change =
        diff.notes.empty() ? DiffChange::kUnchanged : DiffChange::kChanged;
    diff.new_phase_declared = n->phase > o->phase;
    if (diff.rehashed) {
      diff.notes.push_back(
          diff.new_phase_declared
              ? "salt or unit changed with a new phase: results restart"
              : "salt or unit changed without a new phase: every unit is "
                "re-randomized; bump `phase` to declare a new phase");
    } else if (diff.new_phase_declared) {
      diff.notes.push_back("new phase, results restart");
    }
  }
  diff.allocation_changed =
      o != nullptr && n != nullptr && AllocationChanged(*o, *n);
  diff.breaking = n != nullptr && n->status == ExperimentStatus::kRunning &&
                  !diff.new_phase_declared &&
                  (!diff.moved.zero() || diff.allocation_changed);
  return diff;
}

std::string RuleText(const FeatureRule& r) {
  return absl::StrCat("when '",
                      r.condition_text.empty() ? "always" : r.condition_text,
                      "' rollout ", FormatBp(r.rollout_bp), " value ",
                      FormatFeatureValue(r.value));
}

FeatureDiff DiffFeature(const Feature* o, const Feature* n) {
  FeatureDiff diff;
  diff.key = n != nullptr ? n->key : o->key;
  if (o == nullptr) {
    diff.change = DiffChange::kAdded;
    diff.notes.push_back(absl::StrCat("new ", ValueTypeName(n->type),
                                      " feature, default ",
                                      FormatFeatureValue(n->default_value)));
    return diff;
  }
  if (n == nullptr) {
    diff.change = DiffChange::kRemoved;
    diff.notes.push_back("feature removed");
    return diff;
  }
  if (o->type != n->type) {
    diff.notes.push_back(absl::StrCat("type ", ValueTypeName(o->type), " -> ",
                                      ValueTypeName(n->type)));
  }
  if (o->default_value != n->default_value) {
    diff.notes.push_back(
        absl::StrCat("default ", FormatFeatureValue(o->default_value), " -> ",
                     FormatFeatureValue(n->default_value)));
  }
  const size_t common = std::min(o->rules.size(), n->rules.size());
  for (size_t i = 0; i < common; ++i) {
    const FeatureRule& orule = o->rules[i];
    const FeatureRule& nrule = n->rules[i];
    if (RuleText(orule) != RuleText(nrule)) {
      diff.notes.push_back(absl::StrCat("rule ", i, ": ", RuleText(orule),
                                        " -> ", RuleText(nrule)));
    }
    if (orule.salt != nrule.salt || orule.unit_id_type != nrule.unit_id_type) {
      diff.notes.push_back(
          absl::StrCat("rule ", i,
                       ": rollout hash changed (salt or unit): its units are "
                       "re-randomized"));
    }
  }
  for (size_t i = common; i < n->rules.size(); ++i) {
    diff.notes.push_back(
        absl::StrCat("rule ", i, " added: ", RuleText(n->rules[i])));
  }
  for (size_t i = common; i < o->rules.size(); ++i) {
    diff.notes.push_back(
        absl::StrCat("rule ", i, " removed: ", RuleText(o->rules[i])));
  }
  diff.change =
      diff.notes.empty() ? DiffChange::kUnchanged : DiffChange::kChanged;
  return diff;
}

void NoteConfigChanges(const Config& o, const Config& n,
                       std::vector<std::string>* notes) {
  const uint32_t obp = o.holdout ? o.holdout->bp : 0;
  const uint32_t nbp = n.holdout ? n.holdout->bp : 0;
  if (obp != nbp) {
    notes->push_back(absl::StrCat("holdout fraction ", FormatBp(obp), " -> ",
                                  FormatBp(nbp),
                                  " (units move in or out of every "
                                  "experiment; not computed)"));
  }
  if (o.holdout && n.holdout &&
      (o.holdout->salt != n.holdout->salt ||
       o.holdout->unit_id_type != n.holdout->unit_id_type)) {
    notes->push_back(
        "holdout hash changed (salt or unit): held-out units are reshuffled");
  }
  for (const auto& [key, layer] : n.layers) {
    if (o.layers.count(key) == 0) notes->push_back("layer " + key + " added");
  }
  for (const auto& [key, layer] : o.layers) {
    if (n.layers.count(key) == 0) notes->push_back("layer " + key + " removed");
  }
  for (const auto& [name, type] : n.attributes) {
    auto it = o.attributes.find(name);
    if (it == o.attributes.end()) {
      notes->push_back(absl::StrCat("attribute ", name, " added (",
                                    AttributeTypeName(type), ")"));
    } else if (it->second != type) {
      notes->push_back(absl::StrCat("attribute ", name, " type ",
                                    AttributeTypeName(it->second), " -> ",
                                    AttributeTypeName(type)));
    }
  }
  for (const auto& [name, type] : o.attributes) {
    if (n.attributes.count(name) == 0) {
      notes->push_back(absl::StrCat("attribute ", name, " removed"));
    }
  }
  for (const auto& [name, cond] : n.segments) {
    auto it = o.segments.find(name);
    if (it == o.segments.end()) {
      notes->push_back(absl::StrCat("segment ", name, " added"));
    } else if (it->second != nullptr && cond != nullptr &&
               it->second->text != cond->text) {
      notes->push_back(absl::StrCat("segment ", name, " changed: '",
                                    it->second->text, "' -> '", cond->text,
                                    "' (targeting; not computed)"));
    }
  }
  for (const auto& [name, cond] : o.segments) {
    if (n.segments.count(name) == 0) {
      notes->push_back(absl::StrCat("segment ", name, " removed"));
    }
  }
}

}  // namespace

Share Share::Of(uint64_t numerator, uint64_t denominator) {
  if (numerator == 0 || denominator == 0) return Share{};
  const uint64_t g = std::gcd(numerator, denominator);
  return Share{numerator / g, denominator / g};
}

const char* DiffChangeName(DiffChange change) {
  switch (change) {
    case DiffChange::kAdded:
      return "added";
    case DiffChange::kRemoved:
      return "removed";
    case DiffChange::kChanged:
      return "changed";
    case DiffChange::kUnchanged:
      return "unchanged";
  }
  return "unchanged";
}

bool ConfigDiff::ok() const {
  for (const ExperimentDiff& e : experiments) {
    if (e.breaking) return false;
  }
  return true;
}

ConfigDiff DiffConfigs(const Config& old_config, const Config& new_config) {
  ConfigDiff diff;
  diff.old_version = old_config.version;
  diff.new_version = new_config.version;
  for (const Experiment& n : new_config.experiments) {
    diff.experiments.push_back(DiffExperiment(
        old_config, old_config.FindExperiment(n.key), new_config, &n));
  }
  for (const Experiment& o : old_config.experiments) {
    if (new_config.FindExperiment(o.key) == nullptr) {
      diff.experiments.push_back(
          DiffExperiment(old_config, &o, new_config, nullptr));
    }
  }
  for (const Feature& n : new_config.features) {
    FeatureDiff f = DiffFeature(old_config.FindFeature(n.key), &n);
    if (f.change != DiffChange::kUnchanged) diff.features.push_back(f);
  }
  for (const Feature& o : old_config.features) {
    if (new_config.FindFeature(o.key) == nullptr) {
      diff.features.push_back(DiffFeature(&o, nullptr));
    }
  }
  NoteConfigChanges(old_config, new_config, &diff.notes);
  return diff;
}

}  // namespace abexp
