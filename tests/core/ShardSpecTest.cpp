// ShardSpec: the piece patterns of the TP layers (stacked qkv rows, row-parallel columns, vocab
// row ranges) extract the right elements, their runs say where each element of the piece lies in
// the logical tensor and together cover it exactly, and they survive the JSON form checkpoints
// store.
#include "core/nn/ShardSpec.h"

#include <gtest/gtest.h>

#include "core/util/Check.h"

namespace loom {
namespace {

Tensor iota(const Shape& s) {
  Tensor t = Tensor::arange(shape_numel(s), DType::F32).reshape(s);
  return t.contiguous();
}

TEST(ShardSpec, StackedRowsPickEachBlocksSlice) {
  // (3*4, 2): blocks q, k, v of 4 rows; rank 1 of 2 holds rows 2..3 of each block.
  Tensor full = iota({12, 2});
  ShardSpec s = ShardSpec::rows({12, 2}, 3, 1, 2);
  EXPECT_EQ(s.local_shape(), (Shape{6, 2}));
  std::vector<float> got = extract_shard(full, s).to_vector<float>();
  std::vector<float> want = {4, 5, 6, 7, 12, 13, 14, 15, 20, 21, 22, 23};
  EXPECT_EQ(got, want);
}

// Every element of extract_shard(full, s) sits where shard_runs(s) says; the runs of a layout's
// pieces cover each logical element exactly once.
void expect_runs_tile(const Tensor& full, const std::vector<ShardSpec>& specs) {
  const std::vector<float> flat = full.to_vector<float>();
  std::vector<int> covered(flat.size(), 0);
  for (const ShardSpec& s : specs) {
    const std::vector<float> piece = extract_shard(full, s).to_vector<float>();
    int64_t total = 0;
    for (const ShardRun& r : shard_runs(s)) {
      for (int64_t i = 0; i < r.length; ++i) {
        EXPECT_EQ(piece[size_t(r.local + i)], flat[size_t(r.logical + i)]) << s.str();
        ++covered[size_t(r.logical + i)];
      }
      total += r.length;
    }
    EXPECT_EQ(total, int64_t(piece.size())) << s.str();
  }
  for (size_t i = 0; i < covered.size(); ++i) EXPECT_EQ(covered[i], 1) << "element " << i;
}

TEST(ShardSpec, RunsOfEveryPatternLocateThePieceAndTileTheTensor) {
  const Shape shape{12, 6};
  Tensor full = iota(shape);
  for (int size : {1, 2, 3}) {
    std::vector<ShardSpec> rows, cols;
    for (int r = 0; r < size; ++r) {
      rows.push_back(ShardSpec::rows(shape, 2, r, size));
      cols.push_back(ShardSpec::split(shape, 1, r, size));
    }
    expect_runs_tile(full, rows);
    expect_runs_tile(full, cols);
  }
  expect_runs_tile(full, {ShardSpec::row_range(shape, 0, 5), ShardSpec::row_range(shape, 5, 12)});
  expect_runs_tile(full, {ShardSpec::whole(shape)});
  // Adjacent runs merge: one undivided split is one run; a column split has one run per row.
  EXPECT_EQ(shard_runs(ShardSpec::split(shape, 1, 0, 1)).size(), 1u);
  EXPECT_EQ(shard_runs(ShardSpec::split(shape, 1, 1, 2)).size(), 12u);
  EXPECT_TRUE(shard_runs(ShardSpec::row_range(shape, 4, 4)).empty());
}

TEST(ShardSpec, JsonRoundTripAndErrors) {
  ShardSpec s = ShardSpec::rows({12, 2}, 3, 1, 2);
  EXPECT_EQ(ShardSpec::from_json(s.to_json(), "x"), s);
  EXPECT_EQ(ShardSpec::from_json(ShardSpec::whole({4}).to_json(), "x"), ShardSpec::whole({4}));
  try {
    ShardSpec::from_json("{\"logical\":[4]}", "ck/tensors-r00001.h5:model/wte.weight");
    FAIL() << "expected ValueError";
  } catch (const ValueError& e) {
    EXPECT_NE(std::string(e.what()).find("ck/tensors-r00001.h5:model/wte.weight"),
              std::string::npos);
  }
  EXPECT_THROW(ShardSpec::from_json(
                   "{\"logical\":[4],\"view\":[4],\"dim\":0,\"offset\":3,\"length\":2}", "x"),
               ValueError);
  EXPECT_THROW(ShardSpec::split({5, 2}, 0, 0, 2), ValueError);
  Tensor four = Tensor::zeros({4}, DType::F32);
  EXPECT_THROW(extract_shard(four, ShardSpec::split({6}, 0, 0, 2)), ValueError);
}

}  // namespace
}  // namespace loom
