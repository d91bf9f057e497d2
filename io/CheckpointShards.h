// The HDF5 side of checkpoints (internal to io/): writing one rank's tensor file, where every
// dataset is a logical tensor or a piece of one (its ShardSpec as JSON in the "loom_shard"
// attribute; no attribute = the whole tensor), and indexing any set of such files from their
// metadata: where each piece's raw bytes lie, checking that the pieces of each name agree on shape
// and dtype, never overlap and cover every element (CheckpointReader reads the bytes). HDF5 calls
// are serialised by one process-wide lock, so Fake ranks (threads) may use files concurrently.
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

// One stored piece of a logical tensor and where its raw bytes (row-major, the host's layout) are.
struct StoredPiece {
  size_t file = 0;             // index into the paths given to index_tensor_files
  ShardSpec spec;              // over the logical shape
  int64_t offset = -1;         // byte offset of the data in the file; -1: in `bytes` (or empty)
  std::vector<uint8_t> bytes;  // a compact dataset's data (HDF5 keeps at most 64 KiB so)
};

struct StoredTensor {
  DType dtype = DType::F32;
  Shape shape;  // the logical shape
  std::vector<StoredPiece> pieces;  // they tile the logical tensor exactly
};

// Indexes the datasets of every file whose name `want` accepts (all when empty) by name, from
// metadata only (and the few bytes of compact datasets). Throws CheckpointError naming the file(s)
// and the tensor on storage other than Loom writes (filtered, chunked, foreign byte order), stored
// sizes the file does not back, disagreeing shapes or dtypes, overlapping pieces, or elements no
// piece covers.
std::map<std::string, StoredTensor> index_tensor_files(
    const std::vector<std::string>& paths,
    const std::function<bool(const std::string&)>& want = nullptr);

}  // namespace loom::io::detail
