// The AssignResponse of a core AssignResult, two ways that give the same
// bytes:
//  - AssignResultToProto builds the message (BatchAssign, and Assign calls
//    that wait on storage);
//  - AssignResponseEncoder writes the message's encoding from pieces it
//    encoded once per config, so that a plain Assign spends nothing on its
//    answer beyond copying bytes: no message building, string copies,
//    size computation or UTF-8 checks. Building and encoding the answer
//    was most of Assign's own cost (docs/PERFORMANCE.md, R1).
//
//   AssignResponseEncoder encoder(*config);       // once per config
//   encoder.Encode(result, exposure_error, &out);  // per call
//
// Thread-safe: the functions are pure, and an encoder does not change after
// construction.
#ifndef ABEXP_SERVER_SERVICE_ASSIGN_RESPONSE_H_
#define ABEXP_SERVER_SERVICE_ASSIGN_RESPONSE_H_

#include <atomic>
#include <cstdint>
#include <string>
#include <vector>

#include "abexp/v1/assignment.pb.h"
#include "absl/strings/string_view.h"
#include "server/core/assigner.h"
#include "server/core/config.h"

namespace abexp {

void FeatureValueToProto(const FeatureValue& value, v1::FeatureValue* proto);
v1::AssignmentReason ReasonToProto(AssignmentReason reason);
v1::FeatureSource SourceToProto(FeatureSource source);

void AssignmentToProto(const ExperimentAssignment& assignment,
                       v1::Assignment* proto);
void ResolvedFeatureToProto(const ResolvedFeature& feature,
                            v1::ResolvedFeature* proto);
// The response for `result` (exposure_error left empty).
void AssignResultToProto(const Config& config, const AssignResult& result,
                         v1::AssignResponse* proto);

class AssignResponseEncoder {
 public:
  // Encodes every assignment and resolved feature `config` can produce.
  // REQUIRES: `config` outlives the encoder.
  explicit AssignResponseEncoder(const Config& config);

  AssignResponseEncoder(const AssignResponseEncoder&) = delete;
  AssignResponseEncoder& operator=(const AssignResponseEncoder&) = delete;

  // Appends to *out the bytes protobuf writes for the AssignResponse that
  // AssignResultToProto gives for `result`, with `exposure_error` set.
  // REQUIRES: `result` was computed from the encoder's config.
  void Encode(const AssignResult& result, absl::string_view exposure_error,
              std::string* out) const;

  // Resolved features Encode did not find among its pieces and encoded on
  // the spot (correct, but slower); 0 when the pieces foresee every answer.
  int64_t unforeseen() const { return unforeseen_.load(); }

 private:
  // A feature set by an experiment's variant: its encoded entry.
  struct VariantPiece {
    const Experiment* experiment = nullptr;
    int variant_index = -1;
    FeatureSource source = FeatureSource::kExperiment;
    const FeatureValue* value = nullptr;
    std::string bytes;
  };
  // Every way one feature can resolve, each as an encoded `features` entry.
  struct FeaturePieces {
    std::string by_default;
    std::vector<std::string> by_rule;  // by rule index
    std::vector<VariantPiece> by_variant;
  };

  // The encoded entry for `feature`, or null when it is none of those
  // foreseen (then Encode encodes it on the spot).
  const std::string* PieceFor(const ResolvedFeature& feature) const;

  const Config& config_;
  std::string version_;  // the encoded config_version field
  // By experiment index, then variant index * kNumReasons + reason.
  std::vector<std::vector<std::string>> assignments_;
  std::vector<FeaturePieces> features_;  // by feature index
  mutable std::atomic<int64_t> unforeseen_{0};
};

}  // namespace abexp

#endif  // ABEXP_SERVER_SERVICE_ASSIGN_RESPONSE_H_
