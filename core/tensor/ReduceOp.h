// ReduceOp: how values are combined, by a reduction kernel (sum / max / min over a dimension) and by
// a collective over ranks (all_reduce, reduce_scatter). One enum for both, so a reduction chosen
// in one place means the same everywhere.
#pragma once

#include <cstdint>

namespace loom {

enum class ReduceOp : uint8_t { Sum, Max, Min };

inline const char* reduce_op_name(ReduceOp op) {
  return op == ReduceOp::Sum ? "sum" : op == ReduceOp::Max ? "max" : "min";
}

}  // namespace loom
