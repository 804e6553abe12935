#include "client/cli/report_command.h"

#include <cerrno>
#include <cstring>
#include <fstream>
#include <iostream>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "client/cli/command.h"
#include "client/cli/results_command.h"
#include "client/client.h"
#include "client/report/html_report.h"

namespace abexp::cli {
namespace {

const std::string kUsage = absl::StrCat(
    R"(usage: abexp report EXPERIMENT [--out FILE] [--metric KEY]... [--alpha A]
                    [--adjust holm|bh] [--dimension NAME [--adjust_segments true]]
                    [--server HOST:PORT] [--timeout DURATION]
                    [--tls_ca_file FILE] [--token TOKEN] ...

Writes the experiment's results as one self-contained HTML page: the
experiment's facts, a banner on a sample-ratio mismatch, the decision and
why, a summary in plain words ready to paste, per metric forest plots of
the lifts (fixed-horizon and always-valid intervals) and the table of
figures, and the daily trend: units exposed per day and the cumulative
lift by cohort day; with --dimension, a section per segment value. The
page fetches nothing (no scripts, fonts or images from the
network): it opens from an email attachment, and prints on A4.

  --out FILE           where to write the page (default:
                       EXPERIMENT-report.html in the working directory);
                       the path written is printed
  --metric KEY         only this metric; repeatable (default: all)
  --alpha A            two-sided significance level (default: 0.05)
  --adjust holm|bh     the multiple-comparison adjustment (default: holm)
  --dimension NAME     also a "Segments" section by this dimension of the
                       experiment (config dimensions:, e.g. platform): per
                       value its units, its own sample-ratio check, its
                       warnings and the lifts; exploratory (as in abexp
                       results)
  --adjust_segments true|false
                       with --dimension: adjust the p-values across the
                       dimension's values too (default: false)
  --server HOST:PORT   abexp-server address (default: 127.0.0.1:50051)
  --timeout DURATION   deadline per call, e.g. 500ms, 2s (default: 5s)
)",
    kSecurityFlagsHelp, R"(
The figures need a token with the results role; the owner, description,
status and dates come from GetExperiment (the assign role), and are left
out, with a note, when the token lacks it.

Exit codes: 0 the page was written, 1 server error (e.g. an unknown
experiment) or the file cannot be written, 2 usage error, 3 server
unreachable (or it cannot read Redis).
)");

// Writes `text` to `path` whole; a message naming the path and the reason
// when it cannot.
std::optional<std::string> WriteFile(const std::string& path,
                                     const std::string& text) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  if (!out) {
    return absl::StrCat("cannot write the report to ", path, ": ",
                        std::strerror(errno),
                        "; pass --out with a path in a folder you can write "
                        "to");
  }
  out << text;
  out.close();
  if (!out) {
    return absl::StrCat("writing the report to ", path,
                        " failed (disk full?); pass --out with another path");
  }
  return std::nullopt;
}

}  // namespace

int RunReport(const std::vector<std::string>& argv) {
  Command command{"report",
                  kUsage,
                  {"server", "timeout", "out", "metric", "alpha", "adjust",
                   "dimension", "adjust_segments"},
                  {"metric"}};
  AddSecurityFlags(&command);
  Args args;
  bool json = false;
  if (std::optional<int> done = Start(command, argv, &args, &json)) {
    return *done;
  }
  v1::GetResultsRequest request;
  if (std::optional<int> done =
          ResultsRequestFromArgs(command, args, &request)) {
    return *done;
  }
  // The page draws the trend by cohort day.
  request.set_include_daily(true);
  const std::string path =
      args.Get("out", absl::StrCat(request.experiment_key(), "-report.html"));
  if (path.empty()) {
    return Usage(command,
                 "--out is empty; pass a file name, e.g. --out "
                 "report.html");
  }
  std::unique_ptr<Client> client;
  v1::GetResultsResponse results;
  if (std::optional<int> done =
          FetchResults(command, args, request, &client, &results)) {
    return *done;
  }
  report::ReportContext context;
  absl::StatusOr<v1::Experiment> experiment =
      client->GetExperiment(request.experiment_key());
  if (experiment.ok()) {
    context.experiment = &*experiment;
  } else {
    std::cerr << "note: the page leaves out the experiment's owner, "
                 "description, status and dates: GetExperiment failed ("
              << experiment.status().message()
              << "). With tokens on, use a token that also has the assign "
                 "role.\n";
  }
  context.generated_at =
      absl::FormatTime("%Y-%m-%d %H:%M UTC", absl::Now(), absl::UTCTimeZone());
  context.source =
      absl::StrCat("abexp-server ", args.Get("server", kDefaultServer));
  if (std::optional<std::string> error =
          WriteFile(path, report::RenderHtmlReport(results, context))) {
    std::cerr << "abexp report: " << *error << "\n";
    return kExitFailure;
  }
  std::cout << path << "\n";
  return kExitOk;
}

}  // namespace abexp::cli
