// How the results' figures read to a person, shared by `abexp results`'s
// text and the HTML report so that both show a p-value or a chance the same
// way, and the look-up both need.
//
// Thread-safe: no shared state.
#ifndef ABEXP_CLIENT_REPORT_FIGURES_H_
#define ABEXP_CLIENT_REPORT_FIGURES_H_

#include <optional>
#include <string>

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

// "95%" for alpha 0.05.
std::string ConfidenceLevel(double alpha);

}  // namespace abexp::report

#endif  // ABEXP_CLIENT_REPORT_FIGURES_H_
