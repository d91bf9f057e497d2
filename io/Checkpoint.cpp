// Checkpoint directories (see Checkpoint.h): the temporary-directory / fsync / rename protocol, the
// manifest, the collective save (one tensor file per rank, success agreed by an all-gather) and
// loading, which leaves the HDF5 work to CheckpointShards.cpp.
#include "io/Checkpoint.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <climits>
#include <cstring>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <vector>

#include "core/util/Check.h"
#include "core/util/Env.h"
#include "core/util/Logging.h"
#include "parallel/comm/Communicator.h"
#include "parallel/data/DistributedRuntime.h"
#include "io/CheckpointShards.h"
#include "io/Sha256.h"

namespace fs = std::filesystem;
using nlohmann::json;

namespace loom::io {

namespace {

constexpr const char* kSingleFile = "tensors.h5";
constexpr const char* kMetaFile = "meta.json";

[[noreturn]] void fail(const std::string& msg) { detail::checkpoint_fail(msg); }

std::string rank_file_name(int rank) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "tensors-r%05d.h5", rank);
  return buf;
}

void fsync_path(const std::string& path, bool directory) {
  int fd = ::open(path.c_str(), directory ? O_RDONLY | O_DIRECTORY : O_RDONLY);
  if (fd < 0) fail("cannot open " + path + " to flush it");
  int rc = ::fsync(fd);
  ::close(fd);
  if (rc != 0) fail("fsync failed for " + path);
}

void write_text(const std::string& path, const std::string& text) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f << text;
  f.close();
  if (!f) fail("cannot write " + path);
  fsync_path(path, false);
}

std::string read_text(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) fail("cannot read " + path);
  std::ostringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

json read_manifest(const std::string& dir) {
  std::string path = dir + "/MANIFEST.json";
  if (!fs::exists(path)) fail(path + " is missing (incomplete checkpoint)");
  json m;
  try {
    m = json::parse(read_text(path));
  } catch (const json::exception& e) {
    fail(path + " is not valid JSON: " + e.what());
  }
  if (!m.is_object() || m.value("format", "") != kCheckpointFormat)
    fail(path + ": expected format \"" + kCheckpointFormat + "\", got " +
         (m.is_object() && m.contains("format") ? m["format"].dump() : "none"));
  int version = m.value("version", -1);
  if (version < 1 || version > kCheckpointVersion)
    fail(path + ": expected version 1 to " + std::to_string(kCheckpointVersion) + ", got " +
         std::to_string(version) +
         (version > kCheckpointVersion ? " (written by a newer Loom)" : ""));
  if (!m.contains("files") || !m["files"].is_object()) fail(path + ": no \"files\" table");
  return m;
}

// The tensor files a manifest must list: tensors.h5, or one file per rank of the saving world.
std::vector<std::string> tensor_files(const json& m, const std::string& dir) {
  std::vector<std::string> names;
  if (m.contains("world_size")) {
    int64_t n = m["world_size"].is_number_integer() ? m["world_size"].get<int64_t>() : -1;
    if (n < 1 || n > 1000000)
      fail(dir + "/MANIFEST.json: expected world_size >= 1, got " + m["world_size"].dump());
    for (int r = 0; r < int(n); ++r) names.push_back(rank_file_name(r));
  } else {
    names.push_back(kSingleFile);
  }
  for (const std::string& f : names)
    if (!m["files"].contains(f)) fail(dir + "/MANIFEST.json does not list " + f);
  if (!m["files"].contains(kMetaFile)) fail(dir + "/MANIFEST.json does not list " + kMetaFile);
  return names;
}

// Sizes only (cheap): used when scanning for the newest complete checkpoint.
bool sizes_match(const std::string& dir, const json& m) {
  for (const auto& [name, info] : m["files"].items()) {
    std::error_code ec;
    auto size = fs::file_size(dir + "/" + name, ec);
    if (ec || size != info.value("bytes", uint64_t(0))) return false;
  }
  return true;
}

json file_entry(const std::string& path) {
  return {{"bytes", fs::file_size(path)}, {"sha256", sha256_file(path)}};
}

json new_manifest(int64_t step, int version) {
  return {{"format", kCheckpointFormat},
          {"version", version},
          {"step", step},
          {"files", json::object()}};
}

// Creates an empty temporary directory for `step` under root and returns it.
std::string make_temp_dir(const std::string& root, int64_t step) {
  LOOM_CHECK_T(CheckpointError, step >= 0, "checkpoint: expected step >= 0, got ", step);
  fs::create_directories(root);
  std::string tmp = root + "/" + checkpoint_dir_name(step) + ".tmp-" + std::to_string(::getpid());
  fs::remove_all(tmp);
  fs::create_directories(tmp);
  return tmp;
}

void write_meta(const std::string& path, const Checkpoint& ckpt) {
  json meta(ckpt.meta);
  meta["step"] = std::to_string(ckpt.step);
  write_text(path, meta.dump(1));
}

void prune(const std::string& root, int keep_last) {
  std::vector<std::string> complete;
  for (const auto& e : fs::directory_iterator(root)) {
    std::string n = e.path().filename().string();
    if (e.is_directory() && n.rfind("step_", 0) == 0 && n.find(".tmp") == std::string::npos)
      complete.push_back(n);
  }
  std::sort(complete.begin(), complete.end());
  for (size_t i = 0; i + size_t(keep_last) < complete.size(); ++i)
    fs::remove_all(root + "/" + complete[i]);
}

// Writes the manifest into the complete temporary directory, renames it to its final name, moves
// `latest` and prunes; returns the final directory.
std::string publish(const std::string& root, const std::string& tmp, const json& manifest,
                    int64_t step, int keep_last) {
  write_text(tmp + "/MANIFEST.json", manifest.dump(1));
  fsync_path(tmp, true);
  std::string final_dir = root + "/" + checkpoint_dir_name(step);
  fs::remove_all(final_dir);  // an older save of the same step
  fs::rename(tmp, final_dir);
  fsync_path(root, true);
  write_text(root + "/latest.tmp", checkpoint_dir_name(step) + "\n");
  fs::rename(root + "/latest.tmp", root + "/latest");
  fsync_path(root, true);
  if (keep_last > 0) prune(root, keep_last);
  return final_dir;
}

// Removes the temporary directory on scope exit unless released (rank 0 of a collective save).
struct TempDirGuard {
  std::string path;
  ~TempDirGuard() {
    std::error_code ec;
    if (!path.empty()) fs::remove_all(path, ec);
  }
};

// What each rank reports after writing its file: exchanged as raw int64s by one all-gather.
struct RankReport {
  static constexpr int64_t kWords = 11;  // failed, step, bytes, 64 hex digits of SHA-256
  int64_t failed = 1, step = -1, bytes = 0;
  std::string sha256;

  Tensor pack() const {
    std::vector<int64_t> w(size_t(kWords), 0);
    w[0] = failed;
    w[1] = step;
    w[2] = bytes;
    std::memcpy(&w[3], sha256.data(), std::min<size_t>(sha256.size(), 64));
    return Tensor::from_vector(w, {kWords});
  }
  static RankReport unpack(const int64_t* w) {
    RankReport r;
    r.failed = w[0];
    r.step = w[1];
    r.bytes = w[2];
    r.sha256.assign(reinterpret_cast<const char*>(&w[3]), 64);
    return r;
  }
};

// Writes this rank's tensor file (and meta.json on rank 0); never throws: errors go to `error`.
RankReport write_rank_part(const std::string& tmp, const Checkpoint& ckpt, Communicator& world,
                           std::string& error) {
  RankReport rep;
  rep.step = ckpt.step;
  try {
    const int rank = world.rank();
    const int world_rank = world.world_ranks()[size_t(rank)];
    const bool kill = env::get_int(env::kTestKillRankInSave, -1, -1, INT_MAX) == world_rank;
    static const std::map<std::string, Tensor> kNone;
    std::string path = tmp + "/" + rank_file_name(rank);
    detail::write_tensor_file(path, rank == 0 ? ckpt.tensors : kNone, ckpt.pieces, kill);
    if (rank == 0) write_meta(tmp + "/" + kMetaFile, ckpt);
    rep.bytes = int64_t(fs::file_size(path));
    rep.sha256 = sha256_file(path);
    rep.failed = 0;
  } catch (const std::exception& e) {
    error = e.what();
  }
  return rep;
}

// Rank 0, after every rank reported success: the manifest of the collective save.
json collective_manifest(const std::string& tmp, const std::vector<RankReport>& reps,
                         int64_t step) {
  json m = new_manifest(step, kCheckpointVersion);
  m["world_size"] = reps.size();
  for (size_t r = 0; r < reps.size(); ++r) {
    if (reps[r].step != step)
      fail("collective save: rank " + std::to_string(r) + " saved step " +
           std::to_string(reps[r].step) + " but rank 0 saved step " + std::to_string(step));
    std::string name = rank_file_name(int(r));
    std::error_code ec;
    uint64_t seen = fs::file_size(tmp + "/" + name, ec);
    if (ec || seen != uint64_t(reps[r].bytes))
      fail("collective save: rank " + std::to_string(r) + " wrote " +
           std::to_string(reps[r].bytes) + " bytes to " + tmp + "/" + name + " but rank 0 sees " +
           (ec ? "no file" : std::to_string(seen)) +
           " (is the checkpoint directory on a filesystem every rank shares?)");
    m["files"][name] = {{"bytes", reps[r].bytes}, {"sha256", reps[r].sha256}};
  }
  m["files"][kMetaFile] = file_entry(tmp + "/" + kMetaFile);
  return m;
}

}  // namespace

std::string checkpoint_dir_name(int64_t step) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "step_%08lld", static_cast<long long>(step));
  return buf;
}

std::string save_checkpoint(const std::string& root, const Checkpoint& ckpt, int keep_last) {
  TempDirGuard guard{make_temp_dir(root, ckpt.step)};
  const std::string& tmp = guard.path;
  detail::write_tensor_file(tmp + "/" + kSingleFile, ckpt.tensors, ckpt.pieces, false);
  write_meta(tmp + "/" + kMetaFile, ckpt);
  json manifest = new_manifest(ckpt.step, ckpt.pieces.empty() ? 1 : kCheckpointVersion);
  for (const char* f : {kSingleFile, kMetaFile}) manifest["files"][f] = file_entry(tmp + "/" + f);
  std::string final_dir = publish(root, tmp, manifest, ckpt.step, keep_last);
  guard.path.clear();
  return final_dir;
}

std::string save_checkpoint(const std::string& root, const Checkpoint& ckpt, int keep_last,
                            Communicator& world) {
  const int rank = world.rank(), n = world.size();
  TempDirGuard guard;  // rank 0 only: removes the temporary directory on any failure
  std::string tmp;
  if (rank == 0) {
    try {
      tmp = guard.path = make_temp_dir(root, ckpt.step);
    } catch (const std::exception& e) {
      tmp = std::string("!") + e.what();
    }
  }
  tmp = dist::broadcast_string(world, tmp, 0);
  if (!tmp.empty() && tmp[0] == '!') throw CheckpointError(tmp.substr(1));
  std::string error;
  Tensor all = Tensor::empty({RankReport::kWords * n}, DType::I64);
  world.all_gather(all, write_rank_part(tmp, ckpt, world, error).pack());
  std::vector<RankReport> reps;
  std::vector<int> failed;
  for (int r = 0; r < n; ++r) {
    reps.push_back(RankReport::unpack(all.data<int64_t>() + r * RankReport::kWords));
    if (reps.back().failed) failed.push_back(r);
  }
  if (!error.empty()) throw CheckpointError(error);
  if (!failed.empty())
    fail("collective save of step " + std::to_string(ckpt.step) + " failed on rank(s) " +
         format_ranks(failed) + " (see their errors); the previous checkpoint stays the latest");
  std::string result;
  if (rank == 0) {
    try {
      result = publish(root, tmp, collective_manifest(tmp, reps, ckpt.step), ckpt.step, keep_last);
      guard.path.clear();
    } catch (const std::exception& e) {
      result = std::string("!") + e.what();
    }
  }
  result = dist::broadcast_string(world, result, 0);
  if (!result.empty() && result[0] == '!') throw CheckpointError(result.substr(1));
  return result;
}

std::string find_latest_checkpoint(const std::string& root) {
  if (!fs::is_directory(root)) return "";
  std::vector<std::string> dirs;
  for (const auto& e : fs::directory_iterator(root)) {
    std::string n = e.path().filename().string();
    if (!e.is_directory() || n.rfind("step_", 0) != 0) continue;
    if (n.find(".tmp") != std::string::npos) {
      LOG(WARN) << "checkpoint: ignoring incomplete checkpoint " << e.path().string();
      continue;
    }
    dirs.push_back(n);
  }
  std::sort(dirs.rbegin(), dirs.rend());
  for (const std::string& n : dirs) {
    std::string dir = root + "/" + n;
    try {
      json m = read_manifest(dir);
      tensor_files(m, dir);
      if (sizes_match(dir, m)) return dir;
      LOG(WARN) << "checkpoint: ignoring " << dir << " (file sizes disagree with its manifest)";
    } catch (const CheckpointError& e) {
      LOG(WARN) << "checkpoint: ignoring " << dir << ": " << e.what();
    }
  }
  return "";
}

namespace {

// verify_checkpoint's work; returns the tensor file paths.
std::vector<std::string> verify_files(const std::string& dir) {
  json m = read_manifest(dir);
  std::vector<std::string> paths;
  for (const std::string& f : tensor_files(m, dir)) paths.push_back(dir + "/" + f);
  for (const auto& [name, info] : m["files"].items()) {
    std::string p = dir + "/" + name;
    std::error_code ec;
    uint64_t size = fs::file_size(p, ec);
    if (ec) fail(p + " is missing");
    uint64_t want = info.value("bytes", uint64_t(0));
    if (size != want)
      fail(p + ": expected " + std::to_string(want) + " bytes, got " + std::to_string(size) +
           " (truncated or modified)");
    std::string hash = sha256_file(p), want_hash = info.value("sha256", "");
    if (hash != want_hash)
      fail(p + ": expected sha256 " + want_hash + ", got " + hash + " (corrupt)");
  }
  return paths;
}

}  // namespace

void verify_checkpoint(const std::string& dir) { verify_files(dir); }

Checkpoint load_checkpoint(const std::string& dir) {
  std::vector<std::string> paths = verify_files(dir);
  Checkpoint ck;
  ck.tensors = detail::assemble_tensor_files(paths);
  json meta;
  try {
    meta = json::parse(read_text(dir + "/" + kMetaFile));
  } catch (const json::exception& e) {
    fail(dir + "/meta.json is not valid JSON: " + e.what());
  }
  for (const auto& [k, v] : meta.items()) {
    if (k == "step") continue;
    ck.meta[k] = v.is_string() ? v.get<std::string>() : v.dump();
  }
  ck.step = std::stoll(meta.value("step", "0"));
  return ck;
}

}  // namespace loom::io
