// abexp access tokens: how they look, how they are made, and the hash the
// server's token file stores instead of the token.
//
// A token is "abexp_" followed by 43 base64url characters (A-Z a-z 0-9 - _):
// 32 random bytes, unpadded. Clients send it as the gRPC metadata
// `authorization: Bearer <token>`; the server's --auth_tokens_file holds
// lines `NAME ROLES sha256:HEX`, HEX being SHA-256 over the token's bytes.
//
// Thread-safe: the functions share no state.
#ifndef ABEXP_CLIENT_TOKEN_H_
#define ABEXP_CLIENT_TOKEN_H_

#include <cstddef>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace abexp {

inline constexpr absl::string_view kTokenPrefix = "abexp_";
// The prefix and 43 base64url characters.
inline constexpr size_t kTokenLength = 49;

// A new token from 32 bytes of OpenSSL's RAND_bytes. INTERNAL when the
// generator fails (it then has no entropy to give).
absl::StatusOr<std::string> MakeToken();

// "sha256:" and the 64 lowercase hex digits of SHA-256 over `token`'s bytes:
// the third field of the token's line in the server's token file.
std::string TokenFileHash(absl::string_view token);

// OK when `token` has the form above; otherwise INVALID_ARGUMENT that names
// `source` (where the token came from, e.g. "--token" or "ABEXP_TOKEN"),
// says what is wrong and what a token looks like. The message never quotes
// the token.
absl::Status CheckTokenForm(absl::string_view token, absl::string_view source);

}  // namespace abexp

#endif  // ABEXP_CLIENT_TOKEN_H_
