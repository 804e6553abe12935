// Walking the YAML of a config: plain and quoted scalars, node kinds,
// JSON rendering, the check of the whole document before the sections are
// read, and reading a map's fields.
#include <algorithm>
#include <iterator>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/strip.h"
#include "server/core/config_parser_internal.h"

namespace abexp {
namespace config_parser_internal {
namespace {

constexpr absl::string_view kCoreTagPrefix = "tag:yaml.org,2002:";

const RE2& JsonNumberPattern() {
  static const RE2* const re =
      new RE2(R"(-?(0|[1-9]\d*)(\.\d+)?([eE][-+]?\d+)?)");
  return *re;
}

}  // namespace

const RE2& NumberPattern() {  // YAML-ish decimal numbers, for number values
  static const RE2* const re =
      new RE2(R"([-+]?(\d+(\.\d*)?|\.\d+)([eE][-+]?\d+)?)");
  return *re;
}

bool IsPlain(const YAML::Node& n) {
  if (!n.IsScalar()) return false;
  const std::string& tag = n.Tag();
  if (tag == "?") return true;
  absl::string_view type(tag);
  return absl::ConsumePrefix(&type, kCoreTagPrefix) &&
         (type == "int" || type == "float" || type == "bool" || type == "null");
}
bool IsQuoted(const YAML::Node& n) { return n.IsScalar() && !IsPlain(n); }

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

namespace {

// An explicit tag as written: !!str for core schema tags, else as is.
std::string TagText(const std::string& tag) {
  absl::string_view t(tag);
  if (absl::ConsumePrefix(&t, kCoreTagPrefix)) return absl::StrCat("!!", t);
  return tag;
}

}  // namespace

std::optional<bool> PlainBool(const YAML::Node& n) {
  if (!IsPlain(n)) return std::nullopt;
  const std::string& s = n.Scalar();
  if (s == "true" || s == "True" || s == "TRUE") return true;
  if (s == "false" || s == "False" || s == "FALSE") return false;
  return std::nullopt;
}

std::optional<double> PlainNumber(const YAML::Node& n) {
  if (!IsPlain(n) || !RE2::FullMatch(n.Scalar(), NumberPattern()))
    return std::nullopt;
  double d = 0;
  if (!absl::SimpleAtod(n.Scalar(), &d) || !std::isfinite(d))
    return std::nullopt;
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

std::string Quote(const std::string& s) { return absl::StrCat("'", s, "'"); }

namespace {

// Levenshtein distance, for "did you mean" hints on field names.
size_t EditDistance(absl::string_view a, absl::string_view b) {
  std::vector<size_t> row(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    size_t prev = row[0];
    row[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      const size_t cur = row[j];
      row[j] = std::min(
          {row[j] + 1, row[j - 1] + 1, prev + (a[i - 1] == b[j - 1] ? 0 : 1)});
      prev = cur;
    }
  }
  return row[b.size()];
}

}  // namespace

std::string Closest(const std::string& name,
                    const std::vector<std::string>& candidates) {
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

std::string OperandText(const YAML::Node& n) {
  const std::string& s = n.Scalar();
  const bool needs_quotes =
      s.empty() || s.find_first_of(" ,[]()\"'") != std::string::npos;
  if (!needs_quotes) return s;
  std::string out;
  AppendJsonString(s, &out);
  return out;
}

std::string Parser::NameFor(const char* kind, const YAML::Node& map,
                            const std::string& fallback) {
  for (const Entry& e : Entries(map)) {
    if (e.key == "key" && e.value.IsScalar()) {
      return absl::StrCat(kind, " ", Quote(e.value.Scalar()));
    }
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
bool Parser::CheckYamlNodes(const YAML::Node& n,
                            std::vector<YAML::Node>* path) {
  if (++nodes_seen_ > kMaxYamlNodes) {
    Error(n,
          absl::StrCat("the document expands to more than ", kMaxYamlNodes,
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
        Error(p,
              "this node contains itself through an alias (as in &x [*x]), so "
              "it never "
              "ends; an alias must not refer to a node that contains it: write "
              "the "
              "repeated part out");
        return false;
      }
    }
    Error(n, absl::StrCat(
                 "the YAML nests more than ", kMaxYamlDepth,
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
        Error(k, "a mapping key must be a plain name, not " +
                     std::string(NodeKindName(k)) + "; write the key as text");
      } else {
        CheckTag(k);
        auto [pos, inserted] = seen.emplace(k.Scalar(), k.Mark());
        if (!inserted) {
          Error(k, absl::StrFormat(
                       "duplicate key '%s' (first at line %d); remove one of "
                       "them or rename it",
                       k.Scalar(), pos->second.line + 1));
        }
      }
      ok = CheckYamlNodes(it->second, path);
    }
  } else {
    for (auto it = n.begin(); ok && it != n.end(); ++it)
      ok = CheckYamlNodes(*it, path);
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
  static const char* const kCoreTypes[] = {"str",  "int", "float", "bool",
                                           "null", "map", "seq"};
  if (!absl::ConsumePrefix(&type, kCoreTagPrefix) ||
      std::find(std::begin(kCoreTypes), std::end(kCoreTypes), type) ==
          std::end(kCoreTypes)) {
    Error(n,
          absl::StrCat(
              "tag ", TagText(tag),
              " is not a YAML core schema tag; remove it (abexp configs are "
              "plain "
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
    if (!it->first.IsScalar()) continue;  // reported by CheckYamlNodes
    if (!seen.insert(it->first.Scalar()).second) continue;
    out.push_back(Entry{it->first.Scalar(), it->first, it->second});
  }
  return out;
}

std::map<std::string, Entry> Parser::Fields(const YAML::Node& map,
                                            const std::string& what,
                                            const char* const* allowed,
                                            size_t num_allowed) {
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
      Error(e.key_node,
            absl::StrCat(what, ": unknown field ", Quote(e.key), hint,
                         "; allowed fields are ",
                         absl::StrJoin(allowed, allowed + num_allowed, ", ")));
      continue;
    }
    out.emplace(e.key, std::move(e));
  }
  return out;
}

bool Parser::ExpectMap(const YAML::Node& n, const YAML::Mark& mark,
                       const std::string& what, const char* example) {
  if (n.IsMap()) return true;
  Report(mark,
         absl::StrCat(what, " must be a map, not ", NodeKindName(n),
                      "; write it like ", example),
         false);
  return false;
}

bool Parser::ExpectList(const Entry& e, const std::string& what) {
  if (e.value.IsSequence()) return true;
  Error(e, absl::StrCat(what, " must be a list, not ", NodeKindName(e.value),
                        "; write it as [a, b] or as lines starting with '- '"));
  return false;
}

}  // namespace config_parser_internal
}  // namespace abexp
