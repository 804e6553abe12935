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

#include <memory>
#include <optional>
#include <ostream>
#include <string>
#include <vector>

#include "abexp/v1/results.pb.h"
#include "client/cli/command.h"
#include "client/client.h"

namespace abexp::cli {

// Runs `abexp results EXPERIMENT [FLAGS]`; `argv` holds what follows
// "results". Prints the results to stdout and returns kExitOk. Otherwise
// prints what is wrong to stderr and returns kExitUsage (bad flags, including
// the server's INVALID_ARGUMENT for --alpha, --adjust or --metric),
// kExitUnreachable (no server, or it cannot read Redis) or kExitFailure (any
// other server error, e.g. NOT_FOUND for an unknown experiment).
int RunResults(const std::vector<std::string>& argv);

// The request of `abexp results` and `abexp report`: the EXPERIMENT (the one
// positional argument) and --metric, --alpha and --adjust when `command`
// declares them. Prints a usage error and returns kExitUsage when they are
// wrong; nullopt when *request is ready.
std::optional<int> ResultsRequestFromArgs(const Command& command,
                                          const Args& args,
                                          v1::GetResultsRequest* request);

// Connects with the flags in `args` (MakeClient) into *client and calls
// GetResults into *response; nullopt on success, and *client may make
// further calls. On an error prints it to stderr and returns the exit code
// RunResults documents (bad connection flags and the server's
// INVALID_ARGUMENT are usage errors: the latter is about --alpha, --adjust
// or --metric).
std::optional<int> FetchResults(const Command& command, const Args& args,
                                const v1::GetResultsRequest& request,
                                std::unique_ptr<Client>* client,
                                v1::GetResultsResponse* response);

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
