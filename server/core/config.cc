#include "server/core/config.h"

#include "absl/strings/str_cat.h"

namespace abexp {

bool FeatureValue::operator==(const FeatureValue& o) const {
  if (type != o.type) return false;
  switch (type) {
    case ValueType::kBool:
      return bool_value == o.bool_value;
    case ValueType::kNumber:
      return number_value == o.number_value;
    case ValueType::kString:
    case ValueType::kJson:
      return text == o.text;
  }
  return false;
}

const char* ValueTypeName(ValueType type) {
  switch (type) {
    case ValueType::kBool:
      return "bool";
    case ValueType::kNumber:
      return "number";
    case ValueType::kString:
      return "string";
    case ValueType::kJson:
      return "json";
  }
  return "bool";
}

std::string FormatFeatureValue(const FeatureValue& value) {
  switch (value.type) {
    case ValueType::kBool:
      return value.bool_value ? "true" : "false";
    case ValueType::kNumber:
      return absl::StrCat(value.number_value);
    case ValueType::kString:
      return absl::StrCat("\"", value.text, "\"");
    case ValueType::kJson:
      return value.text;
  }
  return "";
}

const char* ExperimentStatusName(ExperimentStatus status) {
  switch (status) {
    case ExperimentStatus::kDraft:
      return "draft";
    case ExperimentStatus::kRunning:
      return "running";
    case ExperimentStatus::kPaused:
      return "paused";
    case ExperimentStatus::kStopped:
      return "stopped";
  }
  return "draft";
}

const char* MetricTypeName(MetricType type) {
  switch (type) {
    case MetricType::kBinomial:
      return "binomial";
    case MetricType::kSum:
      return "sum";
    case MetricType::kRatio:
      return "ratio";
    case MetricType::kRetention:
      return "retention";
    case MetricType::kFunnel:
      return "funnel";
  }
  return "binomial";
}

int Experiment::VariantIndex(const std::string& variant_key) const {
  for (size_t i = 0; i < variants.size(); ++i) {
    if (variants[i].key == variant_key) return static_cast<int>(i);
  }
  return -1;
}

const Experiment* Config::FindExperiment(const std::string& key) const {
  for (const Experiment& e : experiments) {
    if (e.key == key) return &e;
  }
  return nullptr;
}

const Feature* Config::FindFeature(const std::string& key) const {
  for (const Feature& f : features) {
    if (f.key == key) return &f;
  }
  return nullptr;
}

const Metric* Config::FindMetric(const std::string& key) const {
  for (const Metric& m : metrics) {
    if (m.key == key) return &m;
  }
  return nullptr;
}

const Layer* Config::FindLayer(const std::string& key) const {
  auto it = layers.find(key);
  return it == layers.end() ? nullptr : &it->second;
}

}  // namespace abexp
