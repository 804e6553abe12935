// OfrepHandler serves the OpenFeature remote evaluation protocol (OFREP,
// open-feature/protocol service/openapi.yaml 0.1.0) over abexp's core, on
// the HTTP listener (--http_listen):
//
//   POST /ofrep/v1/evaluate/flags/{key}  one flag: 200 evaluationSuccess;
//                                        400/404 {key, errorCode,
//                                        errorDetails}
//   POST /ofrep/v1/evaluate/flags        every flag: 200 {"flags": [...]}
//                                        with an ETag, 304 when
//                                        If-None-Match names it; 400
//                                        {errorCode, errorDetails}
//   GET  /ofrep/v1/configuration         the provider configuration, with
//                                        an ETag and 304
//
// Each evaluation is the core's Assign for the context's unit (mapping in
// ofrep_evaluation.h), with the recorded variants of sticky experiments
// read as gRPC Assign reads them, so a flag's value is the value Assign
// gives. With tokens on, every request needs the assign role, and one with
// abexpRecordExposure the record role too: 401 (with WWW-Authenticate) or
// 403, body {"errorDetails": "..."}.
//
// Thread-safe: the handlers may run concurrently.
#ifndef ABEXP_SERVER_OFREP_OFREP_HANDLER_H_
#define ABEXP_SERVER_OFREP_OFREP_HANDLER_H_

#include <functional>
#include <optional>
#include <string>

#include "absl/time/time.h"
#include "server/core/assigner.h"
#include "server/core/config_store.h"
#include "server/core/recorder.h"
#include "server/core/sticky.h"
#include "server/http/http_auth.h"
#include "server/http/http_types.h"
#include "server/metrics/metrics.h"
#include "server/ofrep/ofrep_evaluation.h"

namespace abexp {

struct OfrepOptions {
  // The served config. Required; not owned.
  const ConfigStore* configs = nullptr;
  // Records the exposures abexpRecordExposure asks for. Null: this server
  // does not record, said in each flag's metadata.abexpExposureError.
  const Recorder* recorder = nullptr;
  // Reads sticky experiments' recorded variants. Null: they are bucketed
  // by hash like the others.
  StickyReader* sticky = nullptr;
  // Checks tokens. Null: every request is allowed.
  const HttpAuthorizer* auth = nullptr;
  // Where requests, assignments and recorded exposures are counted; null:
  // not counted.
  OfrepCounters* requests = nullptr;
  AssignmentCounts* assignments = nullptr;
  std::function<void(const RecordBatchResult&)> count_exposures;
  // What the configuration endpoint tells providers that poll bulk
  // evaluations: the shortest interval to poll at. Default: 30s.
  absl::Duration min_polling_interval = absl::Seconds(30);
};

class OfrepHandler {
 public:
  // REQUIRES: options.configs is set; everything the options point to
  // outlives the handler.
  explicit OfrepHandler(OfrepOptions options);

  OfrepHandler(const OfrepHandler&) = delete;
  OfrepHandler& operator=(const OfrepHandler&) = delete;

  HttpResponse EvaluateFlag(const HttpRequest& request) const;
  HttpResponse EvaluateFlags(const HttpRequest& request) const;
  HttpResponse Configuration(const HttpRequest& request) const;

  // Adds the three routes to *routes.
  // REQUIRES: the handler outlives whatever serves them.
  void AddRoutes(HttpRoutes* routes) const;

 private:
  // A request parsed and assigned.
  struct Evaluation {
    OfrepRequest request;
    AssignResult result;
    absl::Time now;
  };

  // Checks the caller for `roles`; the answer to send when it fails.
  std::optional<HttpResponse> Deny(const HttpRequest& request, Roles roles,
                                   OfrepCounters::Endpoint endpoint) const;
  // Parses the request and checks the record role it may need; the answer
  // to send when either fails.
  std::optional<HttpResponse> Parse(const IndexedConfig& config,
                                    const HttpRequest& request,
                                    const std::string* key,
                                    OfrepCounters::Endpoint endpoint,
                                    OfrepRequest* out) const;
  // Assigns `evaluation->request.unit`: every feature, or only `key` when
  // not null. Errors: INVALID_CONTEXT for a unit Assign refuses, GENERAL
  // for anything else.
  std::optional<OfrepError> Assign(const IndexedConfig& config,
                                   const std::string* key,
                                   Evaluation* evaluation) const;
  // Counts the variants of `served` and, when the request asked, records
  // their exposures; why recording failed, or "".
  std::string Serve(const IndexedConfig& config, const Evaluation& evaluation,
                    const AssignResult& served) const;
  void Count(OfrepCounters::Endpoint endpoint,
             OfrepCounters::Result result) const;
  // The OFREP error answer, counted.
  HttpResponse ErrorAnswer(const std::string* key, const OfrepError& error,
                           OfrepCounters::Endpoint endpoint) const;

  const OfrepOptions options_;
};

}  // namespace abexp

#endif  // ABEXP_SERVER_OFREP_OFREP_HANDLER_H_
