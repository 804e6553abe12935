#include "client/cli/format.h"

#include <algorithm>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/strip.h"
#include "google/protobuf/descriptor.h"
#include "google/protobuf/io/coded_stream.h"
#include "google/protobuf/io/zero_copy_stream_impl_lite.h"
#include "google/protobuf/struct.pb.h"
#include "google/protobuf/util/json_util.h"
#include "google/protobuf/util/type_resolver.h"
#include "google/protobuf/util/type_resolver_util.h"

namespace abexp::cli {
namespace {

using google::protobuf::ListValue;
using google::protobuf::Struct;
using google::protobuf::Value;

// "ASSIGNMENT_REASON_QA_OVERRIDE" -> "qa_override".
std::string ShortEnum(const std::string& name, absl::string_view prefix) {
  absl::string_view s = name;
  absl::ConsumePrefix(&s, prefix);
  return absl::AsciiStrToLower(s);
}

std::string Reason(v1::AssignmentReason r) {
  return ShortEnum(v1::AssignmentReason_Name(r), "ASSIGNMENT_REASON_");
}

std::string Status(v1::ExperimentStatus s) {
  return ShortEnum(v1::ExperimentStatus_Name(s), "EXPERIMENT_STATUS_");
}

std::string Range(const v1::BucketRange& r) {
  return absl::StrCat("[", r.start(), ", ", r.end(), ")");
}

std::string Percent(const Share& s) {
  // Never print a nonzero share as 0.00%: that would hide a failing move.
  if (!s.zero() && s.value() < 0.00005) return "<0.01%";
  return absl::StrFormat("%.2f%%", s.value() * 100);
}

std::string FeatureSource(const v1::ResolvedFeature& f) {
  switch (f.source()) {
    case v1::FEATURE_SOURCE_DEFAULT:
      return "default";
    case v1::FEATURE_SOURCE_RULE:
      return absl::StrCat("rule ", f.rule_index());
    case v1::FEATURE_SOURCE_EXPERIMENT:
      return absl::StrCat("experiment ", f.experiment_key(), "/",
                          f.variant_key());
    case v1::FEATURE_SOURCE_ROLLOUT:
      return absl::StrCat("rollout ", f.experiment_key(), "/", f.variant_key());
    default:
      return "unknown";
  }
}

void PrintHash(const v1::HashTrace& h, const std::string& indent,
               std::ostream& out) {
  Table t;
  t.AddRow({"unit", absl::StrCat(h.unit_id_type(), "=", h.unit_id())});
  t.AddRow({"salt", h.salt()});
  t.AddRow({"input (hex)", h.input_hex()});
  t.AddRow({"xxh3-64", h.hash_hex()});
  t.AddRow({"bucket", absl::StrCat(h.bucket(), " (hash mod 10000)")});
  t.Print(out, indent);
}

Value ShareValue(const Share& s) {
  // The fraction, plus the exact ratio for tools that need it.
  Value v;
  Struct* st = v.mutable_struct_value();
  (*st->mutable_fields())["fraction"] = Num(s.value());
  (*st->mutable_fields())["exact"] =
      Str(absl::StrCat(s.numerator, "/", s.denominator));
  return v;
}

}  // namespace

Value Str(absl::string_view s) {
  Value v;
  v.set_string_value(std::string(s));
  return v;
}

Value Num(double d) {
  Value v;
  v.set_number_value(d);
  return v;
}

Value Num(std::optional<double> d) {
  Value v;
  if (d) {
    v.set_number_value(*d);
  } else {
    v.set_null_value(google::protobuf::NULL_VALUE);
  }
  return v;
}

Value Bool(bool b) {
  Value v;
  v.set_bool_value(b);
  return v;
}

Value Strings(const std::vector<std::string>& items) {
  Value v;
  ListValue* list = v.mutable_list_value();
  for (const std::string& s : items) *list->add_values() = Str(s);
  return v;
}

void Table::Print(std::ostream& out, const std::string& indent) const {
  std::vector<size_t> widths;
  for (const auto& row : rows_) {
    if (widths.size() < row.size()) widths.resize(row.size(), 0);
    for (size_t i = 0; i < row.size(); ++i) {
      widths[i] = std::max(widths[i], row[i].size());
    }
  }
  for (const auto& row : rows_) {
    std::string line = indent;
    for (size_t i = 0; i < row.size(); ++i) {
      line += row[i];
      if (i + 1 < row.size()) line.append(widths[i] - row[i].size() + 2, ' ');
    }
    // Trailing spaces from empty last cells are noise.
    while (!line.empty() && line.back() == ' ') line.pop_back();
    out << line << "\n";
  }
}

std::string ToJson(const google::protobuf::Message& message) {
  // Through a deterministic binary encoding, so that map fields (and the
  // fields of a Struct) come out in sorted key order: MessageToJsonString
  // prints maps in hash order, which differs from run to run.
  std::string binary;
  {
    google::protobuf::io::StringOutputStream stream(&binary);
    google::protobuf::io::CodedOutputStream out(&stream);
    out.SetSerializationDeterministic(true);
    message.SerializeToCodedStream(&out);
  }
  constexpr char kUrlPrefix[] = "type.googleapis.com";
  static google::protobuf::util::TypeResolver* const resolver =
      google::protobuf::util::NewTypeResolverForDescriptorPool(
          kUrlPrefix, google::protobuf::DescriptorPool::generated_pool());
  google::protobuf::util::JsonPrintOptions options;
  options.add_whitespace = true;
  options.always_print_primitive_fields = true;
  options.preserve_proto_field_names = true;
  std::string json;
  const auto status = google::protobuf::util::BinaryToJsonString(
      resolver,
      absl::StrCat(kUrlPrefix, "/", message.GetDescriptor()->full_name()),
      binary, &json, options);
  if (!status.ok()) {
    // Not seen: every message printed is compiled in. Still print valid JSON.
    json.clear();
    (void)google::protobuf::util::MessageToJsonString(message, &json, options);
  }
  if (json.empty() || json.back() != '\n') json += "\n";
  return json;
}

std::string FormatValue(const v1::FeatureValue& value) {
  switch (value.kind_case()) {
    case v1::FeatureValue::kBoolValue:
      return value.bool_value() ? "true" : "false";
    case v1::FeatureValue::kNumberValue:
      return absl::StrCat(value.number_value());
    case v1::FeatureValue::kStringValue:
      return absl::StrCat("\"", value.string_value(), "\"");
    case v1::FeatureValue::kJsonValue:
      return value.json_value();
    default:
      return "<unset>";
  }
}

void PrintAssign(const v1::AssignResponse& response, std::ostream& out) {
  Table head;
  head.AddRow({"config version", response.config_version()});
  head.AddRow({"in holdout", response.in_holdout() ? "yes" : "no"});
  head.Print(out);
  out << "\n";
  if (response.assignments().empty()) {
    out << "experiments: none (the unit is in no experiment)\n";
  } else {
    Table t;
    t.AddRow({"EXPERIMENT", "VARIANT", "REASON", "LAYER", "PHASE", "UNIT"});
    for (const v1::Assignment& a : response.assignments()) {
      t.AddRow({a.experiment_key(), a.variant_key(), Reason(a.reason()),
                a.layer().empty() ? "-" : a.layer(), absl::StrCat(a.phase()),
                a.unit_id_type()});
    }
    t.Print(out);
  }
  out << "\n";
  if (response.features().empty()) {
    out << "features: none\n";
    return;
  }
  // By key, as this table always was (the response is in config order).
  std::vector<const v1::ResolvedFeature*> features;
  for (const v1::ResolvedFeature& f : response.features()) {
    features.push_back(&f);
  }
  std::sort(features.begin(), features.end(),
            [](const v1::ResolvedFeature* a, const v1::ResolvedFeature* b) {
              return a->key() < b->key();
            });
  Table t;
  t.AddRow({"FEATURE", "VALUE", "SOURCE"});
  for (const v1::ResolvedFeature* f : features) {
    t.AddRow({f->key(), FormatValue(f->value()), FeatureSource(*f)});
  }
  t.Print(out);
}

void PrintBatchAssign(const v1::BatchAssignResponse& response,
                      std::ostream& out) {
  for (int i = 0; i < response.results_size(); ++i) {
    if (i > 0) out << "\n";
    out << "unit " << i << ":\n";
    PrintAssign(response.results(i), out);
  }
}

void PrintExplain(const v1::ExplainAssignmentResponse& r, std::ostream& out) {
  Table head;
  head.AddRow({"experiment", r.experiment_key()});
  head.AddRow({"variant", r.variant_key().empty()
                              ? "none"
                              : absl::StrCat(r.variant_key(), " (",
                                             Reason(r.reason()), ")")});
  head.AddRow({"summary", r.summary()});
  head.AddRow({"config version", r.config_version()});
  head.Print(out);

  if (!r.steps().empty()) {
    out << "\nsteps:\n";
    Table t;
    for (const v1::ExplainStep& s : r.steps()) {
      t.AddRow({s.passed() ? "PASS" : "FAIL", s.check(), s.detail()});
    }
    t.Print(out, "  ");
  }
  if (!r.targeting().empty()) {
    out << "\ntargeting:\n";
    Table t;
    for (const v1::RuleTrace& rule : r.targeting()) {
      t.AddRow({rule.matched() ? "true " : "false",
                std::string(2 * rule.depth(), ' ') + rule.rule(),
                rule.actual().empty() ? "" : "(unit: " + rule.actual() + ")"});
    }
    t.Print(out, "  ");
  }
  if (r.has_holdout()) {
    const v1::HoldoutTrace& h = r.holdout();
    out << "\nholdout: " << (h.held_out() ? "held out" : "not held out")
        << " (bucket " << h.hash().bucket() << ", held out below "
        << h.threshold() << ")\n";
    PrintHash(h.hash(), "  ", out);
  }
  if (r.has_layer()) {
    const v1::LayerTrace& l = r.layer();
    out << "\nlayer " << l.layer() << ": bucket " << l.hash().bucket()
        << (l.in_range() ? " is in " : " is outside ")
        << "the experiment's range " << Range(l.experiment_range()) << "\n";
    PrintHash(l.hash(), "  ", out);
  }
  if (r.has_variant_hash()) {
    out << "\nvariant hash:\n";
    PrintHash(r.variant_hash(), "  ", out);
  }
  if (!r.variant_ranges().empty()) {
    out << "\nvariant ranges (at current traffic):\n";
    Table t;
    for (const v1::VariantRange& v : r.variant_ranges()) {
      const bool matched = v.variant_key() == r.variant_key() &&
                           r.has_matched_range() &&
                           v.range().start() == r.matched_range().start() &&
                           v.range().end() == r.matched_range().end();
      t.AddRow(
          {v.variant_key(), Range(v.range()), matched ? "<- matched" : ""});
    }
    t.Print(out, "  ");
  }
}

void PrintExperimentList(const v1::ListExperimentsResponse& response,
                         std::ostream& out) {
  if (response.experiments().empty()) {
    out << "no experiments (config version " << response.config_version()
        << ")\n";
    return;
  }
  Table t;
  t.AddRow({"KEY", "STATUS", "TRAFFIC", "LAYER", "RANGE", "VARIANTS", "OWNER"});
  for (const v1::Experiment& e : response.experiments()) {
    std::vector<std::string> variants;
    for (const v1::ExperimentVariant& v : e.variants()) {
      variants.push_back(absl::StrCat(v.key(), ":", v.weight()));
    }
    t.AddRow({e.key(), Status(e.status()),
              absl::StrFormat("%.2f%%", e.traffic_bp() / 100.0),
              e.layer().empty() ? "-" : e.layer(),
              e.layer().empty() ? "-" : Range(e.layer_range()),
              absl::StrJoin(variants, " "),
              e.owner().empty() ? "-" : e.owner()});
  }
  t.Print(out);
  out << "\n"
      << response.experiments_size()
      << (response.experiments_size() == 1 ? " experiment" : " experiments")
      << ", config version " << response.config_version() << "\n";
}

void PrintExperiment(const v1::Experiment& e, std::ostream& out) {
  Table head;
  head.AddRow({"key", e.key()});
  if (!e.description().empty()) head.AddRow({"description", e.description()});
  if (!e.owner().empty()) head.AddRow({"owner", e.owner()});
  head.AddRow({"status", Status(e.status())});
  if (!e.rollout_variant().empty()) {
    head.AddRow({"rollout variant", e.rollout_variant()});
  }
  head.AddRow({"unit", e.unit_id_type()});
  head.AddRow({"salt", e.salt()});
  head.AddRow({"phase", absl::StrCat(e.phase())});
  head.AddRow(
      {"traffic", absl::StrFormat("%.2f%% (%d bp)", e.traffic_bp() / 100.0,
                                  e.traffic_bp())});
  head.AddRow(
      {"targeting", e.targeting().empty() ? "everyone" : e.targeting()});
  if (!e.layer().empty()) {
    head.AddRow(
        {"layer", absl::StrCat(e.layer(), " ", Range(e.layer_range()))});
  }
  if (!e.start_time().empty() || !e.end_time().empty()) {
    head.AddRow(
        {"schedule",
         absl::StrCat(e.start_time().empty() ? "-" : e.start_time(), " .. ",
                      e.end_time().empty() ? "-" : e.end_time())});
  }
  if (!e.metrics().empty()) {
    head.AddRow({"metrics", absl::StrJoin(e.metrics(), ", ")});
  }
  head.AddRow({"qa overrides", absl::StrCat(e.qa_override_count())});
  head.AddRow({"config version", e.config_version()});
  head.Print(out);
  out << "\n";
  Table t;
  t.AddRow({"VARIANT", "WEIGHT", "FULL RANGE", "ACTIVE RANGE", "FEATURES"});
  for (const v1::ExperimentVariant& v : e.variants()) {
    std::vector<std::string> keys;
    for (const auto& [key, value] : v.features()) keys.push_back(key);
    std::sort(keys.begin(), keys.end());
    std::vector<std::string> features;
    for (const std::string& key : keys) {
      features.push_back(
          absl::StrCat(key, "=", FormatValue(v.features().at(key))));
    }
    t.AddRow({v.key(), v.weight(), Range(v.full_range()),
              Range(v.active_range()), absl::StrJoin(features, " ")});
  }
  t.Print(out);
}

void PrintValidate(const std::string& path, const ParseResult& result,
                   std::ostream& out) {
  for (const Diagnostic& d : result.diagnostics) out << d.ToString() << "\n";
  if (result.ok()) {
    const Config& c = *result.config;
    out << path << ": OK (" << c.experiments.size() << " experiments, "
        << c.features.size() << " features), version " << c.version << "\n";
    return;
  }
  size_t errors = 0;
  for (const Diagnostic& d : result.diagnostics) errors += d.warning ? 0 : 1;
  out << path << ": INVALID (" << errors << (errors == 1 ? " error" : " errors")
      << ")\n";
}

std::string ValidateJson(const std::string& path, const ParseResult& result) {
  Struct s;
  auto& f = *s.mutable_fields();
  f["file"] = Str(path);
  f["ok"] = Bool(result.ok());
  if (result.ok()) {
    f["version"] = Str(result.config->version);
    f["experiments"] = Num(result.config->experiments.size());
    f["features"] = Num(result.config->features.size());
  }
  Value diags;
  ListValue* list = diags.mutable_list_value();
  for (const Diagnostic& d : result.diagnostics) {
    Value v;
    auto& df = *v.mutable_struct_value()->mutable_fields();
    df["file"] = Str(d.file);
    df["line"] = Num(d.line);
    df["column"] = Num(d.column);
    df["severity"] = Str(d.warning ? "warning" : "error");
    df["message"] = Str(d.message);
    *list->add_values() = std::move(v);
  }
  f["diagnostics"] = std::move(diags);
  return ToJson(s);
}

void PrintDiff(const ConfigDiff& diff, std::ostream& out) {
  out << "config " << diff.old_version << " -> " << diff.new_version << "\n\n";
  Table t;
  for (const ExperimentDiff& e : diff.experiments) {
    // The notes say why; the verdict line at the end says what to do.
    const std::string verdict = e.breaking ? "FAIL" : "OK";
    std::string status;
    if (e.change == DiffChange::kAdded) {
      status = absl::StrCat("added, ", ExperimentStatusName(*e.new_status));
    } else if (e.change == DiffChange::kRemoved) {
      status =
          absl::StrCat("removed, was ", ExperimentStatusName(*e.old_status));
    } else if (e.old_status != e.new_status) {
      status = absl::StrCat(ExperimentStatusName(*e.old_status), " -> ",
                            ExperimentStatusName(*e.new_status));
    } else {
      status = ExperimentStatusName(*e.new_status);
    }
    std::string line = verdict;
    if (e.allocation_changed && e.moved.zero() && e.breaking) {
      line += " (variant split changed)";
    }
    if (!e.notes.empty()) {
      line += absl::StrCat(" (", absl::StrJoin(e.notes, "; "), ")");
    }
    t.AddRow(
        {e.key, status, "moved " + Percent(e.moved),
         absl::StrCat("added ", e.added.zero() ? "" : "+", Percent(e.added)),
         absl::StrCat("removed ", e.removed.zero() ? "" : "-",
                      Percent(e.removed)),
         line});
  }
  t.Print(out);
  if (!diff.features.empty()) {
    out << "\nfeature changes:\n";
    for (const FeatureDiff& f : diff.features) {
      out << "  " << f.key << " (" << DiffChangeName(f.change) << "):\n";
      for (const std::string& n : f.notes) out << "    " << n << "\n";
    }
  }
  if (!diff.notes.empty()) {
    out << "\nconfig changes:\n";
    for (const std::string& n : diff.notes) out << "  " << n << "\n";
  }
  std::vector<std::string> breaking;
  for (const ExperimentDiff& e : diff.experiments) {
    if (e.breaking) breaking.push_back(e.key);
  }
  out << "\n";
  if (breaking.empty()) {
    out << "OK: no running experiment moves assigned units\n";
  } else {
    out << "FAIL: " << absl::StrJoin(breaking, ", ")
        << (breaking.size() == 1 ? " changes" : " change")
        << " how assigned units are split between variants; keep the "
           "variant weights (only raise traffic or append variants at weight "
           "0), or bump `phase` to start a new phase\n";
  }
}

std::string DiffJson(const ConfigDiff& diff) {
  Struct s;
  auto& f = *s.mutable_fields();
  f["old_version"] = Str(diff.old_version);
  f["new_version"] = Str(diff.new_version);
  f["ok"] = Bool(diff.ok());
  Value experiments;
  for (const ExperimentDiff& e : diff.experiments) {
    Value v;
    auto& ef = *v.mutable_struct_value()->mutable_fields();
    ef["key"] = Str(e.key);
    ef["change"] = Str(DiffChangeName(e.change));
    if (e.old_status)
      ef["old_status"] = Str(ExperimentStatusName(*e.old_status));
    if (e.new_status)
      ef["new_status"] = Str(ExperimentStatusName(*e.new_status));
    if (e.old_status) ef["old_phase"] = Num(e.old_phase);
    if (e.new_status) ef["new_phase"] = Num(e.new_phase);
    ef["moved"] = ShareValue(e.moved);
    ef["allocation_changed"] = Bool(e.allocation_changed);
    ef["added"] = ShareValue(e.added);
    ef["removed"] = ShareValue(e.removed);
    ef["rehashed"] = Bool(e.rehashed);
    ef["new_phase_declared"] = Bool(e.new_phase_declared);
    ef["breaking"] = Bool(e.breaking);
    ef["notes"] = Strings(e.notes);
    *experiments.mutable_list_value()->add_values() = std::move(v);
  }
  experiments.mutable_list_value();
  f["experiments"] = std::move(experiments);
  Value features;
  features.mutable_list_value();
  for (const FeatureDiff& fd : diff.features) {
    Value v;
    auto& ff = *v.mutable_struct_value()->mutable_fields();
    ff["key"] = Str(fd.key);
    ff["change"] = Str(DiffChangeName(fd.change));
    ff["notes"] = Strings(fd.notes);
    *features.mutable_list_value()->add_values() = std::move(v);
  }
  f["features"] = std::move(features);
  f["notes"] = Strings(diff.notes);
  return ToJson(s);
}

void PrintRecordResults(
    const google::protobuf::RepeatedPtrField<v1::RecordResult>& results,
    const std::string& config_version, std::ostream& out) {
  for (const v1::RecordResult& r : results) {
    out << ShortEnum(v1::RecordOutcome_Name(r.outcome()), "RECORD_OUTCOME_");
    if (r.outcome() == v1::RECORD_OUTCOME_IGNORED) {
      out << " ("
          << ShortEnum(v1::IgnoreReason_Name(r.ignore_reason()),
                       "IGNORE_REASON_")
          << ")";
    }
    if (r.experiments_recorded() > 0) {
      out << ": counted in " << r.experiments_recorded()
          << (r.experiments_recorded() == 1 ? " experiment" : " experiments");
    }
    if (r.outcome() == v1::RECORD_OUTCOME_SPOOLED) {
      out << (r.experiments_recorded() > 0 ? "; the rest" : "")
          << " (durable in the server's spool; applied to Redis when it is "
             "back)";
    }
    out << "\n";
  }
  out << "config version " << config_version << "\n";
}

}  // namespace abexp::cli
