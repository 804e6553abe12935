// Checks across experiments, once every section is read.
#include <set>
#include <string>
#include <vector>

#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "server/core/config_parser_internal.h"

namespace abexp {
namespace config_parser_internal {

// Checks across experiments: layer overlaps and features set by experiments
// that can share a unit.
void Parser::CheckExperiments() {
  CheckLayerOverlaps();
  CheckSharedFeatures();
}

void Parser::CheckLayerOverlaps() {
  const auto& exps = config_->experiments;
  for (size_t j = 0; j < exps.size(); ++j) {
    const Experiment& b = exps[j];
    if (b.layer.empty() || b.status == ExperimentStatus::kStopped ||
        !layer_range_nodes_[j].IsDefined() || layer_range_nodes_[j].IsNull()) {
      continue;
    }
    for (size_t i = 0; i < j; ++i) {
      const Experiment& a = exps[i];
      if (a.layer != b.layer || a.status == ExperimentStatus::kStopped ||
          !layer_range_nodes_[i].IsDefined() ||
          layer_range_nodes_[i].IsNull()) {
        continue;
      }
      if (a.layer_range.Overlaps(b.layer_range)) {
        const YAML::Node& ra = layer_range_nodes_[i];
        const YAML::Node& rb = layer_range_nodes_[j];
        Error(rb, absl::StrFormat("experiment '%s': layer_range [%s, %s) "
                                  "overlaps experiment '%s' "
                                  "[%s, %s) (line %d) in layer '%s'; give "
                                  "experiments in one layer "
                                  "ranges that do not overlap, or stop one",
                                  b.key, rb[0].Scalar(), rb[1].Scalar(), a.key,
                                  ra[0].Scalar(), ra[1].Scalar(),
                                  a.location.line, b.layer));
      }
    }
  }
}

// A unit in two running experiments outside one layer can get a feature
// from both.
void Parser::CheckSharedFeatures() {
  const auto& exps = config_->experiments;
  for (size_t j = 0; j < exps.size(); ++j) {
    const Experiment& b = exps[j];
    if (b.status != ExperimentStatus::kRunning) continue;
    std::set<std::string> b_features;
    for (const Variant& v : b.variants) {
      for (const auto& [k, val] : v.features) b_features.insert(k);
    }
    for (size_t i = 0; i < j; ++i) {
      const Experiment& a = exps[i];
      if (a.status != ExperimentStatus::kRunning) continue;
      if (!a.layer.empty() && a.layer == b.layer) continue;
      std::vector<std::string> shared;
      std::set<std::string> a_features;
      for (const Variant& v : a.variants) {
        for (const auto& [k, val] : v.features) a_features.insert(k);
      }
      for (const std::string& k : b_features) {
        if (a_features.count(k)) shared.push_back(k);
      }
      if (shared.empty()) continue;
      Warning(
          experiment_nodes_[j],
          absl::StrFormat(
              "experiment '%s' and experiment '%s' (line %d) are both running "
              "and both set feature%s %s, but are not in one layer, so a unit "
              "can be in both; put them in the same layer with disjoint "
              "layer_range values",
              b.key, a.key, a.location.line, shared.size() > 1 ? "s" : "",
              absl::StrJoin(shared, ", ")));
    }
  }
}

}  // namespace config_parser_internal
}  // namespace abexp
