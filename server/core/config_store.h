// A ConfigStore holds the config the server currently serves and swaps it
// when the file is reloaded.
//
// Readers call Snapshot() and keep the returned shared_ptr for the whole
// request, so a reload never changes a response half-way. Snapshot() takes
// no lock while the config is unchanged, and a reload holds the lock readers
// may take only to swap one pointer, never while it parses: readers never
// wait for a parse (published_snapshot.h). An invalid file never replaces a
// good config.
//
// Thread-safe: all methods may be called concurrently.
#ifndef ABEXP_SERVER_CORE_CONFIG_STORE_H_
#define ABEXP_SERVER_CORE_CONFIG_STORE_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "server/core/indexed_config.h"
#include "server/core/published_snapshot.h"

namespace abexp {

// What a successful Open or Reload did.
struct LoadResult {
  // The config now served.
  std::shared_ptr<const IndexedConfig> config;
  // False when the file was byte-identical to the served config (nothing was
  // swapped).
  bool changed = false;
  // Warning diagnostics, one formatted line each ("file:line:col: warning:
  // ...").
  std::vector<std::string> warnings;
  // Reload only: the keys of experiments that were running in the config
  // served before and are absent from the new one, in the old file's order.
  // Their units stop getting a variant; the caller should say so loudly.
  std::vector<std::string> dropped_running;
};

class ConfigStore {
 public:
  // Reads and validates the config file at `path`.
  //
  // Errors: INVALID_ARGUMENT listing every diagnostic, one per line, when the
  // file is invalid; NOT_FOUND / PERMISSION_DENIED etc. when it cannot be
  // read. If `result` is non-null it receives the loaded config and its
  // warnings.
  static absl::StatusOr<std::unique_ptr<ConfigStore>> Open(
      const std::string& path, LoadResult* result = nullptr);

  ConfigStore(const ConfigStore&) = delete;
  ConfigStore& operator=(const ConfigStore&) = delete;

  // The config being served. Never null. Lock-free while the config is
  // unchanged: one atomic load and one reference-count increment. A thread's
  // first call, its first after each reload (or after it read several other
  // stores), also takes a reader lock that reloads hold only for the swap.
  std::shared_ptr<const IndexedConfig> Snapshot() const {
    return current_.Get();
  }

  // Re-reads the file. A byte-identical file is a no-op success
  // (changed = false). On any error the last good config stays in place and
  // the error is returned with every diagnostic (INVALID_ARGUMENT) or the
  // read error; the caller decides how to log it. Concurrent reloads are
  // serialized.
  absl::StatusOr<LoadResult> Reload() ABSL_LOCKS_EXCLUDED(reload_mu_);

  const std::string& path() const { return path_; }

 private:
  ConfigStore(std::string path, std::shared_ptr<const IndexedConfig> config);

  const std::string path_;
  // Serializes Reload() so two reloads never race to install older files.
  absl::Mutex reload_mu_;
  PublishedSnapshot<IndexedConfig> current_;
};

}  // namespace abexp

#endif  // ABEXP_SERVER_CORE_CONFIG_STORE_H_
