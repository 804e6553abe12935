// `abexp report EXPERIMENT`: the results of one experiment as a
// self-contained HTML page (client/report/html_report.h), written to a file.
//
//   abexp report one_page_checkout
//   abexp report one_page_checkout --out /tmp/checkout.html --server host:50051
//
// Thread-safe: no shared state.
#ifndef ABEXP_CLIENT_CLI_REPORT_COMMAND_H_
#define ABEXP_CLIENT_CLI_REPORT_COMMAND_H_

#include <string>
#include <vector>

namespace abexp::cli {

// Runs `abexp report EXPERIMENT [FLAGS]`; `argv` holds what follows
// "report". Reads the results (GetResults) and the experiment's facts
// (GetExperiment; without them, e.g. for a token lacking the assign role,
// the page leaves them out and a note says so on stderr), writes the page
// to --out (default: EXPERIMENT-report.html in the working directory),
// prints the file's path to stdout and returns kExitOk. Otherwise prints
// what is wrong to stderr and returns kExitUsage (bad flags), kExitFailure
// (a server error such as an unknown experiment, or a file that cannot be
// written) or kExitUnreachable (no server, or it cannot read Redis).
int RunReport(const std::vector<std::string>& argv);

}  // namespace abexp::cli

#endif  // ABEXP_CLIENT_CLI_REPORT_COMMAND_H_
