// GET /experiments/{key}/report (server/report_endpoint.h) on a real
// abexp-server with a real redis-server: the page is the one `abexp report`
// writes for the same data, daily trend included; unknown experiments, a
// Redis that is down, and missing tokens or roles get the documented
// answers.
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

using ::abexp::testing::kCheckoutConfig;
using ::abexp::testing::MakeToken;
using ::abexp::testing::RecordingServerTest;
using ::abexp::testing::RunProcess;
using ::abexp::testing::TokenFileLine;
using ::testing::HasSubstr;

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
  ReportHttpTest() : RecordingServerTest(kCheckoutConfig, "") {}

  httplib::Result Get(const std::string& path, httplib::Headers headers = {}) {
    httplib::Client client("127.0.0.1", http_port_);
    client.set_connection_timeout(5);
    client.set_read_timeout(30);
    return client.Get(path.c_str(), headers);
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

  const std::string out = dir_.path() + "/checkout.html";
  std::string stdout_text, stderr_text;
  absl::StatusOr<int> code =
      RunProcess({ABEXP_CLI_BIN, "report", "checkout", "--server",
                  server_->address(), "--out", out},
                 &stdout_text, &stderr_text);
  ASSERT_TRUE(code.ok()) << code.status();
  ASSERT_EQ(*code, 0) << stderr_text;
  std::ifstream in(out);
  std::stringstream written;
  written << in.rdbuf();
  EXPECT_EQ(WithoutMadeFacts(got->body), WithoutMadeFacts(written.str()))
      << "the page over HTTP differs from abexp report's";
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
