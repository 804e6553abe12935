#include "client/credentials.h"

#include <cstdlib>
#include <map>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/testing/server_process.h"

namespace abexp {
namespace {

using ::abexp::testing::TempDir;
using ::testing::HasSubstr;
using ::testing::Not;

const std::string kToken1 = "abexp_" + std::string(43, 'a');
const std::string kToken2 = "abexp_" + std::string(43, 'b');

// An environment of its own, so tests do not depend on the real one.
EnvLookup FakeEnv(std::map<std::string, std::string> vars) {
  auto shared =
      std::make_shared<std::map<std::string, std::string>>(std::move(vars));
  return [shared](const char* name) -> const char* {
    auto it = shared->find(name);
    return it == shared->end() ? nullptr : it->second.c_str();
  };
}

TEST(Credentials, NothingSetMeansPlaintextWithoutAToken) {
  absl::StatusOr<ChannelSecurity> s =
      ResolveSecurity(SecurityOptions(), "--", FakeEnv({}));
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_FALSE(s->tls());
  EXPECT_FALSE(s->has_token());
  EXPECT_NE(s->credentials(), nullptr);
}

TEST(Credentials, TheTokenComesFromTheVariableWhenTheOptionIsEmpty) {
  absl::StatusOr<ChannelSecurity> s =
      ResolveSecurity(SecurityOptions(), "--", FakeEnv({{kTokenEnv, kToken1}}));
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_TRUE(s->has_token());
  EXPECT_EQ(s->token_source(), "ABEXP_TOKEN");
}

TEST(Credentials, ASetOptionWinsOverItsVariable) {
  SecurityOptions options;
  options.token = kToken2;
  // The variable's value is malformed: it must not even be looked at.
  absl::StatusOr<ChannelSecurity> s =
      ResolveSecurity(options, "--", FakeEnv({{kTokenEnv, "not-a-token"}}));
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_EQ(s->token_source(), "--token");

  options = SecurityOptions();
  options.tls_ca_file = "/nonexistent/option-ca.pem";
  s = ResolveSecurity(options, "--",
                      FakeEnv({{kTlsCaFileEnv, "/nonexistent/env-ca.pem"}}));
  EXPECT_THAT(s.status().message(),
              HasSubstr("--tls_ca_file '/nonexistent/option-ca.pem'"));
}

TEST(Credentials, UseEnvironmentFalseIgnoresTheVariables) {
  SecurityOptions options;
  options.use_environment = false;
  absl::StatusOr<ChannelSecurity> s = ResolveSecurity(
      options, "--",
      FakeEnv({{kTokenEnv, kToken1}, {kTlsCaFileEnv, "/nonexistent.pem"}}));
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_FALSE(s->has_token());
  EXPECT_FALSE(s->tls());
}

TEST(Credentials, AMalformedTokenNamesItsSourceAndIsNotQuoted) {
  const std::string bad = "abexp_tooshortsecret";
  absl::StatusOr<ChannelSecurity> s =
      ResolveSecurity(SecurityOptions(), "--", FakeEnv({{kTokenEnv, bad}}));
  EXPECT_EQ(s.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.status().message(), HasSubstr("ABEXP_TOKEN is not an abexp"));
  EXPECT_THAT(s.status().message(), Not(HasSubstr("tooshortsecret")));

  SecurityOptions options;
  options.token = bad;
  s = ResolveSecurity(options, "ClientOptions.security.", FakeEnv({}));
  EXPECT_THAT(s.status().message(),
              HasSubstr("ClientOptions.security.token is not an abexp token"));
}

TEST(Credentials, AnUnreadableFileNamesTheVariableAndThePath) {
  absl::StatusOr<ChannelSecurity> s =
      ResolveSecurity(SecurityOptions(), "--",
                      FakeEnv({{kTlsCaFileEnv, "/nonexistent/ca.pem"}}));
  EXPECT_EQ(s.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.status().message(),
              HasSubstr("ABEXP_TLS_CA_FILE '/nonexistent/ca.pem' cannot be "
                        "read: No such file or directory"));
}

TEST(Credentials, AFileWithoutACertificateIsRefused) {
  TempDir dir;
  SecurityOptions options;
  options.tls_ca_file = dir.Write("ca.pem", "not a certificate\n");
  absl::StatusOr<ChannelSecurity> s =
      ResolveSecurity(options, "--", FakeEnv({}));
  EXPECT_EQ(s.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.status().message(), HasSubstr("--tls_ca_file '"));
  EXPECT_THAT(s.status().message(), HasSubstr("holds no PEM certificate"));
}

TEST(Credentials, ACertificateNeedsItsKeyAndTheKeyItsCertificate) {
  SecurityOptions options;
  options.tls_cert_file = "/some/client.pem";
  absl::StatusOr<ChannelSecurity> s =
      ResolveSecurity(options, "--", FakeEnv({}));
  EXPECT_EQ(s.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.status().message(),
              HasSubstr("--tls_cert_file '/some/client.pem' is set but "
                        "--tls_key_file is not (nor ABEXP_TLS_KEY_FILE)"));

  s = ResolveSecurity(SecurityOptions(), "--",
                      FakeEnv({{kTlsKeyFileEnv, "/some/client.key"}}));
  EXPECT_THAT(s.status().message(),
              HasSubstr("ABEXP_TLS_KEY_FILE '/some/client.key' is set but "
                        "--tls_cert_file is not (nor ABEXP_TLS_CERT_FILE)"));
}

TEST(Credentials, TlsAloneUsesTheSystemRoots) {
  SecurityOptions options;
  options.tls = true;
  absl::StatusOr<ChannelSecurity> s =
      ResolveSecurity(options, "--", FakeEnv({}));
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_TRUE(s->tls());
}

TEST(Credentials, OwnCredentialsTakeOnlyTheToken) {
  SecurityOptions options;
  options.tls_ca_file = "/some/ca.pem";
  absl::StatusOr<ChannelSecurity> s = ResolveSecurityUnless(
      true, "ClientOptions.credentials", options, "ClientOptions.security.");
  EXPECT_EQ(s.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.status().message(),
              HasSubstr("ClientOptions.credentials and the TLS options"));

  // The ABEXP_TLS_* variables do not apply to a channel the caller
  // secured; ABEXP_TOKEN does.
  ASSERT_EQ(setenv(kTlsCaFileEnv, "/nonexistent/ca.pem", 1), 0);
  ASSERT_EQ(setenv(kTokenEnv, kToken1.c_str(), 1), 0);
  s = ResolveSecurityUnless(true, "ClientOptions.credentials",
                            SecurityOptions(), "ClientOptions.security.");
  unsetenv(kTlsCaFileEnv);
  unsetenv(kTokenEnv);
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_FALSE(s->tls());
  EXPECT_EQ(s->token_source(), "ABEXP_TOKEN");
}

TEST(Credentials, AuthErrorNotesSayWhetherATokenWasSent) {
  absl::StatusOr<ChannelSecurity> none =
      ResolveSecurity(SecurityOptions(), "--", FakeEnv({}));
  absl::StatusOr<ChannelSecurity> some =
      ResolveSecurity(SecurityOptions(), "--", FakeEnv({{kTokenEnv, kToken1}}));
  ASSERT_TRUE(none.ok() && some.ok());
  EXPECT_THAT(AuthErrorNote(absl::StatusCode::kUnauthenticated, *none),
              HasSubstr("the client sent no token"));
  EXPECT_THAT(AuthErrorNote(absl::StatusCode::kUnauthenticated, *some),
              HasSubstr("sent the token from ABEXP_TOKEN; the server does "
                        "not know it"));
  EXPECT_THAT(AuthErrorNote(absl::StatusCode::kPermissionDenied, *some),
              HasSubstr("lacks the role the server names"));
  EXPECT_EQ(AuthErrorNote(absl::StatusCode::kUnavailable, *some), "");
}

}  // namespace
}  // namespace abexp
