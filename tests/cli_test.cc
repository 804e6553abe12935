// The real `abexp` binary: validate and diff on files, and assign, explain
// and experiments against a real abexp-server subprocess.
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "abexp/v1/assignment.pb.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "gmock/gmock.h"
#include "google/protobuf/struct.pb.h"
#include "google/protobuf/util/json_util.h"
#include "gtest/gtest.h"
#include "server/core/bucketing.h"
#include "server/core/config_parser.h"
#include "server/testing/server_process.h"

namespace abexp {
namespace {

using ::abexp::testing::RunProcess;
using ::abexp::testing::ServerProcess;
using ::abexp::testing::TempDir;
using ::testing::HasSubstr;

const std::string kExamples =
    std::string(ABEXP_SOURCE_DIR) + "/examples/experiments.yaml";
const std::string kInvalid =
    std::string(ABEXP_SOURCE_DIR) + "/tests/testdata/invalid_experiments.yaml";

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

std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

template <typename Message>
Message ParseJson(const std::string& json) {
  Message m;
  const auto status = google::protobuf::util::JsonStringToMessage(json, &m);
  EXPECT_TRUE(status.ok()) << status.ToString() << "\n" << json;
  return m;
}

// A config whose outcomes follow from the bucketing spec alone: no holdout,
// one 50/50 experiment and one that targets CN.
constexpr char kConfig[] = R"(attributes:
  country: string
  days_since_signup: number
  is_vip: bool
features:
  - key: color
    type: string
    default: blue
experiments:
  - key: split
    status: running
    salt: split-salt
    variants:
      - key: control
        weight: 50
        features: {color: red}
      - key: treatment
        weight: 50
        features: {color: green}
  - key: cn_vip
    status: running
    targeting:
      all:
        - {attribute: country, eq: CN}
        - {attribute: is_vip, eq: true}
        - {attribute: days_since_signup, lt: 7}
    variants:
      - key: on
        weight: 1
)";

TEST(CliValidate, ExampleConfigIsOk) {
  const Result r = Cli({"validate", kExamples});
  EXPECT_EQ(r.code, 0) << r.out << r.err;
  const ParseResult parsed = ParseConfigFile(kExamples);
  ASSERT_TRUE(parsed.ok());
  EXPECT_THAT(r.out, HasSubstr(absl::StrCat(
                         kExamples, ": OK (", parsed.config->experiments.size(),
                         " experiments, ", parsed.config->features.size(),
                         " features), version ", parsed.config->version)));
}

TEST(CliValidate, InvalidConfigListsEveryErrorWithItsPosition) {
  const Result r = Cli({"validate", kInvalid});
  EXPECT_EQ(r.code, 1) << r.out << r.err;
  // The file marks each line with an error as "# error: TEXT".
  const std::vector<std::string> lines =
      absl::StrSplit(ReadFile(kInvalid), '\n');
  int expected = 0;
  for (size_t i = 0; i < lines.size(); ++i) {
    const size_t mark = lines[i].find("# error: ");
    if (mark == std::string::npos || absl::StartsWith(lines[i], "#")) continue;
    ++expected;
    const std::string text = lines[i].substr(mark + 9);
    const std::string prefix = absl::StrCat(kInvalid, ":", i + 1, ":");
    bool found = false;
    for (absl::string_view line : absl::StrSplit(r.err, '\n')) {
      if (absl::StartsWith(line, prefix) && absl::StrContains(line, text)) {
        found = true;
      }
    }
    EXPECT_TRUE(found) << "no diagnostic " << prefix << "COLUMN: ..." << text
                       << "\n"
                       << r.err;
  }
  EXPECT_GT(expected, 0);
  // Every error line has file:line:column.
  int error_lines = 0;
  for (absl::string_view line : absl::StrSplit(r.err, '\n')) {
    if (!absl::StartsWith(line, kInvalid + ":")) continue;
    if (absl::StartsWith(line, kInvalid + ": ")) continue;  // the summary
    std::vector<absl::string_view> parts = absl::StrSplit(
        line.substr(kInvalid.size() + 1), absl::MaxSplits(':', 2));
    ASSERT_EQ(parts.size(), 3u) << line;
    int n;
    EXPECT_TRUE(absl::SimpleAtoi(parts[0], &n)) << line;
    EXPECT_TRUE(absl::SimpleAtoi(parts[1], &n)) << line;
    ++error_lines;
  }
  EXPECT_EQ(error_lines, expected);
}

TEST(CliValidate, JsonOutputParsesAndListsDiagnostics) {
  const Result r = Cli({"validate", kInvalid, "--format", "json"});
  EXPECT_EQ(r.code, 1);
  const auto s = ParseJson<google::protobuf::Struct>(r.out);
  EXPECT_FALSE(s.fields().at("ok").bool_value());
  const auto& diags = s.fields().at("diagnostics").list_value();
  ASSERT_GT(diags.values_size(), 0);
  EXPECT_GT(diags.values(0).struct_value().fields().at("line").number_value(),
            0);
}

TEST(CliValidate, AnEmptyFileIsInvalidAndSaysHowToServeNothing) {
  TempDir dir;
  const std::string path = dir.Write("experiments.yaml", "# to do\n");
  const Result r = Cli({"validate", path});
  EXPECT_EQ(r.code, 1) << r.out << r.err;
  EXPECT_THAT(r.err, HasSubstr(path + ": the file is empty; write "
                                      "'experiments: []' to serve nothing on "
                                      "purpose\n"));
  const Result nothing =
      Cli({"validate", dir.Write("nothing.yaml", "experiments: []\n")});
  EXPECT_EQ(nothing.code, 0) << nothing.out << nothing.err;
}

TEST(CliValidate, MissingFileFailsAndUsageErrorsExitTwo) {
  EXPECT_EQ(Cli({"validate", "/nonexistent/abexp.yaml"}).code, 1);
  EXPECT_EQ(Cli({"validate"}).code, 2);
  EXPECT_EQ(Cli({"validate", kExamples, "--bogus"}).code, 2);
  EXPECT_EQ(Cli({"frobnicate"}).code, 2);
  const Result help = Cli({"validate", "--help"});
  EXPECT_EQ(help.code, 0);
  EXPECT_THAT(help.out, HasSubstr("usage: abexp validate"));
}

class CliDiffTest : public ::testing::Test {
 protected:
  // kConfig with `split` edited by replacing `from` with `to`.
  std::string Variant(const std::string& name, const std::string& from,
                      const std::string& to) {
    std::string text = kConfig;
    const size_t at = text.find(from);
    EXPECT_NE(at, std::string::npos) << from;
    text.replace(at, from.size(), to);
    return dir_.Write(name, text);
  }

  TempDir dir_;
  const std::string old_ = dir_.Write("old.yaml", kConfig);
};

TEST_F(CliDiffTest, IdenticalConfigsPass) {
  const Result r = Cli({"diff", old_, old_});
  EXPECT_EQ(r.code, 0) << r.out << r.err;
  EXPECT_THAT(r.out, HasSubstr("moved 0.00%"));
}

TEST_F(CliDiffTest, RaisingTrafficPassesAndReportsTheAddedShare) {
  const std::string low = Variant("low.yaml", "    salt: split-salt\n",
                                  "    salt: split-salt\n    traffic: 0.25\n");
  const std::string high = Variant("high.yaml", "    salt: split-salt\n",
                                   "    salt: split-salt\n    traffic: 0.5\n");
  const Result r = Cli({"diff", low, high});
  EXPECT_EQ(r.code, 0) << r.out << r.err;
  // Each variant grows from 1250 to 2500 of its 5000 buckets.
  EXPECT_THAT(r.out, HasSubstr("added +25.00%"));
}

TEST_F(CliDiffTest, WeightChangeOfARunningExperimentFails) {
  const std::string changed =
      Variant("new.yaml", "        weight: 50\n        features: {color: red}",
              "        weight: 40\n        features: {color: red}");
  const Result r = Cli({"diff", old_, changed});
  EXPECT_EQ(r.code, 1) << r.out << r.err;
  // 40/50 -> control [0,4444): buckets [4444,5000) move to treatment.
  EXPECT_THAT(r.out, HasSubstr("moved 5.56%"));
  EXPECT_THAT(r.out, HasSubstr("FAIL"));
}

TEST_F(CliDiffTest, SaltChangeNeedsANewPhase) {
  const std::string salt =
      Variant("salt.yaml", "salt: split-salt", "salt: split-salt-2");
  const Result fail = Cli({"diff", old_, salt});
  EXPECT_EQ(fail.code, 1) << fail.out << fail.err;
  EXPECT_THAT(fail.out, HasSubstr("moved 50.00%"));

  const std::string phase = Variant("phase.yaml", "salt: split-salt",
                                    "salt: split-salt-2\n    phase: 2");
  const Result pass = Cli({"diff", old_, phase});
  EXPECT_EQ(pass.code, 0) << pass.out << pass.err;
  EXPECT_THAT(pass.out, HasSubstr("new phase"));
}

TEST_F(CliDiffTest, JsonOutputHasExactShares) {
  const std::string changed =
      Variant("new.yaml", "        weight: 50\n        features: {color: red}",
              "        weight: 40\n        features: {color: red}");
  const Result r = Cli({"diff", old_, changed, "--format=json"});
  EXPECT_EQ(r.code, 1);
  const auto s = ParseJson<google::protobuf::Struct>(r.out);
  EXPECT_FALSE(s.fields().at("ok").bool_value());
  bool found = false;
  for (const auto& e : s.fields().at("experiments").list_value().values()) {
    const auto& f = e.struct_value().fields();
    if (f.at("key").string_value() != "split") continue;
    found = true;
    EXPECT_EQ(f.at("moved").struct_value().fields().at("exact").string_value(),
              "139/2500");  // 556 of 10000 buckets
    EXPECT_TRUE(f.at("breaking").bool_value());
  }
  EXPECT_TRUE(found);
}

TEST_F(CliDiffTest, InvalidFileExitsTwoWithItsDiagnostics) {
  const Result r = Cli({"diff", old_, kInvalid});
  EXPECT_EQ(r.code, 2);
  EXPECT_THAT(r.err, HasSubstr(kInvalid + ":12:"));
  EXPECT_EQ(Cli({"diff", old_}).code, 2);
}

class CliServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    absl::StatusOr<std::unique_ptr<ServerProcess>> server =
        ServerProcess::Start(dir_.Write("experiments.yaml", kConfig));
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = std::move(*server);
  }

  Result Run(std::vector<std::string> args) {
    args.push_back("--server=" + server_->address());
    return Cli(std::move(args));
  }

  std::string Version() { return ConfigVersionOf(kConfig); }

  TempDir dir_;
  std::unique_ptr<ServerProcess> server_;
};

TEST_F(CliServerTest, AssignPrintsVariantsAndFeatures) {
  const std::string id = "u-123";
  const Result r =
      Run({"assign", "--id", "user_id=" + id, "--attr", "country=CN", "--attr",
           "is_vip=true", "--attr", "days_since_signup=3"});
  ASSERT_EQ(r.code, 0) << r.out << r.err;
  const bool control = Bucket(HashPurpose::kVariant, "split-salt", id) < 5000;
  EXPECT_THAT(r.out, HasSubstr(Version()));
  EXPECT_THAT(r.out, ::testing::ContainsRegex(absl::StrCat(
                         "split +", control ? "control" : "treatment")));
  // The bool and number attributes were sent typed, so targeting matched.
  EXPECT_THAT(r.out, ::testing::ContainsRegex("cn_vip +on"));
  EXPECT_THAT(r.out, HasSubstr(control ? "\"red\"" : "\"green\""));
}

TEST_F(CliServerTest, ForcedStringAttributeIsNotANumber) {
  // days_since_signup is declared number: sent as a string it is rejected.
  const Result r = Run(
      {"assign", "--id", "user_id=u", "--attr", "days_since_signup:string=3"});
  EXPECT_EQ(r.code, 1) << r.out << r.err;
  EXPECT_THAT(r.err, HasSubstr("INVALID_ARGUMENT"));
}

TEST_F(CliServerTest, AssignJsonParsesAsAnAssignResponse) {
  const Result r = Run({"assign", "--id", "user_id=u-9", "--format", "json",
                        "--experiment", "split"});
  ASSERT_EQ(r.code, 0) << r.err;
  const auto response = ParseJson<v1::AssignResponse>(r.out);
  EXPECT_EQ(response.config_version(), Version());
  ASSERT_EQ(response.assignments_size(), 1);
  EXPECT_EQ(response.assignments(0).experiment_key(), "split");
}

TEST_F(CliServerTest, ExplainShowsTheHashInputAndBucket) {
  const std::string id = "u-77";
  const Result r = Run({"explain", "split", "--id", "user_id=" + id});
  ASSERT_EQ(r.code, 0) << r.out << r.err;
  const std::string hex = absl::BytesToHexString(
      HashInput(HashPurpose::kVariant, "split-salt", id));
  const uint32_t bucket = Bucket(HashPurpose::kVariant, "split-salt", id);
  EXPECT_THAT(r.out, HasSubstr(hex));
  EXPECT_THAT(r.out, HasSubstr(absl::StrCat("bucket       ", bucket)));
  EXPECT_THAT(r.out,
              ::testing::ContainsRegex(
                  bucket < 5000 ? "control +\\[0, 5000\\) +<- matched"
                                : "treatment +\\[5000, 10000\\) +<- matched"));
  EXPECT_THAT(r.out, HasSubstr(Version()));

  const Result json =
      Run({"explain", "split", "--id", "user_id=" + id, "--format", "json"});
  ASSERT_EQ(json.code, 0);
  const auto x = ParseJson<v1::ExplainAssignmentResponse>(json.out);
  EXPECT_EQ(x.variant_hash().input_hex(), hex);
  EXPECT_EQ(x.variant_hash().bucket(), bucket);
}

TEST_F(CliServerTest, ExplainShowsEachTargetingRule) {
  const Result r = Run({"explain", "cn_vip", "--id", "user_id=u", "--attr",
                        "country=US", "--attr", "is_vip=true"});
  ASSERT_EQ(r.code, 0) << r.out << r.err;
  EXPECT_THAT(r.out, HasSubstr("variant         none"));
  EXPECT_THAT(r.out, ::testing::ContainsRegex(
                         "false +  country eq CN +\\(unit: US\\)"));
  EXPECT_THAT(r.out, ::testing::ContainsRegex("FAIL +targeting"));
}

TEST_F(CliServerTest, ExperimentsListAndGet) {
  const Result list = Run({"experiments", "list"});
  ASSERT_EQ(list.code, 0) << list.err;
  EXPECT_THAT(list.out, ::testing::ContainsRegex("split +running"));
  EXPECT_THAT(list.out, ::testing::ContainsRegex("cn_vip +running"));

  const Result json = Run({"experiments", "list", "--format", "json"});
  ASSERT_EQ(json.code, 0);
  const auto response = ParseJson<v1::ListExperimentsResponse>(json.out);
  ASSERT_EQ(response.experiments_size(), 2);
  EXPECT_EQ(response.experiments(0).key(), "split");
  EXPECT_EQ(response.experiments(1).key(), "cn_vip");

  const Result get = Run({"experiments", "get", "split"});
  ASSERT_EQ(get.code, 0) << get.err;
  EXPECT_THAT(get.out, ::testing::ContainsRegex("salt +split-salt"));
  EXPECT_THAT(get.out, ::testing::ContainsRegex(
                           "control +50 +\\[0, 5000\\) +\\[0, 5000\\)"));
}

TEST_F(CliServerTest, ServerErrorsPrintTheCodeAndExitOne) {
  const Result r = Run({"experiments", "get", "no_such_experiment"});
  EXPECT_EQ(r.code, 1);
  EXPECT_THAT(r.err, HasSubstr("NOT_FOUND"));
  EXPECT_THAT(r.err, HasSubstr("no_such_experiment"));
}

TEST(CliServerUnreachable, ExitsThreeWithAHint) {
  // Port 1 on loopback: nothing listens there in a test environment.
  const Result r = Cli(
      {"experiments", "list", "--server", "127.0.0.1:1", "--timeout", "1s"});
  EXPECT_EQ(r.code, 3) << r.out << r.err;
  EXPECT_THAT(r.err, HasSubstr("UNAVAILABLE"));
  EXPECT_THAT(r.err, HasSubstr("--server"));
}

TEST(CliUsage, BadUnitFlagsAreUsageErrors) {
  EXPECT_EQ(Cli({"assign"}).code, 2);  // no --id
  EXPECT_EQ(Cli({"assign", "--id", "nouserid"}).code, 2);
  EXPECT_EQ(Cli({"assign", "--id", "user_id=u", "--attr", "x:bool=maybe"}).code,
            2);
  EXPECT_EQ(Cli({"assign", "--id", "user_id=u", "--format", "xml"}).code, 2);
  EXPECT_EQ(Cli({"explain", "--id", "user_id=u"}).code, 2);  // no experiment
  EXPECT_EQ(Cli({"experiments"}).code, 2);
  for (const char* command : {"assign", "explain", "experiments", "diff"}) {
    const Result help = Cli({command, "--help"});
    EXPECT_EQ(help.code, 0) << command;
    EXPECT_THAT(help.out, HasSubstr(absl::StrCat("usage: abexp ", command)));
  }
}

}  // namespace
}  // namespace abexp
