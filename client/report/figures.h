// How the results' figures read to a person, shared by `abexp results`'s
// text and the HTML report so that both show a p-value or a chance the same
// way, and the look-up both need.
//
// Thread-safe: no shared state.
#ifndef ABEXP_CLIENT_REPORT_FIGURES_H_
#define ABEXP_CLIENT_REPORT_FIGURES_H_

#include <optional>
#include <string>
#include <vector>

#include "abexp/v1/results.pb.h"

namespace abexp::report {

// Three significant digits, so 0.0495 is not shown as 0.05 next to an alpha
// of 0.05; below 0.001 two, as "2.4e-6". "-" when undefined.
std::string FormatPValue(std::optional<double> p);

// A probability as a percentage with one decimal, never rounded to a
// certainty (">99.9%", "<0.1%"). "-" when undefined.
std::string FormatChance(std::optional<double> p);

// The metric `key` of `variant`, or null when the variant has none.
const v1::MetricResult* FindMetric(const v1::VariantResult& variant,
                                   const std::string& key);

// The metric `key` of the first variant that has it: its type and
// direction. Null when no variant has it.
const v1::MetricResult* MetricDefinition(const v1::GetResultsResponse& r,
                                         const std::string& key);

// Metric keys in the order of the first variant that lists any, then any
// others a later variant adds.
std::vector<std::string> MetricKeys(const v1::GetResultsResponse& r);

// A binomial or retention metric: its estimate is a rate, shown in percent,
// and its differences in percentage points.
bool IsRate(const v1::MetricResult& m);

// "95%" for alpha 0.05.
std::string ConfidenceLevel(double alpha);

// A response holding one segment's variants and sample-ratio check in place
// of the totals' (with `r`'s experiment key and alpha), so that what shows
// the totals can show a segment.
v1::GetResultsResponse AsTotals(const v1::GetResultsResponse& r,
                                const v1::SegmentResult& segment);

}  // namespace abexp::report

#endif  // ABEXP_CLIENT_REPORT_FIGURES_H_
