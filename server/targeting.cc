#include "server/targeting.h"

#include <algorithm>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"

namespace abexp {
namespace {

bool IsNumericIdentifier(absl::string_view s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; });
}

// Precedence of two pre-release identifiers (semver.org rule 11.4).
int CompareIdentifier(const std::string& a, const std::string& b) {
  const bool a_num = IsNumericIdentifier(a);
  const bool b_num = IsNumericIdentifier(b);
  if (a_num && b_num) {
    if (a.size() != b.size()) return a.size() < b.size() ? -1 : 1;
    return a.compare(b) < 0 ? -1 : (a == b ? 0 : 1);
  }
  if (a_num != b_num) return a_num ? -1 : 1;
  const int c = a.compare(b);
  return c < 0 ? -1 : (c > 0 ? 1 : 0);
}

template <typename T>
int Compare3(const T& a, const T& b) {
  return a < b ? -1 : (b < a ? 1 : 0);
}

// Applies an ordering operator to the sign of a comparison.
bool OrderHolds(CompareOp op, int cmp) {
  switch (op) {
    case CompareOp::kEq:
      return cmp == 0;
    case CompareOp::kNe:
      return cmp != 0;
    case CompareOp::kLt:
      return cmp < 0;
    case CompareOp::kLte:
      return cmp <= 0;
    case CompareOp::kGt:
      return cmp > 0;
    case CompareOp::kGte:
      return cmp >= 0;
    default:
      return false;
  }
}

// Compares the unit's value with one operand: negative, zero or positive, or
// nullopt when they cannot be compared (a type mismatch the validator
// should have rejected, or an unparsable version).
std::optional<int> CompareValue(const Condition& c, const AttributeValue& value,
                                const Operand& operand) {
  switch (c.attribute_type) {
    case AttributeType::kString: {
      const auto* v = std::get_if<std::string>(&value);
      const auto* o = std::get_if<std::string>(&operand);
      if (v == nullptr || o == nullptr) return std::nullopt;
      return Compare3(*v, *o);
    }
    case AttributeType::kNumber: {
      const auto* v = std::get_if<double>(&value);
      const auto* o = std::get_if<double>(&operand);
      if (v == nullptr || o == nullptr) return std::nullopt;
      return Compare3(*v, *o);
    }
    case AttributeType::kBool: {
      const auto* v = std::get_if<bool>(&value);
      const auto* o = std::get_if<bool>(&operand);
      if (v == nullptr || o == nullptr) return std::nullopt;
      return Compare3(*v, *o);
    }
    case AttributeType::kSemver: {
      const auto* v = std::get_if<std::string>(&value);
      const auto* o = std::get_if<SemVer>(&operand);
      if (v == nullptr || o == nullptr) return std::nullopt;
      const std::optional<SemVer> parsed = SemVer::Parse(*v);
      if (!parsed) return std::nullopt;
      return parsed->Compare(*o);
    }
  }
  return std::nullopt;
}

bool EvaluateCompare(const Condition& c, const Attributes& attributes) {
  const auto it = attributes.find(c.attribute);
  const bool present = it != attributes.end();
  if (c.op == CompareOp::kExists) {
    const bool want = c.operands.empty() || std::get_if<bool>(&c.operands[0]) == nullptr ||
                      *std::get_if<bool>(&c.operands[0]);
    return present == want;
  }
  if (!present) return false;
  const AttributeValue& value = it->second;
  switch (c.op) {
    case CompareOp::kRegex: {
      const auto* s = std::get_if<std::string>(&value);
      return s != nullptr && c.regex != nullptr && RE2::PartialMatch(*s, *c.regex);
    }
    case CompareOp::kIn:
    case CompareOp::kNotIn: {
      bool found = false;
      for (const Operand& operand : c.operands) {
        const std::optional<int> cmp = CompareValue(c, value, operand);
        if (!cmp) return false;
        if (*cmp == 0) {
          found = true;
          break;
        }
      }
      return c.op == CompareOp::kIn ? found : !found;
    }
    default: {
      if (c.operands.empty()) return false;
      const std::optional<int> cmp = CompareValue(c, value, c.operands[0]);
      return cmp.has_value() && OrderHolds(c.op, *cmp);
    }
  }
}

}  // namespace

const char* AttributeTypeName(AttributeType type) {
  switch (type) {
    case AttributeType::kString:
      return "string";
    case AttributeType::kNumber:
      return "number";
    case AttributeType::kBool:
      return "bool";
    case AttributeType::kSemver:
      return "semver";
  }
  return "string";
}

const char* CompareOpName(CompareOp op) {
  switch (op) {
    case CompareOp::kEq:
      return "eq";
    case CompareOp::kNe:
      return "ne";
    case CompareOp::kIn:
      return "in";
    case CompareOp::kNotIn:
      return "not_in";
    case CompareOp::kLt:
      return "lt";
    case CompareOp::kLte:
      return "lte";
    case CompareOp::kGt:
      return "gt";
    case CompareOp::kGte:
      return "gte";
    case CompareOp::kRegex:
      return "regex";
    case CompareOp::kExists:
      return "exists";
  }
  return "eq";
}

std::optional<SemVer> SemVer::Parse(absl::string_view text) {
  static const LazyRE2 kPattern = {
      R"(v?(\d+)(?:\.(\d+))?(?:\.(\d+))?)"
      R"((?:-([0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*))?)"
      R"((?:\+[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*)?)"};
  std::string major, minor, patch, prerelease;
  if (!RE2::FullMatch(re2::StringPiece(text.data(), text.size()), *kPattern, &major, &minor, &patch, &prerelease)) {
    return std::nullopt;
  }
  SemVer v;
  if (!absl::SimpleAtoi(major, &v.major)) return std::nullopt;
  if (!minor.empty() && !absl::SimpleAtoi(minor, &v.minor)) return std::nullopt;
  if (!patch.empty() && !absl::SimpleAtoi(patch, &v.patch)) return std::nullopt;
  if (!prerelease.empty()) v.prerelease = absl::StrSplit(prerelease, '.');
  return v;
}

int SemVer::Compare(const SemVer& other) const {
  if (int c = Compare3(major, other.major)) return c;
  if (int c = Compare3(minor, other.minor)) return c;
  if (int c = Compare3(patch, other.patch)) return c;
  // A version without a pre-release ranks above one with it.
  if (prerelease.empty() || other.prerelease.empty()) {
    return Compare3(prerelease.empty(), other.prerelease.empty());
  }
  const size_t n = std::min(prerelease.size(), other.prerelease.size());
  for (size_t i = 0; i < n; ++i) {
    if (int c = CompareIdentifier(prerelease[i], other.prerelease[i])) return c;
  }
  return Compare3(prerelease.size(), other.prerelease.size());
}

std::string SemVer::ToString() const {
  std::string out = absl::StrCat(major, ".", minor, ".", patch);
  if (!prerelease.empty()) absl::StrAppend(&out, "-", absl::StrJoin(prerelease, "."));
  return out;
}

std::string FormatAttributeValue(const AttributeValue& value) {
  if (const auto* s = std::get_if<std::string>(&value)) return *s;
  if (const auto* d = std::get_if<double>(&value)) return absl::StrCat(*d);
  return std::get<bool>(value) ? "true" : "false";
}

bool Evaluate(const Condition& condition, const Attributes& attributes) {
  switch (condition.kind) {
    case ConditionKind::kAll:
      for (const auto& child : condition.children) {
        if (!Evaluate(*child, attributes)) return false;
      }
      return true;
    case ConditionKind::kAny:
      for (const auto& child : condition.children) {
        if (Evaluate(*child, attributes)) return true;
      }
      return false;
    case ConditionKind::kNot:
      return condition.children.empty() || !Evaluate(*condition.children[0], attributes);
    case ConditionKind::kSegment:
      return condition.segment != nullptr && Evaluate(*condition.segment, attributes);
    case ConditionKind::kCompare:
      return EvaluateCompare(condition, attributes);
  }
  return false;
}

bool EvaluateWithTrace(const Condition& condition, const Attributes& attributes,
                       std::vector<RuleTraceEntry>* trace, int depth) {
  const size_t slot = trace->size();
  trace->push_back({depth, condition.text, false, ""});
  bool matched = false;
  switch (condition.kind) {
    case ConditionKind::kAll: {
      matched = true;
      for (const auto& child : condition.children) {
        matched = EvaluateWithTrace(*child, attributes, trace, depth + 1) && matched;
      }
      break;
    }
    case ConditionKind::kAny: {
      for (const auto& child : condition.children) {
        matched = EvaluateWithTrace(*child, attributes, trace, depth + 1) || matched;
      }
      break;
    }
    case ConditionKind::kNot:
      matched = condition.children.empty() ||
                !EvaluateWithTrace(*condition.children[0], attributes, trace, depth + 1);
      break;
    case ConditionKind::kSegment:
      matched = condition.segment != nullptr &&
                EvaluateWithTrace(*condition.segment, attributes, trace, depth + 1);
      break;
    case ConditionKind::kCompare: {
      matched = EvaluateCompare(condition, attributes);
      const auto it = attributes.find(condition.attribute);
      (*trace)[slot].actual =
          it == attributes.end() ? "<missing>" : FormatAttributeValue(it->second);
      break;
    }
  }
  (*trace)[slot].matched = matched;
  return matched;
}

}  // namespace abexp
