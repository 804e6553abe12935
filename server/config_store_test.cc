#include "server/config_store.h"

#include <stdlib.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/config_parser.h"

namespace abexp {
namespace {

using ::testing::HasSubstr;

constexpr char kConfigA[] = R"yaml(
features:
  - key: checkout_flow
    type: string
    default: multi_step
experiments:
  - key: exp_a
    status: running
    variants:
      - key: control
        weight: 1
        features: {checkout_flow: multi_step}
      - key: one_page
        weight: 1
        features: {checkout_flow: one_page}
)yaml";

constexpr char kConfigB[] = R"yaml(
features:
  - key: checkout_flow
    type: string
    default: multi_step
experiments:
  - key: exp_b
    status: running
    variants:
      - key: control
        weight: 1
)yaml";

// Two errors: an unknown status (line 4) and an undeclared feature (line 8).
constexpr char kInvalid[] = R"yaml(
experiments:
  - key: exp_a
    status: runing
    variants:
      - key: control
        weight: 1
        features: {no_such_feature: 1}
)yaml";

// A file in a fresh temporary directory.
class TempFile {
 public:
  TempFile() {
    std::string dir =
        absl::StrCat(::testing::TempDir(), "/config_store_test-XXXXXX");
    dir_ = mkdtemp(dir.data()) != nullptr ? dir : "";
    EXPECT_FALSE(dir_.empty()) << "mkdtemp failed";
    path_ = dir_ + "/experiments.yaml";
  }
  ~TempFile() {
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }
  const std::string& path() const { return path_; }
  // Replaces the file atomically, as a deploy tool would.
  void Write(const std::string& text) const {
    std::string tmp = path_ + ".tmp";
    { std::ofstream(tmp, std::ios::binary | std::ios::trunc) << text; }
    ASSERT_EQ(std::rename(tmp.c_str(), path_.c_str()), 0);
  }

 private:
  std::string dir_;
  std::string path_;
};

TEST(ConfigStore, OpenServesTheFileWithItsContentVersion) {
  TempFile file;
  file.Write(kConfigA);
  LoadResult loaded;
  absl::StatusOr<std::unique_ptr<ConfigStore>> store =
      ConfigStore::Open(file.path(), &loaded);
  ASSERT_TRUE(store.ok()) << store.status();
  std::shared_ptr<const Config> config = (*store)->Snapshot();
  ASSERT_NE(config, nullptr);
  EXPECT_EQ(config->version, ConfigVersionOf(kConfigA));
  EXPECT_EQ(config->experiments.at(0).key, "exp_a");
  EXPECT_EQ(loaded.config, config);
  EXPECT_EQ((*store)->path(), file.path());
}

TEST(ConfigStore, OpenRefusesAnInvalidFileListingEveryError) {
  TempFile file;
  file.Write(kInvalid);
  absl::StatusOr<std::unique_ptr<ConfigStore>> store =
      ConfigStore::Open(file.path());
  ASSERT_FALSE(store.ok());
  EXPECT_EQ(store.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(store.status().message(), HasSubstr(file.path() + ":4:"));
  EXPECT_THAT(store.status().message(), HasSubstr(file.path() + ":8:"));
  EXPECT_THAT(store.status().message(), HasSubstr("2 errors"));
}

TEST(ConfigStore, OpenOfAMissingFileNamesThePath) {
  TempFile file;  // never written
  absl::StatusOr<std::unique_ptr<ConfigStore>> store =
      ConfigStore::Open(file.path());
  ASSERT_FALSE(store.ok());
  EXPECT_EQ(store.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(store.status().message(), HasSubstr(file.path()));
}

TEST(ConfigStore, OpenOfADirectoryIsAnError) {
  absl::StatusOr<std::unique_ptr<ConfigStore>> store =
      ConfigStore::Open(::testing::TempDir());
  ASSERT_FALSE(store.ok());
  EXPECT_EQ(store.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(store.status().message(), HasSubstr("is a directory"));
}

TEST(ConfigStore, OpenReportsWarningsWithoutFailing) {
  TempFile file;
  // Two running experiments outside a layer that set the same feature.
  file.Write(absl::StrCat(kConfigA, R"yaml(
  - key: exp_c
    status: running
    variants:
      - key: control
        weight: 1
        features: {checkout_flow: one_page}
)yaml"));
  LoadResult loaded;
  absl::StatusOr<std::unique_ptr<ConfigStore>> store =
      ConfigStore::Open(file.path(), &loaded);
  ASSERT_TRUE(store.ok()) << store.status();
  ASSERT_EQ(loaded.warnings.size(), 1u);
  EXPECT_THAT(loaded.warnings[0], HasSubstr("warning: "));
  EXPECT_THAT(loaded.warnings[0], HasSubstr("checkout_flow"));
}

TEST(ConfigStore, ReloadInstallsANewValidFile) {
  TempFile file;
  file.Write(kConfigA);
  absl::StatusOr<std::unique_ptr<ConfigStore>> store =
      ConfigStore::Open(file.path());
  ASSERT_TRUE(store.ok()) << store.status();
  file.Write(kConfigB);
  absl::StatusOr<LoadResult> reloaded = (*store)->Reload();
  ASSERT_TRUE(reloaded.ok()) << reloaded.status();
  EXPECT_TRUE(reloaded->changed);
  EXPECT_EQ(reloaded->config->version, ConfigVersionOf(kConfigB));
  EXPECT_EQ((*store)->Snapshot(), reloaded->config);
  EXPECT_EQ((*store)->Snapshot()->experiments.at(0).key, "exp_b");
}

TEST(ConfigStore, ReloadOfAnUnchangedFileIsANoOp) {
  TempFile file;
  file.Write(kConfigA);
  absl::StatusOr<std::unique_ptr<ConfigStore>> store =
      ConfigStore::Open(file.path());
  ASSERT_TRUE(store.ok()) << store.status();
  std::shared_ptr<const Config> before = (*store)->Snapshot();
  file.Write(kConfigA);  // rewritten, same bytes
  absl::StatusOr<LoadResult> reloaded = (*store)->Reload();
  ASSERT_TRUE(reloaded.ok()) << reloaded.status();
  EXPECT_FALSE(reloaded->changed);
  EXPECT_EQ((*store)->Snapshot(), before);  // the very same object
}

TEST(ConfigStore, ReloadKeepsTheLastGoodConfigWhenTheFileIsInvalid) {
  TempFile file;
  file.Write(kConfigA);
  absl::StatusOr<std::unique_ptr<ConfigStore>> store =
      ConfigStore::Open(file.path());
  ASSERT_TRUE(store.ok()) << store.status();
  std::shared_ptr<const Config> good = (*store)->Snapshot();

  file.Write(kInvalid);
  absl::StatusOr<LoadResult> reloaded = (*store)->Reload();
  ASSERT_FALSE(reloaded.ok());
  EXPECT_EQ(reloaded.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(reloaded.status().message(), HasSubstr(file.path() + ":4:"));
  EXPECT_THAT(reloaded.status().message(), HasSubstr(file.path() + ":8:"));
  EXPECT_EQ((*store)->Snapshot(), good);

  ASSERT_EQ(std::remove(file.path().c_str()), 0);
  reloaded = (*store)->Reload();
  ASSERT_FALSE(reloaded.ok());
  EXPECT_EQ(reloaded.status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ((*store)->Snapshot(), good);

  // Fixing the file is picked up by the next reload.
  file.Write(kConfigB);
  reloaded = (*store)->Reload();
  ASSERT_TRUE(reloaded.ok()) << reloaded.status();
  EXPECT_EQ((*store)->Snapshot()->version, ConfigVersionOf(kConfigB));
}

TEST(ConfigStore, SnapshotStaysIntactWhileReloadsSwapConfigs) {
  TempFile file;
  file.Write(kConfigA);
  absl::StatusOr<std::unique_ptr<ConfigStore>> store =
      ConfigStore::Open(file.path());
  ASSERT_TRUE(store.ok()) << store.status();
  ConfigStore* s = store->get();
  const std::string version_a = ConfigVersionOf(kConfigA);
  const std::string version_b = ConfigVersionOf(kConfigB);
  std::shared_ptr<const Config> held = s->Snapshot();

  std::atomic<bool> done{false};
  std::atomic<int> torn{0};
  std::atomic<long> reads{0};
  std::vector<std::thread> readers;
  for (int t = 0; t < 4; ++t) {
    readers.emplace_back([&] {
      while (!done.load()) {
        std::shared_ptr<const Config> c = s->Snapshot();
        // Each snapshot is one whole config: its version matches its content.
        bool is_a =
            c->version == version_a && c->experiments.at(0).key == "exp_a";
        bool is_b =
            c->version == version_b && c->experiments.at(0).key == "exp_b";
        if (!is_a && !is_b) torn.fetch_add(1);
        reads.fetch_add(1);
      }
    });
  }
  for (int i = 0; i < 40; ++i) {
    file.Write(i % 2 == 0 ? kConfigB : kConfigA);
    absl::StatusOr<LoadResult> r = s->Reload();
    EXPECT_TRUE(r.ok()) << r.status();
  }
  done.store(true);
  for (std::thread& t : readers) t.join();
  EXPECT_EQ(torn.load(), 0);
  EXPECT_GT(reads.load(), 0);
  // A snapshot taken before the reloads is unaffected by them.
  EXPECT_EQ(held->version, version_a);
  EXPECT_EQ(held->experiments.at(0).key, "exp_a");
  EXPECT_EQ(held->experiments.at(0).variants.size(), 2u);
}

}  // namespace
}  // namespace abexp
