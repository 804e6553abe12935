// The `abexp` CLI's side of TLS and tokens: `abexp token create`, the TLS
// and token flags and variables of the commands that ask abexp-server, and
// what they print when the server refuses.
#include <string>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/testing/server_process.h"
#include "server/testing/test_certs.h"
#include "tests/secure_server_util.h"

namespace abexp {
namespace {

using ::abexp::testing::CertAndKey;
using ::abexp::testing::RunProcess;
using ::abexp::testing::ServerProcess;
using ::abexp::testing::TempDir;
using ::abexp::testing::TestCertificates;
using ::abexp::testing::TlsCredentials;
using ::testing::HasSubstr;
using ::testing::MatchesRegex;
using ::testing::Not;

struct Result {
  int code = -1;
  std::string out;
  std::string err;
};

// Runs `abexp args...` with the environment variables `env` ("NAME=VALUE")
// added, and without any ABEXP_TLS_* or ABEXP_TOKEN of the test's own.
Result Cli(const std::vector<std::string>& env,
           const std::vector<std::string>& args) {
  std::vector<std::string> argv = {"env",
                                   "-u",
                                   "ABEXP_TOKEN",
                                   "-u",
                                   "ABEXP_TLS_CA_FILE",
                                   "-u",
                                   "ABEXP_TLS_CERT_FILE",
                                   "-u",
                                   "ABEXP_TLS_KEY_FILE"};
  argv.insert(argv.end(), env.begin(), env.end());
  argv.push_back(ABEXP_CLI_BIN);
  argv.insert(argv.end(), args.begin(), args.end());
  Result r;
  absl::StatusOr<int> code = RunProcess(argv, &r.out, &r.err);
  EXPECT_TRUE(code.ok()) << code.status();
  r.code = code.value_or(-1);
  return r;
}

// SHA-256 of `text` in hex, by Python's hashlib: not by abexp's own code.
std::string Sha256ByPython(const std::string& text) {
  std::string out;
  std::string err;
  absl::StatusOr<int> code =
      RunProcess({"/usr/bin/python3", "-c",
                  "import hashlib, sys; "
                  "print(hashlib.sha256(sys.argv[1].encode()).hexdigest())",
                  text},
                 &out, &err);
  EXPECT_TRUE(code.ok() && *code == 0) << err;
  return std::string(absl::StripAsciiWhitespace(out));
}

// The two stdout lines of `abexp token create`.
struct Created {
  std::string token;
  std::string line;
};

Created CreateToken(const std::vector<std::string>& args) {
  std::vector<std::string> argv = {"token", "create"};
  argv.insert(argv.end(), args.begin(), args.end());
  const Result r = Cli({}, argv);
  EXPECT_EQ(r.code, 0) << r.err;
  const std::vector<std::string> lines =
      absl::StrSplit(r.out, '\n', absl::SkipEmpty());
  EXPECT_EQ(lines.size(), 2u) << r.out;
  if (lines.size() != 2) return {};
  return {lines[0], lines[1]};
}

TEST(CliTokenCreate, PrintsTheTokenThenItsFileLineWithItsSha256) {
  const Result r = Cli({}, {"token", "create", "--role", "record,assign",
                            "--name", "checkout-service"});
  ASSERT_EQ(r.code, 0) << r.err;
  const std::vector<std::string> lines =
      absl::StrSplit(r.out, '\n', absl::SkipEmpty());
  ASSERT_EQ(lines.size(), 2u) << r.out;
  const std::string& token = lines[0];
  EXPECT_THAT(token, MatchesRegex("abexp_[A-Za-z0-9_-]{43}"));
  const std::vector<std::string> fields = absl::StrSplit(lines[1], ' ');
  ASSERT_EQ(fields.size(), 3u) << lines[1];
  EXPECT_EQ(fields[0], "checkout-service");
  EXPECT_EQ(fields[1], "record,assign");
  EXPECT_EQ(fields[2], "sha256:" + Sha256ByPython(token));
  // How to use both goes to stderr, and names neither the token nor its hash.
  EXPECT_THAT(r.err, HasSubstr("--auth_tokens_file"));
  EXPECT_THAT(r.err, HasSubstr("SIGHUP"));
  EXPECT_THAT(r.err, HasSubstr("shown only now"));
  EXPECT_THAT(r.err, Not(HasSubstr(token)));
}

TEST(CliTokenCreate, TwoRunsGiveDifferentTokens) {
  const Created a = CreateToken({"--role", "assign", "--name", "a"});
  const Created b = CreateToken({"--role", "assign", "--name", "a"});
  EXPECT_NE(a.token, b.token);
  EXPECT_NE(a.line, b.line);
}

TEST(CliTokenCreate, RepeatedRolesAreMergedInTheOrderGiven) {
  const Created c = CreateToken(
      {"--role", "results", "--role", "admin,results", "--name", "analyst.1"});
  EXPECT_THAT(c.line,
              MatchesRegex("analyst\\.1 results,admin sha256:[0-9a-f]{64}"));
}

TEST(CliTokenCreate, RefusesUnknownRolesAndBadNames) {
  struct Case {
    std::vector<std::string> args;
    std::string message;
  };
  const Case cases[] = {
      {{"--role", "reader", "--name", "a"},
       "'reader' is not a role; roles are assign, record, results, admin"},
      {{"--role", "assign,", "--name", "a"}, "an empty role"},
      {{"--name", "a"}, "--role is required"},
      {{"--role", "assign"}, "--name is required"},
      {{"--role", "assign", "--name", "checkout service"},
       "is not a token name: use 1 to 64 characters from A-Z a-z 0-9 . _ -"},
      {{"--role", "assign", "--name", std::string(65, 'n')},
       "is not a token name"},
  };
  for (const Case& c : cases) {
    std::vector<std::string> argv = {"token", "create"};
    argv.insert(argv.end(), c.args.begin(), c.args.end());
    const Result r = Cli({}, argv);
    EXPECT_EQ(r.code, 2) << r.out << r.err;
    EXPECT_EQ(r.out, "");
    EXPECT_THAT(r.err, HasSubstr(c.message));
  }
  EXPECT_EQ(Cli({}, {"token"}).code, 2);
  EXPECT_EQ(Cli({}, {"token", "delete"}).code, 2);
}

TEST(CliSecurityFlags, EveryServerCommandDocumentsThem) {
  for (const std::vector<std::string>& command :
       std::vector<std::vector<std::string>>{{"assign"},
                                             {"explain"},
                                             {"experiments"},
                                             {"track"},
                                             {"expose"},
                                             {"results"}}) {
    std::vector<std::string> argv = command;
    argv.push_back("--help");
    const Result r = Cli({}, argv);
    EXPECT_EQ(r.code, 0) << command[0];
    for (const char* flag : {"--tls_ca_file", "--tls_cert_file",
                             "--tls_key_file", "--token", "ABEXP_TOKEN"}) {
      EXPECT_THAT(r.out, HasSubstr(flag)) << command[0];
    }
  }
  EXPECT_THAT(Cli({}, {"--help"}).out, HasSubstr("token create"));
}

TEST(CliSecurityFlags, BadValuesAreUsageErrorsNamingTheFlagOrVariable) {
  Result r = Cli({}, {"experiments", "list", "--token", "abc"});
  EXPECT_EQ(r.code, 2);
  EXPECT_THAT(r.err, HasSubstr("--token is not an abexp token"));
  r = Cli({"ABEXP_TOKEN=abexp_short"}, {"experiments", "list"});
  EXPECT_EQ(r.code, 2);
  EXPECT_THAT(r.err, HasSubstr("ABEXP_TOKEN is not an abexp token"));
  EXPECT_THAT(r.err, Not(HasSubstr("abexp_short")));
  r = Cli({"ABEXP_TLS_CA_FILE=/nonexistent/ca.pem"}, {"experiments", "list"});
  EXPECT_EQ(r.code, 2);
  EXPECT_THAT(r.err, HasSubstr("ABEXP_TLS_CA_FILE '/nonexistent/ca.pem' "
                               "cannot be read"));
  r = Cli({}, {"track", "--id", "user_id=u", "--event", "e", "--tls_key_file",
               "/some/key.pem"});
  EXPECT_EQ(r.code, 2);
  EXPECT_THAT(r.err, HasSubstr("--tls_key_file '/some/key.pem' is set but "
                               "--tls_cert_file is not"));
}

class CliTlsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    absl::StatusOr<TestCertificates> certs = TestCertificates::Create(dir_);
    ASSERT_TRUE(certs.ok()) << certs.status();
    certs_ = *certs;
    config_ = dir_.Write("experiments.yaml", abexp::testing::kOneVariantConfig);
  }

  // A server with ca1's server certificate; with `mutual`, it requires
  // client certificates ca1 signed.
  std::unique_ptr<ServerProcess> StartServer(bool mutual) {
    absl::StatusOr<std::unique_ptr<ServerProcess>> server =
        abexp::testing::StartTlsServer(config_, certs_, mutual);
    EXPECT_TRUE(server.ok()) << server.status();
    return server.ok() ? *std::move(server) : nullptr;
  }

  TempDir dir_;
  TestCertificates certs_;
  std::string config_;
};

TEST_F(CliTlsTest, ReachesATlsServerWithTlsCaFile) {
  std::unique_ptr<ServerProcess> server = StartServer(/*mutual=*/false);
  ASSERT_NE(server, nullptr);
  Result r = Cli({}, {"experiments", "list", "--server", server->address(),
                      "--tls_ca_file", certs_.ca1.cert});
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("checkout"));

  r = Cli({"ABEXP_TLS_CA_FILE=" + certs_.ca1.cert},
          {"assign", "--server", server->address(), "--id", "user_id=u-1"});
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("only"));

  // Plaintext to a TLS server: unreachable, with a hint about TLS.
  r = Cli({}, {"experiments", "list", "--server", server->address(),
               "--timeout", "2s"});
  EXPECT_EQ(r.code, 3) << r.out;
  EXPECT_THAT(r.err, HasSubstr("--tls_ca_file"));

  // A CA that did not sign the server's certificate.
  r = Cli({}, {"experiments", "list", "--server", server->address(),
               "--timeout", "2s", "--tls_ca_file", certs_.ca2.cert});
  EXPECT_EQ(r.code, 3) << r.out;
  EXPECT_THAT(r.err, HasSubstr("--tls_ca_file"));
}

TEST_F(CliTlsTest, ReachesAMutualTlsServerWithAClientCertificate) {
  std::unique_ptr<ServerProcess> server = StartServer(/*mutual=*/true);
  ASSERT_NE(server, nullptr);
  Result r = Cli(
      {}, {"experiments", "list", "--server", server->address(),
           "--tls_ca_file", certs_.ca1.cert, "--tls_cert_file",
           certs_.ca1.client.cert, "--tls_key_file", certs_.ca1.client.key});
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("checkout"));

  r = Cli({"ABEXP_TLS_CA_FILE=" + certs_.ca1.cert,
           "ABEXP_TLS_CERT_FILE=" + certs_.ca1.client.cert,
           "ABEXP_TLS_KEY_FILE=" + certs_.ca1.client.key},
          {"experiments", "list", "--server", server->address()});
  EXPECT_EQ(r.code, 0) << r.err;

  // Without the client certificate the server refuses the handshake.
  r = Cli({}, {"experiments", "list", "--server", server->address(),
               "--timeout", "2s", "--tls_ca_file", certs_.ca1.cert});
  EXPECT_EQ(r.code, 3) << r.out;
  EXPECT_THAT(r.err, HasSubstr("--tls_cert_file"));
}

// A plaintext loopback server whose token file holds the lines `abexp token
// create` printed: "ops" may assign, "analyst" may only read results.
class CliTokenTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ops_ = CreateToken({"--role", "assign", "--name", "ops"});
    analyst_ = CreateToken({"--role", "results", "--name", "analyst"});
    const std::string tokens =
        dir_.Write("tokens", ops_.line + "\n" + analyst_.line + "\n");
    absl::StatusOr<std::unique_ptr<ServerProcess>> server =
        ServerProcess::Start(
            dir_.Write("experiments.yaml", abexp::testing::kOneVariantConfig),
            {"--auth_tokens_file=" + tokens});
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = *std::move(server);
  }

  TempDir dir_;
  Created ops_;
  Created analyst_;
  std::unique_ptr<ServerProcess> server_;
};

TEST_F(CliTokenTest, ATokenFromTheFlagOrTheVariableIsAccepted) {
  Result r = Cli({}, {"experiments", "list", "--server", server_->address(),
                      "--token", ops_.token});
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("checkout"));
  r = Cli({"ABEXP_TOKEN=" + ops_.token},
          {"assign", "--server", server_->address(), "--id", "user_id=u-1"});
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("only"));
}

TEST_F(CliTokenTest, WithoutATokenItSaysHowToPassOne) {
  const Result r =
      Cli({}, {"experiments", "list", "--server", server_->address()});
  EXPECT_EQ(r.code, 1) << r.out;
  EXPECT_THAT(r.err, HasSubstr("UNAUTHENTICATED"));
  EXPECT_THAT(r.err, HasSubstr("pass --token TOKEN or set ABEXP_TOKEN"));
}

TEST_F(CliTokenTest, ATokenWithoutTheRoleNamesTheRole) {
  const Result r = Cli({"ABEXP_TOKEN=" + analyst_.token},
                       {"experiments", "list", "--server", server_->address()});
  EXPECT_EQ(r.code, 1) << r.out;
  EXPECT_THAT(r.err, HasSubstr("PERMISSION_DENIED"));
  EXPECT_THAT(r.err, HasSubstr("analyst"));
  EXPECT_THAT(r.err, HasSubstr("assign"));
  EXPECT_THAT(r.err, HasSubstr("lacks the role"));
  EXPECT_THAT(r.err, Not(HasSubstr(analyst_.token)));
}

}  // namespace
}  // namespace abexp
