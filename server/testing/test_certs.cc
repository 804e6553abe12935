#include "server/testing/test_certs.h"

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/support/channel_arguments.h"

namespace abexp::testing {
namespace {

// The openssl configuration: the extensions each kind of certificate gets.
constexpr char kOpensslConfig[] = R"(
[req]
distinguished_name = dn
[dn]
[ca_ext]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
[server_ext]
basicConstraints = CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = DNS:localhost, IP:127.0.0.1
authorityKeyIdentifier = keyid
[client_ext]
basicConstraints = CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = clientAuth
authorityKeyIdentifier = keyid
)";

absl::Status Openssl(std::vector<std::string> args) {
  args.insert(args.begin(), "openssl");
  std::string out, err;
  absl::StatusOr<int> code = RunProcess(args, &out, &err);
  if (!code.ok()) return code.status();
  if (*code != 0) {
    return absl::InternalError(absl::StrCat("`", absl::StrJoin(args, " "),
                                            "` exited with ", *code, ":\n", err,
                                            out));
  }
  return absl::OkStatus();
}

std::string ConfigPath(const TempDir& dir) {
  return absl::StrCat(dir.path(), "/openssl-test.cnf");
}

// A new P-256 key in dir/name.key and a certificate for it, signed by `ca`
// with the extensions of `section`, valid for `days` (negative: ended).
absl::StatusOr<CertAndKey> Sign(const TempDir& dir, const TestCa& ca,
                                const std::string& name,
                                const std::string& subject,
                                const std::string& section, int days) {
  CertAndKey out{absl::StrCat(dir.path(), "/", name, ".pem"),
                 absl::StrCat(dir.path(), "/", name, ".key")};
  const std::string csr = absl::StrCat(dir.path(), "/", name, ".csr");
  if (absl::Status s =
          Openssl({"req", "-new", "-config", ConfigPath(dir), "-newkey", "ec",
                   "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                   "-keyout", out.key, "-out", csr, "-subj", subject});
      !s.ok()) {
    return s;
  }
  if (absl::Status s = Openssl(
          {"x509", "-req", "-in", csr, "-CA", ca.cert, "-CAkey", ca.key,
           "-CAcreateserial", "-CAserial", absl::StrCat(ca.cert, ".srl"),
           "-days", std::to_string(days), "-extfile", ConfigPath(dir),
           "-extensions", section, "-out", out.cert});
      !s.ok()) {
    return s;
  }
  return out;
}

absl::StatusOr<TestCa> MakeCa(const TempDir& dir, const std::string& prefix,
                              const std::string& name) {
  TestCa ca;
  ca.cert = absl::StrCat(dir.path(), "/", prefix, "-ca.pem");
  ca.key = absl::StrCat(dir.path(), "/", prefix, "-ca.key");
  if (absl::Status s = Openssl(
          {"req", "-x509", "-config", ConfigPath(dir), "-extensions", "ca_ext",
           "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
           "-nodes", "-keyout", ca.key, "-out", ca.cert, "-days", "2", "-subj",
           absl::StrCat("/CN=", name)});
      !s.ok()) {
    return s;
  }
  absl::StatusOr<CertAndKey> server =
      Sign(dir, ca, absl::StrCat(prefix, "-server"), "/CN=localhost",
           "server_ext", 2);
  if (!server.ok()) return server.status();
  ca.server = *server;
  absl::StatusOr<CertAndKey> client =
      Sign(dir, ca, absl::StrCat(prefix, "-client"), "/CN=abexp-test-client",
           "client_ext", 2);
  if (!client.ok()) return client.status();
  ca.client = *client;
  return ca;
}

std::string ReadOrDie(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::stringstream text;
  text << f.rdbuf();
  if (!f) {
    std::fprintf(stderr, "cannot read %s\n", path.c_str());
    std::abort();
  }
  return text.str();
}

}  // namespace

absl::StatusOr<TestCertificates> TestCertificates::Create(const TempDir& dir) {
  dir.Write("openssl-test.cnf", kOpensslConfig);
  TestCertificates certs;
  absl::StatusOr<TestCa> ca1 = MakeCa(dir, "ca1", "abexp test CA 1");
  if (!ca1.ok()) return ca1.status();
  certs.ca1 = *ca1;
  absl::StatusOr<TestCa> ca2 = MakeCa(dir, "ca2", "abexp test CA 2");
  if (!ca2.ok()) return ca2.status();
  certs.ca2 = *ca2;
  return certs;
}

absl::StatusOr<CertAndKey> MakeExpiredServerCert(const TempDir& dir,
                                                 const TestCa& ca,
                                                 const std::string& name) {
  return Sign(dir, ca, name, "/CN=localhost", "server_ext", -1);
}

std::shared_ptr<grpc::ChannelCredentials> TlsCredentials(
    const std::string& ca_file, const CertAndKey& client) {
  grpc::SslCredentialsOptions options;
  options.pem_root_certs = ReadOrDie(ca_file);
  if (!client.cert.empty()) {
    options.pem_cert_chain = ReadOrDie(client.cert);
    options.pem_private_key = ReadOrDie(client.key);
  }
  return grpc::SslCredentials(options);
}

std::shared_ptr<grpc::Channel> NewPrivateChannel(
    const std::string& address,
    const std::shared_ptr<grpc::ChannelCredentials>& credentials) {
  grpc::ChannelArguments args;
  args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
  return grpc::CreateCustomChannel(address, credentials, args);
}

}  // namespace abexp::testing
