// A TokenStore holds the token table abexp-server checks calls against
// (--auth_tokens_file, token_table.h) and swaps it whole when the file is
// re-read on SIGHUP.
//
// Readers call Snapshot() on every call; it takes no lock while the table
// is unchanged (published_snapshot.h). An invalid file never replaces a
// good table.
//
// Thread-safe: all methods may be called concurrently.
#ifndef ABEXP_SERVER_CORE_TOKEN_STORE_H_
#define ABEXP_SERVER_CORE_TOKEN_STORE_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "server/core/published_snapshot.h"
#include "server/core/token_table.h"

namespace abexp {

// What a successful Open or Reload read.
struct TokenLoad {
  // The table now checked against.
  std::shared_ptr<const TokenTable> table;
  // One line each, e.g. that the file is readable by other users.
  std::vector<std::string> warnings;
};

class TokenStore {
 public:
  // Reads and parses the token file at `path`. Errors: INVALID_ARGUMENT
  // with every problem (TokenTable::Parse); NOT_FOUND, PERMISSION_DENIED
  // etc. when it cannot be read. If `load` is non-null it receives the
  // table and the warnings.
  static absl::StatusOr<std::unique_ptr<TokenStore>> Open(
      const std::string& path, TokenLoad* load = nullptr);

  TokenStore(const TokenStore&) = delete;
  TokenStore& operator=(const TokenStore&) = delete;

  // The table in force. Never null.
  std::shared_ptr<const TokenTable> Snapshot() const { return current_.Get(); }

  // Re-reads the file. On any error the table in force stays and the error
  // is returned, for the caller to log. Concurrent reloads are serialized.
  absl::StatusOr<TokenLoad> Reload() ABSL_LOCKS_EXCLUDED(reload_mu_);

  const std::string& path() const { return path_; }

 private:
  TokenStore(std::string path, std::shared_ptr<const TokenTable> table);

  const std::string path_;
  // Serializes Reload() so two reloads never race to install older files.
  absl::Mutex reload_mu_;
  PublishedSnapshot<TokenTable> current_;
};

}  // namespace abexp

#endif  // ABEXP_SERVER_CORE_TOKEN_STORE_H_
