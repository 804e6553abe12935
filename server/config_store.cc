#include "server/config_store.h"

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "server/config_parser.h"

namespace abexp {
namespace {

absl::StatusOr<std::string> ReadFile(const std::string& path) {
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec)) {
    return absl::InvalidArgumentError(
        absl::StrCat("config path ", path,
                     " is a directory; pass the experiments YAML file itself"));
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    int err = errno;
    return absl::ErrnoToStatus(
        err, absl::StrCat(
                 "cannot read config file ", path,
                 "; check the path passed to --config and its permissions"));
  }
  std::ostringstream text;
  text << in.rdbuf();
  if (in.bad()) {
    return absl::DataLossError(
        absl::StrCat("error while reading config file ", path));
  }
  return std::move(text).str();
}

// Parses text; INVALID_ARGUMENT with every diagnostic when it has errors.
absl::StatusOr<LoadResult> Load(const std::string& path,
                                const std::string& text) {
  ParseResult parsed = ParseConfig(text, path);
  LoadResult result;
  int errors = 0;
  for (const Diagnostic& d : parsed.diagnostics) {
    if (d.warning) {
      result.warnings.push_back(d.ToString());
    } else {
      ++errors;
    }
  }
  if (!parsed.ok()) {
    // Keep the warnings too: they often explain the errors.
    return absl::InvalidArgumentError(absl::StrCat(
        path, " is not a valid abexp config (", errors == 0 ? 1 : errors,
        errors == 1 ? " error" : " errors", "); fix it and try again:\n",
        parsed.FormatDiagnostics()));
  }
  result.config = std::move(parsed.config);
  result.changed = true;
  return result;
}

}  // namespace

ConfigStore::ConfigStore(std::string path, std::shared_ptr<const Config> config)
    : path_(std::move(path)), current_(std::move(config)) {}

absl::StatusOr<std::unique_ptr<ConfigStore>> ConfigStore::Open(
    const std::string& path, LoadResult* result) {
  absl::StatusOr<std::string> text = ReadFile(path);
  if (!text.ok()) return text.status();
  absl::StatusOr<LoadResult> loaded = Load(path, *text);
  if (!loaded.ok()) return loaded.status();
  std::unique_ptr<ConfigStore> store(new ConfigStore(path, loaded->config));
  if (result != nullptr) *result = *std::move(loaded);
  return store;
}

std::shared_ptr<const Config> ConfigStore::Snapshot() const {
  absl::ReaderMutexLock lock(&mu_);
  return current_;
}

absl::StatusOr<LoadResult> ConfigStore::Reload() {
  absl::MutexLock reload_lock(&reload_mu_);
  std::shared_ptr<const Config> old = Snapshot();
  absl::StatusOr<std::string> text = ReadFile(path_);
  if (!text.ok()) return text.status();
  if (ConfigVersionOf(*text) == old->version) {
    LoadResult unchanged;
    unchanged.config = std::move(old);
    return unchanged;
  }
  absl::StatusOr<LoadResult> loaded = Load(path_, *text);
  if (!loaded.ok()) return loaded.status();
  {
    absl::MutexLock lock(&mu_);
    current_ = loaded->config;
  }
  // `old` is released here, outside the lock: the last reader of a config
  // frees it, never a reader waiting on mu_.
  return loaded;
}

}  // namespace abexp
