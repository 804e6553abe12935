// Certificates for TLS tests, made by the real `openssl` command line:
// two independent CAs, each with a server certificate for localhost and
// 127.0.0.1 and a client certificate. All keys are unencrypted P-256 keys in
// PEM; all certificates are valid for two days from now.
//
//   abexp::testing::TempDir dir;
//   absl::StatusOr<TestCertificates> certs = TestCertificates::Create(dir);
//   ServerProcess::Start(config, {"--tls_cert_file=" + certs->ca1.server.cert,
//                                 "--tls_key_file=" + certs->ca1.server.key},
//                        TlsCredentials(certs->ca1.cert));
//
// Thread safety: the functions here are thread-safe.
#ifndef ABEXP_SERVER_TESTING_TEST_CERTS_H_
#define ABEXP_SERVER_TESTING_TEST_CERTS_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "grpcpp/channel.h"
#include "grpcpp/security/credentials.h"
#include "server/testing/server_process.h"

namespace abexp::testing {

// Paths of a PEM certificate and of its private key.
struct CertAndKey {
  std::string cert;
  std::string key;
};

// A CA and what it signed.
struct TestCa {
  std::string cert;  // the CA's self-signed certificate
  std::string key;   // the CA's key, to sign more (e.g. MakeExpiredServerCert)
  // CN=localhost, subjectAltName DNS:localhost and IP:127.0.0.1, serverAuth.
  CertAndKey server;
  // CN=abexp-test-client, clientAuth.
  CertAndKey client;
};

struct TestCertificates {
  // Makes both CAs and their certificates in `dir` (file names start with
  // "ca1-" and "ca2-"). An error holds the failing openssl command's output.
  static absl::StatusOr<TestCertificates> Create(const TempDir& dir);

  TestCa ca1;  // "abexp test CA 1"
  TestCa ca2;  // "abexp test CA 2", unrelated to ca1
};

// Signs a server certificate for localhost with `ca` whose validity ended a
// day ago, in dir/`name`.pem (its key in dir/`name`.key).
absl::StatusOr<CertAndKey> MakeExpiredServerCert(const TempDir& dir,
                                                 const TestCa& ca,
                                                 const std::string& name);

// TLS channel credentials that trust only the CA certificate(s) in
// `ca_file`, and present the client certificate `client` when it is given.
// Aborts the test binary when a file cannot be read.
std::shared_ptr<grpc::ChannelCredentials> TlsCredentials(
    const std::string& ca_file, const CertAndKey& client = {});

// A channel to `address` that opens its own connection rather than sharing
// one with an earlier channel of equal arguments (gRPC's global subchannel
// pool), so that each call through a new channel makes a new TLS handshake.
std::shared_ptr<grpc::Channel> NewPrivateChannel(
    const std::string& address,
    const std::shared_ptr<grpc::ChannelCredentials>& credentials);

}  // namespace abexp::testing

#endif  // ABEXP_SERVER_TESTING_TEST_CERTS_H_
