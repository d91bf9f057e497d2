// Checkpoints on disk. A checkpoint is a directory <root>/step_<NNNNNNNN>/ holding
//   tensors.h5     every logical (unsharded) tensor by name, e.g. "model/wte.weight",
//                  "optim/exp_avg/wte.weight"
//   meta.json      small state: step, RNG, data-loader position, resolved config, ...
//   MANIFEST.json  format, version, step, and the size + SHA-256 of every file above
// It is written under a temporary name, flushed (fsync), and renamed only when complete; the file
// <root>/latest moves last. Loading verifies the manifest first and returns nothing partial, so a
// corrupt or truncated checkpoint changes nothing.
//   save_checkpoint("out/ckpt", ck, /*keep_last=*/3);
//   std::string dir = find_latest_checkpoint("out/ckpt");   // "" if none
//   Checkpoint back = load_checkpoint(dir);
#pragma once

#include <cstdint>
#include <map>
#include <string>

#include "core/tensor/Tensor.h"

namespace loom::train {

inline constexpr int kCheckpointVersion = 1;
inline constexpr const char* kCheckpointFormat = "loom-checkpoint";

struct Checkpoint {
  int64_t step = 0;
  std::map<std::string, Tensor> tensors;     // logical name -> tensor (any device; saved from CPU)
  std::map<std::string, std::string> meta;   // name -> string value (JSON or pbtxt text)
};

std::string checkpoint_dir_name(int64_t step);  // "step_00000020"

// Writes the checkpoint atomically and returns its directory. keep_last > 0 deletes older complete
// checkpoints beyond the newest keep_last.
std::string save_checkpoint(const std::string& root, const Checkpoint& ckpt, int keep_last = 0);

// The newest complete checkpoint directory under root, or "" if there is none. Directories that are
// incomplete (no manifest, sizes that disagree, temporary names) are skipped with a warning.
std::string find_latest_checkpoint(const std::string& root);

// Verifies format, version and every file's size and SHA-256; throws CheckpointError naming the
// file and the expected vs actual value.
void verify_checkpoint(const std::string& dir);

// verify_checkpoint + read every tensor and meta entry.
Checkpoint load_checkpoint(const std::string& dir);

}  // namespace loom::train
