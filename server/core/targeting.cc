#include "server/core/targeting.h"

#include <algorithm>
#include <limits>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"

namespace abexp {
namespace {

bool IsNumericIdentifier(absl::string_view s) {
  return !s.empty() && std::all_of(s.begin(), s.end(),
                                   [](char c) { return c >= '0' && c <= '9'; });
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

// What CompareValue and EqualValue return when the two cannot be compared:
// a type mismatch the validator should have rejected, or an unparsable
// version. (An int rather than a std::optional: GCC returns an optional
// through memory, which stalls every comparison on reading it back.)
constexpr int kIncomparable = 2;

// Compares the unit's value with one operand: -1, 0, 1 or kIncomparable.
// For kSemver, `version` is the value parsed (null when it does not parse).
int CompareValue(const Condition& c, const AttributeValue& value,
                 const SemVer* version, const Operand& operand) {
  switch (c.attribute_type) {
    case AttributeType::kString: {
      const auto* v = std::get_if<std::string>(&value);
      const auto* o = std::get_if<std::string>(&operand);
      if (v == nullptr || o == nullptr) return kIncomparable;
      const int cmp = v->compare(*o);  // one pass, where Compare3 makes two
      return cmp < 0 ? -1 : (cmp > 0 ? 1 : 0);
    }
    case AttributeType::kNumber: {
      const auto* v = std::get_if<double>(&value);
      const auto* o = std::get_if<double>(&operand);
      if (v == nullptr || o == nullptr) return kIncomparable;
      return Compare3(*v, *o);
    }
    case AttributeType::kBool: {
      const auto* v = std::get_if<bool>(&value);
      const auto* o = std::get_if<bool>(&operand);
      if (v == nullptr || o == nullptr) return kIncomparable;
      return Compare3(*v, *o);
    }
    case AttributeType::kSemver: {
      const auto* o = std::get_if<SemVer>(&operand);
      if (version == nullptr || o == nullptr) return kIncomparable;
      return version->Compare(*o);
    }
  }
  return kIncomparable;
}

// Whether the unit's value equals one operand: 1, 0 or kIncomparable, as
// CompareValue(...) == 0 but with one pass over strings.
int EqualValue(const Condition& c, const AttributeValue& value,
               const SemVer* version, const Operand& operand) {
  if (c.attribute_type == AttributeType::kString) {
    const auto* v = std::get_if<std::string>(&value);
    const auto* o = std::get_if<std::string>(&operand);
    if (v == nullptr || o == nullptr) return kIncomparable;
    // Most operands of an `in` list differ from the value in length or in
    // the first byte; look at those before calling memcmp.
    return v->size() == o->size() &&
           (v->empty() || ((*v)[0] == (*o)[0] && *v == *o));
  }
  const int cmp = CompareValue(c, value, version, operand);
  return cmp == kIncomparable ? kIncomparable : cmp == 0;
}

// A kCompare condition on the unit's value of its attribute (null: not
// sent). For a kSemver attribute, `parsed` is the value's version when the
// caller has parsed it already: a version, or nullopt when it does not
// parse; null to parse it here.
bool CompareHolds(const Condition& c, const AttributeValue* value,
                  const std::optional<SemVer>* parsed) {
  const bool present = value != nullptr;
  if (c.op == CompareOp::kExists) {
    const bool want = c.operands.empty() ||
                      std::get_if<bool>(&c.operands[0]) == nullptr ||
                      *std::get_if<bool>(&c.operands[0]);
    return present == want;
  }
  if (!present) return false;
  std::optional<SemVer> parsed_here;
  const SemVer* version = nullptr;
  if (c.attribute_type == AttributeType::kSemver) {
    if (parsed == nullptr) {
      if (const auto* s = std::get_if<std::string>(value))
        parsed_here = SemVer::Parse(*s);
      parsed = &parsed_here;
    }
    if (parsed->has_value()) version = &**parsed;
  }
  switch (c.op) {
    case CompareOp::kRegex: {
      const auto* s = std::get_if<std::string>(value);
      return s != nullptr && c.regex != nullptr &&
             RE2::PartialMatch(*s, *c.regex);
    }
    case CompareOp::kIn:
    case CompareOp::kNotIn: {
      bool found = false;
      for (const Operand& operand : c.operands) {
        const int equal = EqualValue(c, *value, version, operand);
        if (equal == kIncomparable) return false;
        if (equal == 1) {
          found = true;
          break;
        }
      }
      return c.op == CompareOp::kIn ? found : !found;
    }
    case CompareOp::kEq:
    case CompareOp::kNe: {
      if (c.operands.empty()) return false;
      const int equal = EqualValue(c, *value, version, c.operands[0]);
      return equal != kIncomparable && (equal == 1) == (c.op == CompareOp::kEq);
    }
    default: {
      if (c.operands.empty()) return false;
      const int cmp = CompareValue(c, *value, version, c.operands[0]);
      return cmp != kIncomparable && OrderHolds(c.op, cmp);
    }
  }
}

bool EvaluateCompare(const Condition& c, const Attributes& attributes) {
  const auto it = attributes.find(c.attribute);
  return CompareHolds(c, it == attributes.end() ? nullptr : &it->second,
                      nullptr);
}

bool IsDigit(char c) { return c >= '0' && c <= '9'; }

bool IsIdentifierChar(char c) {
  return IsDigit(c) || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
         c == '-';
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

// Accepts exactly what this regular expression matches in full:
//   v?(\d+)(?:\.(\d+))?(?:\.(\d+))?(?:-(ID(?:\.ID)*))?(?:\+ID(?:\.ID)*)?
// with ID = [0-9A-Za-z-]+, the captures being major, minor, patch and the
// pre-release. It is scanned by hand because every request that sends a
// version parses it, and RE2 with four captures took about 0.3 us a call,
// most of a whole assignment. One left-to-right scan suffices: each field
// ends at a character that field cannot contain, so no match needs
// backtracking (targeting_test checks the two against each other).
std::optional<SemVer> SemVer::Parse(absl::string_view text) {
  size_t i = 0;
  const size_t n = text.size();
  // A run of digits as a number; false when there is none or it overflows.
  auto number = [&](uint64_t* out) {
    const size_t start = i;
    uint64_t value = 0;
    for (; i < n && IsDigit(text[i]); ++i) {
      const uint64_t digit = static_cast<uint64_t>(text[i] - '0');
      if (value > (std::numeric_limits<uint64_t>::max() - digit) / 10)
        return false;
      value = value * 10 + digit;
    }
    *out = value;
    return i > start;
  };
  // ID(\.ID)*; false when it is empty or has an empty identifier.
  auto identifiers = [&]() {
    while (true) {
      const size_t start = i;
      while (i < n && IsIdentifierChar(text[i])) ++i;
      if (i == start) return false;
      if (i == n || text[i] != '.') return true;
      ++i;
    }
  };
  SemVer v;
  if (i < n && text[i] == 'v') ++i;
  if (!number(&v.major)) return std::nullopt;
  if (i < n && text[i] == '.') {
    ++i;
    if (!number(&v.minor)) return std::nullopt;
    if (i < n && text[i] == '.') {
      ++i;
      if (!number(&v.patch)) return std::nullopt;
    }
  }
  if (i < n && text[i] == '-') {
    const size_t start = ++i;
    if (!identifiers()) return std::nullopt;
    v.prerelease = absl::StrSplit(text.substr(start, i - start), '.');
  }
  if (i < n && text[i] == '+') {
    ++i;
    if (!identifiers())
      return std::nullopt;  // build metadata: checked, not kept
  }
  if (i != n) return std::nullopt;
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
  if (!prerelease.empty())
    absl::StrAppend(&out, "-", absl::StrJoin(prerelease, "."));
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
      return condition.children.empty() ||
             !Evaluate(*condition.children[0], attributes);
    case ConditionKind::kSegment:
      return condition.segment != nullptr &&
             Evaluate(*condition.segment, attributes);
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
        matched =
            EvaluateWithTrace(*child, attributes, trace, depth + 1) && matched;
      }
      break;
    }
    case ConditionKind::kAny: {
      for (const auto& child : condition.children) {
        matched =
            EvaluateWithTrace(*child, attributes, trace, depth + 1) || matched;
      }
      break;
    }
    case ConditionKind::kNot:
      matched = condition.children.empty() ||
                !EvaluateWithTrace(*condition.children[0], attributes, trace,
                                   depth + 1);
      break;
    case ConditionKind::kSegment:
      matched =
          condition.segment != nullptr &&
          EvaluateWithTrace(*condition.segment, attributes, trace, depth + 1);
      break;
    case ConditionKind::kCompare: {
      matched = EvaluateCompare(condition, attributes);
      const auto it = attributes.find(condition.attribute);
      (*trace)[slot].actual = it == attributes.end()
                                  ? "<missing>"
                                  : FormatAttributeValue(it->second);
      break;
    }
  }
  (*trace)[slot].matched = matched;
  return matched;
}

int ConditionCompiler::SlotOf(const std::string& attribute) {
  auto [it, inserted] =
      slots_.emplace(attribute, static_cast<int>(slot_names_.size()));
  if (inserted) slot_names_.push_back(attribute);
  return it->second;
}

std::shared_ptr<const CompiledCondition> ConditionCompiler::Compile(
    const std::shared_ptr<const Condition>& condition) {
  if (condition == nullptr) return nullptr;
  auto compiled = std::make_shared<CompiledCondition>();
  compiled->kind = condition->kind;
  switch (condition->kind) {
    case ConditionKind::kAll:
    case ConditionKind::kAny:
    case ConditionKind::kNot:
      for (const auto& child : condition->children) {
        compiled->children.push_back(Compile(child));
      }
      break;
    case ConditionKind::kSegment:
      if (condition->segment != nullptr) {
        const Condition* key = condition->segment.get();
        auto it = segments_.find(key);
        if (it == segments_.end()) {
          // The parser rejects cycles, so this recursion ends.
          it = segments_.emplace(key, Compile(condition->segment)).first;
        }
        compiled->children.push_back(it->second);
      }
      break;
    case ConditionKind::kCompare:
      compiled->compare = condition;
      compiled->slot = SlotOf(condition->attribute);
      break;
  }
  return compiled;
}

bool Evaluate(const CompiledCondition& condition,
              absl::Span<const SlotValue> slots) {
  // Comparisons first, and branches rather than a switch: they are most of
  // the nodes, and a jump table's indirect branch mispredicts more often.
  if (condition.kind == ConditionKind::kCompare) {
    const size_t slot = static_cast<size_t>(condition.slot);
    if (slot >= slots.size())
      return CompareHolds(*condition.compare, nullptr, nullptr);
    const SlotValue& sent = slots[slot];
    // A version the request parsed already; otherwise CompareHolds parses.
    const bool parsed = sent.version.has_value();
    return CompareHolds(*condition.compare, sent.value,
                        parsed ? &sent.version : nullptr);
  }
  if (condition.kind == ConditionKind::kAll) {
    for (const auto& child : condition.children) {
      if (!Evaluate(*child, slots)) return false;
    }
    return true;
  }
  if (condition.kind == ConditionKind::kAny) {
    for (const auto& child : condition.children) {
      if (Evaluate(*child, slots)) return true;
    }
    return false;
  }
  if (condition.kind == ConditionKind::kNot) {
    return condition.children.empty() ||
           !Evaluate(*condition.children[0], slots);
  }
  // kSegment: its definition, or false when it was not resolved.
  return !condition.children.empty() && Evaluate(*condition.children[0], slots);
}

}  // namespace abexp
