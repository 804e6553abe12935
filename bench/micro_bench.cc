// abexp-micro-bench: Google Benchmark micro-benchmarks of the assignment hot
// path, each paired with the raw XXH3-64 call on the same bytes (issue 5).
//
// Pairs (the ratio is the first's time over the second's, from the same run):
//   R3  BM_R3_BucketOneExperiment   / BM_R3_Xxh3OneKey      goal <= 2
//       one (unit, experiment): the unit's variant bucket and the variant
//       range it falls in, as the assigner computes it (BucketedVariant),
//       against one XXH3_64bits of that pair's HashInput bytes.
//   R4  BM_R4_AssignAllExperiments  / BM_R4_Xxh3FiftyKeys   goal <= 4
//       Assign() of every experiment and feature of the config for one unit,
//       against XXH3_64bits of the unit's HashInput bytes for each of the
//       config's experiments (50 calls for bench/experiments-50.yaml).
//   BM_TargetingAllExperiments stands alone: every experiment's targeting
//   condition evaluated for one unit, compiled as Assign evaluates it;
//   BM_TargetingAllExperimentsByName evaluates the same conditions by
//   attribute name, as Explain does.
//   BM_ConfigSnapshot / BM_ConfigSnapshotMutexBaseline: ConfigStore::Snapshot()
//   (per-thread cache, no lock while the config is unchanged) against one
//   shared_ptr copied under a reader lock, as Snapshot() used to; 1 and 2
//   threads.
//
// Every benchmark walks the same pool of units from a seeded generator, one
// unit (or unit and experiment) per iteration, in the same order, so paired
// benchmarks see the same bytes. The hash keys of the XXH3 baselines are
// built before timing starts.
//
// The ratios, from CPU time per iteration (medians when
// --benchmark_repetitions is above 1), are printed to stderr at the end, so
// stdout stays valid JSON with --benchmark_format=json. Typical use:
//   abexp-micro-bench --benchmark_repetitions=5
//       --benchmark_enable_random_interleaving=true
//
// Flags besides Google Benchmark's:
//   --config=PATH  the config to load. Default: bench/experiments-50.yaml
//                  of the source tree this binary was built from.
#include <unistd.h>
#include <xxhash.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/match.h"
#include "absl/strings/str_format.h"
#include "absl/strings/string_view.h"
#include "absl/strings/strip.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "benchmark/benchmark.h"
#include "server/core/assigner.h"
#include "server/core/bucketing.h"
#include "server/core/config.h"
#include "server/core/config_parser.h"
#include "server/core/config_store.h"
#include "server/core/targeting.h"

namespace abexp {
namespace {

// A power of two, so the pool index is a mask. 256 units keep the XXH3
// baselines' keys (about 50 x 256 x 50 bytes) inside L2, like the config.
constexpr size_t kPoolSize = 256;
constexpr uint64_t kSeed = 20261130;

// The units and every (unit, experiment) hash key, built once.
struct Fixture {
  std::shared_ptr<const IndexedConfig> config;
  std::vector<Unit> units;
  // For unit u and experiment e, entry u * num_experiments + e: the id the
  // experiment hashes on (pointing into `units`), and that pair's HashInput
  // bytes (in one arena, so that neither side chases more pointers).
  std::vector<absl::string_view> ids;
  std::string key_arena;
  std::vector<size_t> key_offsets;  // one more than the number of keys
  size_t num_experiments = 0;

  // For unit u, its attributes by the config's slots
  // (IndexedConfig::attribute_slots), with semver values parsed, as Assign
  // prepares them for targeting.
  std::vector<std::vector<SlotValue>> slots;

  absl::string_view key(size_t i) const {
    return absl::string_view(key_arena).substr(
        key_offsets[i], key_offsets[i + 1] - key_offsets[i]);
  }
};

std::string g_config_path = ABEXP_BENCH_CONFIG;
Fixture* g_fixture = nullptr;

template <typename T>
const T& Pick(std::mt19937_64& rng, const std::vector<T>& values) {
  return values[std::uniform_int_distribution<size_t>(0,
                                                      values.size() - 1)(rng)];
}

// A unit like one a shop's backend sends: both ids and the attributes
// bench/experiments-50.yaml targets on, a few of them sometimes missing.
Unit RandomUnit(std::mt19937_64& rng) {
  static const std::vector<std::string> kCountries = {
      "US", "CA", "GB", "AU", "DE", "FR", "ES", "IT", "NL", "SE",
      "CN", "SG", "JP", "KR", "IN", "ID", "TH", "BR", "MX", "PL"};
  static const std::vector<std::string> kPlatforms = {"ios", "android", "web"};
  static const std::vector<std::string> kLocales = {"en-US", "en-GB", "en",
                                                    "de-DE", "fr-FR", "zh-CN",
                                                    "ja-JP", "es-ES", "pt-BR"};
  static const std::vector<std::string> kChannels = {"organic", "paid_search",
                                                     "social", "referral"};
  static const std::vector<std::string> kTiers = {"basic", "basic", "silver",
                                                  "gold", "platinum"};
  static const std::vector<std::string> kRfm = {"champions", "loyal", "at_risk",
                                                "hibernating"};
  std::uniform_int_distribution<int> percent(0, 99);
  Unit unit;
  unit.ids["user_id"] = absl::StrFormat("u-%010d", rng() % 10000000000ULL);
  unit.ids["device_id"] = absl::StrFormat("d-%016x", rng());
  unit.attributes["country"] = Pick(rng, kCountries);
  unit.attributes["platform"] = Pick(rng, kPlatforms);
  unit.attributes["app_version"] =
      absl::StrFormat("%d.%d.%d", 4 + rng() % 4, rng() % 10, rng() % 20);
  unit.attributes["locale"] = Pick(rng, kLocales);
  unit.attributes["acquisition_channel"] = Pick(rng, kChannels);
  // A fifth of units signed up this week.
  unit.attributes["days_since_signup"] =
      static_cast<double>(percent(rng) < 20 ? rng() % 7 : rng() % 1500);
  unit.attributes["days_since_last_active"] = static_cast<double>(rng() % 90);
  unit.attributes["orders_last_90d"] = static_cast<double>(rng() % 6);
  unit.attributes["membership_tier"] = Pick(rng, kTiers);
  if (percent(rng) < 70) unit.attributes["rfm_tier"] = Pick(rng, kRfm);
  if (percent(rng) < 50) unit.attributes["is_vip"] = percent(rng) < 5;
  return unit;
}

// Returns an error message, or "" when the fixture is ready.
std::string BuildFixture(Fixture* f) {
  ParseResult parsed = ParseConfigFile(g_config_path);
  if (!parsed.ok()) {
    return absl::StrFormat("cannot load %s:\n%s", g_config_path,
                           parsed.FormatDiagnostics());
  }
  f->config = parsed.config;
  const IndexedConfig& config = *f->config;
  f->num_experiments = config.experiments.size();
  if (f->num_experiments == 0)
    return g_config_path + " has no experiments to benchmark";
  std::mt19937_64 rng(kSeed);
  f->key_offsets.push_back(0);
  f->units.reserve(kPoolSize);  // ids point into the units: no reallocation
  for (size_t u = 0; u < kPoolSize; ++u) {
    f->units.push_back(RandomUnit(rng));
    const Unit& unit = f->units.back();
    if (absl::Status s = ValidateUnit(config, unit); !s.ok()) {
      return absl::StrFormat("the generated unit does not fit %s: %s",
                             g_config_path, s.ToString());
    }
    std::vector<SlotValue>& slots =
        f->slots.emplace_back(config.attribute_slot_types.size());
    for (const auto& [name, value] : unit.attributes) {
      auto slot = config.attribute_slots.find(name);
      if (slot == config.attribute_slots.end()) continue;
      slots[slot->second].value = &value;
      if (config.attribute_slot_types[slot->second] == AttributeType::kSemver) {
        slots[slot->second].version =
            SemVer::Parse(std::get<std::string>(value));
      }
    }
    for (const Experiment& e : config.experiments) {
      auto id = unit.ids.find(e.unit_id_type);
      if (id == unit.ids.end()) {
        return absl::StrFormat(
            "experiment %s hashes on %s, which the benchmark units lack", e.key,
            e.unit_id_type);
      }
      f->ids.push_back(id->second);
      f->key_arena += HashInput(HashPurpose::kVariant, e.salt, id->second);
      f->key_offsets.push_back(f->key_arena.size());
    }
  }
  return "";
}

// R3, the abexp side: step 7 of docs/bucketing.md for one (unit, experiment).
void BM_R3_BucketOneExperiment(benchmark::State& state) {
  const Fixture& f = *g_fixture;
  const size_t num_pairs = kPoolSize * f.num_experiments;
  size_t i = 0;
  size_t e = 0;  // i % num_experiments, without a division in the loop
  for (auto _ : state) {
    const int variant = BucketedVariant(*f.config, e, f.ids[i]);
    benchmark::DoNotOptimize(variant);
    if (++e == f.num_experiments) e = 0;
    if (++i == num_pairs) i = 0;
  }
  state.SetItemsProcessed(state.iterations());
}

// R3, the ceiling: one XXH3-64 of the same pair's HashInput bytes.
void BM_R3_Xxh3OneKey(benchmark::State& state) {
  const Fixture& f = *g_fixture;
  const size_t num_pairs = kPoolSize * f.num_experiments;
  size_t i = 0;
  for (auto _ : state) {
    const absl::string_view key = f.key(i);
    const uint64_t hash = XXH3_64bits(key.data(), key.size());
    benchmark::DoNotOptimize(hash);
    if (++i == num_pairs) i = 0;
  }
  state.SetItemsProcessed(state.iterations());
}

// R4, the abexp side: everything Assign does for one unit, as the server
// calls it (every experiment and feature, one clock reading per request).
void BM_R4_AssignAllExperiments(benchmark::State& state) {
  const Fixture& f = *g_fixture;
  AssignOptions options;
  options.now = absl::Now();
  size_t u = 0;
  int64_t assigned = 0;
  for (auto _ : state) {
    absl::StatusOr<AssignResult> result =
        Assign(*f.config, f.units[u], options);
    if (!result.ok()) {
      state.SkipWithError(std::string(result.status().message()).c_str());
      break;
    }
    assigned += static_cast<int64_t>(result->assignments.size());
    benchmark::DoNotOptimize(result);
    u = (u + 1) & (kPoolSize - 1);
  }
  state.SetItemsProcessed(state.iterations());
  state.counters["experiments"] = static_cast<double>(f.num_experiments);
  // How many experiments the average unit is in: shows the work is real.
  state.counters["assigned_per_unit"] = benchmark::Counter(
      static_cast<double>(assigned), benchmark::Counter::kAvgIterations);
}

// R4, the ceiling: one XXH3-64 per experiment of the unit's HashInput bytes.
void BM_R4_Xxh3FiftyKeys(benchmark::State& state) {
  const Fixture& f = *g_fixture;
  size_t u = 0;
  for (auto _ : state) {
    const size_t first = u * f.num_experiments;
    for (size_t e = 0; e < f.num_experiments; ++e) {
      const absl::string_view key = f.key(first + e);
      const uint64_t hash = XXH3_64bits(key.data(), key.size());
      benchmark::DoNotOptimize(hash);
    }
    u = (u + 1) & (kPoolSize - 1);
  }
  state.SetItemsProcessed(state.iterations());
  state.counters["hashes"] = static_cast<double>(f.num_experiments);
}

// Targeting alone, as Assign evaluates it: every experiment's condition,
// compiled at config load, on the unit's attributes by slot (looked up
// once per request, before timing here: R4 includes that).
void BM_TargetingAllExperiments(benchmark::State& state) {
  const Fixture& f = *g_fixture;
  std::vector<const CompiledCondition*> conditions;
  for (const ExperimentIndex& x : f.config->experiment_indexes) {
    if (x.targeting) conditions.push_back(x.targeting.get());
  }
  size_t u = 0;
  int64_t matched = 0;
  for (auto _ : state) {
    const std::vector<SlotValue>& slots = f.slots[u];
    for (const CompiledCondition* c : conditions) {
      const bool m = Evaluate(*c, slots);
      benchmark::DoNotOptimize(m);
      matched += m;
    }
    u = (u + 1) & (kPoolSize - 1);
  }
  state.SetItemsProcessed(state.iterations() *
                          static_cast<int64_t>(conditions.size()));
  state.counters["conditions"] = static_cast<double>(conditions.size());
  state.counters["matched_per_unit"] = benchmark::Counter(
      static_cast<double>(matched), benchmark::Counter::kAvgIterations);
}

// The same conditions evaluated by attribute name, as Explain does.
void BM_TargetingAllExperimentsByName(benchmark::State& state) {
  const Fixture& f = *g_fixture;
  std::vector<const Condition*> conditions;
  for (const Experiment& e : f.config->experiments) {
    if (e.targeting) conditions.push_back(e.targeting.get());
  }
  size_t u = 0;
  int64_t matched = 0;
  for (auto _ : state) {
    const Attributes& attributes = f.units[u].attributes;
    for (const Condition* c : conditions) {
      const bool m = Evaluate(*c, attributes);
      benchmark::DoNotOptimize(m);
      matched += m;
    }
    u = (u + 1) & (kPoolSize - 1);
  }
  state.SetItemsProcessed(state.iterations() *
                          static_cast<int64_t>(conditions.size()));
  state.counters["conditions"] = static_cast<double>(conditions.size());
  state.counters["matched_per_unit"] = benchmark::Counter(
      static_cast<double>(matched), benchmark::Counter::kAvgIterations);
}

BENCHMARK(BM_R3_BucketOneExperiment)->Unit(benchmark::kNanosecond);
BENCHMARK(BM_R3_Xxh3OneKey)->Unit(benchmark::kNanosecond);
BENCHMARK(BM_R4_AssignAllExperiments)->Unit(benchmark::kNanosecond);
BENCHMARK(BM_R4_Xxh3FiftyKeys)->Unit(benchmark::kNanosecond);
BENCHMARK(BM_TargetingAllExperiments)->Unit(benchmark::kNanosecond);
BENCHMARK(BM_TargetingAllExperimentsByName)->Unit(benchmark::kNanosecond);

// ConfigStore::Snapshot(), taken on every Assign and Record call, on a store
// serving the benchmark config, against the way it used to work (one
// shared_ptr copied under an absl::Mutex reader lock, as below). Both return
// and release one shared_ptr per iteration, as a request does. With threads,
// all threads read one store, as the server's request threads do.
ConfigStore& BenchStore() {
  static ConfigStore* const store = [] {
    absl::StatusOr<std::unique_ptr<ConfigStore>> opened =
        ConfigStore::Open(g_config_path);
    if (!opened.ok()) {
      std::cerr << "abexp-micro-bench: " << opened.status() << "\n";
      std::exit(1);
    }
    return opened->release();
  }();
  return *store;
}

void BM_ConfigSnapshot(benchmark::State& state) {
  const ConfigStore& store = BenchStore();
  for (auto _ : state) {
    std::shared_ptr<const IndexedConfig> config = store.Snapshot();
    benchmark::DoNotOptimize(config);
  }
  state.SetItemsProcessed(state.iterations());
}

// The baseline: ConfigStore::Snapshot() before it became lock-free.
class MutexSnapshotBaseline {
 public:
  explicit MutexSnapshotBaseline(std::shared_ptr<const IndexedConfig> config)
      : current_(std::move(config)) {}
  std::shared_ptr<const IndexedConfig> Snapshot() const {
    absl::ReaderMutexLock lock(&mu_);
    return current_;
  }

 private:
  mutable absl::Mutex mu_;
  std::shared_ptr<const IndexedConfig> current_ ABSL_GUARDED_BY(mu_);
};

void BM_ConfigSnapshotMutexBaseline(benchmark::State& state) {
  static const MutexSnapshotBaseline* const baseline =
      new MutexSnapshotBaseline(BenchStore().Snapshot());
  for (auto _ : state) {
    std::shared_ptr<const IndexedConfig> config = baseline->Snapshot();
    benchmark::DoNotOptimize(config);
  }
  state.SetItemsProcessed(state.iterations());
}

BENCHMARK(BM_ConfigSnapshot)->Unit(benchmark::kNanosecond)->ThreadRange(1, 2);
BENCHMARK(BM_ConfigSnapshotMutexBaseline)
    ->Unit(benchmark::kNanosecond)
    ->ThreadRange(1, 2);

// Passes every report to the reporter the user chose and keeps each
// benchmark's CPU times, to print the ratios once all have run.
class RatioReporter : public benchmark::BenchmarkReporter {
 public:
  explicit RatioReporter(std::unique_ptr<benchmark::BenchmarkReporter> display)
      : display_(std::move(display)) {}

  bool ReportContext(const Context& context) override {
    return display_->ReportContext(context);
  }

  void ReportRuns(const std::vector<Run>& runs) override {
    for (const Run& run : runs) {
      if (run.error_occurred) continue;
      const std::string& name = run.run_name.function_name;
      if (run.run_type == Run::RT_Iteration) {
        cpu_ns_[name].push_back(run.GetAdjustedCPUTime());
      } else if (run.aggregate_name == "median") {
        // With --benchmark_report_aggregates_only the repetitions are not
        // reported one by one, only their statistics.
        median_cpu_ns_[name] = {run.GetAdjustedCPUTime(), run.repetitions};
      }
    }
    display_->ReportRuns(runs);
  }

  void Finalize() override {
    display_->Finalize();
    PrintRatio("R3", "BM_R3_BucketOneExperiment", "BM_R3_Xxh3OneKey", 2);
    PrintRatio("R4", "BM_R4_AssignAllExperiments", "BM_R4_Xxh3FiftyKeys", 4);
  }

 private:
  // The median CPU ns per iteration of a benchmark and how many runs it is
  // the median of; runs == 0 when the benchmark did not run (filtered out).
  struct Median {
    double ns = 0;
    int64_t runs = 0;
  };
  Median MedianOf(const std::string& name) const {
    if (auto it = median_cpu_ns_.find(name); it != median_cpu_ns_.end())
      return it->second;
    auto it = cpu_ns_.find(name);
    if (it == cpu_ns_.end() || it->second.empty()) return {};
    std::vector<double> v = it->second;
    std::sort(v.begin(), v.end());
    const size_t n = v.size();
    return {n % 2 == 1 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2,
            static_cast<int64_t>(n)};
  }

  void PrintRatio(const char* name, const std::string& ours,
                  const std::string& ceiling, double goal) const {
    const Median a = MedianOf(ours);
    const Median b = MedianOf(ceiling);
    if (a.runs == 0 || b.runs == 0) return;
    const double ratio = a.ns / b.ns;
    std::cerr << absl::StrFormat(
        "%s = %s / %s = %.1f ns / %.1f ns = %.2f (goal <= %g: %s; median CPU "
        "time of %d "
        "run(s))\n",
        name, ours, ceiling, a.ns, b.ns, ratio, goal,
        ratio <= goal ? "met" : "missed", a.runs);
  }

  std::unique_ptr<benchmark::BenchmarkReporter> display_;
  std::map<std::string, std::vector<double>> cpu_ns_;
  std::map<std::string, Median> median_cpu_ns_;
};

std::unique_ptr<benchmark::BenchmarkReporter> DisplayReporterFor(
    const std::string& format) {
  if (format == "json") return std::make_unique<benchmark::JSONReporter>();
  // Counters in columns; colour only on a terminal, as Google Benchmark's own
  // default.
  return std::make_unique<benchmark::ConsoleReporter>(
      isatty(STDOUT_FILENO) ? benchmark::ConsoleReporter::OO_ColorTabular
                            : benchmark::ConsoleReporter::OO_Tabular);
}

}  // namespace
}  // namespace abexp

int main(int argc, char** argv) {
  // Take our own flag out before Google Benchmark sees the arguments.
  std::string format = "console";
  int kept = 1;
  for (int i = 1; i < argc; ++i) {
    absl::string_view arg = argv[i];
    if (absl::ConsumePrefix(&arg, "--config=")) {
      abexp::g_config_path = std::string(arg);
      continue;
    }
    if (absl::StartsWith(arg, "--benchmark_format=")) {
      format = std::string(arg.substr(sizeof("--benchmark_format=") - 1));
    }
    argv[kept++] = argv[i];
  }
  argc = kept;
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  if (format != "console" && format != "json") {
    std::cerr << "abexp-micro-bench: --benchmark_format=" << format
              << " is not supported here; use console or json\n";
    return 1;
  }

  abexp::Fixture fixture;
  if (const std::string error = abexp::BuildFixture(&fixture); !error.empty()) {
    std::cerr << "abexp-micro-bench: " << error << "\n";
    return 1;
  }
  abexp::g_fixture = &fixture;

  abexp::RatioReporter reporter(abexp::DisplayReporterFor(format));
  benchmark::RunSpecifiedBenchmarks(&reporter);
  benchmark::Shutdown();
  return 0;
}
