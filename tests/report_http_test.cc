// GET /experiments/{key}/report (server/report_endpoint.h) on a real
// abexp-server with a real redis-server: the page is the one `abexp report`
// writes for the same data, daily trend included; unknown experiments, a
// Redis that is down, and missing tokens or roles get the documented
// answers; ?dimension= and ?adjust_segments= give the page abexp report
// writes with --dimension and --adjust_segments, and bad ones say why.
#include <httplib.h>

#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/testing/auth_test_util.h"
#include "server/testing/recording_test_util.h"
#include "server/testing/server_process.h"

namespace abexp {
namespace {

using ::abexp::testing::MakeToken;
using ::abexp::testing::RecordingServerTest;
using ::abexp::testing::RunProcess;
using ::abexp::testing::TokenFileLine;
using ::abexp::testing::User;
using ::testing::HasSubstr;
using ::testing::Not;

// checkout, and `segmented` broken down by platform.
constexpr char kConfig[] = R"yaml(
attributes: {platform: string}
metrics:
  - key: order_conversion
    type: binomial
    event: order_completed
  - key: revenue
    type: sum
    event: order_completed
    aggregate: value

experiments:
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
)yaml";

// `page` without the header's facts that depend on when and where it was
// made ("generated", "source").
std::string WithoutMadeFacts(std::string page) {
  for (const std::string fact : {"generated", "source"}) {
    const std::string open = absl::StrCat("<dt>", fact, "</dt><dd>");
    const size_t at = page.find(open);
    if (at == std::string::npos) continue;
    const size_t end = page.find("</dd>", at);
    if (end == std::string::npos) continue;
    page.erase(at, end + 5 - at);
  }
  return page;
}

class ReportHttpTest : public RecordingServerTest {
 protected:
  ReportHttpTest() : RecordingServerTest(kConfig, "") {}

  httplib::Result Get(const std::string& path, httplib::Headers headers = {}) {
    httplib::Client client("127.0.0.1", http_port_);
    client.set_connection_timeout(5);
    client.set_read_timeout(30);
    return client.Get(path.c_str(), headers);
  }

  // Units `prefix`0 .. `prefix`(n-1) exposed to `variant` of segmented
  // with `platform`, and the first `converted` of them ordering 12.5.
  void ExposeOn(const std::string& variant, const std::string& platform,
                const std::string& prefix, int n, int converted) {
    const absl::Time now = absl::Now();
    std::vector<v1::Unit> units;
    for (int i = 0; i < n; ++i) {
      v1::Unit& unit = units.emplace_back(User(absl::StrCat(prefix, i)));
      (*unit.mutable_attributes())["platform"].set_string_value(platform);
    }
    ASSERT_NO_FATAL_FAILURE(ExposeUnits("segmented", variant, units, now));
    SendEvents("order_completed", prefix, converted, now + absl::Seconds(1));
  }

  // The page `abexp report EXPERIMENT flags...` writes.
  std::string CliPage(const std::string& experiment,
                      std::vector<std::string> flags) {
    const std::string out = dir_.path() + "/" + experiment + ".html";
    std::vector<std::string> argv = {
        ABEXP_CLI_BIN,      "report", experiment, "--server",
        server_->address(), "--out",  out};
    argv.insert(argv.end(), flags.begin(), flags.end());
    std::string stdout_text, stderr_text;
    absl::StatusOr<int> code = RunProcess(argv, &stdout_text, &stderr_text);
    EXPECT_TRUE(code.ok()) << code.status();
    EXPECT_EQ(code.value_or(-1), 0) << stderr_text;
    std::ifstream in(out);
    std::stringstream written;
    written << in.rdbuf();
    return written.str();
  }

  // Two cohort days: yesterday 30 units per variant, today 20 more.
  void RecordTwoDays() {
    const absl::Time now = absl::Now();
    const absl::Time yesterday = now - absl::Hours(24);
    ExposeUsers("checkout", "control", "c-old-", 30, yesterday);
    ExposeUsers("checkout", "treatment", "t-old-", 30, yesterday);
    SendEvents("order_completed", "c-old-", 6, yesterday + absl::Seconds(1));
    SendEvents("order_completed", "t-old-", 9, yesterday + absl::Seconds(1));
    ExposeUsers("checkout", "control", "c-new-", 20, now);
    ExposeUsers("checkout", "treatment", "t-new-", 20, now);
    SendEvents("order_completed", "c-new-", 4, now + absl::Seconds(1));
    SendEvents("order_completed", "t-new-", 5, now + absl::Seconds(1));
  }
};

TEST_F(ReportHttpTest, TheServerServesThePageAbexpReportWrites) {
  ASSERT_NO_FATAL_FAILURE(StartServerWithHttp());
  RecordTwoDays();
  httplib::Result got = Get("/experiments/checkout/report");
  ASSERT_TRUE(got) << httplib::to_string(got.error());
  ASSERT_EQ(got->status, 200) << got->body;
  EXPECT_EQ(got->get_header_value("Content-Type"), "text/html; charset=utf-8");
  EXPECT_EQ(got->get_header_value("Cache-Control"), "no-store");
  // The daily trend is drawn, over both days.
  EXPECT_THAT(got->body, HasSubstr("id=\"daily-trend\""));
  EXPECT_THAT(got->body, HasSubstr(absl::FormatTime(
                             "%Y-%m-%d", absl::Now() - absl::Hours(24),
                             absl::UTCTimeZone())));
  EXPECT_THAT(got->body, HasSubstr("<dt>source</dt><dd>abexp-server"));

  EXPECT_EQ(WithoutMadeFacts(got->body),
            WithoutMadeFacts(CliPage("checkout", {})))
      << "the page over HTTP differs from abexp report's";
}

TEST_F(ReportHttpTest, ADimensionInTheQueryServesAbexpReportsSegments) {
  ASSERT_NO_FATAL_FAILURE(StartServerWithHttp());
  // ios 200/200; web 160/90, a mismatch (chi2 = 19.6, p < 0.001) that only
  // web's check finds.
  ASSERT_NO_FATAL_FAILURE(ExposeOn("control", "ios", "ic", 200, 20));
  ASSERT_NO_FATAL_FAILURE(ExposeOn("treatment", "ios", "it", 200, 34));
  ASSERT_NO_FATAL_FAILURE(ExposeOn("control", "web", "wc", 160, 16));
  ASSERT_NO_FATAL_FAILURE(ExposeOn("treatment", "web", "wt", 90, 11));

  httplib::Result got = Get("/experiments/segmented/report?dimension=platform");
  ASSERT_TRUE(got) << httplib::to_string(got.error());
  ASSERT_EQ(got->status, 200) << got->body;
  EXPECT_THAT(got->body, HasSubstr("Segments by platform"));
  EXPECT_THAT(got->body, HasSubstr("Sample ratio mismatch in platform = web"));
  EXPECT_EQ(WithoutMadeFacts(got->body),
            WithoutMadeFacts(CliPage("segmented", {"--dimension", "platform"})))
      << "the page over HTTP differs from abexp report --dimension's";

  // Names and values are URL-decoded ("%70" is "p", "%65" is "e").
  got =
      Get("/experiments/segmented/report?adjust%5Fsegments=tru%65&dimension="
          "%70latform");
  ASSERT_TRUE(got) << httplib::to_string(got.error());
  ASSERT_EQ(got->status, 200) << got->body;
  EXPECT_THAT(got->body, HasSubstr("adjusted across the values"));
  EXPECT_EQ(
      WithoutMadeFacts(got->body),
      WithoutMadeFacts(CliPage("segmented", {"--dimension", "platform",
                                             "--adjust_segments", "true"})))
      << "the page over HTTP differs from abexp report --adjust_segments's";

  // Without a dimension there is no Segments section.
  got = Get("/experiments/segmented/report");
  ASSERT_TRUE(got) << httplib::to_string(got.error());
  ASSERT_EQ(got->status, 200) << got->body;
  EXPECT_THAT(got->body, Not(HasSubstr("id=\"segments\"")));
}

TEST_F(ReportHttpTest, BadQueryParametersAre400SayingWhatIsWrong) {
  ASSERT_NO_FATAL_FAILURE(StartServerWithHttp());
  auto expect_400 = [&](const std::string& path,
                        const std::vector<std::string>& says) {
    httplib::Result got = Get(path);
    ASSERT_TRUE(got) << httplib::to_string(got.error());
    EXPECT_EQ(got->status, 400) << path << ": " << got->body;
    for (const std::string& text : says) {
      EXPECT_THAT(got->body, HasSubstr(text)) << path;
    }
  };
  const std::string report = "/experiments/segmented/report";
  expect_400(report + "?dimension=country",
             {"no dimension 'country'", "its dimensions are: platform"});
  expect_400("/experiments/checkout/report?dimension=platform",
             {"'checkout' has no dimensions"});
  expect_400(report + "?metric=revenue",
             {"unknown query parameter \"metric\"", "dimension=NAME",
              "adjust_segments=true|false"});
  expect_400(report + "?dimension=platform&adjust_segments=yes",
             {"adjust_segments=yes is not true or false"});
  expect_400(report + "?adjust_segments=true",
             {"adjust_segments=true needs dimension=NAME"});
  expect_400(report + "?dimension=", {"dimension is empty"});
  expect_400(report + "?dimension=platform&dimension=platform",
             {"dimension is given twice"});
}

TEST_F(ReportHttpTest, UnknownExperimentsAndADownRedisSaySo) {
  ASSERT_NO_FATAL_FAILURE(StartServerWithHttp());
  httplib::Result got = Get("/experiments/nope/report");
  ASSERT_TRUE(got) << httplib::to_string(got.error());
  EXPECT_EQ(got->status, 404);
  EXPECT_THAT(got->body, HasSubstr("checkout")) << "names the known ones";

  ASSERT_TRUE(redis_->Kill().ok());
  got = Get("/experiments/checkout/report");
  ASSERT_TRUE(got) << httplib::to_string(got.error());
  EXPECT_EQ(got->status, 503) << got->body;
  EXPECT_THAT(got->body, HasSubstr("Redis"));
  EXPECT_EQ(got->get_header_value("Retry-After"), "5");
}

TEST_F(ReportHttpTest, WithTokensOnItNeedsTheResultsRole) {
  const std::string assign = MakeToken('a', "assign");
  const std::string results = MakeToken('r', "results");
  const std::string tokens_path = dir_.path() + "/tokens";
  std::ofstream(tokens_path) << TokenFileLine("svc", "assign", assign)
                             << TokenFileLine("analyst", "results", results);
  ASSERT_NO_FATAL_FAILURE(
      StartServerWithHttp({"--auth_tokens_file=" + tokens_path}));
  const std::string path = "/experiments/checkout/report";
  httplib::Result got = Get(path);
  ASSERT_TRUE(got) << httplib::to_string(got.error());
  EXPECT_EQ(got->status, 401);
  EXPECT_THAT(got->get_header_value("WWW-Authenticate"), HasSubstr("Bearer"));
  got = Get(path, {{"Authorization", "Bearer " + assign}});
  ASSERT_TRUE(got) << httplib::to_string(got.error());
  EXPECT_EQ(got->status, 403);
  EXPECT_THAT(got->body, HasSubstr("results"));
  got = Get(path, {{"Authorization", "Bearer " + results}});
  ASSERT_TRUE(got) << httplib::to_string(got.error());
  EXPECT_EQ(got->status, 200) << got->body;
  got = Get(path, {{"X-API-Key", results}});
  ASSERT_TRUE(got) << httplib::to_string(got.error());
  EXPECT_EQ(got->status, 200) << got->body;
}

}  // namespace
}  // namespace abexp
