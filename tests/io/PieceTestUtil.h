// Shared by the piece-reading tests (CheckpointReaderTest, HfReaderTest): every kind of piece a
// layout asks of a tensor, and a bitwise comparison.
#pragma once

#include <gtest/gtest.h>

#include <cstring>
#include <string>
#include <vector>

#include "core/nn/ShardSpec.h"

namespace loom::test {

// Whole, and for each of `size` ranks: rows, stacked qkv rows (3 blocks), split dim 1 and an
// uneven row range, where the shape divides.
inline std::vector<ShardSpec> pieces_of(const Shape& shape, int size) {
  std::vector<ShardSpec> out = {ShardSpec::whole(shape)};
  for (int r = 0; r < size; ++r) {
    if (shape[0] % size == 0) out.push_back(ShardSpec::split(shape, 0, r, size));
    if (shape[0] % (3 * size) == 0) out.push_back(ShardSpec::rows(shape, 3, r, size));
    if (shape.size() > 1 && shape[1] % size == 0)
      out.push_back(ShardSpec::split(shape, 1, r, size));
    out.push_back(ShardSpec::row_range(shape, r * shape[0] / size, (r + 1) * shape[0] / size));
  }
  return out;
}

inline void expect_bitwise(const Tensor& got, const Tensor& want, const std::string& what) {
  ASSERT_EQ(got.dtype(), want.dtype()) << what;
  ASSERT_EQ(got.shape(), want.shape()) << what;
  Tensor g = got.contiguous(), w = want.contiguous();
  EXPECT_EQ(std::memcmp(g.raw_data(), w.raw_data(), w.nbytes()), 0) << what;
}

}  // namespace loom::test
