#include "client/report/figures.h"

#include <algorithm>
#include <string>
#include <vector>

#include "absl/strings/str_format.h"

namespace abexp::report {

std::string FormatPValue(std::optional<double> p) {
  if (!p) return "-";
  if (*p >= 0.001) return absl::StrFormat("%.3g", *p);
  if (*p == 0) return "0";
  std::string s = absl::StrFormat("%.1e", *p);
  // "2.4e-06" -> "2.4e-6": the tables are tight.
  const size_t exponent = s.find("e-");
  while (exponent != std::string::npos && exponent + 3 < s.size() &&
         s[exponent + 2] == '0') {
    s.erase(exponent + 2, 1);
  }
  return s;
}

std::string FormatChance(std::optional<double> p) {
  if (!p) return "-";
  if (*p > 0.999 && *p < 1) return ">99.9%";
  if (*p < 0.001 && *p > 0) return "<0.1%";
  return absl::StrFormat("%.1f%%", *p * 100);
}

const v1::MetricResult* FindMetric(const v1::VariantResult& variant,
                                   const std::string& key) {
  for (const v1::MetricResult& m : variant.metrics()) {
    if (m.metric_key() == key) return &m;
  }
  return nullptr;
}

const v1::MetricResult* MetricDefinition(const v1::GetResultsResponse& r,
                                         const std::string& key) {
  for (const v1::VariantResult& v : r.variants()) {
    if (const v1::MetricResult* m = FindMetric(v, key)) return m;
  }
  return nullptr;
}

std::vector<std::string> MetricKeys(const v1::GetResultsResponse& r) {
  std::vector<std::string> keys;
  for (const v1::VariantResult& v : r.variants()) {
    for (const v1::MetricResult& m : v.metrics()) {
      if (std::find(keys.begin(), keys.end(), m.metric_key()) == keys.end()) {
        keys.push_back(m.metric_key());
      }
    }
  }
  return keys;
}

bool IsRate(const v1::MetricResult& m) {
  return m.type() == "binomial" || m.type() == "retention" ||
         m.type() == "funnel";
}

std::string ConfidenceLevel(double alpha) {
  return absl::StrFormat("%g%%", 100 * (1 - alpha));
}

v1::GetResultsResponse AsTotals(const v1::GetResultsResponse& r,
                                const v1::SegmentResult& segment) {
  v1::GetResultsResponse out;
  out.set_experiment_key(r.experiment_key());
  out.set_alpha(r.alpha());
  *out.mutable_variants() = segment.variants();
  *out.mutable_srm() = segment.srm();
  return out;
}

}  // namespace abexp::report
