// The Lua scripts RedisEventStore runs with EVALSHA. Each call applies one
// exposure or one event atomically; docs/storage.md describes the keys and
// the packed unit records they read and write.
#ifndef ABEXP_SERVER_REDIS_SCRIPTS_H_
#define ABEXP_SERVER_REDIS_SCRIPTS_H_

#include <string>

namespace abexp::redis_scripts {

// KEYS[1]: the experiment's meta hash.
// ARGV: base prefix, variant keys ('\n'-joined), unit buckets, idempotency
// buckets, today (day number), idempotency span (days), idempotency TTL (s),
// idempotency bucket, idempotency field, unit bucket, unit field, variant
// index, time (ms), config version.
// Returns 0 recorded, 1 duplicate, 2 ignored, 3 conflict, or an error
// "ABEXP_VARIANTS ..." when the variant keys are incompatible with the
// stored ones (meta field `variants`).
const std::string& WriteExposure();

// KEYS[1]: the experiment's meta hash.
// ARGV: base prefix, today, idempotency span (days), idempotency TTL (s),
// idempotency bucket, idempotency field, unit bucket, unit field, time
// (ms), value ("" for none), metric count M, then M groups of 6: signature,
// type (b binomial, s sum, r ratio, t retention), source/numerator
// aggregation (0 not this event, 1 count, 2 value), denominator aggregation,
// window (ms), retention day.
// Returns 0 recorded, 1 duplicate, 2 ignored, or an error "ABEXP_METRICS"
// when the phase ran out of metric ids. The unit's record is checked before
// the idempotency key: an event of a unit not exposed (or multi-exposed, or
// before its first exposure) is ignored without remembering its key.
const std::string& WriteEvent();

}  // namespace abexp::redis_scripts

#endif  // ABEXP_SERVER_REDIS_SCRIPTS_H_
