#include "server/core/recorder.h"

#include <openssl/rand.h>
#include <xxhash.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <map>
#include <utility>
#include <variant>

#include "absl/container/inlined_vector.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "server/core/config_parser.h"
#include "server/core/error_text.h"

namespace abexp {
namespace {

// Times before this are bugs (an unset or zeroed clock), not late data.
const absl::Time kEarliestTime =
    absl::FromUnixSeconds(946684800);  // 2000-01-01

std::string Rfc3339(absl::Time t) {
  return absl::FormatTime("%Y-%m-%d%ET%H:%M:%E*SZ", t, absl::UTCTimeZone());
}

// Appends a length-prefixed field, so ("ab","c") and ("a","bc") differ.
void AppendField(std::string* out, absl::string_view field) {
  const uint32_t n = static_cast<uint32_t>(field.size());
  char len[4] = {
      static_cast<char>(n & 0xff), static_cast<char>((n >> 8) & 0xff),
      static_cast<char>((n >> 16) & 0xff), static_cast<char>(n >> 24)};
  out->append(len, 4);
  out->append(field.data(), field.size());
}

std::string Hash128Hex(const std::string& bytes) {
  const XXH128_hash_t h = XXH3_128bits(bytes.data(), bytes.size());
  return absl::StrFormat("%016x%016x", h.high64, h.low64);
}

std::string TimeField(std::optional<absl::Time> t) {
  return t.has_value() ? absl::StrCat(absl::ToUnixNanos(*t)) : std::string();
}

absl::Status ValidateTime(std::optional<absl::Time> time, absl::Time now,
                          const std::string& field) {
  if (!time.has_value()) return absl::OkStatus();
  if (*time > now + kMaxFutureSkew) {
    return absl::InvalidArgumentError(absl::StrCat(
        field, " is ", Rfc3339(*time), ", more than 24h after the server's ",
        "time ", Rfc3339(now),
        "; send when it happened in UTC (seconds, not milliseconds), or leave ",
        field, " unset for the server's time"));
  }
  if (*time < kEarliestTime) {
    return absl::InvalidArgumentError(absl::StrCat(
        field, " is ", Rfc3339(*time),
        ", before 2000; send when it happened, or leave it unset for the "
        "server's time"));
  }
  return absl::OkStatus();
}

absl::Status ValidateKey(const std::string& key, const std::string& field) {
  if (key.size() > kMaxIdempotencyKeyBytes) {
    return absl::InvalidArgumentError(absl::StrCat(
        field, " is ", key.size(), " bytes; send at most ",
        kMaxIdempotencyKeyBytes, " (e.g. a UUID), or leave it unset"));
  }
  return absl::OkStatus();
}

// ValidateUnit naming `field`, with a message for no ids that suits
// recording.
absl::Status CheckUnit(const IndexedConfig& config, const Unit& unit,
                       const std::string& field) {
  if (unit.ids.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat(field,
                     ".ids is empty; send the unit's ids, e.g. {\"user_id\": "
                     "\"u-123\"}"));
  }
  return ValidateUnit(config, unit, field);
}

const std::string* FindId(const Unit& unit, const std::string& type) {
  auto it = unit.ids.find(type);
  return it == unit.ids.end() ? nullptr : &it->second;
}

bool InSchedule(const Experiment& e, absl::Time t) {
  if (e.start_time.has_value() && t < *e.start_time) return false;
  if (e.end_time.has_value() && t >= *e.end_time) return false;
  return true;
}

// The unit's values of the covariates `e`'s metrics name: numbers only,
// finite and within ±kMaxEventValue; any other value counts as missing.
std::map<std::string, double> CovariatesOf(const IndexedConfig& config,
                                           const Experiment& e,
                                           const Unit& unit) {
  std::map<std::string, double> out;
  for (const std::string& key : e.metrics) {
    const Metric* m = config.FindMetric(key);
    if (m == nullptr || m->covariate.empty()) continue;
    auto it = unit.attributes.find(m->covariate);
    if (it == unit.attributes.end()) continue;
    const double* x = std::get_if<double>(&it->second);
    if (x != nullptr && std::isfinite(*x) && std::abs(*x) <= kMaxEventValue) {
      out[m->covariate] = *x;
    }
  }
  return out;
}

// The unit's values of `e`'s dimensions: strings as sent, bools as "true"
// or "false"; a number (the parser refuses number dimensions, but a client
// may send one) counts as missing.
std::map<std::string, std::string> DimensionsOf(const Experiment& e,
                                                const Unit& unit) {
  std::map<std::string, std::string> out;
  for (const Dimension& d : e.dimensions) {
    auto it = unit.attributes.find(d.attribute);
    if (it == unit.attributes.end()) continue;
    if (const std::string* s = std::get_if<std::string>(&it->second)) {
      out[d.attribute] = *s;
    } else if (const bool* b = std::get_if<bool>(&it->second)) {
      out[d.attribute] = *b ? "true" : "false";
    }
  }
  return out;
}

// The checks of one exposure, exposures[i] of the batch.
absl::Status ValidateExposure(const IndexedConfig& config,
                              const ExposureInput& x, size_t i,
                              absl::Time now) {
  const std::string field = absl::StrCat("exposures[", i, "]");
  if (x.experiment_key.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat(field,
                     ".experiment_key is empty; send the key of the experiment "
                     "whose variant was shown"));
  }
  if (x.variant_key.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(
        field, ".variant_key is empty; send the variant that was shown"));
  }
  if (absl::Status s = CheckUnit(config, x.unit, field + ".unit"); !s.ok()) {
    return s;
  }
  if (absl::Status s = ValidateTime(x.time, now, field + ".time"); !s.ok()) {
    return s;
  }
  if (absl::Status s =
          ValidateKey(x.idempotency_key, field + ".idempotency_key");
      !s.ok()) {
    return s;
  }
  // Exposures are counted per config version: only the form the server
  // emits is accepted, so a caller cannot invent versions.
  if (!x.config_version.empty() && !IsConfigVersion(x.config_version)) {
    return absl::InvalidArgumentError(absl::StrCat(
        field, ".config_version is \"", ClipForMessage(x.config_version),
        "\"; send the config_version of the assignment that chose the "
        "variant (16 lowercase hex digits, such as ",
        config.version,
        "), or leave it unset for the config the server serves now"));
  }
  const Experiment* e = config.FindExperiment(x.experiment_key);
  if (e == nullptr) return absl::OkStatus();  // ignored later, not an error
  if (e->VariantIndex(x.variant_key) < 0) {
    std::vector<std::string> keys;
    for (const Variant& v : e->variants) keys.push_back(v.key);
    return absl::InvalidArgumentError(absl::StrCat(
        field, ".variant_key '", ClipForMessage(x.variant_key),
        "' is not a variant of '", e->key, "' in config version ",
        config.version, "; use one of: ", absl::StrJoin(keys, ", ")));
  }
  if (FindId(x.unit, e->unit_id_type) == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat(
        field, ".unit.ids has no '", e->unit_id_type,
        "', the id type experiment '", e->key,
        "' hashes on; add it (the id the variant was chosen with)"));
  }
  return absl::OkStatus();
}

// The checks of one event, events[i] of the batch.
absl::Status ValidateEvent(const IndexedConfig& config, const EventInput& ev,
                           size_t i, absl::Time now) {
  const std::string field = absl::StrCat("events[", i, "]");
  if (absl::Status s = CheckUnit(config, ev.unit, field + ".unit"); !s.ok()) {
    return s;
  }
  if (ev.name.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(
        field,
        ".name is empty; send the event name, e.g. \"order_completed\""));
  }
  if (ev.name.size() > kMaxEventNameBytes) {
    return absl::InvalidArgumentError(absl::StrCat(
        field, ".name is ", ev.name.size(), " bytes; event names are at most ",
        kMaxEventNameBytes, " bytes"));
  }
  if (ev.value.has_value() && !std::isfinite(*ev.value)) {
    return absl::InvalidArgumentError(absl::StrCat(
        field, ".value is ", std::isnan(*ev.value) ? "NaN" : "infinite",
        "; send a finite number or leave value unset"));
  }
  if (ev.value.has_value() && std::abs(*ev.value) > kMaxEventValue) {
    return absl::InvalidArgumentError(absl::StrCat(
        field, ".value is ", *ev.value, "; values must be within ±",
        kMaxEventValue,
        " (sums of squares must not overflow); send it in a larger unit, "
        "e.g. dollars instead of cents"));
  }
  if (absl::Status s = ValidateTime(ev.time, now, field + ".time"); !s.ok()) {
    return s;
  }
  if (absl::Status s =
          ValidateKey(ev.idempotency_key, field + ".idempotency_key");
      !s.ok()) {
    return s;
  }
  return absl::OkStatus();
}

void Tally(RecordBatchResult* batch) {
  for (const RecordResult& r : batch->results) {
    switch (r.outcome) {
      case WriteOutcome::kRecorded:
        ++batch->recorded;
        break;
      case WriteOutcome::kDuplicate:
        ++batch->duplicate;
        break;
      case WriteOutcome::kIgnored:
        ++batch->ignored;
        break;
      case WriteOutcome::kConflict:
        ++batch->conflict;
        break;
      case WriteOutcome::kSpooled:
        ++batch->spooled;
        break;
    }
  }
}

absl::Status CheckBatchSize(size_t n, const char* what) {
  if (n > kMaxRecordBatch) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, " has ", n, " items; send at most ", kMaxRecordBatch,
                     " per call and split larger batches"));
  }
  return absl::OkStatus();
}

absl::Status CheckStoreReply(size_t got, size_t want, const std::string& key) {
  if (got == want) return absl::OkStatus();
  return absl::InternalError(absl::StrCat(
      "event store returned ", got, " outcomes for ", want,
      " writes to experiment '", key, "'; please report this bug"));
}

}  // namespace

const char* IgnoreReasonName(IgnoreReason reason) {
  switch (reason) {
    case IgnoreReason::kNone:
      return "";
    case IgnoreReason::kUnknownExperiment:
      return "unknown_experiment";
    case IgnoreReason::kNotRunning:
      return "not_running";
    case IgnoreReason::kQaOverride:
      return "qa_override";
    case IgnoreReason::kHoldout:
      return "holdout";
    case IgnoreReason::kMissingUnitId:
      return "missing_unit_id";
    case IgnoreReason::kNoMetric:
      return "no_metric";
    case IgnoreReason::kNotAttributed:
      return "not_attributed";
    case IgnoreReason::kMultiExposed:
      return "multi_exposed";
  }
  return "";
}

std::string DeriveExposureKey(const Experiment& experiment,
                              const std::string& unit_id,
                              const std::string& variant_key,
                              const std::string& config_version,
                              std::optional<absl::Time> client_time) {
  std::string bytes;
  AppendField(&bytes, experiment.key);
  AppendField(&bytes, absl::StrCat(experiment.phase));
  AppendField(&bytes, unit_id);
  AppendField(&bytes, variant_key);
  AppendField(&bytes, config_version);
  AppendField(&bytes, TimeField(client_time));
  return absl::StrCat("dx:", Hash128Hex(bytes));
}

std::string DeriveEventKey(const EventInput& event) {
  if (!event.time.has_value()) {
    unsigned char random[16];
    if (RAND_bytes(random, sizeof(random)) != 1) {
      // The OpenSSL generator does not fail once seeded; if it ever does,
      // fall back to something unique in this process.
      static std::atomic<uint64_t> counter{0};
      const uint64_t a = counter.fetch_add(1);
      const int64_t b = absl::ToUnixNanos(absl::Now());
      std::memcpy(random, &a, 8);
      std::memcpy(random + 8, &b, 8);
    }
    return absl::StrCat(
        "dr:", absl::BytesToHexString(absl::string_view(
                   reinterpret_cast<const char*>(random), sizeof(random))));
  }
  std::vector<std::pair<std::string, std::string>> ids(event.unit.ids.begin(),
                                                       event.unit.ids.end());
  std::sort(ids.begin(), ids.end());
  std::string bytes;
  AppendField(&bytes, absl::StrCat(ids.size()));
  for (const auto& [type, id] : ids) {
    AppendField(&bytes, type);
    AppendField(&bytes, id);
  }
  AppendField(&bytes, event.name);
  if (event.value.has_value()) {
    char raw[8];
    const double v = *event.value == 0 ? 0.0 : *event.value;  // -0 == 0
    std::memcpy(raw, &v, 8);
    AppendField(&bytes, absl::string_view(raw, 8));
  } else {
    AppendField(&bytes, "");
  }
  AppendField(&bytes, TimeField(event.time));
  return absl::StrCat("de:", Hash128Hex(bytes));
}

std::string ClientKey(const std::string& key) {
  return absl::StrCat("c:", key);
}

Recorder::Recorder(EventStore* store) : store_(store) {}

absl::StatusOr<RecordBatchResult> Recorder::RecordExposures(
    const IndexedConfig& config, absl::Span<const ExposureInput> exposures,
    absl::Time now) const {
  if (absl::Status s = CheckBatchSize(exposures.size(), "exposures"); !s.ok()) {
    return s;
  }
  // Validate everything before writing anything.
  for (size_t i = 0; i < exposures.size(); ++i) {
    if (absl::Status s = ValidateExposure(config, exposures[i], i, now);
        !s.ok()) {
      return s;
    }
  }

  RecordBatchResult batch;
  batch.config_version = config.version;
  batch.results.resize(exposures.size());
  // Experiment index -> (item index, exposure), in request order.
  std::map<int, std::pair<std::vector<size_t>, std::vector<Exposure>>> groups;
  for (size_t i = 0; i < exposures.size(); ++i) {
    const ExposureInput& x = exposures[i];
    RecordResult& result = batch.results[i];
    auto it = config.experiment_by_key.find(x.experiment_key);
    if (it == config.experiment_by_key.end()) {
      result.ignore_reason = IgnoreReason::kUnknownExperiment;
      continue;
    }
    const Experiment& e = config.experiments[it->second];
    const absl::Time time = x.time.value_or(now);
    if (e.status != ExperimentStatus::kRunning || !InSchedule(e, time)) {
      result.ignore_reason = IgnoreReason::kNotRunning;
      continue;
    }
    const std::string& unit_id = *FindId(x.unit, e.unit_id_type);
    if (e.qa_overrides.contains(unit_id)) {
      result.ignore_reason = IgnoreReason::kQaOverride;
      continue;
    }
    if (InHoldout(config, x.unit)) {
      result.ignore_reason = IgnoreReason::kHoldout;
      continue;
    }
    Exposure exposure;
    exposure.unit_id = unit_id;
    exposure.variant_index = e.VariantIndex(x.variant_key);
    exposure.time = time;
    exposure.config_version =
        x.config_version.empty() ? config.version : x.config_version;
    exposure.idempotency_key =
        x.idempotency_key.empty()
            ? DeriveExposureKey(e, unit_id, x.variant_key,
                                exposure.config_version, x.time)
            : ClientKey(x.idempotency_key);
    exposure.covariates = CovariatesOf(config, e, x.unit);
    exposure.dimensions = DimensionsOf(e, x.unit);
    auto& group = groups[it->second];
    group.first.push_back(i);
    group.second.push_back(std::move(exposure));
  }

  for (auto& [index, group] : groups) {
    const Experiment& e = config.experiments[index];
    absl::StatusOr<std::vector<WriteOutcome>> outcomes =
        store_->WriteExposures(LayoutOf(config, e), group.second);
    if (!outcomes.ok()) return outcomes.status();
    if (absl::Status s =
            CheckStoreReply(outcomes->size(), group.second.size(), e.key);
        !s.ok()) {
      return s;
    }
    for (size_t j = 0; j < outcomes->size(); ++j) {
      RecordResult& result = batch.results[group.first[j]];
      result.outcome = (*outcomes)[j];
      if (result.outcome == WriteOutcome::kIgnored) {
        result.ignore_reason = IgnoreReason::kMultiExposed;
      }
    }
  }
  Tally(&batch);
  return batch;
}

namespace {

// What RecordEvents sends for a batch, filled before anything is written so
// that each experiment's batch is allocated once at its final size. The
// Event sent for an item is the same for every experiment of one unit id
// type, so it is built once, in `shared`, and the batches point at it.
struct EventFanOut {
  struct Send {
    int experiment = 0;
    size_t item = 0;
    size_t event = 0;  // index into `shared`
  };
  std::vector<Send> sends;
  std::vector<Event> shared;
  absl::flat_hash_map<int, size_t> sends_to;  // by experiment index
};

// Sends item i, `ev`, to every experiment with a metric on its event that
// counts it, into *fan_out. Returns the item's ignore_reason until the
// store answers: kNotAttributed when it was sent anywhere, otherwise why
// not.
IgnoreReason FanOutEvent(const IndexedConfig& config, const EventInput& ev,
                         size_t i, absl::Time now, EventFanOut* fan_out) {
  auto it = config.experiments_by_event.find(ev.name);
  if (it == config.experiments_by_event.end()) return IgnoreReason::kNoMetric;
  // Why nothing was sent, most telling reason last.
  IgnoreReason reason = IgnoreReason::kMissingUnitId;
  std::optional<bool> held_out;
  bool sent = false;
  std::string key;  // the idempotency key, derived once it is needed
  // Experiments mostly share a few id types: look each up once.
  const std::string* last_type = nullptr;
  const std::string* last_id = nullptr;
  // The item's Events so far, by unit id (one per id type it was sent as).
  absl::InlinedVector<std::pair<const std::string*, size_t>, 2> built;
  for (int index : it->second) {
    const Experiment& e = config.experiments[index];
    if (last_type == nullptr || *last_type != e.unit_id_type) {
      last_type = &e.unit_id_type;
      last_id = FindId(ev.unit, e.unit_id_type);
    }
    const std::string* unit_id = last_id;
    if (unit_id == nullptr) continue;
    if (!e.qa_overrides.empty() && e.qa_overrides.contains(*unit_id)) {
      if (reason != IgnoreReason::kHoldout) reason = IgnoreReason::kQaOverride;
      continue;
    }
    if (!held_out.has_value()) held_out = InHoldout(config, ev.unit);
    if (*held_out) {
      reason = IgnoreReason::kHoldout;
      continue;
    }
    if (key.empty()) {
      key = ev.idempotency_key.empty() ? DeriveEventKey(ev)
                                       : ClientKey(ev.idempotency_key);
    }
    auto found = std::find_if(built.begin(), built.end(), [&](const auto& b) {
      return b.first == unit_id;
    });
    if (found == built.end()) {
      Event& event = fan_out->shared.emplace_back();
      event.unit_id = *unit_id;
      event.name = ev.name;
      event.value = ev.value;
      event.time = ev.time.value_or(now);
      event.idempotency_key = key;
      built.push_back({unit_id, fan_out->shared.size() - 1});
      found = built.end() - 1;
    }
    fan_out->sends.push_back({index, i, found->second});
    ++fan_out->sends_to[index];
    sent = true;
  }
  return sent ? IgnoreReason::kNotAttributed : reason;
}

// By experiment index: the items sent to it and their Events, in request
// order. The Events point into the EventFanOut they came from.
using EventGroups =
    std::map<int, std::pair<std::vector<size_t>, std::vector<const Event*>>>;

EventGroups GroupByExperiment(const EventFanOut& fan_out) {
  EventGroups groups;
  for (const auto& [index, count] : fan_out.sends_to) {
    auto& group = groups[index];
    group.first.reserve(count);
    group.second.reserve(count);
  }
  for (const EventFanOut::Send& send : fan_out.sends) {
    auto& group = groups[send.experiment];
    group.first.push_back(send.item);
    group.second.push_back(&fan_out.shared[send.event]);
  }
  return groups;
}

// All experiments' batches go to the store together, so a store can share
// its round trips between them (an event fans out to every experiment with
// a metric on it). Every batch is attempted; the first error fails the
// call, and the client's retry counts each item once. On success, one
// result per group, in the groups' order, each of them OK.
absl::StatusOr<std::vector<WriteResult>> WriteGroups(
    EventStore& store, const IndexedConfig& config, const EventGroups& groups) {
  std::vector<ExperimentLayout> layouts;
  std::vector<EventBatch> writes;
  // Reserved, so that the batches' pointers into `layouts` stay valid.
  layouts.reserve(groups.size());
  writes.reserve(groups.size());
  for (const auto& [index, group] : groups) {
    layouts.push_back(LayoutOf(config, config.experiments[index]));
    writes.push_back(EventBatch{&layouts.back(), group.second});
  }
  std::vector<WriteResult> written = store.WriteEventBatches(writes);
  if (written.size() != writes.size()) {
    return absl::InternalError(absl::StrCat("the event store answered ",
                                            written.size(), " results for ",
                                            writes.size(), " experiments"));
  }
  for (const WriteResult& outcomes : written) {
    if (!outcomes.ok()) return outcomes.status();
  }
  return written;
}

// Maps the store's outcomes for `groups` back to the items of *batch: an
// item is spooled when any experiment spooled it, else recorded when any
// recorded it, else a duplicate when any reported one, else ignored.
// REQUIRES: `written` is WriteGroups's OK answer for `groups`.
absl::Status MapOutcomesToItems(const IndexedConfig& config,
                                const EventGroups& groups,
                                const std::vector<WriteResult>& written,
                                RecordBatchResult* batch) {
  const size_t num_items = batch->results.size();
  // Per item: whether some experiment reported a duplicate, or spooled it.
  std::vector<bool> duplicate(num_items, false);
  std::vector<bool> spooled(num_items, false);
  size_t write = 0;
  for (const auto& [index, group] : groups) {
    const Experiment& e = config.experiments[index];
    const WriteResult& outcomes = written[write++];
    if (absl::Status s =
            CheckStoreReply(outcomes->size(), group.second.size(), e.key);
        !s.ok()) {
      return s;
    }
    for (size_t j = 0; j < outcomes->size(); ++j) {
      const size_t item = group.first[j];
      switch ((*outcomes)[j]) {
        case WriteOutcome::kRecorded:
        case WriteOutcome::kConflict:  // not produced for events
          ++batch->results[item].experiments_recorded;
          break;
        case WriteOutcome::kDuplicate:
          duplicate[item] = true;
          break;
        case WriteOutcome::kSpooled:
          spooled[item] = true;
          break;
        case WriteOutcome::kIgnored:
          break;
      }
    }
  }
  for (size_t i = 0; i < num_items; ++i) {
    RecordResult& result = batch->results[i];
    if (spooled[i]) {
      result.outcome = WriteOutcome::kSpooled;
      result.ignore_reason = IgnoreReason::kNone;
    } else if (result.experiments_recorded > 0) {
      result.outcome = WriteOutcome::kRecorded;
      result.ignore_reason = IgnoreReason::kNone;
    } else if (duplicate[i]) {
      result.outcome = WriteOutcome::kDuplicate;
      result.ignore_reason = IgnoreReason::kNone;
    } else {
      result.outcome = WriteOutcome::kIgnored;
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<RecordBatchResult> Recorder::RecordEvents(
    const IndexedConfig& config, absl::Span<const EventInput> events,
    absl::Time now) const {
  if (absl::Status s = CheckBatchSize(events.size(), "events"); !s.ok()) {
    return s;
  }
  for (size_t i = 0; i < events.size(); ++i) {
    if (absl::Status s = ValidateEvent(config, events[i], i, now); !s.ok()) {
      return s;
    }
  }

  RecordBatchResult batch;
  batch.config_version = config.version;
  batch.results.resize(events.size());
  EventFanOut fan_out;
  for (size_t i = 0; i < events.size(); ++i) {
    batch.results[i].ignore_reason =
        FanOutEvent(config, events[i], i, now, &fan_out);
  }
  const EventGroups groups = GroupByExperiment(fan_out);
  absl::StatusOr<std::vector<WriteResult>> written =
      WriteGroups(*store_, config, groups);
  if (!written.ok()) return written.status();
  if (absl::Status s = MapOutcomesToItems(config, groups, *written, &batch);
      !s.ok()) {
    return s;
  }
  Tally(&batch);
  return batch;
}

DeferredEventStore::DeferredEventStore(Factory factory,
                                       absl::Duration retry_interval)
    : factory_(std::move(factory)), retry_interval_(retry_interval) {}

absl::Status DeferredEventStore::Connect() { return Get().status(); }

absl::StatusOr<EventStore*> DeferredEventStore::Get() {
  absl::MutexLock lock(&mu_);
  if (store_ != nullptr) return store_.get();
  const absl::Time now = absl::Now();
  if (now < next_attempt_) {
    return absl::Status(
        last_error_.code(),
        absl::StrCat(last_error_.message(), " (next attempt in ",
                     absl::FormatDuration(absl::Ceil(next_attempt_ - now,
                                                     absl::Milliseconds(1))),
                     ")"));
  }
  absl::StatusOr<std::shared_ptr<EventStore>> store = factory_();
  if (!store.ok()) {
    // A timeout is the backend being away, like a refused connection;
    // other codes (a wrong password) say what to fix.
    last_error_ = store.status().code() == absl::StatusCode::kDeadlineExceeded
                      ? absl::UnavailableError(store.status().message())
                      : store.status();
    next_attempt_ = absl::Now() + retry_interval_;
    return last_error_;
  }
  store_ = *std::move(store);
  return store_.get();
}

absl::StatusOr<std::vector<WriteOutcome>> DeferredEventStore::WriteExposures(
    const ExperimentLayout& layout, absl::Span<const Exposure> exposures) {
  absl::StatusOr<EventStore*> store = Get();
  if (!store.ok()) return store.status();
  return (*store)->WriteExposures(layout, exposures);
}

absl::StatusOr<std::vector<WriteOutcome>> DeferredEventStore::WriteEvents(
    const ExperimentLayout& layout, absl::Span<const Event> events) {
  absl::StatusOr<EventStore*> store = Get();
  if (!store.ok()) return store.status();
  return (*store)->WriteEvents(layout, events);
}

std::vector<WriteResult> DeferredEventStore::WriteEventBatches(
    absl::Span<const EventBatch> batches) {
  absl::StatusOr<EventStore*> store = Get();
  if (!store.ok()) {
    return std::vector<WriteResult>(batches.size(), store.status());
  }
  return (*store)->WriteEventBatches(batches);
}

absl::StatusOr<ExperimentAggregates> DeferredEventStore::ReadAggregates(
    const ExperimentLayout& layout) {
  absl::StatusOr<EventStore*> store = Get();
  if (!store.ok()) return store.status();
  return (*store)->ReadAggregates(layout);
}

absl::StatusOr<std::optional<int>> DeferredEventStore::RecordedVariant(
    const ExperimentLayout& layout, absl::string_view unit_id) {
  absl::StatusOr<EventStore*> store = Get();
  if (!store.ok()) return store.status();
  return (*store)->RecordedVariant(layout, unit_id);
}

std::vector<RecordedVariantResult> DeferredEventStore::RecordedVariants(
    absl::Span<const RecordedVariantQuery> queries) {
  absl::StatusOr<EventStore*> store = Get();
  if (!store.ok()) {
    return std::vector<RecordedVariantResult>(queries.size(), store.status());
  }
  return (*store)->RecordedVariants(queries);
}

}  // namespace abexp
