#include "server/report_endpoint.h"

#include <string>
#include <utility>

#include "abexp/v1/assignment.pb.h"
#include "abexp/v1/results.pb.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "client/report/html_report.h"
#include "server/core/error_text.h"
#include "server/core/token_table.h"
#include "server/service/rpc_handlers.h"

namespace abexp {
namespace {

// A failed read of the figures, as plain text with the matching status.
HttpResponse Failure(const absl::Status& status) {
  HttpResponse response;
  switch (status.code()) {
    case absl::StatusCode::kNotFound:
      response.status = 404;
      break;
    case absl::StatusCode::kInvalidArgument:
      response.status = 400;
      break;
    case absl::StatusCode::kUnavailable:
    case absl::StatusCode::kDeadlineExceeded:
      response.status = 503;
      response.headers.push_back({"Retry-After", "5"});
      break;
    default:
      response.status = 500;
      break;
  }
  response.body = absl::StrCat("no report: ", status.message(), "\n");
  return response;
}

// Sets the page's options from the query: dimension=NAME and
// adjust_segments=true|false, with abexp report's --dimension and
// --adjust_segments meaning. INVALID_ARGUMENT saying what is wrong for
// anything else. (An undeclared dimension is refused by GetResults,
// which names the experiment's.)
absl::Status ApplyQuery(const HttpRequest& request,
                        v1::GetResultsRequest* query) {
  bool has_dimension = false;
  bool has_adjust = false;
  for (const auto& [name, value] : request.query) {
    if (name == "dimension") {
      if (has_dimension) {
        return absl::InvalidArgumentError(
            "dimension is given twice; pass it once (the page shows one "
            "dimension's segments)");
      }
      has_dimension = true;
      if (value.empty()) {
        return absl::InvalidArgumentError(
            "dimension is empty; pass the name of one of the experiment's "
            "dimensions, e.g. ?dimension=platform, or leave it out");
      }
      query->set_dimension(value);
    } else if (name == "adjust_segments") {
      if (has_adjust) {
        return absl::InvalidArgumentError(
            "adjust_segments is given twice; pass it once");
      }
      has_adjust = true;
      if (value != "true" && value != "false") {
        return absl::InvalidArgumentError(
            absl::StrCat("adjust_segments=", ClipForMessage(value),
                         " is not true or false"));
      }
      query->set_adjust_segments(value == "true");
    } else {
      return absl::InvalidArgumentError(
          absl::StrCat("unknown query parameter \"", ClipForMessage(name),
                       "\"; the report takes dimension=NAME and "
                       "adjust_segments=true|false"));
    }
  }
  if (query->adjust_segments() && query->dimension().empty()) {
    return absl::InvalidArgumentError(
        "adjust_segments=true needs dimension=NAME, the dimension whose "
        "values it adjusts across");
  }
  return absl::OkStatus();
}

HttpResponse ServeReport(const ReportRouteDeps& deps,
                         const HttpRequest& request) {
  if (absl::Status allowed = deps.auth->Check(
          request, kRoleResults, absl::StrCat("GET ", kReportRoute));
      !allowed.ok()) {
    return HttpAuthFailure(allowed);
  }
  v1::GetResultsRequest query;
  query.set_experiment_key(request.PathParam("key"));
  query.set_include_daily(true);
  if (absl::Status options = ApplyQuery(request, &query); !options.ok()) {
    return Failure(options);
  }
  v1::GetResultsResponse results;
  if (absl::Status read =
          HandleGetResults(*deps.configs, deps.events, query, &results);
      !read.ok()) {
    return Failure(read);
  }
  report::ReportContext context;
  v1::GetExperimentRequest describe;
  describe.set_experiment_key(query.experiment_key());
  v1::Experiment experiment;
  // The results were found, so the experiment is in the config that served
  // them; a reload in between only leaves the header shorter.
  if (HandleGetExperiment(*deps.configs, describe, &experiment).ok()) {
    context.experiment = &experiment;
  }
  context.generated_at =
      absl::FormatTime("%Y-%m-%d %H:%M UTC", absl::Now(), absl::UTCTimeZone());
  context.source = deps.source;
  HttpResponse response;
  response.content_type = "text/html; charset=utf-8";
  response.headers.push_back({"Cache-Control", "no-store"});
  response.body = report::RenderHtmlReport(results, context);
  return response;
}

}  // namespace

void AddReportRoute(HttpRoutes* routes, ReportRouteDeps deps) {
  (*routes)[{"GET", kReportRoute}] =
      [deps = std::move(deps)](const HttpRequest& request) {
        return ServeReport(deps, request);
      };
}

}  // namespace abexp
