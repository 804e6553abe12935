// A TokenTable is the parsed token file of abexp-server
// (--auth_tokens_file): who may call which RPCs. Each line names a caller,
// its roles and the SHA-256 of its bearer token; the server never sees or
// stores the tokens themselves.
//
//   # NAME            ROLES          sha256:HEX (of the token's bytes)
//   checkout-service  record,assign  sha256:3f0a...
//
// A token is "abexp_" followed by 43 base64url characters (32 random bytes,
// no padding). Clients send it as gRPC metadata
// "authorization: Bearer <token>".
//
// Thread-safe: a TokenTable is immutable once parsed; Check may be called
// concurrently.
#ifndef ABEXP_SERVER_CORE_TOKEN_TABLE_H_
#define ABEXP_SERVER_CORE_TOKEN_TABLE_H_

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace abexp {

// A set of roles, as bits. `admin` grants every role.
using Roles = uint32_t;
inline constexpr Roles kRoleAssign = 1u << 0;   // AssignmentService
inline constexpr Roles kRoleRecord = 1u << 1;   // RecordingService, and
                                                // Assign's record_exposure
inline constexpr Roles kRoleResults = 1u << 2;  // ResultsService
inline constexpr Roles kRoleAdmin = 1u << 3;    // all, and server reflection

// The roles' names, comma-separated, in the order assign, record, results,
// admin; "" for none.
std::string RoleNames(Roles roles);

// "abexp_" and 43 base64url characters.
inline constexpr absl::string_view kTokenPrefix = "abexp_";
inline constexpr size_t kTokenLength = 6 + 43;

// Whether `text` has the form of an abexp token (not whether it is known).
bool LooksLikeToken(absl::string_view text);

// The SHA-256 of `token`'s bytes as 64 lowercase hex digits: what the token
// file stores after "sha256:".
std::string TokenSha256Hex(absl::string_view token);

// One line of the token file.
struct TokenEntry {
  std::string name;
  Roles roles = 0;
  std::array<unsigned char, 32> sha256{};
};

class TokenTable {
 public:
  // Parses the token file's text; `path` names it in messages. Errors:
  // INVALID_ARGUMENT listing every problem, one per line as
  // "PATH:LINE: what is wrong; how to fix it", and when the file has no
  // token at all.
  static absl::StatusOr<TokenTable> Parse(absl::string_view text,
                                          absl::string_view path);

  // Whether the caller whose "authorization" metadata is `authorization`
  // (nullopt: the call has none) may call `rpc` (e.g.
  // "abexp.v1.AssignmentService/Assign"), which needs every role in
  // `needed`. OK; UNAUTHENTICATED when the metadata is missing, not
  // "Bearer <token>", not an abexp token, or a token not in the table;
  // PERMISSION_DENIED, naming the token's name, `rpc` and the missing
  // roles, when the token lacks a role.
  //
  // The presented token is hashed once (SHA-256) and looked up by its hash:
  // what the lookup's time depends on is the hash of what the caller sent,
  // never a stored hash, and the final comparison of the full hashes takes
  // constant time.
  absl::Status Check(std::optional<absl::string_view> authorization,
                     Roles needed, absl::string_view rpc) const;

  const std::vector<TokenEntry>& entries() const { return entries_; }

  // How many tokens hold each role, for logs (never a token or a hash):
  // "3 tokens: assign 2, record 1, results 0, admin 1".
  std::string Summary() const;

 private:
  TokenTable() = default;

  std::vector<TokenEntry> entries_;
  // The first 8 bytes of each entry's hash -> its index in entries_ (hashes
  // are unique in a table; Parse rejects repeats).
  absl::flat_hash_map<uint64_t, uint32_t> by_hash_prefix_;
};

}  // namespace abexp

#endif  // ABEXP_SERVER_CORE_TOKEN_TABLE_H_
