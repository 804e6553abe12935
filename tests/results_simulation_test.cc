// End-to-end statistics of ResultsService.GetResults on simulated
// experiments, through a real abexp-server and a real redis-server on
// loopback: units are bucketed by the server (AssignmentService.BatchAssign),
// exposed at the variant they got and their events recorded through
// RecordingService. The figures the RPC returns are compared with figures
// computed from the raw per-unit data by tests/results_reference.py (SciPy
// and statsmodels under /usr/bin/python3), and the Bayesian ones with
// stats/testdata/bayes.golden (gen_bayes.py: exact rational sums).
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <initializer_list>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "abexp/v1/assignment.grpc.pb.h"
#include "abexp/v1/recording.grpc.pb.h"
#include "abexp/v1/results.grpc.pb.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "google/protobuf/struct.pb.h"
#include "google/protobuf/util/json_util.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "server/testing/recording_test_util.h"
#include "server/testing/server_process.h"
#include "stats/testing/golden.h"

namespace abexp {
namespace {

using ::abexp::stats::testing::GoldenCase;
using ::abexp::stats::testing::LoadGolden;
using ::abexp::testing::FindAssignment;
using ::abexp::testing::RecordingServerTest;
using ::abexp::testing::RunProcess;
using ::abexp::testing::SetDeadline;
using ::abexp::testing::ToProto;
using ::abexp::testing::User;
using ::google::protobuf::Struct;
using ::google::protobuf::Value;
using ::testing::HasSubstr;

constexpr char kConfig[] = R"yaml(
attributes: {platform: string, orders_90d: number}
metrics:
  - key: orders_cuped
    type: sum
    event: order
    aggregate: count
    covariate: orders_90d
  - key: ordered_cuped
    type: binomial
    event: order
    covariate: orders_90d
  - key: order_conversion
    type: binomial
    event: purchase
  - key: revenue
    type: sum
    event: purchase
    aggregate: value
  - key: order_value
    type: ratio
    numerator: {event: purchase, aggregate: value}
    denominator: {event: purchase, aggregate: count}
  - key: click_through
    type: ratio
    numerator: {event: banner_click, aggregate: count}
    denominator: {event: banner_view, aggregate: count}
  - key: refund_rate
    type: binomial
    event: refund
    guardrail: true
    higher_is_better: false
  - key: support_minutes
    type: sum
    event: support_call
    aggregate: value
    guardrail: true
    higher_is_better: false
  - key: checkout_steps
    type: funnel
    window: 1d
    steps:
      - view_checkout
      - {event: submit_payment, window: 30m}
      - order_completed

experiments:
  - key: cuped
    status: running
    variants:
      - {key: control, weight: 50}
      - {key: treatment, weight: 50}
    metrics: [orders_cuped, ordered_cuped]
    primary_metric: orders_cuped
  - key: checkout
    status: running
    variants:
      - {key: control, weight: 50}
      - {key: treatment, weight: 50}
    metrics: [order_conversion, revenue]
    primary_metric: order_conversion
  - key: segmented
    status: running
    variants:
      - {key: control, weight: 50}
      - {key: treatment, weight: 50}
    metrics: [order_conversion, revenue]
    primary_metric: order_conversion
    dimensions: [platform]
  - key: banner
    status: running
    variants:
      - {key: control, weight: 95}
      - {key: treatment, weight: 5}
    metrics: [order_conversion]
    primary_metric: order_conversion
  - key: basket
    status: running
    variants:
      - {key: control, weight: 50}
      - {key: treatment, weight: 50}
    metrics: [order_value, click_through]
    primary_metric: order_value
  - key: bayes_a
    status: running
    variants:
      - {key: control, weight: 50}
      - {key: treatment, weight: 50}
    metrics: [order_conversion]
    primary_metric: order_conversion
  - key: bayes_b
    status: running
    variants:
      - {key: control, weight: 50}
      - {key: treatment, weight: 50}
    metrics: [order_conversion]
    primary_metric: order_conversion
  - key: bayes_c
    status: running
    variants:
      - {key: control, weight: 50}
      - {key: treatment, weight: 50}
    metrics: [order_conversion]
    primary_metric: order_conversion
  - key: bayes_lower
    status: running
    variants:
      - {key: control, weight: 50}
      - {key: treatment, weight: 50}
    metrics: [order_conversion, refund_rate]
    primary_metric: order_conversion
  - key: support
    status: running
    variants:
      - {key: control, weight: 50}
      - {key: treatment, weight: 50}
    metrics: [order_conversion, support_minutes]
    primary_metric: order_conversion
  - key: funnel
    status: running
    variants:
      - {key: control, weight: 50}
      - {key: treatment, weight: 50}
    metrics: [checkout_steps]
    primary_metric: checkout_steps
)yaml";

// Units per BatchAssign call (the server's limit) and per recording call.
constexpr int kAssignBatch = 1000;
constexpr int kRecordBatch = 10000;

// A unit the test exposed and its variant.
struct Unit {
  std::string id;
  std::string variant;
};

// Per-unit raw data for results_reference.py: one row per exposed unit, its
// variant and a value per column (0 for a unit without events).
class UnitTable {
 public:
  explicit UnitTable(std::vector<std::string> columns)
      : columns_(std::move(columns)) {}

  void Add(const std::string& variant, std::vector<double> values) {
    ASSERT_EQ(values.size(), columns_.size());
    rows_.emplace_back(variant, std::move(values));
  }

  // The CSV results_reference.py reads; values to 17 significant digits, so
  // Python reads the very doubles the server was sent.
  std::string ToCsv() const {
    std::string csv = "variant";
    for (const std::string& c : columns_) absl::StrAppend(&csv, ",", c);
    csv += "\n";
    for (const auto& [variant, values] : rows_) {
      absl::StrAppend(&csv, variant);
      for (double v : values) {
        absl::StrAppend(&csv, absl::StrFormat(",%.17g", v));
      }
      csv += "\n";
    }
    return csv;
  }

 private:
  std::vector<std::string> columns_;
  std::vector<std::pair<std::string, std::vector<double>>> rows_;
};

// The value at `path` in `s`; a null Value, and a failure, when a key is
// missing.
Value At(const Struct& s, std::initializer_list<std::string> path) {
  Value v;
  *v.mutable_struct_value() = s;
  std::string seen;
  for (const std::string& key : path) {
    seen += "." + key;
    if (v.kind_case() != Value::kStructValue ||
        v.struct_value().fields().count(key) == 0) {
      ADD_FAILURE() << "the reference JSON has no " << seen;
      return Value();
    }
    Value next = v.struct_value().fields().at(key);
    v = std::move(next);
  }
  return v;
}

bool Has(const Struct& s, const std::string& key) {
  return s.fields().count(key) > 0;
}

// `got` (set or not: `has`) against the reference figure `want`: unset where
// the reference is null, else within 1e-9 relative. No absolute floor: the
// p-values here go down to ~1e-10 and must keep their digits.
void ExpectFigure(const std::string& what, bool has, double got,
                  const Value& want) {
  if (want.kind_case() == Value::kNullValue) {
    EXPECT_FALSE(has) << what << " is " << got << ", want unset";
    return;
  }
  ASSERT_EQ(want.kind_case(), Value::kNumberValue)
      << what << ": the reference is " << want.ShortDebugString();
  ASSERT_TRUE(has) << what << " is unset, want " << want.number_value();
  EXPECT_NEAR(got, want.number_value(), 1e-9 * std::fabs(want.number_value()))
      << what;
}

// An Effect against the reference's {estimate, ci_low, ci_high, p_value,
// adjusted_p_value[, df]}.
void ExpectEffect(const std::string& what, const v1::Effect& got,
                  const Struct& want) {
  ExpectFigure(what + ".estimate", got.has_estimate(), got.estimate(),
               At(want, {"estimate"}));
  ExpectFigure(what + ".ci_low", got.has_ci_low(), got.ci_low(),
               At(want, {"ci_low"}));
  ExpectFigure(what + ".ci_high", got.has_ci_high(), got.ci_high(),
               At(want, {"ci_high"}));
  ExpectFigure(what + ".p_value", got.has_p_value(), got.p_value(),
               At(want, {"p_value"}));
  ExpectFigure(what + ".adjusted_p_value", got.has_adjusted_p_value(),
               got.adjusted_p_value(), At(want, {"adjusted_p_value"}));
  if (Has(want, "df")) {
    ExpectFigure(what + ".df", got.has_df(), got.df(), At(want, {"df"}));
  } else {
    EXPECT_FALSE(got.has_df()) << what << ".df is set: only sums have one";
  }
}

const v1::MetricResult* FindMetric(const v1::VariantResult& variant,
                                   const std::string& key) {
  for (const v1::MetricResult& m : variant.metrics()) {
    if (m.metric_key() == key) return &m;
  }
  return nullptr;
}

// Every variant's exposed units, and for each metric of the reference every
// variant's estimate and every treatment's comparison with control.
void ExpectMatchesReference(const v1::GetResultsResponse& r,
                            const Struct& ref) {
  const Struct units = At(ref, {"units"}).struct_value();
  ASSERT_EQ(static_cast<size_t>(r.variants_size()), units.fields().size());
  for (const v1::VariantResult& variant : r.variants()) {
    ExpectFigure(variant.key() + " exposed_units", true,
                 static_cast<double>(variant.exposed_units()),
                 At(units, {variant.key()}));
  }
  const Struct metrics = At(ref, {"metrics"}).struct_value();
  for (const auto& [key, m] : metrics.fields()) {
    const Struct& want = m.struct_value();
    for (const v1::VariantResult& variant : r.variants()) {
      const std::string what = absl::StrCat(key, " ", variant.key());
      const v1::MetricResult* got = FindMetric(variant, key);
      ASSERT_NE(got, nullptr) << what << " is not in the response";
      ExpectFigure(what + " estimate", got->has_estimate(), got->estimate(),
                   At(want, {"estimate", variant.key()}));
      if (variant.is_control()) continue;
      const Struct cell =
          At(want, {"vs_control", variant.key()}).struct_value();
      ExpectEffect(what + " absolute", got->absolute(),
                   At(cell, {"absolute"}).struct_value());
      ExpectEffect(what + " relative", got->relative(),
                   At(cell, {"relative"}).struct_value());
      if (Has(cell, "bayes")) {
        const Struct bayes = At(cell, {"bayes"}).struct_value();
        const v1::BayesFigures& b = got->bayes();
        ExpectFigure(what + " chance_to_beat_control",
                     b.has_chance_to_beat_control(), b.chance_to_beat_control(),
                     At(bayes, {"chance_to_beat_control"}));
        ExpectFigure(what + " expected_loss_ship", b.has_expected_loss_ship(),
                     b.expected_loss_ship(), At(bayes, {"expected_loss_ship"}));
        ExpectFigure(what + " expected_loss_keep", b.has_expected_loss_keep(),
                     b.expected_loss_keep(), At(bayes, {"expected_loss_keep"}));
      }
    }
  }
}

class ResultsSimulationTest : public RecordingServerTest {
 protected:
  ResultsSimulationTest() : RecordingServerTest(kConfig, "sim") {}

  void StartAll() {
    ASSERT_NO_FATAL_FAILURE(StartServer());
    results_ = v1::ResultsService::NewStub(grpc::CreateChannel(
        server_->address(), grpc::InsecureChannelCredentials()));
  }

  // Users `prefix`0 .. `prefix`(n-1), each with the variant of `experiment`
  // the server buckets it into. Remembers the config version for Expose().
  void Assign(const std::string& experiment, const std::string& prefix, int n,
              std::vector<Unit>* units) {
    for (int begin = 0; begin < n; begin += kAssignBatch) {
      v1::BatchAssignRequest request;
      request.add_experiment_keys(experiment);
      const int end = std::min(n, begin + kAssignBatch);
      for (int i = begin; i < end; ++i) {
        *request.add_units() = User(absl::StrCat(prefix, i));
      }
      v1::BatchAssignResponse response;
      grpc::ClientContext context;
      SetDeadline(&context, call_timeout_);
      grpc::Status status = assign_->BatchAssign(&context, request, &response);
      ASSERT_TRUE(status.ok()) << status.error_message();
      ASSERT_EQ(response.results_size(), end - begin);
      config_version_ = response.config_version();
      for (int i = begin; i < end; ++i) {
        const std::optional<v1::Assignment> a =
            FindAssignment(response.results(i - begin), experiment);
        ASSERT_TRUE(a.has_value()) << prefix << i << " got no variant";
        ASSERT_EQ(a->reason(), v1::ASSIGNMENT_REASON_BUCKETED);
        units->push_back({absl::StrCat(prefix, i), a->variant_key()});
      }
    }
  }

  // Exposes each of `units` to its variant of `experiment` at start_; every
  // exposure must be recorded (each is a unit's first).
  // `covariates`, when given, has each unit's orders_90d attribute (NaN:
  // none sent).
  // `platforms`, when given, has each unit's platform attribute.
  void Expose(const std::string& experiment, const std::vector<Unit>& units,
              const std::vector<double>& covariates = {},
              const std::vector<std::string>& platforms = {}) {
    for (size_t begin = 0; begin < units.size(); begin += kRecordBatch) {
      const size_t end = std::min(units.size(), begin + kRecordBatch);
      v1::RecordExposuresRequest request;
      for (size_t i = begin; i < end; ++i) {
        v1::ExposureRecord* e = request.add_exposures();
        e->set_experiment_key(experiment);
        *e->mutable_unit() = User(units[i].id);
        if (!covariates.empty() && !std::isnan(covariates[i])) {
          (*e->mutable_unit()->mutable_attributes())["orders_90d"]
              .set_number_value(covariates[i]);
        }
        if (!platforms.empty()) {
          (*e->mutable_unit()->mutable_attributes())["platform"]
              .set_string_value(platforms[i]);
        }
        e->set_variant_key(units[i].variant);
        *e->mutable_time() = ToProto(start_);
        e->set_config_version(config_version_);
      }
      v1::RecordExposuresResponse response;
      grpc::Status status = RecordExposures(request, &response);
      ASSERT_TRUE(status.ok()) << status.error_message();
      ASSERT_EQ(response.counts().recorded(), static_cast<int64_t>(end - begin))
          << response.counts().ShortDebugString();
    }
  }

  // An event `name` of `unit` at start_ + `ms` milliseconds (distinct times
  // keep repeated events of a unit apart: the idempotency key derives from
  // the time).
  v1::EventRecord Event(const std::string& unit, const std::string& name,
                        int64_t ms, std::optional<double> value = {}) const {
    v1::EventRecord e;
    *e.mutable_unit() = User(unit);
    e.set_name(name);
    if (value) e.set_value(*value);
    *e.mutable_time() = ToProto(start_ + absl::Milliseconds(ms));
    return e;
  }

  // Records `events`; each must move a metric of the experiment its unit was
  // exposed in, unless `all_count` is false.
  void Send(const std::vector<v1::EventRecord>& events, bool all_count = true) {
    for (size_t begin = 0; begin < events.size(); begin += kRecordBatch) {
      const size_t end = std::min(events.size(), begin + kRecordBatch);
      v1::RecordEventsRequest request;
      for (size_t i = begin; i < end; ++i) *request.add_events() = events[i];
      v1::RecordEventsResponse response;
      grpc::Status status = RecordEvents(request, &response);
      ASSERT_TRUE(status.ok()) << status.error_message();
      if (!all_count) continue;
      ASSERT_EQ(response.counts().recorded(), static_cast<int64_t>(end - begin))
          << response.counts().ShortDebugString();
    }
  }

  void GetResults(const std::string& experiment,
                  v1::GetResultsResponse* response,
                  const std::string& dimension = "") {
    v1::GetResultsRequest request;
    request.set_experiment_key(experiment);
    request.set_dimension(dimension);
    grpc::ClientContext context;
    SetDeadline(&context, absl::Seconds(30));
    grpc::Status status = results_->GetResults(&context, request, response);
    ASSERT_TRUE(status.ok()) << status.error_message();
  }

  // Runs results_reference.py on `table` with `args` and parses its JSON.
  void Reference(const UnitTable& table, const std::vector<std::string>& args,
                 Struct* out) {
    std::vector<std::string> argv = {
        ABEXP_TEST_PYTHON, ABEXP_SOURCE_DIR "/tests/results_reference.py",
        "--csv=" + dir_.Write("units.csv", table.ToCsv())};
    argv.insert(argv.end(), args.begin(), args.end());
    std::string stdout_text, stderr_text;
    absl::StatusOr<int> rc =
        RunProcess(argv, &stdout_text, &stderr_text, absl::Seconds(120));
    ASSERT_TRUE(rc.ok()) << rc.status();
    ASSERT_EQ(*rc, 0) << absl::StrJoin(argv, " ") << "\n"
                      << stderr_text
                      << "\n(it needs python3-scipy and python3-statsmodels: "
                         "scripts/install-deps.sh installs them)";
    const auto status =
        google::protobuf::util::JsonStringToMessage(stdout_text, out);
    ASSERT_TRUE(status.ok()) << status.ToString() << "\n" << stdout_text;
  }

  const absl::Time start_ = absl::Now();
  std::string config_version_;
  std::unique_ptr<v1::ResultsService::Stub> results_;
};

// Orders per unit depend on the unit's orders in the 90 days before (x):
// y ~ Poisson(0.3 + 0.35 x + 0.1 in treatment), x ~ Poisson(2); 10% of the
// units send no x. The CUPED figures must be statsmodels' OLS of y on the
// variant and the centred x over the units with x, and narrow the interval.
TEST_F(ResultsSimulationTest, CupedFiguresAreOlsOnTheUnitsWithTheCovariate) {
  ASSERT_NO_FATAL_FAILURE(StartAll());
  std::vector<Unit> units;
  ASSERT_NO_FATAL_FAILURE(Assign("cuped", "c", 6000, &units));
  std::mt19937_64 rng(20261207);
  std::poisson_distribution<int> prior(2.0);
  std::bernoulli_distribution lacks(0.1);
  UnitTable table({"orders", "ordered", "x"});
  std::vector<double> covariates;
  std::vector<v1::EventRecord> events;
  for (const Unit& u : units) {
    const int x = prior(rng);
    const double lift = u.variant == "treatment" ? 0.1 : 0;
    std::poisson_distribution<int> orders(0.3 + 0.35 * x + lift);
    const int y = orders(rng);
    for (int k = 0; k < y; ++k)
      events.push_back(Event(u.id, "order", 1000 + k));
    const double sent = lacks(rng) ? std::nan("") : x;
    covariates.push_back(sent);
    table.Add(u.variant, {static_cast<double>(y), y > 0 ? 1.0 : 0.0, sent});
  }
  ASSERT_NO_FATAL_FAILURE(Expose("cuped", units, covariates));
  ASSERT_NO_FATAL_FAILURE(Send(events));

  v1::GetResultsResponse r;
  ASSERT_NO_FATAL_FAILURE(GetResults("cuped", &r));
  Struct ref;
  ASSERT_NO_FATAL_FAILURE(Reference(
      table,
      {"--variants=control,treatment", "--weights=50,50",
       "--sum=orders_cuped=orders", "--binomial=ordered_cuped=ordered",
       "--cuped=orders_cuped=orders:x", "--cuped=ordered_cuped=ordered:x"},
      &ref));
  ExpectMatchesReference(r, ref);  // the unadjusted figures, all units
  ASSERT_EQ(r.variants_size(), 2);
  for (const std::string key : {"orders_cuped", "ordered_cuped"}) {
    const Struct want = At(ref, {"cuped", key}).struct_value();
    for (const v1::VariantResult& variant : r.variants()) {
      const std::string what = absl::StrCat(key, " ", variant.key(), " cuped");
      const v1::MetricResult* m = FindMetric(variant, key);
      ASSERT_NE(m, nullptr);
      ASSERT_TRUE(m->has_cuped()) << what;
      const v1::CupedFigures& c = m->cuped();
      ExpectFigure(what + " units", true,
                   static_cast<double>(c.units_with_covariate()),
                   At(want, {"units", variant.key()}));
      EXPECT_EQ(c.units_with_covariate() + c.units_without_covariate(),
                variant.exposed_units());
      EXPECT_GT(c.units_without_covariate(), 0) << what;
      ExpectFigure(what + " estimate", c.has_estimate(), c.estimate(),
                   At(want, {"estimate", variant.key()}));
      if (variant.is_control()) continue;
      ExpectFigure(what + " theta", c.has_theta(), c.theta(),
                   At(want, {"theta"}));
      const Struct cell =
          At(want, {"vs_control", variant.key()}).struct_value();
      const Struct abs = At(cell, {"absolute"}).struct_value();
      const Struct rel = At(cell, {"relative"}).struct_value();
      for (const auto& [name, got, has, ref_value] :
           std::vector<std::tuple<std::string, double, bool, Value>>{
               {"abs.estimate", c.absolute().estimate(),
                c.absolute().has_estimate(), At(abs, {"estimate"})},
               {"abs.ci_low", c.absolute().ci_low(), c.absolute().has_ci_low(),
                At(abs, {"ci_low"})},
               {"abs.ci_high", c.absolute().ci_high(),
                c.absolute().has_ci_high(), At(abs, {"ci_high"})},
               {"abs.p_value", c.absolute().p_value(),
                c.absolute().has_p_value(), At(abs, {"p_value"})},
               {"abs.df", c.absolute().df(), c.absolute().has_df(),
                At(abs, {"df"})},
               {"rel.estimate", c.relative().estimate(),
                c.relative().has_estimate(), At(rel, {"estimate"})},
               {"rel.ci_low", c.relative().ci_low(), c.relative().has_ci_low(),
                At(rel, {"ci_low"})},
               {"rel.ci_high", c.relative().ci_high(),
                c.relative().has_ci_high(), At(rel, {"ci_high"})},
               {"rel.p_value", c.relative().p_value(),
                c.relative().has_p_value(), At(rel, {"p_value"})},
               {"variance_reduction", c.variance_reduction(),
                c.has_variance_reduction(), At(cell, {"variance_reduction"})},
           }) {
        ExpectFigure(what + " " + name, has, got, ref_value);
      }
      // x explains much of y: the adjusted interval is the narrower.
      const v1::Effect& raw = m->absolute();
      EXPECT_LT(c.absolute().ci_high() - c.absolute().ci_low(),
                raw.ci_high() - raw.ci_low())
          << what;
      EXPECT_GT(c.variance_reduction(), 0.05) << what;
    }
  }
}

// A checkout funnel: view (50%, treatment 56%), payment within 0 to 45
// minutes of the view (55%, treatment 65%; only those within 30 minutes
// count), order 1 to 600 s after payment (70%); 5% of the units also send a
// payment before their view, and 5% an order without a view. Events are
// sent in time order. Every step figure must equal results_reference.py's,
// which replays each unit's raw event times by the documented rule and
// compares the reached steps with the proportions test.
TEST_F(ResultsSimulationTest, FunnelStepsMatchTheRuleReplayedOnRawUnits) {
  ASSERT_NO_FATAL_FAILURE(StartAll());
  std::vector<Unit> units;
  ASSERT_NO_FATAL_FAILURE(Assign("funnel", "f", 6000, &units));
  std::mt19937_64 rng(20261208);
  auto chance = [&](double p) { return std::bernoulli_distribution(p)(rng); };
  auto between = [&](int64_t lo, int64_t hi) {
    return std::uniform_int_distribution<int64_t>(lo, hi)(rng);
  };
  const double kNone = std::nan("");
  UnitTable table({"view", "pay", "stray_pay", "order", "stray_order"});
  std::vector<std::pair<int64_t, v1::EventRecord>> timed;
  auto add = [&](const Unit& u, const char* name, int64_t ms) {
    timed.emplace_back(ms, Event(u.id, name, ms));
    return static_cast<double>(ms);
  };
  for (const Unit& u : units) {
    const bool treated = u.variant == "treatment";
    // Times in ms after the exposure; each unit's are distinct.
    double view = kNone, pay = kNone, stray_pay = kNone, order = kNone,
           stray_order = kNone;
    if (chance(0.05)) stray_pay = add(u, "submit_payment", between(1, 499));
    if (chance(0.05))
      stray_order = add(u, "order_completed", between(500, 999));
    if (chance(treated ? 0.56 : 0.5)) {
      const int64_t v = between(1000, 3600000);
      view = add(u, "view_checkout", v);
      if (chance(treated ? 0.65 : 0.55)) {
        const int64_t p = v + between(1000, 45 * 60000);
        pay = add(u, "submit_payment", p);
        if (chance(0.7))
          order = add(u, "order_completed", p + between(1000, 600000));
      }
    }
    table.Add(u.variant, {view, pay, stray_pay, order, stray_order});
  }
  std::stable_sort(
      timed.begin(), timed.end(),
      [](const auto& a, const auto& b) { return a.first < b.first; });
  std::vector<v1::EventRecord> events;
  for (auto& [ms, e] : timed) events.push_back(std::move(e));
  ASSERT_NO_FATAL_FAILURE(Expose("funnel", units));
  ASSERT_NO_FATAL_FAILURE(Send(events, /*all_count=*/false));

  v1::GetResultsResponse r;
  ASSERT_NO_FATAL_FAILURE(GetResults("funnel", &r));
  Struct ref;
  ASSERT_NO_FATAL_FAILURE(
      Reference(table,
                {"--variants=control,treatment", "--weights=50,50",
                 "--funnel=checkout_steps=86400000;view;pay+stray_pay:1800000;"
                 "order+stray_order"},
                &ref));
  ExpectMatchesReference(r, ref);  // the funnel as a whole: completed
  const Struct want = At(ref, {"funnels", "checkout_steps"}).struct_value();
  for (const v1::VariantResult& variant : r.variants()) {
    const v1::MetricResult* m = FindMetric(variant, "checkout_steps");
    ASSERT_NE(m, nullptr);
    ASSERT_EQ(m->funnel_steps_size(), 3);
    // Values, not references: At returns a copy.
    const Value steps_value = At(want, {"steps", variant.key()});
    const google::protobuf::ListValue& steps = steps_value.list_value();
    ASSERT_EQ(steps.values_size(), 3) << variant.key();
    for (int k = 0; k < 3; ++k) {
      const std::string what = absl::StrCat(variant.key(), " step ", k + 1);
      const v1::FunnelStepFigures& got = m->funnel_steps(k);
      const Struct& step = steps.values(k).struct_value();
      ExpectFigure(what + " units", true, static_cast<double>(got.units()),
                   At(step, {"units"}));
      EXPECT_GT(got.units(), 100) << what;
      ExpectFigure(what + " rate_from_exposure", got.has_rate_from_exposure(),
                   got.rate_from_exposure(), At(step, {"rate_from_exposure"}));
      ExpectFigure(what + " rate_from_previous", got.has_rate_from_previous(),
                   got.rate_from_previous(), At(step, {"rate_from_previous"}));
      if (variant.is_control()) {
        EXPECT_FALSE(got.has_from_exposure()) << what;
        continue;
      }
      const Struct cell = At(want, {"vs_control", variant.key()})
                              .list_value()
                              .values(k)
                              .struct_value();
      for (const auto& [name, comparison] :
           {std::make_pair("from_exposure", &got.from_exposure()),
            std::make_pair("from_previous", &got.from_previous())}) {
        const Struct c = At(cell, {name}).struct_value();
        ExpectEffect(what + " " + name + ".absolute", comparison->absolute(),
                     At(c, {"absolute"}).struct_value());
        ExpectEffect(what + " " + name + ".relative", comparison->relative(),
                     At(c, {"relative"}).struct_value());
      }
    }
  }
}

TEST_F(ResultsSimulationTest, TrueEffectOnCheckoutIsDetectedAndShipped) {
  ASSERT_NO_FATAL_FAILURE(StartAll());
  std::vector<Unit> units;
  ASSERT_NO_FATAL_FAILURE(Assign("checkout", "u", 40000, &units));

  // Order conversion 10% in control, 12% in treatment; an order's revenue is
  // heavy-tailed (lognormal, sigma 1.5: the top 1% of orders bring ~20% of
  // the revenue), in cents, the same in both arms.
  std::mt19937_64 rng(20240611);
  std::bernoulli_distribution converts_control(0.10);
  std::bernoulli_distribution converts_treatment(0.12);
  std::lognormal_distribution<double> order_value(3.0, 1.5);
  UnitTable table({"converted", "revenue"});
  std::vector<v1::EventRecord> events;
  for (const Unit& u : units) {
    const bool converted = u.variant == "treatment" ? converts_treatment(rng)
                                                    : converts_control(rng);
    double revenue = 0;
    if (converted) {
      revenue = std::max(0.01, std::round(order_value(rng) * 100) / 100);
      events.push_back(Event(u.id, "purchase", 1000, revenue));
    }
    table.Add(u.variant, {converted ? 1.0 : 0.0, revenue});
  }
  ASSERT_NO_FATAL_FAILURE(Expose("checkout", units));
  ASSERT_NO_FATAL_FAILURE(Send(events));

  v1::GetResultsResponse r;
  ASSERT_NO_FATAL_FAILURE(GetResults("checkout", &r));
  Struct ref;
  ASSERT_NO_FATAL_FAILURE(Reference(
      table,
      {"--variants=control,treatment", "--weights=50,50",
       "--binomial=order_conversion=converted", "--sum=revenue=revenue"},
      &ref));
  ExpectMatchesReference(r, ref);
  ExpectFigure("srm.chi2", r.srm().has_chi2(), r.srm().chi2(),
               At(ref, {"srm", "chi2"}));
  ExpectFigure("srm.p_value", r.srm().has_p_value(), r.srm().p_value(),
               At(ref, {"srm", "p_value"}));
  EXPECT_FALSE(r.srm().mismatch());

  // The true effect is +0.02: found, with an interval that covers it (as a
  // 95% interval does for 95% of seeds; the run is deterministic).
  ASSERT_EQ(r.variants_size(), 2);
  const v1::MetricResult* orders =
      FindMetric(r.variants(1), "order_conversion");
  ASSERT_NE(orders, nullptr);
  const v1::Effect& abs = orders->absolute();
  ASSERT_TRUE(abs.has_adjusted_p_value() && abs.has_ci_low() &&
              abs.has_ci_high());
  EXPECT_LT(abs.adjusted_p_value(), 0.05);
  EXPECT_GT(abs.ci_low(), 0.0);
  EXPECT_LE(abs.ci_low(), 0.02);
  EXPECT_GE(abs.ci_high(), 0.02);
  EXPECT_EQ(r.decision().kind(), v1::DECISION_KIND_SHIP);
  EXPECT_EQ(r.decision().variant(), "treatment");
  EXPECT_EQ(r.decision().metric(), "order_conversion");
  EXPECT_EQ(r.decision().text(), "ship treatment");
}

// 24,000 units on three platforms (ios half, android a third, web the
// rest); conversion 10% vs 12% and lognormal revenue as above. Web loses
// every 6th treatment exposure (a broken web client): about 2,000 vs 1,667,
// chi2 ~ 30, which the web segment's SRM check must find while ios and
// android pass. Each segment's figures must be the reference's computed on
// that segment's raw units alone.
TEST_F(ResultsSimulationTest,
       SegmentFiguresMatchTheReferenceOnEachValuesUnits) {
  ASSERT_NO_FATAL_FAILURE(StartAll());
  std::vector<Unit> assigned;
  ASSERT_NO_FATAL_FAILURE(Assign("segmented", "u", 24000, &assigned));
  std::mt19937_64 rng(18);
  std::discrete_distribution<int> platform_of({3, 2, 1});
  const std::vector<std::string> kPlatforms = {"ios", "android", "web"};
  std::bernoulli_distribution converts_control(0.10);
  std::bernoulli_distribution converts_treatment(0.12);
  std::lognormal_distribution<double> order_value(3.0, 1.5);
  std::map<std::string, UnitTable> tables;
  for (const std::string& p : kPlatforms) {
    tables.emplace(p, UnitTable({"converted", "revenue"}));
  }
  std::vector<Unit> exposed;
  std::vector<std::string> platforms;
  std::vector<v1::EventRecord> events;
  int web_treatment = 0;
  for (const Unit& u : assigned) {
    const std::string& platform = kPlatforms[platform_of(rng)];
    const bool converted = u.variant == "treatment" ? converts_treatment(rng)
                                                    : converts_control(rng);
    double revenue = 0;
    if (converted) {
      revenue = std::max(0.01, std::round(order_value(rng) * 100) / 100);
    }
    if (platform == "web" && u.variant == "treatment" &&
        web_treatment++ % 6 == 0) {
      continue;  // the exposure never arrives
    }
    exposed.push_back(u);
    platforms.push_back(platform);
    if (converted) events.push_back(Event(u.id, "purchase", 1000, revenue));
    tables.at(platform).Add(u.variant, {converted ? 1.0 : 0.0, revenue});
  }
  ASSERT_NO_FATAL_FAILURE(Expose("segmented", exposed, {}, platforms));
  ASSERT_NO_FATAL_FAILURE(Send(events));

  v1::GetResultsResponse r;
  ASSERT_NO_FATAL_FAILURE(GetResults("segmented", &r, "platform"));
  EXPECT_EQ(r.dimension(), "platform");
  ASSERT_EQ(r.segments_size(), 3);
  for (const v1::SegmentResult& segment : r.segments()) {
    SCOPED_TRACE(segment.value());
    ASSERT_EQ(tables.count(segment.value()), 1u);
    Struct ref;
    ASSERT_NO_FATAL_FAILURE(Reference(
        tables.at(segment.value()),
        {"--variants=control,treatment", "--weights=50,50",
         "--binomial=order_conversion=converted", "--sum=revenue=revenue"},
        &ref));
    v1::GetResultsResponse as_totals;
    *as_totals.mutable_variants() = segment.variants();
    ExpectMatchesReference(as_totals, ref);
    ExpectFigure("srm.chi2", segment.srm().has_chi2(), segment.srm().chi2(),
                 At(ref, {"srm", "chi2"}));
    ExpectFigure("srm.p_value", segment.srm().has_p_value(),
                 segment.srm().p_value(), At(ref, {"srm", "p_value"}));
    EXPECT_EQ(segment.srm().mismatch(), segment.value() == "web");
    EXPECT_TRUE(segment.warnings().empty());
  }
}

// 80,000 units at 95/5: about 4,000 in the small arm. Losing 10% of its
// exposures (test below) leaves 3,600 of the 3,980 expected of 79,600:
// chi2 ~ 380^2 / 3980 + 380^2 / 75620 = 38.2, p ~ 6e-10. With the noise of
// the split, a set of units raises the alarm (chi2 > 10.83, p < 0.001) with
// probability 0.998 (noncentral chi2, df 1, lambda 38.2).
constexpr int kBannerUnits = 80000;

TEST_F(ResultsSimulationTest, UnbiasedNinetyFiveFiveSplitRaisesNoAlarm) {
  ASSERT_NO_FATAL_FAILURE(StartAll());
  std::vector<Unit> units;
  ASSERT_NO_FATAL_FAILURE(Assign("banner", "u", kBannerUnits, &units));
  UnitTable table({});
  for (const Unit& u : units) table.Add(u.variant, {});
  ASSERT_NO_FATAL_FAILURE(Expose("banner", units));

  v1::GetResultsResponse r;
  ASSERT_NO_FATAL_FAILURE(GetResults("banner", &r));
  Struct ref;
  ASSERT_NO_FATAL_FAILURE(Reference(
      table, {"--variants=control,treatment", "--weights=95,5"}, &ref));
  ExpectMatchesReference(r, ref);
  ExpectFigure("srm.chi2", r.srm().has_chi2(), r.srm().chi2(),
               At(ref, {"srm", "chi2"}));
  ExpectFigure("srm.p_value", r.srm().has_p_value(), r.srm().p_value(),
               At(ref, {"srm", "p_value"}));
  EXPECT_FALSE(r.srm().mismatch());
  EXPECT_GE(r.srm().p_value(), 0.001);
  EXPECT_NE(r.decision().kind(), v1::DECISION_KIND_DO_NOT_TRUST)
      << r.decision().text();
}

TEST_F(ResultsSimulationTest, LosingTenPercentOfTheSmallArmRaisesTheAlarm) {
  ASSERT_NO_FATAL_FAILURE(StartAll());
  std::vector<Unit> assigned;
  ASSERT_NO_FATAL_FAILURE(Assign("banner", "u", kBannerUnits, &assigned));
  // Every 10th unit of the 5% arm never reports its exposure, as when a
  // redirect loses some of the treatment's page loads.
  std::vector<Unit> exposed;
  UnitTable table({});
  int treatment_seen = 0;
  for (const Unit& u : assigned) {
    if (u.variant == "treatment" && treatment_seen++ % 10 == 0) continue;
    exposed.push_back(u);
    table.Add(u.variant, {});
  }
  ASSERT_NO_FATAL_FAILURE(Expose("banner", exposed));

  v1::GetResultsResponse r;
  ASSERT_NO_FATAL_FAILURE(GetResults("banner", &r));
  Struct ref;
  ASSERT_NO_FATAL_FAILURE(Reference(
      table, {"--variants=control,treatment", "--weights=95,5"}, &ref));
  ExpectMatchesReference(r, ref);
  ExpectFigure("srm.chi2", r.srm().has_chi2(), r.srm().chi2(),
               At(ref, {"srm", "chi2"}));
  ExpectFigure("srm.p_value", r.srm().has_p_value(), r.srm().p_value(),
               At(ref, {"srm", "p_value"}));
  EXPECT_TRUE(r.srm().mismatch());
  EXPECT_LT(r.srm().p_value(), 0.001);
  EXPECT_THAT(absl::StrJoin(r.srm().warnings(), "\n"),
              HasSubstr("SAMPLE RATIO MISMATCH"));
  EXPECT_EQ(r.decision().kind(), v1::DECISION_KIND_DO_NOT_TRUST);
  EXPECT_EQ(r.decision().text(), "do not trust: sample ratio mismatch");
}

TEST_F(ResultsSimulationTest, RatioMetricsMatchTheDeltaMethodOnRawUnits) {
  ASSERT_NO_FATAL_FAILURE(StartAll());
  // 3,000 users per arm. Orders per user 0-3 (some users never order: their
  // denominator is 0 and they still count in n), order values lognormal, 5%
  // higher in treatment; banner views 1-8 per user and a click on each view
  // with probability 0.30 (control) or 0.33 (treatment).
  std::mt19937_64 rng(7);
  std::binomial_distribution<int> orders(3, 0.4);
  std::lognormal_distribution<double> value(3.5, 0.8);
  std::uniform_int_distribution<int> views(1, 8);
  std::vector<Unit> units;
  UnitTable table({"order_value", "orders", "clicks", "views"});
  std::vector<v1::EventRecord> events;
  for (const std::string variant : {"control", "treatment"}) {
    const bool treated = variant == "treatment";
    std::bernoulli_distribution clicks_on_view(treated ? 0.33 : 0.30);
    for (int i = 0; i < 3000; ++i) {
      const Unit u{absl::StrCat(variant, i), variant};
      units.push_back(u);
      double total = 0;
      const int n_orders = orders(rng);
      for (int k = 0; k < n_orders; ++k) {
        const double v = std::round(value(rng) * (treated ? 105 : 100)) / 100;
        total += v;
        events.push_back(Event(u.id, "purchase", 1000 + k, v));
      }
      const int n_views = views(rng);
      int n_clicks = 0;
      for (int k = 0; k < n_views; ++k) {
        events.push_back(Event(u.id, "banner_view", 2000 + k));
        if (clicks_on_view(rng)) {
          events.push_back(Event(u.id, "banner_click", 3000 + k));
          ++n_clicks;
        }
      }
      table.Add(variant,
                {total, static_cast<double>(n_orders),
                 static_cast<double>(n_clicks), static_cast<double>(n_views)});
    }
  }
  ASSERT_NO_FATAL_FAILURE(Expose("basket", units));
  ASSERT_NO_FATAL_FAILURE(Send(events));

  v1::GetResultsResponse r;
  ASSERT_NO_FATAL_FAILURE(GetResults("basket", &r));
  Struct ref;
  ASSERT_NO_FATAL_FAILURE(Reference(
      table,
      {"--variants=control,treatment", "--ratio=order_value=order_value/orders",
       "--ratio=click_through=clicks/views"},
      &ref));
  ExpectMatchesReference(r, ref);
  ASSERT_EQ(r.variants_size(), 2);
  for (const v1::MetricResult& m : r.variants(1).metrics()) {
    EXPECT_EQ(m.type(), "ratio") << m.metric_key();
  }
}

// The Bayesian figures of a binomial metric equal bayes.golden, whose values
// gen_bayes.py sums exactly in rational arithmetic, to the 1e-9 relative
// that the library's own golden tests hold (docs/statistics.md). The last
// case is a lower-is-better guardrail (refunds) that is worse in treatment.
TEST_F(ResultsSimulationTest, BinomialBayesFiguresMatchTheExactGolden) {
  ASSERT_NO_FATAL_FAILURE(StartAll());
  absl::StatusOr<std::vector<GoldenCase>> golden =
      LoadGolden("stats/testdata/bayes.golden");
  ASSERT_TRUE(golden.ok()) << golden.status();
  struct Case {
    std::string experiment, golden, metric, event;
  };
  const std::vector<Case> cases = {
      {"bayes_a", "reference_140_vs_120", "order_conversion", "purchase"},
      {"bayes_b", "small_unequal_n", "order_conversion", "purchase"},
      {"bayes_c", "moderate", "order_conversion", "purchase"},
      {"bayes_lower", "lower_worse_refunds", "refund_rate", "refund"}};
  std::vector<const GoldenCase*> wanted;
  for (const auto& [experiment, name, metric, event] : cases) {
    const GoldenCase* found = nullptr;
    for (const GoldenCase& c : *golden) {
      if (c.name == name) found = &c;
    }
    ASSERT_NE(found, nullptr) << name << " is not in bayes.golden";
    // The metric's direction is the golden case's.
    ASSERT_EQ(found->Has("better"), metric == "refund_rate") << name;
    wanted.push_back(found);
    // The first x of the n units of each arm convert.
    std::vector<Unit> units;
    std::vector<v1::EventRecord> events;
    for (const auto& [variant, arm] :
         {std::pair<std::string, std::string>{"control", "c"},
          std::pair<std::string, std::string>{"treatment", "t"}}) {
      const int n = static_cast<int>(found->Num("n_" + arm));
      const int x = static_cast<int>(found->Num("x_" + arm));
      for (int i = 0; i < n; ++i) {
        units.push_back({absl::StrCat(experiment, "_", arm, i), variant});
        if (i < x) events.push_back(Event(units.back().id, event, 1000));
      }
    }
    ASSERT_NO_FATAL_FAILURE(Expose(experiment, units));
    ASSERT_NO_FATAL_FAILURE(Send(events));
  }
  for (size_t i = 0; i < cases.size(); ++i) {
    const GoldenCase& c = *wanted[i];
    v1::GetResultsResponse r;
    ASSERT_NO_FATAL_FAILURE(GetResults(cases[i].experiment, &r));
    ASSERT_EQ(r.variants_size(), 2);
    EXPECT_EQ(r.variants(0).exposed_units(), static_cast<int64_t>(c.Num("n_c")))
        << c.name;
    EXPECT_EQ(r.variants(1).exposed_units(), static_cast<int64_t>(c.Num("n_t")))
        << c.name;
    const v1::MetricResult* m = FindMetric(r.variants(1), cases[i].metric);
    ASSERT_NE(m, nullptr);
    const v1::BayesFigures& b = m->bayes();
    for (const auto& [key, has, got] :
         {std::tuple<std::string, bool, double>{"chance_to_beat_control",
                                                b.has_chance_to_beat_control(),
                                                b.chance_to_beat_control()},
          {"expected_loss_ship", b.has_expected_loss_ship(),
           b.expected_loss_ship()},
          {"expected_loss_keep", b.has_expected_loss_keep(),
           b.expected_loss_keep()}}) {
      const std::string what = absl::StrCat(c.name, " ", key);
      ASSERT_TRUE(has) << what << " is unset";
      EXPECT_NEAR(got, c.Num(key), 1e-9 * std::fabs(c.Num(key))) << what;
    }
  }
}

// A lower-is-better sum (support minutes per user) that treatment raises:
// the Gaussian chance is that treatment is *below* control, and shipping
// is the costly choice. Compared with results_reference.py, which integrates
// each figure from its definition.
TEST_F(ResultsSimulationTest, LowerIsBetterSumReadsItsBayesFiguresThatWay) {
  ASSERT_NO_FATAL_FAILURE(StartAll());
  std::vector<Unit> units;
  ASSERT_NO_FATAL_FAILURE(Assign("support", "u", 6000, &units));
  // 20% of users call support; a call lasts exponentially long, mean 6
  // minutes in control and 8 in treatment (+0.4 minutes per user, about
  // 3.7 standard errors).
  std::mt19937_64 rng(16);
  std::bernoulli_distribution calls(0.2);
  std::exponential_distribution<double> control_minutes(1 / 6.0);
  std::exponential_distribution<double> treatment_minutes(1 / 8.0);
  UnitTable table({"minutes"});
  std::vector<v1::EventRecord> events;
  for (const Unit& u : units) {
    double minutes = 0;
    if (calls(rng)) {
      minutes = std::round((u.variant == "treatment" ? treatment_minutes(rng)
                                                     : control_minutes(rng)) *
                           100) /
                    100 +
                0.01;
      events.push_back(Event(u.id, "support_call", 1000, minutes));
    }
    table.Add(u.variant, {minutes});
  }
  ASSERT_NO_FATAL_FAILURE(Expose("support", units));
  ASSERT_NO_FATAL_FAILURE(Send(events));

  v1::GetResultsResponse r;
  ASSERT_NO_FATAL_FAILURE(GetResults("support", &r));
  Struct ref;
  ASSERT_NO_FATAL_FAILURE(Reference(
      table,
      {"--variants=control,treatment", "--sum=support_minutes=minutes",
       "--lower-is-better=support_minutes"},
      &ref));
  ExpectMatchesReference(r, ref);

  ASSERT_EQ(r.variants_size(), 2);
  const v1::MetricResult* m = FindMetric(r.variants(1), "support_minutes");
  ASSERT_NE(m, nullptr);
  EXPECT_FALSE(m->higher_is_better());
  ASSERT_TRUE(m->absolute().has_estimate() && m->absolute().has_p_value());
  ASSERT_GT(m->absolute().estimate(), 0);
  ASSERT_LT(m->absolute().p_value(), 0.05);
  EXPECT_LT(m->bayes().chance_to_beat_control(), 0.05);
  EXPECT_GT(m->bayes().expected_loss_ship(), m->bayes().expected_loss_keep());
  EXPECT_EQ(r.decision().kind(), v1::DECISION_KIND_GUARDRAIL_WORSE);
  EXPECT_EQ(r.decision().metric(), "support_minutes");
}

}  // namespace
}  // namespace abexp
