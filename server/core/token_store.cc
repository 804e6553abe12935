#include "server/core/token_store.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace abexp {
namespace {

// A token file has a line per caller; anything this large is not one.
constexpr off_t kMaxTokenFileBytes = 16 << 20;

// Closes a file descriptor.
struct FdCloser {
  explicit FdCloser(int fd) : fd(fd) {}
  ~FdCloser() {
    if (fd >= 0) close(fd);
  }
  const int fd;
};

// Reads the file at `path`, with a warning in *warnings when users other
// than its owner may read it.
absl::StatusOr<std::string> ReadTokenFile(const std::string& path,
                                          std::vector<std::string>* warnings) {
  FdCloser file(open(path.c_str(), O_RDONLY | O_CLOEXEC));
  struct stat info;
  if (file.fd < 0 || fstat(file.fd, &info) != 0) {
    return absl::ErrnoToStatus(
        errno, absl::StrCat("cannot read the token file ", path,
                            "; check the path passed to --auth_tokens_file "
                            "and that this user may read it"));
  }
  if (!S_ISREG(info.st_mode)) {
    return absl::InvalidArgumentError(
        absl::StrCat("--auth_tokens_file=", path,
                     " is not a regular file; pass the token file itself"));
  }
  if (info.st_size > kMaxTokenFileBytes) {
    return absl::InvalidArgumentError(absl::StrCat(
        "the token file ", path, " has ", info.st_size,
        " bytes, more than the 16 MiB a token file may have; it should hold "
        "one short line per caller"));
  }
  if ((info.st_mode & (S_IRWXG | S_IRWXO)) != 0) {
    warnings->push_back(absl::StrFormat(
        "warning: the token file %s may be read by other users (mode %04o); "
        "its hashes are no secret, but its names map the deployment: chmod "
        "600 %s",
        path, info.st_mode & 07777, path));
  }
  std::string text;
  char buffer[8192];
  for (;;) {
    const ssize_t n = read(file.fd, buffer, sizeof(buffer));
    if (n == 0) break;
    if (n < 0) {
      if (errno == EINTR) continue;
      return absl::ErrnoToStatus(
          errno, absl::StrCat("error while reading the token file ", path));
    }
    if (text.size() + n > static_cast<size_t>(kMaxTokenFileBytes)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "the token file ", path,
          " grew past 16 MiB while being read; it should hold one short line "
          "per caller"));
    }
    text.append(buffer, static_cast<size_t>(n));
  }
  return text;
}

absl::StatusOr<TokenLoad> Load(const std::string& path) {
  TokenLoad load;
  absl::StatusOr<std::string> text = ReadTokenFile(path, &load.warnings);
  if (!text.ok()) return text.status();
  absl::StatusOr<TokenTable> table = TokenTable::Parse(*text, path);
  if (!table.ok()) return table.status();
  load.table = std::make_shared<const TokenTable>(*std::move(table));
  return load;
}

}  // namespace

TokenStore::TokenStore(std::string path,
                       std::shared_ptr<const TokenTable> table)
    : path_(std::move(path)), current_(std::move(table)) {}

absl::StatusOr<std::unique_ptr<TokenStore>> TokenStore::Open(
    const std::string& path, TokenLoad* load) {
  absl::StatusOr<TokenLoad> loaded = Load(path);
  if (!loaded.ok()) return loaded.status();
  std::unique_ptr<TokenStore> store(new TokenStore(path, loaded->table));
  if (load != nullptr) *load = *std::move(loaded);
  return store;
}

absl::StatusOr<TokenLoad> TokenStore::Reload() {
  absl::MutexLock lock(&reload_mu_);
  absl::StatusOr<TokenLoad> loaded = Load(path_);
  if (!loaded.ok()) return loaded.status();
  current_.Publish(loaded->table);
  return loaded;
}

}  // namespace abexp
