#include "server/server_tls.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <utility>

#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "grpcpp/security/tls_credentials_options.h"
#include "server/openssl_ptr.h"

namespace abexp {
namespace {

// How often gRPC re-reads the served files, in seconds.
constexpr unsigned int kRefreshSeconds = 1;
constexpr char kIdentityName[] = "identity.pem";
constexpr char kClientCaName[] = "client_ca.pem";

// The --flag=PATH a message names.
std::string FlagAndFile(absl::string_view flag, absl::string_view path) {
  return absl::StrCat("--", flag, "=", path);
}

// The last OpenSSL error as text ("" when there is none), clearing the queue.
std::string TakeOpenSslError() {
  unsigned long code = ERR_peek_last_error();
  std::string text;
  if (code != 0) {
    char buf[256];
    ERR_error_string_n(code, buf, sizeof(buf));
    text = buf;
  }
  ERR_clear_error();
  return text;
}

absl::StatusOr<std::string> ReadFile(absl::string_view flag,
                                     const std::string& path) {
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    return absl::FailedPreconditionError(absl::StrCat(
        "cannot read ", FlagAndFile(flag, path), ": ", std::strerror(errno),
        "; pass a PEM file that this user can read"));
  }
  std::string contents;
  char buf[8192];
  for (;;) {
    ssize_t n = read(fd, buf, sizeof(buf));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      int err = errno;
      close(fd);
      return absl::FailedPreconditionError(
          absl::StrCat("cannot read ", FlagAndFile(flag, path), ": ",
                       std::strerror(err), "; pass a readable PEM file"));
    }
    if (n == 0) break;
    contents.append(buf, static_cast<size_t>(n));
  }
  close(fd);
  return contents;
}

// Every PEM certificate in `text`, in order (blocks of other types, such as
// a private key, are skipped). FAILED_PRECONDITION when there is none or one
// does not parse.
absl::StatusOr<std::vector<X509Ptr>> ParseCertificates(absl::string_view flag,
                                                       const std::string& path,
                                                       const std::string& text,
                                                       absl::string_view what) {
  BioPtr bio = MemoryBio(text);
  std::vector<X509Ptr> certs;
  ERR_clear_error();
  for (;;) {
    X509Ptr cert(PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr));
    if (cert == nullptr) break;
    certs.push_back(std::move(cert));
  }
  unsigned long err = ERR_peek_last_error();
  const bool at_end = ERR_GET_LIB(err) == ERR_LIB_PEM &&
                      ERR_GET_REASON(err) == PEM_R_NO_START_LINE;
  if (err != 0 && !at_end) {
    return absl::FailedPreconditionError(absl::StrCat(
        "certificate ", certs.size() + 1, " in ", FlagAndFile(flag, path),
        " cannot be parsed (", TakeOpenSslError(), "); pass ", what,
        " in PEM format (-----BEGIN CERTIFICATE-----)"));
  }
  ERR_clear_error();
  if (certs.empty()) {
    return absl::FailedPreconditionError(absl::StrCat(
        FlagAndFile(flag, path), " holds no PEM certificate; pass ", what,
        " in PEM format (-----BEGIN CERTIFICATE-----)"));
  }
  return certs;
}

// Never asks for a passphrase (OpenSSL's default would read the terminal).
int NoPassphrase(char*, int, int, void*) { return -1; }

absl::StatusOr<PkeyPtr> ParsePrivateKey(const std::string& path,
                                        const std::string& text) {
  const std::string flag_file = FlagAndFile("tls_key_file", path);
  if (absl::StrContains(text, "ENCRYPTED")) {
    return absl::FailedPreconditionError(absl::StrCat(
        flag_file,
        " holds an encrypted private key; abexp-server needs it unencrypted "
        "in a file only its user can read (e.g. `openssl pkey -in ",
        path, " -out key.pem`)"));
  }
  BioPtr bio = MemoryBio(text);
  ERR_clear_error();
  PkeyPtr key(
      PEM_read_bio_PrivateKey(bio.get(), nullptr, NoPassphrase, nullptr));
  if (key == nullptr) {
    return absl::FailedPreconditionError(
        absl::StrCat(flag_file, " holds no private key that can be parsed (",
                     TakeOpenSslError(),
                     "); pass the certificate's private key in PEM format "
                     "(-----BEGIN PRIVATE KEY-----)"));
  }
  return key;
}

std::string FormatAsn1Time(const ASN1_TIME* t) {
  std::tm tm{};
  if (ASN1_TIME_to_tm(t, &tm) != 1) return "?";
  char buf[32];
  std::strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

std::string NameText(const X509_NAME* name) {
  BioPtr bio(BIO_new(BIO_s_mem()));
  X509_NAME_print_ex(bio.get(), name, 0, XN_FLAG_RFC2253);
  char* data = nullptr;
  long n = BIO_get_mem_data(bio.get(), &data);
  return std::string(data, static_cast<size_t>(std::max(n, 0L)));
}

// The first 8 bytes of the certificate's SHA-256 fingerprint, in hex: tells
// a renewal from the certificate it replaces (same subject and issuer).
std::string ShortFingerprint(const X509* cert) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  if (X509_digest(cert, EVP_sha256(), md, &len) != 1 || len < 8) return "?";
  return absl::BytesToHexString(
      absl::string_view(reinterpret_cast<const char*>(md), 8));
}

std::string PemOf(const std::vector<X509Ptr>& certs) {
  BioPtr bio(BIO_new(BIO_s_mem()));
  for (const X509Ptr& c : certs) PEM_write_bio_X509(bio.get(), c.get());
  char* data = nullptr;
  long n = BIO_get_mem_data(bio.get(), &data);
  return std::string(data, static_cast<size_t>(std::max(n, 0L)));
}

std::string PemOf(EVP_PKEY* key) {
  BioPtr bio(BIO_new(BIO_s_mem()));
  PEM_write_bio_PrivateKey(bio.get(), key, nullptr, nullptr, 0, nullptr,
                           nullptr);
  char* data = nullptr;
  long n = BIO_get_mem_data(bio.get(), &data);
  return std::string(data, static_cast<size_t>(std::max(n, 0L)));
}

// Warnings for a certificate outside its validity period.
std::vector<std::string> ValidityWarnings(const std::string& path,
                                          const X509* cert) {
  std::vector<std::string> warnings;
  const std::string flag_file = FlagAndFile("tls_cert_file", path);
  if (X509_cmp_current_time(X509_get0_notAfter(cert)) < 0) {
    warnings.push_back(absl::StrCat(
        "warning: the certificate in ", flag_file, " expired on ",
        FormatAsn1Time(X509_get0_notAfter(cert)),
        "; clients will refuse it: renew it, replace the files and send "
        "SIGHUP"));
  }
  if (X509_cmp_current_time(X509_get0_notBefore(cert)) > 0) {
    warnings.push_back(absl::StrCat(
        "warning: the certificate in ", flag_file, " is not valid before ",
        FormatAsn1Time(X509_get0_notBefore(cert)),
        "; clients will refuse it until then (check this machine's clock)"));
  }
  return warnings;
}

absl::Status ErrnoStatus(absl::string_view what, const std::string& path) {
  return absl::InternalError(
      absl::StrCat("cannot ", what, " ", path, ": ", std::strerror(errno)));
}

// Replaces dir/name with `contents` (mode 0600) atomically, with the given
// modification time.
absl::Status WriteAtomically(const std::string& dir, absl::string_view name,
                             const std::string& contents, std::time_t mtime) {
  const std::string path = absl::StrCat(dir, "/", name);
  const std::string tmp = absl::StrCat(path, ".tmp");
  int fd = open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) return ErrnoStatus("create", tmp);
  size_t written = 0;
  while (written < contents.size()) {
    ssize_t n = write(fd, contents.data() + written, contents.size() - written);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      absl::Status s = ErrnoStatus("write", tmp);
      close(fd);
      return s;
    }
    written += static_cast<size_t>(n);
  }
  const timespec times[2] = {{mtime, 0}, {mtime, 0}};
  if (fsync(fd) != 0 || futimens(fd, times) != 0) {
    absl::Status s = ErrnoStatus("sync", tmp);
    close(fd);
    return s;
  }
  if (close(fd) != 0) return ErrnoStatus("close", tmp);
  if (rename(tmp.c_str(), path.c_str()) != 0) {
    return ErrnoStatus("rename into place", path);
  }
  int dir_fd = open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dir_fd < 0) return ErrnoStatus("open", dir);
  const int synced = fsync(dir_fd);
  close(dir_fd);
  if (synced != 0) return ErrnoStatus("sync", dir);
  return absl::OkStatus();
}

}  // namespace

absl::Status CheckTlsFlags(const TlsFiles& files) {
  if (files.cert_file.empty() != files.key_file.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(
        files.cert_file.empty() ? "--tls_key_file" : "--tls_cert_file",
        " is set but ",
        files.cert_file.empty() ? "--tls_cert_file" : "--tls_key_file",
        " is not; pass both for TLS (the server's certificate chain and its "
        "private key, PEM) or neither"));
  }
  if (!files.client_ca_file.empty() && files.cert_file.empty()) {
    return absl::InvalidArgumentError(
        "--tls_client_ca_file needs --tls_cert_file and --tls_key_file: "
        "client certificates are checked only over TLS; pass the server's "
        "certificate and key too");
  }
  return absl::OkStatus();
}

absl::StatusOr<ServerTls::Validated> ServerTls::Validate(
    const TlsFiles& files) {
  if (absl::Status s = CheckTlsFlags(files); !s.ok()) return s;
  absl::StatusOr<std::string> cert_text =
      ReadFile("tls_cert_file", files.cert_file);
  if (!cert_text.ok()) return cert_text.status();
  absl::StatusOr<std::string> key_text =
      ReadFile("tls_key_file", files.key_file);
  if (!key_text.ok()) return key_text.status();
  absl::StatusOr<std::vector<X509Ptr>> chain =
      ParseCertificates("tls_cert_file", files.cert_file, *cert_text,
                        "the server's certificate (then its intermediates)");
  if (!chain.ok()) return chain.status();
  absl::StatusOr<PkeyPtr> key = ParsePrivateKey(files.key_file, *key_text);
  if (!key.ok()) return key.status();
  X509* leaf = chain->front().get();
  if (X509_check_private_key(leaf, key->get()) != 1) {
    ERR_clear_error();
    return absl::FailedPreconditionError(absl::StrCat(
        "the private key in ", FlagAndFile("tls_key_file", files.key_file),
        " does not belong to the certificate in ",
        FlagAndFile("tls_cert_file", files.cert_file),
        " (the first certificate there must be the server's own); pass the "
        "key that was made with that certificate"));
  }

  Validated set;
  set.identity_pem = absl::StrCat(PemOf(key->get()), PemOf(*chain));
  set.warnings = ValidityWarnings(files.cert_file, leaf);
  std::string client_auth = "not requested";
  if (!files.client_ca_file.empty()) {
    absl::StatusOr<std::string> ca_text =
        ReadFile("tls_client_ca_file", files.client_ca_file);
    if (!ca_text.ok()) return ca_text.status();
    absl::StatusOr<std::vector<X509Ptr>> cas = ParseCertificates(
        "tls_client_ca_file", files.client_ca_file, *ca_text,
        "the certificate(s) of the CA that signs client certificates");
    if (!cas.ok()) return cas.status();
    set.client_ca_pem = PemOf(*cas);
    client_auth = absl::StrCat("required, signed by ", cas->size(),
                               " CA(s) of ", files.client_ca_file);
  }
  set.description =
      absl::StrCat("subject=\"", NameText(X509_get_subject_name(leaf)),
                   "\" issuer=\"", NameText(X509_get_issuer_name(leaf)),
                   "\" expires=", FormatAsn1Time(X509_get0_notAfter(leaf)),
                   " sha256=", ShortFingerprint(leaf),
                   "... client certificates ", client_auth);
  return set;
}

absl::StatusOr<std::unique_ptr<ServerTls>> ServerTls::Create(
    const TlsFiles& files, const std::string& private_parent) {
  absl::StatusOr<Validated> set = Validate(files);
  if (!set.ok()) return set.status();

  std::string parent = private_parent;
  if (parent.empty()) {
    const char* tmpdir = std::getenv("TMPDIR");
    parent = tmpdir != nullptr && *tmpdir != '\0' ? tmpdir : "/tmp";
  }
  std::string templ = absl::StrCat(parent, "/abexp-tls-XXXXXX");
  if (mkdtemp(templ.data()) == nullptr) {  // mode 0700
    return absl::InternalError(absl::StrCat(
        "cannot make a private directory for the served certificates in ",
        parent, ": ", std::strerror(errno),
        "; set TMPDIR to a directory this user can write"));
  }
  std::unique_ptr<ServerTls> tls(new ServerTls(files, templ));
  if (absl::Status s = tls->Install(*std::move(set)); !s.ok()) return s;

  const std::string identity = absl::StrCat(templ, "/", kIdentityName);
  const bool mtls = !files.client_ca_file.empty();
  tls->provider_ =
      std::make_shared<grpc::experimental::FileWatcherCertificateProvider>(
          identity, identity,
          mtls ? absl::StrCat(templ, "/", kClientCaName) : std::string(),
          kRefreshSeconds);
  grpc::experimental::TlsServerCredentialsOptions options(tls->provider_);
  options.watch_identity_key_cert_pairs();
  if (mtls) {
    options.watch_root_certs();
    options.set_cert_request_type(
        GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY);
  }
  tls->credentials_ = grpc::experimental::TlsServerCredentials(options);
  return tls;
}

ServerTls::ServerTls(TlsFiles files, std::string private_dir)
    : files_(std::move(files)), private_dir_(std::move(private_dir)) {}

ServerTls::~ServerTls() {
  credentials_.reset();
  provider_.reset();
  std::error_code ec;
  std::filesystem::remove_all(private_dir_, ec);
}

absl::Status ServerTls::Install(Validated set) {
  // Each generation a later second than the last (see the header).
  last_mtime_ = std::max(std::time(nullptr), last_mtime_ + 1);
  if (!set.client_ca_pem.empty()) {
    if (absl::Status s = WriteAtomically(private_dir_, kClientCaName,
                                         set.client_ca_pem, last_mtime_);
        !s.ok()) {
      return s;
    }
  }
  if (absl::Status s = WriteAtomically(private_dir_, kIdentityName,
                                       set.identity_pem, last_mtime_);
      !s.ok()) {
    return s;
  }
  served_ = std::move(set);
  return absl::OkStatus();
}

absl::StatusOr<bool> ServerTls::Reload() {
  absl::StatusOr<Validated> set = Validate(files_);
  if (!set.ok()) return set.status();
  if (set->identity_pem == served_.identity_pem &&
      set->client_ca_pem == served_.client_ca_pem) {
    served_.warnings = std::move(set->warnings);  // time may have passed
    return false;
  }
  if (absl::Status s = Install(*std::move(set)); !s.ok()) return s;
  return true;
}

bool IsLoopbackListenAddress(absl::string_view address) {
  if (absl::StartsWith(address, "unix:") ||
      absl::StartsWith(address, "unix-abstract:")) {
    return true;
  }
  for (absl::string_view scheme : {"ipv4:", "ipv6:"}) {
    if (absl::StartsWith(address, scheme)) address.remove_prefix(scheme.size());
  }
  absl::string_view host;
  if (absl::StartsWith(address, "[")) {
    size_t close = address.find(']');
    if (close == absl::string_view::npos) return false;
    host = address.substr(1, close - 1);
  } else {
    size_t colon = address.rfind(':');
    host =
        colon == absl::string_view::npos ? address : address.substr(0, colon);
  }
  if (host == "localhost") return true;
  const std::string h(host);
  in_addr v4;
  if (inet_pton(AF_INET, h.c_str(), &v4) == 1) {
    return (ntohl(v4.s_addr) >> 24) == 127;
  }
  in6_addr v6;
  if (inet_pton(AF_INET6, h.c_str(), &v6) == 1) {
    if (IN6_IS_ADDR_LOOPBACK(&v6)) return true;
    return IN6_IS_ADDR_V4MAPPED(&v6) && v6.s6_addr[12] == 127;
  }
  return false;
}

}  // namespace abexp
