#include "server/core/config_store.h"

#if defined(__GLIBC__)
#include <malloc.h>
#endif

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "server/core/config_parser.h"

namespace abexp {
namespace {

absl::StatusOr<std::string> ReadFile(const std::string& path) {
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec)) {
    return absl::InvalidArgumentError(
        absl::StrCat("config path ", path,
                     " is a directory; pass the experiments YAML file itself"));
  }
  // Refused from its size: parsing costs far more memory and time than the
  // file's bytes (50 MB of qa_overrides took 3.5 GB and 25 s).
  const std::uintmax_t size = std::filesystem::file_size(path, ec);
  if (!ec && size > kMaxConfigBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": ", ConfigTooLargeMessage(size)));
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

// Gives the memory the parser freed back to the system. glibc keeps freed
// heap for reuse, so a rejected 16 MiB config (about 880,000 qa_overrides ids)
// left the process 520 MB larger; with the trim it returns to where it was
// (measured: 557 MB RSS after two failed parses, 37 MB after the trim).
void ReleaseFreedMemory() {
#if defined(__GLIBC__)
  malloc_trim(0);
#endif
}

// Parses text; INVALID_ARGUMENT with every diagnostic when it has errors.
absl::StatusOr<LoadResult> Load(const std::string& path,
                                const std::string& text) {
  ParseResult parsed = ParseConfig(text, path);
  ReleaseFreedMemory();  // the YAML tree is gone, whether or not the parse
                         // failed
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

// The keys of the experiments running in `old_config` that `new_config`
// does not have, in the old file's order.
std::vector<std::string> DroppedRunning(const Config& old_config,
                                        const Config& new_config) {
  std::vector<std::string> dropped;
  for (const Experiment& e : old_config.experiments) {
    if (e.status == ExperimentStatus::kRunning &&
        new_config.FindExperiment(e.key) == nullptr) {
      dropped.push_back(e.key);
    }
  }
  return dropped;
}

}  // namespace

ConfigStore::ConfigStore(std::string path,
                         std::shared_ptr<const IndexedConfig> config)
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

absl::StatusOr<LoadResult> ConfigStore::Reload() {
  absl::MutexLock reload_lock(&reload_mu_);
  std::shared_ptr<const IndexedConfig> old = Snapshot();
  absl::StatusOr<std::string> text = ReadFile(path_);
  if (!text.ok()) return text.status();
  if (ConfigVersionOf(*text) == old->version) {
    LoadResult unchanged;
    unchanged.config = std::move(old);
    return unchanged;
  }
  absl::StatusOr<LoadResult> loaded = Load(path_, *text);
  if (!loaded.ok()) return loaded.status();
  loaded->dropped_running = DroppedRunning(*old, *loaded->config);
  current_.Publish(loaded->config);
  return loaded;
}

}  // namespace abexp
