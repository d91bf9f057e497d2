// Logging back end: one mutex-guarded write per line so lines from threads do not interleave.
#include "core/util/Logging.h"

#include <cstdio>
#include <ctime>
#include <mutex>

#include "core/util/Env.h"

namespace loom::logging {
namespace {
std::mutex g_mu;
std::string g_tag;
int g_rank = 0;
Level g_level = [] {
  std::string v = env::get_string(env::kLogLevel, "INFO");
  if (v == "DEBUG") return Level::DEBUG;
  if (v == "WARN") return Level::WARN;
  if (v == "ERROR") return Level::ERROR;
  return Level::INFO;
}();
const char* level_name(Level l) {
  switch (l) {
    case Level::DEBUG: return "D";
    case Level::INFO: return "I";
    case Level::WARN: return "W";
    case Level::ERROR: return "E";
  }
  return "?";
}
}  // namespace

Level min_level() { return g_level; }
void set_min_level(Level level) { g_level = level; }
void set_rank_tag(std::string tag, int global_rank) {
  std::lock_guard<std::mutex> lock(g_mu);
  g_tag = std::move(tag);
  g_rank = global_rank;
}
int global_rank() { return g_rank; }

LogLine::LogLine(Level level, const char* file, int line) : level_(level) {
  const char* base = file;
  for (const char* p = file; *p; ++p)
    if (*p == '/') base = p + 1;
  std::time_t t = std::time(nullptr);
  char buf[16];
  std::strftime(buf, sizeof(buf), "%H:%M:%S", std::localtime(&t));
  os_ << level_name(level) << " " << buf << " " << base << ":" << line << "] ";
}

LogLine::~LogLine() {
  std::lock_guard<std::mutex> lock(g_mu);
  std::string s = g_tag.empty() ? os_.str() : g_tag + " " + os_.str();
  std::fprintf(stderr, "%s\n", s.c_str());
  std::fflush(stderr);
}

}  // namespace loom::logging
