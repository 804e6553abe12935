// Fuzzes targeting and semver evaluation (server/core/targeting.h).
//
// The input describes a few segments and a condition tree over four
// attributes of fuzzed types, and a unit's attributes of the declared
// types (what ValidateUnit lets through). Checks that:
//  - Evaluate, EvaluateWithTrace and the compiled Evaluate agree, and the
//    trace has one entry per node visited;
//  - SemVer::Parse of any text either fails or gives a version whose
//    ToString() parses back to an equal version, and Compare is an
//    antisymmetric, transitive order.
#include <fuzzer/FuzzedDataProvider.h>

#include <cmath>
#include <cstdlib>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/types/span.h"
#include "re2/re2.h"
#include "server/core/targeting.h"
#include "tests/fuzz/fuzz_check.h"

namespace abexp {
namespace {

constexpr int kAttributes = 4;
constexpr int kMaxNodes = 64;
constexpr int kMaxDepth = 8;
constexpr int kMaxSegments = 4;

void Check(bool ok, const char* what) { FuzzCheck(ok, "targeting_fuzz", what); }

int Sign(int v) { return v < 0 ? -1 : (v > 0 ? 1 : 0); }

// Semver round trip and order properties over three fuzzed strings.
void CheckSemVer(FuzzedDataProvider& in) {
  std::optional<SemVer> v[3];
  for (auto& version : v) {
    version = SemVer::Parse(in.ConsumeRandomLengthString(64));
    if (!version) continue;
    const std::optional<SemVer> again = SemVer::Parse(version->ToString());
    Check(again.has_value(), "SemVer::Parse(v.ToString()) fails");
    Check(again->Compare(*version) == 0 &&
              again->prerelease == version->prerelease,
          "SemVer::Parse(v.ToString()) differs from v");
  }
  for (int i = 0; i < 3; ++i) {
    if (!v[i]) continue;
    Check(v[i]->Compare(*v[i]) == 0, "SemVer::Compare(v, v) != 0");
    for (int j = 0; j < 3; ++j) {
      if (!v[j]) continue;
      Check(Sign(v[i]->Compare(*v[j])) == -Sign(v[j]->Compare(*v[i])),
            "SemVer::Compare is not antisymmetric");
      for (int k = 0; k < 3; ++k) {
        if (!v[k]) continue;
        if (v[i]->Compare(*v[j]) <= 0 && v[j]->Compare(*v[k]) <= 0) {
          Check(v[i]->Compare(*v[k]) <= 0, "SemVer::Compare is not transitive");
        }
      }
    }
  }
}

struct Builder {
  FuzzedDataProvider& in;
  AttributeType types[kAttributes];
  std::vector<std::shared_ptr<const Condition>> segments;
  int nodes = 0;

  // A version string, sometimes not a version at all.
  std::string VersionText() {
    static const char* const kVersions[] = {
        "1.2.3",     "1.2.3-alpha.1", "1.2",         "v2",
        "1.2.3+b.1", "0.0.0-0",       "1.2.3-rc.10", "1.2.3-rc.9"};
    if (in.ConsumeBool())
      return kVersions[in.ConsumeIntegralInRange<int>(0, 7)];
    return in.ConsumeRandomLengthString(24);
  }

  // A value of `type`, as a unit sends it or the config writes it.
  AttributeValue Value(AttributeType type) {
    switch (type) {
      case AttributeType::kString:
        return in.ConsumeRandomLengthString(16);
      case AttributeType::kNumber: {
        const double d = in.ConsumeFloatingPoint<double>();
        return std::isfinite(d) ? d : 0.0;
      }
      case AttributeType::kBool:
        return in.ConsumeBool();
      case AttributeType::kSemver:
        return VersionText();
    }
    return false;
  }

  Operand OperandOf(AttributeType type) {
    if (type == AttributeType::kSemver) {
      // The parser only accepts operands that are versions.
      std::optional<SemVer> v = SemVer::Parse(VersionText());
      return v ? *v : SemVer{};
    }
    AttributeValue value = Value(type);
    if (auto* s = std::get_if<std::string>(&value)) return *s;
    if (auto* d = std::get_if<double>(&value)) return *d;
    return std::get<bool>(value);
  }

  std::shared_ptr<const Condition> Compare() {
    auto c = std::make_shared<Condition>();
    c->kind = ConditionKind::kCompare;
    const int a = in.ConsumeIntegralInRange<int>(0, kAttributes - 1);
    c->attribute = "a" + std::to_string(a);
    c->attribute_type = types[a];
    c->op = static_cast<CompareOp>(in.ConsumeIntegralInRange<int>(0, 9));
    c->text = c->attribute + " " + CompareOpName(c->op);
    switch (c->op) {
      case CompareOp::kExists:
        c->operands.push_back(in.ConsumeBool());
        break;
      case CompareOp::kRegex:
        c->regex =
            std::make_shared<RE2>(in.ConsumeRandomLengthString(16), RE2::Quiet);
        break;
      case CompareOp::kIn:
      case CompareOp::kNotIn: {
        const int n = in.ConsumeIntegralInRange<int>(1, 4);
        for (int i = 0; i < n; ++i) c->operands.push_back(OperandOf(types[a]));
        break;
      }
      default:
        c->operands.push_back(OperandOf(types[a]));
    }
    return c;
  }

  std::shared_ptr<const Condition> Node(int depth) {
    ++nodes;
    const int pick = in.ConsumeIntegralInRange<int>(0, 4);
    if (depth >= kMaxDepth || nodes >= kMaxNodes || pick == 0) return Compare();
    auto c = std::make_shared<Condition>();
    if (pick == 4) {
      c->kind = ConditionKind::kSegment;
      c->segment_name = "s";
      c->text = "segment";
      // Unresolved now and then, as a compiled condition allows.
      if (!segments.empty() && in.ConsumeIntegralInRange<int>(0, 7) != 0) {
        c->segment =
            segments[in.ConsumeIntegralInRange<size_t>(0, segments.size() - 1)];
      }
      return c;
    }
    c->kind = pick == 1   ? ConditionKind::kAll
              : pick == 2 ? ConditionKind::kAny
                          : ConditionKind::kNot;
    c->text = "combinator";
    const int n = c->kind == ConditionKind::kNot
                      ? 1
                      : in.ConsumeIntegralInRange<int>(0, 4);
    for (int i = 0; i < n; ++i) c->children.push_back(Node(depth + 1));
    return c;
  }
};

size_t TreeSize(const Condition& c) {
  size_t n = 1;
  for (const auto& child : c.children) n += TreeSize(*child);
  if (c.kind == ConditionKind::kSegment && c.segment) n += TreeSize(*c.segment);
  return n;
}

void Run(FuzzedDataProvider& in) {
  CheckSemVer(in);

  Builder b{in, {}, {}, 0};
  for (auto& type : b.types)
    type = static_cast<AttributeType>(in.ConsumeIntegralInRange<int>(0, 3));
  const int segments = in.ConsumeIntegralInRange<int>(0, kMaxSegments);
  for (int i = 0; i < segments; ++i)
    b.segments.push_back(b.Node(0));  // uses earlier ones only
  const std::shared_ptr<const Condition> root = b.Node(0);

  Attributes attributes;
  for (int a = 0; a < kAttributes; ++a) {
    if (in.ConsumeBool())
      attributes["a" + std::to_string(a)] = b.Value(b.types[a]);
  }
  // An attribute no condition names is ignored.
  if (in.ConsumeBool()) attributes["other"] = in.ConsumeRandomLengthString(8);

  const bool plain = Evaluate(*root, attributes);
  std::vector<RuleTraceEntry> trace;
  const bool traced = EvaluateWithTrace(*root, attributes, &trace);
  Check(plain == traced, "Evaluate and EvaluateWithTrace disagree");
  Check(trace.size() == TreeSize(*root),
        "the trace does not have one entry per node");
  Check(trace[0].matched == plain, "the trace's first entry is not the result");

  ConditionCompiler compiler;
  const auto compiled = compiler.Compile(root);
  // Slots as the assigner fills them: every slot the compiler made, with
  // each semver value parsed once, or left to the evaluation (both ways).
  std::vector<SlotValue> slots(compiler.slot_names().size());
  const bool preparse = in.ConsumeBool();
  for (size_t i = 0; i < slots.size(); ++i) {
    const auto it = attributes.find(compiler.slot_names()[i]);
    if (it == attributes.end()) continue;
    slots[i].value = &it->second;
    const int a = compiler.slot_names()[i][1] - '0';
    if (preparse && b.types[a] == AttributeType::kSemver) {
      slots[i].version = SemVer::Parse(std::get<std::string>(it->second));
    }
  }
  Check(Evaluate(*compiled, absl::MakeConstSpan(slots)) == plain,
        "the compiled condition disagrees with Evaluate");
  // Slots beyond the end count as not sent.
  if (!slots.empty()) {
    Attributes fewer = attributes;
    fewer.erase(compiler.slot_names().back());
    Check(Evaluate(*compiled, absl::MakeConstSpan(slots).first(
                                  slots.size() - 1)) == Evaluate(*root, fewer),
          "a missing slot is not the same as an attribute not sent");
  }
}

}  // namespace
}  // namespace abexp

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  FuzzedDataProvider in(data, size);
  abexp::Run(in);
  return 0;
}
