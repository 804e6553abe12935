#include "server/core/event_store.h"

#include <xxhash.h>

#include <cmath>
#include <iterator>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "server/core/event_store_internal.h"

namespace abexp {

ExperimentLayout LayoutOf(const Config& config, const Experiment& experiment) {
  ExperimentLayout layout;
  layout.key = experiment.key;
  layout.phase = experiment.phase;
  layout.variant_keys.reserve(experiment.variants.size());
  for (const Variant& v : experiment.variants)
    layout.variant_keys.push_back(v.key);
  layout.metrics.reserve(experiment.metrics.size());
  for (const std::string& key : experiment.metrics) {
    const Metric* metric = config.FindMetric(key);
    if (metric != nullptr) layout.metrics.push_back(*metric);
  }
  layout.dimensions = experiment.dimensions;
  return layout;
}

std::vector<Event> EventsOf(const EventBatch& batch) {
  std::vector<Event> events;
  events.reserve(batch.events.size());
  for (const Event* e : batch.events) events.push_back(*e);
  return events;
}

std::vector<WriteResult> EventStore::WriteEventBatches(
    absl::Span<const EventBatch> batches) {
  std::vector<WriteResult> results;
  results.reserve(batches.size());
  for (const EventBatch& batch : batches) {
    results.push_back(WriteEvents(*batch.layout, EventsOf(batch)));
  }
  return results;
}

std::vector<RecordedVariantResult> EventStore::RecordedVariants(
    absl::Span<const RecordedVariantQuery> queries) {
  std::vector<RecordedVariantResult> results;
  results.reserve(queries.size());
  for (const RecordedVariantQuery& q : queries) {
    results.push_back(RecordedVariant(*q.layout, q.unit_id));
  }
  return results;
}

namespace internal {

std::string FormatDay(int64_t day) {
  absl::CivilDay civil = absl::CivilDay(1970, 1, 1) + day;
  return absl::StrFormat("%04d-%02d-%02d", civil.year(), civil.month(),
                         civil.day());
}

namespace {
std::string SourceText(const MetricSource& source) {
  return absl::StrCat(
      source.event,
      source.aggregation == EventAggregation::kValue ? ":value" : ":count");
}
}  // namespace

std::string MetricSignature(const Metric& metric) {
  std::string definition = absl::StrCat(MetricTypeName(metric.type), "|");
  switch (metric.type) {
    case MetricType::kBinomial:
      absl::StrAppend(&definition, metric.source.event, "|",
                      absl::ToInt64Milliseconds(metric.window));
      break;
    case MetricType::kSum:
      absl::StrAppend(&definition, SourceText(metric.source), "|",
                      absl::ToInt64Milliseconds(metric.window));
      break;
    case MetricType::kRatio:
      absl::StrAppend(&definition, SourceText(metric.numerator), "|",
                      SourceText(metric.denominator), "|",
                      absl::ToInt64Milliseconds(metric.window));
      break;
    case MetricType::kRetention:
      absl::StrAppend(&definition, metric.source.event, "|",
                      metric.retention_day);
      break;
    case MetricType::kFunnel:
      for (const FunnelStep& step : metric.steps) {
        absl::StrAppend(&definition, step.event);
        if (step.window) {
          absl::StrAppend(&definition, ":",
                          absl::ToInt64Milliseconds(*step.window));
        }
        absl::StrAppend(&definition, ">");
      }
      absl::StrAppend(&definition, "|",
                      absl::ToInt64Milliseconds(metric.window));
      break;
  }
  // A covariate changes what is stored, so it makes another definition;
  // metrics without one keep the signatures they had before covariates.
  if (!metric.covariate.empty()) {
    absl::StrAppend(&definition, "|covariate:", metric.covariate);
  }
  uint32_t fp =
      static_cast<uint32_t>(XXH3_64bits(definition.data(), definition.size()));
  return absl::StrFormat("%s@%08x", metric.key, fp);
}

std::string JoinVariantKeys(const std::vector<std::string>& keys) {
  return absl::StrJoin(keys, "\n");
}

absl::Status CheckVariantKeys(const ExperimentLayout& layout,
                              const std::string& stored, std::string* merged) {
  std::string current = JoinVariantKeys(layout.variant_keys);
  auto is_prefix = [](const std::string& shorter, const std::string& longer) {
    return longer.size() > shorter.size() &&
           longer.compare(0, shorter.size(), shorter) == 0 &&
           longer[shorter.size()] == '\n';
  };
  if (stored.empty() || current == stored || is_prefix(stored, current)) {
    *merged = current;
    return absl::OkStatus();
  }
  if (is_prefix(current, stored)) {
    *merged = stored;
    return absl::OkStatus();
  }
  std::vector<std::string> stored_keys = absl::StrSplit(stored, '\n');
  return absl::FailedPreconditionError(absl::StrFormat(
      "experiment '%s' phase %d was recorded with variants [%s] but the config "
      "now lists "
      "[%s]; variants are stored by position, so reordering, renaming or "
      "inserting them "
      "would move recorded units to another variant. Restore the variant "
      "order, or bump "
      "the experiment's `phase` to start a new phase from zero",
      layout.key, layout.phase, absl::StrJoin(stored_keys, ", "),
      absl::StrJoin(layout.variant_keys, ", ")));
}

absl::Status CheckExposures(const ExperimentLayout& layout,
                            absl::Span<const Exposure> exposures) {
  if (layout.variant_keys.empty() ||
      layout.variant_keys.size() > static_cast<size_t>(kMaxVariants)) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "experiment '%s' has %d variants; the event store supports 1 to %d",
        layout.key, layout.variant_keys.size(), kMaxVariants));
  }
  for (size_t i = 0; i < exposures.size(); ++i) {
    int v = exposures[i].variant_index;
    if (v < 0 || v >= static_cast<int>(layout.variant_keys.size())) {
      return absl::InvalidArgumentError(
          absl::StrFormat("exposures[%d].variant_index is %d but experiment "
                          "'%s' has %d variants; pass the "
                          "index of the variant in the config",
                          i, v, layout.key, layout.variant_keys.size()));
    }
    const std::string& version = exposures[i].config_version;
    if (version.empty() || version.size() > kMaxStoredConfigVersionBytes) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "exposures[%d].config_version is %d bytes (experiment '%s'); pass "
          "the version of the config that chose the variant, 1 to %d bytes",
          i, version.size(), layout.key, kMaxStoredConfigVersionBytes));
    }
    for (const auto& [name, x] : exposures[i].covariates) {
      if (!std::isfinite(x) || std::abs(x) > kMaxEventValue) {
        return absl::InvalidArgumentError(absl::StrFormat(
            "exposures[%d].covariates[%s] is %g (experiment '%s'); pass a "
            "finite number within +-%g, or leave the covariate out",
            i, name, x, layout.key, kMaxEventValue));
      }
    }
  }
  return absl::OkStatus();
}

std::string SegmentOf(const std::map<std::string, std::string>& values,
                      const std::string& attribute) {
  auto it = values.find(attribute);
  if (it == values.end() || it->second.empty()) return kNoneSegment;
  if (it->second.size() > kMaxDimensionValueBytes) return kOtherSegment;
  return it->second;
}

void DropEmptySegments(
    std::map<std::string, std::map<std::string, std::vector<VariantAggregate>>>*
        segments) {
  for (auto dim = segments->begin(); dim != segments->end();) {
    for (auto seg = dim->second.begin(); seg != dim->second.end();) {
      bool exposed = false;
      for (const VariantAggregate& v : seg->second) exposed |= v.exposed != 0;
      seg = exposed ? std::next(seg) : dim->second.erase(seg);
    }
    dim = dim->second.empty() ? segments->erase(dim) : std::next(dim);
  }
}

void CountConfigVersion(const std::string& version, int max_versions,
                        std::map<std::string, int64_t>* counts) {
  auto it = counts->find(version);
  if (it == counts->end()) {
    const size_t counted = counts->size() - counts->count(kOtherConfigVersion);
    it = counted < static_cast<size_t>(max_versions)
             ? counts->emplace(version, 0).first
             : counts->try_emplace(kOtherConfigVersion, 0).first;
  }
  ++it->second;
}

}  // namespace internal
void AddVariantAggregates(const std::vector<VariantAggregate>& from,
                          std::vector<VariantAggregate>* to) {
  if (to->size() < from.size()) to->resize(from.size());
  for (size_t v = 0; v < from.size(); ++v) {
    (*to)[v].exposed += from[v].exposed;
    for (const auto& [key, f] : from[v].metrics) {
      MetricAggregate& t = (*to)[v].metrics[key];
      t.units += f.units;
      t.sum += f.sum;
      t.sum_sq += f.sum_sq;
      t.sum_num += f.sum_num;
      t.sum_den += f.sum_den;
      t.sum_num_sq += f.sum_num_sq;
      t.sum_den_sq += f.sum_den_sq;
      t.sum_num_den += f.sum_num_den;
      t.cuped_units += f.cuped_units;
      t.cuped_sum_x += f.cuped_sum_x;
      t.cuped_sum_x_sq += f.cuped_sum_x_sq;
      t.cuped_sum_y += f.cuped_sum_y;
      t.cuped_sum_y_sq += f.cuped_sum_y_sq;
      t.cuped_sum_xy += f.cuped_sum_xy;
      if (t.steps.size() < f.steps.size()) t.steps.resize(f.steps.size());
      for (size_t k = 0; k < f.steps.size(); ++k) t.steps[k] += f.steps[k];
    }
  }
}

}  // namespace abexp
