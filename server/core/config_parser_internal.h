// Internals of the config parser (config_parser.h), shared by its source
// files: config_parser.cc (the entry points and Parser::Run), parse_yaml.cc
// (walking the YAML), parse_values.cc (scalars: keys, numbers, durations,
// times, feature values), parse_conditions.cc (attributes, segments,
// conditions), parse_metrics.cc, parse_features.cc, parse_experiments.cc
// (layers, holdout, experiments, variants) and parse_checks.cc (checks
// across experiments once all are read).
//
// NOT part of the public API: include config_parser.h instead. Nothing here
// is stable, and nothing outside those files may include it.
//
// Thread safety: a Parser is used by one thread, once; the free functions
// share no state.
#ifndef ABEXP_SERVER_CORE_CONFIG_PARSER_INTERNAL_H_
#define ABEXP_SERVER_CORE_CONFIG_PARSER_INTERNAL_H_

#include <yaml-cpp/yaml.h>

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "re2/re2.h"
#include "server/core/config.h"
#include "server/core/config_parser.h"

namespace abexp {
namespace config_parser_internal {

// ---- Limits.

inline constexpr size_t kMaxKeyBytes = 64;
// Deeper conditions are almost certainly a mistake, and bound the recursion.
inline constexpr int kMaxConditionDepth = 32;
// How many segment references a chain may hold (s1 uses s2 uses s3 ...).
// With kMaxConditionDepth this bounds the recursion of parsing and of every
// evaluation through segments.
inline constexpr size_t kMaxSegmentNesting = 16;
// Bounds the work of evaluating one condition, with its segments expanded
// (a segment used twice counts twice: nested segments can multiply).
inline constexpr uint64_t kMaxExpandedConditionNodes = 10000;
// Caps work on alias-heavy YAML ("billion laughs").
inline constexpr size_t kMaxYamlNodes = 1000000;
// Bounds every recursion over the YAML tree (and so stops at an alias that
// contains itself). A condition nested kMaxConditionDepth levels with
// all: [...] takes 2 YAML levels per level, plus the sections around it.
inline constexpr size_t kMaxYamlDepth = 128;
// Experiment start and end times; years past 9999 do not print as RFC 3339.
inline constexpr int kMinYear = 2000;
inline constexpr int kMaxYear = 9999;
inline constexpr size_t kMaxJsonBytes = 1 << 20;
// Where the scaled weight sum stops growing while it is added up, so that it
// cannot wrap around (ComputeVariantRanges is exact below it).
inline constexpr uint64_t kMaxWeightSum = uint64_t{1} << 50;
// An experiment's weights as written must add up to less than this,
// 11,258,999, as docs/bucketing.md section 4 and docs/config.md state: the
// scaled sum then stays below 2^50 / 10000, so the largest product of the
// bucket ranges, 10000 times it, stays below 2^50, exact even in a double.
inline constexpr uint64_t kMaxWrittenWeightSum =
    kMaxWeightSum / kWeightScale / kWeightScale;
// Metric windows are at most a year; longer ones are almost surely a typo.
inline constexpr absl::Duration kMaxMetricWindow = absl::Hours(24 * 365);
inline constexpr int kMaxRetentionDay = 90;

// ---- Scalars and text (parse_yaml.cc unless noted).

// True for a scalar written without quotes (so `true` and `5` are typed),
// or with a core schema tag for a typed scalar (!!int 5).
bool IsPlain(const YAML::Node& n);
bool IsQuoted(const YAML::Node& n);
// A plain true/false (True, TRUE, ...), else nullopt.
std::optional<bool> PlainBool(const YAML::Node& n);
// A plain finite decimal number, else nullopt.
std::optional<double> PlainNumber(const YAML::Node& n);
// "a map", "a list", "a scalar", "empty" or "undefined", for messages.
const char* NodeKindName(const YAML::Node& n);
// Renders a scalar for messages: 'text'.
std::string Quote(const std::string& s);
// The candidate nearest to `name` within 2 edits, or "" (for "did you
// mean" hints).
std::string Closest(const std::string& name,
                    const std::vector<std::string>& candidates);
// The byte offset of the first byte of `text` that is not part of valid
// UTF-8 (no overlong forms, surrogates or code points past U+10FFFF), or
// npos.
size_t FirstInvalidUtf8(absl::string_view text);
// Appends `s` as a JSON string, quotes included.
void AppendJsonString(absl::string_view s, std::string* out);
// Appends compact JSON for any YAML node. Returns false when the output
// would exceed kMaxJsonBytes.
bool AppendJson(const YAML::Node& n, std::string* out);
// Renders an operand for Condition::text; quotes strings that would
// otherwise read ambiguously.
std::string OperandText(const YAML::Node& n);
// YAML-ish decimal numbers, for number values.
const RE2& NumberPattern();

template <size_t N>
std::string JoinNames(const char* const (&names)[N]) {
  return absl::StrJoin(names, names + N, ", ");
}

// ---- Reading maps.

// One field of a YAML map, as written.
struct Entry {
  std::string key;
  YAML::Node key_node;
  YAML::Node value;
};
// A map's known fields by name (see Parser::Fields).
using FieldMap = std::map<std::string, Entry>;

class Parser;

// How to read one field of a kind of YAML map (an experiment, a variant, a
// metric, ...). Each kind has a table of these, in the order its message
// "allowed fields are ..." names them; Parser::Fields checks the names in a
// map against the table, and Parser::ReadFields reads the fields with it.
// `Draft` is what the table fills in, with a `what` member naming it for
// messages (such as "experiment 'x'").
template <typename Draft>
struct FieldRule {
  const char* name;
  // Reads the field when it is present; null for a field that is read
  // elsewhere (it is listed to be allowed).
  void (*read)(Parser& p, const Entry& e, Draft& d);
  // For a required field, the fix that follows "missing required field
  // 'name'; " when it is absent. Null for an optional field.
  const char* missing_fix = nullptr;
  // Runs when an optional field is absent, for the few whose absence
  // matters (such as primary_metric when metrics are listed).
  void (*absent)(Parser& p, Draft& d) = nullptr;
  // Read after the fields without it, for a field that checks against a
  // later one (such as rollout_variant against the variants). The order in
  // which fields are read is the order of their diagnostics at one position.
  bool late = false;
};

// The names of a table's fields, as "a, b, c".
template <typename Draft, size_t N>
std::string JoinFieldNames(const FieldRule<Draft> (&rules)[N]) {
  std::vector<const char*> names;
  for (const FieldRule<Draft>& rule : rules) names.push_back(rule.name);
  return absl::StrJoin(names, ", ");
}

// The state of a named segment while segments are resolved on demand.
struct SegmentState {
  YAML::Node key_node;
  YAML::Node node;
  enum { kUnvisited, kInProgress, kDone } state = kUnvisited;
  std::shared_ptr<const Condition> condition;
  // The longest chain of segment references in its definition.
  size_t chain = 0;
};

// Reads one config text into a Config, collecting diagnostics. The section
// readers report every problem they find and go on, so that one run lists
// them all; a section that refers to another (an experiment's metrics, a
// rule's condition's attributes) is read after it.
class Parser {
 public:
  Parser(absl::string_view text, absl::string_view file_name)
      : text_(text), file_(file_name) {}

  // REQUIRES: called once.
  ParseResult Run();

  // The rest of the public interface is for the parser's own files: the
  // section readers and the field tables (FieldRule) in parse_*.cc use it
  // while Run reads a config.

  // ---- Diagnostics (config_parser.cc).
  void Report(const YAML::Mark& mark, std::string message, bool warning);
  void Error(const YAML::Node& at, std::string message) {
    Report(at.Mark(), std::move(message), false);
  }
  void Error(const Entry& at, std::string message) {
    Report(Pos(at), std::move(message), false);
  }
  void Warning(const YAML::Node& at, std::string message) {
    Report(at.Mark(), std::move(message), true);
  }
  // An empty value has no useful position of its own: point at its key.
  static YAML::Mark Pos(const Entry& e) {
    return e.value.IsNull() || !e.value.IsDefined() ? e.key_node.Mark()
                                                    : e.value.Mark();
  }

  // ---- Generic YAML helpers (parse_yaml.cc).
  bool CheckYamlNodes(const YAML::Node& n, std::vector<YAML::Node>* path);
  void CheckTag(const YAML::Node& n);
  // The entries of a map with scalar keys, the first of each key only.
  std::vector<Entry> Entries(const YAML::Node& map);
  // The entries whose keys are in `allowed`; reports the others, with a
  // hint when one is near an allowed name.
  FieldMap Fields(const YAML::Node& map, const std::string& what,
                  const char* const* allowed, size_t num_allowed);
  template <size_t N>
  FieldMap Fields(const YAML::Node& map, const std::string& what,
                  const char* const (&allowed)[N]) {
    return Fields(map, what, allowed, N);
  }
  template <typename Draft, size_t N>
  FieldMap Fields(const YAML::Node& map, const std::string& what,
                  const FieldRule<Draft> (&rules)[N]) {
    const char* names[N];
    for (size_t i = 0; i < N; ++i) names[i] = rules[i].name;
    return Fields(map, what, names, N);
  }
  // Reads `fields` with `rules`: in table order, first the rules without
  // `late`, then those with it. A required field that is absent is
  // reported at `missing_at`.
  template <typename Draft, size_t N>
  void ReadFields(const FieldRule<Draft> (&rules)[N], const FieldMap& fields,
                  const YAML::Node& missing_at, Draft& draft) {
    for (const bool late : {false, true}) {
      for (const FieldRule<Draft>& rule : rules) {
        if (rule.late != late) continue;
        auto it = fields.find(rule.name);
        if (it != fields.end()) {
          if (rule.read != nullptr) rule.read(*this, it->second, draft);
        } else if (rule.missing_fix != nullptr) {
          Error(missing_at,
                absl::StrCat(draft.what, ": missing required field '",
                             rule.name, "'; ", rule.missing_fix));
        } else if (rule.absent != nullptr) {
          rule.absent(*this, draft);
        }
      }
    }
  }
  // "experiment 'x'" when the map has a scalar key field, else `fallback`.
  std::string NameFor(const char* kind, const YAML::Node& map,
                      const std::string& fallback);
  bool ExpectMap(const YAML::Node& n, const YAML::Mark& mark,
                 const std::string& what, const char* example);
  bool ExpectList(const Entry& e, const std::string& what);

  // ---- Scalars (parse_values.cc). Each reports a problem and returns
  // nullopt (or false).
  std::optional<std::string> GetString(const Entry& e, const std::string& what);
  std::optional<std::string> GetKey(const Entry& e, const std::string& what);
  bool QuotedNumber(const Entry& e, const std::string& what);
  std::optional<uint32_t> GetFraction(const Entry& e, const std::string& what);
  std::optional<uint64_t> GetWeight(const Entry& e, const std::string& what);
  std::optional<absl::Time> GetTime(const Entry& e, const std::string& what);
  std::optional<FeatureValue> GetValue(const Entry& e, ValueType type,
                                       const std::string& what);
  bool CheckKeyFormat(const YAML::Node& at, const std::string& key,
                      const std::string& what);
  std::optional<bool> GetBool(const Entry& e, const std::string& what);
  std::optional<std::string> GetEventName(const Entry& e,
                                          const std::string& what);
  std::optional<EventAggregation> GetAggregation(const Entry& e,
                                                 const std::string& what);
  std::optional<absl::Duration> GetWindow(const Entry& e,
                                          const std::string& what);
  // The value that the scalar `e` names in `names`; else reports "<what>
  // <the value> is not valid; <fix>".
  template <typename T, size_t N>
  std::optional<T> GetNamed(const Entry& e,
                            const std::pair<const char*, T> (&names)[N],
                            const std::string& what, const char* fix) {
    if (e.value.IsScalar()) {
      for (const auto& [name, value] : names) {
        if (e.value.Scalar() == name) return value;
      }
    }
    Error(e, absl::StrCat(what, " ",
                          e.value.IsScalar() ? Quote(e.value.Scalar())
                                             : NodeKindName(e.value),
                          " is not valid; ", fix));
    return std::nullopt;
  }
  // The key of a metric or feature (`kind`) at `line`: sets *key and
  // renames *what to "<kind> '<key>'". False, after reporting, when the key
  // is not usable or a key before it (in *first_line) is the same.
  bool GetItemKey(const Entry& e, const char* kind, int line,
                  std::map<std::string, int>* first_line, std::string* what,
                  std::string* key);

  // ---- Attributes, segments and conditions (parse_conditions.cc).
  void ParseAttributes(const Entry& section);
  void ParseSegments(const Entry& section);
  void ResolveSegment(const std::string& name);
  // Parses a whole condition (targeting, a rule's when, a segment's
  // definition); null after reporting errors. `what` names the owner for
  // messages, e.g. "experiment 'x' targeting".
  std::shared_ptr<const Condition> ParseRootCondition(const YAML::Node& n,
                                                      const YAML::Mark& mark,
                                                      const std::string& what);
  // The number of nodes evaluating `c` can visit, its segments expanded;
  // saturates just above kMaxExpandedConditionNodes.
  uint64_t ExpandedSize(const Condition& c);
  // A part of a condition, `depth` levels down.
  std::shared_ptr<const Condition> ParseCondition(const YAML::Node& n,
                                                  const YAML::Mark& mark,
                                                  const std::string& what,
                                                  int depth);
  // The one form (all, any, not, segment, attribute) of the condition map
  // `n`, or "" after reporting none or several.
  std::string ConditionForm(const YAML::Node& n, const YAML::Mark& mark,
                            const std::string& what);
  std::shared_ptr<const Condition> ParseSegmentReference(
      const Entry& e, const std::string& what);
  // all: [...] or any: [...].
  std::shared_ptr<const Condition> ParseConditionList(const Entry& e,
                                                      const std::string& form,
                                                      const std::string& what,
                                                      int depth);
  std::shared_ptr<const Condition> ParseComparison(const YAML::Node& n,
                                                   const FieldMap& fields,
                                                   const std::string& what);
  // Sets c->regex or c->operands from the operator's value, and returns
  // the operand as Condition::text shows it; nullopt after reporting.
  std::optional<std::string> ParseComparisonOperands(
      const Entry& op_entry, const std::string& attribute,
      const std::string& ctx, Condition* c);
  std::optional<Operand> ParseOperand(const YAML::Node& n,
                                      const YAML::Mark& mark,
                                      AttributeType type,
                                      const std::string& attribute,
                                      CompareOp op, const std::string& what);

  // ---- Metrics (parse_metrics.cc).
  void ParseMetrics(const Entry& section);
  // Reads the metric map `n`; false when it cannot be kept.
  bool ParseMetric(const YAML::Node& n, int index,
                   std::map<std::string, int>* first_line, Metric* metric);
  // Fills *metric's type-specific fields; `n` is the metric's map.
  void ParseMetricBody(const YAML::Node& n, const FieldMap& f, MetricType type,
                       const std::string& what, Metric* metric);
  void ParseRatioSources(const YAML::Node& n, const FieldMap& f,
                         const std::string& what, Metric* metric);
  void ParseEventSource(const YAML::Node& n, const FieldMap& f, MetricType type,
                        const std::string& what, Metric* metric);
  // A funnel's steps: event names, or {event, window} maps.
  void ParseFunnelSteps(const YAML::Node& n, const FieldMap& f,
                        const std::string& what, Metric* metric);
  void ParseCovariate(const Entry& e, MetricType type, const std::string& what,
                      Metric* metric);
  void ParseRetentionDay(const YAML::Node& n, const FieldMap& f,
                         const std::string& what, Metric* metric);
  // Reports `field` when present: it does not apply to a metric of `type`.
  void FieldNotForType(const FieldMap& f, const char* field, MetricType type,
                       const std::string& what, const char* fix);
  // A ratio's numerator or denominator: {event, aggregate}.
  std::optional<MetricSource> ParseMetricSource(const Entry& e,
                                                const std::string& what);
  const Metric* DefinedMetric(const std::string& key) const;

  // ---- Features (parse_features.cc).
  void ParseFeatures(const Entry& section);
  // Reads the feature map `n`; false when it cannot be kept.
  bool ParseFeature(const YAML::Node& n, int index,
                    std::map<std::string, int>* first_line, Feature* feature);
  void ParseRules(const Entry& rules, const std::optional<ValueType>& type,
                  const std::string& what, Feature* feature);

  // ---- Layers, holdout and experiments (parse_experiments.cc).
  void ParseLayers(const Entry& section);
  void ParseHoldout(const Entry& section);
  void ParseExperiments(const Entry& section);
  // *layer_range receives the layer_range node when it was valid. False
  // when the experiment has no usable key (it is still checked).
  bool ParseExperiment(const YAML::Node& n, int index, Experiment* e,
                       YAML::Node* layer_range);
  void ParseExperimentPhase(const Entry& p, const std::string& what,
                            Experiment* e);
  void ParseExperimentLayer(const FieldMap& f, const std::string& what,
                            Experiment* e);
  void ParseLayerRange(const FieldMap& f, const std::string& what,
                       Experiment* e, YAML::Node* layer_range);
  // Fills e->variants; *variant_lines gets each variant key's line.
  void ParseVariants(const Entry& vs, const std::string& what, Experiment* e,
                     std::map<std::string, int>* variant_lines);
  // Reads the variant map `n` (named `vwhat`, in experiment `what`) into
  // *v; false when its weight is missing or unusable.
  bool ParseVariant(const YAML::Node& n, const std::string& vwhat,
                    const std::string& what,
                    std::map<std::string, int>* variant_lines, Variant* v);
  void ParseVariantFeatures(const Entry& fs, const std::string& vwhat,
                            Variant* v);
  void SetVariantRanges(const Entry& vs, const std::string& what,
                        Experiment* e);
  void ParseRolloutVariant(const Entry& rv, const std::string& what,
                           const std::map<std::string, int>& variant_lines,
                           Experiment* e);
  void ParseQaOverrides(const Entry& qa, const std::string& what,
                        const std::map<std::string, int>& variant_lines,
                        Experiment* e);
  void ParseExperimentMetrics(const Entry& m, const std::string& what,
                              Experiment* e);
  void ParsePrimaryMetric(const Entry& pm, const std::string& what,
                          Experiment* e);
  // `dimensions:`: attribute names, or {attribute, max_values} maps.
  void ParseDimensions(const Entry& ds, const std::string& what, Experiment* e);
  // One dimension's attribute: declared as string or bool; false after
  // reporting why not.
  bool CheckDimensionAttribute(const YAML::Node& at, const std::string& name,
                               const std::string& what);
  // The first listed metric of e that can be primary, for hints.
  std::string PrimaryMetricHint(const Experiment& e) const;

  // ---- Checks across experiments (parse_checks.cc).
  void CheckExperiments();
  void CheckLayerOverlaps();
  void CheckSharedFeatures();

 private:
  // ---- The document (config_parser.cc).
  // Refuses text that is too large, not UTF-8 or not YAML; nullopt after
  // reporting why.
  std::optional<YAML::Node> Load();
  // Checks the YAML, then reads the sections in the order they depend on
  // each other.
  void ParseDocument(const YAML::Node& root);
  // Orders diagnostics by position and drops repeats.
  void SortDiagnostics();

  absl::string_view text_;
  std::string file_;
  std::vector<Diagnostic> diags_;
  int errors_ = 0;
  size_t nodes_seen_ = 0;
  std::unique_ptr<Config> config_ = std::make_unique<Config>();
  std::map<std::string, SegmentState> segments_;
  std::vector<std::string> segment_stack_;  // segments being resolved
  std::map<const Condition*, uint64_t>
      expanded_sizes_;  // memo for ExpandedSize
  // Features dropped for a bad key: references to them are not re-reported.
  std::set<std::string> broken_features_;
  // Metrics dropped for a bad key, likewise.
  std::set<std::string> broken_metrics_;
  // Parallel to config_->experiments: the YAML of each, for positions.
  std::vector<YAML::Node> experiment_nodes_;
  std::vector<YAML::Node> layer_range_nodes_;
};

}  // namespace config_parser_internal
}  // namespace abexp

#endif  // ABEXP_SERVER_CORE_CONFIG_PARSER_INTERNAL_H_
