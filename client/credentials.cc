#include "client/credentials.h"

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "client/token.h"

namespace abexp {
namespace {

// A PEM file larger than this is not a certificate or a key.
constexpr std::streamsize kMaxPemBytes = 1 << 20;

struct BioFree {
  void operator()(BIO* b) const { BIO_free(b); }
};
struct X509Free {
  void operator()(X509* x) const { X509_free(x); }
};
struct PkeyFree {
  void operator()(EVP_PKEY* k) const { EVP_PKEY_free(k); }
};
using BioPtr = std::unique_ptr<BIO, BioFree>;
using X509Ptr = std::unique_ptr<X509, X509Free>;
using PkeyPtr = std::unique_ptr<EVP_PKEY, PkeyFree>;

// One option's value and where it came from: "--tls_ca_file" (the prefix
// and the option's name) or the variable, e.g. "ABEXP_TLS_CA_FILE".
struct Setting {
  std::string value;
  std::string source;
  bool set() const { return !value.empty(); }
};

Setting Pick(const std::string& option, absl::string_view prefix,
             absl::string_view name, const char* variable, bool use_env,
             const EnvLookup& getenv) {
  if (!option.empty()) return {option, absl::StrCat(prefix, name)};
  if (use_env) {
    const char* value = getenv ? getenv(variable) : std::getenv(variable);
    if (value != nullptr && *value != '\0') return {value, variable};
  }
  return {};
}

// "--tls_ca_file '/etc/ca.pem'", for messages.
std::string Describe(const Setting& s) {
  return absl::StrCat(s.source, " '", s.value, "'");
}

absl::StatusOr<std::string> ReadPem(const Setting& s) {
  std::ifstream in(s.value, std::ios::binary);
  if (!in) {
    return absl::InvalidArgumentError(
        absl::StrCat(Describe(s), " cannot be read: ", std::strerror(errno),
                     "; pass the path of a readable PEM file"));
  }
  std::string text(kMaxPemBytes + 1, '\0');
  in.read(text.data(), kMaxPemBytes + 1);
  if (in.bad()) {
    return absl::InvalidArgumentError(
        absl::StrCat(Describe(s), " cannot be read: ", std::strerror(errno),
                     "; pass the path of a readable PEM file"));
  }
  if (in.gcount() > kMaxPemBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat(Describe(s),
                     " is over 1 MiB, too large for a PEM certificate or "
                     "key; check the path"));
  }
  text.resize(static_cast<size_t>(in.gcount()));
  return text;
}

BioPtr MemoryBio(const std::string& text) {
  return BioPtr(BIO_new_mem_buf(text.data(), static_cast<int>(text.size())));
}

// Refuses to ask for a passphrase: an encrypted key fails to load instead of
// prompting on the terminal.
int NoPassphrase(char*, int, int, void*) { return 0; }

// The first certificate in `pem`, or null.
X509Ptr FirstCertificate(const std::string& pem) {
  BioPtr bio = MemoryBio(pem);
  X509Ptr cert(PEM_read_bio_X509(bio.get(), nullptr, NoPassphrase, nullptr));
  ERR_clear_error();
  return cert;
}

absl::Status NoCertificate(const Setting& s, absl::string_view what) {
  return absl::InvalidArgumentError(
      absl::StrCat(Describe(s),
                   " holds no PEM certificate (a block starting '-----BEGIN "
                   "CERTIFICATE-----'); pass ",
                   what));
}

// The client certificate and key, checked to belong together.
absl::Status CheckKeyPair(const Setting& cert_file, const std::string& cert_pem,
                          const Setting& key_file, const std::string& key_pem) {
  X509Ptr cert = FirstCertificate(cert_pem);
  if (cert == nullptr) {
    return NoCertificate(cert_file,
                         "this client's certificate, signed by a CA the "
                         "server's --tls_client_ca_file holds");
  }
  BioPtr bio = MemoryBio(key_pem);
  PkeyPtr key(
      PEM_read_bio_PrivateKey(bio.get(), nullptr, NoPassphrase, nullptr));
  ERR_clear_error();
  if (key == nullptr) {
    if (absl::StrContains(key_pem, "ENCRYPTED")) {
      return absl::InvalidArgumentError(absl::StrCat(
          Describe(key_file),
          " is an encrypted key; gRPC needs it unencrypted: write one with "
          "`openssl pkey -in KEY -out KEY.plain` and keep that file "
          "readable by this process only"));
    }
    return absl::InvalidArgumentError(absl::StrCat(
        Describe(key_file),
        " holds no PEM private key (a block starting '-----BEGIN PRIVATE "
        "KEY-----'); pass the key of ",
        Describe(cert_file)));
  }
  const int match = X509_check_private_key(cert.get(), key.get());
  ERR_clear_error();
  if (match != 1) {
    return absl::InvalidArgumentError(absl::StrCat(
        Describe(key_file), " is not the key of the certificate in ",
        Describe(cert_file),
        "; pass the key that was made with that certificate"));
  }
  return absl::OkStatus();
}

}  // namespace

ChannelSecurity::ChannelSecurity()
    : credentials_(grpc::InsecureChannelCredentials()) {}

absl::StatusOr<ChannelSecurity> ResolveSecurity(const SecurityOptions& options,
                                                absl::string_view option_prefix,
                                                const EnvLookup& getenv) {
  ChannelSecurity security;
  const Setting token = Pick(options.token, option_prefix, "token", kTokenEnv,
                             options.use_environment, getenv);
  if (token.set()) {
    if (absl::Status s = CheckTokenForm(token.value, token.source); !s.ok()) {
      return s;
    }
    security.authorization_ = absl::StrCat("Bearer ", token.value);
    security.token_source_ = token.source;
  }
  const bool env = options.use_environment;
  const Setting ca = Pick(options.tls_ca_file, option_prefix, "tls_ca_file",
                          kTlsCaFileEnv, env, getenv);
  const Setting cert = Pick(options.tls_cert_file, option_prefix,
                            "tls_cert_file", kTlsCertFileEnv, env, getenv);
  const Setting key = Pick(options.tls_key_file, option_prefix, "tls_key_file",
                           kTlsKeyFileEnv, env, getenv);
  if (cert.set() != key.set()) {
    const Setting& given = cert.set() ? cert : key;
    const std::string missing = absl::StrCat(
        option_prefix, cert.set() ? "tls_key_file" : "tls_cert_file");
    return absl::InvalidArgumentError(absl::StrCat(
        Describe(given), " is set but ", missing, " is not (nor ",
        cert.set() ? kTlsKeyFileEnv : kTlsCertFileEnv,
        "); a client certificate needs its private key: pass both, or "
        "neither"));
  }
  if (!ca.set() && !cert.set() && !options.tls) return security;

  grpc::SslCredentialsOptions ssl;
  if (ca.set()) {
    absl::StatusOr<std::string> pem = ReadPem(ca);
    if (!pem.ok()) return pem.status();
    if (FirstCertificate(*pem) == nullptr) {
      return NoCertificate(ca,
                           "the CA certificate that signed the server's "
                           "certificate (--tls_cert_file of abexp-server)");
    }
    ssl.pem_root_certs = *std::move(pem);
  }
  if (cert.set()) {
    absl::StatusOr<std::string> cert_pem = ReadPem(cert);
    if (!cert_pem.ok()) return cert_pem.status();
    absl::StatusOr<std::string> key_pem = ReadPem(key);
    if (!key_pem.ok()) return key_pem.status();
    if (absl::Status s = CheckKeyPair(cert, *cert_pem, key, *key_pem);
        !s.ok()) {
      return s;
    }
    ssl.pem_cert_chain = *std::move(cert_pem);
    ssl.pem_private_key = *std::move(key_pem);
  }
  security.credentials_ = grpc::SslCredentials(ssl);
  security.tls_ = true;
  return security;
}

absl::StatusOr<ChannelSecurity> ResolveSecurityUnless(
    bool own_credentials, absl::string_view own_name,
    const SecurityOptions& options, absl::string_view option_prefix) {
  if (!own_credentials) return ResolveSecurity(options, option_prefix);
  if (options.tls || !options.tls_ca_file.empty() ||
      !options.tls_cert_file.empty() || !options.tls_key_file.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(
        own_name, " and the TLS options ", option_prefix,
        "tls* are both set; set one: ", own_name,
        " to bring your own, or the TLS options for abexp to build them"));
  }
  // The token alone: the ABEXP_TLS_* variables must not apply to a channel
  // the caller secured itself.
  const char* token = nullptr;
  if (options.token.empty() && options.use_environment) {
    token = std::getenv(kTokenEnv);
  }
  return ResolveSecurity(options, option_prefix, [token](const char* name) {
    return std::strcmp(name, kTokenEnv) == 0 ? token : nullptr;
  });
}

std::string AuthErrorNote(absl::StatusCode code,
                          const ChannelSecurity& security) {
  if (code == absl::StatusCode::kUnauthenticated) {
    if (!security.has_token()) {
      return "the client sent no token; the server requires one (make one "
             "with `abexp token create`)";
    }
    return absl::StrCat(
        "the client sent the token from ", security.token_source(),
        "; the server does not know it: check that its line (with the "
        "token's sha256) is in the server's --auth_tokens_file and that the "
        "server has reloaded that file (SIGHUP)");
  }
  if (code == absl::StatusCode::kPermissionDenied) {
    return absl::StrCat(
        "the token",
        security.has_token() ? absl::StrCat(" from ", security.token_source())
                             : "",
        " lacks the role the server names; add that role to the token's "
        "line in the server's --auth_tokens_file (then SIGHUP), or use a "
        "token that has it");
  }
  return "";
}

}  // namespace abexp
