#include "server/storage/redis/redis_scripts.h"

#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>

#include "gtest/gtest.h"
#include "server/core/event_store.h"

namespace abexp::redis_scripts {
namespace {

// The file as it is in the source tree now, byte for byte.
std::string ReadLuaFile(const std::string& name) {
  const std::string path =
      std::string(ABEXP_SOURCE_DIR) + "/server/storage/redis/lua/" + name;
  std::ifstream in(path, std::ios::binary);
  EXPECT_TRUE(in.good()) << "cannot read " << path;
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

// What follows "local NAME = " in a script, as a number.
double ConstantOf(const std::string& script, const std::string& name) {
  const std::string decl = "\nlocal " + name + " = ";
  const size_t at = script.find(decl);
  EXPECT_NE(at, std::string::npos) << "no " << name << " in the script";
  if (at == std::string::npos) return 0;
  return std::strtod(script.c_str() + at + decl.size(), nullptr);
}

// What abexp-server runs is what `redis-cli --eval` runs: a stale build or a
// generator that altered a byte would make the two disagree.
TEST(RedisScripts, WriteExposuresIsItsLuaFileByteForByte) {
  const std::string file = ReadLuaFile("write_exposures.lua");
  ASSERT_FALSE(file.empty());
  EXPECT_EQ(WriteExposures(), file);
}

TEST(RedisScripts, WriteEventsIsItsLuaFileByteForByte) {
  const std::string file = ReadLuaFile("write_events.lua");
  ASSERT_FALSE(file.empty());
  EXPECT_EQ(WriteEvents(), file);
}

// The scripts refuse values beyond the same bound the store checks before
// sending, so a value the store passes is never an ABEXP_ARGS error.
TEST(RedisScripts, ScriptsBoundValuesLikeTheStore) {
  EXPECT_EQ(ConstantOf(WriteExposures(), "MAX_VALUE"), kMaxEventValue);
  EXPECT_EQ(ConstantOf(WriteEvents(), "MAX_VALUE"), kMaxEventValue);
}

// Every variant a config may have (the parser's limit) can be recorded, and
// every config version the store passes reaches the script.
TEST(RedisScripts, WriteExposuresBoundsVariantsAndVersionsLikeTheStore) {
  EXPECT_EQ(ConstantOf(WriteExposures(), "MAX_VARIANTS"), kMaxVariants);
  EXPECT_EQ(ConstantOf(WriteExposures(), "MAX_VERSION_BYTES"),
            kMaxStoredConfigVersionBytes);
}

// Every dimension a config may declare fits the record's segment entry.
TEST(RedisScripts, WriteExposuresBoundsDimensionsLikeTheParser) {
  EXPECT_EQ(ConstantOf(WriteExposures(), "MAX_DIMENSIONS"), kMaxDimensions);
}

}  // namespace
}  // namespace abexp::redis_scripts
