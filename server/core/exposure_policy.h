// Which assignments are exposures when an Assign call asks to record them
// (record_exposure on the AssignRequest; docs/attribution.md):
//
//  - a BUCKETED or STICKY assignment is one exposure, of the unit to the
//    variant it was served;
//  - a QA override or a rollout is never counted, so it records nothing;
//  - experiments the unit is not in (holdout, targeting, layer, traffic,
//    not running or outside the schedule) have no assignment, so they
//    record nothing either.
//
// The exposures carry no client time and no idempotency key, so the
// Recorder stamps them with its `now` and derives the key from the
// experiment, unit, variant and config version alone: repeating the call
// for the same unit and variant is a duplicate, not a new exposure.
//
// Thread-safe: a pure function of its arguments.
#ifndef ABEXP_SERVER_CORE_EXPOSURE_POLICY_H_
#define ABEXP_SERVER_CORE_EXPOSURE_POLICY_H_

#include <vector>

#include "server/core/assigner.h"
#include "server/core/config.h"
#include "server/core/recorder.h"

namespace abexp {

// The exposures to record for `result`, Assign's answer for `unit` under
// `config`, in the order of result.assignments; empty when none counts.
// Each has the unit's ids, the attributes its experiment's metrics name as
// covariates (CUPED; no other attribute), and config.version as its config
// version.
// REQUIRES: `result` was computed from `config`.
std::vector<ExposureInput> ExposuresToRecord(const Config& config,
                                             const Unit& unit,
                                             const AssignResult& result);

}  // namespace abexp

#endif  // ABEXP_SERVER_CORE_EXPOSURE_POLICY_H_
