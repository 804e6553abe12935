#include "server/storage/redis/redis_scripts.h"

#include <string>

// Generated from lua/*.lua by lua/embed_scripts.py.
#include "server/storage/redis/lua_scripts.gen.h"

namespace abexp::redis_scripts {

const std::string& WriteExposures() {
  static const std::string* script = new std::string(embedded::kWriteExposures);
  return *script;
}

const std::string& WriteEvents() {
  static const std::string* script = new std::string(embedded::kWriteEvents);
  return *script;
}

}  // namespace abexp::redis_scripts
