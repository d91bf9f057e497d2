// The checkpoint root (see CheckpointLineage.h and Checkpoint.h): `latest` as the truth for
// resuming, write order, the run lineage pruning may touch, and stale temporary directories.
#include "io/CheckpointLineage.h"

#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <optional>
#include <sstream>

#include "core/util/Check.h"
#include "core/util/Logging.h"
#include "io/Checkpoint.h"
#include "io/CheckpointShards.h"

namespace fs = std::filesystem;

namespace loom::io {

namespace detail {

namespace {

// "step_" followed by digits only: a final (published) checkpoint name.
bool is_final_name(const std::string& n) {
  return n.size() > 5 && n.rfind("step_", 0) == 0 &&
         n.find_first_not_of("0123456789", 5) == std::string::npos;
}

// The PID of "step_<digits>.<kind>-<pid>" (kind "tmp" or "del"), or nullopt.
std::optional<pid_t> temp_dir_pid(const std::string& n) {
  size_t dot = n.find('.');
  if (dot == std::string::npos || !is_final_name(n.substr(0, dot))) return std::nullopt;
  std::string rest = n.substr(dot + 1);
  if (rest.rfind("tmp-", 0) != 0 && rest.rfind("del-", 0) != 0) return std::nullopt;
  std::string digits = rest.substr(4);
  if (digits.empty() || digits.size() > 9 ||
      digits.find_first_not_of("0123456789") != std::string::npos)
    return std::nullopt;
  return pid_t(std::stol(digits));
}

bool process_alive(pid_t pid) { return ::kill(pid, 0) == 0 || errno == EPERM; }

int64_t mtime_ns(const std::string& path) {
  std::error_code ec;
  auto t = fs::last_write_time(path, ec);
  if (ec) return 0;
  return int64_t(
      std::chrono::duration_cast<std::chrono::nanoseconds>(t.time_since_epoch()).count());
}

// Write order, oldest first: sequence (0 before any numbered one), then time, then step.
bool written_before(const RootEntry& a, const RootEntry& b) {
  if (a.sequence != b.sequence) return a.sequence < b.sequence;
  if (a.mtime_ns != b.mtime_ns) return a.mtime_ns < b.mtime_ns;
  return a.step < b.step;
}

RootEntry describe(const std::string& root, const std::string& name) {
  RootEntry e;
  e.name = name;
  e.dir = root + "/" + name;
  try {
    Manifest m = read_manifest_file(e.dir);
    e.step = m.step;
    e.sequence = m.sequence;
    e.mtime_ns = mtime_ns(e.dir + "/MANIFEST.json");
    if (checkpoint_dir_name(m.step) != name && m.version >= 3)
      e.problem = "its manifest is for step " + std::to_string(m.step);
    else
      e.problem = missing_or_resized(e.dir, m);
  } catch (const CheckpointError& err) {
    e.problem = err.what();
  }
  e.complete = e.problem.empty();
  return e;
}

// The directory name `latest` holds, "" if there is no latest file; problem set when unusable.
std::string read_latest(const std::string& root, std::string& problem) {
  const std::string path = root + "/latest";
  if (!fs::exists(path)) return "";
  std::string text;
  try {
    text = read_text(path);
  } catch (const CheckpointError& e) {
    problem = e.what();
    return path;
  }
  while (!text.empty() && (text.back() == '\n' || text.back() == '\r' || text.back() == ' '))
    text.pop_back();
  if (!is_final_name(text)) problem = path + " holds \"" + text + "\", not a step_N directory name";
  return text.empty() ? path : text;
}

}  // namespace

std::string read_text(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f || fs::is_directory(path)) checkpoint_fail("cannot read " + path);
  std::ostringstream ss;
  ss << f.rdbuf();
  if (f.bad()) checkpoint_fail("read error in " + path);
  return ss.str();
}

void fsync_path(const std::string& path, bool directory) {
  int fd = ::open(path.c_str(), directory ? O_RDONLY | O_DIRECTORY : O_RDONLY);
  if (fd < 0) checkpoint_fail("cannot open " + path + " to flush it: " + std::strerror(errno));
  int rc = ::fsync(fd);
  int err = errno;
  ::close(fd);
  if (rc != 0) checkpoint_fail("fsync failed for " + path + ": " + std::strerror(err));
}

void write_text(const std::string& path, const std::string& text) {
  {
    std::ofstream f(path, std::ios::binary | std::ios::trunc);
    f << text;
    f.close();
    if (!f) checkpoint_fail("cannot write " + path + " (disk full or not writable?)");
  }
  fsync_path(path, false);
}

Manifest read_manifest_file(const std::string& dir) {
  const std::string path = dir + "/MANIFEST.json";
  if (!fs::exists(path)) checkpoint_fail(path + " is missing (incomplete checkpoint)");
  return parse_manifest(read_text(path), path);
}

std::string missing_or_resized(const std::string& dir, const Manifest& m) {
  for (const auto& [name, f] : m.files) {
    std::error_code ec;
    uint64_t size = fs::file_size(dir + "/" + name, ec);
    if (ec) return dir + "/" + name + " is missing";
    if (size != f.bytes)
      return dir + "/" + name + ": expected " + std::to_string(f.bytes) + " bytes, got " +
             std::to_string(size);
  }
  return "";
}

std::vector<RootEntry> scan_root(const std::string& root) {
  std::vector<RootEntry> out;
  std::error_code ec;
  if (!fs::is_directory(root, ec)) return out;
  for (const auto& e : fs::directory_iterator(root, ec)) {
    std::string n = e.path().filename().string();
    if (is_final_name(n) && e.is_directory(ec)) out.push_back(describe(root, n));
  }
  std::sort(out.begin(), out.end(), written_before);
  return out;
}

std::vector<std::string> resume_candidates(const std::string& root,
                                           std::vector<std::string>& problems, bool& exists) {
  std::vector<RootEntry> entries = scan_root(root);
  std::string latest_problem;
  const std::string latest = read_latest(root, latest_problem);
  exists = !entries.empty() || !latest.empty();
  std::vector<std::string> out;
  const RootEntry* named = nullptr;
  for (const RootEntry& e : entries) {
    if (!e.complete) problems.push_back(e.dir + ": " + e.problem);
    if (e.name == latest && latest_problem.empty()) named = &e;
  }
  if (named && named->complete) {
    out.push_back(named->dir);
  } else if (!latest.empty()) {
    problems.push_back(root + "/latest: " +
                       (!latest_problem.empty() ? latest_problem
                        : named                 ? "names " + latest + ", which is incomplete"
                                                : "names " + latest + ", which does not exist"));
  } else if (!entries.empty()) {
    problems.push_back(root + "/latest is missing");
  }
  for (auto it = entries.rbegin(); it != entries.rend(); ++it)
    if (it->complete && &*it != named) out.push_back(it->dir);
  return out;
}

int64_t next_sequence(const std::string& root) {
  int64_t seq = 0;
  for (const RootEntry& e : scan_root(root)) seq = std::max(seq, e.sequence);
  return seq + 1;
}

void prune_lineage(const std::string& root, const std::string& newest, int keep_last) {
  std::vector<RootEntry> entries = scan_root(root);
  auto it = std::find_if(entries.begin(), entries.end(),
                         [&](const RootEntry& e) { return e.name == newest; });
  if (it == entries.end() || !it->complete) {
    LOG(WARN) << "checkpoint: not pruning " << root << ": " << newest << " is not complete";
    return;
  }
  std::vector<const RootEntry*> lineage = {&*it};
  for (auto r = std::make_reverse_iterator(it); r != entries.rend(); ++r)
    if (r->complete && r->step < lineage.back()->step) lineage.push_back(&*r);
  for (size_t i = size_t(std::max(keep_last, 1)); i < lineage.size(); ++i) {
    // Renamed first, so a crash mid-delete never leaves a half-deleted step_N directory.
    std::string doomed = lineage[i]->dir + ".del-" + std::to_string(::getpid());
    std::error_code ec;
    fs::rename(lineage[i]->dir, doomed, ec);
    if (!ec) fs::remove_all(doomed, ec);
    if (ec) {
      LOG(WARN) << "checkpoint: cannot prune " << lineage[i]->dir << ": " << ec.message();
    }
  }
}

void remove_stale_temp_dirs(const std::string& root) {
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(root, ec)) {
    std::optional<pid_t> pid = temp_dir_pid(e.path().filename().string());
    if (!pid || *pid == ::getpid() || process_alive(*pid)) continue;
    std::error_code rm;
    fs::remove_all(e.path(), rm);
    if (rm) {
      LOG(WARN) << "checkpoint: cannot remove stale " << e.path().string() << ": " << rm.message();
    } else {
      LOG(INFO) << "checkpoint: removed " << e.path().string() << " (its writer, process " << *pid
                << ", is gone)";
    }
  }
}

}  // namespace detail

std::string find_latest_checkpoint(const std::string& root) {
  std::vector<std::string> problems;
  bool exists = false;
  std::vector<std::string> dirs = detail::resume_candidates(root, problems, exists);
  if (!exists) return "";
  std::string why;
  for (const std::string& p : problems) why += "\n  " + p;
  LOOM_CHECK_T(CheckpointError, !dirs.empty(), "checkpoint: ", root,
               " holds checkpoints but none is complete:", why);
  if (!problems.empty()) {
    LOG(WARN) << "checkpoint: using " << dirs.front() << " under " << root << ":" << why;
  }
  return dirs.front();
}

std::string checkpoint_step_dir(const std::string& path) {
  std::error_code ec;
  if (!fs::is_directory(path, ec)) return "";
  if (fs::exists(fs::path(path) / "MANIFEST.json", ec)) return path;
  return find_latest_checkpoint(path);
}

std::optional<Checkpoint> load_latest_checkpoint(const std::string& root, const LoadOptions& opts,
                                                 std::string* dir_out) {
  std::vector<std::string> problems;
  bool exists = false;
  std::vector<std::string> dirs = detail::resume_candidates(root, problems, exists);
  if (!exists) return std::nullopt;
  for (const std::string& dir : dirs) {
    try {
      Checkpoint ck = load_checkpoint(dir, opts);
      if (!problems.empty()) {
        std::string why;
        for (const std::string& p : problems) why += "\n  " + p;
        LOG(WARN) << "checkpoint: resuming from " << dir << " under " << root << ":" << why;
      }
      if (dir_out) *dir_out = dir;
      return ck;
    } catch (const CheckpointError& e) {
      problems.push_back(dir + ": " + e.what());
    }
  }
  std::string why;
  for (const std::string& p : problems) why += "\n  " + p;
  throw CheckpointError("checkpoint: " + root + " holds checkpoints but none loads:" + why);
}

}  // namespace loom::io
