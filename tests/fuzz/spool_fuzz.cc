// Fuzzes the spool's recovery (server/storage/spool/spool.h): the input becomes
// segment files and a CHECKPOINT in an empty directory, then Open() recovers
// it.
//
// Segments are written from well-formed frames mixed with raw bytes,
// zeros and frames with wrong lengths, so that recovery sees both valid
// records and every kind of damage; the checkpoint is well formed (with a
// fuzzed position) or raw bytes. Checks that, whenever Open() succeeds:
//  - Replay() delivers exactly pending_records() records, and succeeds;
//  - the spool then takes an append, replays it, and reopens empty.
// Any other outcome of Open() must be an error status, never a crash, and
// memory stays bounded by the input (libFuzzer's -rss_limit_mb).
#include <fuzzer/FuzzedDataProvider.h>
#include <unistd.h>
#include <xxhash.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_format.h"
#include "server/storage/spool/spool.h"
#include "tests/fuzz/fuzz_check.h"

namespace abexp {
namespace {

void Check(bool ok, const char* what,
           const absl::Status& status = absl::OkStatus()) {
  FuzzCheck(ok, "spool_fuzz", what, status.ToString().c_str());
}

void PutU32(uint32_t v, std::string* out) {
  for (int i = 0; i < 4; ++i)
    out->push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}
void PutU64(uint64_t v, std::string* out) {
  for (int i = 0; i < 8; ++i)
    out->push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}

// One directory per process, emptied before each input.
const std::string& Dir() {
  static const std::string* dir = [] {
    const char* base = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
    std::string pattern = std::string(base) + "/abexp-spool-fuzz.XXXXXX";
    if (mkdtemp(pattern.data()) == nullptr) abort();
    return new std::string(pattern);
  }();
  return *dir;
}

void WriteFile(const std::string& path, const std::string& bytes) {
  FILE* f = fopen(path.c_str(), "wb");
  if (f == nullptr) abort();
  fwrite(bytes.data(), 1, bytes.size(), f);
  fclose(f);
}

// A segment's bytes, and the offsets where its frames start.
std::string SegmentBytes(FuzzedDataProvider& in,
                         std::vector<uint64_t>* boundaries) {
  std::string out;
  const int chunks = in.ConsumeIntegralInRange<int>(0, 8);
  for (int i = 0; i < chunks && in.remaining_bytes() > 0; ++i) {
    boundaries->push_back(out.size());
    switch (in.ConsumeIntegralInRange<int>(0, 4)) {
      case 0:
      case 1: {  // a well-formed frame
        const std::string payload = in.ConsumeRandomLengthString(64);
        const uint32_t length = static_cast<uint32_t>(payload.size());
        PutU32(length, &out);
        PutU32(XXH32(payload.data(), payload.size(), length), &out);
        out += payload;
        break;
      }
      case 2: {  // a header with any length, then a valid checksum of little
        const std::string payload = in.ConsumeRandomLengthString(16);
        PutU32(in.ConsumeIntegral<uint32_t>(), &out);
        PutU32(XXH32(payload.data(), payload.size(), 0), &out);
        out += payload;
        break;
      }
      case 3:  // zeros, as a crash can leave them
        out.append(in.ConsumeIntegralInRange<size_t>(1, 256), '\0');
        break;
      default:
        out += in.ConsumeRandomLengthString(32);
    }
  }
  return out;
}

void Run(FuzzedDataProvider& in) {
  const std::string& dir = Dir();
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator(dir)) {
    std::filesystem::remove_all(entry.path(), ec);
  }

  // Numbers near both ends of the range, and runs with gaps.
  uint64_t segment = in.ConsumeBool()
                         ? in.ConsumeIntegralInRange<uint64_t>(0, 3)
                         : in.ConsumeIntegral<uint64_t>();
  std::vector<uint64_t> segments;
  std::vector<std::vector<uint64_t>> boundaries;
  const int files = in.ConsumeIntegralInRange<int>(0, 3);
  for (int i = 0; i < files; ++i) {
    std::string name;
    if (in.ConsumeIntegralInRange<int>(0, 7) == 0) {
      // 20 digits that may not be a number that fits in 64 bits, or a
      // letter among them.
      std::string digits = in.ConsumeBytesAsString(20);
      digits.resize(20, '9');
      for (char& c : digits) {
        const int b = static_cast<unsigned char>(c) % 11;
        c = b == 10 ? 'x' : static_cast<char>('0' + b);
      }
      name = "spool-" + digits + ".log";
    } else {
      name = absl::StrFormat("spool-%020u.log", segment);
    }
    segments.push_back(segment);
    boundaries.emplace_back();
    WriteFile(dir + "/" + name, SegmentBytes(in, &boundaries.back()));
    segment += in.ConsumeIntegralInRange<uint64_t>(0, 2) == 0 ? 2 : 1;
  }

  switch (in.ConsumeIntegralInRange<int>(0, 3)) {
    case 0:
      break;   // no checkpoint
    case 1: {  // raw bytes, often the right length
      std::string bytes =
          in.ConsumeBytesAsString(in.ConsumeIntegralInRange<size_t>(0, 24));
      WriteFile(dir + "/CHECKPOINT", bytes);
      break;
    }
    default: {  // well formed, at a frame boundary of a segment or anywhere
      uint64_t at_segment = in.ConsumeIntegral<uint64_t>();
      uint64_t at_offset = in.ConsumeIntegral<uint64_t>();
      if (!segments.empty() && in.ConsumeBool()) {
        const size_t i =
            in.ConsumeIntegralInRange<size_t>(0, segments.size() - 1);
        at_segment = segments[i];
        if (!boundaries[i].empty() && in.ConsumeBool()) {
          at_offset = boundaries[i][in.ConsumeIntegralInRange<size_t>(
              0, boundaries[i].size() - 1)];
        } else {
          at_offset = in.ConsumeIntegralInRange<uint64_t>(0, 512);
        }
      }
      std::string bytes;
      PutU64(at_segment, &bytes);
      PutU64(at_offset, &bytes);
      PutU32(XXH32(bytes.data(), 16, 0), &bytes);
      WriteFile(dir + "/CHECKPOINT", bytes);
    }
  }
  if (in.ConsumeBool())
    WriteFile(dir + "/CHECKPOINT.tmp", in.ConsumeRandomLengthString(24));

  SpoolOptions options;
  options.sync = false;
  options.group_commit_window = absl::ZeroDuration();
  options.segment_bytes = in.ConsumeIntegralInRange<int64_t>(1, 4096);
  const size_t max_batch = in.ConsumeIntegralInRange<size_t>(1, 8);

  absl::StatusOr<std::unique_ptr<Spool>> spool = Spool::Open(dir, options);
  if (!spool.ok()) {
    Check(!spool.status().message().empty(), "Open() failed without a message",
          spool.status());
    return;
  }
  const int64_t pending = (*spool)->pending_records();
  int64_t delivered = 0;
  absl::Status s = (*spool)->Replay(
      [&](absl::Span<const std::string> batch) {
        delivered += static_cast<int64_t>(batch.size());
        return absl::OkStatus();
      },
      max_batch);
  Check(s.ok(), "Replay() failed after Open() verified the spool", s);
  Check(delivered == pending,
        "Replay() did not deliver pending_records() records");
  Check((*spool)->empty(), "the spool is not empty after a full replay");

  const std::vector<std::string> record = {"after recovery"};
  s = (*spool)->Append(record);
  Check(s.ok(), "Append() failed on a recovered spool", s);
  std::vector<std::string> replayed;
  s = (*spool)->Replay(
      [&](absl::Span<const std::string> batch) {
        replayed.insert(replayed.end(), batch.begin(), batch.end());
        return absl::OkStatus();
      },
      max_batch);
  Check(s.ok() && replayed == record, "the appended record did not replay", s);
  spool->reset();

  spool = Spool::Open(dir, options);
  Check(spool.ok(), "a replayed spool does not reopen", spool.status());
  Check((*spool)->empty(), "a replayed spool reopens with records");
}

}  // namespace
}  // namespace abexp

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  FuzzedDataProvider in(data, size);
  abexp::Run(in);
  return 0;
}
