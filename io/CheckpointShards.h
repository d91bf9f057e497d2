// The HDF5 side of checkpoints (internal to train/): writing one rank's tensor file, where every
// dataset is a logical tensor or a piece of one (its ShardSpec as JSON in the "loom_shard"
// attribute; no attribute = the whole tensor), and reading any set of such files back into the
// logical tensors, checking that the pieces of each name agree on shape and dtype, never overlap
// and cover every element. HDF5 calls are serialised by one process-wide lock, so Fake ranks
// (threads) may write their files concurrently.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "io/Checkpoint.h"

namespace loom::io::detail {

[[noreturn]] void checkpoint_fail(const std::string& msg);  // CheckpointError "checkpoint: msg"

// Writes `whole` (logical tensors) and `pieces` into a new HDF5 file at path and fsyncs it.
// kill_halfway (fault-injection hook): std::_Exit(9) after half of the datasets are written.
void write_tensor_file(const std::string& path, const std::map<std::string, Tensor>& whole,
                       const std::map<std::string, CheckpointPiece>& pieces, bool kill_halfway);

// Reads every dataset of every file and assembles the logical tensors by name, one at a time.
// Throws CheckpointError naming the file(s) and the tensor on disagreeing shapes or dtypes,
// overlapping pieces, or elements no piece covers.
std::map<std::string, Tensor> assemble_tensor_files(const std::vector<std::string>& paths);

}  // namespace loom::io::detail
