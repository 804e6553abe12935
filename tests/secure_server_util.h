// What the client-side TLS and token tests share: a one-experiment config
// and an abexp-server with TLS (or mutual TLS) of server/testing/test_certs.h.
#ifndef ABEXP_TESTS_SECURE_SERVER_UTIL_H_
#define ABEXP_TESTS_SECURE_SERVER_UTIL_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "server/testing/server_process.h"
#include "server/testing/test_certs.h"

namespace abexp::testing {

// One running experiment, "checkout", whose only variant "only" every unit
// with a user_id gets.
inline constexpr char kOneVariantConfig[] = R"yaml(
experiments:
  - key: checkout
    status: running
    variants:
      - key: only
        weight: 1
)yaml";

// Starts abexp-server on `config` with ca1's server certificate and
// `extra_flags`; with `mutual`, it requires client certificates ca1 signed
// (the harness presents ca1's client certificate).
inline absl::StatusOr<std::unique_ptr<ServerProcess>> StartTlsServer(
    const std::string& config, const TestCertificates& certs, bool mutual,
    std::vector<std::string> extra_flags = {}) {
  extra_flags.push_back("--tls_cert_file=" + certs.ca1.server.cert);
  extra_flags.push_back("--tls_key_file=" + certs.ca1.server.key);
  if (mutual) extra_flags.push_back("--tls_client_ca_file=" + certs.ca1.cert);
  return ServerProcess::Start(
      config, extra_flags,
      TlsCredentials(certs.ca1.cert, mutual ? certs.ca1.client : CertAndKey{}));
}

}  // namespace abexp::testing

#endif  // ABEXP_TESTS_SECURE_SERVER_UTIL_H_
