// TLS on a real abexp-server: who can connect with which certificates, mTLS,
// certificate rotation on SIGHUP, the start-up errors of the --tls_* flags,
// and the warning about plain text beyond loopback. Certificates come from
// the openssl command line (server/testing/test_certs.h).
#include <signal.h>

#include <chrono>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "abexp/v1/assignment.grpc.pb.h"
#include "abexp/v1/assignment.pb.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "server/testing/server_process.h"
#include "server/testing/test_certs.h"

namespace abexp {
namespace {

using ::abexp::testing::CertAndKey;
using ::abexp::testing::NewPrivateChannel;
using ::abexp::testing::RunProcess;
using ::abexp::testing::ServerProcess;
using ::abexp::testing::TempDir;
using ::abexp::testing::TestCertificates;
using ::abexp::testing::TlsCredentials;
using ::testing::HasSubstr;
using ::testing::Not;

constexpr char kConfig[] = R"yaml(
experiments:
  - key: checkout
    status: running
    variants:
      - key: only
        weight: 1
)yaml";

// Assign for one unit on `channel`.
grpc::Status AssignOn(const std::shared_ptr<grpc::Channel>& channel,
                      v1::AssignResponse* response = nullptr) {
  std::unique_ptr<v1::AssignmentService::Stub> stub =
      v1::AssignmentService::NewStub(channel);
  v1::AssignRequest request;
  (*request.mutable_unit()->mutable_ids())["user_id"] = "u-1";
  v1::AssignResponse ignored;
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() +
                       std::chrono::seconds(10));
  return stub->Assign(&context, request,
                      response != nullptr ? response : &ignored);
}

// Assign for one unit over a new connection made with `credentials`.
grpc::Status AssignOnce(
    const std::string& address,
    const std::shared_ptr<grpc::ChannelCredentials>& credentials,
    v1::AssignResponse* response = nullptr) {
  return AssignOn(NewPrivateChannel(address, credentials), response);
}

std::string ReadFile(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::stringstream text;
  text << f.rdbuf();
  EXPECT_TRUE(f.good()) << "cannot read " << path;
  return text.str();
}

class TlsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    absl::StatusOr<TestCertificates> certs = TestCertificates::Create(dir_);
    ASSERT_TRUE(certs.ok()) << certs.status();
    certs_ = *certs;
    config_ = dir_.Write("experiments.yaml", kConfig);
    served_ = {absl::StrCat(dir_.path(), "/served-cert.pem"),
               absl::StrCat(dir_.path(), "/served-key.pem")};
  }

  // Copies `source` to the files served_ names, atomically.
  void Serve(const CertAndKey& source) const {
    dir_.Write("served-cert.pem", ReadFile(source.cert));
    dir_.Write("served-key.pem", ReadFile(source.key));
  }

  // Starts a server on served_, a copy of `source`, that the test can then
  // replace; the harness trusts `ca`.
  absl::StatusOr<std::unique_ptr<ServerProcess>> StartWithServedFiles(
      const CertAndKey& source, const std::string& ca) const {
    Serve(source);
    return ServerProcess::Start(config_, TlsFlags(served_), TlsCredentials(ca));
  }

  // The flags that serve `server` (and require client certificates of
  // `client_ca` when it is given).
  static std::vector<std::string> TlsFlags(const CertAndKey& server,
                                           const std::string& client_ca = "") {
    std::vector<std::string> flags = {
        absl::StrCat("--tls_cert_file=", server.cert),
        absl::StrCat("--tls_key_file=", server.key)};
    if (!client_ca.empty()) {
      flags.push_back(absl::StrCat("--tls_client_ca_file=", client_ca));
    }
    return flags;
  }

  TempDir dir_;
  TestCertificates certs_;
  std::string config_;
  // The files a server of StartWithServedFiles() serves.
  CertAndKey served_;
};

TEST_F(TlsTest, AClientTrustingTheServersCaIsServed) {
  absl::StatusOr<std::unique_ptr<ServerProcess>> server = ServerProcess::Start(
      config_, TlsFlags(certs_.ca1.server), TlsCredentials(certs_.ca1.cert));
  ASSERT_TRUE(server.ok()) << server.status();

  v1::AssignResponse response;
  grpc::Status s = AssignOnce((*server)->address(),
                              TlsCredentials(certs_.ca1.cert), &response);
  ASSERT_TRUE(s.ok()) << s.error_message();
  ASSERT_EQ(response.assignments_size(), 1);
  EXPECT_EQ(response.assignments(0).variant_key(), "only");
  EXPECT_THAT(
      (*server)->Stderr(),
      HasSubstr("serving TLS: subject=\"CN=localhost\" issuer=\"CN=abexp test "
                "CA 1\""));
}

TEST_F(TlsTest, PlaintextClientsAndClientsTrustingAnotherCaCannotConnect) {
  absl::StatusOr<std::unique_ptr<ServerProcess>> server = ServerProcess::Start(
      config_, TlsFlags(certs_.ca1.server), TlsCredentials(certs_.ca1.cert));
  ASSERT_TRUE(server.ok()) << server.status();

  EXPECT_EQ(AssignOnce((*server)->address(), grpc::InsecureChannelCredentials())
                .error_code(),
            grpc::StatusCode::UNAVAILABLE);
  EXPECT_EQ(AssignOnce((*server)->address(), TlsCredentials(certs_.ca2.cert))
                .error_code(),
            grpc::StatusCode::UNAVAILABLE);
}

TEST_F(TlsTest, MutualTlsServesOnlyClientsWithACertificateOfTheClientCa) {
  absl::StatusOr<std::unique_ptr<ServerProcess>> server = ServerProcess::Start(
      config_, TlsFlags(certs_.ca1.server, certs_.ca1.cert),
      TlsCredentials(certs_.ca1.cert, certs_.ca1.client));
  ASSERT_TRUE(server.ok()) << server.status();
  const std::string address = (*server)->address();

  grpc::Status with_right_cert =
      AssignOnce(address, TlsCredentials(certs_.ca1.cert, certs_.ca1.client));
  EXPECT_TRUE(with_right_cert.ok()) << with_right_cert.error_message();
  EXPECT_EQ(AssignOnce(address, TlsCredentials(certs_.ca1.cert)).error_code(),
            grpc::StatusCode::UNAVAILABLE)
      << "a client without a certificate was served";
  EXPECT_EQ(
      AssignOnce(address, TlsCredentials(certs_.ca1.cert, certs_.ca2.client))
          .error_code(),
      grpc::StatusCode::UNAVAILABLE)
      << "a client with a certificate of another CA was served";
  EXPECT_THAT((*server)->Stderr(),
              HasSubstr("client certificates required, signed by 1 CA(s)"));
}

TEST_F(TlsTest, SighupRotatesToTheNewCertificateForNewConnections) {
  absl::StatusOr<std::unique_ptr<ServerProcess>> server =
      StartWithServedFiles(certs_.ca1.server, certs_.ca1.cert);
  ASSERT_TRUE(server.ok()) << server.status();
  const std::string address = (*server)->address();
  // A connection made before the rotation.
  std::shared_ptr<grpc::Channel> before =
      NewPrivateChannel(address, TlsCredentials(certs_.ca1.cert));
  ASSERT_TRUE(AssignOn(before).ok());
  ASSERT_EQ(AssignOnce(address, TlsCredentials(certs_.ca2.cert)).error_code(),
            grpc::StatusCode::UNAVAILABLE);

  Serve(certs_.ca2.server);
  ASSERT_TRUE((*server)->Signal(SIGHUP).ok());
  ASSERT_TRUE((*server)
                  ->WaitForStderr("TLS files reloaded; new connections get "
                                  "subject=\"CN=localhost\" issuer=\"CN=abexp "
                                  "test CA 2\"",
                                  absl::Seconds(30))
                  .ok())
      << (*server)->Stderr();

  // gRPC picks the new files up within its refresh interval.
  const absl::Time deadline = absl::Now() + absl::Seconds(30);
  grpc::Status with_ca2;
  do {
    with_ca2 = AssignOnce(address, TlsCredentials(certs_.ca2.cert));
  } while (!with_ca2.ok() && absl::Now() < deadline);
  ASSERT_TRUE(with_ca2.ok()) << "a client trusting CA 2 is still refused: "
                             << with_ca2.error_message();
  EXPECT_EQ(AssignOnce(address, TlsCredentials(certs_.ca1.cert)).error_code(),
            grpc::StatusCode::UNAVAILABLE)
      << "a new connection still got CA 1's certificate";
  grpc::Status on_old_connection = AssignOn(before);
  EXPECT_TRUE(on_old_connection.ok())
      << "the connection made before the rotation broke: "
      << on_old_connection.error_message();
}

TEST_F(TlsTest, ABadSetOnSighupIsLoggedAndTheServedCertificateKept) {
  absl::StatusOr<std::unique_ptr<ServerProcess>> server =
      StartWithServedFiles(certs_.ca1.server, certs_.ca1.cert);
  ASSERT_TRUE(server.ok()) << server.status();
  const std::string address = (*server)->address();

  // Garbage instead of the certificate.
  dir_.Write("served-cert.pem", "not a certificate\n");
  ASSERT_TRUE((*server)->Signal(SIGHUP).ok());
  ASSERT_TRUE(
      (*server)->WaitForStderr("TLS reload failed", absl::Seconds(30)).ok());
  EXPECT_THAT((*server)->Stderr(),
              HasSubstr(absl::StrCat("--tls_cert_file=", served_.cert,
                                     " holds no PEM certificate")));
  grpc::Status after_garbage =
      AssignOnce(address, TlsCredentials(certs_.ca1.cert));
  EXPECT_TRUE(after_garbage.ok()) << after_garbage.error_message();

  // CA 2's certificate with CA 1's key.
  dir_.Write("served-cert.pem", ReadFile(certs_.ca2.server.cert));
  ASSERT_TRUE((*server)->Signal(SIGHUP).ok());
  ASSERT_TRUE((*server)
                  ->WaitForStderr("TLS reload failed", absl::Seconds(30),
                                  /*occurrences=*/2)
                  .ok());
  EXPECT_THAT(
      (*server)->Stderr(),
      HasSubstr(absl::StrCat("the private key in --tls_key_file=", served_.key,
                             " does not belong to the certificate")));
  grpc::Status after_mismatch =
      AssignOnce(address, TlsCredentials(certs_.ca1.cert));
  EXPECT_TRUE(after_mismatch.ok()) << after_mismatch.error_message();
  EXPECT_THAT((*server)->Stderr(),
              HasSubstr("keeping the certificate served: "
                        "subject=\"CN=localhost\" issuer=\"CN=abexp test CA "
                        "1\""));
}

TEST_F(TlsTest, AnExpiredCertificateIsServedWithAWarning) {
  absl::StatusOr<std::unique_ptr<ServerProcess>> server =
      StartWithServedFiles(certs_.ca1.server, certs_.ca1.cert);
  ASSERT_TRUE(server.ok()) << server.status();
  EXPECT_THAT((*server)->Stderr(), Not(HasSubstr("expired")));

  // (Clients refuse an expired certificate, so the server could not be
  // started with one through the harness, which waits for SERVING.)
  absl::StatusOr<CertAndKey> expired =
      MakeExpiredServerCert(dir_, certs_.ca1, "expired");
  ASSERT_TRUE(expired.ok()) << expired.status();
  Serve(*expired);
  ASSERT_TRUE((*server)->Signal(SIGHUP).ok());
  EXPECT_TRUE((*server)
                  ->WaitForStderr(absl::StrCat("warning: the certificate in "
                                               "--tls_cert_file=",
                                               served_.cert, " expired on "),
                                  absl::Seconds(30))
                  .ok());
  EXPECT_TRUE(
      (*server)->WaitForStderr("TLS files reloaded", absl::Seconds(30)).ok());
}

// Runs abexp-server with `args` and expects it to exit 1 with `message` on
// stderr, without listening.
void ExpectStartFails(const std::vector<std::string>& args,
                      const std::string& message) {
  TempDir spool;
  std::vector<std::string> argv = {
      ABEXP_SERVER_BIN, "--listen=127.0.0.1:0",
      absl::StrCat("--spool_dir=", spool.path(), "/spool")};
  argv.insert(argv.end(), args.begin(), args.end());
  std::string out, err;
  absl::StatusOr<int> code = RunProcess(argv, &out, &err, absl::Seconds(30));
  ASSERT_TRUE(code.ok()) << code.status();
  EXPECT_EQ(*code, 1) << err;
  EXPECT_THAT(err, HasSubstr(message));
  EXPECT_THAT(out, Not(HasSubstr("listening on")));
}

TEST_F(TlsTest, EachUnusableFlagSetStopsTheStartWithItsReason) {
  const std::string config = absl::StrCat("--config=", config_);
  const std::string cert =
      absl::StrCat("--tls_cert_file=", certs_.ca1.server.cert);
  const std::string key =
      absl::StrCat("--tls_key_file=", certs_.ca1.server.key);
  const std::string client_ca =
      absl::StrCat("--tls_client_ca_file=", certs_.ca1.cert);
  ExpectStartFails({config, cert},
                   "--tls_cert_file is set but --tls_key_file is not");
  ExpectStartFails({config, key},
                   "--tls_key_file is set but --tls_cert_file is not");
  ExpectStartFails({config, client_ca},
                   "--tls_client_ca_file needs --tls_cert_file and "
                   "--tls_key_file");

  const std::string missing = absl::StrCat(dir_.path(), "/missing.pem");
  ExpectStartFails({config, absl::StrCat("--tls_cert_file=", missing), key},
                   absl::StrCat("cannot read --tls_cert_file=", missing,
                                ": No such file or directory"));
  const std::string garbage = dir_.Write("garbage.pem", "garbage\n");
  ExpectStartFails(
      {config, absl::StrCat("--tls_cert_file=", garbage), key},
      absl::StrCat("--tls_cert_file=", garbage, " holds no PEM certificate"));
  ExpectStartFails({config, cert, absl::StrCat("--tls_key_file=", garbage)},
                   absl::StrCat("--tls_key_file=", garbage,
                                " holds no private key that can be parsed"));
  ExpectStartFails(
      {config, cert, absl::StrCat("--tls_key_file=", certs_.ca2.server.key)},
      absl::StrCat("the private key in --tls_key_file=", certs_.ca2.server.key,
                   " does not belong to the certificate in --tls_cert_file=",
                   certs_.ca1.server.cert));
  // A key where the client CA's certificates should be.
  ExpectStartFails({config, cert, key,
                    absl::StrCat("--tls_client_ca_file=", certs_.ca1.key)},
                   absl::StrCat("--tls_client_ca_file=", certs_.ca1.key,
                                " holds no PEM certificate"));

  const std::string encrypted = absl::StrCat(dir_.path(), "/encrypted.key");
  absl::StatusOr<int> made =
      RunProcess({"openssl", "pkey", "-in", certs_.ca1.server.key, "-aes256",
                  "-passout", "pass:secret", "-out", encrypted},
                 nullptr, nullptr);
  ASSERT_TRUE(made.ok() && *made == 0);
  ExpectStartFails({config, cert, absl::StrCat("--tls_key_file=", encrypted)},
                   "holds an encrypted private key");
}

TEST_F(TlsTest, PlainTextBeyondLoopbackIsWarnedAbout) {
  absl::StatusOr<std::unique_ptr<ServerProcess>> server =
      ServerProcess::Start(config_, {"--listen=0.0.0.0:0"});
  ASSERT_TRUE(server.ok()) << server.status();
  EXPECT_TRUE(
      (*server)
          ->WaitForStderr(
              absl::StrCat("warning: listening on ", (*server)->address(),
                           " in plain text: anyone on the network can read "
                           "and send its traffic; pass --tls_cert_file and "
                           "--tls_key_file"),
              absl::Seconds(30))
          .ok());
}

TEST_F(TlsTest, PlainTextOnLoopbackIsNotWarnedAbout) {
  absl::StatusOr<std::unique_ptr<ServerProcess>> server =
      ServerProcess::Start(config_, {"--listen=127.0.0.1:0"});
  ASSERT_TRUE(server.ok()) << server.status();
  // Logged after the point where the warning would be.
  ASSERT_TRUE((*server)
                  ->WaitForStderr("abexp-server: serving ", absl::Seconds(30))
                  .ok());
  EXPECT_THAT((*server)->Stderr(), Not(HasSubstr("plain text")));
}

}  // namespace
}  // namespace abexp
