// Parsing and validation of an abexp YAML config (docs/config.md).
//
// Validation reports every problem it finds, not just the first, each with
// the file position it refers to and a hint on how to fix it.
//
// Thread-safe: the functions here share no state.
#ifndef ABEXP_SERVER_CORE_CONFIG_PARSER_H_
#define ABEXP_SERVER_CORE_CONFIG_PARSER_H_

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "server/core/config.h"
#include "server/core/indexed_config.h"

namespace abexp {

// The largest config accepted: 16 MiB. ParseConfig refuses longer text, and
// ParseConfigFile (like the server's config store) refuses a larger file
// from its size, before reading it.
inline constexpr size_t kMaxConfigBytes = size_t{16} << 20;

struct Diagnostic {
  std::string file;
  int line = 0;          // 1-based; 0 when the problem has no single position
  int column = 0;        // 1-based
  std::string message;   // what is wrong, and how to fix it
  bool warning = false;  // warnings do not make a config invalid

  // "file:line:column: message" (or "file: message" without a position),
  // with "warning: " before the message for warnings.
  std::string ToString() const;
};

struct ParseResult {
  // Null when any error (not warning) was found.
  std::shared_ptr<const IndexedConfig> config;
  // Errors and warnings, ordered by position.
  std::vector<Diagnostic> diagnostics;

  bool ok() const { return config != nullptr; }
  // Every diagnostic's ToString(), one per line.
  std::string FormatDiagnostics() const;
};

// Parses config text; `file_name` is used in diagnostics and stored as
// Config::source_path. The config version is computed from the text bytes.
ParseResult ParseConfig(absl::string_view text, absl::string_view file_name);

// Reads and parses a file. A file that cannot be read is a diagnostic too.
ParseResult ParseConfigFile(const std::string& path);

// The error for a config of `size_bytes` bytes, more than kMaxConfigBytes:
// it names both sizes and says what to do.
std::string ConfigTooLargeMessage(uint64_t size_bytes);

// The config version of some config text: 16 lowercase hex digits of
// XXH3-64 (seed 0) of the bytes.
std::string ConfigVersionOf(absl::string_view text);

// Whether `version` has the form ConfigVersionOf returns: 16 lowercase hex
// digits.
bool IsConfigVersion(absl::string_view version);

}  // namespace abexp

#endif  // ABEXP_SERVER_CORE_CONFIG_PARSER_H_
