// GET /experiments/{key}/report on the HTTP listener (--http_listen): the
// results page `abexp report` writes (client/report/html_report.h), made by
// the server from the same figures GetResults gives, daily trend included,
// for dashboards and links. Behind the `results` role when tokens are on
// (the token as for OFREP: Authorization: Bearer, or X-API-Key).
//
//   HttpRoutes routes = ...;
//   AddReportRoute(&routes, {config_store, &event_store, &http_auth,
//                            "abexp-server 10.0.0.5:50051"});
//
// Query parameters, as abexp report's flags: dimension=NAME adds the
// Segments section by that dimension of the experiment, and
// adjust_segments=true|false (default false; only with a dimension)
// adjusts the p-values across its values too. Names and values are
// URL-decoded.
//
// Answers: 200 text/html; 400 for an unknown, repeated or malformed
// query parameter or a dimension the experiment does not declare (naming
// the ones it does); 404 for an experiment the config does not have
// (naming the known ones), 503 when Redis cannot be read (saying so), 401
// or 403 for a missing token or role; errors as plain text saying what is
// wrong and how to fix it. The page is made anew on every request
// (Cache-Control: no-store), and reads Redis as GetResults does.
//
// Thread-safe: the route may run concurrently with itself.
#ifndef ABEXP_SERVER_REPORT_ENDPOINT_H_
#define ABEXP_SERVER_REPORT_ENDPOINT_H_

#include <string>

#include "server/core/config_store.h"
#include "server/core/event_store.h"
#include "server/http/http_auth.h"
#include "server/http/http_types.h"

namespace abexp {

struct ReportRouteDeps {
  const ConfigStore* configs = nullptr;  // REQUIRES: non-null
  EventStore* events = nullptr;          // REQUIRES: non-null (Redis)
  const HttpAuthorizer* auth = nullptr;  // REQUIRES: non-null
  // Shown in the page's header as where the figures came from.
  std::string source;
};

inline constexpr char kReportRoute[] = "/experiments/{key}/report";

// Adds GET kReportRoute to `routes`. REQUIRES: deps' pointers outlive the
// routes' listener.
void AddReportRoute(HttpRoutes* routes, ReportRouteDeps deps);

}  // namespace abexp

#endif  // ABEXP_SERVER_REPORT_ENDPOINT_H_
