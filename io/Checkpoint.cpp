// Checkpoint directories (see Checkpoint.h), the saving side: the temporary-directory / fsync /
// rename protocol, the manifest and the collective save (two tensor files per rank, success agreed
// by an all-gather). Loading is CheckpointReader.cpp, the HDF5 work CheckpointShards.cpp, the
// checkpoint root (latest, write order, pruning) CheckpointLineage.cpp.
#include "io/Checkpoint.h"

#include <unistd.h>

#include <algorithm>
#include <climits>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <vector>

#include "core/util/Check.h"
#include "core/util/Env.h"
#include "core/util/Logging.h"
#include "io/CheckpointLineage.h"
#include "io/CheckpointShards.h"
#include "io/Sha256.h"
#include "parallel/comm/Communicator.h"
#include "parallel/data/DistributedRuntime.h"

namespace fs = std::filesystem;

namespace loom::io {

namespace {

using detail::kMetaFile;
constexpr const char* kModelPrefix = "model/";

[[noreturn]] void fail(const std::string& msg) { detail::checkpoint_fail(msg); }

// The two tensor files of one writer: "model/" names, then every other name.
struct FileNames {
  std::string model, rest;
};

FileNames tensor_file_names(int rank) {  // rank < 0: the single writer
  if (rank < 0) return {"model.h5", "tensors.h5"};
  char m[32], r[32];
  std::snprintf(m, sizeof(m), "model-r%05d.h5", rank);
  std::snprintf(r, sizeof(r), "tensors-r%05d.h5", rank);
  return {m, r};
}

bool is_model(const std::string& name) { return name.rfind(kModelPrefix, 0) == 0; }

bool must_be_finite(const std::string& name) {
  return is_model(name) || name.rfind("optim/", 0) == 0;
}

ManifestFile file_entry(const std::string& path) {
  return {uint64_t(fs::file_size(path)), sha256_file(path)};
}

// Writes the writer's two tensor files into dir; kill_halfway is the test hook (Checkpoint.h).
void write_tensor_files(const std::string& dir, const FileNames& names,
                        const std::map<std::string, Tensor>& whole,
                        const std::map<std::string, CheckpointPiece>& pieces, bool kill_halfway,
                        const SaveOptions& opts) {
  std::map<std::string, Tensor> whole_m, whole_r;
  std::map<std::string, CheckpointPiece> pieces_m, pieces_r;
  for (const auto& [n, t] : whole) (is_model(n) ? whole_m : whole_r)[n] = t;
  for (const auto& [n, p] : pieces) (is_model(n) ? pieces_m : pieces_r)[n] = p;
  detail::FiniteCheck finite = opts.allow_non_finite ? nullptr : must_be_finite;
  detail::write_tensor_file(dir + "/" + names.model, whole_m, pieces_m, kill_halfway, finite);
  detail::write_tensor_file(dir + "/" + names.rest, whole_r, pieces_r, false, finite);
}

// Creates an empty temporary directory for `step` under root and returns it.
std::string make_temp_dir(const std::string& root, int64_t step) {
  LOOM_CHECK_T(CheckpointError, step >= 0, "checkpoint: expected step >= 0, got ", step);
  std::error_code ec;
  fs::create_directories(root, ec);
  if (ec) fail("cannot create checkpoint directory " + root + ": " + ec.message());
  std::string tmp = root + "/" + checkpoint_dir_name(step) + ".tmp-" + std::to_string(::getpid());
  fs::remove_all(tmp, ec);
  fs::create_directories(tmp, ec);
  if (ec) fail("cannot create " + tmp + ": " + ec.message());
  return tmp;
}

void write_meta(const std::string& path, const Checkpoint& ckpt) {
  CheckpointMeta m{ckpt.step, ckpt.meta};
  std::string text;
  try {
    text = meta_json(m);
  } catch (const std::exception& e) {  // a meta entry that is not valid UTF-8
    fail("cannot write " + path + ": " + e.what());
  }
  detail::write_text(path, text);
}

// Copies the run's tokenizer files into dir; returns the names copied.
std::vector<std::string> copy_tokenizer(const TokenizerFiles& t, const std::string& dir) {
  std::vector<std::string> names;
  const std::pair<const std::string*, const char*> files[] = {
      {&t.vocab_json, "vocab.json"},
      {&t.merges_txt, "merges.txt"},
      {&t.tokenizer_json, "tokenizer.json"},
      {&t.tokenizer_config_json, "tokenizer_config.json"}};
  for (const auto& [src, name] : files) {
    if (src->empty()) continue;
    std::error_code ec;
    fs::copy_file(*src, dir + "/" + name, fs::copy_options::overwrite_existing, ec);
    if (ec) fail("cannot copy tokenizer file " + *src + " into " + dir + ": " + ec.message());
    detail::fsync_path(dir + "/" + name, false);
    names.push_back(name);
  }
  return names;
}

// Writes the manifest into the complete temporary directory, renames it to its final name, moves
// `latest`, prunes and removes stale temporary directories; returns the final directory.
std::string publish(const std::string& root, const std::string& tmp, Manifest manifest,
                    int keep_last) {
  manifest.sequence = detail::next_sequence(root);
  detail::write_text(tmp + "/MANIFEST.json", manifest_json(manifest));
  detail::fsync_path(tmp, true);
  const std::string name = checkpoint_dir_name(manifest.step);
  const std::string final_dir = root + "/" + name;
  // An older save of the same step moves aside first, so a crash leaves one complete directory.
  const std::string old = final_dir + ".del-" + std::to_string(::getpid());
  std::error_code ec;
  if (fs::exists(final_dir)) fs::rename(final_dir, old, ec);
  if (ec) fail("cannot replace " + final_dir + ": " + ec.message());
  fs::rename(tmp, final_dir, ec);
  if (ec) fail("cannot rename " + tmp + " to " + final_dir + ": " + ec.message());
  detail::fsync_path(root, true);
  detail::write_text(root + "/latest.tmp", name + "\n");
  fs::rename(root + "/latest.tmp", root + "/latest", ec);
  if (ec) fail("cannot move " + root + "/latest: " + ec.message());
  detail::fsync_path(root, true);
  fs::remove_all(old, ec);
  if (keep_last > 0) detail::prune_lineage(root, name, keep_last);
  detail::remove_stale_temp_dirs(root);
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

// What each rank reports after writing its files: exchanged as raw int64s by one all-gather.
struct RankReport {
  static constexpr int64_t kWords = 20;  // status, step, 2 sizes, 2 x 64 hex digits of SHA-256
  enum Status : int64_t { kOk = 0, kFailed = 1, kNonFinite = 2 };
  int64_t status = kFailed, step = -1;
  ManifestFile model, rest;

  Tensor pack() const {
    std::vector<int64_t> w(size_t(kWords), 0);
    w[0] = status;
    w[1] = step;
    w[2] = int64_t(model.bytes);
    w[3] = int64_t(rest.bytes);
    std::memcpy(&w[4], model.sha256.data(), std::min<size_t>(model.sha256.size(), 64));
    std::memcpy(&w[12], rest.sha256.data(), std::min<size_t>(rest.sha256.size(), 64));
    return Tensor::from_vector(w, {kWords});
  }
  static RankReport unpack(const int64_t* w) {
    RankReport r;
    r.status = w[0];
    r.step = w[1];
    r.model.bytes = uint64_t(w[2]);
    r.rest.bytes = uint64_t(w[3]);
    r.model.sha256.assign(reinterpret_cast<const char*>(&w[4]), 64);
    r.rest.sha256.assign(reinterpret_cast<const char*>(&w[12]), 64);
    return r;
  }
};

// Writes this rank's tensor files (and meta.json + tokenizer on rank 0); never throws: errors go
// to `error`.
RankReport write_rank_part(const std::string& tmp, const Checkpoint& ckpt, const SaveOptions& opts,
                           Communicator& world, std::string& error) {
  RankReport rep;
  rep.step = ckpt.step;
  try {
    const int rank = world.rank();
    const int world_rank = world.world_ranks()[size_t(rank)];
    const bool kill = env::get_int(env::kTestKillRankInSave, -1, -1, INT_MAX) == world_rank;
    static const std::map<std::string, Tensor> kNone;
    const FileNames names = tensor_file_names(rank);
    write_tensor_files(tmp, names, rank == 0 ? ckpt.tensors : kNone, ckpt.pieces, kill, opts);
    if (rank == 0) {
      write_meta(tmp + "/" + kMetaFile, ckpt);
      copy_tokenizer(ckpt.tokenizer, tmp);
    }
    rep.model = file_entry(tmp + "/" + names.model);
    rep.rest = file_entry(tmp + "/" + names.rest);
    rep.status = RankReport::kOk;
  } catch (const NonFiniteError& e) {
    rep.status = RankReport::kNonFinite;
    error = e.what();
  } catch (const std::exception& e) {
    error = e.what();
  }
  return rep;
}

// Rank 0, after every rank reported success: the manifest of the collective save.
Manifest collective_manifest(const std::string& tmp, const std::vector<RankReport>& reps,
                             const Checkpoint& ckpt) {
  Manifest m;
  m.step = ckpt.step;
  m.world_size = int64_t(reps.size());
  for (size_t r = 0; r < reps.size(); ++r) {
    if (reps[r].step != ckpt.step)
      fail("collective save: rank " + std::to_string(r) + " saved step " +
           std::to_string(reps[r].step) + " but rank 0 saved step " + std::to_string(ckpt.step));
    const FileNames names = tensor_file_names(int(r));
    for (const auto& [name, entry] :
         {std::pair{names.model, reps[r].model}, std::pair{names.rest, reps[r].rest}}) {
      std::error_code ec;
      uint64_t seen = fs::file_size(tmp + "/" + name, ec);
      if (ec || seen != entry.bytes)
        fail("collective save: rank " + std::to_string(r) + " wrote " +
             std::to_string(entry.bytes) + " bytes to " + tmp + "/" + name + " but rank 0 sees " +
             (ec ? "no file" : std::to_string(seen)) +
             " (is the checkpoint directory on a filesystem every rank shares?)");
      m.files[name] = entry;
    }
    m.tensor_groups[kModelPrefix].push_back(names.model);
    m.tensor_groups[""].push_back(names.rest);
  }
  m.files[kMetaFile] = file_entry(tmp + "/" + kMetaFile);
  for (const char* n : kTokenizerFileNames)
    if (fs::exists(tmp + "/" + n)) {
      m.files[n] = file_entry(tmp + "/" + n);
      m.tokenizer_files.push_back(n);
    }
  return m;
}

}  // namespace

std::string checkpoint_dir_name(int64_t step) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "step_%08lld", static_cast<long long>(step));
  return buf;
}

std::string save_checkpoint(const std::string& root, const Checkpoint& ckpt,
                            const SaveOptions& opts) {
  TempDirGuard guard{make_temp_dir(root, ckpt.step)};
  const std::string& tmp = guard.path;
  const FileNames names = tensor_file_names(-1);
  write_tensor_files(tmp, names, ckpt.tensors, ckpt.pieces, false, opts);
  write_meta(tmp + "/" + kMetaFile, ckpt);
  Manifest m;
  m.step = ckpt.step;
  m.tokenizer_files = copy_tokenizer(ckpt.tokenizer, tmp);
  for (const std::string& f : m.tokenizer_files) m.files[f] = file_entry(tmp + "/" + f);
  for (const std::string& f : {names.model, names.rest, std::string(kMetaFile)})
    m.files[f] = file_entry(tmp + "/" + f);
  m.tensor_groups = {{kModelPrefix, {names.model}}, {"", {names.rest}}};
  std::string final_dir = publish(root, tmp, m, opts.keep_last);
  guard.path.clear();
  return final_dir;
}

std::string save_checkpoint(const std::string& root, const Checkpoint& ckpt, int keep_last) {
  return save_checkpoint(root, ckpt, SaveOptions{keep_last});
}

std::string save_checkpoint(const std::string& root, const Checkpoint& ckpt, int keep_last,
                            Communicator& world) {
  return save_checkpoint(root, ckpt, SaveOptions{keep_last}, world);
}

std::string save_checkpoint(const std::string& root, const Checkpoint& ckpt,
                            const SaveOptions& opts, Communicator& world) {
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
  RankReport mine = write_rank_part(tmp, ckpt, opts, world, error);
  Tensor all = Tensor::empty({RankReport::kWords * n}, DType::I64);
  world.all_gather(all, mine.pack());
  std::vector<RankReport> reps;
  std::vector<int> failed, non_finite;
  for (int r = 0; r < n; ++r) {
    reps.push_back(RankReport::unpack(all.data<int64_t>() + r * RankReport::kWords));
    if (reps.back().status != RankReport::kOk) failed.push_back(r);
    if (reps.back().status == RankReport::kNonFinite) non_finite.push_back(r);
  }
  if (mine.status == RankReport::kNonFinite) throw NonFiniteError(error);
  if (!non_finite.empty())
    throw NonFiniteError("checkpoint: refused to save step " + std::to_string(ckpt.step) +
                         ": non-finite values on rank(s) " + format_ranks(non_finite) +
                         " (see their errors); the previous checkpoint stays the latest");
  if (!error.empty()) throw CheckpointError(error);
  if (!failed.empty())
    fail("collective save of step " + std::to_string(ckpt.step) + " failed on rank(s) " +
         format_ranks(failed) + " (see their errors); the previous checkpoint stays the latest");
  std::string result;
  if (rank == 0) {
    try {
      result = publish(root, tmp, collective_manifest(tmp, reps, ckpt), opts.keep_last);
      guard.path.clear();
    } catch (const std::exception& e) {
      result = std::string("!") + e.what();
    }
  }
  result = dist::broadcast_string(world, result, 0);
  if (!result.empty() && result[0] == '!') throw CheckpointError(result.substr(1));
  return result;
}

TokenizerFiles tokenizer_files_of(const std::string& vocab_json, const std::string& merges_txt,
                                  const std::string& tokenizer_json) {
  auto existing = [](const std::string& p, const char* what) {
    LOOM_CHECK_T(ConfigError, fs::is_regular_file(p), "checkpoint: the run's ", what, " \"", p,
                 "\" does not exist (or is not a file)");
    return p;
  };
  TokenizerFiles t;
  std::string anchor;
  if (!tokenizer_json.empty()) {
    t.tokenizer_json = existing(tokenizer_json, "data.tokenizer_json");
    anchor = tokenizer_json;
  } else if (!vocab_json.empty() || !merges_txt.empty()) {
    t.vocab_json = existing(vocab_json, "data.tokenizer_vocab");
    t.merges_txt = existing(merges_txt, "data.tokenizer_merges");
    anchor = vocab_json;
  }
  if (!anchor.empty()) {
    fs::path config = fs::path(anchor).parent_path() / "tokenizer_config.json";
    if (fs::is_regular_file(config)) t.tokenizer_config_json = config.string();
  }
  return t;
}

}  // namespace loom::io
