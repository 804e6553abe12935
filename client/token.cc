#include "client/token.h"

#include <openssl/rand.h>
#include <openssl/sha.h>

#include <cstdint>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

namespace abexp {
namespace {

constexpr int kTokenRandomBytes = 32;

constexpr absl::string_view kTokenForm =
    "a token is 'abexp_' followed by 43 characters from A-Z a-z 0-9 - _ "
    "(49 in all), as `abexp token create` prints it";

bool IsBase64Url(char c) {
  return absl::ascii_isalnum(static_cast<unsigned char>(c)) || c == '-' ||
         c == '_';
}

}  // namespace

absl::StatusOr<std::string> MakeToken() {
  unsigned char bytes[kTokenRandomBytes];
  if (RAND_bytes(bytes, sizeof(bytes)) != 1) {
    return absl::InternalError(
        "OpenSSL's RAND_bytes failed to give 32 random bytes; no token was "
        "made (is the system's random source available?)");
  }
  return absl::StrCat(
      kTokenPrefix, absl::WebSafeBase64Escape(absl::string_view(
                        reinterpret_cast<const char*>(bytes), sizeof(bytes))));
}

std::string TokenFileHash(absl::string_view token) {
  unsigned char digest[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(token.data()), token.size(),
         digest);
  return absl::StrCat(
      "sha256:", absl::BytesToHexString(absl::string_view(
                     reinterpret_cast<const char*>(digest), sizeof(digest))));
}

absl::Status CheckTokenForm(absl::string_view token, absl::string_view source) {
  auto bad = [&](absl::string_view what) {
    return absl::InvalidArgumentError(absl::StrCat(
        source, " is not an abexp token: ", what, "; ", kTokenForm));
  };
  if (token.empty()) return bad("it is empty");
  if (!absl::StartsWith(token, kTokenPrefix)) {
    return bad(absl::StartsWith(token, "Bearer ")
                   ? "it starts with 'Bearer '; pass the token alone"
                   : "it does not start with 'abexp_'");
  }
  for (char c : token.substr(kTokenPrefix.size())) {
    if (!IsBase64Url(c)) {
      return bad(absl::ascii_isspace(static_cast<unsigned char>(c))
                     ? "it contains white space (a line break copied "
                       "with it?)"
                     : "it contains a character outside A-Z a-z 0-9 - _");
    }
  }
  if (token.size() != kTokenLength) {
    return bad(absl::StrCat("it has ", token.size(), " characters"));
  }
  return absl::OkStatus();
}

}  // namespace abexp
