// A project outside abexp's tree (tests/outside_project/) builds against the
// abexp-dev package that scripts/package.sh made (the package_build test),
// extracted with dpkg-deb into a directory of its own, never against this
// build tree: once with CMake (find_package(abexp CONFIG), abexp::client)
// and once with pkg-config (abexp-client). Both programs then ask a real
// abexp-server for variants and record exposures and orders with the event
// sender; what lands in Redis must be exactly what they sent.
#include <cstdlib>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/core/event_store.h"
#include "server/testing/recording_test_util.h"

namespace abexp {
namespace {

using ::abexp::testing::FigureDiffs;
using ::abexp::testing::kCheckoutConfig;
using ::abexp::testing::MetricOf;
using ::abexp::testing::RecordingServerTest;
using ::abexp::testing::RunProcess;
using ::testing::HasSubstr;

constexpr int kUnitsPerProgram = 40;
// Each order's value in outside_app (a binary fraction: sums are exact).
constexpr double kOrderValue = 2.5;
// Configuring and compiling a gRPC program takes a while on a loaded machine.
constexpr absl::Duration kBuildTimeout = absl::Minutes(8);

// Runs `argv`; a test failure with its output unless it exits 0.
std::string RunOk(const std::vector<std::string>& argv,
                  absl::Duration timeout = kBuildTimeout) {
  std::string out, err;
  absl::StatusOr<int> rc = RunProcess(argv, &out, &err, timeout);
  EXPECT_TRUE(rc.ok() && *rc == 0)
      << absl::StrJoin(argv, " ") << " failed ("
      << (rc.ok() ? absl::StrCat("exit ", *rc) : rc.status().ToString())
      << "):\n"
      << out << err;
  return out;
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

class OutsideProjectTest : public RecordingServerTest {
 protected:
  OutsideProjectTest() : RecordingServerTest(kCheckoutConfig, "outside") {}

  // Extracts the abexp-dev package into dir_/root; returns its /usr.
  std::string ExtractDevPackage() {
    const std::string root = dir_.path() + "/root";
    const std::string deb(absl::StripAsciiWhitespace(
        RunOk({"/bin/sh", "-c", "ls " ABEXP_PACKAGE_DIR "/abexp-dev_*.deb"})));
    EXPECT_FALSE(deb.empty() || absl::StrContains(deb, "\n"))
        << "want one abexp-dev package in " ABEXP_PACKAGE_DIR
           " (the package_build test makes it), found: '"
        << deb << "'";
    RunOk({"dpkg-deb", "-x", deb, root});
    return root + "/usr";
  }

  // Runs outside_app against the server and counts the variants it printed.
  void RunApp(const std::string& app, const std::string& prefix,
              std::map<std::string, int>* per_variant) {
    const std::string out = RunOk({app, server_->address(), "checkout", prefix,
                                   std::to_string(kUnitsPerProgram)},
                                  absl::Minutes(2));
    EXPECT_THAT(out, HasSubstr(absl::StrCat("sent ", 2 * kUnitsPerProgram,
                                            " of ", 2 * kUnitsPerProgram)));
    for (absl::string_view line : absl::StrSplit(out, '\n')) {
      std::vector<std::string> words = absl::StrSplit(line, ' ');
      if (words.size() == 2 && absl::StartsWith(words[0], prefix)) {
        ++(*per_variant)[words[1]];
      }
    }
  }
};

TEST_F(OutsideProjectTest, BuildsAgainstTheInstalledPackageAndRecords) {
  const std::string usr = ExtractDevPackage();
  ASSERT_FALSE(::testing::Test::HasFailure());
  const std::string build = dir_.path() + "/build";
  // The compiler and flags of this build, so a sanitized build links its
  // sanitized libraries into a sanitized program.
  RunOk({"cmake", "-S", ABEXP_SOURCE_DIR "/tests/outside_project", "-B", build,
         "-G", "Ninja", "-DCMAKE_BUILD_TYPE=Release",
         "-DCMAKE_PREFIX_PATH=" + usr,
         "-DCMAKE_CXX_COMPILER=" ABEXP_CXX_COMPILER,
         "-DCMAKE_CXX_FLAGS=" ABEXP_CXX_FLAGS});
  // The package found is the extracted one, not one installed on the host.
  EXPECT_THAT(
      ReadFile(build + "/CMakeCache.txt"),
      HasSubstr(absl::StrCat("abexp_DIR:PATH=", usr, "/lib/cmake/abexp")));
  RunOk({"cmake", "--build", build, "-j2"});

  // pkg-config: the .pc file locates the tree from where it lies.
  const std::string pc_app = dir_.path() + "/outside_app_pkgconfig";
  RunOk({"/bin/sh", "-c",
         absl::StrCat("PKG_CONFIG_PATH='", usr, "/lib/pkgconfig' && export ",
                      "PKG_CONFIG_PATH && " ABEXP_CXX_COMPILER " ",
                      ABEXP_CXX_FLAGS " -std=c++17 -O1 -o '", pc_app, "' '",
                      ABEXP_SOURCE_DIR "/tests/outside_project/main.cc' ",
                      "$(pkg-config --cflags --libs abexp-client)")});
  ASSERT_FALSE(::testing::Test::HasFailure());

  ASSERT_NO_FATAL_FAILURE(StartServer());
  std::map<std::string, int> per_variant;
  RunApp(build + "/outside_app", "cmake-", &per_variant);
  RunApp(pc_app, "pkgconfig-", &per_variant);
  ASSERT_FALSE(::testing::Test::HasFailure());
  ASSERT_EQ(per_variant["control"] + per_variant["treatment"],
            2 * kUnitsPerProgram)
      << "every unit is in control or treatment";

  // The sender acknowledged every record, so Redis has them all now.
  const std::string diffs = AggregateDifferences(
      "checkout", 2, [&](const ExperimentAggregates& a, FigureDiffs* d) {
        const char* names[] = {"control", "treatment"};
        for (int v = 0; v < 2; ++v) {
          const int n = per_variant[names[v]];
          d->Check(absl::StrCat(names[v], " exposed"), a.variants[v].exposed,
                   n);
          d->Check(absl::StrCat(names[v], " order_conversion.units"),
                   MetricOf(a.variants[v], "order_conversion").units, n);
          d->Check(absl::StrCat(names[v], " revenue.sum"),
                   MetricOf(a.variants[v], "revenue").sum, n * kOrderValue);
        }
      });
  EXPECT_EQ(diffs, "");
}

}  // namespace
}  // namespace abexp
