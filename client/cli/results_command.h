// `abexp results EXPERIMENT`: the analyst's view of one running experiment,
// from ResultsService.GetResults (docs/statistics.md, "Results RPC").
//
//   abexp results one_page_checkout
//   abexp results one_page_checkout --metric order_conversion --alpha 0.01
//   abexp results one_page_checkout --format csv > results.csv
//
// Text is a report to read at a glance: the experiment, the sample-ratio
// check (loud on a mismatch), then per metric a table of the variants with
// their lifts, p-values, chance to beat control, always-valid interval and a
// bar that shows where the interval sits relative to zero, then the
// guardrail verdicts and the decision. JSON and CSV carry every figure at
// full precision with the keys and columns documented in docs/statistics.md
// ("CLI `abexp results`"); undefined figures are null / empty cells.
//
// Thread-safe: no shared state.
#ifndef ABEXP_CLIENT_CLI_RESULTS_COMMAND_H_
#define ABEXP_CLIENT_CLI_RESULTS_COMMAND_H_

#include <ostream>
#include <string>
#include <vector>

#include "abexp/v1/results.pb.h"

namespace abexp::cli {

// Runs `abexp results EXPERIMENT [FLAGS]`; `argv` holds what follows
// "results". Prints the results to stdout and returns kExitOk. Otherwise
// prints what is wrong to stderr and returns kExitUsage (bad flags, including
// the server's INVALID_ARGUMENT for --alpha, --adjust or --metric),
// kExitUnreachable (no server, or it cannot read Redis) or kExitFailure (any
// other server error, e.g. NOT_FOUND for an unknown experiment).
int RunResults(const std::vector<std::string>& argv);

// The three renderings of a response, as RunResults prints them.
void PrintResultsText(const v1::GetResultsResponse& response,
                      std::ostream& out);
std::string ResultsJson(const v1::GetResultsResponse& response);
// One header row, then one row per metric x variant (metric order, then
// variant order). RFC 4180: CRLF line ends, fields with a comma, quote or
// line break quoted, quotes doubled.
std::string ResultsCsv(const v1::GetResultsResponse& response);

}  // namespace abexp::cli

#endif  // ABEXP_CLIENT_CLI_RESULTS_COMMAND_H_
