// Owning pointers for the OpenSSL objects the server's TLS code (and its
// tests) handle, so that every one is freed on every path.
//
// Thread safety: as OpenSSL's: one object is used by one thread at a time.
#ifndef ABEXP_SERVER_OPENSSL_PTR_H_
#define ABEXP_SERVER_OPENSSL_PTR_H_

#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/x509.h>

#include <memory>
#include <string>

namespace abexp {

struct BioDeleter {
  void operator()(BIO* b) const { BIO_free(b); }
};
struct X509Deleter {
  void operator()(X509* x) const { X509_free(x); }
};
struct PkeyDeleter {
  void operator()(EVP_PKEY* k) const { EVP_PKEY_free(k); }
};
using BioPtr = std::unique_ptr<BIO, BioDeleter>;
using X509Ptr = std::unique_ptr<X509, X509Deleter>;
using PkeyPtr = std::unique_ptr<EVP_PKEY, PkeyDeleter>;

// A read-only BIO over `text`, which must outlive it.
inline BioPtr MemoryBio(const std::string& text) {
  return BioPtr(BIO_new_mem_buf(text.data(), static_cast<int>(text.size())));
}

}  // namespace abexp

#endif  // ABEXP_SERVER_OPENSSL_PTR_H_
