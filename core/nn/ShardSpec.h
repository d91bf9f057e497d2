// ShardSpec: where one rank's piece of a logical tensor lives inside it. Layout-free checkpoints
// store these pieces with their specs, and any layout rebuilds the logical tensor from them, so a
// model saved under TP=2 x PP=2 loads under one process or under any other layout.
// The logical tensor is viewed as `view` (same numel; e.g. a fused qkv weight (3C, C) as
// (3, C, C), so that rank r's rows [q_r; k_r; v_r] are one narrow along dim 1); the piece is
// view.narrow(dim, offset, length). dim = -1 means the piece is the whole tensor (replicated).
//   ShardSpec s = ShardSpec::rows({3 * C, C}, /*stacked=*/3, tp_rank, tp);
//   Tensor mine = extract_shard(full, s);      // (3C/tp, C)
//   for (ShardRun r : shard_runs(s)) ...       // where mine's elements lie in full (flat)
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "core/tensor/Tensor.h"

namespace loom {

struct ShardSpec {
  Shape logical;           // shape of the whole tensor
  Shape view;              // logical viewed this way (same numel); equals logical when unstacked
  int dim = -1;            // split dimension of `view`; -1: whole tensor
  int64_t offset = 0;      // first index along dim held by this piece
  int64_t length = 0;      // indices along dim held by this piece

  // The whole tensor.
  static ShardSpec whole(const Shape& logical);
  // Rows (dim 0) of `logical` split into `stacked` equal blocks, each split evenly over `size`
  // ranks; this piece is rank `rank`'s part of every block (stacked = 3 for a fused qkv).
  static ShardSpec rows(const Shape& logical, int64_t stacked, int rank, int size);
  // Dim `dim` of `logical` split evenly over `size` ranks (row-parallel weights: dim 1).
  static ShardSpec split(const Shape& logical, int dim, int rank, int size);
  // Rows [begin, end) of dim 0 (vocab-parallel embedding rows).
  static ShardSpec row_range(const Shape& logical, int64_t begin, int64_t end);

  bool is_whole() const { return dim < 0; }
  Shape local_shape() const;  // the piece's own shape
  std::string str() const;    // e.g. "(96,32) as (3,32,32) dim 1 [8, 16)"
  // JSON text {"logical":[...],"view":[...],"dim":d,"offset":o,"length":l} and back; from_json
  // throws ValueError naming `where` on malformed text.
  std::string to_json() const;
  static ShardSpec from_json(const std::string& text, const std::string& where);
};

bool operator==(const ShardSpec& a, const ShardSpec& b);

// A run of a piece's elements contiguous both in the piece and in the logical tensor (row-major):
// piece elements [local, local + length) are logical elements [logical, logical + length).
struct ShardRun {
  int64_t local, logical, length;
};
// The runs of `spec` in order (both offsets ascending; adjacent runs merged); none for an empty
// piece. Their count is at most the piece's element count.
std::vector<ShardRun> shard_runs(const ShardSpec& spec);

// Contiguous copy of the piece `spec` of `logical` (no autograd). Throws ValueError if
// logical.shape() != spec.logical.
Tensor extract_shard(const Tensor& logical, const ShardSpec& spec);

}  // namespace loom
