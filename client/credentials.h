// The security of a client's channel to abexp-server, in one place: TLS
// (the server verified against a CA, optionally with a client certificate
// for mutual TLS) and the access token sent on every call. The C++ client,
// the event sender, the `abexp` CLI and abexp-loadgen all build their
// channels with it.
//
//   abexp::SecurityOptions options;
//   options.tls_ca_file = "/etc/abexp/ca.pem";
//   absl::StatusOr<abexp::ChannelSecurity> security =
//       abexp::ResolveSecurity(options, "SecurityOptions.");
//   if (!security.ok()) { /* the message names the option or variable */ }
//   auto channel = grpc::CreateChannel(target, security->credentials());
//   grpc::ClientContext context;
//   security->Apply(&context);  // before each call
//
// Environment variables, read for each option left empty (a set option
// wins over its variable): ABEXP_TLS_CA_FILE, ABEXP_TLS_CERT_FILE,
// ABEXP_TLS_KEY_FILE, ABEXP_TOKEN.
//
// The token travels as `authorization: Bearer <token>` metadata added to
// each call's ClientContext (not as gRPC call credentials, which gRPC
// refuses to send without TLS): it works over TLS and over plaintext alike,
// and costs one metadata entry per call. Without TLS the token crosses the
// network in the clear: use plaintext only on loopback or a network you
// trust.
//
// Thread-safe: a ChannelSecurity is immutable; Apply may be called from any
// number of threads at once.
#ifndef ABEXP_CLIENT_CREDENTIALS_H_
#define ABEXP_CLIENT_CREDENTIALS_H_

#include <grpcpp/grpcpp.h>

#include <functional>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace abexp {

// The environment variables, one per option.
inline constexpr char kTlsCaFileEnv[] = "ABEXP_TLS_CA_FILE";
inline constexpr char kTlsCertFileEnv[] = "ABEXP_TLS_CERT_FILE";
inline constexpr char kTlsKeyFileEnv[] = "ABEXP_TLS_KEY_FILE";
inline constexpr char kTokenEnv[] = "ABEXP_TOKEN";

struct SecurityOptions {
  // PEM file of the CA certificate(s) that sign the server's certificate
  // (abexp-server --tls_cert_file). Set: TLS, verifying the server against
  // these CAs only. Variable: ABEXP_TLS_CA_FILE. Default: empty.
  std::string tls_ca_file;

  // PEM certificate and unencrypted PEM private key this client presents to
  // the server, for mutual TLS (a server started with --tls_client_ca_file
  // requires one its CA signed). Both or neither; they turn TLS on, with the
  // system's root CAs when tls_ca_file is empty. Variables:
  // ABEXP_TLS_CERT_FILE, ABEXP_TLS_KEY_FILE. Default: empty.
  std::string tls_cert_file;
  std::string tls_key_file;

  // TLS verified against the system's root CAs, for a server whose
  // certificate a public CA signed. Implied by any of the files above.
  // Default: false (plaintext, unless a file is set).
  bool tls = false;

  // The access token (see client/token.h; `abexp token create` makes one),
  // sent on every call as `authorization: Bearer <token>`. Needed by a
  // server started with --auth_tokens_file. Variable: ABEXP_TOKEN.
  // Default: empty (no token).
  std::string token;

  // Read the variables above for options left empty. Default: true.
  bool use_environment = true;
};

class ChannelSecurity;

// Looks up an environment variable: its value, or null when it is unset.
// Default: std::getenv.
using EnvLookup = std::function<const char*(const char*)>;

// Resolves `options` (and, for options left empty, the environment) into
// credentials and a token. Reads and checks the PEM files: each must be
// readable and hold what its option says, the key must be unencrypted and
// belong to the certificate. INVALID_ARGUMENT, naming the option as
// `option_prefix` + its name (e.g. "--tls_cert_file" with prefix "--") or
// the variable it came from and saying how to fix it, for an unreadable or
// wrong file, a certificate without its key (or the reverse), or a token
// not of the form client/token.h describes. Never quotes the token.
absl::StatusOr<ChannelSecurity> ResolveSecurity(
    const SecurityOptions& options, absl::string_view option_prefix,
    const EnvLookup& getenv = nullptr);

// As ResolveSecurity, for a caller that may bring channel credentials (or a
// channel) of its own: when `own_credentials` is true, resolves only the
// token, leaves credentials() plaintext for the caller to replace, does not
// read the ABEXP_TLS_* variables, and refuses TLS options set alongside
// (INVALID_ARGUMENT naming `own_name`, e.g. "ClientOptions.credentials").
absl::StatusOr<ChannelSecurity> ResolveSecurityUnless(
    bool own_credentials, absl::string_view own_name,
    const SecurityOptions& options, absl::string_view option_prefix);

// Resolved security: the channel credentials and the token to attach.
class ChannelSecurity {
 public:
  // Plaintext, no token.
  ChannelSecurity();

  // The credentials to create the channel with.
  const std::shared_ptr<grpc::ChannelCredentials>& credentials() const {
    return credentials_;
  }
  // True when the channel uses TLS.
  bool tls() const { return tls_; }
  // True when calls carry a token.
  bool has_token() const { return !authorization_.empty(); }
  // Where the token came from (e.g. "--token" or "ABEXP_TOKEN"); empty
  // without one. For messages: the token itself is never exposed.
  const std::string& token_source() const { return token_source_; }

  // Adds the token's metadata to `context`; does nothing without a token.
  // REQUIRES: the call on `context` has not started.
  void Apply(grpc::ClientContext* context) const {
    if (!authorization_.empty()) {
      context->AddMetadata("authorization", authorization_);
    }
  }

 private:
  friend absl::StatusOr<ChannelSecurity> ResolveSecurity(const SecurityOptions&,
                                                         absl::string_view,
                                                         const EnvLookup&);
  friend absl::StatusOr<ChannelSecurity> ResolveSecurityUnless(
      bool, absl::string_view, const SecurityOptions&, absl::string_view);

  std::shared_ptr<grpc::ChannelCredentials> credentials_;
  bool tls_ = false;
  std::string authorization_;  // "Bearer <token>", or empty
  std::string token_source_;
};

// What to tell a user whose call failed with `code` while sending
// `security`'s token (or none): for UNAUTHENTICATED whether a token was sent
// and where it came from, for PERMISSION_DENIED that the server's message
// names the missing role; empty for other codes.
std::string AuthErrorNote(absl::StatusCode code,
                          const ChannelSecurity& security);

}  // namespace abexp

#endif  // ABEXP_CLIENT_CREDENTIALS_H_
