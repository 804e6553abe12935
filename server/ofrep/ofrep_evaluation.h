// The OpenFeature remote evaluation protocol (OFREP, open-feature/protocol,
// service/openapi.yaml, version 0.1.0) mapped onto abexp's core: an
// evaluation request's context -> a Unit, and a resolved feature -> an
// OFREP evaluation (value, reason, variant, metadata). No HTTP here
// (ofrep_handler.h serves it); the assignment itself is the core's Assign,
// so a flag's value is the feature value gRPC Assign gives the same unit.
//
// The evaluation context (docs/openfeature.md):
//   targetingKey         the unit id; required (TARGETING_KEY_MISSING);
//   unitIdType           the id type targetingKey is. Default: "user_id";
//   unitIds              more ids, {"device_id": "d-1", ...};
//   abexpRecordExposure  true: record the exposures of the experiments that
//                        decided the answer, as Assign with record_exposure;
//   anything else        an attribute, typed as the config declares it (a
//                        value of another type is INVALID_CONTEXT naming
//                        the attribute); null values are left out.
//
// Thread-safe: pure functions.
#ifndef ABEXP_SERVER_OFREP_OFREP_EVALUATION_H_
#define ABEXP_SERVER_OFREP_OFREP_EVALUATION_H_

#include <nlohmann/json.hpp>
#include <optional>
#include <string>

#include "absl/strings/string_view.h"
#include "server/core/assigner.h"
#include "server/core/indexed_config.h"

namespace abexp {

// The reserved context fields.
inline constexpr absl::string_view kTargetingKeyField = "targetingKey";
inline constexpr absl::string_view kUnitIdTypeField = "unitIdType";
inline constexpr absl::string_view kUnitIdsField = "unitIds";
inline constexpr absl::string_view kRecordExposureField = "abexpRecordExposure";

// OFREP's error codes (evaluationFailure, flagNotFound).
enum class OfrepErrorCode {
  kParseError,
  kTargetingKeyMissing,
  kInvalidContext,
  kFlagNotFound,
  kGeneral,
};
// "PARSE_ERROR", "TARGETING_KEY_MISSING", ...
const char* OfrepErrorCodeName(OfrepErrorCode code);
// The HTTP status OFREP gives the code: 404 for FLAG_NOT_FOUND, 500 for
// GENERAL, else 400.
int OfrepHttpStatus(OfrepErrorCode code);

struct OfrepError {
  OfrepErrorCode code = OfrepErrorCode::kGeneral;
  std::string details;  // what is wrong and how to fix it
};

// An evaluation request, parsed.
struct OfrepRequest {
  Unit unit;
  bool record_exposure = false;
  // The context as sent, for the bulk answer's ETag (nlohmann's objects
  // keep keys sorted, so equal contexts dump equal).
  nlohmann::json context = nlohmann::json::object();
};

// Parses an evaluationRequest body ({"context": {...}}; an empty body is an
// empty context) into *out. Returns nullopt, or the error: PARSE_ERROR when
// the body is not JSON or not an object; TARGETING_KEY_MISSING without a
// non-empty string targetingKey; INVALID_CONTEXT for a reserved field of
// the wrong type, an attribute whose type differs from the config's
// declaration, and a unit that breaks ValidateUnit's limits.
std::optional<OfrepError> ParseOfrepRequest(const IndexedConfig& config,
                                            absl::string_view body,
                                            OfrepRequest* out);

// The evaluationSuccess object for `feature`, resolved by Assign for
// `unit`: key, value (the feature value as JSON: json features as their
// JSON), variant (the experiment's variant key, "rule<N>" for a feature
// rule, "default"), reason and metadata (configVersion, source, and for a
// feature an experiment decided: experimentKey, and the unit's variant
// bucket when it was bucketed). Reasons: SPLIT (bucketed into a variant of
// a running experiment), TARGETING_MATCH (a QA override, or a feature rule
// matched), STATIC (a stopped experiment's rollout variant, or the default
// of a feature nothing can change), DISABLED (the default of a feature
// whose experiments are all draft or paused, with no rules), DEFAULT (any
// other default).
// REQUIRES: `result` was computed from `config` and holds `feature`.
nlohmann::json OfrepEvaluation(const IndexedConfig& config, const Unit& unit,
                               const AssignResult& result,
                               const ResolvedFeature& feature);

// {"key", "errorCode", "errorDetails"}; no key when `key` is null (bulk).
nlohmann::json OfrepErrorJson(const std::string* key, const OfrepError& error);

}  // namespace abexp

#endif  // ABEXP_SERVER_OFREP_OFREP_EVALUATION_H_
