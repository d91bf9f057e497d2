// Checkpoints on disk. A checkpoint is a directory <root>/step_<NNNNNNNN>/ holding
//   tensors.h5 (single writer) or tensors-rNNNNN.h5 (collective save: each rank's pieces only,
//                  each dataset with its ShardSpec) -- tensors by name, e.g. "model/wte.weight"
//   meta.json      small state: step, RNG, data-loader position, resolved config, ...
//   MANIFEST.json  format, version, step, world size, and the size + SHA-256 of every file
// It is written under a temporary name, flushed (fsync), and renamed only when complete; the file
// <root>/latest moves last. Loading verifies the manifest, rebuilds every logical tensor from its
// pieces (any layout loads any other's save) and returns nothing partial.
//   save_checkpoint("out/ckpt", ck, /*keep_last=*/3);   // or (..., 3, world) on every rank
//   Checkpoint back = load_checkpoint(find_latest_checkpoint("out/ckpt"));
#pragma once

#include <cstdint>
#include <map>
#include <string>

#include "core/tensor/Tensor.h"
#include "core/nn/ShardSpec.h"

namespace loom {
class Communicator;
}

namespace loom::io {

// Version 1: one tensors.h5 of whole tensors. Version 2: pieces with ShardSpecs, in tensors.h5
// and/or tensors-rNNNNN.h5. Readers accept both; a plain single-writer save still writes version 1.
inline constexpr int kCheckpointVersion = 2;
inline constexpr const char* kCheckpointFormat = "loom-checkpoint";

// One rank's part of a logical tensor: tensor has shape spec.local_shape().
struct CheckpointPiece {
  Tensor tensor;
  ShardSpec spec;
};

struct Checkpoint {
  int64_t step = 0;
  std::map<std::string, Tensor> tensors;     // logical name -> tensor (any device; saved from CPU)
  std::map<std::string, std::string> meta;   // name -> string value (JSON or pbtxt text)
  // Pieces this rank writes (collective save: any rank). A replicated tensor must be written by
  // exactly one rank (writers dedupe; two whole pieces of one name are an overlap on load).
  // Empty after load_checkpoint, which assembles every piece into `tensors`.
  std::map<std::string, CheckpointPiece> pieces;
};

std::string checkpoint_dir_name(int64_t step);  // "step_00000020"

// Writes the checkpoint atomically and returns its directory. keep_last > 0 deletes older complete
// checkpoints beyond the newest keep_last. `tensors` and `pieces` go into one tensors.h5.
std::string save_checkpoint(const std::string& root, const Checkpoint& ckpt, int keep_last = 0);

// Collective over `world` (every rank calls it with the same root, step and keep_last): rank 0
// creates the temporary directory and broadcasts its name; every rank writes its `pieces` (rank 0
// also `tensors`; `meta` is taken from rank 0 only) into tensors-r<rank>.h5, fsyncs and hashes it;
// an all-gather of (error flag, size, SHA-256) under the communicator deadline tells every rank
// whether every write succeeded. Then rank 0 writes MANIFEST.json, renames, moves `latest` and
// prunes, and every rank returns the final directory. A rank that fails throws CheckpointError on
// every rank; a rank that dies makes the others throw CommTimeout. Either way the temporary
// directory is never renamed and the previous checkpoint stays the latest.
// Fault-injection hook for tests: if LOOM_TEST_KILL_RANK_IN_SAVE=<world rank> is set, that rank
// calls std::_Exit(9) after writing half of its datasets (multi-process "killed mid-save" test).
std::string save_checkpoint(const std::string& root, const Checkpoint& ckpt, int keep_last,
                            Communicator& world);

// The newest complete checkpoint directory under root, or "" if there is none. Directories that are
// incomplete (no manifest, sizes that disagree, temporary names) are skipped with a warning.
std::string find_latest_checkpoint(const std::string& root);

// Verifies format, version and every file's size and SHA-256; throws CheckpointError naming the
// file and the expected vs actual value.
void verify_checkpoint(const std::string& dir);

// verify_checkpoint + read every tensor file and meta entry; assembles each logical tensor from its
// pieces (whatever layout saved it) into `tensors`. Throws CheckpointError naming the file and the
// tensor when pieces disagree on shape or dtype, overlap, or leave elements uncovered.
Checkpoint load_checkpoint(const std::string& dir);

}  // namespace loom::io
