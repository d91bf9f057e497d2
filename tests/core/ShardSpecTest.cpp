// ShardSpec: the piece patterns of the TP layers (stacked qkv rows, row-parallel columns, vocab
// row ranges) round-trip through extract_shard / insert_shard, cover the logical tensor exactly,
// and survive the JSON form checkpoints store.
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

TEST(ShardSpec, PiecesOfEveryPatternRebuildTheTensor) {
  const Shape shape{12, 6};
  Tensor full = iota(shape);
  for (int size : {1, 2, 3}) {
    std::vector<ShardSpec> specs;
    for (int r = 0; r < size; ++r) {
      specs.push_back(ShardSpec::rows(shape, 2, r, size));
      specs.push_back(ShardSpec::split(shape, 1, r, size));
    }
    for (size_t pattern = 0; pattern < 2; ++pattern) {
      Tensor back = Tensor::zeros(shape, DType::F32);
      for (size_t i = pattern; i < specs.size(); i += 2)
        insert_shard(back, extract_shard(full, specs[i]), specs[i]);
      EXPECT_EQ(back.to_vector<float>(), full.to_vector<float>()) << "size " << size;
    }
  }
  Tensor back = Tensor::zeros(shape, DType::F32);
  ShardSpec a = ShardSpec::row_range(shape, 0, 5), b = ShardSpec::row_range(shape, 5, 12);
  insert_shard(back, extract_shard(full, a), a);
  insert_shard(back, extract_shard(full, b), b);
  EXPECT_EQ(back.to_vector<float>(), full.to_vector<float>());
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
  EXPECT_THROW(insert_shard(four, Tensor::zeros({3}, DType::F32), ShardSpec::split({4}, 0, 0, 2)),
               ValueError);
}

}  // namespace
}  // namespace loom
