#include "server/core/config_parser.h"

#include <sys/stat.h>
#include <xxhash.h>
#include <yaml-cpp/depthguard.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <functional>
#include <initializer_list>
#include <map>
#include <set>
#include <tuple>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/strip.h"
#include "absl/time/time.h"
#include "re2/re2.h"

namespace abexp {
namespace {

constexpr size_t kMaxKeyBytes = 64;
// Deeper conditions are almost certainly a mistake, and bound the recursion.
constexpr int kMaxConditionDepth = 32;
// How many segment references a chain may hold (s1 uses s2 uses s3 ...).
// With kMaxConditionDepth this bounds the recursion of parsing and of every
// evaluation through segments.
constexpr size_t kMaxSegmentNesting = 16;
// Bounds the work of evaluating one condition, with its segments expanded
// (a segment used twice counts twice: nested segments can multiply).
constexpr uint64_t kMaxExpandedConditionNodes = 10000;
// Caps work on alias-heavy YAML ("billion laughs").
constexpr size_t kMaxYamlNodes = 1000000;
// Bounds every recursion over the YAML tree (and so stops at an alias that
// contains itself). A condition nested kMaxConditionDepth levels with
// all: [...] takes 2 YAML levels per level, plus the sections around it.
constexpr size_t kMaxYamlDepth = 128;
// Experiment start and end times; years past 9999 do not print as RFC 3339.
constexpr int kMinYear = 2000;
constexpr int kMaxYear = 9999;
constexpr size_t kMaxJsonBytes = 1 << 20;
// ComputeVariantRanges needs the scaled weight sum below 2^50.
constexpr uint64_t kMaxWeightSum = uint64_t{1} << 50;

// Metric windows are at most a year; longer ones are almost surely a typo.
constexpr absl::Duration kMaxMetricWindow = absl::Hours(24 * 365);
constexpr int kMaxRetentionDay = 90;

const char* const kTopLevelFields[] = {"attributes", "segments", "holdout",    "layers",
                                       "metrics",    "features", "experiments"};
const char* const kExperimentFields[] = {
    "key",     "description", "owner",     "status", "rollout_variant", "unit",
    "salt",    "phase",       "traffic",   "start",  "end",             "targeting",
    "layer",   "layer_range", "variants",  "qa_overrides", "metrics", "primary_metric",
    "sticky"};
const char* const kMetricFields[] = {"key",        "type",        "description", "event",
                                     "aggregate",  "numerator",   "denominator", "window",
                                     "day",        "guardrail",   "higher_is_better"};
const char* const kMetricSourceFields[] = {"event", "aggregate"};
const char* const kVariantFields[] = {"key", "weight", "features"};
const char* const kFeatureFields[] = {"key", "type", "default", "description", "rules"};
const char* const kRuleFields[] = {"when", "value", "rollout", "unit", "salt"};
const char* const kLayerFields[] = {"description", "unit", "salt"};
const char* const kHoldoutFields[] = {"fraction", "unit", "salt"};
const char* const kConditionForms[] = {"all", "any", "not", "segment", "attribute"};

struct OpInfo {
  const char* name;
  CompareOp op;
};
const OpInfo kOps[] = {
    {"eq", CompareOp::kEq},         {"ne", CompareOp::kNe},   {"in", CompareOp::kIn},
    {"not_in", CompareOp::kNotIn},  {"lt", CompareOp::kLt},   {"lte", CompareOp::kLte},
    {"gt", CompareOp::kGt},         {"gte", CompareOp::kGte}, {"regex", CompareOp::kRegex},
    {"exists", CompareOp::kExists},
};

const RE2& KeyPattern() {
  static const RE2* const re = new RE2("[A-Za-z0-9][A-Za-z0-9_.-]*");
  return *re;
}
const RE2& EventNamePattern() {
  static const RE2* const re = new RE2("[A-Za-z0-9][A-Za-z0-9_.:-]*");
  return *re;
}
const RE2& NumberPattern() {  // YAML-ish decimal numbers, for number values
  static const RE2* const re = new RE2(R"([-+]?(\d+(\.\d*)?|\.\d+)([eE][-+]?\d+)?)");
  return *re;
}
const RE2& JsonNumberPattern() {
  static const RE2* const re = new RE2(R"(-?(0|[1-9]\d*)(\.\d+)?([eE][-+]?\d+)?)");
  return *re;
}

template <size_t N>
std::string JoinNames(const char* const (&names)[N]) {
  return absl::StrJoin(names, names + N, ", ");
}

constexpr absl::string_view kCoreTagPrefix = "tag:yaml.org,2002:";

// True for a scalar written without quotes (so `true` and `5` are typed),
// or with a core schema tag for a typed scalar (!!int 5).
bool IsPlain(const YAML::Node& n) {
  if (!n.IsScalar()) return false;
  const std::string& tag = n.Tag();
  if (tag == "?") return true;
  absl::string_view type(tag);
  return absl::ConsumePrefix(&type, kCoreTagPrefix) &&
         (type == "int" || type == "float" || type == "bool" || type == "null");
}
bool IsQuoted(const YAML::Node& n) { return n.IsScalar() && !IsPlain(n); }

// The byte offset of the first byte of `text` that is not part of valid
// UTF-8 (no overlong forms, surrogates or code points past U+10FFFF), or
// npos.
size_t FirstInvalidUtf8(absl::string_view text) {
  size_t i = 0;
  while (i < text.size()) {
    const unsigned char c = static_cast<unsigned char>(text[i]);
    if (c < 0x80) {
      ++i;
      continue;
    }
    size_t length = 0;
    unsigned char lo = 0x80, hi = 0xbf;  // the allowed range of the 2nd byte
    if (c >= 0xc2 && c <= 0xdf) {
      length = 2;
    } else if (c >= 0xe0 && c <= 0xef) {
      length = 3;
      if (c == 0xe0) lo = 0xa0;  // overlong
      if (c == 0xed) hi = 0x9f;  // surrogates
    } else if (c >= 0xf0 && c <= 0xf4) {
      length = 4;
      if (c == 0xf0) lo = 0x90;  // overlong
      if (c == 0xf4) hi = 0x8f;  // past U+10FFFF
    } else {
      return i;
    }
    if (i + length > text.size()) return i;
    for (size_t k = 1; k < length; ++k) {
      const unsigned char b = static_cast<unsigned char>(text[i + k]);
      if (k == 1 ? (b < lo || b > hi) : (b < 0x80 || b > 0xbf)) return i;
    }
    i += length;
  }
  return absl::string_view::npos;
}

// An explicit tag as written: !!str for core schema tags, else as is.
std::string TagText(const std::string& tag) {
  absl::string_view t(tag);
  if (absl::ConsumePrefix(&t, kCoreTagPrefix)) return absl::StrCat("!!", t);
  return tag;
}

std::optional<bool> PlainBool(const YAML::Node& n) {
  if (!IsPlain(n)) return std::nullopt;
  const std::string& s = n.Scalar();
  if (s == "true" || s == "True" || s == "TRUE") return true;
  if (s == "false" || s == "False" || s == "FALSE") return false;
  return std::nullopt;
}

std::optional<double> PlainNumber(const YAML::Node& n) {
  if (!IsPlain(n) || !RE2::FullMatch(n.Scalar(), NumberPattern())) return std::nullopt;
  double d = 0;
  if (!absl::SimpleAtod(n.Scalar(), &d) || !std::isfinite(d)) return std::nullopt;
  return d;
}

const char* NodeKindName(const YAML::Node& n) {
  switch (n.Type()) {
    case YAML::NodeType::Map:
      return "a map";
    case YAML::NodeType::Sequence:
      return "a list";
    case YAML::NodeType::Scalar:
      return "a scalar";
    case YAML::NodeType::Null:
      return "empty";
    default:
      return "undefined";
  }
}

// Renders a scalar for messages: 'text'.
std::string Quote(const std::string& s) { return absl::StrCat("'", s, "'"); }

// Levenshtein distance, for "did you mean" hints on field names.
size_t EditDistance(absl::string_view a, absl::string_view b) {
  std::vector<size_t> row(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    size_t prev = row[0];
    row[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      const size_t cur = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, prev + (a[i - 1] == b[j - 1] ? 0 : 1)});
      prev = cur;
    }
  }
  return row[b.size()];
}

// The candidate nearest to `name` within a small edit distance, or "".
std::string Closest(const std::string& name, const std::vector<std::string>& candidates) {
  std::string best;
  size_t best_distance = 3;  // only suggest names within 2 edits
  for (const std::string& c : candidates) {
    const size_t d = EditDistance(name, c);
    if (d < best_distance) {
      best = c;
      best_distance = d;
    }
  }
  return best;
}

void AppendJsonString(absl::string_view s, std::string* out) {
  out->push_back('"');
  for (char ch : s) {
    const unsigned char c = static_cast<unsigned char>(ch);
    switch (c) {
      case '"':
        out->append("\\\"");
        break;
      case '\\':
        out->append("\\\\");
        break;
      case '\n':
        out->append("\\n");
        break;
      case '\r':
        out->append("\\r");
        break;
      case '\t':
        out->append("\\t");
        break;
      case '\b':
        out->append("\\b");
        break;
      case '\f':
        out->append("\\f");
        break;
      default:
        if (c < 0x20) {
          absl::StrAppendFormat(out, "\\u%04x", c);
        } else {
          out->push_back(ch);
        }
    }
  }
  out->push_back('"');
}

// Compact JSON for any YAML node. Returns false when the output would
// exceed kMaxJsonBytes.
bool AppendJson(const YAML::Node& n, std::string* out) {
  if (out->size() > kMaxJsonBytes) return false;
  switch (n.Type()) {
    case YAML::NodeType::Map: {
      out->push_back('{');
      bool first = true;
      for (auto it = n.begin(); it != n.end(); ++it) {
        if (!first) out->push_back(',');
        first = false;
        AppendJsonString(it->first.IsScalar() ? it->first.Scalar() : "", out);
        out->push_back(':');
        if (!AppendJson(it->second, out)) return false;
      }
      out->push_back('}');
      break;
    }
    case YAML::NodeType::Sequence: {
      out->push_back('[');
      bool first = true;
      for (auto it = n.begin(); it != n.end(); ++it) {
        if (!first) out->push_back(',');
        first = false;
        if (!AppendJson(*it, out)) return false;
      }
      out->push_back(']');
      break;
    }
    case YAML::NodeType::Scalar: {
      const std::string& s = n.Scalar();
      if (IsPlain(n)) {
        if (RE2::FullMatch(s, JsonNumberPattern())) {
          out->append(s);
          break;
        }
        if (std::optional<bool> b = PlainBool(n)) {
          out->append(*b ? "true" : "false");
          break;
        }
      }
      AppendJsonString(s, out);
      break;
    }
    default:
      out->append("null");
  }
  return out->size() <= kMaxJsonBytes;
}

// Renders an operand for Condition::text; quotes strings that would
// otherwise read ambiguously.
std::string OperandText(const YAML::Node& n) {
  const std::string& s = n.Scalar();
  const bool needs_quotes =
      s.empty() || s.find_first_of(" ,[]()\"'") != std::string::npos;
  if (!needs_quotes) return s;
  std::string out;
  AppendJsonString(s, &out);
  return out;
}

struct Entry {
  std::string key;
  YAML::Node key_node;
  YAML::Node value;
};

// The state of a named segment while segments are resolved on demand.
struct SegmentState {
  YAML::Node key_node;
  YAML::Node node;
  enum { kUnvisited, kInProgress, kDone } state = kUnvisited;
  std::shared_ptr<const Condition> condition;
  // The longest chain of segment references in its definition.
  size_t chain = 0;
};

class Parser {
 public:
  Parser(absl::string_view text, absl::string_view file_name)
      : text_(text), file_(file_name) {}

  ParseResult Run();

 private:
  // ---- Diagnostics.
  void Report(const YAML::Mark& mark, std::string message, bool warning) {
    Diagnostic d;
    d.file = file_;
    if (mark.line >= 0) {
      d.line = mark.line + 1;
      d.column = mark.column + 1;
    }
    d.message = std::move(message);
    d.warning = warning;
    if (!warning) ++errors_;
    diags_.push_back(std::move(d));
  }
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
    return e.value.IsNull() || !e.value.IsDefined() ? e.key_node.Mark() : e.value.Mark();
  }

  // ---- Generic YAML helpers.
  bool CheckYamlNodes(const YAML::Node& n, std::vector<YAML::Node>* path);
  void CheckTag(const YAML::Node& n);
  std::vector<Entry> Entries(const YAML::Node& map);
  std::map<std::string, Entry> Fields(const YAML::Node& map, const std::string& what,
                                      const char* const* allowed, size_t num_allowed);
  template <size_t N>
  std::map<std::string, Entry> Fields(const YAML::Node& map, const std::string& what,
                                      const char* const (&allowed)[N]) {
    return Fields(map, what, allowed, N);
  }
  std::string NameFor(const char* kind, const YAML::Node& map, const std::string& fallback);
  bool ExpectMap(const YAML::Node& n, const YAML::Mark& mark, const std::string& what,
                 const char* example);
  bool ExpectList(const Entry& e, const std::string& what);
  std::optional<std::string> GetString(const Entry& e, const std::string& what);
  std::optional<std::string> GetKey(const Entry& e, const std::string& what);
  bool QuotedNumber(const Entry& e, const std::string& what);
  std::optional<uint32_t> GetFraction(const Entry& e, const std::string& what);
  std::optional<uint64_t> GetWeight(const Entry& e, const std::string& what);
  std::optional<absl::Time> GetTime(const Entry& e, const std::string& what);
  std::optional<FeatureValue> GetValue(const Entry& e, ValueType type,
                                       const std::string& what);
  bool CheckKeyFormat(const YAML::Node& at, const std::string& key, const std::string& what);
  std::optional<bool> GetBool(const Entry& e, const std::string& what);
  std::optional<std::string> GetEventName(const Entry& e, const std::string& what);
  std::optional<EventAggregation> GetAggregation(const Entry& e, const std::string& what);
  std::optional<absl::Duration> GetWindow(const Entry& e, const std::string& what);

  // ---- Sections.
  void ParseAttributes(const Entry& section);
  void ParseSegments(const Entry& section);
  void ResolveSegment(const std::string& name);
  void ParseLayers(const Entry& section);
  void ParseHoldout(const Entry& section);
  void ParseMetrics(const Entry& section);
  // Fills *metric's type-specific fields; `n` is the metric's map.
  void ParseMetricBody(const YAML::Node& n, const std::map<std::string, Entry>& f,
                       MetricType type, const std::string& what, Metric* metric);
  // A ratio's numerator or denominator: {event, aggregate}.
  std::optional<MetricSource> ParseMetricSource(const Entry& e, const std::string& what);
  const Metric* DefinedMetric(const std::string& key) const;
  void ParseFeatures(const Entry& section);
  void ParseExperiments(const Entry& section);
  // *layer_range receives the layer_range node when it was valid.
  bool ParseExperiment(const YAML::Node& n, int index, Experiment* e, YAML::Node* layer_range);
  void CheckExperiments();

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
  std::shared_ptr<const Condition> ParseCondition(const YAML::Node& n, const YAML::Mark& mark,
                                                  const std::string& what, int depth);
  std::shared_ptr<const Condition> ParseComparison(const YAML::Node& n,
                                                   const std::map<std::string, Entry>& fields,
                                                   const std::string& what);
  std::optional<Operand> ParseOperand(const YAML::Node& n, const YAML::Mark& mark,
                                      AttributeType type, const std::string& attribute,
                                      CompareOp op, const std::string& what);

  absl::string_view text_;
  std::string file_;
  std::vector<Diagnostic> diags_;
  int errors_ = 0;
  size_t nodes_seen_ = 0;
  std::unique_ptr<Config> config_ = std::make_unique<Config>();
  std::map<std::string, SegmentState> segments_;
  std::vector<std::string> segment_stack_;  // segments being resolved
  std::map<const Condition*, uint64_t> expanded_sizes_;  // memo for ExpandedSize
  bool segments_parsed_ = false;
  // Features dropped for a bad key: references to them are not re-reported.
  std::set<std::string> broken_features_;
  // Metrics dropped for a bad key, likewise.
  std::set<std::string> broken_metrics_;
  // Parallel to config_->experiments: the YAML of each, for positions.
  std::vector<YAML::Node> experiment_nodes_;
  std::vector<YAML::Node> layer_range_nodes_;
};

// "experiment 'x'" when the map has a scalar key field, else `fallback`.
std::string Parser::NameFor(const char* kind, const YAML::Node& map,
                            const std::string& fallback) {
  for (const Entry& e : Entries(map)) {
    if (e.key == "key" && e.value.IsScalar()) return absl::StrCat(kind, " ", Quote(e.value.Scalar()));
  }
  return fallback;
}

// Walks the whole document once, before the sections are read. Reports
// non-scalar and duplicate mapping keys (yaml-cpp accepts both silently) and
// tags outside the YAML core schema. Returns false, after reporting why,
// when the document nests more than kMaxYamlDepth levels (one with an alias
// inside its own anchor nests endlessly) or expands to more than
// kMaxYamlNodes nodes; the sections are then not read, so every later
// recursion over the tree is bounded. `path` holds the maps and lists
// around `n`.
bool Parser::CheckYamlNodes(const YAML::Node& n, std::vector<YAML::Node>* path) {
  if (++nodes_seen_ > kMaxYamlNodes) {
    Error(n, absl::StrCat("the document expands to more than ", kMaxYamlNodes,
                          " nodes (too many aliases?); write the config without "
                          "nested alias expansions"));
    return false;
  }
  CheckTag(n);
  if (!n.IsMap() && !n.IsSequence()) return true;
  if (path->size() >= kMaxYamlDepth) {
    // An alias cycle repeats nodes on the path; the first one repeated is
    // where the cycle is entered, normally the anchored node.
    for (size_t i = 0; i < path->size(); ++i) {
      const YAML::Node& p = (*path)[i];
      const bool repeated =
          p.is(n) || std::any_of(path->begin() + i + 1, path->end(),
                                 [&](const YAML::Node& q) { return q.is(p); });
      if (repeated) {
        Error(p, "this node contains itself through an alias (as in &x [*x]), so it never "
                 "ends; an alias must not refer to a node that contains it: write the "
                 "repeated part out");
        return false;
      }
    }
    Error(n, absl::StrCat("the YAML nests more than ", kMaxYamlDepth,
                          " levels deep here; flatten it (conditions may nest at most ",
                          kMaxConditionDepth, " levels)"));
    return false;
  }
  path->push_back(n);
  bool ok = true;
  if (n.IsMap()) {
    std::map<std::string, YAML::Mark> seen;
    for (auto it = n.begin(); ok && it != n.end(); ++it) {
      const YAML::Node k = it->first;  // a copy: it-> yields a temporary
      if (!k.IsScalar()) {
        Error(k, "a mapping key must be a plain name, not " + std::string(NodeKindName(k)) +
                     "; write the key as text");
      } else {
        CheckTag(k);
        auto [pos, inserted] = seen.emplace(k.Scalar(), k.Mark());
        if (!inserted) {
          Error(k, absl::StrFormat("duplicate key '%s' (first at line %d); remove one of "
                                   "them or rename it",
                                   k.Scalar(), pos->second.line + 1));
        }
      }
      ok = CheckYamlNodes(it->second, path);
    }
  } else {
    for (auto it = n.begin(); ok && it != n.end(); ++it) ok = CheckYamlNodes(*it, path);
  }
  path->pop_back();
  return ok;
}

// Reports an explicit tag that is not a YAML core schema tag (such as
// !!python/object:...), or a core one on the wrong kind of node.
void Parser::CheckTag(const YAML::Node& n) {
  const std::string& tag = n.Tag();
  // "?": no tag; "!": quoted (or the non-specific tag, which means the same).
  if (tag.empty() || tag == "?" || tag == "!") return;
  absl::string_view type(tag);
  static const char* const kCoreTypes[] = {"str", "int", "float", "bool", "null", "map", "seq"};
  if (!absl::ConsumePrefix(&type, kCoreTagPrefix) ||
      std::find(std::begin(kCoreTypes), std::end(kCoreTypes), type) == std::end(kCoreTypes)) {
    Error(n, absl::StrCat("tag ", TagText(tag),
                          " is not a YAML core schema tag; remove it (abexp configs are plain "
                          "YAML; the only tags allowed are !!str, !!int, !!float, !!bool, "
                          "!!null, !!map and !!seq)"));
    return;
  }
  const bool fits = type == "map"   ? n.IsMap()
                    : type == "seq" ? n.IsSequence()
                                    : n.IsScalar() || n.IsNull();
  if (!fits) {
    Error(n, absl::StrCat("tag ", TagText(tag), " is on ", NodeKindName(n),
                          "; remove the tag"));
  }
}

std::vector<Entry> Parser::Entries(const YAML::Node& map) {
  std::vector<Entry> out;
  std::set<std::string> seen;
  if (!map.IsMap()) return out;
  for (auto it = map.begin(); it != map.end(); ++it) {
    if (!it->first.IsScalar()) continue;  // reported by CheckYamlKeys
    if (!seen.insert(it->first.Scalar()).second) continue;
    out.push_back(Entry{it->first.Scalar(), it->first, it->second});
  }
  return out;
}

std::map<std::string, Entry> Parser::Fields(const YAML::Node& map, const std::string& what,
                                            const char* const* allowed, size_t num_allowed) {
  std::map<std::string, Entry> out;
  for (Entry& e : Entries(map)) {
    const bool known = std::any_of(allowed, allowed + num_allowed,
                                   [&](const char* a) { return e.key == a; });
    if (!known) {
      std::string hint;
      for (size_t i = 0; i < num_allowed; ++i) {
        if (EditDistance(e.key, allowed[i]) <= 2) {
          hint = absl::StrCat(" (did you mean '", allowed[i], "'?)");
          break;
        }
      }
      Error(e.key_node, absl::StrCat(what, ": unknown field ", Quote(e.key), hint,
                                     "; allowed fields are ",
                                     absl::StrJoin(allowed, allowed + num_allowed, ", ")));
      continue;
    }
    out.emplace(e.key, std::move(e));
  }
  return out;
}

bool Parser::ExpectMap(const YAML::Node& n, const YAML::Mark& mark, const std::string& what,
                       const char* example) {
  if (n.IsMap()) return true;
  Report(mark, absl::StrCat(what, " must be a map, not ", NodeKindName(n), "; write it like ",
                            example),
         false);
  return false;
}

bool Parser::ExpectList(const Entry& e, const std::string& what) {
  if (e.value.IsSequence()) return true;
  Error(e, absl::StrCat(what, " must be a list, not ", NodeKindName(e.value),
                        "; write it as [a, b] or as lines starting with '- '"));
  return false;
}

std::optional<std::string> Parser::GetString(const Entry& e, const std::string& what) {
  if (e.value.IsScalar()) return e.value.Scalar();
  Error(e, absl::StrCat(what, " must be text, not ", NodeKindName(e.value),
                        "; give it a value such as ", e.key, ": example"));
  return std::nullopt;
}

bool Parser::CheckKeyFormat(const YAML::Node& at, const std::string& key,
                            const std::string& what) {
  if (key.size() > kMaxKeyBytes) {
    Error(at, absl::StrFormat("%s '%s' is %d bytes long; shorten it to at most %d", what, key,
                              key.size(), kMaxKeyBytes));
    return false;
  }
  if (!RE2::FullMatch(key, KeyPattern())) {
    Error(at, absl::StrFormat(
                  "%s '%s' is not a valid key; use letters, digits, '_', '.' and '-', "
                  "starting with a letter or digit",
                  what, key));
    return false;
  }
  return true;
}

std::optional<std::string> Parser::GetKey(const Entry& e, const std::string& what) {
  std::optional<std::string> s = GetString(e, what);
  if (!s) return std::nullopt;
  if (!CheckKeyFormat(e.value, *s, what)) return std::nullopt;
  return s;
}

std::optional<bool> Parser::GetBool(const Entry& e, const std::string& what) {
  if (std::optional<bool> b = PlainBool(e.value)) return b;
  Error(e, absl::StrCat(what, " must be true or false, not ",
                        e.value.IsScalar() ? Quote(e.value.Scalar()) : NodeKindName(e.value),
                        IsQuoted(e.value) ? "; write true or false without quotes"
                                          : "; write true or false"));
  return std::nullopt;
}

std::optional<std::string> Parser::GetEventName(const Entry& e, const std::string& what) {
  std::optional<std::string> s = GetString(e, what);
  if (!s) return std::nullopt;
  if (s->size() > kMaxKeyBytes) {
    Error(e, absl::StrFormat("%s '%s' is %d bytes long; shorten it to at most %d", what, *s,
                             s->size(), kMaxKeyBytes));
    return std::nullopt;
  }
  if (!RE2::FullMatch(*s, EventNamePattern())) {
    Error(e, absl::StrFormat("%s '%s' is not a valid event name; use letters, digits, '_', "
                             "'.', ':' and '-', starting with a letter or digit, as the "
                             "services send it (such as order_completed)",
                             what, *s));
    return std::nullopt;
  }
  return s;
}

std::optional<EventAggregation> Parser::GetAggregation(const Entry& e, const std::string& what) {
  if (e.value.IsScalar()) {
    if (e.value.Scalar() == "value") return EventAggregation::kValue;
    if (e.value.Scalar() == "count") return EventAggregation::kCount;
  }
  Error(e, absl::StrCat(what, " ",
                        e.value.IsScalar() ? Quote(e.value.Scalar()) : NodeKindName(e.value),
                        " is not valid; use value (add up the events' values) or count "
                        "(count the events)"));
  return std::nullopt;
}

// A duration such as 7d, 24h, 30m, 90s or 1d12h: one or more parts, each a
// decimal number and a unit, the units in the order d, h, m, s and each at
// most once, adding up to a whole number of seconds. absl::ParseDuration has
// no days, and metric windows are usually written in days.
std::optional<absl::Duration> Parser::GetWindow(const Entry& e, const std::string& what) {
  const char* const kHow = "write a number and a unit (d, h, m or s), such as 7d, 24h or 30m, "
                           "or several in the order d, h, m, s, such as 1d12h";
  if (!e.value.IsScalar()) {
    Error(e, absl::StrCat(what, " must be a duration, not ", NodeKindName(e.value), "; ",
                          kHow));
    return std::nullopt;
  }
  std::string s = e.value.Scalar();
  absl::StripAsciiWhitespace(&s);
  if (!s.empty() && s[0] == '-') {
    Error(e, absl::StrCat(what, " ", s, " is negative; a window starts at the unit's first "
                                        "exposure and must be positive, such as 7d"));
    return std::nullopt;
  }
  if (RE2::FullMatch(s, NumberPattern())) {
    Error(e, absl::StrCat(what, " ", s, " has no unit; write ", s, "d for days, ", s,
                          "h for hours or ", s, "m for minutes"));
    return std::nullopt;
  }
  static const RE2* const part = new RE2(R"((\d+(?:\.\d+)?)([dhms]))");
  constexpr absl::string_view kUnits = "dhms";
  re2::StringPiece in(s);
  std::string number, unit;
  absl::Duration total = absl::ZeroDuration();
  bool any = false;
  size_t next_unit = 0;  // units must come in the order of kUnits
  while (!in.empty() && RE2::Consume(&in, *part, &number, &unit)) {
    const size_t u = kUnits.find(unit);
    if (u + 1 == next_unit) {
      Error(e, absl::StrCat(what, " ", Quote(s), " gives the unit ", unit,
                            " twice; give each unit once, such as 2d or 1d12h"));
      return std::nullopt;
    }
    if (u < next_unit) {
      any = false;
      break;
    }
    next_unit = u + 1;
    double v = 0;
    if (!absl::SimpleAtod(number, &v)) break;
    const absl::Duration scale = unit == "d"   ? absl::Hours(24)
                                 : unit == "h" ? absl::Hours(1)
                                 : unit == "m" ? absl::Minutes(1)
                                               : absl::Seconds(1);
    total += scale * v;
    any = true;
  }
  if (!any || !in.empty()) {
    Error(e, absl::StrCat(what, " ", Quote(s), " is not a duration; ", kHow));
    return std::nullopt;
  }
  if (total <= absl::ZeroDuration()) {
    Error(e, absl::StrCat(what, " ", s, " is not positive; use a window such as 7d"));
    return std::nullopt;
  }
  if (total % absl::Seconds(1) != absl::ZeroDuration()) {
    Error(e, absl::StrCat(what, " ", s, " is not a whole number of seconds; the finest unit "
                                        "is 1s, so round it"));
    return std::nullopt;
  }
  if (total > kMaxMetricWindow) {
    Error(e, absl::StrCat(what, " ", s, " is longer than 365d; use a window of at most 365d"));
    return std::nullopt;
  }
  return total;
}

// Parses "D[.DDDD]" exactly into units of 10^-scale_digits. Returns nullopt
// when the text is not such a decimal; *too_precise when it has more than
// scale_digits significant decimals.
std::optional<uint64_t> ParseDecimal(absl::string_view text, int scale_digits,
                                     bool* too_precise) {
  *too_precise = false;
  static const RE2* const re = new RE2(R"((\d*)(?:\.(\d*))?)");
  std::string int_part, frac_part;
  if (!RE2::FullMatch(re2::StringPiece(text.data(), text.size()), *re, &int_part, &frac_part)) {
    return std::nullopt;
  }
  if (int_part.empty() && frac_part.empty()) return std::nullopt;
  int_part.erase(0, std::min(int_part.find_first_not_of('0'), int_part.size()));
  if (int_part.size() > 12) return std::nullopt;
  while (!frac_part.empty() && frac_part.back() == '0') frac_part.pop_back();
  if (frac_part.size() > static_cast<size_t>(scale_digits)) {
    *too_precise = true;
    return std::nullopt;
  }
  frac_part.append(scale_digits - frac_part.size(), '0');
  uint64_t v = 0;
  for (char c : int_part) v = v * 10 + (c - '0');
  for (char c : frac_part) v = v * 10 + (c - '0');
  return v;
}

// Reports a quoted scalar where a number is expected: "50" is text in YAML.
bool Parser::QuotedNumber(const Entry& e, const std::string& what) {
  if (!IsQuoted(e.value)) return false;
  std::string shown;
  AppendJsonString(e.value.Scalar(), &shown);
  Error(e, absl::StrCat(what, " ", shown, " is quoted; write the number without quotes"));
  return true;
}

std::optional<uint32_t> Parser::GetFraction(const Entry& e, const std::string& what) {
  const char* const kHow =
      "use a fraction from 0 to 1 with at most 4 decimals (such as 0.25) or a percent "
      "string (such as \"12.5%\")";
  if (!e.value.IsScalar()) {
    Error(e, absl::StrCat(what, " must be a number, not ", NodeKindName(e.value), "; ", kHow));
    return std::nullopt;
  }
  std::string s = e.value.Scalar();
  absl::StripAsciiWhitespace(&s);
  const bool percent = !s.empty() && s.back() == '%';
  if (!percent && QuotedNumber(e, what)) return std::nullopt;
  if (percent) s.pop_back();
  if (!s.empty() && s[0] == '-') {
    Error(e, absl::StrCat(what, " ", e.value.Scalar(), " is negative; ", kHow));
    return std::nullopt;
  }
  bool too_precise = false;
  std::optional<uint64_t> v = ParseDecimal(s, percent ? 2 : 4, &too_precise);
  if (too_precise) {
    Error(e, absl::StrCat(what, " ", e.value.Scalar(),
                          " has more than 4 decimal places (0.0001 is the finest step); "
                          "round it"));
    return std::nullopt;
  }
  if (!v) {
    Error(e, absl::StrCat(what, " ", Quote(e.value.Scalar()), " is not a number; ", kHow));
    return std::nullopt;
  }
  if (*v > kNumBuckets) {
    std::string hint;
    if (!percent && *v >= 2u * kNumBuckets && *v <= 100u * kNumBuckets) {
      hint = absl::StrCat(" (did you mean \"", e.value.Scalar(), "%\"?)");
    }
    Error(e, absl::StrCat(what, " ", e.value.Scalar(), " is more than ",
                          percent ? "100%" : "1", hint, "; ", kHow));
    return std::nullopt;
  }
  return static_cast<uint32_t>(*v);
}

std::optional<uint64_t> Parser::GetWeight(const Entry& e, const std::string& what) {
  const char* const kHow = "use 0 or a positive integer or decimal with at most 4 places, "
                           "such as 50 or 33.3";
  if (!e.value.IsScalar()) {
    Error(e, absl::StrCat(what, " must be a number, not ", NodeKindName(e.value), "; ", kHow));
    return std::nullopt;
  }
  if (QuotedNumber(e, what)) return std::nullopt;
  std::string s = e.value.Scalar();
  absl::StripAsciiWhitespace(&s);
  if (!s.empty() && s[0] == '-') {
    Error(e, absl::StrCat(what, " ", s, " is negative; ", kHow));
    return std::nullopt;
  }
  bool too_precise = false;
  std::optional<uint64_t> v = ParseDecimal(s, 4, &too_precise);
  if (too_precise) {
    Error(e, absl::StrCat(what, " ", s, " has more than 4 decimal places; round it to at "
                                        "most 4"));
    return std::nullopt;
  }
  if (!v) {
    Error(e, absl::StrCat(what, " ", Quote(s), " is not a number; ", kHow));
    return std::nullopt;
  }
  return v;
}

std::optional<absl::Time> Parser::GetTime(const Entry& e, const std::string& what) {
  const char* const kHow = "write an RFC 3339 time such as 2026-11-01T00:00:00Z";
  if (!e.value.IsScalar()) {
    Error(e, absl::StrCat(what, " must be a time, not ", NodeKindName(e.value), "; ", kHow));
    return std::nullopt;
  }
  absl::Time t;
  std::string err;
  if (!absl::ParseTime(absl::RFC3339_full, e.value.Scalar(), &t, &err)) {
    Error(e, absl::StrCat(what, " ", Quote(e.value.Scalar()),
                          " is not an RFC 3339 time (with a time zone); ", kHow));
    return std::nullopt;
  }
  const int64_t year = absl::ToCivilYear(t, absl::UTCTimeZone()).year();
  if (year < kMinYear || year > kMaxYear) {
    Error(e, absl::StrCat(what, " ", e.value.Scalar(), " is in the year ", year,
                          "; use a time in the years ", kMinYear, " to ", kMaxYear));
    return std::nullopt;
  }
  return t;
}

std::optional<FeatureValue> Parser::GetValue(const Entry& e, ValueType type,
                                             const std::string& what) {
  FeatureValue v;
  v.type = type;
  const YAML::Node& n = e.value;
  switch (type) {
    case ValueType::kBool:
      if (std::optional<bool> b = PlainBool(n)) {
        v.bool_value = *b;
        return v;
      }
      Error(e, absl::StrCat(what, " must be true or false (the feature is bool), not ",
                            n.IsScalar() ? Quote(n.Scalar()) : NodeKindName(n),
                            "; write true or false without quotes"));
      return std::nullopt;
    case ValueType::kNumber:
      if (std::optional<double> d = PlainNumber(n)) {
        v.number_value = *d;
        return v;
      }
      Error(e, absl::StrCat(what, " must be a number (the feature is number), not ",
                            n.IsScalar() ? Quote(n.Scalar()) : NodeKindName(n),
                            IsQuoted(n) ? "; write the number without quotes"
                                        : "; write a number such as 3 or 0.5"));
      return std::nullopt;
    case ValueType::kString:
      if (n.IsScalar()) {
        v.text = n.Scalar();
        return v;
      }
      Error(e, absl::StrCat(what, " must be a string (the feature is string), not ",
                            NodeKindName(n), "; write text, quoted if it has special "
                                             "characters"));
      return std::nullopt;
    case ValueType::kJson:
      if (!AppendJson(n, &v.text)) {
        Error(e, absl::StrCat(what, " is larger than ", kMaxJsonBytes,
                              " bytes as JSON; keep feature values small"));
        return std::nullopt;
      }
      return v;
  }
  return std::nullopt;
}

// ---- Attributes, segments, layers, holdout.

void Parser::ParseAttributes(const Entry& section) {
  if (section.value.IsNull()) return;
  if (!ExpectMap(section.value, Pos(section), "attributes",
                 "attributes: {country: string, app_version: semver}")) {
    return;
  }
  for (const Entry& e : Entries(section.value)) {
    const bool key_ok = CheckKeyFormat(e.key_node, e.key, "attribute");
    static const std::pair<const char*, AttributeType> kTypes[] = {
        {"string", AttributeType::kString},
        {"number", AttributeType::kNumber},
        {"bool", AttributeType::kBool},
        {"semver", AttributeType::kSemver}};
    const std::string type = e.value.IsScalar() ? e.value.Scalar() : "";
    bool found = false;
    for (const auto& [name, t] : kTypes) {
      if (type == name) {
        found = true;
        if (key_ok) config_->attributes[e.key] = t;
      }
    }
    if (!found) {
      Error(e, absl::StrCat("attribute ", Quote(e.key), ": type ",
                            e.value.IsScalar() ? Quote(type) : NodeKindName(e.value),
                            " is not valid; use one of string, number, bool, semver"));
    }
  }
}

void Parser::ParseSegments(const Entry& section) {
  segments_parsed_ = true;
  if (section.value.IsNull()) return;
  if (!ExpectMap(section.value, Pos(section), "segments",
                 "segments: {new_users: {attribute: days_since_signup, lt: 7}}")) {
    return;
  }
  for (const Entry& e : Entries(section.value)) {
    if (!CheckKeyFormat(e.key_node, e.key, "segment")) continue;
    SegmentState& s = segments_[e.key];
    s.key_node = e.key_node;
    s.node = e.value;
  }
  for (auto& [name, state] : segments_) ResolveSegment(name);
  for (auto& [name, state] : segments_) {
    if (state.condition) config_->segments[name] = state.condition;
  }
}

void Parser::ResolveSegment(const std::string& name) {
  SegmentState& s = segments_.at(name);
  if (s.state != SegmentState::kUnvisited) return;
  s.state = SegmentState::kInProgress;
  segment_stack_.push_back(name);
  Entry e{name, s.key_node, s.node};
  s.condition = ParseRootCondition(s.node, Pos(e), absl::StrCat("segment ", Quote(name)));
  segment_stack_.pop_back();
  s.state = SegmentState::kDone;
}

void Parser::ParseLayers(const Entry& section) {
  if (section.value.IsNull()) return;
  if (!ExpectMap(section.value, Pos(section), "layers",
                 "layers: {checkout: {unit: user_id}}")) {
    return;
  }
  for (const Entry& e : Entries(section.value)) {
    if (!CheckKeyFormat(e.key_node, e.key, "layer")) continue;
    Layer layer;
    layer.key = e.key;
    layer.salt = e.key;
    layer.location = {e.key_node.Mark().line + 1, e.key_node.Mark().column + 1};
    const std::string what = absl::StrCat("layer ", Quote(e.key));
    if (!e.value.IsNull()) {
      if (!ExpectMap(e.value, Pos(e), what, "checkout: {description: ..., unit: user_id}")) {
        continue;
      }
      auto f = Fields(e.value, what, kLayerFields);
      if (f.count("description")) {
        if (auto s = GetString(f.at("description"), what + " description")) {
          layer.description = *s;
        }
      }
      if (f.count("unit")) {
        if (auto s = GetKey(f.at("unit"), what + " unit")) layer.unit_id_type = *s;
      }
      if (f.count("salt")) {
        if (auto s = GetString(f.at("salt"), what + " salt")) layer.salt = *s;
      }
    }
    config_->layers[e.key] = std::move(layer);
  }
}

void Parser::ParseHoldout(const Entry& section) {
  if (!ExpectMap(section.value, Pos(section), "holdout", "holdout: {fraction: 0.02}")) return;
  auto f = Fields(section.value, "holdout", kHoldoutFields);
  Holdout h;
  if (!f.count("fraction")) {
    Error(section.key_node,
          "holdout: missing required field 'fraction'; add the share of units to hold "
          "out, such as fraction: 0.02");
  } else if (auto bp = GetFraction(f.at("fraction"), "holdout fraction")) {
    h.bp = *bp;
  }
  if (f.count("unit")) {
    if (auto s = GetKey(f.at("unit"), "holdout unit")) h.unit_id_type = *s;
  }
  if (f.count("salt")) {
    if (auto s = GetString(f.at("salt"), "holdout salt")) h.salt = *s;
  }
  config_->holdout = h;
}

// ---- Conditions.

std::shared_ptr<const Condition> Parser::ParseRootCondition(const YAML::Node& n,
                                                            const YAML::Mark& mark,
                                                            const std::string& what) {
  std::shared_ptr<const Condition> c = ParseCondition(n, mark, what, 0);
  if (c != nullptr && ExpandedSize(*c) > kMaxExpandedConditionNodes) {
    Report(mark, absl::StrCat(what, ": the condition has more than ", kMaxExpandedConditionNodes,
                              " parts once the segments it uses are written out (each use of "
                              "a segment counts), which makes every request slow; simplify "
                              "it"),
           false);
    return nullptr;
  }
  return c;
}

uint64_t Parser::ExpandedSize(const Condition& c) {
  auto memo = expanded_sizes_.find(&c);
  if (memo != expanded_sizes_.end()) return memo->second;
  uint64_t size = 1;
  if (c.segment != nullptr) size += ExpandedSize(*c.segment);
  for (const auto& child : c.children) {
    size = std::min(size + ExpandedSize(*child), kMaxExpandedConditionNodes + 1);
  }
  size = std::min(size, kMaxExpandedConditionNodes + 1);
  expanded_sizes_.emplace(&c, size);
  return size;
}

std::shared_ptr<const Condition> Parser::ParseCondition(const YAML::Node& n,
                                                        const YAML::Mark& mark,
                                                        const std::string& what, int depth) {
  if (depth > kMaxConditionDepth) {
    Report(mark, absl::StrCat(what, ": condition is nested more than ", kMaxConditionDepth,
                              " levels deep; simplify it or move parts into segments"),
           false);
    return nullptr;
  }
  if (!ExpectMap(n, mark, absl::StrCat(what, ": a condition"),
                 "{attribute: country, in: [CN, SG]} or {segment: new_users}")) {
    return nullptr;
  }
  std::vector<Entry> entries = Entries(n);
  std::vector<std::string> forms;
  for (const Entry& e : entries) {
    for (const char* f : kConditionForms) {
      if (e.key == f) forms.push_back(e.key);
    }
  }
  if (forms.empty()) {
    std::vector<std::string> ops;
    for (const Entry& e : entries) {
      for (const OpInfo& op : kOps) {
        if (e.key == op.name) ops.push_back(e.key);
      }
    }
    if (!ops.empty()) {
      Report(mark, absl::StrCat(what, ": operator '", ops[0],
                                "' has no attribute; add attribute: <name> to the same map"),
             false);
    } else {
      Report(mark, absl::StrCat(what, ": a condition needs exactly one of ",
                                JoinNames(kConditionForms),
                                "; write it like {attribute: country, eq: CN}"),
             false);
    }
    return nullptr;
  }
  if (forms.size() > 1) {
    Report(mark, absl::StrCat(what, ": a condition has several forms (",
                              absl::StrJoin(forms, ", "),
                              "); write one per map and combine them with all: [...] or "
                              "any: [...]"),
           false);
    return nullptr;
  }
  const std::string& form = forms[0];
  if (form == "attribute") {
    std::vector<const char*> allowed = {"attribute"};
    for (const OpInfo& op : kOps) allowed.push_back(op.name);
    auto fields = Fields(n, absl::StrCat(what, ": comparison"), allowed.data(), allowed.size());
    return ParseComparison(n, fields, what);
  }

  auto fields = Fields(n, what, kConditionForms);
  const Entry& e = fields.at(form);
  auto c = std::make_shared<Condition>();
  if (form == "segment") {
    c->kind = ConditionKind::kSegment;
    std::optional<std::string> name = GetString(e, what + ": segment");
    if (!name) return nullptr;
    c->segment_name = *name;
    c->text = absl::StrCat("segment ", *name);
    auto it = segments_.find(*name);
    if (it == segments_.end()) {
      std::vector<std::string> known;
      for (const auto& [k, v] : segments_) known.push_back(k);
      Error(e, absl::StrCat(what, ": unknown segment ", Quote(*name),
                            known.empty()
                                ? "; declare it under segments:"
                                : absl::StrCat("; declare it under segments: or use one of ",
                                               absl::StrJoin(known, ", "))));
      return nullptr;
    }
    if (it->second.state == SegmentState::kInProgress) {
      auto start = std::find(segment_stack_.begin(), segment_stack_.end(), *name);
      std::vector<std::string> cycle(start, segment_stack_.end());
      cycle.push_back(*name);
      Error(e, absl::StrCat(what, ": segments refer to each other in a cycle (",
                            absl::StrJoin(cycle, " -> "),
                            "); break the cycle by inlining one of the conditions"));
      return nullptr;
    }
    // Bounds the recursion here and, through the chain lengths, evaluation.
    const auto too_deep = [&] {
      Error(e, absl::StrCat(what, ": segments refer to segments more than ", kMaxSegmentNesting,
                            " levels deep through segment ", Quote(*name),
                            "; write some of the chain's conditions out in place, so that a "
                            "chain of segments is at most ",
                            kMaxSegmentNesting, " long"));
      return nullptr;
    };
    if (it->second.state == SegmentState::kUnvisited &&
        segment_stack_.size() > kMaxSegmentNesting) {
      return too_deep();
    }
    ResolveSegment(*name);
    if (!it->second.condition) return nullptr;  // its errors are already reported
    const size_t chain = it->second.chain + 1;
    if (chain > kMaxSegmentNesting) return too_deep();
    if (!segment_stack_.empty()) {
      size_t& outer = segments_.at(segment_stack_.back()).chain;
      outer = std::max(outer, chain);
    }
    c->segment = it->second.condition;
    return c;
  }
  if (form == "not") {
    c->kind = ConditionKind::kNot;
    auto child = ParseCondition(e.value, Pos(e), what, depth + 1);
    if (!child) return nullptr;
    c->text = absl::StrCat("not(", child->text, ")");
    c->children.push_back(std::move(child));
    return c;
  }
  // all / any
  c->kind = form == "all" ? ConditionKind::kAll : ConditionKind::kAny;
  if (!ExpectList(e, absl::StrCat(what, ": ", form))) return nullptr;
  bool ok = true;
  std::vector<std::string> texts;
  for (auto it = e.value.begin(); it != e.value.end(); ++it) {
    auto child = ParseCondition(*it, it->Mark(), what, depth + 1);
    if (!child) {
      ok = false;
      continue;
    }
    texts.push_back(child->text);
    c->children.push_back(std::move(child));
  }
  if (!ok) return nullptr;
  c->text = absl::StrCat(form, "(", absl::StrJoin(texts, ", "), ")");
  return c;
}

std::shared_ptr<const Condition> Parser::ParseComparison(
    const YAML::Node& n, const std::map<std::string, Entry>& fields, const std::string& what) {
  const Entry& attr_entry = fields.at("attribute");
  std::optional<std::string> attribute = GetString(attr_entry, what + ": attribute");
  std::vector<const Entry*> ops;
  for (const auto& [key, e] : fields) {
    if (key != "attribute") ops.push_back(&e);
  }
  if (!attribute) return nullptr;
  const std::string ctx = absl::StrCat(what, ": comparison on ", Quote(*attribute));
  std::vector<std::string> op_names;
  for (const OpInfo& op : kOps) op_names.push_back(op.name);
  if (ops.empty()) {
    Error(n, absl::StrCat(ctx, " has no operator; add exactly one of ",
                          absl::StrJoin(op_names, ", ")));
    return nullptr;
  }
  if (ops.size() > 1) {
    std::vector<std::string> names;
    for (const Entry* e : ops) names.push_back(e->key);
    Error(n, absl::StrCat(ctx, " has several operators (", absl::StrJoin(names, ", "),
                          "); use one per map and combine them with all: [...]"));
    return nullptr;
  }
  auto type_it = config_->attributes.find(*attribute);
  if (type_it == config_->attributes.end()) {
    Error(attr_entry, absl::StrCat(what, ": attribute ", Quote(*attribute),
                                   " is not declared; add it under attributes: with its type "
                                   "(string, number, bool or semver)"));
    return nullptr;
  }
  const AttributeType type = type_it->second;
  const Entry& op_entry = *ops[0];
  CompareOp op = CompareOp::kEq;
  for (const OpInfo& info : kOps) {
    if (op_entry.key == info.name) op = info.op;
  }
  auto c = std::make_shared<Condition>();
  c->kind = ConditionKind::kCompare;
  c->attribute = *attribute;
  c->attribute_type = type;
  c->op = op;
  const char* type_name = AttributeTypeName(type);

  // Which operators each type supports (docs/config.md).
  bool supported = true;
  const char* fix = "";
  switch (op) {
    case CompareOp::kIn:
    case CompareOp::kNotIn:
      supported = type != AttributeType::kBool;
      fix = "use eq or ne for bool attributes";
      break;
    case CompareOp::kLt:
    case CompareOp::kLte:
    case CompareOp::kGt:
    case CompareOp::kGte:
      supported = type == AttributeType::kNumber || type == AttributeType::kSemver;
      fix = "ordering operators need a number or semver attribute; use eq, ne, in or regex";
      break;
    case CompareOp::kRegex:
      supported = type == AttributeType::kString;
      fix = "regex needs a string attribute; use eq, ne, in, lt, lte, gt or gte";
      break;
    default:
      break;
  }
  if (!supported) {
    Error(op_entry.key_node, absl::StrCat(ctx, ": operator '", op_entry.key,
                                          "' does not apply to a ", type_name,
                                          " attribute; ", fix));
    return nullptr;
  }

  const YAML::Node& v = op_entry.value;
  std::string operand_text;
  if (op == CompareOp::kRegex) {
    if (!v.IsScalar()) {
      Error(op_entry, absl::StrCat(ctx, ": regex must be a pattern string, not ",
                                   NodeKindName(v), "; write it like regex: \"^vip-\""));
      return nullptr;
    }
    RE2::Options options;
    options.set_log_errors(false);
    auto re = std::make_shared<RE2>(v.Scalar(), options);
    if (!re->ok()) {
      Error(op_entry, absl::StrCat(ctx, ": regex ", Quote(v.Scalar()), " does not compile: ",
                                   re->error(), "; fix the pattern (RE2 syntax, no "
                                                "backreferences or lookaround)"));
      return nullptr;
    }
    c->regex = std::move(re);
    operand_text = OperandText(v);
  } else if (op == CompareOp::kExists) {
    std::optional<bool> b = PlainBool(v);
    if (!b) {
      Error(op_entry, absl::StrCat(ctx, ": exists takes true or false, not ",
                                   v.IsScalar() ? Quote(v.Scalar()) : NodeKindName(v),
                                   "; write exists: true or exists: false"));
      return nullptr;
    }
    c->operands.push_back(*b);
    operand_text = *b ? "true" : "false";
  } else if (op == CompareOp::kIn || op == CompareOp::kNotIn) {
    if (!v.IsSequence()) {
      Error(op_entry, absl::StrCat(ctx, ": ", op_entry.key, " takes a list, not ",
                                   NodeKindName(v), "; write it like ", op_entry.key,
                                   ": [a, b]"));
      return nullptr;
    }
    if (v.size() == 0) {
      Error(op_entry, absl::StrCat(ctx, ": the ", op_entry.key,
                                   " list is empty; list at least one value, or remove "
                                   "the condition"));
      return nullptr;
    }
    bool ok = true;
    std::vector<std::string> texts;
    for (auto it = v.begin(); it != v.end(); ++it) {
      std::optional<Operand> o = ParseOperand(*it, it->Mark(), type, *attribute, op, ctx);
      if (!o) {
        ok = false;
        continue;
      }
      c->operands.push_back(std::move(*o));
      texts.push_back(OperandText(*it));
    }
    if (!ok) return nullptr;
    operand_text = absl::StrCat("[", absl::StrJoin(texts, ", "), "]");
  } else {
    std::optional<Operand> o = ParseOperand(v, Pos(op_entry), type, *attribute, op, ctx);
    if (!o) return nullptr;
    c->operands.push_back(std::move(*o));
    operand_text = OperandText(v);
  }
  c->text = absl::StrCat(*attribute, " ", op_entry.key, " ", operand_text);
  return c;
}

std::optional<Operand> Parser::ParseOperand(const YAML::Node& n, const YAML::Mark& mark,
                                            AttributeType type, const std::string& attribute,
                                            CompareOp op, const std::string& what) {
  const std::string shown = n.IsScalar() ? Quote(n.Scalar()) : NodeKindName(n);
  const std::string prefix =
      absl::StrCat(what, ": operand ", shown, " of '", CompareOpName(op), "'");
  if (!n.IsScalar()) {
    Report(mark, absl::StrCat(prefix, " must be a single value; write a ",
                              AttributeTypeName(type), " value"),
           false);
    return std::nullopt;
  }
  switch (type) {
    case AttributeType::kString:
      return Operand(n.Scalar());
    case AttributeType::kNumber:
      if (std::optional<double> d = PlainNumber(n)) return Operand(*d);
      Report(mark, absl::StrCat(prefix, " is not a number, but attribute ", Quote(attribute),
                                " is declared number; ",
                                IsQuoted(n) && RE2::FullMatch(n.Scalar(), NumberPattern())
                                    ? "write the number without quotes"
                                    : "compare with a number such as 7, or declare the "
                                      "attribute as string"),
             false);
      return std::nullopt;
    case AttributeType::kBool:
      if (std::optional<bool> b = PlainBool(n)) return Operand(*b);
      Report(mark, absl::StrCat(prefix, " is not true or false, but attribute ",
                                Quote(attribute),
                                " is declared bool; write true or false without quotes"),
             false);
      return std::nullopt;
    case AttributeType::kSemver:
      if (std::optional<SemVer> v = SemVer::Parse(n.Scalar())) return Operand(*v);
      Report(mark, absl::StrCat(prefix, " is not a version, but attribute ", Quote(attribute),
                                " is declared semver; write a version such as \"5.2.0\""),
             false);
      return std::nullopt;
  }
  return std::nullopt;
}

// ---- Metrics.

void Parser::ParseMetrics(const Entry& section) {
  if (section.value.IsNull()) return;
  if (!ExpectList(section, "metrics")) return;
  std::map<std::string, int> first_line;
  int index = 0;
  for (auto it = section.value.begin(); it != section.value.end(); ++it, ++index) {
    const YAML::Node& n = *it;
    std::string what = absl::StrCat("metric #", index + 1);
    if (!ExpectMap(n, n.Mark(), what,
                   "- {key: order_conversion, type: binomial, event: order_completed}")) {
      continue;
    }
    auto f = Fields(n, NameFor("metric", n, what), kMetricFields);
    Metric metric;
    metric.location = {n.Mark().line + 1, n.Mark().column + 1};
    bool ok = true;
    if (!f.count("key")) {
      Error(n, absl::StrCat(what, ": missing required field 'key'; add key: <name>"));
      ok = false;
    } else if (auto key = GetKey(f.at("key"), "metric key")) {
      metric.key = *key;
      what = absl::StrCat("metric ", Quote(*key));
      auto [pos, inserted] = first_line.emplace(*key, metric.location.line);
      if (!inserted) {
        Error(f.at("key"), absl::StrCat("duplicate metric key ", Quote(*key),
                                        " (first defined at line ", pos->second,
                                        "); metric keys must be unique, rename or remove "
                                        "one"));
        ok = false;
      }
    } else {
      ok = false;
    }
    std::optional<MetricType> type;
    if (!f.count("type")) {
      Error(n, absl::StrCat(what, ": missing required field 'type'; add type: with one of "
                                  "binomial, sum, ratio, retention"));
    } else {
      const Entry& t = f.at("type");
      static const std::pair<const char*, MetricType> kTypes[] = {
          {"binomial", MetricType::kBinomial},
          {"sum", MetricType::kSum},
          {"ratio", MetricType::kRatio},
          {"retention", MetricType::kRetention}};
      for (const auto& [name, mt] : kTypes) {
        if (t.value.IsScalar() && t.value.Scalar() == name) type = mt;
      }
      if (!type) {
        Error(t, absl::StrCat(what, ": type ",
                              t.value.IsScalar() ? Quote(t.value.Scalar())
                                                 : NodeKindName(t.value),
                              " is not valid; use one of binomial (converted or not), sum "
                              "(a total per unit), ratio (a total over a total) or "
                              "retention (active on day k)"));
      }
    }
    if (f.count("description")) {
      if (auto s = GetString(f.at("description"), what + " description")) {
        metric.description = *s;
      }
    }
    if (f.count("guardrail")) {
      if (auto b = GetBool(f.at("guardrail"), what + " guardrail")) metric.guardrail = *b;
    }
    if (f.count("higher_is_better")) {
      if (auto b = GetBool(f.at("higher_is_better"), what + " higher_is_better")) {
        metric.higher_is_better = *b;
      }
    }
    if (type) ParseMetricBody(n, f, *type, what, &metric);
    if (ok) {
      config_->metrics.push_back(std::move(metric));
    } else if (f.count("key") && f.at("key").value.IsScalar()) {
      broken_metrics_.insert(f.at("key").value.Scalar());
    }
  }
}

void Parser::ParseMetricBody(const YAML::Node& n, const std::map<std::string, Entry>& f,
                             MetricType type, const std::string& what, Metric* metric) {
  metric->type = type;
  const char* const type_name = MetricTypeName(type);
  // Fields that some other type needs are errors, not silently unused.
  auto not_for_type = [&](const char* field, const char* fix) {
    if (!f.count(field)) return;
    Error(f.at(field).key_node, absl::StrCat(what, ": ", field, " does not apply to a ",
                                             type_name, " metric; ", fix));
  };

  if (type == MetricType::kRatio) {
    not_for_type("event", "give the events in numerator: and denominator:, such as "
                          "numerator: {event: order_completed, aggregate: value}");
    not_for_type("aggregate", "set aggregate inside numerator: and denominator:");
    std::optional<MetricSource> num, den;
    if (!f.count("numerator")) {
      Error(n, absl::StrCat(what, ": missing required field 'numerator'; add it, such as "
                                  "numerator: {event: order_completed, aggregate: value}"));
    } else {
      num = ParseMetricSource(f.at("numerator"), what + " numerator");
    }
    if (!f.count("denominator")) {
      Error(n, absl::StrCat(what, ": missing required field 'denominator'; add it, such as "
                                  "denominator: {event: order_completed, aggregate: count}"));
    } else {
      den = ParseMetricSource(f.at("denominator"), what + " denominator");
    }
    if (num && den && num->event == den->event && num->aggregation == den->aggregation) {
      Error(f.at("denominator"),
            absl::StrCat(what, ": numerator and denominator are the same (event ",
                         Quote(num->event), ", aggregate ",
                         num->aggregation == EventAggregation::kValue ? "value" : "count",
                         "), so the ratio is always 1; change one of them"));
    }
    if (num) metric->numerator = *num;
    if (den) metric->denominator = *den;
  } else {
    not_for_type("numerator", "numerator and denominator are for ratio metrics; use event: "
                              "(or set type: ratio)");
    not_for_type("denominator", "numerator and denominator are for ratio metrics; use "
                                "event: (or set type: ratio)");
    if (!f.count("event")) {
      Error(n, absl::StrCat(what, ": missing required field 'event'; add the event that "
                                  "counts, such as event: order_completed"));
    } else if (auto ev = GetEventName(f.at("event"), what + " event")) {
      metric->source.event = *ev;
    }
    if (type == MetricType::kSum) {
      metric->source.aggregation = EventAggregation::kValue;
      if (f.count("aggregate")) {
        if (auto a = GetAggregation(f.at("aggregate"), what + " aggregate")) {
          metric->source.aggregation = *a;
        }
      }
    } else {
      metric->source.aggregation = EventAggregation::kCount;
      not_for_type("aggregate", type == MetricType::kBinomial
                                    ? "a binomial metric counts the units that send the "
                                      "event; remove aggregate (or set type: sum)"
                                    : "a retention metric counts the units active on the "
                                      "day; remove aggregate");
    }
  }

  if (type == MetricType::kRetention) {
    not_for_type("window", "a retention metric counts the events of day k after first "
                           "exposure, [k days, k+1 days); remove window");
    if (!f.count("day")) {
      Error(n, absl::StrCat(what, ": missing required field 'day'; add the day after first "
                                  "exposure on which the unit must be active, such as day: 1 "
                                  "or day: 7"));
    } else {
      const Entry& d = f.at("day");
      int day = 0;
      if (!IsPlain(d.value) || !absl::SimpleAtoi(d.value.Scalar(), &day)) {
        Error(d, absl::StrCat(what, " day ",
                              d.value.IsScalar() ? Quote(d.value.Scalar())
                                                 : NodeKindName(d.value),
                              " is not a whole number; use a day from 1 to ", kMaxRetentionDay,
                              ", such as day: 7"));
      } else if (day < 1 || day > kMaxRetentionDay) {
        Error(d, absl::StrCat(what, " day ", day, " is out of range; use a day from 1 to ",
                              kMaxRetentionDay, " (day 1 is the day after first exposure)"));
      } else {
        metric->retention_day = day;
      }
    }
  } else {
    not_for_type("day", "day is for retention metrics; bound the metric with window: "
                        "instead");
    if (f.count("window")) {
      if (auto w = GetWindow(f.at("window"), what + " window")) metric->window = *w;
    }
  }
}

std::optional<MetricSource> Parser::ParseMetricSource(const Entry& e, const std::string& what) {
  if (!ExpectMap(e.value, Pos(e), what, "{event: order_completed, aggregate: value}")) {
    return std::nullopt;
  }
  auto f = Fields(e.value, what, kMetricSourceFields);
  MetricSource source;
  bool ok = true;
  if (!f.count("event")) {
    Error(e, absl::StrCat(what, ": missing required field 'event'; add the event, such as "
                                "event: order_completed"));
    ok = false;
  } else if (auto ev = GetEventName(f.at("event"), what + " event")) {
    source.event = *ev;
  } else {
    ok = false;
  }
  // No default: counting events with no value would silently give 0.
  if (!f.count("aggregate")) {
    Error(e, absl::StrCat(what, ": missing required field 'aggregate'; add aggregate: value "
                                "to add up the events' values, or aggregate: count to count "
                                "the events"));
    ok = false;
  } else if (auto a = GetAggregation(f.at("aggregate"), what + " aggregate")) {
    source.aggregation = *a;
  } else {
    ok = false;
  }
  if (!ok) return std::nullopt;
  return source;
}

const Metric* Parser::DefinedMetric(const std::string& key) const {
  for (const Metric& m : config_->metrics) {
    if (m.key == key) return &m;
  }
  return nullptr;
}

// ---- Features.

void Parser::ParseFeatures(const Entry& section) {
  if (section.value.IsNull()) return;
  if (!ExpectList(section, "features")) return;
  std::map<std::string, int> first_line;
  int index = 0;
  for (auto it = section.value.begin(); it != section.value.end(); ++it, ++index) {
    const YAML::Node& n = *it;
    std::string what = absl::StrCat("feature #", index + 1);
    if (!ExpectMap(n, n.Mark(), what, "- {key: new_search, type: bool, default: false}")) {
      continue;
    }
    auto f = Fields(n, NameFor("feature", n, what), kFeatureFields);
    Feature feature;
    feature.location = {n.Mark().line + 1, n.Mark().column + 1};
    bool ok = true;
    if (!f.count("key")) {
      Error(n, absl::StrCat(what, ": missing required field 'key'; add key: <name>"));
      ok = false;
    } else if (auto key = GetKey(f.at("key"), "feature key")) {
      feature.key = *key;
      what = absl::StrCat("feature ", Quote(*key));
      auto [pos, inserted] = first_line.emplace(*key, feature.location.line);
      if (!inserted) {
        Error(f.at("key"), absl::StrCat("duplicate feature key ", Quote(*key),
                                        " (first defined at line ", pos->second,
                                        "); feature keys must be unique, rename or remove "
                                        "one"));
        ok = false;
      }
    } else {
      ok = false;
    }
    std::optional<ValueType> type;
    if (!f.count("type")) {
      Error(n, absl::StrCat(what, ": missing required field 'type'; add type: with one of "
                                  "bool, number, string, json"));
    } else {
      const Entry& t = f.at("type");
      static const std::pair<const char*, ValueType> kTypes[] = {
          {"bool", ValueType::kBool},
          {"number", ValueType::kNumber},
          {"string", ValueType::kString},
          {"json", ValueType::kJson}};
      for (const auto& [name, vt] : kTypes) {
        if (t.value.IsScalar() && t.value.Scalar() == name) type = vt;
      }
      if (!type) {
        Error(t, absl::StrCat(what, ": type ",
                              t.value.IsScalar() ? Quote(t.value.Scalar())
                                                 : NodeKindName(t.value),
                              " is not valid; use one of bool, number, string, json"));
      }
    }
    if (f.count("description")) {
      if (auto s = GetString(f.at("description"), what + " description")) {
        feature.description = *s;
      }
    }
    if (type) {
      feature.type = *type;
      if (!f.count("default")) {
        Error(n, absl::StrCat(what, ": missing required field 'default'; add the value units "
                                    "get when nothing else applies, e.g. default: ",
                              *type == ValueType::kBool     ? "false"
                              : *type == ValueType::kNumber ? "0"
                              : *type == ValueType::kString ? "off"
                                                            : "{}"));
      } else if (auto v = GetValue(f.at("default"), *type, what + " default")) {
        feature.default_value = *v;
      }
    }
    if (f.count("rules") && !f.at("rules").value.IsNull()) {
      const Entry& rules = f.at("rules");
      if (ExpectList(rules, what + " rules")) {
        int ri = 0;
        for (auto r = rules.value.begin(); r != rules.value.end(); ++r, ++ri) {
          const std::string rwhat = absl::StrCat(what, " rule #", ri + 1);
          if (!ExpectMap(*r, r->Mark(), rwhat, "- {when: {segment: new_users}, value: true}")) {
            continue;
          }
          auto rf = Fields(*r, rwhat, kRuleFields);
          FeatureRule rule;
          rule.location = {r->Mark().line + 1, r->Mark().column + 1};
          rule.salt = absl::StrCat(feature.key, ".rule", ri);
          if (!rf.count("value")) {
            Error(*r, absl::StrCat(rwhat, ": missing required field 'value'; add the value "
                                          "this rule sets"));
          } else if (type) {
            if (auto v = GetValue(rf.at("value"), *type, rwhat + " value")) rule.value = *v;
          }
          if (rf.count("when") && !rf.at("when").value.IsNull()) {
            const Entry& w = rf.at("when");
            rule.condition = ParseRootCondition(w.value, Pos(w), rwhat + " when");
            if (rule.condition) rule.condition_text = rule.condition->text;
          }
          if (rf.count("rollout")) {
            if (auto bp = GetFraction(rf.at("rollout"), rwhat + " rollout")) rule.rollout_bp = *bp;
          }
          if (rf.count("unit")) {
            if (auto s = GetKey(rf.at("unit"), rwhat + " unit")) rule.unit_id_type = *s;
          }
          if (rf.count("salt")) {
            if (auto s = GetString(rf.at("salt"), rwhat + " salt")) rule.salt = *s;
          }
          feature.rules.push_back(std::move(rule));
        }
      }
    }
    if (ok) {
      config_->features.push_back(std::move(feature));
    } else if (f.count("key") && f.at("key").value.IsScalar()) {
      broken_features_.insert(f.at("key").value.Scalar());
    }
  }
}

// ---- Experiments.

void Parser::ParseExperiments(const Entry& section) {
  if (section.value.IsNull()) return;
  if (!ExpectList(section, "experiments")) return;
  std::map<std::string, int> first_line;
  int index = 0;
  for (auto it = section.value.begin(); it != section.value.end(); ++it, ++index) {
    Experiment e;
    YAML::Node layer_range;
    if (!ParseExperiment(*it, index, &e, &layer_range)) continue;
    auto [pos, inserted] = first_line.emplace(e.key, e.location.line);
    if (!inserted) {
      Entry key_entry;
      for (const Entry& f : Entries(*it)) {
        if (f.key == "key") key_entry = f;
      }
      Error(key_entry, absl::StrCat("duplicate experiment key ", Quote(e.key),
                                    " (first defined at line ", pos->second,
                                    "); experiment keys must be unique, rename or remove "
                                    "one"));
      continue;
    }
    config_->experiments.push_back(std::move(e));
    experiment_nodes_.push_back(*it);
    layer_range_nodes_.push_back(layer_range);
  }
}

bool Parser::ParseExperiment(const YAML::Node& n, int index, Experiment* e,
                             YAML::Node* layer_range) {
  std::string what = absl::StrCat("experiment #", index + 1);
  if (!ExpectMap(n, n.Mark(), what, "- {key: my_test, status: draft, variants: [...]}")) {
    return false;
  }
  auto f = Fields(n, NameFor("experiment", n, what), kExperimentFields);
  e->location = {n.Mark().line + 1, n.Mark().column + 1};
  // Without a usable key, keep validating the rest but drop the experiment.
  bool key_ok = false;
  if (!f.count("key")) {
    Error(n, absl::StrCat(what, ": missing required field 'key'; add key: <name>"));
  } else if (std::optional<std::string> key = GetKey(f.at("key"), "experiment key")) {
    key_ok = true;
    e->key = *key;
    e->salt = *key;
    what = absl::StrCat("experiment ", Quote(*key));
  }

  if (f.count("description")) {
    if (auto s = GetString(f.at("description"), what + " description")) e->description = *s;
  }
  if (f.count("owner")) {
    if (auto s = GetString(f.at("owner"), what + " owner")) e->owner = *s;
  }
  if (!f.count("status")) {
    Error(n, absl::StrCat(what, ": missing required field 'status'; add status: with one of "
                                "draft, running, paused, stopped"));
  } else {
    const Entry& s = f.at("status");
    static const std::pair<const char*, ExperimentStatus> kStatuses[] = {
        {"draft", ExperimentStatus::kDraft},
        {"running", ExperimentStatus::kRunning},
        {"paused", ExperimentStatus::kPaused},
        {"stopped", ExperimentStatus::kStopped}};
    bool found = false;
    for (const auto& [name, st] : kStatuses) {
      if (s.value.IsScalar() && s.value.Scalar() == name) {
        e->status = st;
        found = true;
      }
    }
    if (!found) {
      Error(s, absl::StrCat(what, ": status ",
                            s.value.IsScalar() ? Quote(s.value.Scalar()) : NodeKindName(s.value),
                            " is not valid; use one of draft, running, paused, stopped"));
    }
  }
  if (f.count("unit")) {
    if (auto s = GetKey(f.at("unit"), what + " unit")) e->unit_id_type = *s;
  }
  if (f.count("salt")) {
    if (auto s = GetString(f.at("salt"), what + " salt")) e->salt = *s;
  }
  if (f.count("phase")) {
    const Entry& p = f.at("phase");
    int phase = 0;
    if (!IsPlain(p.value) || !absl::SimpleAtoi(p.value.Scalar(), &phase)) {
      Error(p, absl::StrCat(what, ": phase ",
                            p.value.IsScalar() ? Quote(p.value.Scalar()) : NodeKindName(p.value),
                            " is not an integer; use a whole number from 1 up"));
    } else if (phase < 1) {
      Error(p, absl::StrCat(what, ": phase ", phase,
                            " is less than 1; phases start at 1 (bump it to re-randomize)"));
    } else {
      e->phase = phase;
    }
  }
  if (f.count("traffic")) {
    if (auto bp = GetFraction(f.at("traffic"), what + " traffic")) e->traffic_bp = *bp;
  }
  if (f.count("start")) {
    e->start_time = GetTime(f.at("start"), what + " start");
  }
  if (f.count("end")) {
    e->end_time = GetTime(f.at("end"), what + " end");
    if (e->start_time && e->end_time && *e->start_time >= *e->end_time) {
      Error(f.at("end"), absl::StrCat(what, ": end ", f.at("end").value.Scalar(),
                                      " is not after start ", f.at("start").value.Scalar(),
                                      "; make end later than start"));
    }
  }
  if (f.count("targeting") && !f.at("targeting").value.IsNull()) {
    const Entry& t = f.at("targeting");
    e->targeting = ParseRootCondition(t.value, Pos(t), what + " targeting");
    if (e->targeting) e->targeting_text = e->targeting->text;
  }
  if (f.count("layer")) {
    if (auto s = GetString(f.at("layer"), what + " layer")) {
      e->layer = *s;
      const Layer* layer = config_->FindLayer(*s);
      if (layer == nullptr) {
        std::vector<std::string> known;
        for (const auto& [k, v] : config_->layers) known.push_back(k);
        Error(f.at("layer"),
              absl::StrCat(what, ": layer ", Quote(*s), " is not declared; ",
                           known.empty() ? "declare it under layers:"
                                         : absl::StrCat("declare it under layers: or use one of ",
                                                        absl::StrJoin(known, ", "))));
      } else if (layer->unit_id_type != e->unit_id_type) {
        const Entry& at = f.count("unit") ? f.at("unit") : f.at("layer");
        Error(at, absl::StrCat(what, ": unit ", Quote(e->unit_id_type), " differs from layer ",
                               Quote(*s), "'s unit ", Quote(layer->unit_id_type),
                               "; experiments in a layer must hash on the layer's unit"));
      }
    }
    if (!f.count("layer_range")) {
      Error(f.at("layer"),
            absl::StrCat(what, ": missing layer_range; add the experiment's share of the "
                               "layer, such as layer_range: [0, 0.5]"));
    }
  }
  if (f.count("layer_range")) {
    const Entry& r = f.at("layer_range");
    if (!f.count("layer")) {
      Error(r.key_node, absl::StrCat(what, ": layer_range is set but layer is not; add "
                                           "layer: <key> or remove layer_range"));
    }
    if (!r.value.IsSequence() || r.value.size() != 2) {
      Error(r, absl::StrCat(what, ": layer_range must be a list of two fractions [from, to), "
                                  "such as [0, 0.5]"));
    } else {
      Entry from{"layer_range", r.key_node, r.value[0]};
      Entry to{"layer_range", r.key_node, r.value[1]};
      auto a = GetFraction(from, what + " layer_range start");
      auto b = GetFraction(to, what + " layer_range end");
      if (a && b) {
        if (*a >= *b) {
          Error(r, absl::StrCat(what, ": layer_range [", r.value[0].Scalar(), ", ",
                                r.value[1].Scalar(),
                                ") is empty; the start must be below the end"));
        } else if (f.count("layer")) {
          e->layer_range = BucketRange{*a, *b};
          *layer_range = r.value;
        }
      }
    }
  }
  // Variants.
  std::map<std::string, int> variant_lines;
  if (!f.count("variants")) {
    Error(n, absl::StrCat(what, ": missing required field 'variants'; add at least one, "
                                "such as variants: [{key: control, weight: 50}, {key: "
                                "treatment, weight: 50}]"));
  } else if (const Entry& vs = f.at("variants"); ExpectList(vs, what + " variants")) {
    if (vs.value.size() == 0) {
      Error(vs, absl::StrCat(what, ": variants is empty; add at least one variant"));
    }
    int vi = 0;
    bool weights_ok = true;
    for (auto it = vs.value.begin(); it != vs.value.end(); ++it, ++vi) {
      std::string vwhat = absl::StrCat(what, " variant #", vi + 1);
      if (!ExpectMap(*it, it->Mark(), vwhat, "- {key: control, weight: 50}")) {
        weights_ok = false;
        continue;
      }
      auto vf = Fields(*it, vwhat, kVariantFields);
      Variant v;
      v.location = {it->Mark().line + 1, it->Mark().column + 1};
      if (!vf.count("key")) {
        Error(*it, absl::StrCat(vwhat, ": missing required field 'key'; add key: <name>"));
      } else if (auto k = GetKey(vf.at("key"), what + " variant key")) {
        v.key = *k;
        vwhat = absl::StrCat(what, " variant ", Quote(*k));
        auto [pos, inserted] = variant_lines.emplace(*k, v.location.line);
        if (!inserted) {
          Error(vf.at("key"), absl::StrCat(what, ": duplicate variant key ", Quote(*k),
                                           " (first at line ", pos->second,
                                           "); variant keys must be unique in an experiment"));
        }
      }
      if (!vf.count("weight")) {
        Error(*it, absl::StrCat(vwhat, ": missing required field 'weight'; add weight: such "
                                       "as weight: 50"));
        weights_ok = false;
      } else if (auto w = GetWeight(vf.at("weight"), vwhat + " weight")) {
        v.weight = *w;
        v.weight_text = vf.at("weight").value.Scalar();
      } else {
        weights_ok = false;
      }
      if (vf.count("features") && !vf.at("features").value.IsNull()) {
        const Entry& fs = vf.at("features");
        if (ExpectMap(fs.value, Pos(fs), vwhat + " features",
                      "features: {checkout_flow: one_page}")) {
          for (const Entry& fe : Entries(fs.value)) {
            const Feature* feature = nullptr;
            for (const Feature& ft : config_->features) {
              if (ft.key == fe.key) feature = &ft;
            }
            if (feature == nullptr) {
              if (broken_features_.count(fe.key)) continue;
              Error(fe.key_node, absl::StrCat(vwhat, ": feature ", Quote(fe.key),
                                              " is not declared; add it under features: "
                                              "with a type and default"));
              continue;
            }
            if (auto val = GetValue(fe, feature->type,
                                    absl::StrCat(vwhat, ": value of feature ", Quote(fe.key)))) {
              v.features[fe.key] = *val;
            }
          }
        }
      }
      e->variants.push_back(std::move(v));
    }
    if (weights_ok && !e->variants.empty()) {
      uint64_t sum = 0;
      for (const Variant& v : e->variants) sum += v.weight;
      if (sum == 0) {
        Error(vs.key_node, absl::StrCat(what, ": variant weights sum to 0; give at least one "
                                              "variant a positive weight"));
      } else if (sum >= kMaxWeightSum / kWeightScale) {
        Error(vs.key_node, absl::StrCat(what, ": variant weights are too large; use "
                                              "relative weights such as 50/50"));
      } else {
        std::vector<uint64_t> weights;
        for (const Variant& v : e->variants) weights.push_back(v.weight);
        VariantRanges ranges = ComputeVariantRanges(weights, e->traffic_bp);
        for (size_t i = 0; i < e->variants.size(); ++i) {
          e->variants[i].full_range = ranges.full[i];
          e->variants[i].active_range = ranges.active[i];
        }
      }
    }
  }

  if (f.count("rollout_variant")) {
    const Entry& rv = f.at("rollout_variant");
    if (auto s = GetString(rv, what + " rollout_variant")) {
      e->rollout_variant = *s;
      if (e->status != ExperimentStatus::kStopped) {
        Error(rv, absl::StrCat(what, ": rollout_variant is only allowed when status is "
                                     "stopped; set status: stopped to roll out ",
                               Quote(*s), ", or remove rollout_variant"));
      }
      if (!variant_lines.empty() && !variant_lines.count(*s)) {
        std::vector<std::string> known;
        for (const auto& [k, line] : variant_lines) known.push_back(k);
        Error(rv, absl::StrCat(what, ": rollout_variant ", Quote(*s),
                               " is not a variant of this experiment; use one of ",
                               absl::StrJoin(known, ", ")));
      }
    }
  }

  if (f.count("qa_overrides") && !f.at("qa_overrides").value.IsNull()) {
    const Entry& qa = f.at("qa_overrides");
    std::map<std::string, std::pair<std::string, int>> seen;  // unit -> (variant, line)
    if (ExpectMap(qa.value, Pos(qa), what + " qa_overrides", "qa_overrides: {treatment: [qa-1]}")) {
      for (const Entry& q : Entries(qa.value)) {
        if (!variant_lines.empty() && !variant_lines.count(q.key)) {
          std::vector<std::string> known;
          for (const auto& [k, line] : variant_lines) known.push_back(k);
          Error(q.key_node, absl::StrCat(what, ": qa_overrides names unknown variant ",
                                         Quote(q.key), "; use one of ",
                                         absl::StrJoin(known, ", ")));
          continue;
        }
        if (!ExpectList(q, absl::StrCat(what, " qa_overrides ", Quote(q.key)))) continue;
        for (auto u = q.value.begin(); u != q.value.end(); ++u) {
          if (!u->IsScalar() || u->Scalar().empty()) {
            Error(*u, absl::StrCat(what, ": qa_overrides ", Quote(q.key),
                                   " lists an empty or non-text unit id; list unit ids as "
                                   "text"));
            continue;
          }
          const std::string& id = u->Scalar();
          if (id.size() > kMaxUnitIdBytes) {
            Error(*u, absl::StrCat(what, ": qa_overrides unit id is longer than ",
                                   kMaxUnitIdBytes, " bytes; use the real unit id"));
            continue;
          }
          auto [pos, inserted] = seen.emplace(id, std::make_pair(q.key, u->Mark().line + 1));
          if (!inserted) {
            Error(*u, absl::StrCat(what, ": unit id ", Quote(id),
                                   " is listed twice in qa_overrides (first under ",
                                   Quote(pos->second.first), " at line ", pos->second.second,
                                   "); list each unit id once"));
            continue;
          }
          e->qa_overrides[id] = q.key;
        }
      }
    }
  }

  if (f.count("metrics") && !f.at("metrics").value.IsNull()) {
    const Entry& m = f.at("metrics");
    if (ExpectList(m, what + " metrics")) {
      std::set<std::string> seen;
      for (auto it = m.value.begin(); it != m.value.end(); ++it) {
        if (!it->IsScalar() || it->Scalar().empty()) {
          Error(*it, absl::StrCat(what, ": metrics must be names, such as order_conversion"));
          continue;
        }
        const std::string& name = it->Scalar();
        if (!seen.insert(name).second) {
          Error(*it, absl::StrCat(what, ": metric ", Quote(name),
                                  " is listed twice; list it once"));
          continue;
        }
        e->metrics.push_back(name);
        if (DefinedMetric(name) == nullptr && !broken_metrics_.count(name)) {
          std::vector<std::string> known;
          for (const Metric& defined : config_->metrics) known.push_back(defined.key);
          const std::string near = Closest(name, known);
          Error(*it, absl::StrCat(what, ": metric ", Quote(name), " is not defined",
                                  near.empty()
                                      ? "; define it under metrics: with a type and an event"
                                      : absl::StrCat(" (did you mean ", Quote(near),
                                                     "?); fix the name, or define it under "
                                                     "metrics:")));
        }
      }
    }
  }

  // The first listed metric that can be primary, for hints.
  std::string primary_hint;
  for (const std::string& name : e->metrics) {
    const Metric* m = DefinedMetric(name);
    if (m != nullptr && !m->guardrail) {
      primary_hint = name;
      break;
    }
  }
  if (f.count("primary_metric")) {
    const Entry& pm = f.at("primary_metric");
    if (auto s = GetString(pm, what + " primary_metric")) {
      e->primary_metric = *s;
      const Metric* m = DefinedMetric(*s);
      if (std::find(e->metrics.begin(), e->metrics.end(), *s) == e->metrics.end()) {
        if (e->metrics.empty()) {
          Error(pm, absl::StrCat(what, ": primary_metric ", Quote(*s),
                                 " is not in the experiment's metrics; list them, such as "
                                 "metrics: [",
                                 *s, "]"));
        } else {
          const std::string near = Closest(*s, e->metrics);
          Error(pm, absl::StrCat(what, ": primary_metric ", Quote(*s),
                                 " is not one of the experiment's metrics (",
                                 absl::StrJoin(e->metrics, ", "), ")",
                                 near.empty() ? "" : absl::StrCat(" (did you mean ",
                                                                  Quote(near), "?)"),
                                 "; name one of them, or add it to metrics"));
        }
      } else if (m != nullptr && m->guardrail) {
        Error(pm, absl::StrCat(
                      what, ": primary_metric ", Quote(*s),
                      " is a guardrail, and a guardrail cannot be the primary metric; name "
                      "the metric the decision is made on",
                      primary_hint.empty() ? " (add one to metrics)"
                                           : absl::StrCat(", such as ", primary_hint),
                      ", and keep ", *s, " in metrics as a guardrail"));
      }
    }
  } else if (!e->metrics.empty()) {
    Error(f.at("metrics").key_node,
          absl::StrCat(what, ": metrics are listed but primary_metric is missing; name the "
                             "metric the decision is made on, such as primary_metric: ",
                       primary_hint.empty() ? e->metrics[0] : primary_hint));
  }
  if (f.count("sticky")) {
    if (auto b = GetBool(f.at("sticky"), what + " sticky")) e->sticky = *b;
  }
  return key_ok;
}

// Checks across experiments: layer overlaps and features set by experiments
// that can share a unit.
void Parser::CheckExperiments() {
  const auto& exps = config_->experiments;
  for (size_t j = 0; j < exps.size(); ++j) {
    const Experiment& b = exps[j];
    if (b.layer.empty() || b.status == ExperimentStatus::kStopped ||
        !layer_range_nodes_[j].IsDefined() || layer_range_nodes_[j].IsNull()) {
      continue;
    }
    for (size_t i = 0; i < j; ++i) {
      const Experiment& a = exps[i];
      if (a.layer != b.layer || a.status == ExperimentStatus::kStopped ||
          !layer_range_nodes_[i].IsDefined() || layer_range_nodes_[i].IsNull()) {
        continue;
      }
      if (a.layer_range.Overlaps(b.layer_range)) {
        const YAML::Node& ra = layer_range_nodes_[i];
        const YAML::Node& rb = layer_range_nodes_[j];
        Error(rb, absl::StrFormat(
                      "experiment '%s': layer_range [%s, %s) overlaps experiment '%s' "
                      "[%s, %s) (line %d) in layer '%s'; give experiments in one layer "
                      "ranges that do not overlap, or stop one",
                      b.key, rb[0].Scalar(), rb[1].Scalar(), a.key, ra[0].Scalar(),
                      ra[1].Scalar(), a.location.line, b.layer));
      }
    }
  }

  for (size_t j = 0; j < exps.size(); ++j) {
    const Experiment& b = exps[j];
    if (b.status != ExperimentStatus::kRunning) continue;
    std::set<std::string> b_features;
    for (const Variant& v : b.variants) {
      for (const auto& [k, val] : v.features) b_features.insert(k);
    }
    for (size_t i = 0; i < j; ++i) {
      const Experiment& a = exps[i];
      if (a.status != ExperimentStatus::kRunning) continue;
      if (!a.layer.empty() && a.layer == b.layer) continue;
      std::vector<std::string> shared;
      std::set<std::string> a_features;
      for (const Variant& v : a.variants) {
        for (const auto& [k, val] : v.features) a_features.insert(k);
      }
      for (const std::string& k : b_features) {
        if (a_features.count(k)) shared.push_back(k);
      }
      if (shared.empty()) continue;
      Warning(experiment_nodes_[j],
              absl::StrFormat("experiment '%s' and experiment '%s' (line %d) are both running "
                              "and both set feature%s %s, but are not in one layer, so a unit "
                              "can be in both; put them in the same layer with disjoint "
                              "layer_range values",
                              b.key, a.key, a.location.line, shared.size() > 1 ? "s" : "",
                              absl::StrJoin(shared, ", ")));
    }
  }
}

ParseResult Parser::Run() {
  ParseResult result;
  if (text_.size() > kMaxConfigBytes) {
    Report(YAML::Mark::null_mark(), ConfigTooLargeMessage(text_.size()), false);
    result.diagnostics = std::move(diags_);
    return result;
  }
  if (const size_t bad = FirstInvalidUtf8(text_); bad != absl::string_view::npos) {
    const absl::string_view before = text_.substr(0, bad);
    const size_t newline = before.rfind('\n');
    YAML::Mark mark = YAML::Mark::null_mark();
    mark.line = static_cast<int>(std::count(before.begin(), before.end(), '\n'));
    // Columns count bytes, as yaml-cpp's do.
    mark.column = static_cast<int>(newline == absl::string_view::npos ? bad : bad - newline - 1);
    Report(mark, absl::StrFormat("byte 0x%02x is not valid UTF-8; config files must be UTF-8: "
                                 "save the file as UTF-8 and fix or remove this character",
                                 static_cast<unsigned char>(text_[bad])),
           false);
    result.diagnostics = std::move(diags_);
    return result;
  }
  YAML::Node root;
  try {
    root = YAML::Load(std::string(text_));
  } catch (const YAML::DeepRecursion& ex) {
    Report(ex.mark, absl::StrCat("the YAML nests too deeply here (more than ", ex.depth(),
                                 " levels); flatten it (conditions may nest at most ",
                                 kMaxConditionDepth, " levels)"),
           false);
    result.diagnostics = std::move(diags_);
    return result;
  } catch (const YAML::Exception& ex) {
    // YAML forbids tabs in indentation, and yaml-cpp's message does not say so.
    const bool tab_indent = text_.find("\n\t") != absl::string_view::npos ||
                            absl::StartsWith(text_, "\t");
    Report(ex.mark, absl::StrCat("YAML syntax error: ", ex.msg,
                                 tab_indent ? "; indent with spaces, not tabs"
                                            : "; fix the YAML (check indentation, colons "
                                              "and quotes)"),
           false);
    result.diagnostics = std::move(diags_);
    return result;
  }
  try {
    std::vector<YAML::Node> path;
    if (!CheckYamlNodes(root, &path)) {
      // Reported; the sections are not read (see CheckYamlNodes).
    } else if (!root.IsNull() && !root.IsMap()) {
      Error(root, absl::StrCat("the config must be a map of sections (",
                               JoinNames(kTopLevelFields), "), not ", NodeKindName(root)));
    } else {
      auto sections = Fields(root, "config", kTopLevelFields);
      // Order matters: conditions need attributes, experiments need the rest.
      if (sections.count("attributes")) ParseAttributes(sections.at("attributes"));
      if (sections.count("segments")) ParseSegments(sections.at("segments"));
      if (sections.count("layers")) ParseLayers(sections.at("layers"));
      if (sections.count("holdout")) ParseHoldout(sections.at("holdout"));
      if (sections.count("metrics")) ParseMetrics(sections.at("metrics"));
      if (sections.count("features")) ParseFeatures(sections.at("features"));
      if (sections.count("experiments")) ParseExperiments(sections.at("experiments"));
      CheckExperiments();
    }
  } catch (const YAML::Exception& ex) {
    // yaml-cpp only throws here on a bug in our traversal; report it rather than crash.
    Report(ex.mark, absl::StrCat("internal error reading the YAML: ", ex.msg,
                                 "; please report this with the config"),
           false);
  }

  std::stable_sort(diags_.begin(), diags_.end(), [](const Diagnostic& a, const Diagnostic& b) {
    return std::tie(a.line, a.column) < std::tie(b.line, b.column);
  });
  // Aliases can make the same problem show up twice.
  diags_.erase(std::unique(diags_.begin(), diags_.end(),
                           [](const Diagnostic& a, const Diagnostic& b) {
                             return a.line == b.line && a.column == b.column &&
                                    a.message == b.message && a.warning == b.warning;
                           }),
               diags_.end());
  result.diagnostics = std::move(diags_);
  if (errors_ > 0) return result;
  config_->version = ConfigVersionOf(text_);
  config_->source_path = file_;
  result.config = IndexedConfig::Build(std::move(*config_));
  return result;
}

}  // namespace

std::string Diagnostic::ToString() const {
  std::string out = file;
  if (line > 0) absl::StrAppend(&out, ":", line, ":", column);
  absl::StrAppend(&out, ": ", warning ? "warning: " : "", message);
  return out;
}

std::string ParseResult::FormatDiagnostics() const {
  std::string out;
  for (const Diagnostic& d : diagnostics) absl::StrAppend(&out, d.ToString(), "\n");
  return out;
}

ParseResult ParseConfig(absl::string_view text, absl::string_view file_name) {
  return Parser(text, file_name).Run();
}

ParseResult ParseConfigFile(const std::string& path) {
  std::string text;
  errno = 0;
  std::FILE* f = std::fopen(path.c_str(), "rb");
  int err = 0;
  struct stat st;
  std::string too_large;
  if (f == nullptr) {
    err = errno;
  } else if (fstat(fileno(f), &st) == 0 && S_ISREG(st.st_mode) &&
             static_cast<uint64_t>(st.st_size) > kMaxConfigBytes) {
    too_large = ConfigTooLargeMessage(st.st_size);  // refused without reading it
    std::fclose(f);
  } else {
    char buf[1 << 16];
    size_t n;
    // Past the limit, ParseConfig refuses it (a file that grew, or a pipe).
    while (text.size() <= kMaxConfigBytes && (n = std::fread(buf, 1, sizeof(buf), f)) > 0) {
      text.append(buf, n);
    }
    if (std::ferror(f)) err = errno != 0 ? errno : EIO;
    std::fclose(f);
  }
  if (f == nullptr || err != 0 || !too_large.empty()) {
    ParseResult result;
    Diagnostic d;
    d.file = path;
    d.message = !too_large.empty() ? std::move(too_large)
                                   : absl::StrCat("cannot read file: ", std::strerror(err),
                                                  "; check the path");
    result.diagnostics.push_back(std::move(d));
    return result;
  }
  return ParseConfig(text, path);
}

std::string ConfigTooLargeMessage(uint64_t size_bytes) {
  return absl::StrFormat(
      "the config is %d bytes (%.1f MiB), more than the limit of %d MiB (%d bytes); keep it "
      "smaller (qa_overrides are for a few test units, not for populations: target those "
      "with an attribute)",
      size_bytes, static_cast<double>(size_bytes) / (1 << 20), kMaxConfigBytes >> 20,
      kMaxConfigBytes);
}

std::string ConfigVersionOf(absl::string_view text) {
  return absl::StrFormat("%016x", XXH3_64bits(text.data(), text.size()));
}

}  // namespace abexp
