// Fuzzes the config parser (server/core/config_parser.h) with YAML text.
//
// Any text must give a config or diagnostics, never a crash. For a config
// that parses, this also does what the server does with one: assigns a
// unit (ValidateUnit, StickyLookups, Assign, Explain of each experiment)
// and diffs it against itself (which must change nothing) and against
// examples/experiments.yaml in both directions.
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <utility>

#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "server/core/assigner.h"
#include "server/core/config_diff.h"
#include "server/core/config_parser.h"
#include "tests/fuzz/fuzz_check.h"

namespace abexp {
namespace {

void Check(bool ok, const char* what) {
  FuzzCheck(ok, "config_parser_fuzz", what);
}

const Config& Example() {
  static const auto* example = [] {
    const std::string path =
        std::string(ABEXP_SOURCE_DIR) + "/examples/experiments.yaml";
    ParseResult parsed = ParseConfigFile(path);
    if (!parsed.ok()) {
      fprintf(stderr, "config_parser_fuzz: %s does not parse:\n%s\n",
              path.c_str(), parsed.FormatDiagnostics().c_str());
      abort();
    }
    return new std::shared_ptr<const IndexedConfig>(std::move(parsed.config));
  }();
  return **example;
}

// A unit with every id type the config hashes on and every declared
// attribute, with a value of its declared type.
Unit UnitFor(const IndexedConfig& config) {
  Unit unit;
  for (const std::string& id_type : config.id_types)
    unit.ids[id_type] = "fuzz-unit-1";
  for (const auto& [name, type] : config.attributes) {
    switch (type) {
      case AttributeType::kString:
        unit.attributes[name] = std::string("US");
        break;
      case AttributeType::kNumber:
        unit.attributes[name] = 3.0;
        break;
      case AttributeType::kBool:
        unit.attributes[name] = true;
        break;
      case AttributeType::kSemver:
        unit.attributes[name] = std::string("5.2.0");
        break;
    }
  }
  return unit;
}

void Use(const IndexedConfig& config) {
  const Unit unit = UnitFor(config);
  const absl::Status valid = ValidateUnit(config, unit);
  if (valid.ok()) {
    AssignOptions options;
    options.now = absl::FromUnixSeconds(1'750'000'000);
    absl::StatusOr<std::vector<StickyLookup>> sticky =
        StickyLookups(config, unit, options);
    Check(sticky.ok(), "StickyLookups failed on a valid config and unit");
    absl::StatusOr<AssignResult> assigned = Assign(config, unit, options);
    Check(assigned.ok(), "Assign failed on a valid config and unit");
    size_t explained = 0;
    for (const Experiment& e : config.experiments) {
      if (++explained > 16) break;
      Check(Explain(config, unit, e.key, options.now).ok(),
            "Explain failed for a config's experiment");
    }
  }

  const ConfigDiff same = DiffConfigs(config, config);
  Check(same.ok(), "a config diffed against itself is breaking");
  Check(same.features.empty(),
        "a config diffed against itself changes features");
  for (const ExperimentDiff& e : same.experiments) {
    Check(e.change == DiffChange::kUnchanged,
          "a config diffed against itself changes an experiment");
    Check(e.moved.zero() && e.added.zero() && e.removed.zero(),
          "a config diffed against itself moves units");
  }
  DiffConfigs(Example(), config);
  DiffConfigs(config, Example());
}

}  // namespace
}  // namespace abexp

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const abexp::ParseResult parsed = abexp::ParseConfig(
      absl::string_view(reinterpret_cast<const char*>(data), size),
      "fuzz.yaml");
  abexp::Check(parsed.ok() || !parsed.diagnostics.empty(),
               "a config was refused without a diagnostic");
  if (parsed.ok()) abexp::Use(*parsed.config);
  return 0;
}
