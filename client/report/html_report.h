// The results report as one self-contained HTML page (`abexp report`,
// docs/statistics.md "HTML report"): the experiment's facts, a loud banner
// on a sample-ratio mismatch, the decision and why, a plain-words summary
// ready to paste, per metric forest plots (svg_chart.h), the table of
// figures and the CUPED table where there is one, and the daily trend from
// the response's `daily` entries (daily_section.h). With a dimension
// (GetResultsRequest.dimension) a "Segments" section ends the page: per
// value its units, its own sample-ratio check (a banner on a mismatch), its
// warnings, a forest plot of the primary metric and a row per metric.
//
// The page fetches nothing: its CSS and charts are inline, it uses no
// script, web font or image by URL, so it opens from an email attachment or
// on a machine without a network. It is readable without colour, fits 375 px
// to 1920 px wide screens, and prints on A4. Every text that comes from the
// config, the server or the caller is HTML-escaped.
//
// The funnels are a later part of issue 19: the page has a marked section
// that says so, and draws nothing there.
//
// Thread-safe: no shared state.
#ifndef ABEXP_CLIENT_REPORT_HTML_REPORT_H_
#define ABEXP_CLIENT_REPORT_HTML_REPORT_H_

#include <string>

#include "abexp/v1/assignment.pb.h"
#include "abexp/v1/results.pb.h"

namespace abexp::report {

struct ReportContext {
  // The experiment as GetExperiment gives it: owner, description, status,
  // dates, traffic. Null when unknown (the header then shows only what the
  // results carry).
  const v1::Experiment* experiment = nullptr;
  // When the figures were read, shown in the header, e.g.
  // "2026-12-07 16:30 UTC". Empty: not shown.
  std::string generated_at;
  // Where they were read from, e.g. "abexp-server 127.0.0.1:50051". Empty:
  // not shown.
  std::string source;
};

// The whole page, from <!DOCTYPE html> to </html>.
std::string RenderHtmlReport(const v1::GetResultsResponse& results,
                             const ReportContext& context);

// The plain-words summary the page shows, as text: one paragraph per line
// (what changed, by how much, how sure), ready to paste into a campaign
// review. Not escaped.
std::string SummaryText(const v1::GetResultsResponse& results);

}  // namespace abexp::report

#endif  // ABEXP_CLIENT_REPORT_HTML_REPORT_H_
