#include "server/service/assign_response.h"

#include <cstdint>
#include <utility>

namespace abexp {
namespace {

// AssignmentReason values, for the index of a piece.
constexpr int kNumReasons =
    static_cast<int>(AssignmentReason::kStickyUnread) + 1;

// AssignResponse's field numbers, as assignment.proto gives them.
constexpr uint32_t kConfigVersionField = 1;
constexpr uint32_t kInHoldoutField = 2;
constexpr uint32_t kAssignmentsField = 3;
constexpr uint32_t kExposureErrorField = 5;
constexpr uint32_t kFeaturesField = 6;

void AppendVarint(uint64_t value, std::string* out) {
  while (value >= 0x80) {
    out->push_back(static_cast<char>((value & 0x7f) | 0x80));
    value >>= 7;
  }
  out->push_back(static_cast<char>(value));
}

// A length-delimited field (wire type 2): tag, length, bytes.
void AppendBytesField(uint32_t field, absl::string_view bytes,
                      std::string* out) {
  AppendVarint((field << 3) | 2, out);
  AppendVarint(bytes.size(), out);
  out->append(bytes.data(), bytes.size());
}

// `message` as a field of its parent.
std::string MessageField(uint32_t field,
                         const google::protobuf::MessageLite& message) {
  std::string out;
  AppendBytesField(field, message.SerializeAsString(), &out);
  return out;
}

std::string FeatureField(const ResolvedFeature& feature) {
  v1::ResolvedFeature proto;
  ResolvedFeatureToProto(feature, &proto);
  return MessageField(kFeaturesField, proto);
}

}  // namespace

void FeatureValueToProto(const FeatureValue& value, v1::FeatureValue* proto) {
  switch (value.type) {
    case ValueType::kBool:
      proto->set_bool_value(value.bool_value);
      break;
    case ValueType::kNumber:
      proto->set_number_value(value.number_value);
      break;
    case ValueType::kString:
      proto->set_string_value(value.text);
      break;
    case ValueType::kJson:
      proto->set_json_value(value.text);
      break;
  }
}

v1::AssignmentReason ReasonToProto(AssignmentReason reason) {
  switch (reason) {
    case AssignmentReason::kBucketed:
      return v1::ASSIGNMENT_REASON_BUCKETED;
    case AssignmentReason::kQaOverride:
      return v1::ASSIGNMENT_REASON_QA_OVERRIDE;
    case AssignmentReason::kRollout:
      return v1::ASSIGNMENT_REASON_ROLLOUT;
    case AssignmentReason::kSticky:
      return v1::ASSIGNMENT_REASON_STICKY;
    case AssignmentReason::kStickyUnread:
      return v1::ASSIGNMENT_REASON_STICKY_UNREAD;
  }
  return v1::ASSIGNMENT_REASON_UNSPECIFIED;
}

v1::FeatureSource SourceToProto(FeatureSource source) {
  switch (source) {
    case FeatureSource::kDefault:
      return v1::FEATURE_SOURCE_DEFAULT;
    case FeatureSource::kRule:
      return v1::FEATURE_SOURCE_RULE;
    case FeatureSource::kExperiment:
      return v1::FEATURE_SOURCE_EXPERIMENT;
    case FeatureSource::kRollout:
      return v1::FEATURE_SOURCE_ROLLOUT;
  }
  return v1::FEATURE_SOURCE_UNSPECIFIED;
}

void AssignmentToProto(const ExperimentAssignment& assignment,
                       v1::Assignment* proto) {
  const Experiment& e = *assignment.experiment;
  proto->set_experiment_key(e.key);
  proto->set_variant_key(e.variants[assignment.variant_index].key);
  proto->set_reason(ReasonToProto(assignment.reason));
  proto->set_layer(e.layer);
  proto->set_phase(e.phase);
  proto->set_unit_id_type(e.unit_id_type);
}

void ResolvedFeatureToProto(const ResolvedFeature& f,
                            v1::ResolvedFeature* proto) {
  proto->set_key(f.feature->key);
  FeatureValueToProto(*f.value, proto->mutable_value());
  proto->set_source(SourceToProto(f.source));
  if (f.experiment != nullptr) {
    proto->set_experiment_key(f.experiment->key);
    if (f.variant_index >= 0) {
      proto->set_variant_key(f.experiment->variants[f.variant_index].key);
    }
  }
  if (f.source == FeatureSource::kRule) proto->set_rule_index(f.rule_index);
}

void AssignResultToProto(const Config& config, const AssignResult& result,
                         v1::AssignResponse* proto) {
  proto->set_config_version(config.version);
  proto->set_in_holdout(result.in_holdout);
  proto->mutable_assignments()->Reserve(
      static_cast<int>(result.assignments.size()));
  for (const ExperimentAssignment& a : result.assignments) {
    AssignmentToProto(a, proto->add_assignments());
  }
  proto->mutable_features()->Reserve(static_cast<int>(result.features.size()));
  for (const ResolvedFeature& f : result.features) {
    ResolvedFeatureToProto(f, proto->add_features());
  }
}

AssignResponseEncoder::AssignResponseEncoder(const Config& config)
    : config_(config) {
  if (!config.version.empty()) {
    AppendBytesField(kConfigVersionField, config.version, &version_);
  }
  assignments_.resize(config.experiments.size());
  for (size_t i = 0; i < config.experiments.size(); ++i) {
    const Experiment& e = config.experiments[i];
    for (size_t v = 0; v < e.variants.size(); ++v) {
      for (int r = 0; r < kNumReasons; ++r) {
        v1::Assignment proto;
        AssignmentToProto(
            ExperimentAssignment{&e, static_cast<int>(v),
                                 static_cast<AssignmentReason>(r)},
            &proto);
        assignments_[i].push_back(MessageField(kAssignmentsField, proto));
      }
    }
  }
  features_.resize(config.features.size());
  for (size_t f = 0; f < config.features.size(); ++f) {
    const Feature& feature = config.features[f];
    FeaturePieces& pieces = features_[f];
    pieces.by_default =
        FeatureField(ResolvedFeature{&feature, &feature.default_value,
                                     FeatureSource::kDefault, nullptr, -1, -1});
    for (size_t r = 0; r < feature.rules.size(); ++r) {
      pieces.by_rule.push_back(FeatureField(ResolvedFeature{
          &feature, &feature.rules[r].value, FeatureSource::kRule, nullptr, -1,
          static_cast<int>(r)}));
    }
  }
  // What the assigner serves for a feature an assigned variant sets.
  for (const Experiment& e : config.experiments) {
    for (size_t v = 0; v < e.variants.size(); ++v) {
      for (const auto& [key, value] : e.variants[v].features) {
        const Feature* feature = config.FindFeature(key);
        if (feature == nullptr) continue;
        const size_t f = static_cast<size_t>(feature - config.features.data());
        for (FeatureSource source :
             {FeatureSource::kExperiment, FeatureSource::kRollout}) {
          VariantPiece piece;
          piece.experiment = &e;
          piece.variant_index = static_cast<int>(v);
          piece.source = source;
          piece.value = &value;
          piece.bytes = FeatureField(ResolvedFeature{
              feature, &value, source, &e, static_cast<int>(v), -1});
          features_[f].by_variant.push_back(std::move(piece));
        }
      }
    }
  }
}

const std::string* AssignResponseEncoder::PieceFor(
    const ResolvedFeature& f) const {
  const Feature* const first = config_.features.data();
  if (f.feature < first || f.feature >= first + config_.features.size()) {
    return nullptr;
  }
  const FeaturePieces& pieces =
      features_[static_cast<size_t>(f.feature - first)];
  switch (f.source) {
    case FeatureSource::kDefault:
      if (f.value == &f.feature->default_value && f.experiment == nullptr) {
        return &pieces.by_default;
      }
      return nullptr;
    case FeatureSource::kRule:
      if (f.rule_index >= 0 &&
          static_cast<size_t>(f.rule_index) < pieces.by_rule.size() &&
          f.value == &f.feature->rules[f.rule_index].value &&
          f.experiment == nullptr) {
        return &pieces.by_rule[f.rule_index];
      }
      return nullptr;
    case FeatureSource::kExperiment:
    case FeatureSource::kRollout:
      for (const VariantPiece& piece : pieces.by_variant) {
        if (piece.experiment == f.experiment &&
            piece.variant_index == f.variant_index &&
            piece.source == f.source && piece.value == f.value) {
          return &piece.bytes;
        }
      }
      return nullptr;
  }
  return nullptr;
}

void AssignResponseEncoder::Encode(const AssignResult& result,
                                   absl::string_view exposure_error,
                                   std::string* out) const {
  // Fields in field-number order, as protobuf writes them.
  out->append(version_);
  if (result.in_holdout) {
    AppendVarint(kInHoldoutField << 3, out);
    out->push_back(1);
  }
  const Experiment* const first = config_.experiments.data();
  for (const ExperimentAssignment& a : result.assignments) {
    const size_t i = static_cast<size_t>(a.experiment - first);
    out->append(
        assignments_[i][static_cast<size_t>(a.variant_index) * kNumReasons +
                        static_cast<size_t>(a.reason)]);
  }
  if (!exposure_error.empty()) {
    AppendBytesField(kExposureErrorField, exposure_error, out);
  }
  for (const ResolvedFeature& f : result.features) {
    if (const std::string* piece = PieceFor(f)) {
      out->append(*piece);
    } else {
      unforeseen_.fetch_add(1, std::memory_order_relaxed);
      out->append(FeatureField(f));
    }
  }
}

}  // namespace abexp
