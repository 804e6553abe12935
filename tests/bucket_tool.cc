// bucket_tool: runs abexp's bucketing (server/core/bucketing.h) on lines from
// stdin, so other implementations of docs/bucketing.md can be checked
// against it.
//
// Input, one request per line, fields separated by a TAB:
//   PURPOSE  SALT  UNIT_ID_HEX        PURPOSE: variant, layer, holdout, rollout
//   ranges   TRAFFIC_BP  W1,W2,...    integer weights
// Output, one line per request:
//   INPUT_HEX  HASH_HEX  BUCKET       the hashed bytes, XXH3-64 (16 hex digits)
//   FULL  ACTIVE                      ranges as start-end, comma-separated
//
// A malformed line is reported on stderr with its line number and the tool
// exits with status 2.
#include <cstdint>
#include <cstdio>
#include <iostream>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "server/core/bucketing.h"

namespace {

std::optional<abexp::HashPurpose> ParsePurpose(absl::string_view tag) {
  for (abexp::HashPurpose p :
       {abexp::HashPurpose::kVariant, abexp::HashPurpose::kLayer,
        abexp::HashPurpose::kHoldout, abexp::HashPurpose::kRollout}) {
    if (abexp::HashPurposeTag(p) == tag) return p;
  }
  return std::nullopt;
}

bool IsHex(absl::string_view s) {
  if (s.size() % 2 != 0) return false;
  for (char c : s) {
    if (!absl::ascii_isxdigit(static_cast<unsigned char>(c))) return false;
  }
  return true;
}

std::string FormatRanges(const std::vector<abexp::BucketRange>& ranges) {
  return absl::StrJoin(ranges, ",",
                       [](std::string* out, const abexp::BucketRange& r) {
                         absl::StrAppend(out, r.start, "-", r.end);
                       });
}

// Returns the output line, or an error message in *error.
std::string Handle(absl::string_view line, std::string* error) {
  std::vector<absl::string_view> f = absl::StrSplit(line, '\t');
  if (f.size() != 3) {
    *error = absl::StrCat("expected 3 TAB-separated fields, got ", f.size());
    return "";
  }
  if (f[0] == "ranges") {
    uint32_t traffic_bp = 0;
    if (!absl::SimpleAtoi(f[1], &traffic_bp) ||
        traffic_bp > abexp::kNumBuckets) {
      *error =
          absl::StrCat("traffic '", f[1], "' is not an integer in [0, 10000]");
      return "";
    }
    std::vector<uint64_t> weights;
    uint64_t total = 0;
    for (absl::string_view w : absl::StrSplit(f[2], ',')) {
      uint64_t v = 0;
      if (!absl::SimpleAtoi(w, &v) || v >= (uint64_t{1} << 50)) {
        *error = absl::StrCat("weight '", w,
                              "' is not a non-negative integer below 2^50");
        return "";
      }
      weights.push_back(v);
      total += v;
    }
    if (total == 0 || total >= (uint64_t{1} << 50)) {
      *error = "the weights must sum to a positive number below 2^50";
      return "";
    }
    const abexp::VariantRanges r =
        abexp::ComputeVariantRanges(weights, traffic_bp);
    return absl::StrCat(FormatRanges(r.full), "\t", FormatRanges(r.active));
  }
  const std::optional<abexp::HashPurpose> purpose = ParsePurpose(f[0]);
  if (!purpose) {
    *error = absl::StrCat("unknown purpose '", f[0],
                          "'; use variant, layer, holdout, rollout or ranges");
    return "";
  }
  if (!IsHex(f[2])) {
    *error =
        "the unit id must be hex-encoded bytes (an even number of hex digits)";
    return "";
  }
  const std::string unit_id = absl::HexStringToBytes(f[2]);
  const abexp::BucketTrace t = abexp::TraceBucket(*purpose, f[1], unit_id);
  if (t.hash != abexp::BucketHash(*purpose, f[1], unit_id) ||
      t.bucket != abexp::Bucket(*purpose, f[1], unit_id)) {
    *error =
        "TraceBucket disagrees with BucketHash/Bucket (a bug in "
        "server/core/bucketing.cc)";
    return "";
  }
  char hash_hex[17];
  std::snprintf(hash_hex, sizeof(hash_hex), "%016llx",
                static_cast<unsigned long long>(t.hash));
  return absl::StrCat(absl::BytesToHexString(t.input), "\t", hash_hex, "\t",
                      t.bucket);
}

}  // namespace

int main() {
  std::ios::sync_with_stdio(false);
  std::string line;
  std::string out;
  int line_number = 0;
  while (std::getline(std::cin, line)) {
    ++line_number;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    std::string error;
    std::string result = Handle(line, &error);
    if (!error.empty()) {
      std::cout << out << std::flush;
      std::cerr << "bucket_tool: line " << line_number << ": " << error << "\n";
      return 2;
    }
    absl::StrAppend(&out, result, "\n");
    if (out.size() > (1 << 16)) {
      std::cout << out;
      out.clear();
    }
  }
  std::cout << out << std::flush;
  return 0;
}
