// The README's Python recipe, as a reader would follow it: Debian's protoc
// and grpc_python_plugin generate the clients of the three protos, and the
// README's Python code calls Assign, RecordExposures, RecordEvents and
// GetResults on a real abexp-server recording into a real redis-server.
// tests/readme_python_recipe.py reads the commands and the code from
// README.md and checks each call's answer.
#include <memory>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/core/config_parser.h"
#include "server/testing/redis_process.h"
#include "server/testing/server_process.h"

namespace abexp {
namespace {

using ::abexp::testing::RedisProcess;
using ::abexp::testing::RunProcess;
using ::abexp::testing::ServerProcess;
using ::abexp::testing::TempDir;

TEST(ReadmePython, TheRecipeBuildsEveryClientAndCallsEachService) {
  const std::string repo = ABEXP_SOURCE_DIR;
  const std::string config = repo + "/examples/experiments.yaml";
  const ParseResult parsed = ParseConfigFile(config);
  ASSERT_TRUE(parsed.ok()) << parsed.FormatDiagnostics();

  absl::StatusOr<std::unique_ptr<RedisProcess>> redis = RedisProcess::Start();
  ASSERT_TRUE(redis.ok()) << redis.status();
  absl::StatusOr<std::unique_ptr<ServerProcess>> server = ServerProcess::Start(
      config, {absl::StrCat("--redis=", (*redis)->address())});
  ASSERT_TRUE(server.ok()) << server.status();

  TempDir work;
  std::string out, err;
  absl::StatusOr<int> code =
      RunProcess({ABEXP_TEST_PYTHON, repo + "/tests/readme_python_recipe.py",
                  "--repo=" + repo, "--server=" + (*server)->address(),
                  "--workdir=" + work.path(),
                  "--config_version=" + parsed.config->version},
                 &out, &err, absl::Seconds(240));
  ASSERT_TRUE(code.ok()) << code.status();
  EXPECT_EQ(*code, 0) << "stdout:\n"
                      << out << "stderr:\n"
                      << err << "server:\n"
                      << (*server)->Stderr();
}

}  // namespace
}  // namespace abexp
