// A Spool is a durable local queue of opaque records: an append-only log in
// a directory, used to acknowledge recording calls while Redis is down or
// slow, and replayed into Redis, in append order, when it is back and after
// a restart.
//
// Guarantees:
//  - Append() returns OK only after its records are written and fdatasync'ed
//    (when SpoolOptions::sync is on). Concurrent appends share one sync
//    (group commit), so many small calls cost few syncs.
//  - Replay() delivers records in append order, at least once: a batch is
//    removed only after the sink accepted it and the new position is
//    durable; a failed sink sees the same records again next time.
//  - Disk use stays under SpoolOptions::max_bytes: when the spool is full,
//    Append() fails with UNAVAILABLE instead of dropping records.
//  - Open() after a crash truncates a torn tail (a record whose write never
//    completed, hence was never acknowledged) and reports its size; any other
//    damage is DATA_LOSS naming the file and offset, never skipped silently.
//    A segment shorter than what was acknowledged in it (cut by something
//    other than a crash mid-write, even at a record boundary) is reported by
//    damage(), with the bytes after its last intact record kept in
//    "damaged/"; what remains is replayed.
//  - Append() checks, after each sync, that the segment it wrote still has
//    a name; CheckIntact() (and a failed Replay()) that the directory is
//    still the one Open() opened. Once either is not (deleted, moved or
//    replaced under the running process) the spool refuses every append
//    (UNAVAILABLE) instead of acknowledging into files nobody will replay,
//    and reports what it had acknowledged and not replayed as lost.
//
// On disk (docs/storage.md): segment files "spool-<20-digit number>.log",
// each a sequence of frames [u32 length][u32 checksum][payload] (little
// endian; checksum = XXH32 of the payload seeded with its length); a
// "CHECKPOINT" file [u64 segment][u64 offset][u64 segment][u64 offset]
// [u32 XXH32 of those 32 bytes] naming the first record not yet replayed
// and the end of the records acknowledged when it was written (older
// spools have the 20-byte form without that end, which is still read),
// replaced atomically by rename; a segment started by a roll opens with a
// 32-byte header holding the length of the segment before it;
// and a "LOCK" file held with flock() so that one process uses a directory
// at a time. Fully replayed segments are deleted. The records hold unit ids,
// so the directory is 0700 and every file in it 0600, whatever the umask;
// Open() tightens an existing directory that is more open.
//
// Thread-safe: Append() may be called from any number of threads, also
// while Replay() runs (one Replay() runs at a time; others wait). The sink
// runs on the thread that called Replay() and may call Append().
#ifndef ABEXP_SERVER_STORAGE_SPOOL_SPOOL_H_
#define ABEXP_SERVER_STORAGE_SPOOL_SPOOL_H_

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "absl/types/span.h"

namespace abexp {

struct SpoolOptions {
  // Disk space the spool may use, framing included. An Append() that would
  // go over it fails with UNAVAILABLE. Default: 1 GiB.
  int64_t max_bytes = int64_t{1} << 30;
  // A new segment file is started once the current one would grow past this,
  // so that replayed data can be deleted a segment at a time. A single
  // append larger than this gets a segment of its own. Default: 64 MiB.
  int64_t segment_bytes = int64_t{64} << 20;
  // How long the first of a group of concurrent appends waits for others to
  // join before writing and syncing them together. Zero writes at once;
  // appends that arrive during a sync still share the next one.
  // Default: 2ms.
  absl::Duration group_commit_window = absl::Milliseconds(2);
  // The wait above ends early once this many records are queued.
  // Default: 4096.
  int max_group_records = 4096;
  // Appends are added to a group while it stays under this size; bounds the
  // memory of one write. Default: 4 MiB.
  int64_t max_group_bytes = int64_t{4} << 20;
  // fdatasync() each group and fsync() the directory on file changes. Off
  // only in tests: without it an acknowledged record can be lost in a
  // machine crash. Default: true.
  bool sync = true;
};

// Counters for monitoring and tests.
struct SpoolStats {
  uint64_t appends = 0;        // Append() calls that returned OK
  uint64_t records = 0;        // records they wrote
  uint64_t group_commits = 0;  // writes, each of one or more appends
  uint64_t syncs = 0;          // fdatasync() calls on segment files
};

class Spool {
 public:
  // Opens the spool in `dir`, creating the directory (0700) if it does not
  // exist, makes it and everything in it owner-only (directories 0700,
  // files 0600), and recovers it: verifies every record not yet replayed,
  // truncates a torn tail of the last segment (see torn_bytes_dropped()).
  // Errors: INVALID_ARGUMENT for bad options; FAILED_PRECONDITION when
  // another Spool (in this or another process) has `dir` open;
  // PERMISSION_DENIED when the modes cannot be set (another user's
  // directory); DATA_LOSS naming the file and offset of a corrupt record or
  // checkpoint; INTERNAL on I/O errors.
  static absl::StatusOr<std::unique_ptr<Spool>> Open(const std::string& dir,
                                                     SpoolOptions options);

  Spool(const Spool&) = delete;
  Spool& operator=(const Spool&) = delete;
  // REQUIRES: no Append() or Replay() is running.
  ~Spool();

  // Appends `records` (each under 4 GiB; empty strings are fine)
  // and returns once they are durable. All of them or none are acknowledged;
  // after an error none were, though some may still be replayed later.
  // Errors: UNAVAILABLE when the spool is full (retry after a replay frees
  // space), when the records take more than max_bytes (the caller may retry
  // them in smaller appends, or elsewhere), when a write failed, or when the
  // spool's files are gone (see CheckIntact()); INVALID_ARGUMENT for a
  // record of 4 GiB or more.
  absl::Status Append(absl::Span<const std::string> records);

  // Delivers the records not yet replayed, oldest first, in batches of at
  // most `max_batch`, until none are left (records appended meanwhile
  // included) or, when `max_records` is not 0, once at least that many
  // were delivered by this call. Each batch is removed durably after `sink`
  // returns OK. When
  // `sink` fails, returns its status and the same records are delivered
  // again by the next Replay(), in this process or after a restart.
  // Errors: the sink's status; INVALID_ARGUMENT when max_batch is 0;
  // UNAVAILABLE when the spool's files are gone (see CheckIntact());
  // DATA_LOSS when a record no longer matches its checksum; INTERNAL on I/O
  // errors.
  absl::Status Replay(
      const std::function<absl::Status(absl::Span<const std::string> batch)>&
          sink,
      size_t max_batch, size_t max_records = 0);

  // OK while appends can be acknowledged: the directory is still the one
  // Open() opened, at its path, and no write failed beyond repair.
  // Otherwise UNAVAILABLE saying why and what to do, and every later
  // Append() fails with it; when the directory is found gone, the records
  // not yet replayed move from pending_records() to lost_records(). Cheap
  // (an fstat and a stat). Append() checks its segment after each sync,
  // and a failed Replay() calls this.
  absl::Status CheckIntact() ABSL_LOCKS_EXCLUDED(mu_);

  // Bytes of framed records in segment files on disk (the figure max_bytes
  // limits; the 32-byte headers of rolled segments are not counted). Zero
  // once everything has been replayed.
  int64_t size_bytes() const;
  // Records appended and not yet replayed.
  int64_t pending_records() const;
  bool empty() const { return pending_records() == 0; }
  // Records acknowledged and not replayed when the spool found its
  // directory or segment gone (CheckIntact()); this spool cannot replay
  // them. Zero while it is intact.
  int64_t lost_records() const { return lost_records_.load(); }
  // Whether the spool found its directory or segment gone (CheckIntact()).
  bool lost() const { return lost_.load(); }
  // Bytes of a torn tail that Open() truncated. Those records never
  // completed their Append(), so none of them was acknowledged.
  int64_t torn_bytes_dropped() const { return torn_bytes_dropped_; }
  // What Open() found missing or damaged among acknowledged records, one
  // message per segment, naming the file, the bytes acknowledged and found,
  // and where damaged bytes were kept; empty when nothing was. Open() still
  // succeeds: the records that remain are replayed.
  const std::vector<std::string>& damage() const { return damage_; }
  SpoolStats stats() const;
  const std::string& dir() const { return dir_; }

 private:
  struct Writer;
  struct Group;
  struct Position {
    uint64_t segment = 0;
    uint64_t offset = 0;
    bool operator==(const Position& o) const {
      return segment == o.segment && offset == o.offset;
    }
  };

  // Where a segment's records begin and what its header says.
  struct SegmentStart {
    int64_t records_start = 0;  // 0 without a header
    // From the header: the length of the segment before it.
    std::optional<int64_t> previous_length;
  };

  Spool(std::string dir, SpoolOptions options, int lock_fd, int dir_fd);

  // Scans the directory at Open(): checkpoint, segments, torn tail.
  absl::Status Recover();
  // Recover()'s steps. The segment numbers on disk, ascending; DATA_LOSS
  // for one beyond kMaxSegment.
  absl::StatusOr<std::vector<uint64_t>> ListSegments() const;
  // The CHECKPOINT file's position and acknowledged end (nullopt in the
  // older form); nullopt when there is none, DATA_LOSS when it is corrupt.
  struct Checkpoint {
    Position read;
    std::optional<Position> acked_end;
  };
  absl::StatusOr<std::optional<Checkpoint>> ReadCheckpoint() const;
  // With no segment left: opens an empty active segment at (or after) `pos`.
  absl::Status StartAfresh(Position pos)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(replay_mu_, mu_);
  // DATA_LOSS unless `segments` start at the checkpoint's and have no gap.
  absl::Status CheckSegmentsFollow(const std::vector<uint64_t>& segments,
                                   Position pos) const;
  // Recover()'s checks of what was acknowledged: a segment shorter than
  // the next one's header says, the last one shorter than the checkpoint's
  // acknowledged end, or segments missing after the last one. Adds to
  // damage_; for the last segment, keeps its bytes after `valid_end` aside
  // and returns true when they are damage rather than a torn tail.
  void CheckSealedLength(const std::string& path, int64_t size,
                         const SegmentStart& next);
  absl::StatusOr<bool> CheckAcknowledgedEnd(const std::string& path,
                                            uint64_t segment, int64_t size,
                                            int64_t valid_end,
                                            std::optional<Position> acked);
  // Copies bytes [from, size) of `path` into damaged/ and returns the copy's
  // path.
  absl::StatusOr<std::string> KeepAside(const std::string& path, int64_t from,
                                        int64_t size);
  // Counts the records of segment file `path` (`size` bytes) from `offset`
  // into pending_records_ and returns where its valid frames end: `size`,
  // or the start of a torn tail when `last`. DATA_LOSS for any other damage.
  absl::StatusOr<int64_t> ScanSegment(const std::string& path, int64_t size,
                                      int64_t offset, bool last)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Cuts `path` at `valid_end`.
  absl::Status TruncateSegment(const std::string& path, int64_t valid_end);
  // Writes CHECKPOINT and moves read_pos_ to `pos`; `acked` is AckedEnd()
  // read at some point before.
  absl::Status MoveReadPosition(Position pos, Position acked)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(replay_mu_);
  // An I/O error `s` of Replay(), or the reason the files are gone when
  // that caused it.
  absl::Status ExplainReplayError(absl::Status s) ABSL_LOCKS_EXCLUDED(mu_);
  // Append()'s steps. The framed size of `records`; INVALID_ARGUMENT for
  // a record the format cannot hold, UNAVAILABLE for a batch larger than
  // the spool.
  absl::StatusOr<int64_t> FramedBytes(
      absl::Span<const std::string> records) const;
  // Queues `w` behind the appends pending, or says why the spool refuses it
  // (full, or failed).
  absl::Status Enqueue(Writer* w) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Whether the queued appends fill a group (max_group_records or
  // max_group_bytes), so the leader stops waiting for more.
  bool GroupFull() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Run by the leader, the front of writers_: waits up to the group commit
  // window, then takes the queued appends that fit one group.
  Group FormGroup() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Leader only, without mu_: opens the next segment as the active one, or
  // sets group->status saying why it cannot.
  void RollSegment(Group* group);
  // Leader only, without mu_: writes and syncs the group's frames to the
  // active segment, undoing a partial write; sets group->status.
  void WriteGroup(Group* group);
  // Publishes the group's outcome: sizes and counters, each member's
  // status, failed_ when the segment can no longer be trusted.
  void FinishGroup(const Group& group, const Writer* leader)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Replaces CHECKPOINT atomically (write, sync, rename, sync dir) with
  // the read position and the end of the acknowledged records.
  absl::Status WriteCheckpoint(Position pos, Position acked_end);
  // The end of the acknowledged records: the active segment's durable end,
  // or its start while it holds no record.
  Position AckedEnd() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The first byte of `segment`'s records.
  int64_t RecordsStart(uint64_t segment) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Why the directory is no longer where Open() found it; "" while it is.
  std::string FilesGone() const;
  // Why segment file `active_fd` is gone (deleted); "" while it is not.
  static std::string SegmentGone(int active_fd);
  // Stops the spool for good because its files are gone (`why`): every
  // later Append() fails, and the pending records count as lost.
  void MarkLost(const std::string& why) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status SyncDir();
  std::string SegmentPath(uint64_t segment) const;
  // Starts a fresh segment when everything is replayed, so the old one can
  // be deleted and size_bytes() drops to zero.
  absl::Status RollIfDrained() ABSL_EXCLUSIVE_LOCKS_REQUIRED(replay_mu_);
  // Deletes replayed segment files.
  absl::Status DeleteSegmentsBefore(uint64_t segment);

  const std::string dir_;
  const SpoolOptions options_;
  const int lock_fd_;                // flock()ed LOCK file
  const int dir_fd_;                 // the directory, to notice it vanish
  int64_t torn_bytes_dropped_ = 0;   // set by Open()
  std::vector<std::string> damage_;  // set by Open()

  mutable absl::Mutex mu_;
  // Pending appends; the front one is the group leader.
  std::deque<Writer*> writers_ ABSL_GUARDED_BY(mu_);
  int64_t queued_bytes_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t queued_records_ ABSL_GUARDED_BY(mu_) = 0;
  // Segment being appended to, and its durable size. Only the group leader
  // changes them (or Replay() while writers_ is empty).
  uint64_t active_segment_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t active_size_ ABSL_GUARDED_BY(mu_) = 0;
  // Sizes of all segment files, the active one included.
  std::map<uint64_t, int64_t> segment_sizes_ ABSL_GUARDED_BY(mu_);
  int64_t disk_bytes_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t pending_records_ ABSL_GUARDED_BY(mu_) = 0;
  // Set once, under mu_, by MarkLost(); atomic so that reading them (for
  // every stats() call) does not contend for mu_ with appends and replay.
  std::atomic<int64_t> lost_records_{0};
  std::atomic<bool> lost_{false};
  // Segments that open with a header, and where their records begin.
  std::map<uint64_t, int64_t> records_starts_ ABSL_GUARDED_BY(mu_);
  // Set when a failed write could not be undone; every Append() fails.
  absl::Status failed_ ABSL_GUARDED_BY(mu_);
  SpoolStats stats_ ABSL_GUARDED_BY(mu_);

  // Owned by the group leader (or by Replay() while writers_ is empty and
  // mu_ is held): the active segment's descriptor and the write buffer.
  int active_fd_ = -1;
  std::string group_buffer_;

  absl::Mutex replay_mu_ ABSL_ACQUIRED_BEFORE(mu_);
  // First record not yet replayed; equals the CHECKPOINT file.
  Position read_pos_ ABSL_GUARDED_BY(replay_mu_);
  // The acknowledged end last written to CHECKPOINT.
  Position checkpoint_acked_ ABSL_GUARDED_BY(replay_mu_);
  bool recovered_ ABSL_GUARDED_BY(replay_mu_) = false;  // Open() succeeded
};

}  // namespace abexp

#endif  // ABEXP_SERVER_STORAGE_SPOOL_SPOOL_H_
