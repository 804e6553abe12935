// TLS on a server's gRPC port, with certificate rotation without a restart.
//
// gRPC 1.51 takes rotating certificates only from a
// grpc::experimental::FileWatcherCertificateProvider, which re-reads files
// every second and cannot be told new ones from code. ServerTls therefore
// checks the user's files with OpenSSL itself (they parse, the key belongs
// to the certificate), and only then writes what gRPC serves into a private
// directory of its own (mode 0700, removed by the destructor):
//
//   identity.pem   the private key and the certificate chain, in ONE file
//                  that the provider reads as both key and certificate
//                  (OpenSSL's PEM readers skip blocks of other types), so
//                  gRPC never pairs a key of one generation with a
//                  certificate of another;
//   client_ca.pem  the CA certificates that sign client certificates (mTLS).
//
// Each is replaced atomically (a temporary file, fsync, rename, fsync of the
// directory), and each generation gets a later modification time (in whole
// seconds) than the one before: gRPC reads the file twice, once as the key and
// once as the certificate, and rereads both when the time changed in between.
// A set that fails the checks is never written, so gRPC keeps serving the
// last good one. New connections get the new certificate within about a
// second of Reload(); open connections keep theirs.
//
// Thread safety: Reload() and Describe() may be called from any thread, but
// not concurrently with each other. The credentials may be used by any number
// of servers.
#ifndef ABEXP_SERVER_SERVER_TLS_H_
#define ABEXP_SERVER_SERVER_TLS_H_

#include <ctime>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "grpcpp/security/server_credentials.h"
#include "grpcpp/security/tls_certificate_provider.h"

namespace abexp {

// The user's files, as given by the --tls_* flags.
struct TlsFiles {
  // PEM certificate chain, the server's own certificate first. Default: none.
  std::string cert_file;
  // PEM private key of that certificate, unencrypted. Default: none.
  std::string key_file;
  // PEM CA certificate(s); when set, clients must present a certificate
  // signed by one of them (mTLS). Default: none.
  std::string client_ca_file;

  // True when any file is set, i.e. the server is to use TLS.
  bool enabled() const {
    return !cert_file.empty() || !key_file.empty() || !client_ca_file.empty();
  }
};

// INVALID_ARGUMENT, naming the flags and what to pass, unless the
// combination is one the server can use: none of the three, cert and key, or
// all three.
absl::Status CheckTlsFlags(const TlsFiles& files);

class ServerTls {
 public:
  // Validates `files` and makes the private directory under `private_parent`
  // (Default: $TMPDIR, else /tmp). INVALID_ARGUMENT for a bad flag
  // combination (CheckTlsFlags); FAILED_PRECONDITION naming the file and
  // what to fix when a file cannot be read or parsed, or the key does not
  // belong to the certificate; INTERNAL when the private directory cannot
  // be made or written.
  static absl::StatusOr<std::unique_ptr<ServerTls>> Create(
      const TlsFiles& files, const std::string& private_parent = "");

  ServerTls(const ServerTls&) = delete;
  ServerTls& operator=(const ServerTls&) = delete;
  // Removes the private directory.
  ~ServerTls();

  // The credentials for grpc::ServerBuilder::AddListeningPort: TLS with the
  // files' certificate, requiring client certificates when a client CA file
  // is set.
  std::shared_ptr<grpc::ServerCredentials> credentials() const {
    return credentials_;
  }

  // Re-reads the files given to Create(). When they pass the same checks as
  // at start, they replace the served ones (new connections get them within
  // about a second); returns whether they differ from those. Otherwise
  // returns the error, as Create() does, and the served set stays as it was.
  absl::StatusOr<bool> Reload();

  // The certificate served, for the log: subject, issuer, expiry, and
  // whether client certificates are required.
  std::string Describe() const { return served_.description; }

  // Warnings about the served set (a certificate expired or not yet valid);
  // empty when there is nothing to say. Updated by Reload().
  const std::vector<std::string>& warnings() const { return served_.warnings; }

  // Where the served files are (for tests and the log).
  const std::string& private_dir() const { return private_dir_; }

 private:
  // A validated set of files, encoded as gRPC will read them.
  struct Validated {
    std::string identity_pem;   // key, then the certificate chain
    std::string client_ca_pem;  // "" without mTLS
    std::string description;
    std::vector<std::string> warnings;
  };

  ServerTls(TlsFiles files, std::string private_dir);

  static absl::StatusOr<Validated> Validate(const TlsFiles& files);
  // Writes the set into the private directory, each file replaced
  // atomically, and makes it the served one.
  absl::Status Install(Validated set);

  const TlsFiles files_;
  const std::string private_dir_;
  // The modification time given to the last generation written (seconds).
  std::time_t last_mtime_ = 0;
  // The set written last.
  Validated served_;
  std::shared_ptr<grpc::experimental::FileWatcherCertificateProvider> provider_;
  std::shared_ptr<grpc::ServerCredentials> credentials_;
};

// True when `listen_address` (HOST:PORT, [V6]:PORT or unix:PATH) can only be
// reached from this machine: 127.0.0.0/8, ::1, localhost or a Unix socket.
bool IsLoopbackListenAddress(absl::string_view listen_address);

}  // namespace abexp

#endif  // ABEXP_SERVER_SERVER_TLS_H_
