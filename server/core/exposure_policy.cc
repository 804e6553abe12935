#include "server/core/exposure_policy.h"

#include <utility>

namespace abexp {
namespace {

// Whether an assignment with this reason counts in results.
bool IsCounted(AssignmentReason reason) {
  switch (reason) {
    case AssignmentReason::kBucketed:
    case AssignmentReason::kSticky:
    case AssignmentReason::kStickyUnread:
      return true;
    case AssignmentReason::kQaOverride:
    case AssignmentReason::kRollout:
      return false;
  }
  return false;
}

}  // namespace

std::vector<ExposureInput> ExposuresToRecord(const Config& config,
                                             const Unit& unit,
                                             const AssignResult& result) {
  std::vector<ExposureInput> exposures;
  for (const ExperimentAssignment& a : result.assignments) {
    if (!IsCounted(a.reason)) continue;
    ExposureInput x;
    x.experiment_key = a.experiment->key;
    x.unit.ids = unit.ids;
    // The covariates its metrics name (CUPED), its dimensions, and no other
    // attribute.
    for (const std::string& key : a.experiment->metrics) {
      const Metric* m = config.FindMetric(key);
      if (m == nullptr || m->covariate.empty()) continue;
      auto value = unit.attributes.find(m->covariate);
      if (value != unit.attributes.end()) x.unit.attributes.insert(*value);
    }
    // And its dimensions (segments).
    for (const Dimension& d : a.experiment->dimensions) {
      auto value = unit.attributes.find(d.attribute);
      if (value != unit.attributes.end()) x.unit.attributes.insert(*value);
    }
    x.variant_key = a.experiment->variants[a.variant_index].key;
    // No client time: the derived key is then the same for every page view
    // of this unit and variant, so repeats cost no new idempotency key.
    x.config_version = config.version;
    exposures.push_back(std::move(x));
  }
  return exposures;
}

}  // namespace abexp
