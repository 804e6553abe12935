#include "server/storage/spool/spooled_event_store.h"

#include <algorithm>
#include <utility>

#include "abexp/internal/spool.pb.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "google/protobuf/arena.h"

namespace abexp {
namespace {

namespace pb = ::abexp::internal;

constexpr char kRejectedDir[] = "rejected";

pb::MetricType MetricTypeToProto(MetricType type) {
  switch (type) {
    case MetricType::kBinomial:
      return pb::METRIC_TYPE_BINOMIAL;
    case MetricType::kSum:
      return pb::METRIC_TYPE_SUM;
    case MetricType::kRatio:
      return pb::METRIC_TYPE_RATIO;
    case MetricType::kRetention:
      return pb::METRIC_TYPE_RETENTION;
    case MetricType::kFunnel:
      return pb::METRIC_TYPE_FUNNEL;
  }
  return pb::METRIC_TYPE_UNSPECIFIED;
}

absl::StatusOr<MetricType> MetricTypeFromProto(pb::MetricType type) {
  switch (type) {
    case pb::METRIC_TYPE_BINOMIAL:
      return MetricType::kBinomial;
    case pb::METRIC_TYPE_SUM:
      return MetricType::kSum;
    case pb::METRIC_TYPE_RATIO:
      return MetricType::kRatio;
    case pb::METRIC_TYPE_RETENTION:
      return MetricType::kRetention;
    case pb::METRIC_TYPE_FUNNEL:
      return MetricType::kFunnel;
    default:
      return absl::DataLossError(
          absl::StrCat("spool record has metric type ", type,
                       ", which this abexp-server does not know"));
  }
}

void SourceToProto(const MetricSource& source, pb::MetricSource* out) {
  out->set_event(source.event);
  out->set_aggregation(source.aggregation == EventAggregation::kValue
                           ? pb::EVENT_AGGREGATION_VALUE
                           : pb::EVENT_AGGREGATION_COUNT);
}

absl::StatusOr<MetricSource> SourceFromProto(const pb::MetricSource& p) {
  MetricSource source;
  source.event = p.event();
  switch (p.aggregation()) {
    case pb::EVENT_AGGREGATION_COUNT:
      source.aggregation = EventAggregation::kCount;
      break;
    case pb::EVENT_AGGREGATION_VALUE:
      source.aggregation = EventAggregation::kValue;
      break;
    default:
      // An unset source (e.g. a binomial metric's numerator) is all zeros.
      if (!p.event().empty()) {
        return absl::DataLossError(
            absl::StrCat("spool record has event aggregation ", p.aggregation(),
                         " for event '", p.event(), "'"));
      }
  }
  return source;
}

absl::Status WithContext(const absl::Status& status, absl::string_view what) {
  return absl::Status(status.code(),
                      absl::StrCat(what, ": ", status.message()));
}

// The spool record of one write: `exposures` or the events `event_at(i)`
// for i < `events`, one of the two empty.
template <typename EventAt>
std::string EncodeRecord(const ExperimentLayout& experiment,
                         absl::Span<const Exposure> exposures, size_t events,
                         const EventAt& event_at) {
  // On an arena: a record of a batch holds a few strings per item, and
  // one heap allocation (and free) per string was most of this function's
  // cost while Redis was away and every write came here.
  char first_block[8192];
  google::protobuf::ArenaOptions arena_options;
  arena_options.initial_block = first_block;
  arena_options.initial_block_size = sizeof(first_block);
  google::protobuf::Arena arena(arena_options);
  pb::SpoolRecord& record =
      *google::protobuf::Arena::CreateMessage<pb::SpoolRecord>(&arena);
  pb::ExperimentLayout* layout = record.mutable_layout();
  layout->set_key(experiment.key);
  layout->set_phase(experiment.phase);
  for (const std::string& v : experiment.variant_keys) {
    layout->add_variant_keys(v);
  }
  for (const Metric& m : experiment.metrics) {
    pb::Metric* p = layout->add_metrics();
    p->set_key(m.key);
    p->set_description(m.description);
    p->set_type(MetricTypeToProto(m.type));
    SourceToProto(m.source, p->mutable_source());
    SourceToProto(m.numerator, p->mutable_numerator());
    SourceToProto(m.denominator, p->mutable_denominator());
    p->set_window_nanos(absl::ToInt64Nanoseconds(m.window));
    p->set_retention_day(m.retention_day);
    p->set_guardrail(m.guardrail);
    p->set_higher_is_better(m.higher_is_better);
    // Both are part of the metric's signature: without them a replayed
    // write would count under another definition.
    p->set_covariate(m.covariate);
    for (const FunnelStep& step : m.steps) {
      pb::FunnelStep* ps = p->add_steps();
      ps->set_event(step.event);
      if (step.window) {
        ps->set_window_nanos(absl::ToInt64Nanoseconds(*step.window));
      }
    }
  }
  for (const Dimension& d : experiment.dimensions) {
    pb::Dimension* p = layout->add_dimensions();
    p->set_attribute(d.attribute);
    p->set_max_values(d.max_values);
  }
  for (const Exposure& x : exposures) {
    pb::Exposure* p = record.add_exposures();
    p->set_unit_id(x.unit_id);
    p->set_variant_index(x.variant_index);
    p->set_time_unix_nanos(absl::ToUnixNanos(x.time));
    p->set_config_version(x.config_version);
    p->set_idempotency_key(x.idempotency_key);
    p->mutable_covariates()->insert(x.covariates.begin(), x.covariates.end());
    p->mutable_dimensions()->insert(x.dimensions.begin(), x.dimensions.end());
  }
  for (size_t i = 0; i < events; ++i) {
    const Event& e = event_at(i);
    pb::Event* p = record.add_events();
    p->set_unit_id(e.unit_id);
    p->set_name(e.name);
    if (e.value.has_value()) p->set_value(*e.value);
    p->set_time_unix_nanos(absl::ToUnixNanos(e.time));
    p->set_idempotency_key(e.idempotency_key);
  }
  return record.SerializeAsString();
}

std::string EncodeRecord(const ExperimentLayout& experiment,
                         absl::Span<const Exposure> exposures,
                         absl::Span<const Event> events) {
  return EncodeRecord(experiment, exposures, events.size(),
                      [&](size_t i) -> const Event& { return events[i]; });
}

// The record of an EventBatch, without copying its events first.
std::string EncodeRecord(const EventBatch& batch) {
  return EncodeRecord(
      *batch.layout, {}, batch.events.size(),
      [&](size_t i) -> const Event& { return *batch.events[i]; });
}

// "experiment 'a'", or "experiments 'a', 'b' and 'c'" (at most 3 named).
std::string ExperimentsNamed(const std::vector<const ExperimentLayout*>& all) {
  if (all.size() == 1) return absl::StrCat("experiment '", all[0]->key, "'");
  std::string out = "experiments ";
  const size_t named = std::min<size_t>(all.size(), 3);
  for (size_t i = 0; i < named; ++i) {
    if (i > 0) absl::StrAppend(&out, i + 1 == all.size() ? " and " : ", ");
    absl::StrAppend(&out, "'", all[i]->key, "'");
  }
  if (named < all.size()) {
    absl::StrAppend(&out, " and ", all.size() - named, " more");
  }
  return out;
}

// The backend's errors for a write that can never apply, which replay sets
// aside: FAILED_PRECONDITION (variants clash with the recorded ones, the
// phase ran out of metric ids) and INVALID_ARGUMENT (an item the store
// refuses, e.g. a value beyond kMaxEventValue; the store checks before
// writing, so nothing of the write was applied).
bool IsPermanentReplayError(const absl::Status& status) {
  return status.code() == absl::StatusCode::kFailedPrecondition ||
         status.code() == absl::StatusCode::kInvalidArgument;
}

}  // namespace

std::string EncodeSpooledWrite(const SpooledWrite& write) {
  return EncodeRecord(write.layout, write.exposures, write.events);
}

absl::StatusOr<SpooledWrite> DecodeSpooledWrite(absl::string_view bytes) {
  pb::SpoolRecord record;
  if (!record.ParseFromArray(bytes.data(), static_cast<int>(bytes.size()))) {
    return absl::DataLossError(absl::StrCat(
        "spool record of ", bytes.size(),
        " bytes is not a SpoolRecord (proto/abexp/internal/spool.proto)"));
  }
  if ((record.exposures_size() == 0) == (record.events_size() == 0)) {
    return absl::DataLossError(
        absl::StrCat("spool record for experiment '", record.layout().key(),
                     "' holds ", record.exposures_size(), " exposures and ",
                     record.events_size(), " events; a record holds one kind"));
  }
  SpooledWrite write;
  const pb::ExperimentLayout& layout = record.layout();
  write.layout.key = layout.key();
  write.layout.phase = layout.phase();
  write.layout.variant_keys.assign(layout.variant_keys().begin(),
                                   layout.variant_keys().end());
  for (const pb::Metric& p : layout.metrics()) {
    Metric m;
    m.key = p.key();
    m.description = p.description();
    absl::StatusOr<MetricType> type = MetricTypeFromProto(p.type());
    if (!type.ok()) return type.status();
    m.type = *type;
    for (auto [from, to] : {std::make_pair(&p.source(), &m.source),
                            std::make_pair(&p.numerator(), &m.numerator),
                            std::make_pair(&p.denominator(), &m.denominator)}) {
      absl::StatusOr<MetricSource> source = SourceFromProto(*from);
      if (!source.ok()) return source.status();
      *to = *std::move(source);
    }
    m.window = absl::Nanoseconds(p.window_nanos());
    m.retention_day = p.retention_day();
    m.guardrail = p.guardrail();
    m.higher_is_better = p.higher_is_better();
    m.covariate = p.covariate();
    for (const pb::FunnelStep& ps : p.steps()) {
      FunnelStep& step = m.steps.emplace_back();
      step.event = ps.event();
      if (ps.window_nanos() != 0) {
        step.window = absl::Nanoseconds(ps.window_nanos());
      }
    }
    write.layout.metrics.push_back(std::move(m));
  }
  for (const pb::Dimension& p : layout.dimensions()) {
    Dimension& d = write.layout.dimensions.emplace_back();
    d.attribute = p.attribute();
    d.max_values = p.max_values();
  }
  write.exposures.reserve(record.exposures_size());
  for (const pb::Exposure& p : record.exposures()) {
    Exposure& x = write.exposures.emplace_back();
    x.unit_id = p.unit_id();
    x.variant_index = p.variant_index();
    x.time = absl::FromUnixNanos(p.time_unix_nanos());
    x.config_version = p.config_version();
    x.idempotency_key = p.idempotency_key();
    x.covariates.insert(p.covariates().begin(), p.covariates().end());
    x.dimensions.insert(p.dimensions().begin(), p.dimensions().end());
  }
  write.events.reserve(record.events_size());
  for (const pb::Event& p : record.events()) {
    Event& e = write.events.emplace_back();
    e.unit_id = p.unit_id();
    e.name = p.name();
    if (p.has_value()) e.value = p.value();
    e.time = absl::FromUnixNanos(p.time_unix_nanos());
    e.idempotency_key = p.idempotency_key();
  }
  return write;
}

bool IsTransientBackendError(const absl::Status& status) {
  switch (status.code()) {
    case absl::StatusCode::kUnavailable:
    case absl::StatusCode::kDeadlineExceeded:
    case absl::StatusCode::kResourceExhausted:
    case absl::StatusCode::kAborted:
      return true;
    default:
      return false;
  }
}

SpooledEventStore::SpooledEventStore(EventStore* backend,
                                     std::unique_ptr<Spool> spool,
                                     SpooledEventStoreOptions options)
    : backend_(backend),
      spool_(std::move(spool)),
      options_(std::move(options)) {
  {
    absl::MutexLock lock(&mu_);
    // Records of an earlier run go first: spool until they are replayed.
    spooling_ = !spool_->empty();
    // The earlier run's records are at least as old as this start.
    if (spooling_) spooling_since_ = absl::Now();
    wake_ = spooling_;
  }
  replay_thread_ = std::thread([this] { ReplayLoop(); });
}

SpooledEventStore::~SpooledEventStore() {
  {
    absl::MutexLock lock(&mu_);
    stop_ = true;
  }
  replay_thread_.join();
}

absl::StatusOr<std::vector<WriteOutcome>> SpooledEventStore::WriteExposures(
    const ExperimentLayout& layout, absl::Span<const Exposure> exposures) {
  if (exposures.empty()) return std::vector<WriteOutcome>();
  return Write(layout, exposures, {});
}

absl::StatusOr<std::vector<WriteOutcome>> SpooledEventStore::WriteEvents(
    const ExperimentLayout& layout, absl::Span<const Event> events) {
  if (events.empty()) return std::vector<WriteOutcome>();
  return Write(layout, {}, events);
}

std::vector<WriteResult> SpooledEventStore::WriteEventBatches(
    absl::Span<const EventBatch> batches) {
  absl::ReaderMutexLock mode(&mode_mu_);
  bool spooling;
  {
    absl::MutexLock lock(&mu_);
    spooling = spooling_;
  }
  std::vector<WriteResult> results(batches.size(), std::vector<WriteOutcome>());
  std::vector<bool> to_spool(batches.size(), spooling);
  if (!spooling) {
    std::vector<WriteResult> written = backend_->WriteEventBatches(batches);
    if (written.size() != batches.size()) {
      return std::vector<WriteResult>(
          batches.size(),
          absl::InternalError(absl::StrCat(options_.backend_name, " answered ",
                                           written.size(), " results for ",
                                           batches.size(), " batches")));
    }
    for (size_t i = 0; i < batches.size(); ++i) {
      NoteBackend(written[i].status());
      if (!written[i].ok() && IsTransientBackendError(written[i].status())) {
        StartSpooling(written[i].status());
        to_spool[i] = true;
      } else {
        results[i] = std::move(written[i]);
      }
    }
  }
  // One append for all of them: one event fans out to every experiment
  // with a metric on it, and an append per experiment cost a group-commit
  // turn (a wake and a lock round) each.
  std::vector<size_t> picked;
  std::vector<std::string> records;
  std::vector<const ExperimentLayout*> layouts;
  size_t items = 0;
  for (size_t i = 0; i < batches.size(); ++i) {
    if (!to_spool[i] || batches[i].events.empty()) continue;
    picked.push_back(i);
    records.push_back(EncodeRecord(batches[i]));
    layouts.push_back(batches[i].layout);
    items += batches[i].events.size();
  }
  if (records.empty()) return results;
  const absl::Status appended =
      AppendRecords(records, items, ExperimentsNamed(layouts));
  for (size_t i : picked) {
    if (appended.ok()) {
      results[i] = std::vector<WriteOutcome>(batches[i].events.size(),
                                             WriteOutcome::kSpooled);
    } else {
      results[i] = appended;
    }
  }
  return results;
}

absl::StatusOr<std::vector<WriteOutcome>> SpooledEventStore::Write(
    const ExperimentLayout& layout, absl::Span<const Exposure> exposures,
    absl::Span<const Event> events) {
  absl::ReaderMutexLock mode(&mode_mu_);
  bool spooling;
  {
    absl::MutexLock lock(&mu_);
    spooling = spooling_;
  }
  if (!spooling) {
    absl::StatusOr<std::vector<WriteOutcome>> outcomes =
        exposures.empty() ? backend_->WriteEvents(layout, events)
                          : backend_->WriteExposures(layout, exposures);
    NoteBackend(outcomes.status());
    if (outcomes.ok() || !IsTransientBackendError(outcomes.status())) {
      return outcomes;
    }
    StartSpooling(outcomes.status());
  }
  return AppendToSpool(layout, exposures, events);
}

void SpooledEventStore::StartSpooling(const absl::Status& why) {
  // From now on, until a replay empties the spool, every write is spooled,
  // the failed one first.
  // Cheap (an fstat and a stat), and only when the backend failed: so
  // that a spool gone while Redis was healthy is not announced as taking
  // writes.
  const bool lost = !spool_->CheckIntact().ok() && spool_->lost();
  bool started = false;
  bool newly_lost = false;
  {
    absl::MutexLock lock(&mu_);
    // Without a spool the write is refused, and the reason names `why`.
    if (!spooling_) spool_reason_ = why;
    if (lost && !spooling_ && !spool_lost_) {
      // Nothing is spooled, so no write can overtake one: no need for the
      // exclusive lock AbandonSpool() takes.
      spool_lost_ = true;
      newly_lost = true;
    }
    if (!spooling_ && !spool_lost_) {
      spooling_ = true;
      spooling_since_ = absl::Now();
      wake_ = true;
      started = true;
    }
  }
  if (newly_lost) NotifyLost();
  if (started) {
    Notify(absl::StrCat(options_.backend_name, " failed (", why.ToString(),
                        "); acknowledging recording calls from the local "
                        "spool ",
                        spool_->dir(), " until it is back"));
  }
}

absl::StatusOr<std::vector<WriteOutcome>> SpooledEventStore::AppendToSpool(
    const ExperimentLayout& layout, absl::Span<const Exposure> exposures,
    absl::Span<const Event> events) {
  const size_t items = exposures.size() + events.size();
  const std::string record = EncodeRecord(layout, exposures, events);
  if (absl::Status s =
          AppendRecords({record}, items, ExperimentsNamed({&layout}));
      !s.ok()) {
    return s;
  }
  return std::vector<WriteOutcome>(items, WriteOutcome::kSpooled);
}

absl::Status SpooledEventStore::AppendRecords(
    absl::Span<const std::string> records, size_t items,
    absl::string_view experiments) {
  if (absl::Status s = spool_->Append(records); !s.ok()) {
    const bool lost = spool_->lost();
    absl::Status reason;
    {
      absl::MutexLock lock(&mu_);
      reason = spool_reason_.ok() ? stats_.last_replay_error : spool_reason_;
      // The replay thread stops spooling now, rather than after its backoff.
      if (lost) wake_ = true;
    }
    // Keep the spool's code: UNAVAILABLE (full, or a disk error) tells the
    // client to retry; nothing of this write was acknowledged.
    return absl::Status(
        s.code(),
        absl::StrCat("cannot accept ", items, " items for ", experiments, ": ",
                     options_.backend_name,
                     reason.ok() ? std::string(" is still taking older "
                                               "spooled writes")
                                 : absl::StrCat(" has been failing (",
                                                reason.ToString(), ")"),
                     " and ", s.message()));
  }
  absl::MutexLock lock(&mu_);
  appended_since_step_ += static_cast<int64_t>(records.size());
  stats_.spooled_writes += static_cast<int64_t>(records.size());
  stats_.spooled_items += static_cast<int64_t>(items);
  return absl::OkStatus();
}

absl::StatusOr<ExperimentAggregates> SpooledEventStore::ReadAggregates(
    const ExperimentLayout& layout) {
  return backend_->ReadAggregates(layout);
}

absl::StatusOr<std::optional<int>> SpooledEventStore::RecordedVariant(
    const ExperimentLayout& layout, absl::string_view unit_id) {
  return backend_->RecordedVariant(layout, unit_id);
}

std::vector<RecordedVariantResult> SpooledEventStore::RecordedVariants(
    absl::Span<const RecordedVariantQuery> queries) {
  return backend_->RecordedVariants(queries);
}

absl::Status SpooledEventStore::ApplyRecords(
    absl::Span<const std::string> records) {
  for (const std::string& record : records) {
    absl::StatusOr<SpooledWrite> write = DecodeSpooledWrite(record);
    if (!write.ok()) {
      if (absl::Status s = Reject(record, 0, write.status()); !s.ok()) return s;
      continue;
    }
    const bool exposures = !write->exposures.empty();
    const size_t items =
        exposures ? write->exposures.size() : write->events.size();
    absl::StatusOr<std::vector<WriteOutcome>> outcomes =
        exposures ? backend_->WriteExposures(write->layout, write->exposures)
                  : backend_->WriteEvents(write->layout, write->events);
    if (outcomes.ok()) {
      absl::MutexLock lock(&mu_);
      catching_up_ = true;  // the backend takes writes again
      ++stats_.replayed_writes;
      stats_.replayed_items += static_cast<int64_t>(items);
      continue;
    }
    if (IsPermanentReplayError(outcomes.status())) {
      if (absl::Status s = Reject(record, items, outcomes.status()); !s.ok()) {
        return s;
      }
      continue;
    }
    return WithContext(
        outcomes.status(),
        absl::StrCat("replaying ", items, exposures ? " exposures" : " events",
                     " of experiment '", write->layout.key, "' into ",
                     options_.backend_name));
  }
  return absl::OkStatus();
}

absl::Status SpooledEventStore::Reject(const std::string& record, size_t items,
                                       const absl::Status& why) {
  const std::string dir = absl::StrCat(spool_->dir(), "/", kRejectedDir);
  absl::Status appended;
  {
    absl::MutexLock lock(&rejected_mu_);
    if (rejected_ == nullptr) {
      absl::StatusOr<std::unique_ptr<Spool>> opened =
          Spool::Open(dir, options_.rejected_spool);
      if (!opened.ok()) {
        return WithContext(opened.status(),
                           "cannot set aside a spooled write the backend "
                           "rejects; it stays in the spool");
      }
      rejected_ = *std::move(opened);
    }
    appended = rejected_->Append({record});
  }
  if (appended.ok()) {
    absl::MutexLock lock(&mu_);
    ++stats_.rejected_writes;
    stats_.rejected_items += static_cast<int64_t>(items);
  }
  if (!appended.ok()) {
    return WithContext(appended,
                       absl::StrCat("cannot set aside a spooled write in ", dir,
                                    "; it stays in the spool"));
  }
  Notify(absl::StrCat("set aside a spooled write of ", items,
                      " items that cannot be applied (", why.ToString(),
                      "); it is kept in ", dir,
                      " and was not counted; the writes behind it go on"));
  return absl::OkStatus();
}

absl::Status SpooledEventStore::ReplayStep(size_t extra_records) {
  // One batch (and the extra): the spool grows while it replays, and a step
  // that chased its end could last as long as writers keep writing.
  absl::Status s = spool_->Replay(
      [this](absl::Span<const std::string> records) {
        return ApplyRecords(records);
      },
      options_.replay_batch_records,
      options_.replay_batch_records + extra_records);
  if (!s.ok()) {
    absl::MutexLock lock(&mu_);
    catching_up_ = false;
    stats_.last_replay_error = s;
  }
  return s;
}

absl::Status SpooledEventStore::ReplayOnce() {
  bool catching_up = false;
  {
    absl::MutexLock lock(&mu_);
    catching_up = catching_up_;
  }
  // Until a step succeeds (the backend still failing), writers spool
  // without waiting for the replay.
  if (!catching_up) {
    if (absl::Status s = ReplayStep(); !s.ok()) return s;
  }
  // No writer holds mode_mu_ now, so none is between deciding to spool and
  // appending: an empty spool stays empty until writers see spooling_ off.
  absl::WriterMutexLock mode(&mode_mu_);
  if (catching_up) {
    // The backend took the last step: it is back. Writers wait for each
    // step, so the spool shrinks even when they write faster than one
    // thread replays; otherwise steady recording would keep every write
    // spooled with Redis healthy. The step also takes what writers
    // appended since the last one, so each shrinks the spool by a batch.
    int64_t arrived = 0;
    {
      absl::MutexLock lock(&mu_);
      arrived = appended_since_step_;
      appended_since_step_ = 0;
    }
    if (absl::Status s = ReplayStep(static_cast<size_t>(arrived)); !s.ok()) {
      return s;
    }
  }
  // A spool whose directory went away is empty for having lost its
  // records, not for having replayed them (the callers abandon it).
  if (spool_->lost()) {
    absl::Status gone = spool_->CheckIntact();
    return gone.ok() ? absl::DataLossError("the spool was lost") : gone;
  }
  if (!spool_->empty()) return absl::OkStatus();  // more arrived: go again
  SpooledEventStoreStats stats;
  {
    absl::MutexLock lock(&mu_);
    stats_.last_replay_error = absl::OkStatus();
    if (!spooling_) return absl::OkStatus();
    spooling_ = false;
    spool_reason_ = absl::OkStatus();
    stats = stats_;
  }
  Notify(absl::StrCat("spool ", spool_->dir(), " drained into ",
                      options_.backend_name, " (", stats.replayed_writes,
                      " writes, ", stats.replayed_items,
                      " items replayed since start); recording goes straight "
                      "to it again"));
  return absl::OkStatus();
}

void SpooledEventStore::ReplayLoop() {
  absl::Duration backoff = absl::ZeroDuration();
  // Logged once per failure streak, and again when the kind of error
  // changes (e.g. Redis answers again but rejects the password).
  absl::StatusCode notified = absl::StatusCode::kOk;
  for (;;) {
    {
      absl::MutexLock lock(&mu_);
      auto woken = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
        return stop_ || wake_;
      };
      if (!spooling_) {
        mu_.Await(absl::Condition(&woken));
      } else if (backoff > absl::ZeroDuration()) {
        mu_.AwaitWithTimeout(absl::Condition(&woken), backoff);
      }
      if (stop_) return;
      wake_ = false;
      if (!spooling_) continue;
    }
    absl::Status s = ReplayOnce();
    if (s.ok()) {
      backoff = absl::ZeroDuration();
      notified = absl::StatusCode::kOk;
      continue;
    }
    if (spool_->lost()) {
      AbandonSpool();
      continue;
    }
    if (s.code() != notified) {
      Notify(absl::StrCat("replaying spool ", spool_->dir(), " (",
                          spool_->pending_records(),
                          " writes pending) failed: ", s.ToString(),
                          "; retrying with backoff up to ",
                          absl::FormatDuration(options_.max_backoff)));
      notified = s.code();
    }
    backoff = backoff == absl::ZeroDuration()
                  ? options_.initial_backoff
                  : std::min(backoff * 2, options_.max_backoff);
  }
}

absl::Status SpooledEventStore::Drain(absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  absl::Duration backoff = options_.initial_backoff;
  absl::Status last;
  for (;;) {
    last = ReplayOnce();
    if (spool_->lost()) {
      AbandonSpool();
      return absl::UnavailableError(absl::StrCat(
          "nothing spooled can be replayed into ", options_.backend_name, ": ",
          spool_->CheckIntact().message()));
    }
    {
      absl::MutexLock lock(&mu_);
      if (!spooling_) return absl::OkStatus();
    }
    const absl::Time now = absl::Now();
    if (now >= deadline) break;
    if (!last.ok()) {
      absl::SleepFor(std::min(backoff, deadline - now));
      backoff = std::min(backoff * 2, options_.max_backoff);
    }
  }
  return absl::DeadlineExceededError(absl::StrCat(
      spool_->pending_records(), " spooled writes (", spool_->size_bytes(),
      " bytes) are still in ", spool_->dir(), " after ",
      absl::FormatDuration(timeout),
      last.ok() ? std::string(" (writes kept arriving)")
                : absl::StrCat(" (last error: ", last.ToString(), ")"),
      "; they stay there and are replayed first on the next start"));
}

SpooledEventStoreStats SpooledEventStore::stats() const {
  SpooledEventStoreStats stats;
  {
    absl::MutexLock lock(&mu_);
    stats = stats_;
    stats.spooling = spooling_;
    stats.spooling_since = spooling_ ? spooling_since_ : absl::InfiniteFuture();
  }
  stats.pending_records = spool_->pending_records();
  stats.lost_records = spool_->lost_records();
  stats.spool_bytes = spool_->size_bytes();
  return stats;
}

bool SpooledEventStore::CanAcknowledge() {
  return spool_->CheckIntact().ok() ||
         !backend_failing_.load(std::memory_order_relaxed);
}

void SpooledEventStore::NoteBackend(const absl::Status& status) {
  const bool failing = IsTransientBackendError(status);
  // Written only on a change: the flag is read far more than it changes.
  if (backend_failing_.load(std::memory_order_relaxed) != failing) {
    backend_failing_.store(failing, std::memory_order_relaxed);
  }
}

void SpooledEventStore::AbandonSpool() {
  {
    absl::WriterMutexLock mode(&mode_mu_);
    absl::MutexLock lock(&mu_);
    if (spool_lost_) return;
    spool_lost_ = true;
    spooling_ = false;
    catching_up_ = false;
  }
  NotifyLost();
}

void SpooledEventStore::NotifyLost() {
  // Counted by the server as abexp_spool_lost_writes_total.
  Notify(absl::StrCat(spool_->CheckIntact().message(),
                      ". Until then recording calls go straight to ",
                      options_.backend_name,
                      " and are refused with UNAVAILABLE while it fails"));
}

void SpooledEventStore::Notify(const std::string& message) const {
  if (options_.notify) options_.notify(message);
}

}  // namespace abexp
