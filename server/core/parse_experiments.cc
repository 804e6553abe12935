// Reading the layers:, holdout: and experiments: sections (docs/config.md),
// with each experiment's variants, QA overrides and metrics.
#include <algorithm>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "server/core/bucketing.h"
#include "server/core/config_parser_internal.h"

namespace abexp {
namespace config_parser_internal {
namespace {

// A weight or sum of weights scaled by kWeightScale, as one would write it:
// 333000 is "33.3".
std::string FormatWeight(uint64_t scaled) {
  std::string out = absl::StrCat(scaled / kWeightScale);
  if (const uint64_t fraction = scaled % kWeightScale; fraction != 0) {
    std::string digits = absl::StrFormat("%04d", fraction);
    digits.erase(digits.find_last_not_of('0') + 1);
    absl::StrAppend(&out, ".", digits);
  }
  return out;
}

const std::pair<const char*, ExperimentStatus> kStatuses[] = {
    {"draft", ExperimentStatus::kDraft},
    {"running", ExperimentStatus::kRunning},
    {"paused", ExperimentStatus::kPaused},
    {"stopped", ExperimentStatus::kStopped}};

struct LayerDraft {
  std::string what;
  Layer* layer;
};

struct HoldoutDraft {
  std::string what;
  Holdout holdout{};
};

// One experiment while it is read.
struct ExperimentDraft {
  std::string what;
  const FieldMap& fields;
  Experiment* e;
  YAML::Node* layer_range;  // receives the layer_range node when valid
  bool key_ok = false;
  std::map<std::string, int> variant_lines{};  // the line of each variant key
};

// One variant while it is read.
struct VariantDraft {
  std::string what;             // "experiment 'x' variant 'a'"
  const std::string& exp_what;  // "experiment 'x'"
  Variant* v;
  std::map<std::string, int>* variant_lines;
  bool weight_ok = false;
};

// The fields of a layer.
const FieldRule<LayerDraft> kLayerRules[] = {
    {"description",
     [](Parser& p, const Entry& e, LayerDraft& d) {
       if (auto s = p.GetString(e, d.what + " description"))
         d.layer->description = *s;
     }},
    {"unit",
     [](Parser& p, const Entry& e, LayerDraft& d) {
       if (auto s = p.GetKey(e, d.what + " unit")) d.layer->unit_id_type = *s;
     }},
    {"salt",
     [](Parser& p, const Entry& e, LayerDraft& d) {
       if (auto s = p.GetString(e, d.what + " salt")) d.layer->salt = *s;
     }},
};

// The fields of holdout:.
const FieldRule<HoldoutDraft> kHoldoutRules[] = {
    {"fraction",
     [](Parser& p, const Entry& e, HoldoutDraft& d) {
       if (auto bp = p.GetFraction(e, d.what + " fraction")) d.holdout.bp = *bp;
     },
     "add the share of units to hold out, such as fraction: 0.02"},
    {"unit",
     [](Parser& p, const Entry& e, HoldoutDraft& d) {
       if (auto s = p.GetKey(e, d.what + " unit")) d.holdout.unit_id_type = *s;
     }},
    {"salt",
     [](Parser& p, const Entry& e, HoldoutDraft& d) {
       if (auto s = p.GetString(e, d.what + " salt")) d.holdout.salt = *s;
     }},
};

// The fields of an experiment. The late ones check against the variants
// (rollout_variant, qa_overrides) or come after them.
const FieldRule<ExperimentDraft> kExperimentRules[] = {
    {"key",
     [](Parser& p, const Entry& e, ExperimentDraft& d) {
       std::optional<std::string> key = p.GetKey(e, "experiment key");
       if (!key) return;
       d.key_ok = true;
       d.e->key = *key;
       d.e->salt = *key;
       d.what = absl::StrCat("experiment ", Quote(*key));
     },
     "add key: <name>"},
    {"description",
     [](Parser& p, const Entry& e, ExperimentDraft& d) {
       if (auto s = p.GetString(e, d.what + " description"))
         d.e->description = *s;
     }},
    {"owner",
     [](Parser& p, const Entry& e, ExperimentDraft& d) {
       if (auto s = p.GetString(e, d.what + " owner")) d.e->owner = *s;
     }},
    {"status",
     [](Parser& p, const Entry& e, ExperimentDraft& d) {
       if (auto s = p.GetNamed(e, kStatuses, d.what + ": status",
                               "use one of draft, running, paused, stopped")) {
         d.e->status = *s;
       }
     },
     "add status: with one of draft, running, paused, stopped"},
    {"rollout_variant",
     [](Parser& p, const Entry& e, ExperimentDraft& d) {
       p.ParseRolloutVariant(e, d.what, d.variant_lines, d.e);
     },
     nullptr, nullptr, /*late=*/true},
    {"unit",
     [](Parser& p, const Entry& e, ExperimentDraft& d) {
       if (auto s = p.GetKey(e, d.what + " unit")) d.e->unit_id_type = *s;
     }},
    {"salt",
     [](Parser& p, const Entry& e, ExperimentDraft& d) {
       if (auto s = p.GetString(e, d.what + " salt")) d.e->salt = *s;
     }},
    {"phase",
     [](Parser& p, const Entry& e, ExperimentDraft& d) {
       p.ParseExperimentPhase(e, d.what, d.e);
     }},
    {"traffic",
     [](Parser& p, const Entry& e, ExperimentDraft& d) {
       if (auto bp = p.GetFraction(e, d.what + " traffic"))
         d.e->traffic_bp = *bp;
     }},
    {"start",
     [](Parser& p, const Entry& e, ExperimentDraft& d) {
       d.e->start_time = p.GetTime(e, d.what + " start");
     }},
    {"end",
     [](Parser& p, const Entry& e, ExperimentDraft& d) {
       d.e->end_time = p.GetTime(e, d.what + " end");
       if (d.e->start_time && d.e->end_time &&
           *d.e->start_time >= *d.e->end_time) {
         p.Error(e, absl::StrCat(d.what, ": end ", e.value.Scalar(),
                                 " is not after start ",
                                 d.fields.at("start").value.Scalar(),
                                 "; make end later than start"));
       }
     }},
    {"targeting",
     [](Parser& p, const Entry& e, ExperimentDraft& d) {
       if (e.value.IsNull()) return;
       d.e->targeting =
           p.ParseRootCondition(e.value, Parser::Pos(e), d.what + " targeting");
       if (d.e->targeting) d.e->targeting_text = d.e->targeting->text;
     }},
    {"layer",
     [](Parser& p, const Entry& e, ExperimentDraft& d) {
       p.ParseExperimentLayer(d.fields, d.what, d.e);
     }},
    {"layer_range",
     [](Parser& p, const Entry& e, ExperimentDraft& d) {
       p.ParseLayerRange(d.fields, d.what, d.e, d.layer_range);
     }},
    {"variants",
     [](Parser& p, const Entry& e, ExperimentDraft& d) {
       if (p.ExpectList(e, d.what + " variants")) {
         p.ParseVariants(e, d.what, d.e, &d.variant_lines);
       }
     },
     "add at least one, such as variants: [{key: control, weight: 50}, {key: "
     "treatment, "
     "weight: 50}]"},
    {"qa_overrides",
     [](Parser& p, const Entry& e, ExperimentDraft& d) {
       if (!e.value.IsNull())
         p.ParseQaOverrides(e, d.what, d.variant_lines, d.e);
     },
     nullptr, nullptr, /*late=*/true},
    {"metrics",
     [](Parser& p, const Entry& e, ExperimentDraft& d) {
       if (!e.value.IsNull()) p.ParseExperimentMetrics(e, d.what, d.e);
     },
     nullptr, nullptr, /*late=*/true},
    {"primary_metric",
     [](Parser& p, const Entry& e, ExperimentDraft& d) {
       p.ParsePrimaryMetric(e, d.what, d.e);
     },
     nullptr,
     [](Parser& p, ExperimentDraft& d) {
       if (d.e->metrics.empty()) return;
       const std::string hint = p.PrimaryMetricHint(*d.e);
       p.Error(
           d.fields.at("metrics").key_node,
           absl::StrCat(
               d.what,
               ": metrics are listed but primary_metric is missing; name the "
               "metric the decision is made on, such as primary_metric: ",
               hint.empty() ? d.e->metrics[0] : hint));
     },
     /*late=*/true},
    {"dimensions",
     [](Parser& p, const Entry& e, ExperimentDraft& d) {
       if (!e.value.IsNull()) p.ParseDimensions(e, d.what, d.e);
     },
     nullptr, nullptr, /*late=*/true},
    {"sticky",
     [](Parser& p, const Entry& e, ExperimentDraft& d) {
       if (auto b = p.GetBool(e, d.what + " sticky")) d.e->sticky = *b;
     },
     nullptr, nullptr, /*late=*/true},
};

// The fields of a variant.
const FieldRule<VariantDraft> kVariantRules[] = {
    {"key",
     [](Parser& p, const Entry& e, VariantDraft& d) {
       auto k = p.GetKey(e, d.exp_what + " variant key");
       if (!k) return;
       d.v->key = *k;
       d.what = absl::StrCat(d.exp_what, " variant ", Quote(*k));
       auto [pos, inserted] = d.variant_lines->emplace(*k, d.v->location.line);
       if (!inserted) {
         p.Error(e, absl::StrCat(
                        d.exp_what, ": duplicate variant key ", Quote(*k),
                        " (first at line ", pos->second,
                        "); variant keys must be unique in an experiment"));
       }
     },
     "add key: <name>"},
    {"weight",
     [](Parser& p, const Entry& e, VariantDraft& d) {
       if (auto w = p.GetWeight(e, d.what + " weight")) {
         d.v->weight = *w;
         d.v->weight_text = e.value.Scalar();
         d.weight_ok = true;
       }
     },
     "add weight: such as weight: 50"},
    {"features",
     [](Parser& p, const Entry& e, VariantDraft& d) {
       if (!e.value.IsNull()) p.ParseVariantFeatures(e, d.what, d.v);
     }},
};

}  // namespace

void Parser::ParseLayers(const Entry& section) {
  if (section.value.IsNull()) return;
  if (!ExpectMap(section.value, Pos(section), "layers",
                 "layers: {checkout: {unit: user_id}}")) {
    return;
  }
  for (const Entry& e : Entries(section.value)) {
    if (!CheckKeyFormat(e.key_node, e.key, "layer")) continue;
    Layer layer;
    layer.key = e.key;
    layer.salt = e.key;
    layer.location = {e.key_node.Mark().line + 1, e.key_node.Mark().column + 1};
    LayerDraft d{absl::StrCat("layer ", Quote(e.key)), &layer};
    if (!e.value.IsNull()) {
      if (!ExpectMap(e.value, Pos(e), d.what,
                     "checkout: {description: ..., unit: user_id}")) {
        continue;
      }
      ReadFields(kLayerRules, Fields(e.value, d.what, kLayerRules), e.value, d);
    }
    config_->layers[e.key] = std::move(layer);
  }
}

void Parser::ParseHoldout(const Entry& section) {
  if (!ExpectMap(section.value, Pos(section), "holdout",
                 "holdout: {fraction: 0.02}"))
    return;
  HoldoutDraft d{"holdout"};
  ReadFields(kHoldoutRules, Fields(section.value, d.what, kHoldoutRules),
             section.key_node, d);
  config_->holdout = d.holdout;
}

void Parser::ParseExperiments(const Entry& section) {
  if (section.value.IsNull()) return;
  if (!ExpectList(section, "experiments")) return;
  std::map<std::string, int> first_line;
  int index = 0;
  for (auto it = section.value.begin(); it != section.value.end();
       ++it, ++index) {
    Experiment e;
    YAML::Node layer_range;
    if (!ParseExperiment(*it, index, &e, &layer_range)) continue;
    auto [pos, inserted] = first_line.emplace(e.key, e.location.line);
    if (!inserted) {
      Entry key_entry;
      for (const Entry& f : Entries(*it)) {
        if (f.key == "key") key_entry = f;
      }
      Error(key_entry,
            absl::StrCat("duplicate experiment key ", Quote(e.key),
                         " (first defined at line ", pos->second,
                         "); experiment keys must be unique, rename or remove "
                         "one"));
      continue;
    }
    config_->experiments.push_back(std::move(e));
    experiment_nodes_.push_back(*it);
    layer_range_nodes_.push_back(layer_range);
  }
}

bool Parser::ParseExperiment(const YAML::Node& n, int index, Experiment* e,
                             YAML::Node* layer_range) {
  std::string what = absl::StrCat("experiment #", index + 1);
  if (!ExpectMap(n, n.Mark(), what,
                 "- {key: my_test, status: draft, variants: [...]}")) {
    return false;
  }
  const FieldMap f =
      Fields(n, NameFor("experiment", n, what), kExperimentRules);
  e->location = {n.Mark().line + 1, n.Mark().column + 1};
  // Without a usable key, keep validating the rest but drop the experiment.
  ExperimentDraft d{std::move(what), f, e, layer_range};
  ReadFields(kExperimentRules, f, n, d);
  return d.key_ok;
}

void Parser::ParseExperimentPhase(const Entry& p, const std::string& what,
                                  Experiment* e) {
  int phase = 0;
  if (!IsPlain(p.value) || !absl::SimpleAtoi(p.value.Scalar(), &phase)) {
    Error(p, absl::StrCat(what, ": phase ",
                          p.value.IsScalar() ? Quote(p.value.Scalar())
                                             : NodeKindName(p.value),
                          " is not an integer; use a whole number from 1 up"));
  } else if (phase < 1) {
    Error(p,
          absl::StrCat(
              what, ": phase ", phase,
              " is less than 1; phases start at 1 (bump it to re-randomize)"));
  } else {
    e->phase = phase;
  }
}

void Parser::ParseExperimentLayer(const FieldMap& f, const std::string& what,
                                  Experiment* e) {
  if (auto s = GetString(f.at("layer"), what + " layer")) {
    e->layer = *s;
    const Layer* layer = config_->FindLayer(*s);
    if (layer == nullptr) {
      std::vector<std::string> known;
      for (const auto& [k, v] : config_->layers) known.push_back(k);
      Error(f.at("layer"),
            absl::StrCat(
                what, ": layer ", Quote(*s), " is not declared; ",
                known.empty()
                    ? "declare it under layers:"
                    : absl::StrCat("declare it under layers: or use one of ",
                                   absl::StrJoin(known, ", "))));
    } else if (layer->unit_id_type != e->unit_id_type) {
      const Entry& at = f.count("unit") ? f.at("unit") : f.at("layer");
      Error(at,
            absl::StrCat(
                what, ": unit ", Quote(e->unit_id_type), " differs from layer ",
                Quote(*s), "'s unit ", Quote(layer->unit_id_type),
                "; experiments in a layer must hash on the layer's unit"));
    }
  }
  if (!f.count("layer_range")) {
    Error(
        f.at("layer"),
        absl::StrCat(what,
                     ": missing layer_range; add the experiment's share of the "
                     "layer, such as layer_range: [0, 0.5]"));
  }
}

void Parser::ParseLayerRange(const FieldMap& f, const std::string& what,
                             Experiment* e, YAML::Node* layer_range) {
  const Entry& r = f.at("layer_range");
  if (!f.count("layer")) {
    Error(r.key_node, absl::StrCat(what,
                                   ": layer_range is set but layer is not; add "
                                   "layer: <key> or remove layer_range"));
  }
  if (!r.value.IsSequence() || r.value.size() != 2) {
    Error(r, absl::StrCat(
                 what,
                 ": layer_range must be a list of two fractions [from, to), "
                 "such as [0, 0.5]"));
    return;
  }
  Entry from{"layer_range", r.key_node, r.value[0]};
  Entry to{"layer_range", r.key_node, r.value[1]};
  auto a = GetFraction(from, what + " layer_range start");
  auto b = GetFraction(to, what + " layer_range end");
  if (!a || !b) return;
  if (*a >= *b) {
    Error(r, absl::StrCat(what, ": layer_range [", r.value[0].Scalar(), ", ",
                          r.value[1].Scalar(),
                          ") is empty; the start must be below the end"));
  } else if (f.count("layer")) {
    e->layer_range = BucketRange{*a, *b};
    *layer_range = r.value;
  }
}

void Parser::ParseVariants(const Entry& vs, const std::string& what,
                           Experiment* e,
                           std::map<std::string, int>* variant_lines) {
  if (vs.value.size() == 0) {
    Error(vs,
          absl::StrCat(what, ": variants is empty; add at least one variant"));
  }
  if (vs.value.size() > static_cast<size_t>(kMaxVariants)) {
    Error(vs.key_node,
          absl::StrCat(what, " has ", vs.value.size(), " variants, more than ",
                       kMaxVariants,
                       ", the most the event store can record (it keeps a "
                       "unit's variant in one byte); split it into several "
                       "experiments"));
  }
  int vi = 0;
  bool weights_ok = true;
  for (auto it = vs.value.begin(); it != vs.value.end(); ++it, ++vi) {
    const std::string vwhat = absl::StrCat(what, " variant #", vi + 1);
    if (!ExpectMap(*it, it->Mark(), vwhat, "- {key: control, weight: 50}")) {
      weights_ok = false;
      continue;
    }
    Variant v;
    if (!ParseVariant(*it, vwhat, what, variant_lines, &v)) weights_ok = false;
    e->variants.push_back(std::move(v));
  }
  if (weights_ok && !e->variants.empty()) SetVariantRanges(vs, what, e);
}

bool Parser::ParseVariant(const YAML::Node& n, const std::string& vwhat,
                          const std::string& what,
                          std::map<std::string, int>* variant_lines,
                          Variant* v) {
  VariantDraft d{vwhat, what, v, variant_lines};
  const FieldMap f = Fields(n, d.what, kVariantRules);
  v->location = {n.Mark().line + 1, n.Mark().column + 1};
  ReadFields(kVariantRules, f, n, d);
  return d.weight_ok;
}

void Parser::ParseVariantFeatures(const Entry& fs, const std::string& vwhat,
                                  Variant* v) {
  if (!ExpectMap(fs.value, Pos(fs), vwhat + " features",
                 "features: {checkout_flow: one_page}")) {
    return;
  }
  for (const Entry& fe : Entries(fs.value)) {
    const Feature* feature = nullptr;
    for (const Feature& ft : config_->features) {
      if (ft.key == fe.key) feature = &ft;
    }
    if (feature == nullptr) {
      if (broken_features_.count(fe.key)) continue;
      Error(fe.key_node,
            absl::StrCat(vwhat, ": feature ", Quote(fe.key),
                         " is not declared; add it under features: with a type "
                         "and default"));
      continue;
    }
    if (auto val = GetValue(
            fe, feature->type,
            absl::StrCat(vwhat, ": value of feature ", Quote(fe.key)))) {
      v->features[fe.key] = *val;
    }
  }
}

void Parser::SetVariantRanges(const Entry& vs, const std::string& what,
                              Experiment* e) {
  // The (scaled) sum stops growing at kMaxWeightSum, so it cannot wrap
  // around to a small number; the limit is kMaxWrittenWeightSum.
  uint64_t sum = 0;
  for (const Variant& v : e->variants) {
    sum = std::min(sum + std::min(v.weight, kMaxWeightSum), kMaxWeightSum);
  }
  if (sum == 0) {
    Error(vs.key_node,
          absl::StrCat(what,
                       ": variant weights sum to 0; give at least one "
                       "variant a positive weight"));
    return;
  }
  if (sum >= kMaxWrittenWeightSum * kWeightScale) {
    Error(vs.key_node,
          absl::StrCat(
              what, ": variant weights add up to ",
              sum < kMaxWeightSum
                  ? FormatWeight(sum)
                  : absl::StrCat("more than ", FormatWeight(kMaxWeightSum)),
              "; they must add up to less than ", kMaxWrittenWeightSum,
              " so that bucket ranges can be computed exactly; use "
              "relative weights such as 50/50"));
    return;
  }
  std::vector<uint64_t> weights;
  for (const Variant& v : e->variants) weights.push_back(v.weight);
  VariantRanges ranges = ComputeVariantRanges(weights, e->traffic_bp);
  for (size_t i = 0; i < e->variants.size(); ++i) {
    e->variants[i].full_range = ranges.full[i];
    e->variants[i].active_range = ranges.active[i];
  }
}

void Parser::ParseRolloutVariant(
    const Entry& rv, const std::string& what,
    const std::map<std::string, int>& variant_lines, Experiment* e) {
  std::optional<std::string> s = GetString(rv, what + " rollout_variant");
  if (!s) return;
  e->rollout_variant = *s;
  if (e->status != ExperimentStatus::kStopped) {
    Error(rv, absl::StrCat(what,
                           ": rollout_variant is only allowed when status is "
                           "stopped; set status: stopped to roll out ",
                           Quote(*s), ", or remove rollout_variant"));
  }
  if (!variant_lines.empty() && !variant_lines.count(*s)) {
    std::vector<std::string> known;
    for (const auto& [k, line] : variant_lines) known.push_back(k);
    Error(rv, absl::StrCat(what, ": rollout_variant ", Quote(*s),
                           " is not a variant of this experiment; use one of ",
                           absl::StrJoin(known, ", ")));
  }
}

void Parser::ParseQaOverrides(const Entry& qa, const std::string& what,
                              const std::map<std::string, int>& variant_lines,
                              Experiment* e) {
  if (!ExpectMap(qa.value, Pos(qa), what + " qa_overrides",
                 "qa_overrides: {treatment: [qa-1]}")) {
    return;
  }
  std::map<std::string, std::pair<std::string, int>>
      seen;  // unit -> (variant, line)
  for (const Entry& q : Entries(qa.value)) {
    if (!variant_lines.empty() && !variant_lines.count(q.key)) {
      std::vector<std::string> known;
      for (const auto& [k, line] : variant_lines) known.push_back(k);
      Error(q.key_node,
            absl::StrCat(what, ": qa_overrides names unknown variant ",
                         Quote(q.key), "; use one of ",
                         absl::StrJoin(known, ", ")));
      continue;
    }
    if (!ExpectList(q, absl::StrCat(what, " qa_overrides ", Quote(q.key))))
      continue;
    for (auto u = q.value.begin(); u != q.value.end(); ++u) {
      if (!u->IsScalar() || u->Scalar().empty()) {
        Error(
            *u,
            absl::StrCat(
                what, ": qa_overrides ", Quote(q.key),
                " lists an empty or non-text unit id; list unit ids as text"));
        continue;
      }
      const std::string& id = u->Scalar();
      if (id.size() > kMaxUnitIdBytes) {
        Error(*u,
              absl::StrCat(what, ": qa_overrides unit id is longer than ",
                           kMaxUnitIdBytes, " bytes; use the real unit id"));
        continue;
      }
      auto [pos, inserted] =
          seen.emplace(id, std::make_pair(q.key, u->Mark().line + 1));
      if (!inserted) {
        Error(*u,
              absl::StrCat(what, ": unit id ", Quote(id),
                           " is listed twice in qa_overrides (first under ",
                           Quote(pos->second.first), " at line ",
                           pos->second.second, "); list each unit id once"));
        continue;
      }
      e->qa_overrides[id] = q.key;
    }
  }
}

void Parser::ParseExperimentMetrics(const Entry& m, const std::string& what,
                                    Experiment* e) {
  if (!ExpectList(m, what + " metrics")) return;
  std::set<std::string> seen;
  for (auto it = m.value.begin(); it != m.value.end(); ++it) {
    if (!it->IsScalar() || it->Scalar().empty()) {
      Error(*it,
            absl::StrCat(what,
                         ": metrics must be names, such as order_conversion"));
      continue;
    }
    const std::string& name = it->Scalar();
    if (!seen.insert(name).second) {
      Error(*it, absl::StrCat(what, ": metric ", Quote(name),
                              " is listed twice; list it once"));
      continue;
    }
    e->metrics.push_back(name);
    if (DefinedMetric(name) == nullptr && !broken_metrics_.count(name)) {
      std::vector<std::string> known;
      for (const Metric& defined : config_->metrics)
        known.push_back(defined.key);
      const std::string near = Closest(name, known);
      Error(*it, absl::StrCat(
                     what, ": metric ", Quote(name), " is not defined",
                     near.empty()
                         ? "; define it under metrics: with a type and an event"
                         : absl::StrCat(" (did you mean ", Quote(near),
                                        "?); fix the name, or define it under "
                                        "metrics:")));
    }
  }
  int with_covariate = 0;
  for (const std::string& name : e->metrics) {
    const Metric* defined = DefinedMetric(name);
    if (defined != nullptr && !defined->covariate.empty()) ++with_covariate;
  }
  if (with_covariate > kMaxCovariateMetrics) {
    Error(m, absl::StrCat(what, ": ", with_covariate,
                          " metrics with a covariate; the most is ",
                          kMaxCovariateMetrics,
                          " (the store keeps each unit's covariates in one "
                          "record entry); remove covariate from the others"));
  }
}

bool Parser::CheckDimensionAttribute(const YAML::Node& at,
                                     const std::string& name,
                                     const std::string& what) {
  auto it = config_->attributes.find(name);
  if (it == config_->attributes.end()) {
    Error(at, absl::StrCat(what, ": dimension ", Quote(name),
                           " is not a declared attribute; declare it under "
                           "attributes: as ",
                           name,
                           ": string (or bool), and send it with "
                           "the unit's attributes"));
    return false;
  }
  if (it->second != AttributeType::kString &&
      it->second != AttributeType::kBool) {
    Error(at, absl::StrCat(
                  what, ": dimension ", Quote(name), " is declared ",
                  AttributeTypeName(it->second),
                  "; a dimension must be a string or bool attribute (numbers "
                  "are not bucketed: send a string attribute with the bucket, "
                  "such as an RFM tier or \"0-9\", \"10-49\", \"50+\")"));
    return false;
  }
  return true;
}

void Parser::ParseDimensions(const Entry& ds, const std::string& what,
                             Experiment* e) {
  if (!ExpectList(ds, what + " dimensions")) return;
  std::set<std::string> seen;
  for (auto it = ds.value.begin(); it != ds.value.end(); ++it) {
    const YAML::Node& n = *it;
    Dimension d;
    d.location = {n.Mark().line + 1, n.Mark().column + 1};
    YAML::Node name_node = n;
    if (n.IsMap()) {
      static const char* const kAllowed[] = {"attribute", "max_values"};
      FieldMap f = Fields(n, what + " dimension", kAllowed);
      auto attribute = f.find("attribute");
      if (attribute == f.end()) {
        Error(n, absl::StrCat(what,
                              ": a dimension map needs attribute, such as "
                              "{attribute: platform, max_values: 10}"));
        continue;
      }
      name_node = attribute->second.value;
      if (auto mv = f.find("max_values"); mv != f.end()) {
        int max_values = 0;
        if (!IsPlain(mv->second.value) ||
            !absl::SimpleAtoi(mv->second.value.Scalar(), &max_values) ||
            max_values < 1 || max_values > kMaxDimensionValues) {
          Error(mv->second,
                absl::StrCat(what,
                             ": max_values must be a whole number from "
                             "1 to ",
                             kMaxDimensionValues,
                             " (the values that get figures of their own; "
                             "later ones count as (other)); default ",
                             kDefaultDimensionValues));
          continue;
        }
        d.max_values = max_values;
      }
    }
    if (!name_node.IsScalar() || name_node.Scalar().empty()) {
      Error(n, absl::StrCat(what,
                            ": dimensions must be attribute names, such as "
                            "dimensions: [platform], or maps such as "
                            "{attribute: country, max_values: 30}"));
      continue;
    }
    d.attribute = name_node.Scalar();
    if (!seen.insert(d.attribute).second) {
      Error(name_node, absl::StrCat(what, ": dimension ", Quote(d.attribute),
                                    " is listed twice; list it once"));
      continue;
    }
    if (!CheckDimensionAttribute(name_node, d.attribute, what)) continue;
    e->dimensions.push_back(std::move(d));
  }
  if (e->dimensions.size() > static_cast<size_t>(kMaxDimensions)) {
    Error(ds, absl::StrCat(what, ": ", e->dimensions.size(),
                           " dimensions; the most is ", kMaxDimensions,
                           " (results read every value of each); keep the "
                           "ones you will break results down by"));
  }
}

std::string Parser::PrimaryMetricHint(const Experiment& e) const {
  for (const std::string& name : e.metrics) {
    const Metric* m = DefinedMetric(name);
    if (m != nullptr && !m->guardrail) return name;
  }
  return "";
}

void Parser::ParsePrimaryMetric(const Entry& pm, const std::string& what,
                                Experiment* e) {
  std::optional<std::string> s = GetString(pm, what + " primary_metric");
  if (!s) return;
  e->primary_metric = *s;
  const Metric* m = DefinedMetric(*s);
  if (std::find(e->metrics.begin(), e->metrics.end(), *s) == e->metrics.end()) {
    if (e->metrics.empty()) {
      Error(pm, absl::StrCat(
                    what, ": primary_metric ", Quote(*s),
                    " is not in the experiment's metrics; list them, such as "
                    "metrics: [",
                    *s, "]"));
    } else {
      const std::string near = Closest(*s, e->metrics);
      Error(pm, absl::StrCat(what, ": primary_metric ", Quote(*s),
                             " is not one of the experiment's metrics (",
                             absl::StrJoin(e->metrics, ", "), ")",
                             near.empty() ? ""
                                          : absl::StrCat(" (did you mean ",
                                                         Quote(near), "?)"),
                             "; name one of them, or add it to metrics"));
    }
  } else if (m != nullptr && m->guardrail) {
    const std::string hint = PrimaryMetricHint(*e);
    Error(pm,
          absl::StrCat(
              what, ": primary_metric ", Quote(*s),
              " is a guardrail, and a guardrail cannot be the primary metric; "
              "name the metric the decision is made on",
              hint.empty() ? " (add one to metrics)"
                           : absl::StrCat(", such as ", hint),
              ", and keep ", *s, " in metrics as a guardrail"));
  }
}

}  // namespace config_parser_internal
}  // namespace abexp
