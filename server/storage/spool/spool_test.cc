#include "server/storage/spool/spool.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <xxhash.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace abexp {
namespace {

using ::testing::ElementsAreArray;
using ::testing::HasSubstr;
namespace fs = std::filesystem;

// Frame layout from spool.h: [u32 length][u32 checksum][payload].
constexpr int64_t kHeader = 8;

class SpoolTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl =
        (fs::temp_directory_path() / "spool_test.XXXXXX").string();
    ASSERT_NE(::mkdtemp(tmpl.data()), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override {
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }

  // Options that keep tests fast: no fsync, no group-commit wait.
  static SpoolOptions FastOptions() {
    SpoolOptions o;
    o.sync = false;
    o.group_commit_window = absl::ZeroDuration();
    return o;
  }

  std::unique_ptr<Spool> MustOpen(SpoolOptions options) {
    absl::StatusOr<std::unique_ptr<Spool>> spool = Spool::Open(dir_, options);
    EXPECT_TRUE(spool.ok()) << spool.status();
    return spool.ok() ? *std::move(spool) : nullptr;
  }

  std::vector<std::string> Segments() const {
    std::vector<std::string> out;
    for (const auto& e : fs::directory_iterator(dir_)) {
      const std::string name = e.path().filename().string();
      if (name.rfind("spool-", 0) == 0) out.push_back(e.path().string());
    }
    std::sort(out.begin(), out.end());
    return out;
  }

  // Appends record-000, record-001, ... (`n` of them, one append each)
  // with `options`, closes the spool and returns its segment files.
  std::vector<std::string> AppendEachAndClose(const SpoolOptions& options,
                                              int n) {
    std::unique_ptr<Spool> spool = MustOpen(options);
    if (spool == nullptr) return {};
    for (int i = 0; i < n; ++i) {
      EXPECT_TRUE(spool->Append({absl::StrCat("record-00", i)}).ok()) << i;
    }
    spool.reset();
    return Segments();
  }

  std::string dir_;
};

std::vector<std::string> Records(absl::string_view prefix, int from, int to) {
  std::vector<std::string> out;
  for (int i = from; i < to; ++i) out.push_back(absl::StrCat(prefix, i));
  return out;
}

// Replays everything, returning the records in delivery order.
absl::StatusOr<std::vector<std::string>> ReplayAll(Spool& spool,
                                                   size_t max_batch) {
  std::vector<std::string> got;
  absl::Status s = spool.Replay(
      [&](absl::Span<const std::string> batch) {
        if (batch.empty() || batch.size() > max_batch) {
          return absl::InternalError("bad batch size");
        }
        got.insert(got.end(), batch.begin(), batch.end());
        return absl::OkStatus();
      },
      max_batch);
  if (!s.ok()) return s;
  return got;
}

void AppendToFile(const std::string& path, const std::string& bytes) {
  std::ofstream f(path, std::ios::binary | std::ios::app);
  f.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  ASSERT_TRUE(f.good());
}

TEST_F(SpoolTest, ReplaysRecordsInAppendOrderAcrossSegments) {
  SpoolOptions options = FastOptions();
  options.segment_bytes = 100;
  std::unique_ptr<Spool> spool = MustOpen(options);
  ASSERT_NE(spool, nullptr);
  std::vector<std::string> all;
  for (int i = 0; i < 50; i += 5) {
    std::vector<std::string> batch = Records("record-", i, i + 5);
    ASSERT_TRUE(spool->Append(batch).ok());
    all.insert(all.end(), batch.begin(), batch.end());
  }
  EXPECT_EQ(spool->pending_records(), 50);
  EXPECT_GT(Segments().size(), 5u);

  absl::StatusOr<std::vector<std::string>> got = ReplayAll(*spool, 7);
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_THAT(*got, ElementsAreArray(all));
  EXPECT_TRUE(spool->empty());
  // Replayed segments are deleted; only a fresh, empty one is left.
  EXPECT_EQ(spool->size_bytes(), 0);
  EXPECT_EQ(Segments().size(), 1u);
}

TEST_F(SpoolTest, SizeCountsFramedBytesOnDisk) {
  std::unique_ptr<Spool> spool = MustOpen(FastOptions());
  ASSERT_NE(spool, nullptr);
  ASSERT_TRUE(spool->Append({"abc", "", "0123456789"}).ok());
  EXPECT_EQ(spool->size_bytes(), 3 * kHeader + 3 + 0 + 10);
  EXPECT_EQ(spool->pending_records(), 3);
  EXPECT_EQ(static_cast<int64_t>(fs::file_size(Segments().back())),
            spool->size_bytes());
}

TEST_F(SpoolTest, EmptyAndBinaryAndLargeRecordsRoundTrip) {
  std::unique_ptr<Spool> spool = MustOpen(FastOptions());
  ASSERT_NE(spool, nullptr);
  std::string binary("\0\x01\xff\n\r", 5);
  std::string large(3 << 20, 'x');  // larger than a read chunk
  large[12345] = 'y';
  std::vector<std::string> records = {"", binary, large, "tail"};
  ASSERT_TRUE(spool->Append(records).ok());
  spool.reset();
  spool = MustOpen(FastOptions());
  ASSERT_NE(spool, nullptr);
  absl::StatusOr<std::vector<std::string>> got = ReplayAll(*spool, 2);
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_THAT(*got, ElementsAreArray(records));
}

TEST_F(SpoolTest, ReopenAfterCloseReplaysTheRest) {
  SpoolOptions options = FastOptions();
  options.segment_bytes = 64;
  std::unique_ptr<Spool> spool = MustOpen(options);
  ASSERT_NE(spool, nullptr);
  ASSERT_TRUE(spool->Append(Records("r", 0, 20)).ok());
  // The sink takes two batches of 5, then fails.
  int calls = 0;
  absl::Status s = spool->Replay(
      [&](absl::Span<const std::string> batch) {
        return ++calls <= 2 ? absl::OkStatus()
                            : absl::UnavailableError("redis down");
      },
      5);
  EXPECT_EQ(s.code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(spool->pending_records(), 10);
  spool.reset();

  spool = MustOpen(options);
  ASSERT_NE(spool, nullptr);
  EXPECT_EQ(spool->pending_records(), 10);
  absl::StatusOr<std::vector<std::string>> got = ReplayAll(*spool, 3);
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_THAT(*got, ElementsAreArray(Records("r", 10, 20)));
}

TEST_F(SpoolTest, CheckpointSurvivesReopen) {
  std::unique_ptr<Spool> spool = MustOpen(FastOptions());
  ASSERT_NE(spool, nullptr);
  ASSERT_TRUE(spool->Append(Records("old", 0, 10)).ok());
  ASSERT_TRUE(ReplayAll(*spool, 4).ok());
  ASSERT_TRUE(spool->Append(Records("new", 0, 3)).ok());
  spool.reset();

  spool = MustOpen(FastOptions());
  ASSERT_NE(spool, nullptr);
  EXPECT_EQ(spool->pending_records(), 3);
  absl::StatusOr<std::vector<std::string>> got = ReplayAll(*spool, 4);
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_THAT(*got, ElementsAreArray(Records("new", 0, 3)));
  spool.reset();

  spool = MustOpen(FastOptions());
  ASSERT_NE(spool, nullptr);
  EXPECT_TRUE(spool->empty());
  got = ReplayAll(*spool, 4);
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_TRUE(got->empty());
}

TEST_F(SpoolTest, FailedSinkSeesTheSameRecordsAgain) {
  std::unique_ptr<Spool> spool = MustOpen(FastOptions());
  ASSERT_NE(spool, nullptr);
  ASSERT_TRUE(spool->Append(Records("r", 0, 9)).ok());
  std::vector<std::vector<std::string>> seen;
  absl::Status s = spool->Replay(
      [&](absl::Span<const std::string> batch) {
        seen.emplace_back(batch.begin(), batch.end());
        return seen.size() == 2 ? absl::DeadlineExceededError("redis timed out")
                                : absl::OkStatus();
      },
      3);
  EXPECT_EQ(s.code(), absl::StatusCode::kDeadlineExceeded);
  EXPECT_THAT(s.message(), HasSubstr("redis timed out"));
  ASSERT_EQ(seen.size(), 2u);
  EXPECT_EQ(spool->pending_records(), 6);

  absl::StatusOr<std::vector<std::string>> got = ReplayAll(*spool, 3);
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_THAT(*got, ElementsAreArray(Records("r", 3, 9)));
  EXPECT_THAT(seen[1], ElementsAreArray(Records("r", 3, 6)));
}

TEST_F(SpoolTest, RecordsAppendedDuringReplayFollowTheEarlierOnes) {
  std::unique_ptr<Spool> spool = MustOpen(FastOptions());
  ASSERT_NE(spool, nullptr);
  ASSERT_TRUE(spool->Append(Records("early", 0, 6)).ok());
  std::vector<std::string> got;
  bool appended = false;
  absl::Status s = spool->Replay(
      [&](absl::Span<const std::string> batch) {
        got.insert(got.end(), batch.begin(), batch.end());
        if (!appended) {
          appended = true;
          // Another caller records while Redis is still catching up.
          absl::Status a = absl::OkStatus();
          std::thread t([&] { a = spool->Append(Records("late", 0, 4)); });
          t.join();
          return a;
        }
        return absl::OkStatus();
      },
      2);
  ASSERT_TRUE(s.ok()) << s;
  std::vector<std::string> want = Records("early", 0, 6);
  for (const std::string& r : Records("late", 0, 4)) want.push_back(r);
  EXPECT_THAT(got, ElementsAreArray(want));
  EXPECT_TRUE(spool->empty());
}

TEST_F(SpoolTest, TornTailIsTruncatedAndEverythingBeforeItReplays) {
  std::unique_ptr<Spool> spool = MustOpen(FastOptions());
  ASSERT_NE(spool, nullptr);
  ASSERT_TRUE(spool->Append(Records("r", 0, 5)).ok());
  spool.reset();
  // Half a record: a header announcing 100 bytes, then only 10 of them.
  std::string torn("\x64\x00\x00\x00\x12\x34\x56\x78", 8);
  torn += "0123456789";
  AppendToFile(Segments().back(), torn);

  spool = MustOpen(FastOptions());
  ASSERT_NE(spool, nullptr);
  EXPECT_EQ(spool->torn_bytes_dropped(), 18);
  EXPECT_EQ(spool->pending_records(), 5);
  // New records go right after the last good one.
  ASSERT_TRUE(spool->Append({"after"}).ok());
  spool.reset();

  spool = MustOpen(FastOptions());
  ASSERT_NE(spool, nullptr);
  EXPECT_EQ(spool->torn_bytes_dropped(), 0);
  absl::StatusOr<std::vector<std::string>> got = ReplayAll(*spool, 10);
  ASSERT_TRUE(got.ok()) << got.status();
  std::vector<std::string> want = Records("r", 0, 5);
  want.push_back("after");
  EXPECT_THAT(*got, ElementsAreArray(want));
}

TEST_F(SpoolTest, TornHeaderIsTruncated) {
  std::unique_ptr<Spool> spool = MustOpen(FastOptions());
  ASSERT_NE(spool, nullptr);
  ASSERT_TRUE(spool->Append(Records("r", 0, 3)).ok());
  spool.reset();
  AppendToFile(Segments().back(), std::string("\x05\x00\x00", 3));

  spool = MustOpen(FastOptions());
  ASSERT_NE(spool, nullptr);
  EXPECT_EQ(spool->torn_bytes_dropped(), 3);
  absl::StatusOr<std::vector<std::string>> got = ReplayAll(*spool, 10);
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_THAT(*got, ElementsAreArray(Records("r", 0, 3)));
}

TEST_F(SpoolTest, ZeroFilledTailLeftByAMachineCrashIsTruncated) {
  std::unique_ptr<Spool> spool = MustOpen(FastOptions());
  ASSERT_NE(spool, nullptr);
  ASSERT_TRUE(spool->Append(Records("r", 0, 4)).ok());
  spool.reset();
  AppendToFile(Segments().back(), std::string(4096, '\0'));

  spool = MustOpen(FastOptions());
  ASSERT_NE(spool, nullptr);
  EXPECT_EQ(spool->torn_bytes_dropped(), 4096);
  absl::StatusOr<std::vector<std::string>> got = ReplayAll(*spool, 10);
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_THAT(*got, ElementsAreArray(Records("r", 0, 4)));
}

TEST_F(SpoolTest, LastRecordWithBadChecksumIsATornTail) {
  std::unique_ptr<Spool> spool = MustOpen(FastOptions());
  ASSERT_NE(spool, nullptr);
  ASSERT_TRUE(spool->Append(Records("r", 0, 4)).ok());
  spool.reset();
  // A complete-looking frame whose payload never made it to disk intact.
  AppendToFile(Segments().back(),
               std::string("\x04\x00\x00\x00\x00\x00\x00\x00", 8) + "junk");

  spool = MustOpen(FastOptions());
  ASSERT_NE(spool, nullptr);
  EXPECT_EQ(spool->torn_bytes_dropped(), 12);
  EXPECT_EQ(spool->pending_records(), 4);
}

TEST_F(SpoolTest, CorruptRecordInTheMiddleIsDataLossNamingFileAndOffset) {
  std::unique_ptr<Spool> spool = MustOpen(FastOptions());
  ASSERT_NE(spool, nullptr);
  // Payloads of 10 bytes: frames of 18, so record 3 starts at offset 54.
  ASSERT_TRUE(spool->Append(Records("record-00", 0, 10)).ok());
  spool.reset();
  const std::string segment = Segments().back();
  {
    std::fstream f(segment, std::ios::binary | std::ios::in | std::ios::out);
    f.seekp(3 * (kHeader + 10) + kHeader + 2);
    f.put('X');
  }

  absl::StatusOr<std::unique_ptr<Spool>> reopened =
      Spool::Open(dir_, FastOptions());
  ASSERT_FALSE(reopened.ok());
  EXPECT_EQ(reopened.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(reopened.status().message(), HasSubstr(segment));
  EXPECT_THAT(reopened.status().message(), HasSubstr("offset 54"));
  // Nothing was truncated away.
  EXPECT_EQ(fs::file_size(segment), 10u * (kHeader + 10));
}

TEST_F(SpoolTest, DamagedEndOfAnEarlierSegmentIsDataLossNotATornTail) {
  SpoolOptions options = FastOptions();
  options.segment_bytes = 40;
  std::vector<std::string> segments = AppendEachAndClose(options, 6);
  ASSERT_GE(segments.size(), 2u);
  // Cut the last record of the first segment short: it was acknowledged.
  fs::resize_file(segments[0], fs::file_size(segments[0]) - 3);

  absl::StatusOr<std::unique_ptr<Spool>> reopened = Spool::Open(dir_, options);
  ASSERT_FALSE(reopened.ok());
  EXPECT_EQ(reopened.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(reopened.status().message(), HasSubstr(segments[0]));
  EXPECT_THAT(reopened.status().message(), HasSubstr("offset 18"));
}

TEST_F(SpoolTest, MissingSegmentIsDataLoss) {
  SpoolOptions options = FastOptions();
  options.segment_bytes = 20;
  std::vector<std::string> segments = AppendEachAndClose(options, 4);
  ASSERT_EQ(segments.size(), 4u);
  fs::remove(segments[1]);

  absl::StatusOr<std::unique_ptr<Spool>> reopened = Spool::Open(dir_, options);
  ASSERT_FALSE(reopened.ok());
  EXPECT_EQ(reopened.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(reopened.status().message(), HasSubstr(segments[1]));
}

// Found by spool_fuzz: a segment numbered 2^64-1 was accepted, the next
// segment's number wrapped to 0, and the spool could not be opened again.
TEST_F(SpoolTest, SegmentNumberedNearTheLimitIsRefusedNamingTheFile) {
  fs::create_directories(dir_);
  const std::string foreign = dir_ + "/spool-18446744073709551615.log";
  { std::ofstream f(foreign, std::ios::binary); }

  absl::StatusOr<std::unique_ptr<Spool>> opened =
      Spool::Open(dir_, FastOptions());
  ASSERT_FALSE(opened.ok());
  EXPECT_EQ(opened.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(opened.status().message(), HasSubstr(foreign));

  // Moving it away, as the message says, gives a spool that works.
  fs::remove(foreign);
  std::unique_ptr<Spool> spool = MustOpen(FastOptions());
  ASSERT_NE(spool, nullptr);
  ASSERT_TRUE(spool->Append(Records("r", 0, 2)).ok());
  absl::StatusOr<std::vector<std::string>> got = ReplayAll(*spool, 10);
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(*got, Records("r", 0, 2));
}

// Found by spool_fuzz: a spool recovered at the last segment number it
// accepts must not roll past it, or it could not be opened again.
TEST_F(SpoolTest, TheLastSegmentNumberIsNeverRolledPast) {
  fs::create_directories(dir_);
  {
    std::ofstream f(dir_ + "/spool-04611686018427387904.log", std::ios::binary);
  }
  SpoolOptions options = FastOptions();
  options.segment_bytes = 20;
  std::unique_ptr<Spool> spool = MustOpen(options);
  ASSERT_NE(spool, nullptr);
  ASSERT_TRUE(spool->Append({"record-000"}).ok());
  absl::Status rolled = spool->Append({"record-001"});
  EXPECT_EQ(rolled.code(), absl::StatusCode::kResourceExhausted) << rolled;
  spool.reset();

  spool = MustOpen(options);
  ASSERT_NE(spool, nullptr);
  absl::StatusOr<std::vector<std::string>> got = ReplayAll(*spool, 10);
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(*got, std::vector<std::string>{"record-000"});
  spool.reset();

  // Drained there, it opens again and takes records.
  spool = MustOpen(options);
  ASSERT_NE(spool, nullptr);
  ASSERT_TRUE(spool->Append({"record-002"}).ok());
  got = ReplayAll(*spool, 10);
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(*got, std::vector<std::string>{"record-002"});
  spool.reset();
  EXPECT_NE(MustOpen(options), nullptr);
}

TEST_F(SpoolTest, CorruptCheckpointIsDataLossSayingHowToRecover) {
  std::unique_ptr<Spool> spool = MustOpen(FastOptions());
  ASSERT_NE(spool, nullptr);
  ASSERT_TRUE(spool->Append(Records("r", 0, 4)).ok());
  ASSERT_TRUE(ReplayAll(*spool, 2).ok());
  spool.reset();
  const std::string checkpoint = dir_ + "/CHECKPOINT";
  ASSERT_TRUE(fs::exists(checkpoint));
  {
    std::fstream f(checkpoint, std::ios::binary | std::ios::in | std::ios::out);
    f.seekp(3);
    f.put('\x7f');
  }
  absl::StatusOr<std::unique_ptr<Spool>> reopened =
      Spool::Open(dir_, FastOptions());
  ASSERT_FALSE(reopened.ok());
  EXPECT_EQ(reopened.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(reopened.status().message(), HasSubstr(checkpoint));
  EXPECT_THAT(reopened.status().message(), HasSubstr("Deleting it"));
}

TEST_F(SpoolTest, FullSpoolIsUnavailableUntilReplayFreesSpace) {
  SpoolOptions options = FastOptions();
  options.max_bytes = 1000;
  options.segment_bytes = 200;
  std::unique_ptr<Spool> spool = MustOpen(options);
  ASSERT_NE(spool, nullptr);
  const std::string payload(100 - kHeader, 'p');  // 100 bytes framed
  for (int i = 0; i < 10; ++i) {
    ASSERT_TRUE(spool->Append({payload}).ok()) << i;
  }
  absl::Status full = spool->Append({payload});
  EXPECT_EQ(full.code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(full.message(), HasSubstr("full"));
  EXPECT_THAT(full.message(), HasSubstr(dir_));
  EXPECT_THAT(full.message(), HasSubstr("retry"));
  // The rejected record was not half-kept.
  EXPECT_EQ(spool->pending_records(), 10);
  EXPECT_EQ(spool->size_bytes(), 1000);

  absl::StatusOr<std::vector<std::string>> got = ReplayAll(*spool, 4);
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(got->size(), 10u);
  EXPECT_EQ(spool->size_bytes(), 0);
  for (int i = 0; i < 10; ++i) {
    EXPECT_TRUE(spool->Append({payload}).ok()) << i;
  }
}

// Not INVALID_ARGUMENT: the same records fit in smaller appends, or go
// straight to Redis when it is up, and clients drop what is called invalid.
TEST_F(SpoolTest, BatchLargerThanTheWholeSpoolIsUnavailableSayingToSplitIt) {
  SpoolOptions options = FastOptions();
  options.max_bytes = 100;
  std::unique_ptr<Spool> spool = MustOpen(options);
  ASSERT_NE(spool, nullptr);
  absl::Status s = spool->Append({std::string(200, 'x')});
  EXPECT_EQ(s.code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(s.message(), HasSubstr("--spool_max_bytes"));
  EXPECT_THAT(s.message(), HasSubstr("smaller calls"));
  EXPECT_EQ(spool->pending_records(), 0);
  // Split, the same bytes fit.
  EXPECT_TRUE(spool->Append({std::string(40, 'x')}).ok());
  EXPECT_TRUE(spool->Append({std::string(40, 'x')}).ok());
}

TEST_F(SpoolTest, ADeletedDirectoryAcknowledgesNothingMoreAndCountsTheLoss) {
  std::unique_ptr<Spool> spool = MustOpen(FastOptions());
  ASSERT_NE(spool, nullptr);
  ASSERT_TRUE(spool->Append(Records("r", 0, 3)).ok());
  ASSERT_TRUE(spool->CheckIntact().ok());
  fs::remove_all(dir_);

  absl::Status s = spool->Append({"after"});
  EXPECT_EQ(s.code(), absl::StatusCode::kUnavailable) << s;
  EXPECT_THAT(s.message(), HasSubstr(dir_));
  EXPECT_THAT(s.message(), HasSubstr("deleted"));
  EXPECT_THAT(s.message(), HasSubstr("3 writes it had acknowledged"));
  EXPECT_THAT(s.message(), HasSubstr("Restart abexp-server"));
  EXPECT_TRUE(spool->lost());
  EXPECT_EQ(spool->lost_records(), 3);
  EXPECT_EQ(spool->pending_records(), 0);
  EXPECT_EQ(spool->CheckIntact().code(), absl::StatusCode::kUnavailable);
  // The replay says the same, not "No such file or directory".
  absl::StatusOr<std::vector<std::string>> got = ReplayAll(*spool, 10);
  ASSERT_FALSE(got.ok());
  EXPECT_THAT(got.status().message(), HasSubstr("deleted"));
  // Nothing is recreated behind the operator's back.
  EXPECT_EQ(spool->Append({"again"}).code(), absl::StatusCode::kUnavailable);
  EXPECT_FALSE(fs::exists(dir_));
}

TEST_F(SpoolTest, ADeletedDirectoryIsNoticedBeforeAnyAppend) {
  std::unique_ptr<Spool> spool = MustOpen(FastOptions());
  ASSERT_NE(spool, nullptr);
  fs::remove_all(dir_);
  absl::Status s = spool->CheckIntact();
  EXPECT_EQ(s.code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(s.message(), HasSubstr("0 writes it had acknowledged"));
  EXPECT_EQ(spool->Append({"r"}).code(), absl::StatusCode::kUnavailable);
}

TEST_F(SpoolTest, AMovedDirectoryIsNoticedAndItsRecordsReplayFromWhereItWent) {
  std::unique_ptr<Spool> spool = MustOpen(FastOptions());
  ASSERT_NE(spool, nullptr);
  ASSERT_TRUE(spool->Append(Records("r", 0, 2)).ok());
  const std::string moved = dir_ + ".moved";
  fs::rename(dir_, moved);

  absl::Status s = spool->CheckIntact();
  EXPECT_EQ(s.code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(spool->Append({"after"}).code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(s.message(), HasSubstr("moved away"));
  EXPECT_THAT(s.message(), HasSubstr("--spool_dir naming it"));
  EXPECT_EQ(spool->lost_records(), 2);
  spool.reset();

  absl::StatusOr<std::unique_ptr<Spool>> there =
      Spool::Open(moved, FastOptions());
  ASSERT_TRUE(there.ok()) << there.status();
  absl::StatusOr<std::vector<std::string>> got = ReplayAll(**there, 10);
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_THAT(*got, ElementsAreArray(Records("r", 0, 2)));
  there->reset();
  fs::remove_all(moved);
}

TEST_F(SpoolTest, DeletedSegmentFilesAreNoticedAtTheNextAppend) {
  std::unique_ptr<Spool> spool = MustOpen(FastOptions());
  ASSERT_NE(spool, nullptr);
  ASSERT_TRUE(spool->Append(Records("r", 0, 2)).ok());
  for (const std::string& segment : Segments()) fs::remove(segment);

  absl::Status s = spool->Append({"after"});
  EXPECT_EQ(s.code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(s.message(), HasSubstr("segment file"));
  EXPECT_EQ(spool->lost_records(), 2);
}

// Segments of at most 40 bytes: 10-byte records (18 framed), two in the
// first segment, one in each later one (after its 32-byte header).
constexpr int64_t kFrame10 = kHeader + 10;

TEST_F(SpoolTest, ASealedSegmentCutAtARecordBoundaryIsReported) {
  SpoolOptions options = FastOptions();
  options.segment_bytes = 40;
  std::vector<std::string> segments = AppendEachAndClose(options, 5);
  ASSERT_GE(segments.size(), 2u);
  ASSERT_EQ(fs::file_size(segments[0]), 2u * kFrame10);
  // record-001 goes, exactly at its frame's start.
  fs::resize_file(segments[0], kFrame10);

  std::unique_ptr<Spool> spool = MustOpen(options);
  ASSERT_NE(spool, nullptr);
  ASSERT_EQ(spool->damage().size(), 1u);
  EXPECT_THAT(spool->damage()[0], HasSubstr(segments[0]));
  EXPECT_THAT(spool->damage()[0], HasSubstr("the last 18 bytes"));
  EXPECT_EQ(spool->torn_bytes_dropped(), 0);
  absl::StatusOr<std::vector<std::string>> got = ReplayAll(*spool, 10);
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_THAT(*got, ElementsAreArray({"record-000", "record-002", "record-003",
                                      "record-004"}));
}

TEST_F(SpoolTest, TheLastSegmentCutAtARecordBoundaryAfterACloseIsReported) {
  std::unique_ptr<Spool> spool = MustOpen(FastOptions());
  ASSERT_NE(spool, nullptr);
  ASSERT_TRUE(spool->Append(Records("record-00", 0, 5)).ok());
  spool.reset();
  const std::string segment = Segments().back();
  fs::resize_file(segment, 3 * kFrame10);

  spool = MustOpen(FastOptions());
  ASSERT_NE(spool, nullptr);
  ASSERT_EQ(spool->damage().size(), 1u);
  EXPECT_THAT(spool->damage()[0], HasSubstr(segment));
  EXPECT_THAT(spool->damage()[0], HasSubstr("36 bytes of acknowledged"));
  EXPECT_THAT(spool->damage()[0], HasSubstr("cut at a record boundary"));
  EXPECT_EQ(spool->torn_bytes_dropped(), 0);
  EXPECT_EQ(spool->pending_records(), 3);
  spool.reset();
  // Reported once: the next start checks against what is left.
  spool = MustOpen(FastOptions());
  ASSERT_NE(spool, nullptr);
  EXPECT_TRUE(spool->damage().empty());
  EXPECT_EQ(spool->pending_records(), 3);
}

TEST_F(SpoolTest, DamageBeforeTheAcknowledgedEndIsKeptAsideNotCalledTorn) {
  std::unique_ptr<Spool> spool = MustOpen(FastOptions());
  ASSERT_NE(spool, nullptr);
  ASSERT_TRUE(spool->Append(Records("record-00", 0, 5)).ok());
  spool.reset();
  const std::string segment = Segments().back();
  std::string tail;
  {
    std::ifstream f(segment, std::ios::binary);
    f.seekg(3 * kFrame10);
    tail.resize(5);
    f.read(tail.data(), 5);
  }
  // Cut inside record 3: what is left of it looks like a torn tail.
  fs::resize_file(segment, 3 * kFrame10 + 5);

  spool = MustOpen(FastOptions());
  ASSERT_NE(spool, nullptr);
  ASSERT_EQ(spool->damage().size(), 1u);
  const std::string kept =
      dir_ + "/damaged/" + fs::path(segment).filename().string() + ".from-54";
  EXPECT_THAT(spool->damage()[0], HasSubstr("kept in " + kept));
  EXPECT_EQ(spool->torn_bytes_dropped(), 0);
  EXPECT_EQ(spool->pending_records(), 3);
  std::ifstream f(kept, std::ios::binary);
  std::string got((std::istreambuf_iterator<char>(f)),
                  std::istreambuf_iterator<char>());
  EXPECT_EQ(got, tail);
}

TEST_F(SpoolTest, ATornTailPastTheAcknowledgedEndIsDroppedQuietly) {
  std::unique_ptr<Spool> spool = MustOpen(FastOptions());
  ASSERT_NE(spool, nullptr);
  ASSERT_TRUE(spool->Append(Records("r", 0, 5)).ok());
  spool.reset();
  // A write a crash cut short: a header announcing 100 bytes, then 10.
  AppendToFile(
      Segments().back(),
      std::string("\x64\x00\x00\x00\x12\x34\x56\x78", 8) + "0123456789");

  spool = MustOpen(FastOptions());
  ASSERT_NE(spool, nullptr);
  EXPECT_TRUE(spool->damage().empty());
  EXPECT_EQ(spool->torn_bytes_dropped(), 18);
  EXPECT_EQ(spool->pending_records(), 5);
  EXPECT_FALSE(fs::exists(dir_ + "/damaged"));
}

TEST_F(SpoolTest, ASegmentDeletedAfterTheLastOneLeftIsReported) {
  SpoolOptions options = FastOptions();
  options.segment_bytes = 40;
  std::vector<std::string> segments = AppendEachAndClose(options, 4);
  ASSERT_GE(segments.size(), 2u);
  fs::remove(segments.back());

  std::unique_ptr<Spool> spool = MustOpen(options);
  ASSERT_NE(spool, nullptr);
  ASSERT_EQ(spool->damage().size(), 1u);
  EXPECT_THAT(spool->damage()[0], HasSubstr(segments.back()));
  EXPECT_THAT(spool->damage()[0], HasSubstr("is missing"));
}

// Spools written before the acknowledged end was kept: a 20-byte
// CHECKPOINT [u64 segment][u64 offset][u32 XXH32] and segments without a
// header.
TEST_F(SpoolTest, AnOlderCheckpointIsStillRead) {
  std::unique_ptr<Spool> spool = MustOpen(FastOptions());
  ASSERT_NE(spool, nullptr);
  ASSERT_TRUE(spool->Append(Records("record-00", 0, 4)).ok());
  spool.reset();
  const std::string name = fs::path(Segments().back()).filename().string();
  uint64_t segment = 0;
  ASSERT_TRUE(absl::SimpleAtoi(name.substr(6, 20), &segment));
  char buf[20];
  for (int i = 0; i < 8; ++i) {
    buf[i] = static_cast<char>((segment >> (8 * i)) & 0xff);
    buf[8 + i] = static_cast<char>(((2 * kFrame10) >> (8 * i)) & 0xff);
  }
  const uint32_t sum = XXH32(buf, 16, 0);
  for (int i = 0; i < 4; ++i) buf[16 + i] = static_cast<char>(sum >> (8 * i));
  {
    std::ofstream f(dir_ + "/CHECKPOINT", std::ios::binary | std::ios::trunc);
    f.write(buf, sizeof(buf));
  }

  spool = MustOpen(FastOptions());
  ASSERT_NE(spool, nullptr);
  EXPECT_TRUE(spool->damage().empty());
  absl::StatusOr<std::vector<std::string>> got = ReplayAll(*spool, 10);
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_THAT(*got, ElementsAreArray(Records("record-00", 2, 4)));
}

TEST_F(SpoolTest, ConcurrentAppendersLoseNothingAndShareSyncs) {
  SpoolOptions options;  // real fdatasync, default group-commit window
  options.segment_bytes = 16 << 10;
  std::unique_ptr<Spool> spool = MustOpen(options);
  ASSERT_NE(spool, nullptr);
  constexpr int kThreads = 8;
  constexpr int kAppends = 100;
  std::vector<std::thread> threads;
  std::atomic<int> failures{0};
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kAppends; ++i) {
        if (!spool
                 ->Append({absl::StrCat(t, ":", i, ":a"),
                           absl::StrCat(t, ":", i, ":b")})
                 .ok()) {
          ++failures;
        }
      }
    });
  }
  for (std::thread& t : threads) t.join();
  EXPECT_EQ(failures.load(), 0);
  const SpoolStats stats = spool->stats();
  EXPECT_EQ(stats.appends, uint64_t{kThreads * kAppends});
  EXPECT_EQ(stats.records, uint64_t{2 * kThreads * kAppends});
  EXPECT_EQ(stats.syncs, stats.group_commits);
  // Group commit: appends share fdatasync calls.
  EXPECT_LE(stats.syncs * 2, stats.appends) << "syncs: " << stats.syncs;
  spool.reset();

  spool = MustOpen(options);
  ASSERT_NE(spool, nullptr);
  absl::StatusOr<std::vector<std::string>> got = ReplayAll(*spool, 500);
  ASSERT_TRUE(got.ok()) << got.status();
  ASSERT_EQ(got->size(), size_t{2 * kThreads * kAppends});
  // Each thread's records arrive complete, unsplit and in its order.
  std::vector<int> next(kThreads, 0);
  for (size_t k = 0; k < got->size(); k += 2) {
    int t = 0;
    ASSERT_TRUE(absl::SimpleAtoi((*got)[k].substr(0, (*got)[k].find(':')), &t));
    ASSERT_LT(t, kThreads);
    EXPECT_EQ((*got)[k], absl::StrCat(t, ":", next[t], ":a"));
    EXPECT_EQ((*got)[k + 1], absl::StrCat(t, ":", next[t], ":b"));
    ++next[t];
  }
  EXPECT_THAT(next, ::testing::Each(kAppends));
}

TEST_F(SpoolTest, AppendsReturnOnlyAfterASyncWhenSyncIsOn) {
  SpoolOptions options;
  options.group_commit_window = absl::ZeroDuration();
  std::unique_ptr<Spool> spool = MustOpen(options);
  ASSERT_NE(spool, nullptr);
  for (int i = 0; i < 5; ++i) ASSERT_TRUE(spool->Append({"x"}).ok());
  // One appender at a time: each append needed its own sync.
  EXPECT_EQ(spool->stats().syncs, 5u);
}

TEST_F(SpoolTest, SecondOpenOfTheSameDirectoryFails) {
  std::unique_ptr<Spool> spool = MustOpen(FastOptions());
  ASSERT_NE(spool, nullptr);
  absl::StatusOr<std::unique_ptr<Spool>> second =
      Spool::Open(dir_, FastOptions());
  ASSERT_FALSE(second.ok());
  EXPECT_EQ(second.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(second.status().message(), HasSubstr(dir_));
  spool.reset();
  EXPECT_NE(MustOpen(FastOptions()), nullptr);
}

TEST_F(SpoolTest, BadOptionsAreInvalidArgument) {
  SpoolOptions options;
  options.max_bytes = 0;
  absl::StatusOr<std::unique_ptr<Spool>> spool = Spool::Open(dir_, options);
  EXPECT_EQ(spool.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(spool.status().message(), HasSubstr("max_bytes=0"));

  absl::Status s = Spool::Open(dir_, FastOptions())
                       .value()
                       ->Replay([](auto) { return absl::OkStatus(); }, 0);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(SpoolTest, OpenCreatesMissingDirectories) {
  const std::string nested = dir_ + "/a/b/spool";
  absl::StatusOr<std::unique_ptr<Spool>> spool =
      Spool::Open(nested, FastOptions());
  ASSERT_TRUE(spool.ok()) << spool.status();
  EXPECT_TRUE((*spool)->empty());
  EXPECT_TRUE(fs::is_directory(nested));
}

// Sets the process umask for the scope of a test.
class ScopedUmask {
 public:
  explicit ScopedUmask(mode_t mask) : old_(::umask(mask)) {}
  ~ScopedUmask() { ::umask(old_); }

 private:
  const mode_t old_;
};

mode_t ModeOf(const std::string& path) {
  struct stat st;
  EXPECT_EQ(::stat(path.c_str(), &st), 0) << path;
  return st.st_mode & 07777;
}

// The spool holds unit ids: with the most permissive umask, the directory
// it creates is 0700 and every file in it 0600.
TEST_F(SpoolTest, EverythingItCreatesIsOwnerOnlyWhateverTheUmask) {
  ScopedUmask permissive(0);
  const std::string spool_dir = dir_ + "/parent/spool";
  SpoolOptions options = FastOptions();
  options.segment_bytes = 256;  // several segments
  {
    absl::StatusOr<std::unique_ptr<Spool>> spool =
        Spool::Open(spool_dir, options);
    ASSERT_TRUE(spool.ok()) << spool.status();
    for (int i = 0; i < 20; ++i) {
      ASSERT_TRUE((*spool)->Append({std::string(60, 'r')}).ok());
    }
    // A partial replay (one batch, then the sink fails) writes the
    // checkpoint and leaves the segments.
    int batches = 0;
    EXPECT_FALSE((*spool)
                     ->Replay(
                         [&](auto) {
                           return ++batches == 1 ? absl::OkStatus()
                                                 : absl::UnavailableError("");
                         },
                         3)
                     .ok());
  }
  EXPECT_EQ(ModeOf(spool_dir), 0700u);
  std::vector<std::string> names;
  for (const auto& e : fs::directory_iterator(spool_dir)) {
    names.push_back(e.path().filename().string());
    EXPECT_EQ(ModeOf(e.path().string()), 0600u) << e.path();
  }
  EXPECT_THAT(names, ::testing::Contains("LOCK"));
  EXPECT_THAT(names, ::testing::Contains("CHECKPOINT"));
  EXPECT_GE(std::count_if(
                names.begin(), names.end(),
                [](const std::string& n) { return n.rfind("spool-", 0) == 0; }),
            2);
}

// A spool directory an older server (or an operator) left readable by
// others is tightened at Open, with what it holds, and still replays.
TEST_F(SpoolTest, AMoreOpenDirectoryIsTightenedAndKeepsItsRecords) {
  {
    std::unique_ptr<Spool> spool = MustOpen(FastOptions());
    ASSERT_NE(spool, nullptr);
    ASSERT_TRUE(spool->Append(Records("r", 0, 5)).ok());
  }
  ASSERT_TRUE(fs::create_directory(dir_ + "/rejected"));
  AppendToFile(dir_ + "/rejected/note", "left by an operator");
  for (const auto& e : fs::recursive_directory_iterator(dir_)) {
    ASSERT_EQ(::chmod(e.path().c_str(), e.is_directory() ? 0777 : 0666), 0);
  }
  ASSERT_EQ(::chmod(dir_.c_str(), 0755), 0);

  std::unique_ptr<Spool> spool = MustOpen(FastOptions());
  ASSERT_NE(spool, nullptr);
  EXPECT_EQ(ModeOf(dir_), 0700u);
  EXPECT_EQ(ModeOf(dir_ + "/rejected"), 0700u);
  EXPECT_EQ(ModeOf(dir_ + "/rejected/note"), 0600u);
  for (const std::string& segment : Segments()) {
    EXPECT_EQ(ModeOf(segment), 0600u) << segment;
  }
  absl::StatusOr<std::vector<std::string>> got = ReplayAll(*spool, 16);
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_THAT(*got, ElementsAreArray(Records("r", 0, 5)));
}

TEST_F(SpoolTest, AFileWhereTheDirectoryShouldBeIsRefused) {
  const std::string path = dir_ + "/not-a-dir";
  AppendToFile(path, "x");
  absl::StatusOr<std::unique_ptr<Spool>> spool =
      Spool::Open(path, FastOptions());
  EXPECT_EQ(spool.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(spool.status().message()),
              HasSubstr("is not a directory"));
}

// The child's records: large, so that a kill often lands inside write().
std::string ChildRecord(int64_t index) {
  return absl::StrCat("child-record-", index, "-", std::string(16 << 10, 'z'));
}

struct KillOutcome {
  int64_t acked_records = 0;
  int64_t replayed_records = 0;
  int64_t torn_bytes_dropped = 0;
};

// A child process appends batches to a spool in `dir`, reporting each
// acknowledged one on a pipe; it is SIGKILLed `delay` after the 20th ack.
// Then the spool is reopened and must hold every acknowledged record.
void AppendThenKill(const std::string& dir, absl::Duration delay,
                    KillOutcome* outcome) {
  SpoolOptions options;  // real fdatasync
  options.segment_bytes = 1 << 20;
  options.group_commit_window = absl::ZeroDuration();
  constexpr int kBatch = 10;
  int fds[2];
  ASSERT_EQ(::pipe(fds), 0);
  const pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    ::close(fds[0]);
    absl::StatusOr<std::unique_ptr<Spool>> spool = Spool::Open(dir, options);
    if (!spool.ok()) ::_exit(2);
    for (int64_t i = 0;; ++i) {
      std::vector<std::string> batch;
      for (int k = 0; k < kBatch; ++k)
        batch.push_back(ChildRecord(i * kBatch + k));
      if (!(*spool)->Append(batch).ok()) ::_exit(3);
      const std::string line = absl::StrCat("acked ", i, "\n");
      if (::write(fds[1], line.data(), line.size()) !=
          static_cast<ssize_t>(line.size())) {
        ::_exit(4);
      }
    }
  }
  ::close(fds[1]);
  FILE* acks = ::fdopen(fds[0], "r");
  ASSERT_NE(acks, nullptr);
  int64_t last_acked = -1;
  char line[64];
  bool killed = false;
  while (std::fgets(line, sizeof(line), acks) != nullptr) {
    int64_t i = 0;
    ASSERT_EQ(std::sscanf(line, "acked %ld", &i), 1) << line;
    ASSERT_EQ(i, last_acked + 1);
    last_acked = i;
    if (!killed && last_acked >= 20) {
      absl::SleepFor(delay);
      ASSERT_EQ(::kill(pid, SIGKILL), 0);
      killed = true;
    }
  }
  std::fclose(acks);
  int wstatus = 0;
  ASSERT_EQ(::waitpid(pid, &wstatus, 0), pid);
  ASSERT_TRUE(WIFSIGNALED(wstatus) && WTERMSIG(wstatus) == SIGKILL)
      << "child exited on its own with status " << wstatus;

  absl::StatusOr<std::unique_ptr<Spool>> spool = Spool::Open(dir, options);
  ASSERT_TRUE(spool.ok()) << spool.status();
  absl::StatusOr<std::vector<std::string>> got = ReplayAll(**spool, 100);
  ASSERT_TRUE(got.ok()) << got.status();
  outcome->acked_records = (last_acked + 1) * kBatch;
  outcome->replayed_records = static_cast<int64_t>(got->size());
  outcome->torn_bytes_dropped = (*spool)->torn_bytes_dropped();
  // Every acknowledged batch is there; after them may come records whose
  // Append() was cut short, but always in order and without gaps.
  ASSERT_GE(outcome->replayed_records, outcome->acked_records);
  for (size_t j = 0; j < got->size(); ++j) {
    ASSERT_EQ((*got)[j], ChildRecord(static_cast<int64_t>(j))) << j;
  }
}

TEST_F(SpoolTest, KilledWriterLosesNoAcknowledgedRecord) {
  // Delays spread the kill over the next Append(): before, inside write(),
  // inside fdatasync(), after.
  const int delays_us[] = {0, 50, 200, 500, 1000, 2000, 4000};
  for (int delay_us : delays_us) {
    SCOPED_TRACE(absl::StrCat("kill ", delay_us, "us after an ack"));
    const std::string dir = absl::StrCat(dir_, "/kill-", delay_us);
    KillOutcome outcome;
    ASSERT_NO_FATAL_FAILURE(
        AppendThenKill(dir, absl::Microseconds(delay_us), &outcome));
    RecordProperty(absl::StrCat("delay_", delay_us, "us"),
                   absl::StrCat("acked=", outcome.acked_records,
                                " replayed=", outcome.replayed_records,
                                " torn_bytes=", outcome.torn_bytes_dropped));
  }
}

}  // namespace
}  // namespace abexp
