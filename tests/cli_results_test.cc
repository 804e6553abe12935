// The real `abexp results` command against a real abexp-server recording
// into a real redis-server: exposures and events with chosen counts are
// recorded over gRPC, then the CLI's JSON, CSV and text are checked against
// the GetResults RPC itself and against values computed independently
// (stats/testdata/compare.golden and SciPy, see each constant), and its
// flags and exit codes against what `abexp results --help` promises.
#include <algorithm>
#include <cmath>
#include <fstream>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "abexp/v1/recording.grpc.pb.h"
#include "abexp/v1/results.grpc.pb.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
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

using ::abexp::testing::RecordingServerTest;
using ::abexp::testing::RunProcess;
using ::abexp::testing::SetDeadline;
using ::abexp::testing::ToProto;
using ::abexp::testing::User;
using ::google::protobuf::ListValue;
using ::google::protobuf::Struct;
using ::google::protobuf::Value;
using ::testing::HasSubstr;
using ::testing::Not;

constexpr char kConfig[] = R"yaml(
attributes: {platform: string}
metrics:
  - key: order_conversion
    type: binomial
    event: order_completed
  - key: signup
    type: binomial
    event: signed_up
  - key: errors
    type: binomial
    event: error_shown
    guardrail: true
    higher_is_better: false
  - key: checkout_steps
    type: funnel
    steps: [view_checkout, submit_payment, order_completed]

experiments:
  - key: checkout
    status: running
    variants:
      - {key: control, weight: 50}
      - {key: treatment, weight: 50}
    metrics: [order_conversion, signup]
    primary_metric: order_conversion
  - key: guarded
    status: running
    variants:
      - {key: control, weight: 50}
      - {key: treatment, weight: 50}
    metrics: [order_conversion, errors]
    primary_metric: order_conversion
  - key: three
    status: running
    variants:
      - {key: control, weight: 1}
      - {key: a, weight: 1}
      - {key: b, weight: 1}
    metrics: [order_conversion]
    primary_metric: order_conversion
  - key: funnel
    status: running
    variants:
      - {key: control, weight: 50}
      - {key: treatment, weight: 50}
    metrics: [checkout_steps, errors]
    primary_metric: checkout_steps
  - key: segmented
    status: running
    variants:
      - {key: control, weight: 50}
      - {key: treatment, weight: 50}
    metrics: [order_conversion]
    primary_metric: order_conversion
    dimensions: [platform]
)yaml";

// The keys docs/statistics.md ("CLI `abexp results`") promises, exactly.
const std::set<std::string> kTopKeys = {
    "adjust_method",   "alpha",    "config_version",
    "config_versions", "decision", "experiment",
    "guardrails",      "metrics",  "multi_exposed_units",
    "phase",           "srm",      "variants"};
const std::set<std::string> kMetricKeys = {
    "guardrail", "higher_is_better", "key", "primary", "type", "variants"};
const std::set<std::string> kCellKeys = {
    "absolute", "bayes",      "cuped", "estimate", "funnel_steps", "is_control",
    "relative", "sequential", "units", "variant",  "warnings"};
const std::set<std::string> kEffectKeys = {
    "adjusted_p_value", "ci_high", "ci_low", "df", "estimate", "p_value"};
const std::set<std::string> kBayesKeys = {
    "chance_to_beat_control", "expected_loss_keep", "expected_loss_ship"};
const std::set<std::string> kSequentialKeys = {"ci_high", "ci_low", "p_value"};
const std::set<std::string> kSrmKeys = {"chi2", "mismatch", "p_value",
                                        "warnings"};
const std::set<std::string> kDecisionKeys = {"kind", "metric", "more_days",
                                             "text", "variant"};
const std::vector<std::string> kCsvHeader = {
    "experiment",
    "metric",
    "metric_type",
    "primary",
    "guardrail",
    "higher_is_better",
    "variant",
    "is_control",
    "units",
    "estimate",
    "abs_estimate",
    "abs_ci_low",
    "abs_ci_high",
    "abs_p_value",
    "abs_adjusted_p_value",
    "abs_df",
    "rel_estimate",
    "rel_ci_low",
    "rel_ci_high",
    "rel_p_value",
    "rel_adjusted_p_value",
    "chance_to_beat_control",
    "expected_loss_ship",
    "expected_loss_keep",
    "seq_ci_low",
    "seq_ci_high",
    "seq_p_value",
    "warnings",
    "cuped_units",
    "cuped_units_without",
    "cuped_estimate",
    "cuped_abs_estimate",
    "cuped_abs_ci_low",
    "cuped_abs_ci_high",
    "cuped_abs_p_value",
    "cuped_rel_estimate",
    "cuped_rel_ci_low",
    "cuped_rel_ci_high",
    "cuped_rel_p_value",
    "cuped_theta",
    "cuped_variance_reduction",
    "funnel_step_units",
    "funnel_rates_from_exposure",
    "funnel_rates_from_previous",
    "funnel_from_exposure_abs_estimates",
    "funnel_from_exposure_p_values",
    "funnel_from_previous_abs_estimates",
    "funnel_from_previous_p_values",
    "dimension",
    "segment"};

struct Result {
  int code = -1;
  std::string out;
  std::string err;
};

Result Cli(std::vector<std::string> args) {
  args.insert(args.begin(), ABEXP_CLI_BIN);
  Result r;
  absl::StatusOr<int> code = RunProcess(args, &r.out, &r.err);
  EXPECT_TRUE(code.ok()) << code.status();
  r.code = code.value_or(-1);
  return r;
}

std::set<std::string> KeysOf(const Struct& s) {
  std::set<std::string> keys;
  for (const auto& [key, value] : s.fields()) keys.insert(key);
  return keys;
}

const Value& Field(const Struct& s, const std::string& key) {
  static const Value* const kMissing = new Value();
  auto it = s.fields().find(key);
  if (it == s.fields().end()) {
    ADD_FAILURE() << "JSON has no key " << key;
    return *kMissing;
  }
  return it->second;
}

bool IsNull(const Value& v) { return v.kind_case() == Value::kNullValue; }

// A JSON figure against the RPC's optional field: null when unset, else the
// same double (the CLI prints numbers so that they read back exactly).
void ExpectSameFigure(const std::string& what, const Value& json, bool has,
                      double rpc) {
  if (!has) {
    EXPECT_TRUE(IsNull(json))
        << what << " should be null, is " << json.ShortDebugString();
    return;
  }
  ASSERT_EQ(json.kind_case(), Value::kNumberValue)
      << what << " should be a number, is " << json.ShortDebugString();
  EXPECT_EQ(json.number_value(), rpc) << what;
}

void ExpectSameEffect(const std::string& what, const Struct& json,
                      const v1::Effect& rpc) {
  EXPECT_EQ(KeysOf(json), kEffectKeys) << what;
  ExpectSameFigure(what + ".estimate", Field(json, "estimate"),
                   rpc.has_estimate(), rpc.estimate());
  ExpectSameFigure(what + ".ci_low", Field(json, "ci_low"), rpc.has_ci_low(),
                   rpc.ci_low());
  ExpectSameFigure(what + ".ci_high", Field(json, "ci_high"), rpc.has_ci_high(),
                   rpc.ci_high());
  ExpectSameFigure(what + ".p_value", Field(json, "p_value"), rpc.has_p_value(),
                   rpc.p_value());
  ExpectSameFigure(what + ".adjusted_p_value", Field(json, "adjusted_p_value"),
                   rpc.has_adjusted_p_value(), rpc.adjusted_p_value());
  ExpectSameFigure(what + ".df", Field(json, "df"), rpc.has_df(), rpc.df());
}

const v1::MetricResult* FindMetric(const v1::VariantResult& variant,
                                   const std::string& key) {
  for (const v1::MetricResult& m : variant.metrics()) {
    if (m.metric_key() == key) return &m;
  }
  return nullptr;
}

// The golden case `name` of stats/testdata/compare.golden.
std::optional<stats::testing::GoldenCase> CompareGolden(
    const std::string& name) {
  for (const stats::testing::GoldenCase& c : stats::testing::GoldenCasesOfKind(
           "stats/testdata/compare.golden", "proportions")) {
    if (c.name == name) return c;
  }
  ADD_FAILURE() << "compare.golden has no case " << name;
  return std::nullopt;
}

// The lines of `text` without their line ends.
std::vector<std::string> Lines(const std::string& text) {
  return absl::StrSplit(absl::StripSuffix(text, "\n"), '\n');
}

// The tables of a text report: each starts with a header line beginning
// "VARIANT" and runs to the line before the first that is not a row (a blank
// line or the "bar scale:" line).
std::vector<std::vector<std::string>> Tables(const std::string& text) {
  std::vector<std::vector<std::string>> tables;
  const std::vector<std::string> lines = Lines(text);
  for (size_t i = 0; i < lines.size(); ++i) {
    if (!absl::StartsWith(lines[i], "VARIANT ")) continue;
    std::vector<std::string> table = {lines[i]};
    for (size_t j = i + 1; j < lines.size() && !lines[j].empty() &&
                           !absl::StartsWith(lines[j], "bar scale:") &&
                           !absl::StartsWith(lines[j], "warning:");
         ++j) {
      table.push_back(lines[j]);
    }
    tables.push_back(table);
  }
  return tables;
}

// Where the columns of a header line start: its first character, and each
// word after two or more spaces (header names have single spaces).
std::vector<size_t> ColumnStarts(const std::string& header) {
  std::vector<size_t> starts = {0};
  for (size_t i = 2; i < header.size(); ++i) {
    if (header[i] != ' ' && header[i - 1] == ' ' && header[i - 2] == ' ') {
      starts.push_back(i);
    }
  }
  return starts;
}

// The cell of `row` in the column starting at starts[k].
std::string Cell(const std::string& row, const std::vector<size_t>& starts,
                 size_t k) {
  if (row.size() <= starts[k]) return "";
  const size_t end = k + 1 < starts.size() ? starts[k + 1] : row.size();
  return std::string(absl::StripTrailingAsciiWhitespace(
      row.substr(starts[k], end - starts[k])));
}

// The row of `table` whose first cell is `variant`.
std::string Row(const std::vector<std::string>& table,
                const std::string& variant) {
  for (const std::string& row : table) {
    if (absl::StartsWith(row, variant + " ")) return row;
  }
  ADD_FAILURE() << "no row " << variant << " in\n"
                << absl::StrJoin(table, "\n");
  return "";
}

// The positions of the bar's marks in the last column of `row`.
struct BarMarks {
  size_t zero, low, estimate, high;
};
BarMarks Marks(const std::string& row, size_t bar_start) {
  const std::string bar = row.substr(std::min(bar_start, row.size()));
  BarMarks m{bar.find('|'), bar.find('['), bar.find('*'), bar.find(']')};
  EXPECT_NE(m.zero, std::string::npos) << "no zero mark in '" << bar << "'";
  EXPECT_NE(m.low, std::string::npos) << "no '[' in '" << bar << "'";
  EXPECT_NE(m.estimate, std::string::npos) << "no '*' in '" << bar << "'";
  EXPECT_NE(m.high, std::string::npos) << "no ']' in '" << bar << "'";
  return m;
}

class CliResultsTest : public RecordingServerTest {
 protected:
  CliResultsTest() : RecordingServerTest(kConfig, "cliresults") {}

  void StartAll() {
    ASSERT_NO_FATAL_FAILURE(StartServer());
    results_ = v1::ResultsService::NewStub(grpc::CreateChannel(
        server_->address(), grpc::InsecureChannelCredentials()));
  }

  // Exposes users `prefix`0 .. `prefix`(n-1) to `variant` of `experiment`.
  void Expose(const std::string& experiment, const std::string& variant,
              const std::string& prefix, int n) {
    ExposeUsers(experiment, variant, prefix, n, start_);
  }

  // Sends event `name` once for each of users `prefix`0 .. `prefix`(n-1).
  void Send(const std::string& name, const std::string& prefix, int n) {
    SendEvents(name, prefix, n, start_ + absl::Seconds(1));
  }

  // checkout: 1000 units per arm; order_conversion 100 vs 120 converted
  // (compare.golden proportions_small), signup 0 vs `signups` (a zero
  // baseline: the relative lift is undefined).
  void RecordCheckout(int signups = 5) {
    ASSERT_NO_FATAL_FAILURE(Expose("checkout", "control", "c", 1000));
    ASSERT_NO_FATAL_FAILURE(Expose("checkout", "treatment", "t", 1000));
    ASSERT_NO_FATAL_FAILURE(Send("order_completed", "c", 100));
    ASSERT_NO_FATAL_FAILURE(Send("order_completed", "t", 120));
    if (signups > 0) {
      ASSERT_NO_FATAL_FAILURE(Send("signed_up", "t", signups));
    }
  }

  v1::GetResultsResponse Rpc(const std::string& experiment) {
    v1::GetResultsRequest request;
    request.set_experiment_key(experiment);
    grpc::ClientContext context;
    SetDeadline(&context, absl::Seconds(30));
    v1::GetResultsResponse response;
    const grpc::Status status =
        results_->GetResults(&context, request, &response);
    EXPECT_TRUE(status.ok()) << status.error_message();
    return response;
  }

  // `abexp results ARGS --server=...`.
  Result Run(std::vector<std::string> args) {
    args.insert(args.begin(), "results");
    args.push_back("--server=" + server_->address());
    args.push_back("--timeout=30s");
    return Cli(std::move(args));
  }

  // Runs `abexp results ARGS --format json`, which must succeed, and parses
  // its output.
  Struct Json(std::vector<std::string> args) {
    args.push_back("--format=json");
    const Result r = Run(args);
    EXPECT_EQ(r.code, 0) << r.err;
    Struct s;
    const auto status = google::protobuf::util::JsonStringToMessage(r.out, &s);
    EXPECT_TRUE(status.ok()) << status.ToString() << "\n" << r.out;
    return s;
  }

  // Exposes users `prefix`0 .. `prefix`(n-1) of platform `platform` to
  // `variant` of `experiment`.
  void ExposeOn(const std::string& experiment, const std::string& variant,
                const std::string& platform, const std::string& prefix, int n) {
    v1::RecordExposuresRequest request;
    for (int i = 0; i < n; ++i) {
      v1::ExposureRecord* e = request.add_exposures();
      e->set_experiment_key(experiment);
      e->set_variant_key(variant);
      *e->mutable_unit() = User(absl::StrCat(prefix, i));
      (*e->mutable_unit()->mutable_attributes())["platform"].set_string_value(
          platform);
      *e->mutable_time() = ToProto(start_);
    }
    v1::RecordExposuresResponse response;
    const grpc::Status status = RecordExposures(request, &response);
    ASSERT_TRUE(status.ok()) << status.error_message();
  }

  const absl::Time start_ = absl::Now();
  std::unique_ptr<v1::ResultsService::Stub> results_;
};

TEST_F(CliResultsTest, DimensionBreaksResultsDownWithAnSrmCheckPerValue) {
  ASSERT_NO_FATAL_FAILURE(StartAll());
  // ios 600/600, web 300/200 (a mismatch planted in web: chi2 = 20), and
  // android 10/110; the totals are 910/910, balanced.
  ASSERT_NO_FATAL_FAILURE(ExposeOn("segmented", "control", "ios", "ic", 600));
  ASSERT_NO_FATAL_FAILURE(ExposeOn("segmented", "treatment", "ios", "it", 600));
  ASSERT_NO_FATAL_FAILURE(ExposeOn("segmented", "control", "web", "wc", 300));
  ASSERT_NO_FATAL_FAILURE(ExposeOn("segmented", "treatment", "web", "wt", 200));
  ASSERT_NO_FATAL_FAILURE(
      ExposeOn("segmented", "control", "android", "ac", 10));
  ASSERT_NO_FATAL_FAILURE(
      ExposeOn("segmented", "treatment", "android", "at", 110));
  ASSERT_NO_FATAL_FAILURE(Send("order_completed", "ic", 60));
  ASSERT_NO_FATAL_FAILURE(Send("order_completed", "it", 90));

  const Result text = Run({"segmented", "--dimension", "platform"});
  ASSERT_EQ(text.code, 0) << text.err;
  EXPECT_THAT(text.out, HasSubstr("Segments by platform: EXPLORATORY"));
  EXPECT_THAT(text.out, HasSubstr("=== platform = web ==="));
  EXPECT_THAT(text.out, HasSubstr("SAMPLE RATIO MISMATCH: THIS SEGMENT (web) "
                                  "IS NOT TRUSTWORTHY"));
  EXPECT_THAT(text.out, Not(HasSubstr("THIS SEGMENT (ios)")));
  EXPECT_THAT(text.out, HasSubstr("too small to say anything"));
  // The totals come first and are trusted.
  EXPECT_LT(text.out.find("Decision:"), text.out.find("Segments by"));
  EXPECT_THAT(text.out, Not(HasSubstr("THESE RESULTS ARE NOT TRUSTWORTHY")));

  const Struct json = Json({"segmented", "--dimension=platform"});
  EXPECT_EQ(Field(json, "dimension").string_value(), "platform");
  EXPECT_FALSE(Field(json, "segments_adjusted").bool_value());
  const ListValue& segments = Field(json, "segments").list_value();
  ASSERT_EQ(segments.values_size(), 3);
  std::map<std::string, const Struct*> by_value;
  for (const Value& v : segments.values()) {
    by_value[Field(v.struct_value(), "value").string_value()] =
        &v.struct_value();
  }
  ASSERT_EQ(by_value.count("ios"), 1u);
  ASSERT_EQ(by_value.count("web"), 1u);
  EXPECT_TRUE(Field(Field(*by_value["web"], "srm").struct_value(), "mismatch")
                  .bool_value());
  EXPECT_FALSE(Field(Field(*by_value["ios"], "srm").struct_value(), "mismatch")
                   .bool_value());
  // ios: 60 of 600 vs 90 of 600 converted.
  const Struct& ios_metric =
      Field(*by_value["ios"], "metrics").list_value().values(0).struct_value();
  const ListValue& cells = Field(ios_metric, "variants").list_value();
  ASSERT_EQ(cells.values_size(), 2);
  EXPECT_DOUBLE_EQ(
      Field(cells.values(0).struct_value(), "estimate").number_value(), 0.1);
  EXPECT_DOUBLE_EQ(
      Field(cells.values(1).struct_value(), "estimate").number_value(), 0.15);
  // The values' exposed units add up to the totals'.
  double exposed = 0;
  for (const Value& v : segments.values()) {
    for (const Value& variant :
         Field(v.struct_value(), "variants").list_value().values()) {
      exposed += Field(variant.struct_value(), "exposed_units").number_value();
    }
  }
  EXPECT_EQ(exposed, 1820);

  const Result csv =
      Run({"segmented", "--dimension", "platform", "--format", "csv"});
  ASSERT_EQ(csv.code, 0) << csv.err;
  EXPECT_THAT(csv.out, HasSubstr(",platform,web\r\n"));
  EXPECT_THAT(csv.out, HasSubstr(",platform,ios\r\n"));

  // An unknown dimension is a usage error naming the experiment's.
  const Result unknown = Run({"segmented", "--dimension", "country"});
  EXPECT_EQ(unknown.code, 2);
  EXPECT_THAT(unknown.err, HasSubstr("its dimensions are: platform"));
  // --adjust_segments makes the values one family.
  const Struct adjusted =
      Json({"segmented", "--dimension=platform", "--adjust_segments=true"});
  EXPECT_TRUE(Field(adjusted, "segments_adjusted").bool_value());

  // abexp report --dimension asks for the same breakdown and draws it, with
  // web's mismatch marked in web's section and none in ios's.
  const std::string page_path = dir_.path() + "/segmented.html";
  const Result report = Cli({"report", "segmented", "--dimension", "platform",
                             "--server=" + server_->address(), "--timeout=30s",
                             "--out", page_path});
  ASSERT_EQ(report.code, 0) << report.err;
  std::ifstream in(page_path);
  std::stringstream page;
  page << in.rdbuf();
  EXPECT_THAT(page.str(), HasSubstr("<h2>Segments by platform</h2>"));
  std::map<std::string, std::string> sections;
  for (const std::string value : {"ios", "web", "android"}) {
    const size_t at = page.str().find(absl::StrCat(
        "<section class=\"segment\"><h3>platform = ", value, "</h3>"));
    ASSERT_NE(at, std::string::npos) << value;
    sections[value] =
        page.str().substr(at, page.str().find("</section>", at) - at);
  }
  EXPECT_THAT(sections["web"], HasSubstr("segment-srm-mismatch"));
  EXPECT_THAT(sections["ios"], Not(HasSubstr("segment-srm-mismatch")));
  EXPECT_THAT(sections["ios"], HasSubstr("Sample ratio: OK"));
  EXPECT_THAT(page.str(), HasSubstr("too small to say anything"));
}

TEST_F(CliResultsTest, FunnelStepsAreInTheTableJsonAndCsv) {
  ASSERT_NO_FATAL_FAILURE(StartAll());
  // 100 units per arm; control 50 -> 20 -> 10, treatment 60 -> 40 -> 30.
  ASSERT_NO_FATAL_FAILURE(Expose("funnel", "control", "fc", 100));
  ASSERT_NO_FATAL_FAILURE(Expose("funnel", "treatment", "ft", 100));
  for (const auto& [prefix, counts] :
       std::vector<std::pair<std::string, std::vector<int>>>{
           {"fc", {50, 20, 10}}, {"ft", {60, 40, 30}}}) {
    ASSERT_NO_FATAL_FAILURE(Send("view_checkout", prefix, counts[0]));
    ASSERT_NO_FATAL_FAILURE(Send("submit_payment", prefix, counts[1]));
    ASSERT_NO_FATAL_FAILURE(Send("order_completed", prefix, counts[2]));
  }

  const Result text = Run({"funnel"});
  ASSERT_EQ(text.code, 0) << text.err;
  EXPECT_THAT(text.out, HasSubstr("Funnel steps"));
  // The funnel's steps sit under its own table, before the next metric's.
  const std::vector<std::vector<std::string>> tables = Tables(text.out);
  ASSERT_EQ(tables.size(), 3u) << text.out;
  const std::vector<std::string>& steps = tables[1];
  const std::vector<size_t> starts = ColumnStarts(steps[0]);
  // Header, then 3 steps of the control and 3 of the treatment.
  ASSERT_EQ(steps.size(), 7u) << text.out;
  EXPECT_EQ(Cell(steps[2], starts, 1), "2 submit_payment");
  EXPECT_EQ(Cell(steps[2], starts, 2), "20");
  EXPECT_EQ(Cell(steps[2], starts, 3), "20.0%");
  EXPECT_EQ(Cell(steps[2], starts, 6), "40.0%");
  EXPECT_EQ(Cell(steps[5], starts, 0), "treatment");
  EXPECT_EQ(Cell(steps[5], starts, 6), "66.7%");
  EXPECT_EQ(Cell(steps[5], starts, 7), "26.67");  // 66.67% - 40% in pp

  const Struct json = Json({"funnel"});
  const Struct& metric =
      Field(json, "metrics").list_value().values(0).struct_value();
  const Value& cell = Field(metric, "variants").list_value().values(1);
  const ListValue& json_steps =
      Field(cell.struct_value(), "funnel_steps").list_value();
  ASSERT_EQ(json_steps.values_size(), 3);
  const Struct& pay = json_steps.values(1).struct_value();
  EXPECT_EQ(Field(pay, "event").string_value(), "submit_payment");
  EXPECT_EQ(Field(pay, "units").number_value(), 40);
  EXPECT_EQ(Field(pay, "rate_from_exposure").number_value(), 0.4);
  EXPECT_EQ(Field(pay, "rate_from_previous").number_value(), 40.0 / 60.0);
  const v1::GetResultsResponse rpc = Rpc("funnel");
  const v1::FunnelStepFigures& rpc_pay =
      FindMetric(rpc.variants(1), "checkout_steps")->funnel_steps(1);
  ExpectSameEffect("from_previous.absolute",
                   Field(Field(pay, "from_previous").struct_value(), "absolute")
                       .struct_value(),
                   rpc_pay.from_previous().absolute());
  // The metric itself is the completed share: 30% vs 10%.
  EXPECT_EQ(Field(cell.struct_value(), "estimate").number_value(), 0.3);

  const Result csv = Run({"funnel", "--format=csv"});
  ASSERT_EQ(csv.code, 0) << csv.err;
  const std::vector<std::string> lines = Lines(csv.out);
  ASSERT_EQ(lines.size(), 5u);  // a header, 2 metrics x 2 variants
  const std::vector<std::string> header =
      absl::StrSplit(absl::StripSuffix(lines[0], "\r"), ',');
  const std::vector<std::string> control =
      absl::StrSplit(absl::StripSuffix(lines[1], "\r"), ',');
  ASSERT_EQ(header.size(), control.size());
  auto column = [&](const std::string& name) {
    return std::find(header.begin(), header.end(), name) - header.begin();
  };
  EXPECT_EQ(control[column("funnel_step_units")], "50;20;10");
  EXPECT_EQ(control[column("funnel_rates_from_previous")], "0.5;0.4;0.5");
  EXPECT_EQ(control[column("funnel_from_previous_p_values")], ";;");
  // Another metric's funnel cells are empty.
  const std::vector<std::string> errors =
      absl::StrSplit(absl::StripSuffix(lines[3], "\r"), ',');
  ASSERT_EQ(errors.size(), header.size());
  EXPECT_EQ(errors[1], "errors");
  EXPECT_EQ(errors[column("funnel_step_units")], "");
}

TEST_F(CliResultsTest, JsonHasTheRpcFiguresAtFullPrecisionAndTheGoldenOnes) {
  ASSERT_NO_FATAL_FAILURE(StartAll());
  ASSERT_NO_FATAL_FAILURE(RecordCheckout());
  const v1::GetResultsResponse rpc = Rpc("checkout");
  ASSERT_EQ(rpc.variants_size(), 2);

  const Result raw = Run({"checkout", "--format", "json"});
  ASSERT_EQ(raw.code, 0) << raw.err;
  // Scripts diff and hash the output: the same input prints the same bytes.
  EXPECT_EQ(Run({"checkout", "--format", "json"}).out, raw.out);
  Struct s;
  ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(raw.out, &s).ok())
      << raw.out;
  EXPECT_EQ(KeysOf(s), kTopKeys);
  // Keys print sorted: the top-level ones appear in this order.
  size_t last = 0;
  for (const std::string& key : kTopKeys) {
    const size_t at = raw.out.find("\n \"" + key + "\":");
    ASSERT_NE(at, std::string::npos) << key;
    EXPECT_GT(at, last) << key << " is out of order";
    last = at;
  }

  EXPECT_EQ(Field(s, "experiment").string_value(), "checkout");
  EXPECT_EQ(Field(s, "phase").number_value(), rpc.phase());
  EXPECT_EQ(Field(s, "config_version").string_value(), rpc.config_version());
  EXPECT_EQ(Field(s, "alpha").number_value(), 0.05);
  EXPECT_EQ(Field(s, "adjust_method").string_value(), "holm");
  EXPECT_EQ(Field(s, "multi_exposed_units").number_value(), 0);
  const ListValue& versions = Field(s, "config_versions").list_value();
  ASSERT_EQ(versions.values_size(), 1);
  EXPECT_EQ(
      Field(versions.values(0).struct_value(), "exposures").number_value(),
      2000);

  const Struct& srm = Field(s, "srm").struct_value();
  EXPECT_EQ(KeysOf(srm), kSrmKeys);
  EXPECT_FALSE(Field(srm, "mismatch").bool_value());
  ExpectSameFigure("srm.chi2", Field(srm, "chi2"), rpc.srm().has_chi2(),
                   rpc.srm().chi2());
  ExpectSameFigure("srm.p_value", Field(srm, "p_value"),
                   rpc.srm().has_p_value(), rpc.srm().p_value());

  const ListValue& metrics = Field(s, "metrics").list_value();
  ASSERT_EQ(metrics.values_size(), 2);
  for (int m = 0; m < metrics.values_size(); ++m) {
    const Struct& metric = metrics.values(m).struct_value();
    EXPECT_EQ(KeysOf(metric), kMetricKeys);
    const std::string key = Field(metric, "key").string_value();
    EXPECT_EQ(key, m == 0 ? "order_conversion" : "signup");
    EXPECT_EQ(Field(metric, "primary").bool_value(), m == 0);
    EXPECT_EQ(Field(metric, "type").string_value(), "binomial");
    const ListValue& cells = Field(metric, "variants").list_value();
    ASSERT_EQ(cells.values_size(), 2) << key;
    for (int v = 0; v < 2; ++v) {
      const Struct& cell = cells.values(v).struct_value();
      const v1::VariantResult& variant = rpc.variants(v);
      const v1::MetricResult* want = FindMetric(variant, key);
      ASSERT_NE(want, nullptr) << key;
      const std::string what = absl::StrCat(key, "/", variant.key());
      EXPECT_EQ(KeysOf(cell), kCellKeys) << what;
      EXPECT_EQ(Field(cell, "variant").string_value(), variant.key());
      EXPECT_EQ(Field(cell, "is_control").bool_value(), v == 0);
      EXPECT_EQ(Field(cell, "units").number_value(), 1000) << what;
      ExpectSameFigure(what + " estimate", Field(cell, "estimate"),
                       want->has_estimate(), want->estimate());
      ExpectSameEffect(what + " absolute",
                       Field(cell, "absolute").struct_value(),
                       want->absolute());
      ExpectSameEffect(what + " relative",
                       Field(cell, "relative").struct_value(),
                       want->relative());
      const Struct& bayes = Field(cell, "bayes").struct_value();
      EXPECT_EQ(KeysOf(bayes), kBayesKeys) << what;
      ExpectSameFigure(what + " chance", Field(bayes, "chance_to_beat_control"),
                       want->bayes().has_chance_to_beat_control(),
                       want->bayes().chance_to_beat_control());
      ExpectSameFigure(what + " loss ship", Field(bayes, "expected_loss_ship"),
                       want->bayes().has_expected_loss_ship(),
                       want->bayes().expected_loss_ship());
      ExpectSameFigure(what + " loss keep", Field(bayes, "expected_loss_keep"),
                       want->bayes().has_expected_loss_keep(),
                       want->bayes().expected_loss_keep());
      const Struct& seq = Field(cell, "sequential").struct_value();
      EXPECT_EQ(KeysOf(seq), kSequentialKeys) << what;
      ExpectSameFigure(what + " seq.ci_low", Field(seq, "ci_low"),
                       want->sequential().has_ci_low(),
                       want->sequential().ci_low());
      ExpectSameFigure(what + " seq.ci_high", Field(seq, "ci_high"),
                       want->sequential().has_ci_high(),
                       want->sequential().ci_high());
      ExpectSameFigure(what + " seq.p_value", Field(seq, "p_value"),
                       want->sequential().has_p_value(),
                       want->sequential().p_value());
      EXPECT_EQ(Field(cell, "warnings").list_value().values_size(),
                want->warnings_size())
          << what;
    }
  }

  // Independently of the server: the golden values (SciPy) of 100 vs 120
  // of 1000.
  const std::optional<stats::testing::GoldenCase> golden =
      CompareGolden("proportions_small");
  ASSERT_TRUE(golden.has_value());
  const Struct& treatment = Field(metrics.values(0).struct_value(), "variants")
                                .list_value()
                                .values(1)
                                .struct_value();
  const Struct& abs = Field(treatment, "absolute").struct_value();
  const Struct& rel = Field(treatment, "relative").struct_value();
  const Struct& seq = Field(treatment, "sequential").struct_value();
  using stats::testing::ExpectClose;
  ExpectClose(Field(treatment, "estimate").number_value(),
              golden->Num("treatment"), "estimate");
  ExpectClose(Field(abs, "estimate").number_value(),
              golden->Num("abs_estimate"), "abs.estimate");
  ExpectClose(Field(abs, "ci_low").number_value(), golden->Num("abs_ci_low"),
              "abs.ci_low");
  ExpectClose(Field(abs, "ci_high").number_value(), golden->Num("abs_ci_high"),
              "abs.ci_high");
  ExpectClose(Field(abs, "p_value").number_value(), golden->Num("abs_p"),
              "abs.p_value", 1e-9, 0);
  ExpectClose(Field(rel, "estimate").number_value(),
              golden->Num("rel_estimate"), "rel.estimate");
  ExpectClose(Field(rel, "ci_high").number_value(), golden->Num("rel_ci_high"),
              "rel.ci_high");
  ExpectClose(Field(seq, "ci_low").number_value(), golden->Num("seq_ci_low"),
              "seq.ci_low");
  ExpectClose(Field(seq, "p_value").number_value(), golden->Num("seq_p"),
              "seq.p_value", 1e-9, 0);
  // SciPy: the integral of Beta(101, 901).pdf(u) * Beta(121, 881).sf(u)
  // over [0, 1] (scipy.integrate.quad) = P(treatment > control).
  ExpectClose(
      Field(Field(treatment, "bayes").struct_value(), "chance_to_beat_control")
          .number_value(),
      0.9231834389735583, "chance_to_beat_control");

  // signup, 0 vs 5: no relative lift over a zero baseline: null, not absent,
  // and the warning says why.
  const Struct& signup = Field(metrics.values(1).struct_value(), "variants")
                             .list_value()
                             .values(1)
                             .struct_value();
  EXPECT_TRUE(
      IsNull(Field(Field(signup, "relative").struct_value(), "estimate")));
  EXPECT_GT(Field(signup, "warnings").list_value().values_size(), 0);
  // The control carries only its estimate.
  const Struct& control = Field(metrics.values(0).struct_value(), "variants")
                              .list_value()
                              .values(0)
                              .struct_value();
  EXPECT_EQ(Field(control, "estimate").number_value(), 0.1);
  EXPECT_TRUE(
      IsNull(Field(Field(control, "absolute").struct_value(), "p_value")));

  const Struct& decision = Field(s, "decision").struct_value();
  EXPECT_EQ(KeysOf(decision), kDecisionKeys);
  EXPECT_EQ(Field(decision, "kind").string_value(), "keep_running");
  EXPECT_EQ(Field(decision, "text").string_value(), rpc.decision().text());
  EXPECT_TRUE(IsNull(Field(decision, "variant")));
  EXPECT_EQ(Field(decision, "more_days").number_value(),
            rpc.decision().more_days());
  EXPECT_EQ(Field(s, "guardrails").list_value().values_size(), 0);
}

// Parses `csv` with Python's csv module (an RFC 4180 reader that is not
// ours) and returns its rows.
std::vector<std::vector<std::string>> ParseCsvWithPython(
    const std::string& csv) {
  ::abexp::testing::TempDir dir;
  const std::string path = dir.Write("results.csv", csv);
  std::string out, err;
  absl::StatusOr<int> code = RunProcess(
      {"/usr/bin/python3", "-c",
       "import csv, json, sys\n"
       "with open(sys.argv[1], newline='') as f:\n"
       "    print(json.dumps({'rows': list(csv.reader(f, strict=True))}))\n",
       path},
      &out, &err);
  EXPECT_TRUE(code.ok() && *code == 0) << err;
  Struct s;
  EXPECT_TRUE(google::protobuf::util::JsonStringToMessage(out, &s).ok()) << out;
  std::vector<std::vector<std::string>> rows;
  for (const Value& row : Field(s, "rows").list_value().values()) {
    std::vector<std::string> cells;
    for (const Value& cell : row.list_value().values()) {
      cells.push_back(cell.string_value());
    }
    rows.push_back(cells);
  }
  return rows;
}

// A CSV cell that must hold the RPC's figure: empty when unset, else a
// number that reads back as the same double.
void ExpectCsvFigure(const std::string& what, const std::string& cell, bool has,
                     double rpc) {
  if (!has) {
    EXPECT_EQ(cell, "") << what;
    return;
  }
  double got = 0;
  ASSERT_TRUE(absl::SimpleAtod(cell, &got)) << what << ": '" << cell << "'";
  EXPECT_EQ(got, rpc) << what << ": '" << cell << "'";
}

TEST_F(CliResultsTest, CsvHasOneRowPerMetricAndVariantAndParsesBack) {
  ASSERT_NO_FATAL_FAILURE(StartAll());
  // signup 0 vs 0: its warnings hold commas, so that field must be quoted.
  ASSERT_NO_FATAL_FAILURE(RecordCheckout(/*signups=*/0));
  const v1::GetResultsResponse rpc = Rpc("checkout");
  ASSERT_EQ(rpc.variants_size(), 2);

  const Result r = Run({"checkout", "--format", "csv"});
  ASSERT_EQ(r.code, 0) << r.err;
  // RFC 4180 records end in CRLF, and a field with a comma is quoted.
  EXPECT_TRUE(absl::EndsWith(r.out, "\r\n"));
  EXPECT_THAT(r.out, HasSubstr(",\"relative lift is undefined"));
  EXPECT_EQ(std::count(r.out.begin(), r.out.end(), '\n'),
            std::count(r.out.begin(), r.out.end(), '\r'));

  const std::vector<std::vector<std::string>> rows = ParseCsvWithPython(r.out);
  // A header, then 2 metrics x 2 variants.
  ASSERT_EQ(rows.size(), 5u) << r.out;
  EXPECT_EQ(rows[0], kCsvHeader);
  std::map<std::string, size_t> col;
  for (size_t i = 0; i < rows[0].size(); ++i) col[rows[0][i]] = i;

  const std::vector<std::pair<std::string, int>> order = {
      {"order_conversion", 0},
      {"order_conversion", 1},
      {"signup", 0},
      {"signup", 1}};
  for (size_t i = 0; i < order.size(); ++i) {
    const std::vector<std::string>& row = rows[i + 1];
    ASSERT_EQ(row.size(), kCsvHeader.size()) << "row " << i + 1;
    const auto& [key, v] = order[i];
    const v1::VariantResult& variant = rpc.variants(v);
    const v1::MetricResult* m = FindMetric(variant, key);
    ASSERT_NE(m, nullptr);
    const std::string what = absl::StrCat(key, "/", variant.key());
    EXPECT_EQ(row[col["experiment"]], "checkout");
    EXPECT_EQ(row[col["metric"]], key);
    EXPECT_EQ(row[col["metric_type"]], "binomial");
    EXPECT_EQ(row[col["primary"]],
              key == "order_conversion" ? "true" : "false");
    EXPECT_EQ(row[col["variant"]], variant.key());
    EXPECT_EQ(row[col["is_control"]], v == 0 ? "true" : "false");
    EXPECT_EQ(row[col["units"]], "1000");
    ExpectCsvFigure(what + " estimate", row[col["estimate"]], m->has_estimate(),
                    m->estimate());
    const v1::Effect& a = m->absolute();
    ExpectCsvFigure(what + " abs_estimate", row[col["abs_estimate"]],
                    a.has_estimate(), a.estimate());
    ExpectCsvFigure(what + " abs_ci_low", row[col["abs_ci_low"]],
                    a.has_ci_low(), a.ci_low());
    ExpectCsvFigure(what + " abs_ci_high", row[col["abs_ci_high"]],
                    a.has_ci_high(), a.ci_high());
    ExpectCsvFigure(what + " abs_p_value", row[col["abs_p_value"]],
                    a.has_p_value(), a.p_value());
    ExpectCsvFigure(what + " abs_adjusted_p_value",
                    row[col["abs_adjusted_p_value"]], a.has_adjusted_p_value(),
                    a.adjusted_p_value());
    ExpectCsvFigure(what + " abs_df", row[col["abs_df"]], a.has_df(), a.df());
    const v1::Effect& rel = m->relative();
    ExpectCsvFigure(what + " rel_estimate", row[col["rel_estimate"]],
                    rel.has_estimate(), rel.estimate());
    ExpectCsvFigure(what + " rel_ci_low", row[col["rel_ci_low"]],
                    rel.has_ci_low(), rel.ci_low());
    ExpectCsvFigure(what + " rel_p_value", row[col["rel_p_value"]],
                    rel.has_p_value(), rel.p_value());
    ExpectCsvFigure(what + " chance", row[col["chance_to_beat_control"]],
                    m->bayes().has_chance_to_beat_control(),
                    m->bayes().chance_to_beat_control());
    ExpectCsvFigure(what + " loss ship", row[col["expected_loss_ship"]],
                    m->bayes().has_expected_loss_ship(),
                    m->bayes().expected_loss_ship());
    ExpectCsvFigure(what + " seq_ci_high", row[col["seq_ci_high"]],
                    m->sequential().has_ci_high(), m->sequential().ci_high());
    ExpectCsvFigure(what + " seq_p_value", row[col["seq_p_value"]],
                    m->sequential().has_p_value(), m->sequential().p_value());
    // Warnings hold commas and semicolons; they come back whole.
    EXPECT_EQ(row[col["warnings"]], absl::StrJoin(m->warnings(), " | "))
        << what;
    if (v == 0) {
      // The control row has its estimate and nothing comparative.
      EXPECT_NE(row[col["estimate"]], "") << what;
      for (const char* c : {"abs_estimate", "abs_p_value", "rel_estimate",
                            "chance_to_beat_control", "seq_ci_low"}) {
        EXPECT_EQ(row[col[c]], "") << what << " " << c;
      }
    }
  }
  // Golden (SciPy) for 100 vs 120 of 1000: the treatment's abs_ci_low.
  const std::optional<stats::testing::GoldenCase> golden =
      CompareGolden("proportions_small");
  ASSERT_TRUE(golden.has_value());
  double ci_low = 0;
  ASSERT_TRUE(absl::SimpleAtod(rows[2][col["abs_ci_low"]], &ci_low));
  stats::testing::ExpectClose(ci_low, golden->Num("abs_ci_low"), "abs_ci_low");
  // signup, 0 vs 0: the undefined relative lift is an empty cell, and
  // the warnings say why.
  EXPECT_EQ(rows[4][col["rel_estimate"]], "");
  EXPECT_THAT(rows[4][col["warnings"]], HasSubstr("the control rate is 0"));
  EXPECT_THAT(rows[4][col["warnings"]], HasSubstr(" | "));
}

TEST_F(CliResultsTest, TextTablesAlignAndTheBarPlacesZeroAndTheInterval) {
  ASSERT_NO_FATAL_FAILURE(StartAll());
  // guarded: the primary metric clearly better (100 vs 200 of 1000: the
  // interval of the lift is above zero), the errors guardrail clearly
  // lower (100 vs 50 of 1000: below zero, and lower is better).
  ASSERT_NO_FATAL_FAILURE(Expose("guarded", "control", "c", 1000));
  ASSERT_NO_FATAL_FAILURE(Expose("guarded", "treatment", "t", 1000));
  ASSERT_NO_FATAL_FAILURE(Send("order_completed", "c", 100));
  ASSERT_NO_FATAL_FAILURE(Send("order_completed", "t", 200));
  ASSERT_NO_FATAL_FAILURE(Send("error_shown", "c", 100));
  ASSERT_NO_FATAL_FAILURE(Send("error_shown", "t", 50));

  const Result r = Run({"guarded"});
  ASSERT_EQ(r.code, 0) << r.err;
  const std::vector<std::string> lines = Lines(r.out);
  for (const std::string& line : lines) {
    EXPECT_LE(line.size(), 120u) << "too wide: " << line;
  }
  const std::vector<std::vector<std::string>> tables = Tables(r.out);
  ASSERT_EQ(tables.size(), 2u) << r.out;
  for (const std::vector<std::string>& table : tables) {
    ASSERT_EQ(table.size(), 3u) << absl::StrJoin(table, "\n");
    const std::vector<size_t> starts = ColumnStarts(table[0]);
    ASSERT_EQ(starts.size(), 10u) << table[0];
    // Every row has a cell at every column start, two spaces after the one
    // before; the bar (last column) may start with blanks.
    for (size_t i = 1; i < table.size(); ++i) {
      const std::string& row = table[i];
      for (size_t k = 1; k < starts.size(); ++k) {
        ASSERT_GT(row.size(), starts[k]) << row;
        EXPECT_EQ(row.substr(starts[k] - 2, 2), "  ")
            << "column " << k << " does not start at " << starts[k] << ":\n"
            << table[0] << "\n"
            << row;
        if (k + 1 < starts.size()) {
          EXPECT_NE(row[starts[k]], ' ')
              << "column " << k << " does not start at " << starts[k] << ":\n"
              << table[0] << "\n"
              << row;
        }
      }
    }
  }
  // order_conversion: 10.0% vs 20.0%; the interval is above zero, so zero
  // is left of it.
  const std::vector<std::string>& orders = tables[0];
  const std::vector<size_t> starts = ColumnStarts(orders[0]);
  EXPECT_EQ(Cell(Row(orders, "control"), starts, 2), "10.0%");
  EXPECT_EQ(Cell(Row(orders, "treatment"), starts, 2), "20.0%");
  EXPECT_EQ(Cell(Row(orders, "control"), starts, 3), "-");
  EXPECT_THAT(Cell(Row(orders, "treatment"), starts, 3),
              ::testing::StartsWith("+10.0 ["));
  const BarMarks up = Marks(Row(orders, "treatment"), starts.back());
  EXPECT_LT(up.zero, up.low);
  EXPECT_LT(up.low, up.estimate);
  EXPECT_LT(up.estimate, up.high);
  // errors: the interval is below zero, so zero is right of it.
  const std::vector<std::string>& errors = tables[1];
  const BarMarks down =
      Marks(Row(errors, "treatment"), ColumnStarts(errors[0]).back());
  EXPECT_LT(down.low, down.estimate);
  EXPECT_LT(down.estimate, down.high);
  EXPECT_LT(down.high, down.zero);
  // CHANCE is the chance to be better: higher conversion, fewer errors. Both
  // treatments are far better (z above 5).
  EXPECT_EQ(Cell(Row(orders, "treatment"), starts, 7), ">99.9%");
  EXPECT_EQ(Cell(Row(errors, "treatment"), ColumnStarts(errors[0]), 7),
            ">99.9%");
  EXPECT_THAT(absl::StrReplaceAll(r.out, {{"\n", " "}}),
              HasSubstr("CHANCE: chance that the variant is better than "
                        "control (lower, where lower is better)"));

  // Guardrail verdicts, then the decision, last.
  EXPECT_THAT(r.out, ::testing::ContainsRegex("errors +treatment +ok"));
  EXPECT_LT(r.out.find("Guardrails"), r.out.find("Decision:"));
  EXPECT_EQ(lines.back(), "Decision: ship treatment");
  EXPECT_THAT(r.out, ::testing::ContainsRegex("sample ratio +ok"));
  EXPECT_THAT(r.out, Not(HasSubstr("MISMATCH")));
}

TEST_F(CliResultsTest, TheBarHasOneScaleForAllVariantsOfAMetric) {
  ASSERT_NO_FATAL_FAILURE(StartAll());
  // a: 100 vs 120 of 1000 (the interval straddles zero); b: 100 vs 200 (far
  // above zero).
  ASSERT_NO_FATAL_FAILURE(Expose("three", "control", "c", 1000));
  ASSERT_NO_FATAL_FAILURE(Expose("three", "a", "a", 1000));
  ASSERT_NO_FATAL_FAILURE(Expose("three", "b", "b", 1000));
  ASSERT_NO_FATAL_FAILURE(Send("order_completed", "c", 100));
  ASSERT_NO_FATAL_FAILURE(Send("order_completed", "a", 120));
  ASSERT_NO_FATAL_FAILURE(Send("order_completed", "b", 200));
  const Result r = Run({"three"});
  ASSERT_EQ(r.code, 0) << r.err;
  const std::vector<std::vector<std::string>> tables = Tables(r.out);
  ASSERT_EQ(tables.size(), 1u) << r.out;
  const size_t bar = ColumnStarts(tables[0][0]).back();
  const BarMarks a = Marks(Row(tables[0], "a"), bar);
  const BarMarks b = Marks(Row(tables[0], "b"), bar);
  // Zero sits in the same column for both, a's interval spans it and b's
  // lies right of it, and b's estimate is further right than a's.
  EXPECT_EQ(a.zero, b.zero);
  EXPECT_LT(a.low, a.zero);
  EXPECT_GT(a.high, a.zero);
  EXPECT_GT(b.low, b.zero);
  EXPECT_GT(b.estimate, a.estimate);
  EXPECT_GE(b.high, a.high);
}

TEST_F(CliResultsTest, MetricFilterAndAlphaPassThrough) {
  ASSERT_NO_FATAL_FAILURE(StartAll());
  ASSERT_NO_FATAL_FAILURE(RecordCheckout());

  const Struct only = Json({"checkout", "--metric", "signup"});
  const ListValue& metrics = Field(only, "metrics").list_value();
  ASSERT_EQ(metrics.values_size(), 1);
  EXPECT_EQ(Field(metrics.values(0).struct_value(), "key").string_value(),
            "signup");
  const Struct both =
      Json({"checkout", "--metric", "signup", "--metric", "order_conversion"});
  EXPECT_EQ(Field(both, "metrics").list_value().values_size(), 2);
  const Result text = Run({"checkout", "--metric", "signup"});
  ASSERT_EQ(text.code, 0) << text.err;
  EXPECT_THAT(text.out, HasSubstr("\nsignup ("));
  EXPECT_THAT(text.out, Not(HasSubstr("\norder_conversion (")));

  // The interval is z(1 - alpha/2) standard errors either side: at alpha
  // 0.01 it is norm.ppf(0.995) / norm.ppf(0.975) = 1.3142227734115084 times
  // as wide as at 0.05 (SciPy).
  auto width = [](const Struct& s) {
    const Struct& abs =
        Field(Field(Field(s, "metrics").list_value().values(0).struct_value(),
                    "variants")
                  .list_value()
                  .values(1)
                  .struct_value(),
              "absolute")
            .struct_value();
    return Field(abs, "ci_high").number_value() -
           Field(abs, "ci_low").number_value();
  };
  const Struct at05 = Json({"checkout", "--metric", "order_conversion"});
  const Struct at01 =
      Json({"checkout", "--metric", "order_conversion", "--alpha", "0.01"});
  EXPECT_EQ(Field(at01, "alpha").number_value(), 0.01);
  stats::testing::ExpectClose(width(at01) / width(at05), 1.3142227734115084,
                              "width ratio");
  const Result text01 = Run({"checkout", "--alpha", "0.01"});
  EXPECT_THAT(text01.out, HasSubstr("99% intervals"));

  const Struct bh = Json({"checkout", "--adjust", "bh"});
  EXPECT_EQ(Field(bh, "adjust_method").string_value(), "bh");
}

TEST_F(CliResultsTest, SampleRatioMismatchSaysLoudlyNotToTrustTheResults) {
  ASSERT_NO_FATAL_FAILURE(StartAll());
  // 1000 vs 800 at 50/50: p = 2.4e-06 (results_e2e_test), a mismatch.
  ASSERT_NO_FATAL_FAILURE(Expose("guarded", "control", "c", 1000));
  ASSERT_NO_FATAL_FAILURE(Expose("guarded", "treatment", "t", 800));
  ASSERT_NO_FATAL_FAILURE(Expose("guarded", "control", "both", 3));
  ASSERT_NO_FATAL_FAILURE(Expose("guarded", "treatment", "both", 3));
  const Result r = Run({"guarded"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_THAT(r.out, ::testing::ContainsRegex("sample ratio +MISMATCH"));
  EXPECT_THAT(r.out, HasSubstr("SAMPLE RATIO MISMATCH: THESE RESULTS ARE NOT "
                               "TRUSTWORTHY"));
  EXPECT_THAT(r.out, ::testing::ContainsRegex("multi-exposed +3 units"));
  // Before any table, so it is read first.
  EXPECT_LT(r.out.find("NOT TRUSTWORTHY"), r.out.find("VARIANT"));
  EXPECT_EQ(Lines(r.out).back(),
            "Decision: do not trust: sample ratio mismatch");

  const Struct json = Json({"guarded"});
  EXPECT_TRUE(
      Field(Field(json, "srm").struct_value(), "mismatch").bool_value());
  EXPECT_EQ(
      Field(Field(json, "decision").struct_value(), "kind").string_value(),
      "do_not_trust");
  EXPECT_EQ(Field(json, "multi_exposed_units").number_value(), 3);
}

TEST_F(CliResultsTest, ErrorsExitWithTheDocumentedCodes) {
  ASSERT_NO_FATAL_FAILURE(StartAll());
  // An unknown experiment: the server's NOT_FOUND names the known ones.
  const Result unknown = Run({"no_such_experiment"});
  EXPECT_EQ(unknown.code, 1) << unknown.err;
  EXPECT_THAT(unknown.err, HasSubstr("NOT_FOUND"));
  EXPECT_THAT(unknown.err, HasSubstr("checkout, guarded, three"));

  // Values the server rejects are usage errors, with its message.
  const Result alpha = Run({"checkout", "--alpha", "1.5"});
  EXPECT_EQ(alpha.code, 2) << alpha.err;
  EXPECT_THAT(alpha.err, HasSubstr("alpha is 1.5; it must be in (0, 1)"));
  const Result metric = Run({"checkout", "--metric", "errors"});
  EXPECT_EQ(metric.code, 2) << metric.err;
  EXPECT_THAT(metric.err, HasSubstr("its metrics: order_conversion, signup"));
  const Result adjust = Run({"checkout", "--adjust", "bonferroni"});
  EXPECT_EQ(adjust.code, 2) << adjust.err;
  EXPECT_THAT(adjust.err, HasSubstr("\"holm\" or \"bh\""));

  // Caught before asking the server.
  const Result not_a_number = Run({"checkout", "--alpha", "five"});
  EXPECT_EQ(not_a_number.code, 2);
  EXPECT_THAT(not_a_number.err, HasSubstr("--alpha 'five' is not a number"));
  EXPECT_EQ(Run({}).code, 2);
  EXPECT_EQ(Run({"checkout", "guarded"}).code, 2);
  const Result xml = Run({"checkout", "--format", "xml"});
  EXPECT_EQ(xml.code, 2);
  EXPECT_THAT(xml.err, HasSubstr("--format must be text, json or csv"));
  EXPECT_EQ(Run({"checkout", "--alpha", "0.1", "--alpha", "0.2"}).code, 2);

  // The server is up but cannot read Redis: no results, exit 3, and the
  // server's reason.
  ASSERT_TRUE(redis_->Kill().ok());
  const Result down = Run({"checkout"});
  EXPECT_EQ(down.code, 3) << down.err;
  EXPECT_THAT(down.err, HasSubstr("Redis is unavailable"));
  // The server answered, so no hint that it might not be running.
  EXPECT_THAT(down.err, Not(HasSubstr("Is abexp-server running")));
}

TEST(CliResultsUnreachable, ExitsThree) {
  // Port 1 on loopback: nothing listens there in a test environment.
  const Result r = Cli(
      {"results", "checkout", "--server", "127.0.0.1:1", "--timeout", "1s"});
  EXPECT_EQ(r.code, 3) << r.out << r.err;
  EXPECT_THAT(r.err, HasSubstr("UNAVAILABLE"));
  EXPECT_THAT(r.err, HasSubstr("--server"));
}

TEST(CliResultsHelp, TheCommandIsListedAndDocumented) {
  const Result main = Cli({"--help"});
  EXPECT_EQ(main.code, 0);
  EXPECT_THAT(main.out, ::testing::ContainsRegex("\n  results EXPERIMENT +"));
  const Result help = Cli({"results", "--help"});
  EXPECT_EQ(help.code, 0);
  EXPECT_THAT(help.out, HasSubstr("usage: abexp results EXPERIMENT"));
  for (const char* flag :
       {"--metric KEY", "--alpha A", "--adjust holm|bh", "--server HOST:PORT",
        "--timeout DURATION", "--format text|json|csv"}) {
    EXPECT_THAT(help.out, HasSubstr(flag));
  }
}

TEST(CliFormat, OnlyResultsPrintsCsv) {
  const Result list = Cli({"experiments", "list", "--format", "csv"});
  EXPECT_EQ(list.code, 2);
  EXPECT_THAT(list.err, HasSubstr("--format must be text or json, not 'csv'"));
  EXPECT_THAT(list.err, HasSubstr("only `abexp results` prints csv"));
  const Result stats = Cli({"stats", "proportions", "--control", "10/100",
                            "--treatment", "12/100", "--format", "csv"});
  EXPECT_EQ(stats.code, 2);
  EXPECT_THAT(stats.err, HasSubstr("--format must be text or json"));
}

}  // namespace
}  // namespace abexp
