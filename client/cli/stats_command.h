// `abexp stats ...`: the offline significance calculator, for counts that
// come from elsewhere (a spreadsheet, another tool's export). It needs no
// server; every figure comes from the stats/ library (abexp::stats).
//
//   abexp stats proportions --control 120/1000 --treatment 140/1000
//   abexp stats means --control 5000,12.5,30 --treatment 5100,13.4,31
//   abexp stats srm --observed 5040,4960 --weights 0.5,0.5
//   abexp stats sample-size --baseline 0.02 --mde 0.10
//   abexp stats adjust --method holm --p-values 0.01,0.04,0.03
//
// With --format json the output is one JSON object whose key names scripts
// depend on (README.md, docs/statistics.md "CLI calculator"); undefined
// figures are null and "warnings" says why.
//
// Thread-safe: no shared state.
#ifndef ABEXP_CLIENT_CLI_STATS_COMMAND_H_
#define ABEXP_CLIENT_CLI_STATS_COMMAND_H_

#include <string>
#include <vector>

namespace abexp::cli {

// Runs `abexp stats SUBCOMMAND [FLAGS]`; `argv` holds what follows "stats".
// Prints the result to stdout and returns 0, or prints what is wrong with
// the input (naming the flag, with an example) to stderr and returns 2.
int RunStats(const std::vector<std::string>& argv);

}  // namespace abexp::cli

#endif  // ABEXP_CLIENT_CLI_STATS_COMMAND_H_
