#include "client/event_sender.h"

#include <grpc/grpc.h>

#include <algorithm>
#include <cmath>
#include <iterator>
#include <utility>

#include "absl/random/random.h"
#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "client/absl_probes.h"
#include "client/client.h"

namespace abexp {
namespace {

// The server's limits (server/core/recorder.h, server/core/assigner.h,
// server/core/bucketing.h). The server stays the authority; checking here makes
// a bad record fail in the caller's stack instead of in the background.
constexpr int kMaxUnitIds = 16;
constexpr size_t kMaxUnitIdBytes = 256;
constexpr size_t kMaxEventNameBytes = 128;
constexpr size_t kMaxIdempotencyKeyBytes = 256;
constexpr absl::Duration kMaxFutureSkew = absl::Hours(24);
const absl::Time kEarliestTime =
    absl::FromUnixSeconds(946684800);  // 2000-01-01

// A call's records stop at this size, under gRPC's default 4 MiB limit on a
// received message; a bigger call would fail RESOURCE_EXHAUSTED forever.
constexpr size_t kMaxCallBytes = 3 << 20;

absl::BitGen& Random() {
  thread_local absl::BitGen gen;
  return gen;
}

// 128 random bits as 32 hex digits.
std::string RandomKey() {
  absl::BitGen& gen = Random();
  return absl::StrFormat("%016x%016x", absl::Uniform<uint64_t>(gen),
                         absl::Uniform<uint64_t>(gen));
}

google::protobuf::Timestamp ToProto(absl::Time t) {
  const int64_t seconds = absl::ToUnixSeconds(t);
  google::protobuf::Timestamp p;
  p.set_seconds(seconds);
  p.set_nanos(static_cast<int32_t>((t - absl::FromUnixSeconds(seconds)) /
                                   absl::Nanoseconds(1)));
  return p;
}

absl::Status CheckUnit(const v1::Unit& unit) {
  if (unit.ids().empty()) {
    return absl::InvalidArgumentError(
        "unit.ids is empty; pass the unit's ids, e.g. {\"user_id\": "
        "\"u-123\"}");
  }
  if (unit.ids_size() > kMaxUnitIds) {
    return absl::InvalidArgumentError(
        absl::StrCat("unit.ids has ", unit.ids_size(),
                     " entries; pass at most ", kMaxUnitIds, " id types"));
  }
  for (const auto& [type, id] : unit.ids()) {
    if (type.empty()) {
      return absl::InvalidArgumentError(
          "unit.ids has an entry with an empty id type; name it, e.g. "
          "user_id or device_id");
    }
    if (id.empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat("unit.ids[", type, "] is empty; pass the id, or leave ",
                       type, " out"));
    }
    if (id.size() > kMaxUnitIdBytes) {
      return absl::InvalidArgumentError(absl::StrCat(
          "unit.ids[", type, "] is ", id.size(), " bytes; ids may be at most ",
          kMaxUnitIdBytes, " bytes"));
    }
  }
  return absl::OkStatus();
}

absl::Status CheckTime(absl::Time time, absl::Time now) {
  if (time > now + kMaxFutureSkew) {
    return absl::InvalidArgumentError(absl::StrCat(
        "time is ", absl::FormatTime(time),
        ", more than 24h from now; pass when it happened, or no time for now"));
  }
  if (time < kEarliestTime) {
    return absl::InvalidArgumentError(absl::StrCat(
        "time is ", absl::FormatTime(time),
        ", before 2000; pass when it happened, or no time for now"));
  }
  return absl::OkStatus();
}

absl::Status CheckKey(absl::string_view key) {
  if (key.size() > kMaxIdempotencyKeyBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("idempotency_key is ", key.size(), " bytes; pass at most ",
                     kMaxIdempotencyKeyBytes, " (e.g. a UUID), or none"));
  }
  return absl::OkStatus();
}

absl::Status CheckExposure(absl::string_view experiment_key,
                           const v1::Unit& unit, absl::string_view variant_key,
                           std::optional<absl::Time> time,
                           absl::string_view config_version, absl::Time now) {
  if (experiment_key.empty()) {
    return absl::InvalidArgumentError(
        "experiment_key is empty; pass the key of the experiment whose "
        "variant was shown");
  }
  if (variant_key.empty()) {
    return absl::InvalidArgumentError(
        "variant_key is empty; pass the variant that was shown");
  }
  // The server counts exposures per config version and accepts only its
  // own form (ConfigVersionOf in server/core/config_parser.h).
  const bool hex16 =
      config_version.size() == 16 &&
      std::all_of(config_version.begin(), config_version.end(), [](char c) {
        return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
      });
  if (!config_version.empty() && !hex16) {
    return absl::InvalidArgumentError(absl::StrCat(
        "config_version is \"", absl::CHexEscape(config_version.substr(0, 64)),
        config_version.size() > 64 ? "...\"" : "\"",
        "; pass the assignment's config_version() (16 lowercase hex digits), "
        "or leave it empty for the config the server serves now"));
  }
  if (absl::Status s = CheckUnit(unit); !s.ok()) return s;
  return time.has_value() ? CheckTime(*time, now) : absl::OkStatus();
}

absl::Status CheckEvent(const v1::Unit& unit, absl::string_view event,
                        std::optional<double> value,
                        std::optional<absl::Time> time,
                        absl::string_view idempotency_key, absl::Time now) {
  if (event.empty()) {
    return absl::InvalidArgumentError(
        "event name is empty; pass what happened, e.g. \"order_completed\"");
  }
  if (event.size() > kMaxEventNameBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("event name is ", event.size(),
                     " bytes; event names are at most ", kMaxEventNameBytes));
  }
  if (value.has_value() && !std::isfinite(*value)) {
    return absl::InvalidArgumentError(
        absl::StrCat("value is ", std::isnan(*value) ? "NaN" : "infinite",
                     "; pass a finite number or no value"));
  }
  if (absl::Status s = CheckUnit(unit); !s.ok()) return s;
  if (absl::Status s = CheckKey(idempotency_key); !s.ok()) return s;
  return time.has_value() ? CheckTime(*time, now) : absl::OkStatus();
}

// The unit with its ids only: attributes play no part in recording, and
// leaving them out keeps queued records small.
v1::Unit IdsOnly(const v1::Unit& unit) {
  v1::Unit ids;
  *ids.mutable_ids() = unit.ids();
  return ids;
}

// The index of the item a server INVALID_ARGUMENT names, e.g. 12 for
// "events[12].value is NaN; ...", or nullopt when it names none.
std::optional<size_t> NamedIndex(absl::string_view message,
                                 absl::string_view field) {
  if (!absl::ConsumePrefix(&message, field) ||
      !absl::ConsumePrefix(&message, "[")) {
    return std::nullopt;
  }
  const size_t close = message.find(']');
  size_t index;
  if (close == absl::string_view::npos ||
      !absl::SimpleAtoi(message.substr(0, close), &index)) {
    return std::nullopt;
  }
  return index;
}

struct ExposureKind {
  using Record = v1::ExposureRecord;
  using Request = v1::RecordExposuresRequest;
  using Response = v1::RecordExposuresResponse;
  static constexpr absl::string_view kField = "exposures";
  static google::protobuf::RepeatedPtrField<Record>* Records(Request* r) {
    return r->mutable_exposures();
  }
  static std::vector<Record>* Undelivered(UndeliveredRecords* u) {
    return &u->exposures;
  }
  static grpc::Status Send(v1::RecordingService::Stub* stub,
                           grpc::ClientContext* context, const Request& request,
                           Response* response) {
    return stub->RecordExposures(context, request, response);
  }
};

struct EventKind {
  using Record = v1::EventRecord;
  using Request = v1::RecordEventsRequest;
  using Response = v1::RecordEventsResponse;
  static constexpr absl::string_view kField = "events";
  static google::protobuf::RepeatedPtrField<Record>* Records(Request* r) {
    return r->mutable_events();
  }
  static std::vector<Record>* Undelivered(UndeliveredRecords* u) {
    return &u->events;
  }
  static grpc::Status Send(v1::RecordingService::Stub* stub,
                           grpc::ClientContext* context, const Request& request,
                           Response* response) {
    return stub->RecordEvents(context, request, response);
  }
};

absl::Status ValidateOptions(const EventSenderOptions& o) {
  auto bad = [](absl::string_view what) {
    return absl::InvalidArgumentError(
        absl::StrCat("EventSenderOptions.", what));
  };
  if (o.channel == nullptr && o.target.empty()) {
    return bad(
        "target is empty and no channel is set; set target to the "
        "abexp-server address, e.g. \"127.0.0.1:50051\"");
  }
  if (o.max_queue_items < 1) {
    return bad(absl::StrCat("max_queue_items is ", o.max_queue_items,
                            "; it must be at least 1 (default 100000)"));
  }
  if (o.max_batch < 1 || o.max_batch > kMaxEventSenderBatch) {
    return bad(absl::StrCat("max_batch is ", o.max_batch, "; it must be 1 to ",
                            kMaxEventSenderBatch, " (default 1000)"));
  }
  const std::pair<const char*, absl::Duration> positive[] = {
      {"flush_interval", o.flush_interval},
      {"call_deadline", o.call_deadline},
      {"initial_backoff", o.initial_backoff},
      {"max_retry_time", o.max_retry_time}};
  for (const auto& [name, d] : positive) {
    if (d <= absl::ZeroDuration()) {
      return bad(absl::StrCat(name, " is ", absl::FormatDuration(d),
                              "; it must be positive"));
    }
  }
  if (o.max_backoff < o.initial_backoff) {
    return bad(absl::StrCat("max_backoff (",
                            absl::FormatDuration(o.max_backoff),
                            ") is less than initial_backoff (",
                            absl::FormatDuration(o.initial_backoff), ")"));
  }
  if (!(o.jitter >= 0 && o.jitter < 1)) {
    return bad(absl::StrCat("jitter is ", o.jitter,
                            "; it must be in [0, 1) (default 0.2)"));
  }
  if (o.close_timeout < absl::ZeroDuration()) {
    return bad("close_timeout is negative; use zero or more (default 5s)");
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::unique_ptr<EventSender>> EventSender::Create(
    EventSenderOptions options) {
  if (absl::Status s = ValidateOptions(options); !s.ok()) return s;
  const bool own_channel = options.channel != nullptr;
  absl::StatusOr<ChannelSecurity> security =
      ResolveSecurityUnless(own_channel || options.credentials != nullptr,
                            own_channel ? "EventSenderOptions.channel"
                                        : "EventSenderOptions.credentials",
                            options.security, "EventSenderOptions.security.");
  if (!security.ok()) return security.status();
  std::shared_ptr<grpc::Channel> channel = options.channel;
  if (channel == nullptr) {
    grpc::ChannelArguments args;
    // gRPC's own reconnect backoff grows to 120s; without a cap a server
    // that comes back would wait that long for its queued records.
    const int max_ms = static_cast<int>(std::min<int64_t>(
        absl::ToInt64Milliseconds(options.max_backoff), 120000));
    args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, std::min(max_ms, 1000));
    args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, max_ms);
    RunAbslProbesBeforeConnecting();  // client/absl_probes.h says why
    channel = grpc::CreateCustomChannel(options.target,
                                        options.credentials != nullptr
                                            ? options.credentials
                                            : security->credentials(),
                                        args);
    if (channel == nullptr) {
      return absl::InvalidArgumentError(absl::StrCat(
          "cannot create a gRPC channel to '", options.target,
          "'; check EventSenderOptions.target, e.g. \"host:port\""));
    }
  }
  return std::unique_ptr<EventSender>(new EventSender(
      std::move(options), *std::move(security), std::move(channel)));
}

EventSender::EventSender(EventSenderOptions options, ChannelSecurity security,
                         std::shared_ptr<grpc::Channel> channel)
    : options_(std::move(options)),
      security_(std::move(security)),
      channel_(std::move(channel)),
      stub_(v1::RecordingService::NewStub(channel_)) {
  thread_ = std::thread(&EventSender::Run, this);
}

EventSender::~EventSender() { Close(options_.close_timeout).IgnoreError(); }

absl::Status EventSender::Expose(absl::string_view experiment_key,
                                 const v1::Unit& unit,
                                 absl::string_view variant_key,
                                 std::optional<absl::Time> time,
                                 absl::string_view config_version) {
  const absl::Time now = absl::Now();
  if (absl::Status s = CheckExposure(experiment_key, unit, variant_key, time,
                                     config_version, now);
      !s.ok()) {
    absl::MutexLock lock(&mu_);
    ++stats_.rejected_invalid;
    return s;
  }
  v1::ExposureRecord x;
  x.set_experiment_key(std::string(experiment_key));
  *x.mutable_unit() = IdsOnly(unit);
  x.set_variant_key(std::string(variant_key));
  *x.mutable_time() = ToProto(time.value_or(now));
  x.set_idempotency_key(RandomKey());
  x.set_config_version(std::string(config_version));
  return Enqueue(std::move(x));
}

absl::Status EventSender::Track(const v1::Unit& unit, absl::string_view event,
                                std::optional<double> value,
                                std::optional<absl::Time> time,
                                absl::string_view idempotency_key) {
  const absl::Time now = absl::Now();
  if (absl::Status s =
          CheckEvent(unit, event, value, time, idempotency_key, now);
      !s.ok()) {
    absl::MutexLock lock(&mu_);
    ++stats_.rejected_invalid;
    return s;
  }
  v1::EventRecord e;
  *e.mutable_unit() = IdsOnly(unit);
  e.set_name(std::string(event));
  if (value.has_value()) e.set_value(*value);
  *e.mutable_time() = ToProto(time.value_or(now));
  e.set_idempotency_key(idempotency_key.empty() ? RandomKey()
                                                : std::string(idempotency_key));
  return Enqueue(std::move(e));
}

absl::Status EventSender::Enqueue(
    std::variant<v1::ExposureRecord, v1::EventRecord> record) {
  const size_t bytes =
      std::visit([](const auto& r) { return r.ByteSizeLong(); }, record) + 16;
  absl::MutexLock lock(&mu_);
  if (closing_) {
    return absl::FailedPreconditionError(
        "the EventSender is closed; record before calling Close");
  }
  if (stats_.pending >= options_.max_queue_items) {
    ++stats_.dropped_queue_full;
    return absl::ResourceExhaustedError(absl::StrCat(
        "the EventSender queue is full (", stats_.pending,
        " records not yet acknowledged; max_queue_items is ",
        options_.max_queue_items, "); the record was not queued",
        stats_.last_error.ok()
            ? ""
            : absl::StrCat("; last error: ", stats_.last_error.ToString())));
  }
  queue_.push_back(Item{next_seq_++, absl::Now(), bytes, std::move(record)});
  ++stats_.enqueued;
  ++stats_.pending;
  // Wake the sender to start the flush_interval clock, or for a full batch.
  if (queue_.size() == 1 ||
      queue_.size() >= static_cast<size_t>(options_.max_batch)) {
    work_cv_.Signal();
  }
  return absl::OkStatus();
}

absl::Status EventSender::Flush(absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  absl::MutexLock lock(&mu_);
  const uint64_t target = next_seq_ - 1;
  if (target > flush_seq_) {
    flush_seq_ = target;
    work_cv_.Signal();
  }
  while (done_seq_ < target) {
    if (done_cv_.WaitWithDeadline(&mu_, deadline)) break;
  }
  if (done_seq_ >= target) return absl::OkStatus();
  return absl::DeadlineExceededError(absl::StrCat(
      "Flush: up to ", target - done_seq_,
      " records queued before the call are not acknowledged after ",
      absl::FormatDuration(timeout), " (", stats_.pending, " pending in all)",
      stats_.last_error.ok()
          ? ""
          : absl::StrCat("; last error: ", stats_.last_error.ToString()),
      "; they stay queued and keep being retried"));
}

absl::Status EventSender::Close(absl::Duration timeout) {
  absl::MutexLock close_lock(&close_mu_);
  if (close_result_.has_value()) return *close_result_;
  const absl::Time deadline = absl::Now() + timeout;
  {
    absl::MutexLock lock(&mu_);
    closing_ = true;
    flush_seq_ = next_seq_ - 1;
    work_cv_.Signal();
    while (!stopped_) {
      if (done_cv_.WaitWithDeadline(&mu_, deadline)) break;
    }
    if (!stopped_) {
      abort_ = true;
      if (in_flight_ != nullptr) in_flight_->TryCancel();
      work_cv_.Signal();
    }
  }
  thread_.join();
  absl::MutexLock lock(&mu_);
  if (stats_.dropped_at_close == 0) {
    close_result_ = absl::OkStatus();
  } else {
    close_result_ = absl::DeadlineExceededError(absl::StrCat(
        "Close: ", stats_.dropped_at_close,
        " records were not acknowledged within ", absl::FormatDuration(timeout),
        " and were reported to on_undelivered",
        stats_.last_error.ok()
            ? ""
            : absl::StrCat("; last error: ", stats_.last_error.ToString())));
  }
  return *close_result_;
}

EventSenderStats EventSender::stats() const {
  absl::MutexLock lock(&mu_);
  return stats_;
}

void EventSender::Run() {
  for (;;) {
    std::vector<Item> batch;
    {
      absl::MutexLock lock(&mu_);
      for (;;) {
        if (abort_) break;
        if (queue_.empty()) {
          if (closing_) break;
          work_cv_.Wait(&mu_);
          continue;
        }
        const absl::Time due =
            queue_.front().enqueued + options_.flush_interval;
        if (closing_ || queue_.front().seq <= flush_seq_ ||
            queue_.size() >= static_cast<size_t>(options_.max_batch) ||
            absl::Now() >= due) {
          break;
        }
        work_cv_.WaitWithDeadline(&mu_, due);
      }
      if (abort_ || queue_.empty()) break;
      size_t bytes = 0;
      while (!queue_.empty() &&
             batch.size() < static_cast<size_t>(options_.max_batch) &&
             (batch.empty() || bytes + queue_.front().bytes <= kMaxCallBytes)) {
        bytes += queue_.front().bytes;
        batch.push_back(std::move(queue_.front()));
        queue_.pop_front();
      }
    }
    if (!SendBatch(std::move(batch))) break;
  }
  // Aborted by Close: whatever is still queued was never sent.
  std::deque<Item> rest;
  {
    absl::MutexLock lock(&mu_);
    rest.swap(queue_);
  }
  if (!rest.empty()) {
    UndeliveredRecords u;
    u.status = absl::DeadlineExceededError(
        "not sent before Close's deadline; the server was unreachable or slow");
    for (Item& item : rest) {
      if (auto* x = std::get_if<v1::ExposureRecord>(&item.record)) {
        u.exposures.push_back(std::move(*x));
      } else {
        u.events.push_back(std::move(std::get<v1::EventRecord>(item.record)));
      }
    }
    Report(std::move(u), &EventSenderStats::dropped_at_close);
  }
  absl::MutexLock lock(&mu_);
  stopped_ = true;
  done_seq_ = next_seq_ - 1;
  done_cv_.SignalAll();
}

bool EventSender::SendBatch(std::vector<Item> batch) {
  const uint64_t last_seq = batch.back().seq;
  std::vector<v1::ExposureRecord> exposures;
  std::vector<v1::EventRecord> events;
  for (Item& item : batch) {
    if (auto* x = std::get_if<v1::ExposureRecord>(&item.record)) {
      exposures.push_back(std::move(*x));
    } else {
      events.push_back(std::move(std::get<v1::EventRecord>(item.record)));
    }
  }
  // Exposures first: an event that arrives before its unit's exposure is
  // ignored for good.
  bool alive = Deliver<ExposureKind>(std::move(exposures));
  if (alive) {
    alive = Deliver<EventKind>(std::move(events));
  } else if (!events.empty()) {
    UndeliveredRecords u;
    u.status = absl::DeadlineExceededError(
        "not sent before Close's deadline: the exposures before them were "
        "not acknowledged");
    u.events = std::move(events);
    Report(std::move(u), &EventSenderStats::dropped_at_close);
  }
  absl::MutexLock lock(&mu_);
  done_seq_ = last_seq;
  done_cv_.SignalAll();
  return alive;
}

template <typename Kind>
bool EventSender::Deliver(std::vector<typename Kind::Record> records) {
  // Each call sends records[begin, limit), or one record when the server's
  // errors do not say which one is bad.
  size_t begin = 0;
  size_t limit = records.size();
  bool one_by_one = false;
  auto drop = [&](size_t from, size_t to, absl::Status why,
                  int64_t EventSenderStats::*counter) {
    UndeliveredRecords u;
    u.status = std::move(why);
    std::move(records.begin() + from, records.begin() + to,
              std::back_inserter(*Kind::Undelivered(&u)));
    Report(std::move(u), counter);
  };
  while (begin < records.size()) {
    const size_t end = one_by_one ? begin + 1 : limit;
    typename Kind::Request request;
    Kind::Records(&request)->Reserve(static_cast<int>(end - begin));
    for (size_t i = begin; i < end; ++i)
      *Kind::Records(&request)->Add() = records[i];
    absl::Status status;
    switch (Call<Kind>(request, &status)) {
      case SendResult::kAcknowledged: {
        absl::MutexLock lock(&mu_);
        stats_.sent += end - begin;
        stats_.pending -= end - begin;
        begin = end;
        limit = records.size();
        break;
      }
      case SendResult::kRejected: {
        if (end - begin == 1) {
          drop(begin, end, std::move(status),
               &EventSenderStats::dropped_invalid);
          begin = end;
          limit = records.size();
          break;
        }
        // The server checks every record before storing any and names the
        // first bad one: the ones before it are good, so send those next.
        const std::optional<size_t> bad =
            NamedIndex(status.message(), Kind::kField);
        if (!bad.has_value() || *bad >= end - begin) {
          one_by_one = true;
          break;
        }
        const size_t at = begin + *bad;
        drop(at, at + 1, std::move(status), &EventSenderStats::dropped_invalid);
        records.erase(records.begin() + at);
        limit = *bad == 0 ? records.size() : at;
        break;
      }
      case SendResult::kGaveUp:
        drop(begin, records.size(),
             absl::DeadlineExceededError(absl::StrCat(
                 "not acknowledged after retrying for ",
                 absl::FormatDuration(options_.max_retry_time),
                 " (max_retry_time); last error: ", status.ToString())),
             &EventSenderStats::dropped_gave_up);
        return true;
      case SendResult::kAborted:
        drop(begin, records.size(),
             absl::DeadlineExceededError(absl::StrCat(
                 "not acknowledged before Close's deadline",
                 status.ok()
                     ? ""
                     : absl::StrCat("; last error: ", status.ToString()))),
             &EventSenderStats::dropped_at_close);
        return false;
    }
  }
  return true;
}

template <typename Kind>
EventSender::SendResult EventSender::Call(const typename Kind::Request& request,
                                          absl::Status* status) {
  const absl::Time start = absl::Now();
  absl::Duration backoff = options_.initial_backoff;
  for (bool first = true;; first = false) {
    grpc::ClientContext context;
    context.set_deadline(
        absl::ToChronoTime(absl::Now() + options_.call_deadline));
    // Wait for a connection rather than fail at once while the server is
    // down: a waiting call also drives the reconnect, so records go as soon
    // as the server is back instead of at gRPC's next background poll.
    context.set_wait_for_ready(true);
    security_.Apply(&context);
    {
      absl::MutexLock lock(&mu_);
      if (abort_) return SendResult::kAborted;
      in_flight_ = &context;
      ++stats_.rpcs;
      if (!first) ++stats_.retries;
    }
    typename Kind::Response response;
    *status =
        FromGrpcStatus(Kind::Send(stub_.get(), &context, request, &response));
    if (!status->ok() && status->code() != absl::StatusCode::kInvalidArgument) {
      *status = Annotate(*status);
    }
    {
      absl::MutexLock lock(&mu_);
      in_flight_ = nullptr;
      if (!status->ok()) {
        stats_.last_error = *status;
        if (abort_) return SendResult::kAborted;
      }
    }
    if (status->ok()) return SendResult::kAcknowledged;
    // The record is at fault, and resending it unchanged cannot help. Any
    // other error (the server down, slow or misconfigured) may pass, and
    // the keys make a resend safe.
    if (status->code() == absl::StatusCode::kInvalidArgument) {
      return SendResult::kRejected;
    }
    // A server that says when to come back (grpc-retry-pushback-ms, e.g.
    // abexp-server bounding recording while Redis is down) spaces its
    // callers itself: wait as told, and start the backoff afresh after.
    const std::optional<absl::Duration> pushback = RetryPushback(context);
    const absl::Duration wait =
        pushback.has_value() ? *pushback
        : options_.jitter == 0
            ? backoff
            : backoff * absl::Uniform(Random(), 1 - options_.jitter,
                                      1 + options_.jitter);
    if (absl::Now() + wait - start > options_.max_retry_time) {
      return SendResult::kGaveUp;
    }
    if (!Backoff(wait)) return SendResult::kAborted;
    backoff = pushback.has_value()
                  ? options_.initial_backoff
                  : std::min(backoff * 2, options_.max_backoff);
  }
}

absl::Status EventSender::Annotate(const absl::Status& status) const {
  const bool connected = channel_->GetState(false) == GRPC_CHANNEL_READY;
  const std::string note = AuthErrorNote(status.code(), security_);
  return absl::Status(
      status.code(),
      absl::StrCat(options_.channel != nullptr
                       ? std::string("abexp-server")
                       : absl::StrCat("abexp-server at ", options_.target),
                   ": ", status.message(),
                   connected ? ""
                             : " (not connected: the server is down, "
                               "unreachable or refusing connections)",
                   note.empty() ? "" : absl::StrCat(" (", note, ")")));
}

bool EventSender::Backoff(absl::Duration d) {
  const absl::Time until = absl::Now() + d;
  absl::MutexLock lock(&mu_);
  while (!abort_) {
    if (work_cv_.WaitWithDeadline(&mu_, until)) break;
  }
  return !abort_;
}

void EventSender::Report(UndeliveredRecords records,
                         int64_t EventSenderStats::*counter) {
  const int64_t n =
      static_cast<int64_t>(records.exposures.size() + records.events.size());
  {
    absl::MutexLock lock(&mu_);
    stats_.pending -= n;
    stats_.*counter += n;
  }
  if (options_.on_undelivered) options_.on_undelivered(records);
}

}  // namespace abexp
