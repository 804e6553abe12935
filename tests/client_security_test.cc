// abexp::Client and abexp::EventSender over TLS and mutual TLS to a real
// abexp-server, configured by options and by the ABEXP_TLS_* variables, and
// client/credentials.h's checks of real certificates and keys (made by the
// openssl command line, server/testing/test_certs.h).
#include <signal.h>
#include <stdlib.h>

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "client/client.h"
#include "client/credentials.h"
#include "client/event_sender.h"
#include "client/token.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/testing/redis_process.h"
#include "server/testing/server_process.h"
#include "server/testing/test_certs.h"
#include "tests/secure_server_util.h"

namespace abexp {
namespace {

using ::abexp::testing::CertAndKey;
using ::abexp::testing::RedisProcess;
using ::abexp::testing::RunProcess;
using ::abexp::testing::ServerProcess;
using ::abexp::testing::TempDir;
using ::abexp::testing::TestCertificates;
using ::abexp::testing::TlsCredentials;
using ::testing::HasSubstr;
using ::testing::Not;

class ClientTlsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    for (const char* name :
         {kTlsCaFileEnv, kTlsCertFileEnv, kTlsKeyFileEnv, kTokenEnv}) {
      unsetenv(name);
    }
    absl::StatusOr<TestCertificates> certs = TestCertificates::Create(dir_);
    ASSERT_TRUE(certs.ok()) << certs.status();
    certs_ = *certs;
    config_ = dir_.Write("experiments.yaml", abexp::testing::kOneVariantConfig);
    absl::StatusOr<std::unique_ptr<RedisProcess>> redis = RedisProcess::Start();
    ASSERT_TRUE(redis.ok()) << redis.status();
    redis_ = *std::move(redis);
  }

  // A server with ca1's server certificate, recording into redis_; with
  // `mutual`, it requires client certificates ca1 signed.
  std::unique_ptr<ServerProcess> StartServer(bool mutual) {
    absl::StatusOr<std::unique_ptr<ServerProcess>> server =
        abexp::testing::StartTlsServer(config_, certs_, mutual,
                                       {"--redis=" + redis_->address()});
    EXPECT_TRUE(server.ok()) << server.status();
    return server.ok() ? *std::move(server) : nullptr;
  }

  // Assign of one unit by a client made with `security` (degraded with
  // Create's error when that fails, which the test reports).
  Assignment AssignWith(const ServerProcess& server, SecurityOptions security) {
    ClientOptions options;
    options.target = server.address();
    options.deadline = absl::Seconds(10);
    options.security = std::move(security);
    absl::StatusOr<std::unique_ptr<Client>> client =
        Client::Create(std::move(options));
    EXPECT_TRUE(client.ok()) << client.status();
    if (!client.ok()) return Assignment::Degraded(client.status());
    absl::StatusOr<Assignment> a =
        (*client)->Assign(UnitBuilder().Id("user_id", "u-1").Build());
    EXPECT_TRUE(a.ok()) << a.status();
    return a.ok() ? *std::move(a) : Assignment::Degraded(a.status());
  }

  // A sender made with `options`, whose target is `server`.
  std::unique_ptr<EventSender> SenderTo(const ServerProcess& server,
                                        EventSenderOptions options) {
    options.target = server.address();
    absl::StatusOr<std::unique_ptr<EventSender>> sender =
        EventSender::Create(std::move(options));
    EXPECT_TRUE(sender.ok()) << sender.status();
    return sender.ok() ? *std::move(sender) : nullptr;
  }

  TempDir dir_;
  TestCertificates certs_;
  std::string config_;
  std::unique_ptr<RedisProcess> redis_;
};

TEST_F(ClientTlsTest, ReachesATlsServerWithItsCaFile) {
  std::unique_ptr<ServerProcess> server = StartServer(/*mutual=*/false);
  ASSERT_NE(server, nullptr);
  SecurityOptions security;
  security.tls_ca_file = certs_.ca1.cert;
  const Assignment a = AssignWith(*server, security);
  EXPECT_FALSE(a.degraded()) << a.error();
  EXPECT_EQ(a.variant("checkout"), "only");
}

TEST_F(ClientTlsTest, PlaintextOrAnotherCaDegradesAsUnreachable) {
  std::unique_ptr<ServerProcess> server = StartServer(/*mutual=*/false);
  ASSERT_NE(server, nullptr);
  EXPECT_EQ(AssignWith(*server, SecurityOptions()).error().code(),
            absl::StatusCode::kUnavailable);
  SecurityOptions other;
  other.tls_ca_file = certs_.ca2.cert;
  EXPECT_EQ(AssignWith(*server, other).error().code(),
            absl::StatusCode::kUnavailable);
}

TEST_F(ClientTlsTest, MutualTlsNeedsTheClientCertificate) {
  std::unique_ptr<ServerProcess> server = StartServer(/*mutual=*/true);
  ASSERT_NE(server, nullptr);
  SecurityOptions security;
  security.tls_ca_file = certs_.ca1.cert;
  EXPECT_TRUE(AssignWith(*server, security).degraded());

  security.tls_cert_file = certs_.ca1.client.cert;
  security.tls_key_file = certs_.ca1.client.key;
  const Assignment with = AssignWith(*server, security);
  EXPECT_FALSE(with.degraded()) << with.error();
  EXPECT_EQ(with.variant("checkout"), "only");

  // A certificate of another CA is refused too.
  security.tls_cert_file = certs_.ca2.client.cert;
  security.tls_key_file = certs_.ca2.client.key;
  EXPECT_TRUE(AssignWith(*server, security).degraded());
}

TEST_F(ClientTlsTest, TheVariablesConfigureMutualTls) {
  std::unique_ptr<ServerProcess> server = StartServer(/*mutual=*/true);
  ASSERT_NE(server, nullptr);
  setenv(kTlsCaFileEnv, certs_.ca1.cert.c_str(), 1);
  setenv(kTlsCertFileEnv, certs_.ca1.client.cert.c_str(), 1);
  setenv(kTlsKeyFileEnv, certs_.ca1.client.key.c_str(), 1);
  const Assignment a = AssignWith(*server, SecurityOptions());
  EXPECT_FALSE(a.degraded()) << a.error();

  // use_environment = false: plaintext, refused by the TLS server.
  SecurityOptions ignore_env;
  ignore_env.use_environment = false;
  EXPECT_TRUE(AssignWith(*server, ignore_env).degraded());
}

TEST_F(ClientTlsTest, EventSenderDeliversOverMutualTls) {
  std::unique_ptr<ServerProcess> server = StartServer(/*mutual=*/true);
  ASSERT_NE(server, nullptr);
  EventSenderOptions options;
  options.security.tls_ca_file = certs_.ca1.cert;
  options.security.tls_cert_file = certs_.ca1.client.cert;
  options.security.tls_key_file = certs_.ca1.client.key;
  std::unique_ptr<EventSender> sender = SenderTo(*server, std::move(options));
  ASSERT_NE(sender, nullptr);
  const v1::Unit unit = UnitBuilder().Id("user_id", "u-1").Build();
  ASSERT_TRUE(sender->Expose("checkout", unit, "only").ok());
  ASSERT_TRUE(sender->Track(unit, "order_completed", 10).ok());
  EXPECT_TRUE(sender->Flush(absl::Seconds(20)).ok())
      << sender->stats().last_error;
  EXPECT_EQ(sender->stats().sent, 2);
}

TEST_F(ClientTlsTest, EventSenderWithoutTheClientCertificateKeepsItsRecords) {
  std::unique_ptr<ServerProcess> server = StartServer(/*mutual=*/true);
  ASSERT_NE(server, nullptr);
  EventSenderOptions options;
  options.security.tls_ca_file = certs_.ca1.cert;
  options.call_deadline = absl::Seconds(1);
  options.close_timeout = absl::ZeroDuration();
  std::unique_ptr<EventSender> sender = SenderTo(*server, std::move(options));
  ASSERT_NE(sender, nullptr);
  ASSERT_TRUE(
      sender->Track(UnitBuilder().Id("user_id", "u-1").Build(), "signup").ok());
  EXPECT_EQ(sender->Flush(absl::Seconds(2)).code(),
            absl::StatusCode::kDeadlineExceeded);
  const EventSenderStats stats = sender->stats();
  EXPECT_EQ(stats.sent, 0);
  EXPECT_EQ(stats.pending, 1);
  EXPECT_EQ(stats.dropped_invalid + stats.dropped_gave_up, 0);
}

// The checks of real PEM files, before any connection.
TEST_F(ClientTlsTest, AKeyOfAnotherCertificateIsRefused) {
  SecurityOptions security;
  security.tls_cert_file = certs_.ca1.client.cert;
  security.tls_key_file = certs_.ca2.client.key;
  absl::StatusOr<ChannelSecurity> s = ResolveSecurity(security, "--");
  EXPECT_EQ(s.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(
      s.status().message(),
      HasSubstr("is not the key of the certificate in --tls_cert_file"));

  security.tls_key_file = certs_.ca1.client.key;
  s = ResolveSecurity(security, "--");
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_TRUE(s->tls());
}

TEST_F(ClientTlsTest, AnEncryptedKeyIsRefusedWithHowToDecryptIt) {
  const std::string encrypted = dir_.path() + "/encrypted.key";
  std::string err;
  absl::StatusOr<int> code =
      RunProcess({"openssl", "pkey", "-in", certs_.ca1.client.key, "-aes256",
                  "-passout", "pass:secret", "-out", encrypted},
                 nullptr, &err);
  ASSERT_TRUE(code.ok() && *code == 0) << err;
  SecurityOptions security;
  security.tls_cert_file = certs_.ca1.client.cert;
  security.tls_key_file = encrypted;
  absl::StatusOr<ChannelSecurity> s = ResolveSecurity(security, "--");
  EXPECT_EQ(s.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.status().message(), HasSubstr("is an encrypted key"));
  EXPECT_THAT(s.status().message(), HasSubstr("openssl pkey"));
}

// A plaintext loopback server with --auth_tokens_file: "frontend" may
// assign and record, "analyst" may only read results.
class ClientTokenTest : public ::testing::Test {
 protected:
  void SetUp() override {
    unsetenv(kTokenEnv);
    for (std::string* token : {&frontend_, &analyst_, &newcomer_}) {
      absl::StatusOr<std::string> made = MakeToken();
      ASSERT_TRUE(made.ok()) << made.status();
      *token = *made;
    }
    tokens_file_ = dir_.Write("tokens", TokenLines(/*with_newcomer=*/false));
    absl::StatusOr<std::unique_ptr<RedisProcess>> redis = RedisProcess::Start();
    ASSERT_TRUE(redis.ok()) << redis.status();
    redis_ = *std::move(redis);
    absl::StatusOr<std::unique_ptr<ServerProcess>> server =
        ServerProcess::Start(
            dir_.Write("experiments.yaml", abexp::testing::kOneVariantConfig),
            {"--auth_tokens_file=" + tokens_file_,
             "--redis=" + redis_->address()});
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = *std::move(server);
  }

  std::string TokenLines(bool with_newcomer) const {
    std::string lines =
        absl::StrCat("frontend assign,record ", TokenFileHash(frontend_), "\n",
                     "analyst results ", TokenFileHash(analyst_), "\n");
    if (with_newcomer) {
      absl::StrAppend(&lines, "newcomer record ", TokenFileHash(newcomer_),
                      "\n");
    }
    return lines;
  }

  std::unique_ptr<Client> ClientWith(const std::string& token) const {
    ClientOptions options;
    options.target = server_->address();
    options.deadline = absl::Seconds(10);
    options.security.token = token;
    absl::StatusOr<std::unique_ptr<Client>> client =
        Client::Create(std::move(options));
    EXPECT_TRUE(client.ok()) << client.status();
    return client.ok() ? *std::move(client) : nullptr;
  }

  static Assignment AssignOne(const Client& client) {
    absl::StatusOr<Assignment> a =
        client.Assign(UnitBuilder().Id("user_id", "u-1").Build());
    EXPECT_TRUE(a.ok()) << a.status();
    return a.ok() ? *std::move(a) : Assignment::Degraded(a.status());
  }

  TempDir dir_;
  std::string frontend_, analyst_, newcomer_;
  std::string tokens_file_;
  std::unique_ptr<RedisProcess> redis_;
  std::unique_ptr<ServerProcess> server_;
};

TEST_F(ClientTokenTest, ATokenWithTheRoleIsAcceptedFromTheOptionOrTheVariable) {
  std::unique_ptr<Client> client = ClientWith(frontend_);
  ASSERT_NE(client, nullptr);
  const Assignment a = AssignOne(*client);
  EXPECT_FALSE(a.degraded()) << a.error();
  EXPECT_EQ(a.variant("checkout"), "only");
  EXPECT_TRUE(client->auth_error().ok());

  setenv(kTokenEnv, frontend_.c_str(), 1);
  std::unique_ptr<Client> from_env = ClientWith("");
  ASSERT_NE(from_env, nullptr);
  const Assignment b = AssignOne(*from_env);
  EXPECT_FALSE(b.degraded()) << b.error();
}

TEST_F(ClientTokenTest, WithoutATokenAssignDegradesAndAuthErrorSaysWhy) {
  std::unique_ptr<Client> client = ClientWith("");
  ASSERT_NE(client, nullptr);
  const Assignment a = AssignOne(*client);
  EXPECT_TRUE(a.degraded());
  EXPECT_EQ(a.error().code(), absl::StatusCode::kUnauthenticated);
  EXPECT_THAT(a.error().message(), HasSubstr("the client sent no token"));
  EXPECT_EQ(client->auth_error().code(), absl::StatusCode::kUnauthenticated);

  // A token the server does not know.
  std::unique_ptr<Client> unknown = ClientWith(newcomer_);
  ASSERT_NE(unknown, nullptr);
  const Assignment b = AssignOne(*unknown);
  EXPECT_EQ(b.error().code(), absl::StatusCode::kUnauthenticated);
  EXPECT_THAT(b.error().message(),
              HasSubstr("sent the token from "
                        "ClientOptions.security.token; the server does not "
                        "know it"));
  EXPECT_THAT(b.error().message(), Not(HasSubstr(newcomer_)));
}

TEST_F(ClientTokenTest, ATokenWithoutTheRoleDegradesUntilACallSucceeds) {
  std::unique_ptr<Client> client = ClientWith(analyst_);
  ASSERT_NE(client, nullptr);
  const Assignment a = AssignOne(*client);
  EXPECT_TRUE(a.degraded());
  EXPECT_EQ(a.error().code(), absl::StatusCode::kPermissionDenied);
  EXPECT_THAT(a.error().message(), HasSubstr("analyst"));
  EXPECT_THAT(a.error().message(), HasSubstr("assign"));
  EXPECT_EQ(client->auth_error().code(), absl::StatusCode::kPermissionDenied);

  // The analyst may read results: a call that succeeds clears auth_error().
  v1::GetResultsRequest request;
  request.set_experiment_key("checkout");
  absl::StatusOr<v1::GetResultsResponse> results = client->GetResults(request);
  EXPECT_TRUE(results.ok()) << results.status();
  EXPECT_TRUE(client->auth_error().ok()) << client->auth_error();
}

TEST_F(ClientTokenTest, TheEventSenderKeepsRecordsUntilTheServerKnowsTheToken) {
  EventSenderOptions options;
  options.target = server_->address();
  options.security.token = newcomer_;
  options.initial_backoff = absl::Milliseconds(50);
  options.max_backoff = absl::Milliseconds(200);
  absl::StatusOr<std::unique_ptr<EventSender>> sender =
      EventSender::Create(std::move(options));
  ASSERT_TRUE(sender.ok()) << sender.status();
  ASSERT_TRUE((*sender)
                  ->Track(UnitBuilder().Id("user_id", "u-1").Build(), "signup")
                  .ok());
  EXPECT_EQ((*sender)->Flush(absl::Seconds(1)).code(),
            absl::StatusCode::kDeadlineExceeded);
  EventSenderStats stats = (*sender)->stats();
  EXPECT_EQ(stats.last_error.code(), absl::StatusCode::kUnauthenticated);
  EXPECT_EQ(stats.pending, 1);
  EXPECT_EQ(stats.sent, 0);

  // The token's line is added and the server reloads its token file.
  dir_.Write("tokens", TokenLines(/*with_newcomer=*/true));
  ASSERT_TRUE(server_->Signal(SIGHUP).ok());
  ASSERT_TRUE(
      server_->WaitForStderr("token file reloaded", absl::Seconds(20)).ok());
  EXPECT_TRUE((*sender)->Flush(absl::Seconds(20)).ok())
      << (*sender)->stats().last_error;
  stats = (*sender)->stats();
  EXPECT_EQ(stats.sent, 1);
  EXPECT_EQ(stats.dropped_invalid + stats.dropped_gave_up, 0);
}

}  // namespace
}  // namespace abexp
