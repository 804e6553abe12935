#include "server/core/token_table.h"

#include <openssl/crypto.h>
#include <openssl/sha.h>

#include <cstring>
#include <utility>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

namespace abexp {
namespace {

struct RoleName {
  Roles role;
  absl::string_view name;
};
constexpr RoleName kRoles[] = {{kRoleAssign, "assign"},
                               {kRoleRecord, "record"},
                               {kRoleResults, "results"},
                               {kRoleAdmin, "admin"}};

constexpr absl::string_view kHashPrefix = "sha256:";
constexpr size_t kMaxNameLength = 64;

bool IsBase64UrlChar(char c) {
  return absl::ascii_isalnum(static_cast<unsigned char>(c)) || c == '-' ||
         c == '_';
}

bool IsNameChar(char c) {
  return absl::ascii_isalnum(static_cast<unsigned char>(c)) || c == '.' ||
         c == '_' || c == '-';
}

bool IsLowerHex(char c) {
  return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
}

std::array<unsigned char, 32> Sha256(absl::string_view bytes) {
  std::array<unsigned char, 32> digest;
  SHA256(reinterpret_cast<const unsigned char*>(bytes.data()), bytes.size(),
         digest.data());
  return digest;
}

uint64_t PrefixOf(const std::array<unsigned char, 32>& digest) {
  uint64_t prefix;
  std::memcpy(&prefix, digest.data(), sizeof(prefix));
  return prefix;
}

// What the token file's lines accumulate while parsing.
class TokenFileParser {
 public:
  explicit TokenFileParser(absl::string_view path) : path_(path) {}

  void ParseLine(int line_number, absl::string_view line);
  std::vector<TokenEntry> TakeEntries() { return std::move(entries_); }
  const std::vector<std::string>& errors() const { return errors_; }

 private:
  void Error(int line_number, absl::string_view message) {
    errors_.push_back(absl::StrCat(path_, ":", line_number, ": ", message));
  }
  // Each returns false after reporting the problem.
  bool ParseName(int line_number, absl::string_view name);
  bool ParseRoles(int line_number, absl::string_view text, Roles* roles);
  bool ParseHash(int line_number, absl::string_view text,
                 std::array<unsigned char, 32>* digest);

  const absl::string_view path_;
  std::vector<TokenEntry> entries_;
  std::vector<std::string> errors_;
  absl::flat_hash_map<std::string, int> line_of_name_;
  absl::flat_hash_map<std::string, int> line_of_hash_;
};

void TokenFileParser::ParseLine(int line_number, absl::string_view line) {
  line = absl::StripAsciiWhitespace(line);
  if (line.empty() || line[0] == '#') return;
  std::vector<absl::string_view> fields =
      absl::StrSplit(line, absl::ByAnyChar(" \t"), absl::SkipEmpty());
  for (absl::string_view field : fields) {
    if (LooksLikeToken(field)) {
      Error(line_number,
            "this line holds a token itself; the file must hold only its "
            "hash: replace the token with sha256: and the SHA-256 of the "
            "token in lowercase hex (the second line `abexp token create` "
            "prints is the whole line to add), and treat the token as "
            "leaked if others could read this file");
      return;
    }
  }
  if (fields.size() != 3) {
    Error(line_number,
          absl::StrCat("expected 3 fields separated by spaces or tabs, NAME "
                       "ROLES sha256:HEX (e.g. checkout-service "
                       "assign,record sha256:3f0a...), found ",
                       fields.size()));
    return;
  }
  TokenEntry entry;
  bool ok = ParseName(line_number, fields[0]);
  ok &= ParseRoles(line_number, fields[1], &entry.roles);
  ok &= ParseHash(line_number, fields[2], &entry.sha256);
  if (!ok) return;
  entry.name = std::string(fields[0]);
  entries_.push_back(std::move(entry));
}

bool TokenFileParser::ParseName(int line_number, absl::string_view name) {
  bool valid = !name.empty() && name.size() <= kMaxNameLength;
  for (char c : name) valid &= IsNameChar(c);
  if (!valid) {
    Error(line_number,
          absl::StrCat("name \"", absl::CHexEscape(name.substr(0, 80)),
                       "\" is not 1 to 64 of the characters A-Z a-z 0-9 . _ "
                       "-; name the caller, e.g. checkout-service"));
    return false;
  }
  auto [it, inserted] = line_of_name_.emplace(std::string(name), line_number);
  if (!inserted) {
    Error(line_number,
          absl::StrCat("name ", name, " is already used on line ", it->second,
                       "; give each token its own name"));
    return false;
  }
  return true;
}

bool TokenFileParser::ParseRoles(int line_number, absl::string_view text,
                                 Roles* roles) {
  *roles = 0;
  std::vector<std::string> unknown;
  for (absl::string_view name : absl::StrSplit(text, ',')) {
    Roles role = 0;
    for (const RoleName& r : kRoles) {
      if (r.name == name) role = r.role;
    }
    if (role == 0) {
      unknown.push_back(
          absl::StrCat("\"", absl::CHexEscape(name.substr(0, 80)), "\""));
    }
    *roles |= role;
  }
  if (!unknown.empty()) {
    Error(line_number,
          absl::StrCat("unknown role ", absl::StrJoin(unknown, ", "), " in \"",
                       absl::CHexEscape(text.substr(0, 80)),
                       "\"; roles are a comma-separated list (no spaces) of "
                       "assign, record, results and admin"));
    return false;
  }
  return true;
}

bool TokenFileParser::ParseHash(int line_number, absl::string_view text,
                                std::array<unsigned char, 32>* digest) {
  absl::string_view hex = text;
  if (!absl::ConsumePrefix(&hex, kHashPrefix)) {
    Error(line_number,
          "the third field must be sha256: followed by the token's SHA-256 in "
          "64 lowercase hex digits; `abexp token create` prints the whole "
          "line to add");
    return false;
  }
  bool lower_hex = hex.size() == 64;
  for (char c : hex) lower_hex &= IsLowerHex(c);
  if (!lower_hex) {
    Error(line_number,
          absl::StrCat("the hash after sha256: has ", hex.size(),
                       " characters; it must be exactly 64 lowercase hex "
                       "digits (0-9, a-f), the SHA-256 of the token; "
                       "`abexp token create` prints the whole line to add"));
    return false;
  }
  const std::string bytes = absl::HexStringToBytes(hex);
  std::memcpy(digest->data(), bytes.data(), digest->size());
  auto [it, inserted] = line_of_hash_.emplace(bytes.substr(0, 8), line_number);
  if (!inserted) {
    Error(line_number,
          absl::StrCat("this hash is already on line ", it->second,
                       ": one token would have two names; give each caller "
                       "its own token (abexp token create)"));
    return false;
  }
  return true;
}

// "Bearer <token>" (the scheme in any case, RFC 7235) -> the token; nullopt
// for anything else.
std::optional<absl::string_view> BearerToken(absl::string_view authorization) {
  constexpr absl::string_view kScheme = "bearer ";
  if (authorization.size() < kScheme.size() ||
      !absl::EqualsIgnoreCase(authorization.substr(0, kScheme.size()),
                              kScheme)) {
    return std::nullopt;
  }
  return absl::StripAsciiWhitespace(authorization.substr(kScheme.size()));
}

}  // namespace

std::string RoleNames(Roles roles) {
  std::vector<absl::string_view> names;
  for (const RoleName& r : kRoles) {
    if ((roles & r.role) != 0) names.push_back(r.name);
  }
  return absl::StrJoin(names, ",");
}

bool LooksLikeToken(absl::string_view text) {
  if (text.size() != kTokenLength || !absl::StartsWith(text, kTokenPrefix)) {
    return false;
  }
  for (char c : text.substr(kTokenPrefix.size())) {
    if (!IsBase64UrlChar(c)) return false;
  }
  return true;
}

std::string TokenSha256Hex(absl::string_view token) {
  const std::array<unsigned char, 32> digest = Sha256(token);
  return absl::BytesToHexString(absl::string_view(
      reinterpret_cast<const char*>(digest.data()), digest.size()));
}

absl::StatusOr<TokenTable> TokenTable::Parse(absl::string_view text,
                                             absl::string_view path) {
  TokenFileParser parser(path);
  int line_number = 0;
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    parser.ParseLine(++line_number, line);
  }
  std::vector<std::string> errors = parser.errors();
  TokenTable table;
  table.entries_ = parser.TakeEntries();
  if (errors.empty() && table.entries_.empty()) {
    errors.push_back(absl::StrCat(
        path,
        ": holds no token, so every call would be refused; add a line "
        "NAME ROLES sha256:HEX per caller (abexp token create prints it), "
        "or start abexp-server without --auth_tokens_file"));
  }
  if (!errors.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, " is not a valid token file (", errors.size(),
                     errors.size() == 1 ? " error" : " errors", "):\n",
                     absl::StrJoin(errors, "\n")));
  }
  for (uint32_t i = 0; i < table.entries_.size(); ++i) {
    table.by_hash_prefix_.emplace(PrefixOf(table.entries_[i].sha256), i);
  }
  return table;
}

absl::Status TokenTable::Check(std::optional<absl::string_view> authorization,
                               Roles needed, absl::string_view rpc) const {
  if (!authorization.has_value()) {
    return absl::UnauthenticatedError(absl::StrCat(
        rpc,
        " needs a token: this abexp-server checks callers; send the gRPC "
        "metadata \"authorization: Bearer abexp_...\" (abexp clients: "
        "--token or ABEXP_TOKEN) with a token that has the role ",
        RoleNames(needed)));
  }
  std::optional<absl::string_view> token = BearerToken(*authorization);
  if (!token.has_value()) {
    return absl::UnauthenticatedError(
        "the authorization metadata is not \"Bearer <token>\"; send "
        "\"authorization: Bearer abexp_...\" with the token you were given");
  }
  if (!LooksLikeToken(*token)) {
    return absl::UnauthenticatedError(absl::StrCat(
        "the bearer token is not an abexp token (", token->size(),
        " characters; an abexp token is abexp_ followed by 43 base64url "
        "characters, 49 in all); send the token `abexp token create` "
        "printed, whole"));
  }
  const std::array<unsigned char, 32> digest = Sha256(*token);
  auto it = by_hash_prefix_.find(PrefixOf(digest));
  const TokenEntry* entry = nullptr;
  if (it != by_hash_prefix_.end()) {
    const TokenEntry& candidate = entries_[it->second];
    if (CRYPTO_memcmp(candidate.sha256.data(), digest.data(), digest.size()) ==
        0) {
      entry = &candidate;
    }
  }
  if (entry == nullptr) {
    return absl::UnauthenticatedError(
        "the bearer token is not known to this abexp-server (not in its "
        "--auth_tokens_file, or removed from it); send a current token");
  }
  if ((entry->roles & kRoleAdmin) != 0) return absl::OkStatus();
  const Roles missing = needed & ~entry->roles;
  if (missing == 0) return absl::OkStatus();
  return absl::PermissionDeniedError(absl::StrCat(
      "token ", entry->name, " may not call ", rpc, ": it lacks the role",
      (missing & (missing - 1)) != 0 ? "s " : " ", RoleNames(missing),
      " (it has ", RoleNames(entry->roles),
      "); add the role to its line in the server's --auth_tokens_file, or "
      "use a token that has it"));
}

std::string TokenTable::Summary() const {
  std::vector<std::string> counts;
  for (const RoleName& r : kRoles) {
    int n = 0;
    for (const TokenEntry& e : entries_) n += (e.roles & r.role) != 0;
    counts.push_back(absl::StrCat(r.name, " ", n));
  }
  return absl::StrCat(entries_.size(),
                      entries_.size() == 1 ? " token: " : " tokens: ",
                      absl::StrJoin(counts, ", "));
}

}  // namespace abexp
