// cat, stack, split, chunk, index_select, gather: golden values from PyTorch (gen_nn.py ->
// nn.h5), f64 gradcheck (with transposed views and repeated indices), the fast index kernels vs
// the reference kernels, range-check errors, and determinism of the scatter kernels.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "core/backend/Backend.h"
#include "core/backend/cpu/CpuBackend.h"
#include "core/backend/cpu/ref/NnRef.h"
#include "core/ops/Indexing.h"
#include "core/random/Generator.h"
#include "tests/support/Golden.h"
#include "tests/support/GradCheck.h"

namespace loom {
namespace {

using testing::allclose;
using testing::gradcheck;
using testing::GoldenFile;

class IndexingGolden : public ::testing::TestWithParam<std::string> {
 protected:
  GoldenFile g{"nn.h5"};
  std::string p = GetParam();
  Tensor leaf(const std::string& name) { return g.get(p + name).set_requires_grad(true); }
  Tensor get(const std::string& name) { return g.get(p + name); }
};

// These ops only move values (and the backward adds at most 3 copies of one value: the repeated
// indices), so f32 and f64 results are exact up to one rounding: atol 1e-6/1e-12, rtol 0.
double atol_for(const std::string& p) { return p == "f32/" ? 1e-6 : 1e-12; }

TEST_P(IndexingGolden, CatAndStackMatchTorch) {
  Tensor a = leaf("cat/a"), b = leaf("cat/b");
  Tensor y = cat({a, b}, 1);
  EXPECT_TRUE(allclose(y, get("cat/y"), atol_for(p), 0.0));
  y.backward(get("cat/dy"));
  EXPECT_TRUE(allclose(a.grad(), get("cat/da"), atol_for(p), 0.0));
  EXPECT_TRUE(allclose(b.grad(), get("cat/db"), atol_for(p), 0.0));
  Tensor c = leaf("stack/a"), d = leaf("stack/b");
  Tensor s = stack({c, d}, -1);
  EXPECT_TRUE(allclose(s, get("stack/y"), atol_for(p), 0.0));
  s.backward(get("stack/dy"));
  EXPECT_TRUE(allclose(c.grad(), get("stack/da"), atol_for(p), 0.0));
  EXPECT_TRUE(allclose(d.grad(), get("stack/db"), atol_for(p), 0.0));
}

TEST_P(IndexingGolden, GatherAndIndexSelectMatchTorch) {
  Tensor x = leaf("gather/x");
  Tensor y = gather(x, 1, g.get("f64/gather/index"));
  EXPECT_TRUE(allclose(y, get("gather/y"), atol_for(p), 0.0));
  y.backward(get("gather/dy"));
  EXPECT_TRUE(allclose(x.grad(), get("gather/dx"), atol_for(p), 0.0));
  Tensor z = leaf("index_select/x");
  Tensor w = index_select(z, 1, g.get("f64/index_select/index"));
  EXPECT_TRUE(allclose(w, get("index_select/y"), atol_for(p), 0.0));
  w.backward(get("index_select/dy"));
  EXPECT_TRUE(allclose(z.grad(), get("index_select/dx"), atol_for(p), 0.0));
}

INSTANTIATE_TEST_SUITE_P(Dtypes, IndexingGolden, ::testing::Values("f32/", "f64/"),
                         [](const auto& info) { return info.param.substr(0, 3); });

// ---- gradcheck (f64, GradCheck.h defaults) ----------------------------------------------

Tensor rand64(Generator& gen, const Shape& s) {
  return Tensor::randn(s, gen, DType::F64).set_requires_grad(true);
}

TEST(IndexingGradTest, CatStackOfTransposedAndBroadcastInputs) {
  Generator gen(1);
  auto fn = [](const std::vector<Tensor>& in) {
    return cat({in[0].t(), in[1], in[2].expand({3, 2})}, 1);  // (3,2) (3,4) (3,2)
  };
  EXPECT_TRUE(gradcheck(fn, {rand64(gen, {2, 3}), rand64(gen, {3, 4}), rand64(gen, {1, 2})}));
  auto sfn = [](const std::vector<Tensor>& in) { return stack({in[0].t(), in[1]}, 1); };
  EXPECT_TRUE(gradcheck(sfn, {rand64(gen, {4, 3}), rand64(gen, {3, 4})}));
}

TEST(IndexingGradTest, SplitAndChunkPiecesReassembled) {
  Generator gen(2);
  auto fn = [](const std::vector<Tensor>& in) {
    std::vector<Tensor> p = split(in[0].t(), 2, 0);  // (5,3) -> 2,2,1 rows
    std::vector<Tensor> q = chunk(in[0], 2, 1);      // (3,5) -> 3,2 cols
    return cat({p[2], p[0], q[1].t(), p[1]}, 0);
  };
  EXPECT_TRUE(gradcheck(fn, {rand64(gen, {3, 5})}));
  auto vfn = [](const std::vector<Tensor>& in) {
    std::vector<Tensor> p = split(in[0], std::vector<int64_t>{1, 0, 3}, 1);
    return cat({p[2], p[1], p[0]}, 1);
  };
  EXPECT_TRUE(gradcheck(vfn, {rand64(gen, {2, 4})}));
}

TEST(IndexingGradTest, IndexSelectWithRepeatsOnTransposedInput) {
  Generator gen(3);
  Tensor idx = Tensor::from_vector<int64_t>({2, 0, 2, 2, 1}, {5});
  auto fn = [&](const std::vector<Tensor>& in) { return index_select(in[0].t(), 1, idx); };
  EXPECT_TRUE(gradcheck(fn, {rand64(gen, {3, 4})}));
}

TEST(IndexingGradTest, GatherWithRepeatsAndSmallerIndex) {
  Generator gen(4);
  Tensor idx = Tensor::from_vector<int64_t>({0, 0, 2, 1, 1, 1, 2, 0}, {2, 4});
  auto fn = [&](const std::vector<Tensor>& in) { return gather(in[0].t(), 0, idx); };
  EXPECT_TRUE(gradcheck(fn, {rand64(gen, {5, 3})}));  // x.t() (3,5): index uses 4 of 5 columns
  auto fn1 = [&](const std::vector<Tensor>& in) { return gather(in[0], 1, idx); };
  EXPECT_TRUE(gradcheck(fn1, {rand64(gen, {3, 3})}));  // index uses 2 of 3 rows
}

// ---- shapes and errors ---------------------------------------------------------------------

TEST(IndexingTest, SplitReturnsViewsAndChunkSizes) {
  Tensor x = Tensor::arange(10).to(DType::F32).reshape({2, 5});
  std::vector<Tensor> p = split(x, 2, 1);
  ASSERT_EQ(p.size(), 3u);
  EXPECT_TRUE(p[1].shares_storage(x));
  EXPECT_EQ(p[2].shape(), (Shape{2, 1}));
  EXPECT_EQ(p[1].to_vector<float>(), (std::vector<float>{2, 3, 7, 8}));
  std::vector<Tensor> c = chunk(x, 3, 1);  // ceil(5/3) = 2 -> 2,2,1
  ASSERT_EQ(c.size(), 3u);
  EXPECT_EQ(c[2].shape(), (Shape{2, 1}));
  EXPECT_THROW(split(x, std::vector<int64_t>{2, 2}, 1), ValueError);
  EXPECT_THROW(cat({x, Tensor::zeros({3, 5})}, 1), ValueError);
  EXPECT_THROW(stack({x, x.t()}), ValueError);
}

TEST(IndexingTest, OutOfRangeIndexNamesIndexAndRange) {
  Tensor x = Tensor::zeros({4, 3});
  try {
    index_select(x, 0, Tensor::from_vector<int64_t>({1, 4}, {2}));
    FAIL() << "expected ValueError";
  } catch (const ValueError& e) {
    std::string m = e.what();
    EXPECT_NE(m.find("got 4"), std::string::npos) << m;
    EXPECT_NE(m.find("[0, 4)"), std::string::npos) << m;
  }
  EXPECT_THROW(index_select(x, 1, Tensor::from_vector<int64_t>({-1}, {1})), ValueError);
  EXPECT_THROW(gather(x, 1, Tensor::from_vector<int64_t>({0, 3}, {1, 2})), ValueError);
  EXPECT_THROW(gather(x, 1, Tensor::zeros({1, 2})), ValueError);  // f32 index
}

// ---- fast kernels vs reference, determinism ----------------------------------------------

struct Dims {
  int64_t outer, n, inner, m;
};

std::vector<int64_t> random_indices(Generator& gen, int64_t count, int64_t n) {
  std::vector<float> u = Tensor::rand({count}, gen).to_vector<float>();
  std::vector<int64_t> idx;
  for (float v : u) idx.push_back(std::min<int64_t>(n - 1, int64_t(v * float(n))));
  return idx;
}

TEST(IndexingKernelTest, FastMatchesReferenceOnOddSizes) {
  Backend& be = backend_for(DeviceType::CPU);
  Generator gen(5);
  for (Dims d : {Dims{1, 7, 1, 13}, Dims{3, 5, 300, 9}, Dims{2, 50, 7, 200}, Dims{1, 1000, 768, 64}}) {
    SCOPED_TRACE(::testing::Message() << d.outer << "x" << d.n << "x" << d.inner << " m=" << d.m);
    Tensor x = Tensor::randn({d.outer, d.n, d.inner}, gen);
    Tensor idx = Tensor::from_vector(random_indices(gen, d.m, d.n), {d.m});
    Tensor out = Tensor::empty({d.outer, d.m, d.inner}), out_r = Tensor::empty({d.outer, d.m, d.inner});
    be.index_select(out, x, idx, d.outer, d.n, d.inner);
    cpu::ref::index_select(out_r, x, idx, d.outer, d.n, d.inner);
    EXPECT_EQ(out.to_vector<float>(), out_r.to_vector<float>());  // a pure copy: bitwise
    Tensor acc = x.clone(), acc_r = x.clone();
    be.index_add(acc, out, idx, d.outer, d.n, d.inner);
    cpu::ref::index_add(acc_r, out, idx, d.outer, d.n, d.inner);
    // Same per-element summation order (index order) as the reference: bitwise.
    EXPECT_EQ(acc.to_vector<float>(), acc_r.to_vector<float>());
    Tensor gidx = Tensor::from_vector(random_indices(gen, d.outer * d.m * d.inner, d.n),
                                      {d.outer, d.m, d.inner});
    be.gather(out, x, gidx, d.outer, d.n, d.inner);
    cpu::ref::gather(out_r, x, gidx, d.outer, d.n, d.inner);
    EXPECT_EQ(out.to_vector<float>(), out_r.to_vector<float>());
    Tensor sc = x.clone(), sc_r = x.clone();
    be.scatter_add(sc, out, gidx, d.outer, d.n, d.inner);
    cpu::ref::scatter_add(sc_r, out, gidx, d.outer, d.n, d.inner);
    EXPECT_EQ(sc.to_vector<float>(), sc_r.to_vector<float>());
  }
}

TEST(IndexingKernelTest, ScatterKernelsAreIndependentOfThreadCount) {
  Backend& be = backend_for(DeviceType::CPU);
  Generator gen(6);
  const int64_t V = 500, C = 768, m = 4096;  // embedding-backward shape, many repeats
  Tensor src = Tensor::randn({m, C}, gen);
  Tensor idx = Tensor::from_vector(random_indices(gen, m, V), {m});
  std::vector<float> res[2];
  for (int threads : {1, 2}) {
    cpu::set_num_threads(threads);
    Tensor out = Tensor::zeros({V, C});
    be.index_add(out, src, idx, 1, V, C);
    res[threads - 1] = out.to_vector<float>();
  }
  EXPECT_EQ(res[0], res[1]);
}

}  // namespace
}  // namespace loom
