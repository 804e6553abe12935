// A SpooledEventStore keeps recording calls acknowledged while the backend
// (Redis) is down or slow: a write the backend fails with a transient error
// is appended, whole, to a local Spool (server/storage/spool/spool.h) and
// reported as WriteOutcome::kSpooled; a background thread replays the spool
// into the backend, in order, once it answers again (docs/storage.md, "Spool").
//
//   SpooledEventStore store(&redis_store, *std::move(spool), options);
//   Recorder recorder(&store);
//   ...
//   store.Drain(absl::Seconds(10));  // at shutdown
//
// Rules:
//  - Transient backend errors are UNAVAILABLE, DEADLINE_EXCEEDED,
//    RESOURCE_EXHAUSTED and ABORTED (IsTransientBackendError); the Redis
//    store returns them for a refused, lost or timed-out connection. Any
//    other error is returned to the caller, as without a spool: it names
//    something to fix (a variant change that needs a new phase, a Redis
//    user without a permission) or a bug (INTERNAL), which a replay would
//    not cure. (abexp-server's Redis factory turns a refused password into
//    UNAVAILABLE, so that is spooled.)
//  - A spooled batch may have been partly applied before the backend failed;
//    the replay repeats those items, and their idempotency keys (derived by
//    the Recorder before the write) make them count once.
//  - Order: an event before its unit's exposure is ignored, so while the
//    spool holds anything every new write is spooled too, behind the older
//    ones. Writes go straight to the backend again only once a replay has
//    emptied the spool, under an exclusive lock that no writer holds.
//  - A spooled write is replayed with the ExperimentLayout it was
//    acknowledged with (metric definitions included), not the current
//    config.
//  - When the spool is full, or the write is larger than the whole spool,
//    the write fails with UNAVAILABLE: the client retries later (or in
//    smaller calls), nothing is dropped.
//  - When the spool's directory is deleted or moved under the running
//    process (Spool::CheckIntact), nothing more is acknowledged from it:
//    writes go straight to the backend, and fail with UNAVAILABLE while it
//    fails, until a restart opens a fresh spool. What the spool held and
//    had not replayed is counted in stats().lost_records and reported
//    through `notify` and by Drain().
//  - Replay retries every backend error with backoff (a wrong password or
//    db index is fixed by the operator, and nothing is lost meanwhile),
//    except FAILED_PRECONDITION and INVALID_ARGUMENT, which the store
//    returns for one write that can never apply (its variants clash with
//    the recorded ones, the phase has too many metric definitions, or an
//    item has a value beyond kMaxEventValue). Such a write, or a record that
//    does not decode, is moved to a second spool in `<spool dir>/rejected`
//    and reported through `notify`, so that it neither blocks the writes
//    behind it nor disappears. abexp-server never replays that directory.
//  - ReadAggregates and RecordedVariant(s) go to the backend: they do not
//    see writes still in the spool.
//
// Thread-safe: all methods may be called concurrently.
#ifndef ABEXP_SERVER_STORAGE_SPOOL_SPOOLED_EVENT_STORE_H_
#define ABEXP_SERVER_STORAGE_SPOOL_SPOOLED_EVENT_STORE_H_

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "server/core/event_store.h"
#include "server/storage/spool/spool.h"

namespace abexp {

// One store write as kept in the spool: exposures or events (one of the two
// is empty) of one experiment.
struct SpooledWrite {
  ExperimentLayout layout;
  std::vector<Exposure> exposures;
  std::vector<Event> events;
};

// The spool record of `write` (proto/abexp/internal/spool.proto).
std::string EncodeSpooledWrite(const SpooledWrite& write);
// Errors: DATA_LOSS when `record` is not a valid encoding (not a SpoolRecord,
// an unknown metric type, both exposures and events, or neither).
absl::StatusOr<SpooledWrite> DecodeSpooledWrite(absl::string_view record);

// True for the backend errors that send a write to the spool.
bool IsTransientBackendError(const absl::Status& status);

struct SpooledEventStoreOptions {
  // Names the backend in messages, e.g. "Redis at 127.0.0.1:6379".
  // Default: "the event store".
  std::string backend_name = "the event store";
  // Replay retries while the backend fails, waiting this long after the
  // first failure and doubling up to max_backoff. Defaults: 100ms, 5s.
  absl::Duration initial_backoff = absl::Milliseconds(100);
  absl::Duration max_backoff = absl::Seconds(5);
  // Spool records read and applied per replay step; the spool's checkpoint
  // advances after each step. A record is one experiment group of one call
  // (at most 50,000 items), so this bounds replay memory. Default: 64.
  size_t replay_batch_records = 64;
  // Options of the spool opened in `<spool dir>/rejected` on the first
  // rejected record. Default: SpoolOptions' defaults.
  SpoolOptions rejected_spool;
  // Receives one-line notices for the log from the replay thread (and from
  // Drain): replay failing or resuming, the spool drained, records set
  // aside. May be empty. Must not call into the store.
  std::function<void(const std::string& message)> notify;
};

struct SpooledEventStoreStats {
  int64_t spooled_writes = 0;   // writes acknowledged into the spool
  int64_t spooled_items = 0;    // their exposures and events
  int64_t replayed_writes = 0;  // spooled writes applied to the backend
  int64_t replayed_items = 0;
  int64_t rejected_writes = 0;  // set aside in <spool dir>/rejected
  int64_t rejected_items = 0;
  int64_t pending_records = 0;  // in the spool, not yet replayed
  // Acknowledged and not replayed when the spool's directory was found
  // deleted or moved: not in the backend, and not replayable by this store.
  int64_t lost_records = 0;
  int64_t spool_bytes = 0;  // the spool's disk use
  bool spooling = false;    // new writes go to the spool
  // While spooling: since when (the oldest write not yet replayed is no
  // older). InfiniteFuture when not spooling.
  absl::Time spooling_since = absl::InfiniteFuture();
  // The last replay error; OK once the spool drained.
  absl::Status last_replay_error;
};

class SpooledEventStore final : public EventStore {
 public:
  // Starts the replay thread, which replays at once when `spool` holds
  // records (from an earlier run); until it has emptied them, writes are
  // spooled. REQUIRES: backend outlives the store.
  SpooledEventStore(EventStore* backend, std::unique_ptr<Spool> spool,
                    SpooledEventStoreOptions options);

  SpooledEventStore(const SpooledEventStore&) = delete;
  SpooledEventStore& operator=(const SpooledEventStore&) = delete;
  // Stops the replay thread; what is still spooled stays on disk for the
  // next start. Call Drain() first to empty it.
  // REQUIRES: no other method is running.
  ~SpooledEventStore() override;

  // Writes to the backend, or to the spool as described above. Errors: the
  // backend's non-transient errors; UNAVAILABLE when the spool is full or
  // cannot be written (nothing of the batch was acknowledged).
  absl::StatusOr<std::vector<WriteOutcome>> WriteExposures(
      const ExperimentLayout& layout,
      absl::Span<const Exposure> exposures) override;
  absl::StatusOr<std::vector<WriteOutcome>> WriteEvents(
      const ExperimentLayout& layout, absl::Span<const Event> events) override;
  // The batches go to the backend together; each one that fails with a
  // transient error is spooled as WriteEvents would spool it.
  std::vector<WriteResult> WriteEventBatches(
      absl::Span<const EventBatch> batches) override;

  absl::StatusOr<ExperimentAggregates> ReadAggregates(
      const ExperimentLayout& layout) override;
  absl::StatusOr<std::optional<int>> RecordedVariant(
      const ExperimentLayout& layout, absl::string_view unit_id) override;
  std::vector<RecordedVariantResult> RecordedVariants(
      absl::Span<const RecordedVariantQuery> queries) override;

  // Replays on the calling thread, retrying with backoff, until the spool is
  // empty and writes go straight to the backend again, or `timeout` passes.
  // For shutdown, once no more writes arrive. A backend call in progress at
  // the deadline is waited for (e.g. up to Redis's command timeout).
  // Errors: DEADLINE_EXCEEDED saying how many records remain (they stay in
  // the spool) and the last replay error; UNAVAILABLE when the spool's
  // directory is gone, saying how many acknowledged writes went with it.
  absl::Status Drain(absl::Duration timeout);

  // Whether a recording call can be acknowledged now: the spool can keep
  // writes, or (when it cannot) the backend took the last one. Cheap: an
  // fstat and a stat. A later health change reports RecordingService
  // NOT_SERVING while this is false.
  bool CanAcknowledge();

  SpooledEventStoreStats stats() const;
  const std::string& spool_dir() const { return spool_->dir(); }

 private:
  // WriteExposures/WriteEvents; one of the spans is empty.
  absl::StatusOr<std::vector<WriteOutcome>> Write(
      const ExperimentLayout& layout, absl::Span<const Exposure> exposures,
      absl::Span<const Event> events) ABSL_LOCKS_EXCLUDED(mode_mu_, mu_);
  // Switches writes to the spool (if they are not already) because the
  // backend failed with `why`, and says so once.
  void StartSpooling(const absl::Status& why) ABSL_LOCKS_EXCLUDED(mu_);
  // Appends one write to the spool: kSpooled per item, or the spool's error
  // (nothing acknowledged). REQUIRES: mode_mu_ held shared.
  absl::StatusOr<std::vector<WriteOutcome>> AppendToSpool(
      const ExperimentLayout& layout, absl::Span<const Exposure> exposures,
      absl::Span<const Event> events) ABSL_LOCKS_EXCLUDED(mu_);
  // Appends `records`, whole writes of `items` items in all, in one spool
  // append: all are acknowledged or none. `experiments` names their
  // experiments for the error. REQUIRES: mode_mu_ held shared.
  absl::Status AppendRecords(absl::Span<const std::string> records,
                             size_t items, absl::string_view experiments)
      ABSL_LOCKS_EXCLUDED(mu_);
  // One replay of everything in the spool; on success switches writes back
  // to the backend (or finds more to replay).
  absl::Status ReplayOnce() ABSL_LOCKS_EXCLUDED(mode_mu_, mu_);
  // Replays one batch and `extra_records` more; on failure clears
  // catching_up_ and keeps the error in the stats.
  absl::Status ReplayStep(size_t extra_records = 0) ABSL_LOCKS_EXCLUDED(mu_);
  // Spool::Replay's sink.
  absl::Status ApplyRecords(absl::Span<const std::string> records);
  // Moves a record the backend will never take to the rejected spool.
  absl::Status Reject(const std::string& record, size_t items,
                      const absl::Status& why);
  void ReplayLoop();
  void Notify(const std::string& message) const;
  // Once the spool has found its directory gone: stops spooling for good,
  // so writes go straight to the backend, and says so.
  void AbandonSpool() ABSL_LOCKS_EXCLUDED(mode_mu_, mu_);
  // Says, once, that the spool is lost and what follows.
  void NotifyLost();
  // Notes whether a direct write reached the backend, for CanAcknowledge().
  void NoteBackend(const absl::Status& status);

  EventStore* const backend_;  // not owned
  const std::unique_ptr<Spool> spool_;
  const SpooledEventStoreOptions options_;

  // Shared by writers, exclusive to switch from spooling back to direct
  // writes, so that no direct write overtakes a spooled one.
  absl::Mutex mode_mu_ ABSL_ACQUIRED_BEFORE(mu_);
  // True while the spool holds writes that are not replayed. Set under a
  // shared lock (by a writer whose direct write failed), cleared under the
  // exclusive one; hence also guarded by mu_ for readers without mode_mu_.
  bool spooling_ ABSL_GUARDED_BY(mu_) = false;
  // When spooling_ last became true.
  absl::Time spooling_since_ ABSL_GUARDED_BY(mu_);

  mutable absl::Mutex mu_;
  SpooledEventStoreStats stats_ ABSL_GUARDED_BY(mu_);
  // The backend's error that started the current spooling, for messages.
  absl::Status spool_reason_ ABSL_GUARDED_BY(mu_);
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  bool wake_ ABSL_GUARDED_BY(mu_) = false;  // replay now, skip the backoff
  // The backend took the last replayed write and no step failed since: it
  // is back, and writers wait for each step until the spool has drained.
  bool catching_up_ ABSL_GUARDED_BY(mu_) = false;
  // Spool records appended since the last step that writers waited for:
  // that step replays them too, so each such step shrinks the spool by a
  // batch however many records writers got in between (a replay thread
  // that the scheduler leaves off the CPU would otherwise fall behind for
  // good).
  int64_t appended_since_step_ ABSL_GUARDED_BY(mu_) = 0;
  // The spool's directory is gone; set once, by AbandonSpool().
  bool spool_lost_ ABSL_GUARDED_BY(mu_) = false;
  // The last direct write failed with a transient error.
  std::atomic<bool> backend_failing_{false};

  // Held while setting a record aside (an fsync), apart from mu_.
  absl::Mutex rejected_mu_;
  std::unique_ptr<Spool> rejected_ ABSL_GUARDED_BY(rejected_mu_);  // lazily

  std::thread replay_thread_;
};

}  // namespace abexp

#endif  // ABEXP_SERVER_STORAGE_SPOOL_SPOOLED_EVENT_STORE_H_
