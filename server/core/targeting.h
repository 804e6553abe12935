// Targeting: conditions on unit attributes, combined with all/any/not and
// reusable named segments.
//
// Semantics (docs/config.md): a comparison on an attribute the unit did not
// send is false, except `exists: false`. Attribute values must have the type
// the config declares for them; the assigner rejects mismatches before
// evaluation, so evaluation itself never fails.
//
// Thread-safe: a Condition is immutable after construction.
#ifndef ABEXP_SERVER_CORE_TARGETING_H_
#define ABEXP_SERVER_CORE_TARGETING_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "re2/re2.h"

namespace abexp {

enum class AttributeType { kString, kNumber, kBool, kSemver };
// "string", "number", "bool", "semver".
const char* AttributeTypeName(AttributeType type);

// A semantic version (semver.org 2.0 precedence). "5.2" parses as 5.2.0 and
// a leading "v" is accepted; build metadata is ignored.
struct SemVer {
  uint64_t major = 0;
  uint64_t minor = 0;
  uint64_t patch = 0;
  std::vector<std::string> prerelease;  // dot-separated identifiers

  // Returns nullopt when text is not a version.
  static std::optional<SemVer> Parse(absl::string_view text);
  // Negative, zero or positive as *this is lower, equal or higher.
  int Compare(const SemVer& other) const;
  std::string ToString() const;
};

// A unit attribute value as sent by the caller. Semver attributes are sent as
// strings.
using AttributeValue = std::variant<std::string, double, bool>;
using Attributes = absl::flat_hash_map<std::string, AttributeValue>;

enum class ConditionKind { kAll, kAny, kNot, kSegment, kCompare };
enum class CompareOp {
  kEq,
  kNe,
  kIn,
  kNotIn,
  kLt,
  kLte,
  kGt,
  kGte,
  kRegex,
  kExists
};
// The operator as written in YAML: "eq", "ne", "in", ...
const char* CompareOpName(CompareOp op);

// A typed literal from the config. kSemver attributes compare SemVer values.
using Operand = std::variant<std::string, double, bool, SemVer>;

struct Condition {
  ConditionKind kind = ConditionKind::kAll;

  // kAll, kAny: any number of children (all of none is true, any of none is
  // false). kNot: exactly one.
  std::vector<std::shared_ptr<const Condition>> children;

  // kSegment.
  std::string segment_name;
  std::shared_ptr<const Condition> segment;  // the resolved definition

  // kCompare.
  std::string attribute;
  AttributeType attribute_type = AttributeType::kString;
  CompareOp op = CompareOp::kEq;
  // eq/ne/lt/lte/gt/gte: one; in/not_in: one or more; exists: one bool;
  // regex: none (see `regex`).
  std::vector<Operand> operands;
  std::shared_ptr<const RE2> regex;

  // The rule as written, e.g. "country in [CN, SG]" or "segment new_users".
  std::string text;
};

// One line of an evaluation trace (preorder).
struct RuleTraceEntry {
  int depth = 0;
  std::string rule;
  bool matched = false;
  std::string
      actual;  // the unit's value, or "<missing>"; empty for combinators
};

// True when the attributes satisfy the condition.
bool Evaluate(const Condition& condition, const Attributes& attributes);

// Evaluate, recording every node visited in *trace. Unlike Evaluate it does
// not short-circuit, so the trace shows every rule's result.
bool EvaluateWithTrace(const Condition& condition, const Attributes& attributes,
                       std::vector<RuleTraceEntry>* trace, int depth = 0);

// Renders an attribute value for traces and errors.
std::string FormatAttributeValue(const AttributeValue& value);

// A Condition prepared once per config for evaluation on the request path:
// each attribute name resolved to a slot number, so that a unit's
// attributes are looked up once per request instead of once per
// comparison. Shares (and keeps alive) the Condition it was compiled from.
struct CompiledCondition {
  ConditionKind kind = ConditionKind::kAll;
  // kAll, kAny, kNot: the compiled children. kSegment: the compiled
  // segment definition, or none when the segment was not resolved.
  std::vector<std::shared_ptr<const CompiledCondition>> children;
  // kCompare: the comparison, and the slot of its attribute.
  std::shared_ptr<const Condition> compare;
  int slot = -1;
};

// What a unit sent for one attribute slot: the value (null when it sent
// none) and, for a semver attribute, the parsed version when it parses, so
// that each version is parsed once per request.
struct SlotValue {
  const AttributeValue* value = nullptr;
  std::optional<SemVer> version;
};

// Compiles the conditions of one config. Each segment is compiled once and
// shared by every condition that uses it.
// Not thread-safe; use one per config build.
class ConditionCompiler {
 public:
  // The slot of an attribute, assigning the next free one on first use.
  int SlotOf(const std::string& attribute);
  // Names by slot.
  const std::vector<std::string>& slot_names() const { return slot_names_; }

  std::shared_ptr<const CompiledCondition> Compile(
      const std::shared_ptr<const Condition>& condition);

 private:
  absl::flat_hash_map<std::string, int> slots_;
  std::vector<std::string> slot_names_;
  absl::flat_hash_map<const Condition*,
                      std::shared_ptr<const CompiledCondition>>
      segments_;
};

// The same answer as Evaluate(*source, attributes) when slots[i] holds the
// attribute of slot i (slots beyond the end count as not sent).
bool Evaluate(const CompiledCondition& condition,
              absl::Span<const SlotValue> slots);

}  // namespace abexp

#endif  // ABEXP_SERVER_CORE_TARGETING_H_
