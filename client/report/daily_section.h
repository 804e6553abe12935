// The report's "Daily trend" section (html_report.h): from
// GetResultsResponse.daily, the units first exposed per day per variant and,
// per metric (the primary first), the cumulative relative and absolute lift
// of each variant by cohort day with their intervals (trend_chart.h), under
// a note that says what the trend is and is not (docs/statistics.md, "The
// daily trend").
//
// Thread-safe: no shared state.
#ifndef ABEXP_CLIENT_REPORT_DAILY_SECTION_H_
#define ABEXP_CLIENT_REPORT_DAILY_SECTION_H_

#include <string>

#include "abexp/v1/results.pb.h"

namespace abexp::report {

// The section's HTML, <section id="daily-trend"> to </section>. Without
// daily entries it says there are none rather than drawing empty charts.
// Days whose date cannot be read are left out, and the section says how
// many. Every text is escaped.
std::string DailyTrendSection(const v1::GetResultsResponse& results);

}  // namespace abexp::report

#endif  // ABEXP_CLIENT_REPORT_DAILY_SECTION_H_
