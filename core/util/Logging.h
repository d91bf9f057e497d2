// glog-style logging: LOG(INFO) << "x" ; prefix "[r3 tp1 pp0 dp1]" once parallel/ sets the rank tag.
// Level filtered at run time by LOOM_LOG_LEVEL (see Env.h). LOG_RANK0 prints only on global rank 0.
#pragma once

#include <sstream>
#include <string>

namespace loom::logging {

enum class Level { DEBUG = 0, INFO = 1, WARN = 2, ERROR = 3 };

Level min_level();
void set_min_level(Level level);
// Rank tag shown before every line, e.g. "[r3 tp1 pp0 dp1] ". Empty for single-process runs.
void set_rank_tag(std::string tag, int global_rank);
int global_rank();

class LogLine {
 public:
  LogLine(Level level, const char* file, int line);
  ~LogLine();  // writes the line to stderr
  std::ostringstream& stream() { return os_; }

 private:
  Level level_;
  std::ostringstream os_;
};

}  // namespace loom::logging

#define LOOM_LOG_ENABLED(lvl) (::loom::logging::Level::lvl >= ::loom::logging::min_level())
#define LOG(lvl) \
  if (!LOOM_LOG_ENABLED(lvl)) {} else ::loom::logging::LogLine(::loom::logging::Level::lvl, __FILE__, __LINE__).stream()
#define LOG_RANK0(lvl) \
  if (!LOOM_LOG_ENABLED(lvl) || ::loom::logging::global_rank() != 0) {} else \
    ::loom::logging::LogLine(::loom::logging::Level::lvl, __FILE__, __LINE__).stream()
