#include "server/ofrep/ofrep_evaluation.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "server/core/bucketing.h"
#include "server/core/config.h"
#include "server/core/error_text.h"

namespace abexp {
namespace {

using nlohmann::json;

OfrepError Error(OfrepErrorCode code, std::string details) {
  return OfrepError{code, std::move(details)};
}

// "a string", "a number", ... for messages.
const char* JsonKind(const json& value) {
  switch (value.type()) {
    case json::value_t::string:
      return "a string";
    case json::value_t::boolean:
      return "a boolean";
    case json::value_t::number_integer:
    case json::value_t::number_unsigned:
    case json::value_t::number_float:
      return "a number";
    case json::value_t::object:
      return "an object";
    case json::value_t::array:
      return "an array";
    default:
      return "null";
  }
}

// The attribute `name` = `value` as the config declares it (`declared`,
// null when it does not). Returns the error, or nullopt with *out set (or
// left empty when the value is one the core has no use for).
std::optional<OfrepError> ConvertAttribute(const std::string& name,
                                           const json& value,
                                           const AttributeType* declared,
                                           std::optional<AttributeValue>* out) {
  if (declared != nullptr) {
    bool fits = false;
    switch (*declared) {
      case AttributeType::kString:
      case AttributeType::kSemver:
        fits = value.is_string();
        break;
      case AttributeType::kNumber:
        fits = value.is_number();
        break;
      case AttributeType::kBool:
        fits = value.is_boolean();
        break;
    }
    if (!fits) {
      const char* want = *declared == AttributeType::kNumber ? "a number"
                         : *declared == AttributeType::kBool
                             ? "a boolean (true or false)"
                             : "a string";
      return Error(
          OfrepErrorCode::kInvalidContext,
          absl::StrCat(
              "context.", ClipForMessage(name), " is ", JsonKind(value),
              ", but the config declares the attribute ", ClipForMessage(name),
              " as ", AttributeTypeName(*declared), "; send it as ", want));
    }
  }
  if (value.is_string()) {
    *out = AttributeValue(value.get<std::string>());
  } else if (value.is_boolean()) {
    *out = AttributeValue(value.get<bool>());
  } else if (value.is_number()) {
    *out = AttributeValue(value.get<double>());
  }
  // Objects, arrays and null: no condition can use them.
  return std::nullopt;
}

json FeatureValueJson(const FeatureValue& value) {
  switch (value.type) {
    case ValueType::kBool:
      return value.bool_value;
    case ValueType::kNumber: {
      // Integral numbers as integers, so typed SDKs (Java's getIntegerValue)
      // take them; 2^53 bounds the integers a double holds exactly.
      const double v = value.number_value;
      if (std::floor(v) == v && std::fabs(v) <= 9007199254740992.0) {
        return static_cast<int64_t>(v);
      }
      return v;
    }
    case ValueType::kString:
      return value.text;
    case ValueType::kJson:
      // The parser checked it; a value it cannot read is sent as text.
      return json::parse(value.text, nullptr, /*allow_exceptions=*/false)
                     .is_discarded()
                 ? json(value.text)
                 : json::parse(value.text);
  }
  return nullptr;
}

const ExperimentAssignment* AssignmentOf(const AssignResult& result,
                                         const Experiment* experiment) {
  for (const ExperimentAssignment& a : result.assignments) {
    if (a.experiment == experiment) return &a;
  }
  return nullptr;
}

// Why a feature got its default: STATIC when nothing can change it,
// DISABLED when only experiments that are not serving (draft, paused) set
// it, else DEFAULT.
const char* DefaultReason(const IndexedConfig& config, const Feature& feature) {
  if (!feature.rules.empty()) return "DEFAULT";
  const int index = config.feature_by_key.at(feature.key);
  bool set_by_any = false;
  bool set_by_serving = false;
  for (size_t i = 0; i < config.experiments.size(); ++i) {
    const std::vector<int>& settable =
        config.experiment_indexes[i].settable_features;
    if (std::find(settable.begin(), settable.end(), index) == settable.end()) {
      continue;
    }
    set_by_any = true;
    const ExperimentStatus status = config.experiments[i].status;
    set_by_serving = set_by_serving || status == ExperimentStatus::kRunning ||
                     status == ExperimentStatus::kStopped;
  }
  if (!set_by_any) return "STATIC";
  return set_by_serving ? "DEFAULT" : "DISABLED";
}

}  // namespace

const char* OfrepErrorCodeName(OfrepErrorCode code) {
  switch (code) {
    case OfrepErrorCode::kParseError:
      return "PARSE_ERROR";
    case OfrepErrorCode::kTargetingKeyMissing:
      return "TARGETING_KEY_MISSING";
    case OfrepErrorCode::kInvalidContext:
      return "INVALID_CONTEXT";
    case OfrepErrorCode::kFlagNotFound:
      return "FLAG_NOT_FOUND";
    case OfrepErrorCode::kGeneral:
      return "GENERAL";
  }
  return "GENERAL";
}

int OfrepHttpStatus(OfrepErrorCode code) {
  switch (code) {
    case OfrepErrorCode::kFlagNotFound:
      return 404;
    case OfrepErrorCode::kGeneral:
      return 500;
    default:
      return 400;
  }
}

std::optional<OfrepError> ParseOfrepRequest(const IndexedConfig& config,
                                            absl::string_view body,
                                            OfrepRequest* out) {
  json request = json::object();
  if (!body.empty()) {
    request = json::parse(body.begin(), body.end(), nullptr,
                          /*allow_exceptions=*/false);
    if (request.is_discarded() || !request.is_object()) {
      return Error(OfrepErrorCode::kParseError,
                   "the request body is not a JSON object; send "
                   "{\"context\": {\"targetingKey\": \"<unit id>\", ...}}");
    }
  }
  auto context_it = request.find("context");
  if (context_it != request.end() && !context_it->is_null()) {
    if (!context_it->is_object()) {
      return Error(OfrepErrorCode::kInvalidContext,
                   absl::StrCat("context is ", JsonKind(*context_it),
                                "; send an object, {\"targetingKey\": "
                                "\"<unit id>\", ...}"));
    }
    out->context = *context_it;
  }
  const json& context = out->context;

  std::string id_type = "user_id";
  if (auto it = context.find(kUnitIdTypeField); it != context.end()) {
    if (!it->is_string() || it->get<std::string>().empty()) {
      return Error(OfrepErrorCode::kInvalidContext,
                   absl::StrCat("context.unitIdType is ", JsonKind(*it),
                                "; send the id type targetingKey is, as a "
                                "non-empty string (default \"user_id\")"));
    }
    id_type = it->get<std::string>();
  }
  auto key_it = context.find(kTargetingKeyField);
  if (key_it == context.end() || !key_it->is_string() ||
      key_it->get<std::string>().empty()) {
    return Error(
        OfrepErrorCode::kTargetingKeyMissing,
        absl::StrCat("context.targetingKey is ",
                     key_it == context.end() ? "missing" : JsonKind(*key_it),
                     "; set it to the unit id, a non-empty string (its "
                     "id type is context.unitIdType, default "
                     "\"user_id\")"));
  }
  out->unit.ids[id_type] = key_it->get<std::string>();

  if (auto it = context.find(kUnitIdsField); it != context.end()) {
    if (!it->is_object()) {
      return Error(OfrepErrorCode::kInvalidContext,
                   absl::StrCat("context.unitIds is ", JsonKind(*it),
                                "; send an object of id type -> id, e.g. "
                                "{\"device_id\": \"d-1\"}"));
    }
    for (const auto& [type, id] : it->items()) {
      if (!id.is_string()) {
        return Error(OfrepErrorCode::kInvalidContext,
                     absl::StrCat("context.unitIds.", ClipForMessage(type),
                                  " is ", JsonKind(id),
                                  "; send the id as a "
                                  "string"));
      }
      // targetingKey wins over a repeat of its own id type.
      out->unit.ids.try_emplace(type, id.get<std::string>());
    }
  }
  if (auto it = context.find(kRecordExposureField); it != context.end()) {
    if (!it->is_boolean()) {
      return Error(OfrepErrorCode::kInvalidContext,
                   absl::StrCat("context.abexpRecordExposure is ",
                                JsonKind(*it), "; send true or false"));
    }
    out->record_exposure = it->get<bool>();
  }

  for (const auto& [name, value] : context.items()) {
    if (name == kTargetingKeyField || name == kUnitIdTypeField ||
        name == kUnitIdsField || name == kRecordExposureField ||
        value.is_null()) {
      continue;
    }
    auto declared = config.attributes.find(name);
    std::optional<AttributeValue> converted;
    if (std::optional<OfrepError> e = ConvertAttribute(
            name, value,
            declared == config.attributes.end() ? nullptr : &declared->second,
            &converted);
        e.has_value()) {
      return e;
    }
    if (converted.has_value()) {
      out->unit.attributes.emplace(name, *std::move(converted));
    }
  }
  if (absl::Status s = ValidateUnit(config, out->unit, "context"); !s.ok()) {
    return Error(OfrepErrorCode::kInvalidContext, std::string(s.message()));
  }
  return std::nullopt;
}

nlohmann::json OfrepEvaluation(const IndexedConfig& config, const Unit& unit,
                               const AssignResult& result,
                               const ResolvedFeature& feature) {
  json out = json::object();
  out["key"] = feature.feature->key;
  out["value"] = FeatureValueJson(*feature.value);
  json metadata = json::object();
  metadata["configVersion"] = config.version;
  switch (feature.source) {
    case FeatureSource::kExperiment: {
      const Experiment& e = *feature.experiment;
      const ExperimentAssignment* a = AssignmentOf(result, &e);
      const bool qa =
          a != nullptr && a->reason == AssignmentReason::kQaOverride;
      out["variant"] = e.variants[feature.variant_index].key;
      out["reason"] = qa ? "TARGETING_MATCH" : "SPLIT";
      metadata["source"] = qa ? "qa_override" : "experiment";
      metadata["experimentKey"] = e.key;
      auto id = unit.ids.find(e.unit_id_type);
      if (!qa && id != unit.ids.end()) {
        metadata["bucket"] = Bucket(HashPurpose::kVariant, e.salt, id->second);
      }
      break;
    }
    case FeatureSource::kRollout:
      out["variant"] = feature.experiment->variants[feature.variant_index].key;
      out["reason"] = "STATIC";
      metadata["source"] = "rollout";
      metadata["experimentKey"] = feature.experiment->key;
      break;
    case FeatureSource::kRule:
      out["variant"] = absl::StrCat("rule", feature.rule_index);
      out["reason"] = "TARGETING_MATCH";
      metadata["source"] = "rule";
      break;
    case FeatureSource::kDefault:
      out["variant"] = "default";
      out["reason"] = DefaultReason(config, *feature.feature);
      metadata["source"] = "default";
      break;
  }
  out["metadata"] = std::move(metadata);
  return out;
}

nlohmann::json OfrepErrorJson(const std::string* key, const OfrepError& error) {
  json out = json::object();
  if (key != nullptr) out["key"] = *key;
  out["errorCode"] = OfrepErrorCodeName(error.code);
  out["errorDetails"] = error.details;
  return out;
}

}  // namespace abexp
