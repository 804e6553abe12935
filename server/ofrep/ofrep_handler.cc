#include "server/ofrep/ofrep_handler.h"

#include <nlohmann/json.hpp>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "absl/types/span.h"
#include "server/core/error_text.h"
#include "server/core/exposure_policy.h"
#include "server/core/token_table.h"

namespace abexp {
namespace {

using nlohmann::json;
using Endpoint = OfrepCounters::Endpoint;
using Result = OfrepCounters::Result;

constexpr char kJson[] = "application/json";
constexpr char kFlagRoute[] = "/ofrep/v1/evaluate/flags/{key}";
constexpr char kFlagsRoute[] = "/ofrep/v1/evaluate/flags";
constexpr char kConfigurationRoute[] = "/ofrep/v1/configuration";

HttpResponse JsonAnswer(int status, const json& body) {
  HttpResponse response;
  response.status = status;
  response.content_type = kJson;
  // Invalid UTF-8 from the config or the caller is replaced, not thrown.
  response.body = body.dump(-1, ' ', false, json::error_handler_t::replace);
  return response;
}

Result ResultOf(OfrepErrorCode code) {
  switch (code) {
    case OfrepErrorCode::kParseError:
      return Result::kParseError;
    case OfrepErrorCode::kTargetingKeyMissing:
      return Result::kTargetingKeyMissing;
    case OfrepErrorCode::kInvalidContext:
      return Result::kInvalidContext;
    case OfrepErrorCode::kFlagNotFound:
      return Result::kFlagNotFound;
    case OfrepErrorCode::kGeneral:
      return Result::kGeneral;
  }
  return Result::kGeneral;
}

// A strong ETag of `body`: the first 128 bits of its SHA-256, quoted.
std::string ETagOf(const std::string& body) {
  return absl::StrCat("\"", TokenSha256Hex(body).substr(0, 32), "\"");
}

// Whether If-None-Match (a list of entity tags, or "*") names `etag`. Weak
// tags compare by their opaque part, as RFC 9110 says for If-None-Match.
bool NoneMatchNames(const HttpRequest& request, const std::string& etag) {
  std::optional<absl::string_view> header = request.Header("If-None-Match");
  if (!header.has_value()) return false;
  for (absl::string_view tag : absl::StrSplit(*header, ',')) {
    tag = absl::StripAsciiWhitespace(tag);
    absl::ConsumePrefix(&tag, "W/");
    if (tag == "*" || tag == etag) return true;
  }
  return false;
}

// 304 when the request's If-None-Match names the body's ETag, else 200 with
// the body; both carry the ETag.
HttpResponse CacheableAnswer(const HttpRequest& request, const json& body,
                             bool* not_modified) {
  HttpResponse response = JsonAnswer(200, body);
  const std::string etag = ETagOf(response.body);
  *not_modified = NoneMatchNames(request, etag);
  if (*not_modified) {
    response.status = 304;
    response.body.clear();
  }
  response.headers.emplace_back("ETag", etag);
  // Caches may keep it, and ask again with If-None-Match before using it.
  response.headers.emplace_back("Cache-Control", "no-cache");
  return response;
}

// The assignment of `experiment` in `result` alone (none when it has none).
AssignResult OnlyAssignmentOf(const AssignResult& result,
                              const Experiment* experiment) {
  AssignResult only;
  only.in_holdout = result.in_holdout;
  for (const ExperimentAssignment& a : result.assignments) {
    if (experiment != nullptr && a.experiment == experiment) {
      only.assignments.push_back(a);
    }
  }
  return only;
}

}  // namespace

OfrepHandler::OfrepHandler(OfrepOptions options)
    : options_(std::move(options)) {}

void OfrepHandler::Count(Endpoint endpoint, Result result) const {
  if (options_.requests != nullptr) options_.requests->Count(endpoint, result);
}

HttpResponse OfrepHandler::ErrorAnswer(const std::string* key,
                                       const OfrepError& error,
                                       Endpoint endpoint) const {
  Count(endpoint, ResultOf(error.code));
  return JsonAnswer(OfrepHttpStatus(error.code), OfrepErrorJson(key, error));
}

std::optional<HttpResponse> OfrepHandler::Deny(const HttpRequest& request,
                                               Roles roles,
                                               Endpoint endpoint) const {
  if (options_.auth == nullptr) return std::nullopt;
  const absl::Status s = options_.auth->Check(
      request, roles, absl::StrCat(request.method, " ", request.path));
  if (s.ok()) return std::nullopt;
  HttpResponse response =
      JsonAnswer(HttpStatusOf(s), json{{"errorDetails", s.message()}});
  AddAuthChallenge(&response);
  Count(endpoint, response.status == 401   ? Result::kUnauthenticated
                  : response.status == 403 ? Result::kPermissionDenied
                                           : Result::kGeneral);
  return response;
}

std::optional<HttpResponse> OfrepHandler::Parse(const IndexedConfig& config,
                                                const HttpRequest& request,
                                                const std::string* key,
                                                Endpoint endpoint,
                                                OfrepRequest* out) const {
  if (std::optional<OfrepError> e =
          ParseOfrepRequest(config, request.body, out);
      e.has_value()) {
    return ErrorAnswer(key, *e, endpoint);
  }
  if (out->record_exposure) {
    return Deny(request, kRoleAssign | kRoleRecord, endpoint);
  }
  return std::nullopt;
}

std::optional<OfrepError> OfrepHandler::Assign(const IndexedConfig& config,
                                               const std::string* key,
                                               Evaluation* evaluation) const {
  AssignOptions options;
  if (key != nullptr) options.feature_keys.push_back(*key);
  options.now = evaluation->now = absl::Now();
  const Unit& unit = evaluation->request.unit;
  if (options_.sticky != nullptr) {
    absl::StatusOr<std::vector<RecordedVariants>> recorded =
        options_.sticky->ReadForUnits(config, absl::MakeConstSpan(&unit, 1),
                                      options);
    if (!recorded.ok()) {
      return OfrepError{OfrepErrorCode::kInvalidContext,
                        std::string(recorded.status().message())};
    }
    options.recorded_variants = std::move((*recorded)[0]);
  }
  absl::StatusOr<AssignResult> result = abexp::Assign(config, unit, options);
  if (!result.ok()) {
    const bool invalid =
        result.status().code() == absl::StatusCode::kInvalidArgument;
    return OfrepError{
        invalid ? OfrepErrorCode::kInvalidContext : OfrepErrorCode::kGeneral,
        std::string(result.status().message())};
  }
  evaluation->result = *std::move(result);
  return std::nullopt;
}

std::string OfrepHandler::Serve(const IndexedConfig& config,
                                const Evaluation& evaluation,
                                const AssignResult& served) const {
  if (options_.assignments != nullptr) {
    options_.assignments->Count(config, served);
  }
  if (!evaluation.request.record_exposure) return "";
  const std::vector<ExposureInput> exposures =
      ExposuresToRecord(config, evaluation.request.unit, served);
  if (exposures.empty()) return "";
  if (options_.recorder == nullptr) {
    return "FAILED_PRECONDITION: this abexp-server does not record exposures";
  }
  absl::StatusOr<RecordBatchResult> recorded =
      options_.recorder->RecordExposures(config, exposures, evaluation.now);
  if (!recorded.ok()) {
    return absl::StrCat(absl::StatusCodeToString(recorded.status().code()),
                        ": ", recorded.status().message());
  }
  if (options_.count_exposures) options_.count_exposures(*recorded);
  return "";
}

HttpResponse OfrepHandler::EvaluateFlag(const HttpRequest& request) const {
  const Endpoint endpoint = Endpoint::kFlag;
  const std::string& key = request.PathParam("key");
  if (auto denied = Deny(request, kRoleAssign, endpoint)) return *denied;
  std::shared_ptr<const IndexedConfig> config = options_.configs->Snapshot();
  if (config->feature_by_key.find(key) == config->feature_by_key.end()) {
    return ErrorAnswer(
        &key,
        OfrepError{OfrepErrorCode::kFlagNotFound,
                   absl::StrCat("no flag '", ClipForMessage(key),
                                "' in config version ", config->version,
                                "; abexp's flags are the config's features: "
                                "check the spelling against them")},
        endpoint);
  }
  Evaluation evaluation;
  if (auto failed =
          Parse(*config, request, &key, endpoint, &evaluation.request)) {
    return *failed;
  }
  if (std::optional<OfrepError> e = Assign(*config, &key, &evaluation)) {
    return ErrorAnswer(&key, *e, endpoint);
  }
  const ResolvedFeature& feature = evaluation.result.features.at(0);
  json flag = OfrepEvaluation(*config, evaluation.request.unit,
                              evaluation.result, feature);
  // The flag was decided by at most one experiment: only its assignment
  // was served (and is an exposure, when asked).
  const std::string exposure_error =
      Serve(*config, evaluation,
            OnlyAssignmentOf(evaluation.result, feature.experiment));
  if (!exposure_error.empty()) {
    flag["metadata"]["abexpExposureError"] = exposure_error;
  }
  Count(endpoint, Result::kOk);
  return JsonAnswer(200, flag);
}

HttpResponse OfrepHandler::EvaluateFlags(const HttpRequest& request) const {
  const Endpoint endpoint = Endpoint::kBulk;
  if (auto denied = Deny(request, kRoleAssign, endpoint)) return *denied;
  std::shared_ptr<const IndexedConfig> config = options_.configs->Snapshot();
  Evaluation evaluation;
  if (auto failed =
          Parse(*config, request, nullptr, endpoint, &evaluation.request)) {
    return *failed;
  }
  if (std::optional<OfrepError> e = Assign(*config, nullptr, &evaluation)) {
    return ErrorAnswer(nullptr, *e, endpoint);
  }
  json flags = json::array();
  for (const ResolvedFeature& feature : evaluation.result.features) {
    flags.push_back(OfrepEvaluation(*config, evaluation.request.unit,
                                    evaluation.result, feature));
  }
  const std::string exposure_error =
      Serve(*config, evaluation, evaluation.result);
  if (!exposure_error.empty()) {
    for (json& flag : flags) {
      flag["metadata"]["abexpExposureError"] = exposure_error;
    }
  }
  // The ETag is the answer's hash: every flag's metadata names the config
  // version, so it changes with the config, the context, and anything
  // else that changes an answer (an experiment's schedule).
  bool not_modified = false;
  HttpResponse response = CacheableAnswer(
      request, json{{"flags", std::move(flags)}}, &not_modified);
  Count(endpoint, not_modified ? Result::kNotModified : Result::kOk);
  return response;
}

HttpResponse OfrepHandler::Configuration(const HttpRequest& request) const {
  const Endpoint endpoint = Endpoint::kConfiguration;
  if (auto denied = Deny(request, kRoleAssign, endpoint)) return *denied;
  const json body = {
      {"name", "abexp"},
      {"capabilities",
       {{"cacheInvalidation",
         {{"polling",
           {{"enabled", true},
            {"minPollingIntervalMs",
             absl::ToInt64Milliseconds(options_.min_polling_interval)}}}}},
        {"flagEvaluation",
         {{"supportedTypes",
           {"boolean", "int", "float", "string", "object"}}}}}}};
  bool not_modified = false;
  HttpResponse response = CacheableAnswer(request, body, &not_modified);
  Count(endpoint, not_modified ? Result::kNotModified : Result::kOk);
  return response;
}

void OfrepHandler::AddRoutes(HttpRoutes* routes) const {
  (*routes)[{"POST", kFlagRoute}] = [this](const HttpRequest& request) {
    return EvaluateFlag(request);
  };
  (*routes)[{"POST", kFlagsRoute}] = [this](const HttpRequest& request) {
    return EvaluateFlags(request);
  };
  (*routes)[{"GET", kConfigurationRoute}] = [this](const HttpRequest& request) {
    return Configuration(request);
  };
}

}  // namespace abexp
