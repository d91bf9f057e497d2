// The HDF5 side of checkpoints (internal to io/): writing one rank's tensor file, where every
// dataset is a logical tensor or a piece of one (its ShardSpec as JSON in the "loom_shard"
// attribute; no attribute = the whole tensor), and reading any set of such files back into the
// logical tensors, checking that the pieces of each name agree on shape and dtype, never overlap
// and cover every element. HDF5 calls are serialised by one process-wide lock, so Fake ranks
// (threads) may write their files concurrently.
#pragma once

#include <functional>
#include <map>
#include <string>
#include <vector>

#include "io/Checkpoint.h"

namespace loom::io::detail {

[[noreturn]] void checkpoint_fail(const std::string& msg);  // CheckpointError "checkpoint: msg"

// Which tensor names must hold only finite values (null: none).
using FiniteCheck = std::function<bool(const std::string& name)>;

// Writes `whole` (logical tensors) and `pieces` into a new HDF5 file at path and fsyncs it. A
// floating-point tensor `finite` selects that holds NaN or Inf throws NonFiniteError naming it.
// kill_halfway (fault-injection hook): std::_Exit(9) after half of the datasets are written.
void write_tensor_file(const std::string& path, const std::map<std::string, Tensor>& whole,
                       const std::map<std::string, CheckpointPiece>& pieces, bool kill_halfway,
                       const FiniteCheck& finite = nullptr);

// Reads the datasets of every file whose name `want` accepts (all when empty) and assembles the
// logical tensors by name. Throws CheckpointError naming the file(s) and the tensor on stored
// sizes the file does not back, disagreeing shapes or dtypes, overlapping pieces, or elements no
// piece covers.
std::map<std::string, Tensor> assemble_tensor_files(
    const std::vector<std::string>& paths,
    const std::function<bool(const std::string&)>& want = nullptr);

}  // namespace loom::io::detail
