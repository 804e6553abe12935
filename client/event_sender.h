// abexp::EventSender: records exposures and events from a request path
// without waiting for abexp-server. Expose() and Track() check the record,
// stamp it and put it in a bounded in-memory queue; one background thread
// sends the queue in batches (RecordExposures / RecordEvents), retrying
// until the server has acknowledged every record.
//
//   abexp::EventSenderOptions options;
//   options.target = "abexp:50051";
//   options.on_undelivered = [](const abexp::UndeliveredRecords& u) {
//     // Rare: records the server rejected as invalid, or that could not be
//     // sent before Close's deadline. Log u.status and the records, or
//     // write them somewhere to resend later (their keys make that safe).
//   };
//   absl::StatusOr<std::unique_ptr<abexp::EventSender>> sender =
//       abexp::EventSender::Create(std::move(options));
//   if (!sender.ok()) { /* a bad option: the message says which */ }
//
//   // On the request path; neither call blocks on the network:
//   (*sender)->Expose("one_page_checkout", unit, "one_page",
//                     /*time=*/std::nullopt, assignment.config_version());
//   absl::Status s = (*sender)->Track(unit, "order_completed", 59.90);
//   // s is INVALID_ARGUMENT for a bad record (fix the caller),
//   // RESOURCE_EXHAUSTED when the queue is full (the server is down or
//   // too slow; the record was not queued), OK otherwise.
//
//   // At shutdown (the destructor does the same with close_timeout):
//   absl::Status closed = (*sender)->Close(absl::Seconds(5));
//
// Guarantees:
// - Every record gets the client's time at enqueue unless the caller gave
//   one (a buffered record arrives late; the server's arrival time would be
//   wrong), and an idempotency key (128 random bits in hex) unless the
//   caller gave one. Every retry of a record carries the same key, so a
//   record the server stored before its reply was lost counts once.
// - Exposures are sent before the events enqueued after them, so an event
//   is never ignored as "not exposed" because it overtook its exposure.
// - Nothing is dropped silently. A record is either acknowledged by the
//   server, refused by Expose/Track (an error status), or dropped after
//   enqueue and reported through on_undelivered and stats(): when the
//   server rejects it as invalid, when max_retry_time runs out, or when it
//   is still unsent at Close's deadline.
// - Only the unit's ids are sent: attributes play no part in recording.
// - A token the server refuses (UNAUTHENTICATED: missing or unknown;
//   PERMISSION_DENIED: without the `record` role) is a configuration error
//   that fixing the server's token file cures, so it is handled like an
//   outage: the records stay queued and are retried with backoff, never
//   dropped for it; stats().last_error and Flush's and Close's errors carry
//   the server's message and say whether a token was sent. Once the server
//   accepts the token (its line added to --auth_tokens_file, then SIGHUP),
//   they are delivered.
//
// Thread-safe: Expose, Track, Flush, Close and stats may be called from any
// number of threads at once. Do not call Flush or Close from on_undelivered
// (it runs on the sender's thread, which they wait for).
#ifndef ABEXP_CLIENT_EVENT_SENDER_H_
#define ABEXP_CLIENT_EVENT_SENDER_H_

#include <grpcpp/grpcpp.h>

#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <variant>
#include <vector>

#include "abexp/v1/recording.grpc.pb.h"
#include "abexp/v1/recording.pb.h"
#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "client/credentials.h"

namespace abexp {

// The largest batch the sender sends in one call (the server accepts up to
// 50,000; smaller calls keep each retry cheap).
inline constexpr int kMaxEventSenderBatch = 10000;

// Records dropped after they were queued, handed to on_undelivered.
struct UndeliveredRecords {
  // Why. INVALID_ARGUMENT: the server rejected the record, and the message
  // names the field (e.g. "exposures[0].variant_key 'treatmnet' is not a
  // variant of ..."; the index is within the call, not meaningful here).
  // DEADLINE_EXCEEDED: max_retry_time ran out, or Close's deadline passed
  // before the server acknowledged them; the message holds the last error.
  // Such records may or may not have been stored: resending them (with
  // their keys) is safe.
  absl::Status status;
  std::vector<v1::ExposureRecord> exposures;
  std::vector<v1::EventRecord> events;
};

struct EventSenderOptions {
  // Where to send, as "host:port" or any gRPC target URI. Ignored when
  // `channel` is set. Default: "127.0.0.1:50051".
  std::string target = "127.0.0.1:50051";

  // TLS and the access token (client/credentials.h): tls_ca_file,
  // tls_cert_file and tls_key_file, tls, token. Options left empty are read
  // from ABEXP_TLS_CA_FILE, ABEXP_TLS_CERT_FILE, ABEXP_TLS_KEY_FILE and
  // ABEXP_TOKEN unless security.use_environment is false. The token is sent
  // on every call, also on a `channel` of your own; the TLS options apply
  // only to the channel made for `target`. Create checks the files and the
  // token's form, naming the option or variable at fault. Default:
  // plaintext, no token (unless the variables say otherwise).
  SecurityOptions security;

  // Channel credentials of your own for the channel made for `target`,
  // instead of security's TLS options (which must then be empty; the
  // ABEXP_TLS_* variables are not read). Default: null.
  std::shared_ptr<grpc::ChannelCredentials> credentials;

  // An existing channel to send on instead, e.g. one shared with other
  // stubs. Default: null (the sender makes its own channel to `target`, with
  // gRPC's reconnect backoff capped at max_backoff so a server that comes
  // back is noticed soon).
  std::shared_ptr<grpc::Channel> channel;

  // Records queued or in flight at most. Beyond this Expose/Track return
  // RESOURCE_EXHAUSTED rather than block the caller or grow without bound.
  // A record takes roughly its ids, name and key in memory (a few hundred
  // bytes typically). Default: 100,000.
  int max_queue_items = 100000;

  // Records per call, 1 to kMaxEventSenderBatch. A batch also ends early
  // when it reaches 3 MiB, under gRPC's default 4 MiB message limit.
  // Default: 1,000.
  int max_batch = 1000;

  // How long a record may wait for its batch to fill before it is sent
  // anyway. A full batch is sent at once. Default: 1s.
  absl::Duration flush_interval = absl::Seconds(1);

  // Deadline of one call (one attempt), including the wait for a
  // connection while the server is unreachable. Default: 10s.
  absl::Duration call_deadline = absl::Seconds(10);

  // Wait before the first retry of a failed call; doubled for each later
  // one up to max_backoff, and varied by +-jitter (a fraction of it) so
  // many clients do not retry in step. A refusal that says when to retry
  // (trailing metadata grpc-retry-pushback-ms, which abexp-server sends
  // with RESOURCE_EXHAUSTED while it bounds recording from its spool) is
  // retried after exactly that delay instead, and the backoff starts again
  // from initial_backoff. Defaults: 100ms, 5s, 0.2.
  absl::Duration initial_backoff = absl::Milliseconds(100);
  absl::Duration max_backoff = absl::Seconds(5);
  double jitter = 0.2;

  // How long to keep retrying one batch before dropping it (reported as
  // DEADLINE_EXCEEDED). Default: infinite: retry until Close, and let the
  // full queue push back on callers with RESOURCE_EXHAUSTED while the server
  // is away, so an outage costs nothing that was queued.
  absl::Duration max_retry_time = absl::InfiniteDuration();

  // How long the destructor waits in Close(). Default: 5s.
  absl::Duration close_timeout = absl::Seconds(5);

  // Called on the sender's thread with records dropped after enqueue.
  // Must not call Flush or Close. Default: none (see stats()).
  std::function<void(const UndeliveredRecords&)> on_undelivered;
};

// Counters since Create. enqueued == sent + dropped_invalid +
// dropped_gave_up + dropped_at_close + pending.
struct EventSenderStats {
  int64_t enqueued = 0;            // accepted by Expose/Track
  int64_t sent = 0;                // acknowledged by the server
  int64_t rpcs = 0;                // calls made, retries included
  int64_t retries = 0;             // calls repeated after an error
  int64_t rejected_invalid = 0;    // refused by Expose/Track: INVALID_ARGUMENT
  int64_t dropped_queue_full = 0;  // refused by Expose/Track: queue full
  int64_t dropped_invalid = 0;     // rejected by the server after enqueue
  int64_t dropped_gave_up = 0;     // max_retry_time ran out
  int64_t dropped_at_close = 0;    // not acknowledged by Close's deadline
  int64_t pending = 0;             // queued or in flight
  absl::Status last_error;         // the latest failed call's error, or OK
};

class EventSender {
 public:
  // Validates the options and starts the sender's thread. INVALID_ARGUMENT
  // names a bad option. Does not wait for the server: records queue up
  // while it is unreachable.
  static absl::StatusOr<std::unique_ptr<EventSender>> Create(
      EventSenderOptions options);

  EventSender(const EventSender&) = delete;
  EventSender& operator=(const EventSender&) = delete;
  // Close(options.close_timeout), unless Close was called.
  ~EventSender();

  // Queues an exposure: `unit` was shown `variant_key` of `experiment_key`.
  // `time` defaults to now; `config_version` to empty (the server's current
  // config), but pass the assignment's config_version() when you have it.
  // Returns at once: INVALID_ARGUMENT for a record the server would reject
  // (empty keys or ids, a time over 24h ahead or before 2000);
  // RESOURCE_EXHAUSTED when max_queue_items are pending;
  // FAILED_PRECONDITION after Close.
  absl::Status Expose(absl::string_view experiment_key, const v1::Unit& unit,
                      absl::string_view variant_key,
                      std::optional<absl::Time> time = std::nullopt,
                      absl::string_view config_version = "");

  // Queues an event named `event` (e.g. "order_completed") with an optional
  // value (e.g. the order's revenue). `time` defaults to now;
  // `idempotency_key` to a random one (pass your own, e.g. the order id, to
  // count an event once across processes). Returns at once, with the same
  // errors as Expose (plus INVALID_ARGUMENT for a NaN or infinite value, or
  // a name over 128 bytes).
  absl::Status Track(const v1::Unit& unit, absl::string_view event,
                     std::optional<double> value = std::nullopt,
                     std::optional<absl::Time> time = std::nullopt,
                     absl::string_view idempotency_key = "");

  // Sends everything queued now and waits until each record enqueued before
  // the call is resolved: acknowledged by the server, or dropped and
  // reported (see UndeliveredRecords). DEADLINE_EXCEEDED, with how many are
  // left and the last error, if that takes longer than `timeout`; the
  // records stay queued and keep being retried.
  absl::Status Flush(absl::Duration timeout);

  // Refuses new records, sends what is queued, and stops the thread. After
  // `timeout`, cancels the call in flight and reports every record not yet
  // acknowledged through on_undelivered (DEADLINE_EXCEEDED) and
  // stats().dropped_at_close, and returns DEADLINE_EXCEEDED with their
  // number. Later calls return the first call's result.
  absl::Status Close(absl::Duration timeout);

  EventSenderStats stats() const;

 private:
  // One queued record.
  struct Item {
    uint64_t seq;  // 1, 2, ... in enqueue order
    absl::Time enqueued;
    size_t bytes;  // serialized size, to keep calls under the message limit
    std::variant<v1::ExposureRecord, v1::EventRecord> record;
  };
  // How sending one call's records ended.
  enum class SendResult { kAcknowledged, kRejected, kGaveUp, kAborted };

  EventSender(EventSenderOptions options, ChannelSecurity security,
              std::shared_ptr<grpc::Channel> channel);

  absl::Status Enqueue(
      std::variant<v1::ExposureRecord, v1::EventRecord> record);
  void Run();  // the sender's thread
  // Sends one batch, exposures first. Returns false once Close has aborted.
  bool SendBatch(std::vector<Item> batch);
  // Sends records of one kind (exposures or events) in calls, dropping the
  // ones the server names as invalid. Returns false once aborted, after
  // reporting what was not sent.
  template <typename Kind>
  bool Deliver(std::vector<typename Kind::Record> records);
  // Makes one call for `request`, retrying every error except
  // INVALID_ARGUMENT with backoff. *status is the last call's error.
  template <typename Kind>
  SendResult Call(const typename Kind::Request& request, absl::Status* status);
  // `status` (an RPC error) with the server's address, and whether the
  // channel is connected.
  absl::Status Annotate(const absl::Status& status) const;
  // Sleeps `d`, or less when Close aborts. Returns false when aborted.
  bool Backoff(absl::Duration d);
  // Counts `records` in *counter and hands them to on_undelivered.
  void Report(UndeliveredRecords records, int64_t EventSenderStats::*counter);

  const EventSenderOptions options_;
  const ChannelSecurity security_;
  const std::shared_ptr<grpc::Channel> channel_;
  const std::unique_ptr<v1::RecordingService::Stub> stub_;  // thread-safe

  mutable absl::Mutex mu_;
  std::deque<Item> queue_ ABSL_GUARDED_BY(mu_);
  uint64_t next_seq_ ABSL_GUARDED_BY(mu_) = 1;
  // Every record with seq <= done_seq_ is resolved.
  uint64_t done_seq_ ABSL_GUARDED_BY(mu_) = 0;
  // Records with seq <= flush_seq_ are sent without waiting to fill a batch.
  uint64_t flush_seq_ ABSL_GUARDED_BY(mu_) = 0;
  bool closing_ ABSL_GUARDED_BY(mu_) = false;  // no new records
  bool abort_ ABSL_GUARDED_BY(mu_) = false;    // Close's deadline passed
  bool stopped_ ABSL_GUARDED_BY(mu_) = false;  // the thread has finished
  grpc::ClientContext* in_flight_ ABSL_GUARDED_BY(mu_) = nullptr;
  EventSenderStats stats_ ABSL_GUARDED_BY(mu_);
  absl::CondVar work_cv_;  // wakes the sender's thread
  absl::CondVar done_cv_;  // wakes Flush and Close

  // Serializes Close calls, and keeps the first one's result.
  absl::Mutex close_mu_;
  std::optional<absl::Status> close_result_ ABSL_GUARDED_BY(close_mu_);

  std::thread thread_;
};

}  // namespace abexp

#endif  // ABEXP_CLIENT_EVENT_SENDER_H_
