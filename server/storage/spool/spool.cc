#include "server/storage/spool/spool.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <limits>
#include <system_error>
#include <utility>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/string_view.h"

namespace abexp {
namespace {

constexpr int64_t kFrameHeaderBytes = 8;
// A frame length of all ones marks a segment header, so no record has it.
constexpr uint32_t kHeaderMarker = std::numeric_limits<uint32_t>::max();
constexpr int64_t kMaxPayloadBytes = kHeaderMarker - int64_t{1};
constexpr int64_t kReadChunkBytes = 1 << 20;
// The older checkpoint (read position only) and the current one (read
// position and acknowledged end).
constexpr int64_t kCheckpointV1Bytes = 20;
constexpr int64_t kCheckpointBytes = 36;
// A rolled segment's header: [u32 kHeaderMarker][u32 kSegmentMagic]
// [u32 version 2][u32 0][u64 length of the segment before][u32 0]
// [u32 XXH32 of the 28 bytes before it].
constexpr int64_t kSegmentHeaderBytes = 32;
constexpr uint32_t kSegmentMagic = 0x32505341;  // "ASP2"
constexpr uint32_t kSegmentVersion = 2;
constexpr absl::string_view kSegmentPrefix = "spool-";
constexpr absl::string_view kSegmentSuffix = ".log";
constexpr int kSegmentDigits = 20;
// Segments are numbered from 1 and one more each time the active one fills,
// so no spool abexp-server writes comes near this; a number past it is a
// file that abexp did not write, and counting on from it would wrap.
constexpr uint64_t kMaxSegment = uint64_t{1} << 62;
constexpr char kCheckpointName[] = "CHECKPOINT";
constexpr char kCheckpointTmpName[] = "CHECKPOINT.tmp";
constexpr char kLockName[] = "LOCK";
// Where Open() keeps bytes of acknowledged records it found damaged.
constexpr char kDamagedDir[] = "damaged";

void PutU32(uint32_t v, char* out) {
  for (int i = 0; i < 4; ++i) out[i] = static_cast<char>((v >> (8 * i)) & 0xff);
}
void PutU64(uint64_t v, char* out) {
  for (int i = 0; i < 8; ++i) out[i] = static_cast<char>((v >> (8 * i)) & 0xff);
}
uint32_t GetU32(const char* p) {
  uint32_t v = 0;
  for (int i = 3; i >= 0; --i) v = (v << 8) | static_cast<unsigned char>(p[i]);
  return v;
}
uint64_t GetU64(const char* p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | static_cast<unsigned char>(p[i]);
  return v;
}

// Seeding with the length makes the checksum cover it too, and keeps an
// all-zero header from matching (XXH32 of nothing with seed 0 is not 0).
uint32_t FrameChecksum(const char* payload, uint32_t length) {
  return XXH32(payload, length, length);
}

void EncodeSegmentHeader(int64_t previous_length, char* out) {
  std::memset(out, 0, kSegmentHeaderBytes);
  PutU32(kHeaderMarker, out);
  PutU32(kSegmentMagic, out + 4);
  PutU32(kSegmentVersion, out + 8);
  PutU64(static_cast<uint64_t>(previous_length), out + 16);
  PutU32(XXH32(out, kSegmentHeaderBytes - 4, 0), out + 28);
}

absl::Status IoError(absl::string_view what, const std::string& path, int err) {
  return absl::InternalError(
      absl::StrCat(what, " ", path, ": ", std::strerror(err)));
}

// Closes a descriptor on scope exit.
class FdCloser {
 public:
  explicit FdCloser(int fd) : fd_(fd) {}
  ~FdCloser() {
    if (fd_ >= 0) ::close(fd_);
  }
  FdCloser(const FdCloser&) = delete;
  FdCloser& operator=(const FdCloser&) = delete;
  int get() const { return fd_; }
  int release() { return std::exchange(fd_, -1); }

 private:
  int fd_;
};

absl::Status WriteAll(int fd, const char* data, size_t n,
                      const std::string& path) {
  while (n > 0) {
    ssize_t w = ::write(fd, data, n);
    if (w < 0) {
      if (errno == EINTR) continue;
      return IoError("cannot write", path, errno);
    }
    data += w;
    n -= static_cast<size_t>(w);
  }
  return absl::OkStatus();
}

// Reads up to n bytes at offset; *got < n only at end of file.
absl::Status PreadAll(int fd, char* data, size_t n, int64_t offset,
                      const std::string& path, size_t* got) {
  *got = 0;
  while (*got < n) {
    ssize_t r = ::pread(fd, data + *got, n - *got, offset + *got);
    if (r < 0) {
      if (errno == EINTR) continue;
      return IoError("cannot read", path, errno);
    }
    if (r == 0) break;
    *got += static_cast<size_t>(r);
  }
  return absl::OkStatus();
}

absl::Status SyncFd(int fd, const std::string& path) {
  if (::fdatasync(fd) != 0) return IoError("cannot fdatasync", path, errno);
  return absl::OkStatus();
}

// Reads frames of one segment file, buffering large chunks.
class SegmentReader {
 public:
  enum class Frame { kOk, kEnd, kTruncated, kBadChecksum };

  // Reads bytes [0, end) of the file, which must be that long.
  SegmentReader(int fd, std::string path, int64_t end)
      : fd_(fd), path_(std::move(path)), end_(end) {}
  ~SegmentReader() { ::close(fd_); }
  SegmentReader(const SegmentReader&) = delete;
  SegmentReader& operator=(const SegmentReader&) = delete;

  static absl::StatusOr<std::unique_ptr<SegmentReader>> Open(
      const std::string& path, int64_t end) {
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return IoError("cannot open spool segment", path, errno);
    return std::make_unique<SegmentReader>(fd, path, end);
  }

  const std::string& path() const { return path_; }

  // The file has grown (appends became durable); bytes below the old end
  // never change, so buffered data stays valid.
  void ExtendTo(int64_t end) { end_ = end; }

  // Reads the frame at `offset`. On kOk, *payload (valid until the next
  // call) is set; on kOk and kBadChecksum, *next (the offset after the frame).
  absl::Status Read(int64_t offset, Frame* kind, absl::string_view* payload,
                    int64_t* next) {
    if (offset >= end_) {
      *kind = Frame::kEnd;
      return absl::OkStatus();
    }
    bool ok = false;
    absl::Status s = Fill(offset, kFrameHeaderBytes, &ok);
    if (!s.ok()) return s;
    if (!ok) {
      *kind = Frame::kTruncated;
      return absl::OkStatus();
    }
    const uint32_t length = GetU32(At(offset));
    const uint32_t checksum = GetU32(At(offset) + 4);
    s = Fill(offset, kFrameHeaderBytes + length, &ok);
    if (!s.ok()) return s;
    if (!ok) {
      *kind = Frame::kTruncated;
      return absl::OkStatus();
    }
    const char* data = At(offset) + kFrameHeaderBytes;
    *next = offset + kFrameHeaderBytes + length;
    if (FrameChecksum(data, length) != checksum) {
      *kind = Frame::kBadChecksum;
      return absl::OkStatus();
    }
    *kind = Frame::kOk;
    *payload = absl::string_view(data, length);
    return absl::OkStatus();
  }

  // Whether bytes [offset, end) are all zero, as a file extended by a crash
  // before its data reached the disk reads.
  absl::StatusOr<bool> AllZeroFrom(int64_t offset) {
    std::string chunk;
    while (offset < end_) {
      const int64_t n = std::min(kReadChunkBytes, end_ - offset);
      chunk.resize(static_cast<size_t>(n));
      size_t got = 0;
      absl::Status s =
          PreadAll(fd_, chunk.data(), chunk.size(), offset, path_, &got);
      if (!s.ok()) return s;
      for (size_t i = 0; i < got; ++i) {
        if (chunk[i] != 0) return false;
      }
      if (got < chunk.size()) break;
      offset += n;
    }
    return true;
  }

 private:
  const char* At(int64_t offset) const {
    return buf_.data() + (offset - buf_offset_);
  }

  // Makes [offset, offset + n) available in buf_; *ok is false when the
  // file ends first.
  absl::Status Fill(int64_t offset, int64_t n, bool* ok) {
    if (offset >= buf_offset_ &&
        offset + n <= buf_offset_ + static_cast<int64_t>(buf_.size())) {
      *ok = true;
      return absl::OkStatus();
    }
    if (offset + n > end_) {
      *ok = false;
      return absl::OkStatus();
    }
    const int64_t want = std::max(n, std::min(kReadChunkBytes, end_ - offset));
    buf_.resize(static_cast<size_t>(want));
    buf_offset_ = offset;
    size_t got = 0;
    absl::Status s =
        PreadAll(fd_, buf_.data(), buf_.size(), offset, path_, &got);
    if (!s.ok()) return s;
    buf_.resize(got);
    *ok = static_cast<int64_t>(got) >= n;
    return absl::OkStatus();
  }

  const int fd_;
  const std::string path_;
  int64_t end_;
  std::string buf_;
  int64_t buf_offset_ = 0;
};

bool ParseSegmentName(absl::string_view name, uint64_t* segment) {
  if (name.size() !=
          kSegmentPrefix.size() + kSegmentDigits + kSegmentSuffix.size() ||
      !absl::StartsWith(name, kSegmentPrefix) ||
      !absl::EndsWith(name, kSegmentSuffix)) {
    return false;
  }
  absl::string_view digits = name.substr(kSegmentPrefix.size(), kSegmentDigits);
  if (!std::all_of(digits.begin(), digits.end(),
                   [](char c) { return c >= '0' && c <= '9'; })) {
    return false;
  }
  return absl::SimpleAtoi(digits, segment);
}

// The spool holds unit ids: only its owner may read it, whatever the umask
// (which can only take bits away from these).
constexpr mode_t kDirMode = 0700;
constexpr mode_t kFileMode = 0600;

// Creates `dir` (and missing parents) with kDirMode, then makes it and
// everything in it owner-only: a directory an earlier version or an
// operator left more open is tightened, not refused, since nothing but
// the mode is wrong with it. PERMISSION_DENIED when that cannot be done
// (e.g. the directory belongs to another user).
absl::Status CreateOwnerOnly(const std::string& dir) {
  std::error_code ec;
  const std::filesystem::path path(dir);
  if (path.has_parent_path()) {
    std::filesystem::create_directories(path.parent_path(), ec);
    if (ec) {
      return absl::InternalError(
          absl::StrCat("cannot create the parent of spool directory ", dir,
                       ": ", ec.message()));
    }
  }
  if (::mkdir(dir.c_str(), kDirMode) != 0 && errno != EEXIST) {
    return IoError("cannot create spool directory", dir, errno);
  }
  if (!std::filesystem::is_directory(path, ec)) {
    return absl::InvalidArgumentError(
        absl::StrCat("spool directory ", dir,
                     " exists and is not a directory; pass a "
                     "directory, or a path that does not exist yet"));
  }
  auto restrict_mode = [&](const std::string& p, mode_t want) {
    struct stat st;
    if (::stat(p.c_str(), &st) != 0) {
      return IoError("cannot stat", p, errno);
    }
    if ((st.st_mode & 0777) == want || ::chmod(p.c_str(), want) == 0) {
      return absl::OkStatus();
    }
    return absl::PermissionDeniedError(absl::StrFormat(
        "%s has mode %04o and cannot be made owner-only (%04o): %s; the "
        "spool holds unit ids, so give abexp-server a spool directory its "
        "own user owns",
        p, st.st_mode & 0777, want, std::strerror(errno)));
  };
  if (absl::Status s = restrict_mode(dir, kDirMode); !s.ok()) return s;
  for (auto it = std::filesystem::recursive_directory_iterator(dir, ec);
       !ec && it != std::filesystem::recursive_directory_iterator();
       it.increment(ec)) {
    const std::filesystem::file_status st = it->symlink_status(ec);
    if (ec) break;
    if (std::filesystem::is_directory(st)) {
      if (absl::Status s = restrict_mode(it->path().string(), kDirMode);
          !s.ok()) {
        return s;
      }
    } else if (std::filesystem::is_regular_file(st)) {
      if (absl::Status s = restrict_mode(it->path().string(), kFileMode);
          !s.ok()) {
        return s;
      }
    }
  }
  if (ec) {
    return absl::InternalError(
        absl::StrCat("cannot list spool directory ", dir, ": ", ec.message()));
  }
  return absl::OkStatus();
}

absl::Status SyncDirectory(const std::string& dir) {
  int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return IoError("cannot open directory", dir, errno);
  FdCloser closer(fd);
  if (::fsync(fd) != 0) return IoError("cannot fsync directory", dir, errno);
  return absl::OkStatus();
}

// Reads the header of segment file `path` (`size` bytes), if it has one:
// where its records begin and the length of the segment before it.
// DATA_LOSS for a damaged header.
absl::Status ReadSegmentHeader(const std::string& path, int64_t size,
                               int64_t* records_start,
                               std::optional<int64_t>* previous_length) {
  *records_start = 0;
  previous_length->reset();
  if (size < 4) return absl::OkStatus();
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return IoError("cannot open spool segment", path, errno);
  FdCloser closer(fd);
  char buf[kSegmentHeaderBytes];
  size_t got = 0;
  absl::Status s = PreadAll(fd, buf, sizeof(buf), 0, path, &got);
  if (!s.ok()) return s;
  if (GetU32(buf) != kHeaderMarker) return absl::OkStatus();  // older format
  if (got < sizeof(buf) || GetU32(buf + 4) != kSegmentMagic ||
      GetU32(buf + 8) != kSegmentVersion ||
      XXH32(buf, kSegmentHeaderBytes - 4, 0) != GetU32(buf + 28)) {
    return absl::DataLossError(absl::StrCat(
        "spool segment ", path,
        " has a damaged header (its first 32 bytes); the records after it "
        "were acknowledged. Keep a copy of the spool directory, then move "
        "the file aside to start the server"));
  }
  *records_start = kSegmentHeaderBytes;
  *previous_length = static_cast<int64_t>(GetU64(buf + 16));
  return absl::OkStatus();
}

// Copies bytes [from, to) of file `path` to a new file `dest`, synced when
// `sync`.
absl::Status CopyRange(const std::string& path, int64_t from, int64_t to,
                       const std::string& dest, bool sync) {
  int in = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (in < 0) return IoError("cannot open", path, errno);
  FdCloser in_closer(in);
  int out =
      ::open(dest.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, kFileMode);
  if (out < 0) return IoError("cannot create", dest, errno);
  FdCloser out_closer(out);
  std::string chunk;
  for (int64_t at = from; at < to;) {
    chunk.resize(static_cast<size_t>(std::min(kReadChunkBytes, to - at)));
    size_t got = 0;
    absl::Status s = PreadAll(in, chunk.data(), chunk.size(), at, path, &got);
    if (!s.ok()) return s;
    if (got == 0) break;
    s = WriteAll(out, chunk.data(), got, dest);
    if (!s.ok()) return s;
    at += static_cast<int64_t>(got);
  }
  return sync ? SyncFd(out, dest) : absl::OkStatus();
}

}  // namespace

struct Spool::Writer {
  absl::Span<const std::string> records;
  int64_t bytes = 0;  // framed
  bool done = false;
  absl::Status status;
  // Signalled (under mu_) when this append is done, when it becomes the
  // front of writers_ (the next leader), and, while it leads a group and
  // waits for others to join, when the group is full. One wake per event
  // for one thread: a Mutex condition would be evaluated by every unlock of
  // mu_ and, with tens of appends queued, cost more than the writes.
  absl::CondVar cv;
};

Spool::Spool(std::string dir, SpoolOptions options, int lock_fd, int dir_fd)
    : dir_(std::move(dir)),
      options_(options),
      lock_fd_(lock_fd),
      dir_fd_(dir_fd) {}

Spool::~Spool() {
  if (active_fd_ >= 0 && recovered_) {
    // Record where the acknowledged records end, so that the next Open()
    // notices a segment cut shorter, even at a record boundary. Best
    // effort: without it the next Open() checks against an older end.
    absl::MutexLock replay_lock(&replay_mu_);
    Position acked;
    bool write = false;
    {
      absl::MutexLock lock(&mu_);
      acked = AckedEnd();
      write = failed_.ok() && !(acked == checkpoint_acked_);
    }
    if (write) (void)WriteCheckpoint(read_pos_, acked);
  }
  if (active_fd_ >= 0) ::close(active_fd_);
  ::close(dir_fd_);
  ::close(lock_fd_);  // releases the flock
}

Spool::Position Spool::AckedEnd() const {
  return Position{active_segment_, active_size_ > RecordsStart(active_segment_)
                                       ? static_cast<uint64_t>(active_size_)
                                       : 0};
}

int64_t Spool::RecordsStart(uint64_t segment) const {
  auto it = records_starts_.find(segment);
  return it == records_starts_.end() ? 0 : it->second;
}

std::string Spool::SegmentGone(int active_fd) {
  struct stat segment;
  if (active_fd >= 0 && ::fstat(active_fd, &segment) == 0 &&
      segment.st_nlink == 0) {
    return "lost the segment file it was appending to (deleted)";
  }
  return "";
}

std::string Spool::FilesGone() const {
  struct stat opened;
  if (::fstat(dir_fd_, &opened) != 0) {
    return absl::StrCat("cannot be checked (", std::strerror(errno), ")");
  }
  if (opened.st_nlink == 0) return "was deleted";
  struct stat now;
  if (::stat(dir_.c_str(), &now) != 0) {
    return absl::StrCat("was moved away or deleted (", std::strerror(errno),
                        ")");
  }
  if (now.st_dev != opened.st_dev || now.st_ino != opened.st_ino) {
    return "was moved away or replaced by another directory";
  }
  return "";
}

void Spool::MarkLost(const std::string& why) {
  if (lost_.load()) return;
  // Acknowledged and not replayed: this spool can no longer replay them.
  lost_records_.store(pending_records_);
  lost_.store(true);
  pending_records_ = 0;
  failed_ = absl::UnavailableError(absl::StrFormat(
      "local spool %s %s while the server was running, so writes can no "
      "longer be made durable in it and none is acknowledged from it. %d "
      "writes it had acknowledged and not replayed were in it%s. Restart "
      "abexp-server to spool again (it creates the directory afresh), and "
      "give it a --spool_dir that nothing else deletes or moves",
      dir_, why, lost_records_.load(),
      lost_records_.load() == 0
          ? ""
          : " and are lost to this server (if the directory was moved, they "
            "are still in it: a server started with --spool_dir naming it "
            "replays them)"));
}

absl::Status Spool::CheckIntact() {
  const std::string gone = FilesGone();
  absl::MutexLock lock(&mu_);
  if (!gone.empty()) MarkLost(gone);
  return failed_;
}

absl::Status Spool::ExplainReplayError(absl::Status s) {
  if (s.ok()) return s;
  absl::Status intact = CheckIntact();
  return intact.ok() ? s : intact;
}

std::string Spool::SegmentPath(uint64_t segment) const {
  return absl::StrFormat("%s/%s%020d%s", dir_, kSegmentPrefix, segment,
                         kSegmentSuffix);
}

absl::Status Spool::SyncDir() {
  return options_.sync ? SyncDirectory(dir_) : absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<Spool>> Spool::Open(const std::string& dir,
                                                   SpoolOptions options) {
  if (dir.empty()) {
    return absl::InvalidArgumentError(
        "spool directory is empty; pass a directory on a local disk");
  }
  if (options.max_bytes <= 0 || options.segment_bytes <= 0 ||
      options.max_group_bytes <= 0 || options.max_group_records <= 0 ||
      options.group_commit_window < absl::ZeroDuration()) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "spool options out of range (max_bytes=%d segment_bytes=%d "
        "max_group_bytes=%d max_group_records=%d group_commit_window=%s); "
        "sizes and counts must be positive and the window not negative",
        options.max_bytes, options.segment_bytes, options.max_group_bytes,
        options.max_group_records,
        absl::FormatDuration(options.group_commit_window)));
  }
  if (absl::Status s = CreateOwnerOnly(dir); !s.ok()) return s;
  const std::string lock_path = absl::StrCat(dir, "/", kLockName);
  int lock_fd =
      ::open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, kFileMode);
  if (lock_fd < 0) return IoError("cannot open", lock_path, errno);
  if (::flock(lock_fd, LOCK_EX | LOCK_NB) != 0) {
    const int err = errno;
    ::close(lock_fd);
    if (err == EWOULDBLOCK) {
      return absl::FailedPreconditionError(absl::StrCat(
          "spool directory ", dir,
          " is in use by another abexp process (or another Spool in this "
          "one); give each server its own spool directory"));
    }
    return IoError("cannot lock", lock_path, err);
  }
  int dir_fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dir_fd < 0) {
    const int err = errno;
    ::close(lock_fd);
    return IoError("cannot open spool directory", dir, err);
  }
  std::unique_ptr<Spool> spool(new Spool(dir, options, lock_fd, dir_fd));
  absl::Status s = spool->Recover();
  if (!s.ok()) return s;
  return spool;
}

// The CHECKPOINT file's positions, or nullopt when there is none.
absl::StatusOr<std::optional<Spool::Checkpoint>> Spool::ReadCheckpoint() const {
  const std::string checkpoint_path = absl::StrCat(dir_, "/", kCheckpointName);
  int fd = ::open(checkpoint_path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0 && errno != ENOENT) {
    return IoError("cannot open", checkpoint_path, errno);
  }
  if (fd < 0) return std::nullopt;
  FdCloser closer(fd);
  char buf[kCheckpointBytes + 1];
  size_t got = 0;
  absl::Status s = PreadAll(fd, buf, sizeof(buf), 0, checkpoint_path, &got);
  if (!s.ok()) return s;
  const int64_t length = static_cast<int64_t>(got);
  const bool valid =
      (length == kCheckpointV1Bytes && XXH32(buf, 16, 0) == GetU32(buf + 16)) ||
      (length == kCheckpointBytes && XXH32(buf, 32, 0) == GetU32(buf + 32));
  if (!valid) {
    return absl::DataLossError(absl::StrCat(
        "spool checkpoint ", checkpoint_path,
        " is corrupt. Deleting it replays the whole spool from its "
        "oldest segment, which is safe: records carry idempotency keys"));
  }
  Checkpoint checkpoint;
  Position& pos = checkpoint.read;
  pos.segment = GetU64(buf);
  pos.offset = GetU64(buf + 8);
  if (length == kCheckpointBytes) {
    checkpoint.acked_end = Position{GetU64(buf + 16), GetU64(buf + 24)};
  }
  if (pos.segment > kMaxSegment ||
      (checkpoint.acked_end.has_value() &&
       checkpoint.acked_end->segment > kMaxSegment)) {
    return absl::DataLossError(absl::StrCat(
        "spool checkpoint ", checkpoint_path, " names segment ", pos.segment,
        ", beyond any abexp-server writes. Deleting it replays the whole "
        "spool from its oldest segment, which is safe: records carry "
        "idempotency keys"));
  }
  return checkpoint;
}

// The segment numbers in the directory, ascending.
absl::StatusOr<std::vector<uint64_t>> Spool::ListSegments() const {
  std::vector<uint64_t> segments;
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator(dir_, ec)) {
    const std::string name = entry.path().filename().string();
    uint64_t segment = 0;
    if (ParseSegmentName(name, &segment)) segments.push_back(segment);
  }
  if (ec) {
    return absl::InternalError(
        absl::StrCat("cannot list spool directory ", dir_, ": ", ec.message()));
  }
  std::sort(segments.begin(), segments.end());
  if (!segments.empty() && segments.back() > kMaxSegment) {
    return absl::DataLossError(absl::StrCat(
        "spool segment ", SegmentPath(segments.back()), " is numbered beyond ",
        kMaxSegment, ", which abexp-server never writes; move it out of ", dir_,
        " (it is not a spool segment)"));
  }
  return segments;
}

absl::Status Spool::StartAfresh(Position pos) {
  // Nothing is pending, so numbering may start again at 1 rather than
  // pass the last number Open accepts.
  const uint64_t first = pos.offset == 0             ? pos.segment
                         : pos.segment < kMaxSegment ? pos.segment + 1
                                                     : 1;
  // Written even when `pos` stays: the acknowledged end it held is gone.
  if (first != pos.segment) pos = Position{first, 0};
  if (absl::Status s = WriteCheckpoint(pos, Position{first, 0}); !s.ok()) {
    return s;
  }
  const std::string path = SegmentPath(first);
  active_fd_ = ::open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC,
                      kFileMode);
  if (active_fd_ < 0) {
    return IoError("cannot create spool segment", path, errno);
  }
  absl::Status s = SyncDir();
  if (!s.ok()) return s;
  active_segment_ = first;
  active_size_ = 0;
  segment_sizes_[first] = 0;
  read_pos_ = pos;
  checkpoint_acked_ = Position{first, 0};
  return absl::OkStatus();
}

// The checkpoint's segment must be the first one left, and the rest must
// follow it without a gap.
absl::Status Spool::CheckSegmentsFollow(const std::vector<uint64_t>& segments,
                                        Position pos) const {
  if (segments.front() != pos.segment) {
    return absl::DataLossError(absl::StrCat(
        "spool segment ", SegmentPath(pos.segment),
        " named by the checkpoint is missing while later segments exist; "
        "records were lost. Delete ",
        absl::StrCat(dir_, "/", kCheckpointName),
        " to replay the remaining segments"));
  }
  for (size_t i = 1; i < segments.size(); ++i) {
    if (segments[i] != segments[i - 1] + 1) {
      return absl::DataLossError(absl::StrCat(
          "spool segment ", SegmentPath(segments[i - 1] + 1),
          " is missing between ", SegmentPath(segments[i - 1]), " and ",
          SegmentPath(segments[i]), "; records were lost"));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<int64_t> Spool::ScanSegment(const std::string& path,
                                           int64_t size, int64_t offset,
                                           bool last) {
  if (offset > size) {
    return absl::DataLossError(absl::StrFormat(
        "spool segment %s is %d bytes long but the checkpoint %s says "
        "%d bytes were replayed; the file was truncated",
        path, size, absl::StrCat(dir_, "/", kCheckpointName), offset));
  }
  absl::StatusOr<std::unique_ptr<SegmentReader>> reader =
      SegmentReader::Open(path, size);
  if (!reader.ok()) return reader.status();
  while (true) {
    SegmentReader::Frame kind;
    absl::string_view payload;
    int64_t next = 0;
    absl::Status s = (*reader)->Read(offset, &kind, &payload, &next);
    if (!s.ok()) return s;
    if (kind == SegmentReader::Frame::kEnd) return size;
    if (kind == SegmentReader::Frame::kOk) {
      ++pending_records_;
      offset = next;
      continue;
    }
    // A torn tail: the last write of the last segment did not complete
    // (the record runs past the end, or the end was never written and
    // reads as zeros or garbage up to end of file). Its Append() never
    // returned OK.
    bool torn = false;
    if (last) {
      if (kind == SegmentReader::Frame::kTruncated) {
        torn = true;
      } else {
        // A bad last frame, or zeros from here to the end.
        torn = next == size;
        if (!torn) {
          absl::StatusOr<bool> zeros = (*reader)->AllZeroFrom(offset);
          if (!zeros.ok()) return zeros.status();
          torn = *zeros;
        }
      }
    }
    if (!torn) {
      return absl::DataLossError(absl::StrFormat(
          "spool segment %s is corrupt at offset %d (%s) and valid data "
          "may follow; acknowledged records were damaged on disk. Move the "
          "spool directory %s aside to start the server, and inspect it",
          path, offset,
          kind == SegmentReader::Frame::kTruncated
              ? "record runs past the end of a sealed segment"
              : "checksum mismatch",
          dir_));
    }
    return offset;
  }
}

absl::Status Spool::TruncateSegment(const std::string& path,
                                    int64_t valid_end) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CLOEXEC);
  if (fd < 0) return IoError("cannot open", path, errno);
  FdCloser closer(fd);
  if (::ftruncate(fd, valid_end) != 0) {
    return IoError("cannot truncate the damaged or torn end of", path, errno);
  }
  return options_.sync ? SyncFd(fd, path) : absl::OkStatus();
}

absl::StatusOr<std::string> Spool::KeepAside(const std::string& path,
                                             int64_t from, int64_t size) {
  const std::string damaged = absl::StrCat(dir_, "/", kDamagedDir);
  if (::mkdir(damaged.c_str(), kDirMode) != 0 && errno != EEXIST) {
    return IoError("cannot create", damaged, errno);
  }
  const std::string dest = absl::StrCat(
      damaged, "/", std::filesystem::path(path).filename().string(), ".from-",
      from);
  absl::Status s = CopyRange(path, from, size, dest, options_.sync);
  if (s.ok() && options_.sync) s = SyncDirectory(damaged);
  if (!s.ok()) return s;
  return dest;
}

void Spool::CheckSealedLength(const std::string& path, int64_t size,
                              const SegmentStart& next) {
  if (!next.previous_length.has_value() || size >= *next.previous_length) {
    return;
  }
  // Counted by the server as abexp_spool_damaged_at_start.
  damage_.push_back(absl::StrFormat(
      "spool segment %s is %d bytes long but was %d bytes when the next "
      "segment was started: the last %d bytes, acknowledged records, were "
      "cut off (at a record boundary, so no torn record shows it) and "
      "cannot be replayed; the records before them are replayed",
      path, size, *next.previous_length, *next.previous_length - size));
}

absl::StatusOr<bool> Spool::CheckAcknowledgedEnd(
    const std::string& path, uint64_t segment, int64_t size, int64_t valid_end,
    std::optional<Position> acked) {
  if (!acked.has_value() || acked->segment != segment ||
      valid_end >= static_cast<int64_t>(acked->offset)) {
    return false;  // any bytes past valid_end are a torn tail
  }
  std::string kept;
  if (size > valid_end) {
    absl::StatusOr<std::string> dest = KeepAside(path, valid_end, size);
    if (!dest.ok()) return dest.status();
    kept = *dest;
  }
  // Counted by the server as abexp_spool_damaged_at_start.
  damage_.push_back(absl::StrFormat(
      "spool segment %s holds intact records up to byte %d, but records were "
      "acknowledged in it up to byte %d: %d bytes of acknowledged records "
      "are %s and cannot be replayed; the records before them are replayed",
      path, valid_end, acked->offset,
      static_cast<int64_t>(acked->offset) - valid_end,
      kept.empty() ? "missing (the file was cut at a record boundary)"
                   : absl::StrCat("missing or damaged; the ", size - valid_end,
                                  " bytes after the last intact record are "
                                  "kept in ",
                                  kept)));
  return true;
}

absl::Status Spool::Recover() {
  absl::MutexLock replay_lock(&replay_mu_);
  absl::MutexLock lock(&mu_);

  // Segments, and leftovers of an interrupted checkpoint write.
  absl::StatusOr<std::vector<uint64_t>> listed = ListSegments();
  if (!listed.ok()) return listed.status();
  std::vector<uint64_t>& segments = *listed;
  std::error_code ec;
  std::filesystem::remove(absl::StrCat(dir_, "/", kCheckpointTmpName), ec);

  // Where replay resumes, and where the acknowledged records ended.
  absl::StatusOr<std::optional<Checkpoint>> checkpoint = ReadCheckpoint();
  if (!checkpoint.ok()) return checkpoint.status();
  Position pos;
  std::optional<Position> acked;
  if (checkpoint->has_value()) {
    pos = (*checkpoint)->read;
    acked = (*checkpoint)->acked_end;
  } else if (!segments.empty()) {
    pos.segment = segments.front();
  }

  // Segments before the checkpoint were replayed; their deletion was cut
  // short.
  while (!segments.empty() && segments.front() < pos.segment) {
    const std::string path = SegmentPath(segments.front());
    if (::unlink(path.c_str()) != 0 && errno != ENOENT) {
      return IoError("cannot delete replayed spool segment", path, errno);
    }
    segments.erase(segments.begin());
  }

  // Acknowledged records in segments after the last one left (or in any,
  // when none is left) were deleted.
  const uint64_t last_left = segments.empty() ? pos.segment : segments.back();
  if (acked.has_value() && acked->offset > 0 &&
      (acked->segment > last_left ||
       (segments.empty() && acked->segment == pos.segment &&
        acked->offset > pos.offset))) {
    // Counted by the server as abexp_spool_damaged_at_start.
    damage_.push_back(absl::StrFormat(
        "spool segment %s, which held acknowledged records up to byte %d, "
        "is missing (deleted from %s); those records cannot be replayed",
        SegmentPath(acked->segment), acked->offset, dir_));
  }

  // Nothing left (or segments deleted by hand): start afresh after the
  // checkpoint.
  if (segments.empty()) {
    absl::Status s = StartAfresh(pos);
    if (s.ok()) recovered_ = true;
    return s;
  }

  absl::Status s = CheckSegmentsFollow(segments, pos);
  if (!s.ok()) return s;
  std::vector<int64_t> sizes(segments.size());
  std::vector<SegmentStart> starts(segments.size());
  for (size_t i = 0; i < segments.size(); ++i) {
    const std::string path = SegmentPath(segments[i]);
    struct stat st;
    if (::stat(path.c_str(), &st) != 0) {
      return IoError("cannot stat", path, errno);
    }
    sizes[i] = st.st_size;
    s = ReadSegmentHeader(path, sizes[i], &starts[i].records_start,
                          &starts[i].previous_length);
    if (!s.ok()) return s;
  }
  bool cut = false;
  for (size_t i = 0; i < segments.size(); ++i) {
    const uint64_t segment = segments[i];
    const bool last = i + 1 == segments.size();
    const std::string path = SegmentPath(segment);
    const int64_t start = starts[i].records_start;
    const int64_t offset =
        segment == pos.segment
            ? std::max(static_cast<int64_t>(pos.offset), start)
            : start;
    absl::StatusOr<int64_t> valid_end =
        ScanSegment(path, sizes[i], offset, last);
    if (!valid_end.ok()) return valid_end.status();
    if (!last) CheckSealedLength(path, sizes[i], starts[i + 1]);
    if (last) {
      absl::StatusOr<bool> damaged =
          CheckAcknowledgedEnd(path, segment, sizes[i], *valid_end, acked);
      if (!damaged.ok()) return damaged.status();
      cut = *damaged;
    }
    if (*valid_end < sizes[i]) {
      s = TruncateSegment(path, *valid_end);
      if (!s.ok()) return s;
      if (!cut) torn_bytes_dropped_ = sizes[i] - *valid_end;
    }
    segment_sizes_[segment] = *valid_end;
    if (start > 0) records_starts_[segment] = start;
    disk_bytes_ += *valid_end - start;
    if (last) {
      int fd = ::open(path.c_str(), O_WRONLY | O_APPEND | O_CLOEXEC);
      if (fd < 0) return IoError("cannot open", path, errno);
      active_fd_ = fd;
      active_segment_ = segment;
      active_size_ = *valid_end;
    }
  }
  read_pos_ = pos;
  checkpoint_acked_ = acked.value_or(Position{});
  if (cut || !damage_.empty()) {
    // The acknowledged end moved back: the next Open() checks against the
    // records that are left, not the lost ones again.
    s = WriteCheckpoint(pos, AckedEnd());
    if (!s.ok()) return s;
    checkpoint_acked_ = AckedEnd();
  }
  recovered_ = true;
  return absl::OkStatus();
}

// One group commit: the appends its leader writes and syncs together.
struct Spool::Group {
  std::vector<Writer*> writers;
  int64_t bytes = 0;  // framed
  int64_t records = 0;
  // Whether the group starts a new segment, and the active segment and its
  // durable size when the group was formed.
  bool roll = false;
  uint64_t old_segment = 0;
  int64_t old_size = 0;
  // Filled in by the write: whether a new segment was opened, whether the
  // failure leaves the segment untrustworthy, fdatasync calls, the outcome.
  bool rolled = false;
  bool poisoned = false;
  uint64_t syncs = 0;
  absl::Status status;
  // Set after the write when the directory or segment is gone (FilesGone).
  std::string gone;

  uint64_t segment() const { return rolled ? old_segment + 1 : old_segment; }
};

absl::StatusOr<int64_t> Spool::FramedBytes(
    absl::Span<const std::string> records) const {
  int64_t bytes = 0;
  for (const std::string& r : records) {
    if (static_cast<int64_t>(r.size()) > kMaxPayloadBytes) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "spool record of %d bytes is larger than the 4 GiB limit of the "
          "format; split it",
          r.size()));
    }
    bytes += kFrameHeaderBytes + static_cast<int64_t>(r.size());
  }
  if (bytes > options_.max_bytes) {
    // UNAVAILABLE, not INVALID_ARGUMENT: the same call succeeds while Redis
    // takes writes, and clients drop what they are told is invalid.
    return absl::UnavailableError(absl::StrFormat(
        "%d spool records take %d bytes, more than the whole spool can hold "
        "(max_bytes %d, abexp-server's --spool_max_bytes); send them in "
        "smaller calls or raise the limit",
        records.size(), bytes, options_.max_bytes));
  }
  return bytes;
}

absl::Status Spool::Enqueue(Writer* w) {
  if (!failed_.ok()) return failed_;
  if (disk_bytes_ + queued_bytes_ + w->bytes > options_.max_bytes) {
    const int64_t used = disk_bytes_ + queued_bytes_;
    return absl::UnavailableError(absl::StrFormat(
        "local spool %s is full (%d of %d bytes used, %d more needed) while "
        "Redis is unavailable; retry later: the spool drains into Redis as "
        "soon as it is back. To ride out longer outages raise the spool's "
        "max_bytes",
        dir_, used, options_.max_bytes, w->bytes));
  }
  writers_.push_back(w);
  queued_bytes_ += w->bytes;
  queued_records_ += static_cast<int64_t>(w->records.size());
  if (writers_.size() > 1 && GroupFull()) writers_.front()->cv.Signal();
  return absl::OkStatus();
}

bool Spool::GroupFull() const {
  return queued_records_ >= options_.max_group_records ||
         queued_bytes_ >= options_.max_group_bytes;
}

Spool::Group Spool::FormGroup() {
  // Wait briefly for others to join, then write and sync them all at once.
  if (options_.group_commit_window > absl::ZeroDuration()) {
    Writer* leader = writers_.front();
    const absl::Time deadline = absl::Now() + options_.group_commit_window;
    while (!GroupFull() && !leader->cv.WaitWithDeadline(&mu_, deadline)) {
    }
  }
  Group group;
  for (Writer* g : writers_) {
    if (!group.writers.empty() &&
        group.bytes + g->bytes > options_.max_group_bytes) {
      break;
    }
    group.writers.push_back(g);
    group.bytes += g->bytes;
    group.records += static_cast<int64_t>(g->records.size());
  }
  group.roll = active_size_ > RecordsStart(active_segment_) &&
               active_size_ + group.bytes > options_.segment_bytes;
  group.old_segment = active_segment_;
  group.old_size = active_size_;
  group.status = failed_;
  return group;
}

void Spool::RollSegment(Group* group) {
  if (group->old_segment >= kMaxSegment) {
    // Open() refuses segments past kMaxSegment, so never write one.
    group->status = absl::ResourceExhaustedError(absl::StrCat(
        "local spool ", dir_, " has used every segment number up to ",
        kMaxSegment, "; let it drain, then stop the server and delete it"));
    return;
  }
  const std::string path = SegmentPath(group->old_segment + 1);
  int fd =
      ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_APPEND | O_CLOEXEC,
             kFileMode);
  if (fd < 0) {
    group->status = absl::UnavailableError(absl::StrCat(
        "cannot create spool segment ", path, ": ", std::strerror(errno)));
    return;
  }
  // The header says how long the segment before it is (every group in it
  // was synced), so that Open() notices that one cut shorter later.
  char header[kSegmentHeaderBytes];
  EncodeSegmentHeader(group->old_size, header);
  group->status = WriteAll(fd, header, sizeof(header), path);
  if (group->status.ok() && options_.sync) group->status = SyncFd(fd, path);
  if (group->status.ok()) group->status = SyncDir();
  if (group->status.ok()) {
    ::close(active_fd_);
    active_fd_ = fd;
    group->rolled = true;
  } else {
    ::close(fd);
    ::unlink(path.c_str());
    group->status = absl::UnavailableError(group->status.message());
  }
}

void Spool::WriteGroup(Group* group) {
  const int64_t start_size =
      group->rolled ? kSegmentHeaderBytes : group->old_size;
  const std::string path = SegmentPath(group->segment());
  group_buffer_.clear();
  group_buffer_.reserve(static_cast<size_t>(group->bytes));
  char header[kFrameHeaderBytes];
  for (const Writer* g : group->writers) {
    for (const std::string& r : g->records) {
      const uint32_t length = static_cast<uint32_t>(r.size());
      PutU32(length, header);
      PutU32(FrameChecksum(r.data(), length), header + 4);
      group_buffer_.append(header, sizeof(header));
      group_buffer_.append(r);
    }
  }
  absl::Status& status = group->status;
  status =
      WriteAll(active_fd_, group_buffer_.data(), group_buffer_.size(), path);
  if (!status.ok()) {
    // Undo the partial write so later frames follow complete ones.
    if (::ftruncate(active_fd_, start_size) != 0) {
      group->poisoned = true;
      status = absl::UnavailableError(absl::StrCat(
          status.message(),
          "; then cannot truncate the partial write: ", std::strerror(errno)));
    } else {
      status = absl::UnavailableError(status.message());
    }
  } else if (options_.sync) {
    ++group->syncs;
    status = SyncFd(active_fd_, path);
    if (!status.ok()) {
      // After a failed fdatasync the kernel may have dropped the dirty
      // pages; nothing written to this file can be trusted any more.
      group->poisoned = true;
      status = absl::UnavailableError(status.message());
    }
  }
  if (group_buffer_.capacity() >
      static_cast<size_t>(options_.max_group_bytes)) {
    std::string().swap(group_buffer_);
  }
}

void Spool::FinishGroup(const Group& group, const Writer* leader) {
  const uint64_t segment = group.segment();
  if (group.rolled) {
    active_segment_ = segment;
    active_size_ = kSegmentHeaderBytes;
    segment_sizes_[segment] = kSegmentHeaderBytes;
    records_starts_[segment] = kSegmentHeaderBytes;
  }
  if (group.status.ok()) {
    active_size_ += group.bytes;
    segment_sizes_[segment] += group.bytes;
    disk_bytes_ += group.bytes;
    pending_records_ += group.records;
    stats_.appends += group.writers.size();
    stats_.records += static_cast<uint64_t>(group.records);
  } else if (group.poisoned && failed_.ok()) {
    failed_ = absl::UnavailableError(absl::StrCat(
        "local spool ", dir_, " stopped accepting records after an I/O error (",
        group.status.message(),
        "); fix the disk and restart the server, which recovers the spool"));
  }
  ++stats_.group_commits;
  stats_.syncs += group.syncs;
  for (Writer* g : group.writers) {
    writers_.pop_front();
    if (g != leader) {
      g->status = group.status;
      g->done = true;
      g->cv.Signal();
    }
  }
  queued_bytes_ -= group.bytes;
  queued_records_ -= group.records;
  if (!writers_.empty()) writers_.front()->cv.Signal();  // the next leader
}

absl::Status Spool::Append(absl::Span<const std::string> records) {
  if (records.empty()) return absl::OkStatus();
  Writer w;
  w.records = records;
  absl::StatusOr<int64_t> bytes = FramedBytes(records);
  if (!bytes.ok()) return bytes.status();
  w.bytes = *bytes;

  mu_.Lock();
  absl::Status queued = Enqueue(&w);
  if (!queued.ok()) {
    mu_.Unlock();
    return queued;
  }
  while (!w.done && writers_.front() != &w) w.cv.Wait(&mu_);
  if (w.done) {
    absl::Status s = w.status;
    mu_.Unlock();
    return s;
  }
  // This append leads a group.
  Group group = FormGroup();
  mu_.Unlock();

  // Only the leader touches the active segment's descriptor.
  if (group.status.ok() && group.roll) RollSegment(&group);
  if (group.status.ok()) WriteGroup(&group);
  // After the sync: records synced into a deleted file are not durable.
  // One fstat: removing the directory removes its files first. The full
  // check (the directory moved, too) is CheckIntact(), and replay errors.
  group.gone = SegmentGone(active_fd_);
  if (!group.gone.empty()) {
    // Name the directory when it went too (rm -rf), not only the file.
    std::string dir_gone = FilesGone();
    if (!dir_gone.empty()) group.gone = std::move(dir_gone);
  }

  mu_.Lock();
  if (!group.gone.empty()) {
    MarkLost(group.gone);
    group.status = failed_;
  }
  FinishGroup(group, &w);
  mu_.Unlock();
  return group.status;
}

absl::Status Spool::WriteCheckpoint(Position pos, Position acked_end) {
  char buf[kCheckpointBytes];
  PutU64(pos.segment, buf);
  PutU64(pos.offset, buf + 8);
  PutU64(acked_end.segment, buf + 16);
  PutU64(acked_end.offset, buf + 24);
  PutU32(XXH32(buf, 32, 0), buf + 32);
  const std::string tmp = absl::StrCat(dir_, "/", kCheckpointTmpName);
  const std::string path = absl::StrCat(dir_, "/", kCheckpointName);
  int fd =
      ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, kFileMode);
  if (fd < 0) return IoError("cannot create", tmp, errno);
  {
    FdCloser closer(fd);
    absl::Status s = WriteAll(fd, buf, sizeof(buf), tmp);
    if (s.ok() && options_.sync) s = SyncFd(fd, tmp);
    if (!s.ok()) return s;
  }
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    return IoError("cannot rename checkpoint to", path, errno);
  }
  return SyncDir();
}

absl::Status Spool::MoveReadPosition(Position pos, Position acked) {
  absl::Status s = WriteCheckpoint(pos, acked);
  if (!s.ok()) return s;
  read_pos_ = pos;
  checkpoint_acked_ = acked;
  return absl::OkStatus();
}

absl::Status Spool::DeleteSegmentsBefore(uint64_t segment) {
  std::vector<std::pair<uint64_t, int64_t>> doomed;
  {
    absl::MutexLock lock(&mu_);
    for (auto it = segment_sizes_.begin();
         it != segment_sizes_.end() && it->first < segment; ++it) {
      doomed.push_back(*it);
    }
  }
  for (const auto& [seg, size] : doomed) {
    const std::string path = SegmentPath(seg);
    if (::unlink(path.c_str()) != 0 && errno != ENOENT) {
      return IoError("cannot delete replayed spool segment", path, errno);
    }
    absl::MutexLock lock(&mu_);
    disk_bytes_ -= size - RecordsStart(seg);
    segment_sizes_.erase(seg);
    records_starts_.erase(seg);
  }
  return absl::OkStatus();
}

absl::Status Spool::RollIfDrained() {
  uint64_t next = 0;
  uint64_t old = 0;
  bool wrapped = false;
  {
    absl::MutexLock lock(&mu_);
    if (!writers_.empty() || !failed_.ok() ||
        active_size_ <= RecordsStart(active_segment_) ||
        read_pos_.segment != active_segment_ ||
        static_cast<int64_t>(read_pos_.offset) != active_size_) {
      return absl::OkStatus();
    }
    // No leader is running, so the active segment is ours to replace.
    // Everything is replayed, so at the last number Open accepts the
    // numbering starts again at 1.
    wrapped = active_segment_ >= kMaxSegment;
    old = active_segment_;
    next = wrapped ? 1 : active_segment_ + 1;
    const std::string path = SegmentPath(next);
    int fd =
        ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_APPEND | O_CLOEXEC,
               kFileMode);
    if (fd < 0) return IoError("cannot create spool segment", path, errno);
    absl::Status s = SyncDir();
    if (!s.ok()) {
      ::close(fd);
      ::unlink(path.c_str());
      return s;
    }
    ::close(active_fd_);
    active_fd_ = fd;
    active_segment_ = next;
    active_size_ = 0;
    segment_sizes_[next] = 0;
  }
  if (wrapped) {
    // The old segment goes before the checkpoint moves: a crash in between
    // leaves a checkpoint past every segment, which Open reads as drained.
    const std::string path = SegmentPath(old);
    if (::unlink(path.c_str()) != 0 && errno != ENOENT) {
      return IoError("cannot delete replayed spool segment", path, errno);
    }
    absl::MutexLock lock(&mu_);
    disk_bytes_ -= segment_sizes_[old] - RecordsStart(old);
    segment_sizes_.erase(old);
    records_starts_.erase(old);
  }
  // The new segment holds no record yet.
  absl::Status s = MoveReadPosition(Position{next, 0}, Position{next, 0});
  if (!s.ok()) return s;
  return DeleteSegmentsBefore(next);
}

absl::Status Spool::Replay(
    const std::function<absl::Status(absl::Span<const std::string> batch)>&
        sink,
    size_t max_batch, size_t max_records) {
  if (max_batch == 0) {
    return absl::InvalidArgumentError(
        "max_batch is 0; pass the number of records the sink takes at once");
  }
  {
    absl::MutexLock lock(&mu_);
    if (!failed_.ok()) return failed_;  // e.g. the directory is gone
  }
  absl::MutexLock replay_lock(&replay_mu_);
  std::unique_ptr<SegmentReader> reader;
  uint64_t reader_segment = 0;
  std::vector<std::string> batch;
  size_t delivered = 0;
  while (max_records == 0 || delivered < max_records) {
    uint64_t active = 0;
    int64_t end = -1;
    int64_t start = 0;
    Position acked;
    {
      absl::MutexLock lock(&mu_);
      active = active_segment_;
      acked = AckedEnd();
      auto it = segment_sizes_.find(read_pos_.segment);
      if (it != segment_sizes_.end()) end = it->second;
      start = RecordsStart(read_pos_.segment);
    }
    // A segment's header is not a record: offset 0 means its first one.
    if (static_cast<int64_t>(read_pos_.offset) < start) {
      read_pos_.offset = static_cast<uint64_t>(start);
    }
    if (end < 0) {
      return absl::InternalError(
          absl::StrCat("spool replay position names unknown segment ",
                       SegmentPath(read_pos_.segment)));
    }
    if (static_cast<int64_t>(read_pos_.offset) >= end) {
      if (read_pos_.segment == active) {
        return ExplainReplayError(RollIfDrained());
      }
      // Done with a sealed segment: move on, then delete it.
      const Position next{read_pos_.segment + 1, 0};
      absl::Status s = MoveReadPosition(next, acked);
      if (!s.ok()) return ExplainReplayError(s);
      reader.reset();
      s = DeleteSegmentsBefore(next.segment);
      if (!s.ok()) return s;
      continue;
    }
    // The active segment grows as appends land; read up to its durable end.
    if (reader == nullptr || reader_segment != read_pos_.segment) {
      absl::StatusOr<std::unique_ptr<SegmentReader>> r =
          SegmentReader::Open(SegmentPath(read_pos_.segment), end);
      if (!r.ok()) return ExplainReplayError(r.status());
      reader = *std::move(r);
      reader_segment = read_pos_.segment;
    }
    reader->ExtendTo(end);
    batch.clear();
    int64_t offset = static_cast<int64_t>(read_pos_.offset);
    while (batch.size() < max_batch) {
      SegmentReader::Frame kind;
      absl::string_view payload;
      int64_t next = 0;
      absl::Status s = reader->Read(offset, &kind, &payload, &next);
      if (!s.ok()) return s;
      if (kind == SegmentReader::Frame::kEnd) break;
      if (kind != SegmentReader::Frame::kOk) {
        return absl::DataLossError(absl::StrFormat(
            "spool segment %s is corrupt at offset %d (%s): an acknowledged "
            "record was damaged on disk after it was written",
            reader->path(), offset,
            kind == SegmentReader::Frame::kTruncated ? "file too short"
                                                     : "checksum mismatch"));
      }
      batch.emplace_back(payload);
      offset = next;
    }
    absl::Status s = sink(absl::MakeConstSpan(batch));
    if (!s.ok()) return s;
    s = MoveReadPosition(
        Position{read_pos_.segment, static_cast<uint64_t>(offset)}, acked);
    if (!s.ok()) return ExplainReplayError(s);
    delivered += batch.size();
    absl::MutexLock lock(&mu_);
    pending_records_ -= static_cast<int64_t>(batch.size());
  }
  return absl::OkStatus();
}

int64_t Spool::size_bytes() const {
  absl::MutexLock lock(&mu_);
  return disk_bytes_;
}

int64_t Spool::pending_records() const {
  absl::MutexLock lock(&mu_);
  return pending_records_;
}

SpoolStats Spool::stats() const {
  absl::MutexLock lock(&mu_);
  return stats_;
}

}  // namespace abexp
