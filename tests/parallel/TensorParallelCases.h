// Shared cases for the tensor-parallel layers, run by every rank of a TP group: under the
// Fake communicator (TensorParallelTest.cpp, TP in {2,4} as threads) and under MPI
// (tensor_parallel_mpi_test.cpp). Each rank rebuilds the TP=1 reference from the same seed, runs
// the sharded layer (its pieces cut out of the TP=1 weights by their ShardSpecs), and checks
// forward outputs and the gradients of inputs and sharded weights against the matching pieces of
// the TP=1 results (relative Frobenius error). The whole GPT block is models::Block, the one the
// model uses at every layout.
#pragma once

#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <string>
#include <vector>

#include "core/autograd/GradMode.h"
#include "core/ops/Attention.h"
#include "core/ops/Elementwise.h"
#include "core/ops/Indexing.h"
#include "core/ops/Linear.h"
#include "core/ops/Nn.h"
#include "core/ops/Reduction.h"
#include "core/random/Generator.h"
#include "models/GPT.h"
#include "parallel/comm/Communicator.h"
#include "parallel/tensor/Mappings.h"
#include "parallel/tensor/ParallelLinear.h"
#include "parallel/tensor/TensorParallelRng.h"
#include "parallel/tensor/VocabParallel.h"

namespace loom::test {

// TESTPLAN R-2: fp64 relF <= 1e-12; fp32 relF <= 1e-6 (TP changes only the summation order of
// the row-parallel partial sums and of the softmax statistics).
inline double tp_tolerance(DType dt) { return dt == DType::F64 ? 1e-12 : 1e-6; }

// ||a - b||_F / ||b||_F in f64 (absolute when b == 0).
inline double rel_frob(const Tensor& a, const Tensor& b) {
  std::vector<double> x = a.to_vector<double>(), y = b.to_vector<double>();
  if (x.size() != y.size()) return INFINITY;
  double num = 0, den = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    num += (x[i] - y[i]) * (x[i] - y[i]);
    den += y[i] * y[i];
  }
  return den > 0 ? std::sqrt(num / den) : std::sqrt(num);
}

#define LOOM_EXPECT_REL(a, b, dt)                         \
  do {                                                    \
    const Tensor& ea_ = (a);                              \
    const Tensor& eb_ = (b);                              \
    EXPECT_EQ(ea_.shape(), eb_.shape()) << #a " vs " #b;  \
    EXPECT_LE(rel_frob(ea_, eb_), tp_tolerance(dt))       \
        << #a " vs " #b << " (" << dtype_name(dt) << ")"; \
  } while (0)

inline Tensor leaf(const Tensor& t) { return t.detach().clone().set_requires_grad(true); }

// The piece of the logical tensor `full` that parameter `name` of `m` holds on this rank.
inline Tensor piece_of(const nn::Module& m, const std::string& name, const Tensor& full) {
  for (const nn::Parameter& p : m.parameter_list())
    if (p.name == name) return extract_shard(full, p.meta.spec);
  ADD_FAILURE() << "no parameter " << name;
  return Tensor();
}

// Copies each parameter's piece out of the logical tensors `full` (by name).
inline void load_full(nn::Module& m, const std::map<std::string, Tensor>& full) {
  NoGradGuard g;
  for (const nn::Parameter& p : m.parameter_list())
    p.tensor.detach().copy_(extract_shard(full.at(p.name), p.meta.spec));
}

// Column-parallel linear, with and without gather_output.
inline void check_column_parallel(Communicator& c, DType dt, bool gather_output) {
  const int r = c.rank(), n = c.size();
  Generator gen(11);
  Tensor w = Tensor::randn({24, 12}, gen, dt), b = Tensor::randn({24}, gen, dt);
  Tensor x0 = Tensor::randn({2, 3, 12}, gen, dt), up = Tensor::randn({2, 3, 24}, gen, dt);
  Tensor wr = leaf(w), br = leaf(b), xr = leaf(x0);
  Tensor yr = linear(xr, wr, br);
  sum(yr * up).backward();

  tp::ColumnParallelLinear layer(12, 24, c, {true, 0.02, dt}, /*stacked=*/1, gather_output);
  load_full(layer, {{"weight", w}, {"bias", b}});
  Tensor x = leaf(x0);
  Tensor y = layer.forward(x);
  Tensor up_here = gather_output ? up : tp::slice_for_rank(up, -1, r, n);
  LOOM_EXPECT_REL(y, gather_output ? yr : tp::slice_for_rank(yr, -1, r, n), dt);
  // Without gather_output the loss is split over ranks; copy_to_tp's all-reduce sums its pieces.
  sum(y * up_here).backward();
  LOOM_EXPECT_REL(x.grad(), xr.grad(), dt);
  LOOM_EXPECT_REL(layer.weight().grad(), piece_of(layer, "weight", wr.grad()), dt);
  LOOM_EXPECT_REL(layer.bias().grad(), piece_of(layer, "bias", br.grad()), dt);
}

// Row-parallel linear, fed the local slice (input_is_parallel) or the full input (scattered).
inline void check_row_parallel(Communicator& c, DType dt, bool input_is_parallel) {
  const int r = c.rank(), n = c.size();
  Generator gen(12);
  Tensor w = Tensor::randn({10, 24}, gen, dt), b = Tensor::randn({10}, gen, dt);
  Tensor x0 = Tensor::randn({2, 3, 24}, gen, dt), up = Tensor::randn({2, 3, 10}, gen, dt);
  Tensor wr = leaf(w), br = leaf(b), xr = leaf(x0);
  Tensor yr = linear(xr, wr, br);
  sum(yr * up).backward();

  tp::RowParallelLinear layer(24, 10, c, {true, 0.02, dt}, input_is_parallel);
  load_full(layer, {{"weight", w}, {"bias", b}});
  Tensor x = leaf(input_is_parallel ? tp::slice_for_rank(x0, -1, r, n) : x0);
  Tensor y = layer.forward(x);
  LOOM_EXPECT_REL(y, yr, dt);
  sum(y * up).backward();
  LOOM_EXPECT_REL(x.grad(), input_is_parallel ? tp::slice_for_rank(xr.grad(), -1, r, n) : xr.grad(),
                  dt);
  LOOM_EXPECT_REL(layer.weight().grad(), tp::slice_for_rank(wr.grad(), 1, r, n), dt);
  LOOM_EXPECT_REL(layer.bias().grad(), br.grad(), dt);
}

// Rows [start, end) of `full` zero-padded to `rows` rows: the TP=1 table seen by one TP rank.
inline Tensor padded_rows(const Tensor& full, const tp::VocabPartition& p) {
  Shape s = full.shape();
  s[0] = p.padded_size;
  Tensor out = Tensor::zeros(s, full.dtype());
  out.narrow(0, 0, full.size(0)).copy_(full.detach());
  return out.narrow(0, p.start, p.local_size()).contiguous();
}

// vocab % tp != 0 exercises padding (vocab 11 -> 12 rows at TP 2, 3 and 4).
inline void check_vocab_parallel_embedding(Communicator& c, DType dt, int64_t vocab) {
  const int r = c.rank(), n = c.size();
  Generator gen(13);
  Tensor w = Tensor::randn({vocab, 6}, gen, dt), up = Tensor::randn({2, 5, 6}, gen, dt);
  std::vector<int64_t> id_values = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9};
  for (int64_t& v : id_values) v = (v * 7 + 3) % vocab;
  id_values[9] = vocab - 1;  // the last real row (on the last rank, next to the padding)
  Tensor ids = Tensor::from_vector(id_values, {2, 5});
  Tensor wr = leaf(w);
  Tensor yr = embedding(wr, ids);
  sum(yr * up).backward();

  tp::VocabPartition part = tp::VocabPartition::make(vocab, n, r);
  tp::VocabParallelEmbedding emb(part, 6, c, 0.02, true, dt);
  {
    NoGradGuard g;
    emb.weight().detach().copy_(padded_rows(w, part));
  }
  Tensor y = emb.forward(ids);
  LOOM_EXPECT_REL(y, yr, dt);
  sum(y * up).backward();
  LOOM_EXPECT_REL(emb.weight().grad(), padded_rows(wr.grad(), part), dt);
}

// Vocab-parallel cross entropy vs cross_entropy over the real vocab columns, with ignored rows
// and garbage in the padded columns (which must not change anything). vocab >= 8*tp exercises the
// 8-wide f32 loops and their tails.
inline void check_vocab_parallel_cross_entropy(Communicator& c, DType dt, int64_t vocab,
                                               Reduction reduction) {
  const int r = c.rank(), n = c.size();
  tp::VocabPartition part = tp::VocabPartition::make(vocab, n, r);
  Generator gen(14);
  const int64_t N = 7;
  Tensor logits_padded = Tensor::randn({N, part.padded_size}, gen, dt, Device::cpu(), 0.0, 3.0);
  logits_padded.narrow(1, vocab, part.padded_size - vocab).fill_(50.0);  // would dominate if seen
  Tensor targets =
      Tensor::from_vector<int64_t>({3 % vocab, -100, 0, vocab - 1, 5 % vocab, 2, -100}, {N});
  Tensor lr = leaf(logits_padded.narrow(1, 0, vocab));
  Tensor ref = cross_entropy(lr, targets, -100, reduction);
  Tensor up = reduction == Reduction::None ? Tensor::randn({N}, gen, dt) : Tensor::scalar(1.7, dt);
  sum(ref * up).backward();
  Tensor dref = Tensor::zeros({N, part.padded_size}, dt);
  dref.narrow(1, 0, vocab).copy_(lr.grad());

  // Both implementations: the fused CPU row kernels (public entry) and the op-composed reference.
  for (bool composed : {false, true}) {
    SCOPED_TRACE(composed ? "composed" : "fused");
    Tensor local = leaf(tp::slice_for_rank(logits_padded, 1, r, n));
    Tensor loss = composed
                      ? tp::detail::vocab_parallel_cross_entropy_composed(local, targets, part, c,
                                                                          -100, reduction)
                      : tp::vocab_parallel_cross_entropy(local, targets, part, c, -100, reduction);
    LOOM_EXPECT_REL(loss, ref, dt);
    sum(loss * up).backward();
    LOOM_EXPECT_REL(local.grad(), tp::slice_for_rank(dref, 1, r, n), dt);
  }
}

// The fused LM head + cross entropy (vocab_parallel_linear_cross_entropy) vs cross_entropy of
// linear(h, W) over the real vocabulary: loss, dh and this rank's rows of dW, with ignored rows and
// a padded vocabulary, Mean and Sum, and an upstream gradient != 1 (the loss scaled afterwards).
// A chunk holds about 8M logits: N * V beyond that spans several chunks.
inline void check_linear_cross_entropy(Communicator& c, DType dt, int64_t vocab, int64_t N,
                                       Reduction reduction) {
  const int r = c.rank(), n = c.size();
  tp::VocabPartition part = tp::VocabPartition::make(vocab, n, r);
  const int64_t C = 8;
  Generator gen(21);
  Tensor h0 = Tensor::randn({N, C}, gen, dt), w0 = Tensor::randn({vocab, C}, gen, dt);
  std::vector<int64_t> t;
  for (int64_t i = 0; i < N; ++i) t.push_back(i % 7 == 3 ? -100 : (i * 13 + 5) % vocab);
  Tensor targets = Tensor::from_vector(t, {N});
  Tensor hr = leaf(h0), wr = leaf(w0);
  Tensor ref = cross_entropy(linear(hr, wr), targets, -100, reduction);
  (ref * 1.7).backward();

  Tensor h = leaf(h0), w = leaf(padded_rows(w0, part));
  Tensor loss = tp::vocab_parallel_linear_cross_entropy(h, w, targets, part, c, -100, reduction);
  LOOM_EXPECT_REL(loss, ref, dt);
  (loss * 1.7).backward();
  LOOM_EXPECT_REL(h.grad(), hr.grad(), dt);
  LOOM_EXPECT_REL(w.grad(), padded_rows(wr.grad(), part), dt);
}

// Tied embedding + LM head + loss, the ends of a TP GPT: wte.forward(ids), a nonlinearity, then
// wte.logits(h) into the vocab-parallel cross entropy. The embedding weight's gradient gets both
// the lookup and the head contributions; padded rows get none.
inline void check_tied_embedding_head_loss(Communicator& c, DType dt, int64_t vocab) {
  const int r = c.rank(), n = c.size();
  const int64_t B = 2, T = 4, C = 6;
  Generator gen(18);
  Tensor w = Tensor::randn({vocab, C}, gen, dt);
  std::vector<int64_t> id_values, target_values;
  for (int64_t i = 0; i < B * T; ++i) {
    id_values.push_back((5 * i + 1) % vocab);
    target_values.push_back(i == 3 ? -100 : (3 * i + 2) % vocab);
  }
  Tensor ids = Tensor::from_vector(id_values, {B, T});
  Tensor targets = Tensor::from_vector(target_values, {B * T});
  auto body = [](const Tensor& h) { return tanh(h) * 1.5 + h; };
  Tensor wr = leaf(w);
  Tensor ref = cross_entropy(linear(body(embedding(wr, ids)), wr).reshape({B * T, vocab}), targets);
  ref.backward();

  tp::VocabPartition part = tp::VocabPartition::make(vocab, n, r);
  tp::VocabParallelEmbedding wte(part, C, c, 0.02, true, dt);
  {
    NoGradGuard g;
    wte.weight().detach().copy_(padded_rows(w, part));
  }
  Tensor logits = wte.logits(body(wte.forward(ids)));  // (B,T,V/tp)
  Tensor loss = tp::vocab_parallel_cross_entropy(logits.reshape({B * T, part.local_size()}),
                                                 targets, part, c);
  LOOM_EXPECT_REL(loss, ref, dt);
  loss.backward();
  LOOM_EXPECT_REL(wte.weight().grad(), padded_rows(wr.grad(), part), dt);
}

// The GPT-2 MLP as the block builds it: fc C->4C column-parallel, GELU on the local slice, proj
// 4C->C row-parallel, then residual dropout from the replicated stream, so with dropout > 0 it
// matches the TP=1 MLP using a Generator with the same seed.
inline void check_parallel_mlp(Communicator& c, DType dt, double p = 0.0) {
  const int64_t C = 12;
  Generator gen(15);
  Tensor w1 = Tensor::randn({4 * C, C}, gen, dt), b1 = Tensor::randn({4 * C}, gen, dt);
  Tensor w2 = Tensor::randn({C, 4 * C}, gen, dt), b2 = Tensor::randn({C}, gen, dt);
  Tensor x0 = Tensor::randn({2, 3, C}, gen, dt), up = Tensor::randn({2, 3, C}, gen, dt);
  Tensor w1r = leaf(w1), b1r = leaf(b1), w2r = leaf(w2), b2r = leaf(b2), xr = leaf(x0);
  Generator drop_gen(99);
  Tensor yr = dropout(linear(gelu(linear(xr, w1r, b1r)), w2r, b2r), p, drop_gen);
  sum(yr * up).backward();

  tp::ColumnParallelLinear fc(C, 4 * C, c, {true, 0.02, dt});
  tp::RowParallelLinear proj(4 * C, C, c, {true, 0.02, dt});
  load_full(fc, {{"weight", w1}, {"bias", b1}});
  load_full(proj, {{"weight", w2}, {"bias", b2}});
  tp::TensorParallelRng rng(99, c.rank());
  Tensor x = leaf(x0);
  Tensor y = dropout(proj.forward(gelu(fc.forward(x))), p, rng.replicated(), true);
  LOOM_EXPECT_REL(y, yr, dt);
  sum(y * up).backward();
  LOOM_EXPECT_REL(x.grad(), xr.grad(), dt);
  LOOM_EXPECT_REL(fc.weight().grad(), piece_of(fc, "weight", w1r.grad()), dt);
  LOOM_EXPECT_REL(fc.bias().grad(), piece_of(fc, "bias", b1r.grad()), dt);
  LOOM_EXPECT_REL(proj.weight().grad(), piece_of(proj, "weight", w2r.grad()), dt);
  LOOM_EXPECT_REL(proj.bias().grad(), b2r.grad(), dt);
  // forward_gelu (selective recomputation: gelu(a) recomputed in backward) gives the same values
  // and gradients as the composition.
  Tensor x2 = leaf(x0);
  Tensor y2 = dropout(proj.forward_gelu(fc.forward(x2)), p, rng.replicated(), false);
  Tensor y1 = proj.forward(gelu(fc.forward(x0)));
  EXPECT_EQ(y2.to_vector<double>(), y1.to_vector<double>());
}

// Causal self-attention as in models/GPT.h: qkv (B,T,C) -> heads (B,H,T,D), causal SDPA, proj.
inline Tensor attention_heads(const Tensor& qkv, int64_t heads, int64_t width) {
  const int64_t B = qkv.size(0), T = qkv.size(1), D = width / heads;
  std::vector<Tensor> parts = split(qkv, width, -1);  // 3 x (B,T,width)
  auto h = [&](const Tensor& t) { return t.reshape({B, T, heads, D}).transpose(1, 2); };
  Tensor y = scaled_dot_product_attention(h(parts[0]), h(parts[1]), h(parts[2]), true);
  return y.transpose(1, 2).reshape({B, T, width});  // (B,T,width)
}

// Block weights in the order 0 ln1_w, 1 ln1_b, 2 qkv_w, 3 qkv_b, 4 proj_w, 5 proj_b, 6 ln2_w,
// 7 ln2_b, 8 fc_w, 9 fc_b, 10 mlp_proj_w, 11 mlp_proj_b (matrices N(0, 0.3), vectors N(0, 1)).
inline std::vector<Tensor> random_block_weights(Generator& gen, DType dt, int64_t C) {
  std::vector<Shape> shapes = {{C}, {C}, {3 * C, C}, {3 * C}, {C, C},     {C},
                               {C}, {C}, {4 * C, C}, {4 * C}, {C, 4 * C}, {C}};
  std::vector<Tensor> w;
  for (const Shape& s : shapes)
    w.push_back(Tensor::randn(s, gen, dt, Device::cpu(), 0.0, s.size() == 2 ? 0.3 : 1.0));
  return w;
}

// The TP=1 pre-LN block x + attn(ln_1(x)), then + mlp(ln_2(x)), evaluated in `dt` from weights
// w (random_block_weights order). Returns y, then the gradients of w, then dx, in f64.
inline std::vector<Tensor> reference_block(const std::vector<Tensor>& w, const Tensor& x0,
                                           const Tensor& up, int64_t heads, DType dt) {
  const int64_t C = x0.size(-1);
  std::vector<Tensor> wr;
  for (const Tensor& t : w) wr.push_back(leaf(t.to(dt)));
  Tensor xr = leaf(x0.to(dt));
  Tensor a = attention_heads(linear(layer_norm(xr, wr[0], wr[1]), wr[2], wr[3]), heads, C);
  Tensor hr = xr + linear(a, wr[4], wr[5]);
  Tensor yr = hr + linear(gelu(linear(layer_norm(hr, wr[6], wr[7]), wr[8], wr[9])), wr[10], wr[11]);
  sum(yr * up.to(dt)).backward();
  std::vector<Tensor> out = {yr.detach().to(DType::F64)};
  for (const Tensor& t : wr) out.push_back(t.grad().to(DType::F64));
  out.push_back(xr.grad().to(DType::F64));
  return out;
}

// models::Block (the GPT's block at any TP size) vs the TP=1 block: output, input gradient, every
// sharded weight gradient vs its TP=1 piece, replicated gradients (layer norms, row-parallel
// biases) vs the full ones. f64: relF <= 1e-12 against the TP=1 f64 block. f32: the composite
// block's slices carry cancellation (the TP=1 f32 block itself is up to ~2e-6 off the f64 result
// on q-bias slices), so each f32 TP result is held to the f64 truth within 1e-6 plus 4x the error
// of the TP=1 f32 block on the same slice: TP must be as accurate as TP=1.
inline void check_parallel_block(Communicator& c, DType dt, int64_t heads) {
  const int r = c.rank(), n = c.size();
  const int64_t C = 24, Cl = C / n;
  Generator gen(19);
  std::vector<Tensor> w = random_block_weights(gen, dt, C);
  auto rnd = [&](Shape s) { return Tensor::randn(s, gen, dt); };
  Tensor x0 = rnd({2, 5, C}), up = rnd({2, 5, C});
  std::vector<Tensor> same = reference_block(w, x0, up, heads, dt);  // TP=1 in dt
  std::vector<Tensor> truth =
      dt == DType::F64 ? same : reference_block(w, x0, up, heads, DType::F64);

  models::GPTConfig cfg;
  cfg.n_embd = C;
  cfg.n_head = heads;
  cfg.dropout = 0.0;
  models::Block block(cfg, c, dt, Device::cpu());
  const char* names[] = {"ln_1.weight", "ln_1.bias", "attn.qkv.weight", "attn.qkv.bias",
                         "attn.proj.weight", "attn.proj.bias", "ln_2.weight", "ln_2.bias",
                         "mlp.fc.weight", "mlp.fc.bias", "mlp.proj.weight", "mlp.proj.bias"};
  std::map<std::string, Tensor> logical;
  for (size_t k = 0; k < 12; ++k) logical[names[k]] = w[k];
  load_full(block, logical);
  ASSERT_EQ(block.parameter_list().size(), size_t(12));
  tp::TensorParallelRng rng(3, r);
  Tensor x = leaf(x0);
  Tensor y = block.forward(x, rng, models::Recompute::None, models::RopeTables{});
  sum(y * up).backward();
  auto grad = [&](const char* name) { return block.parameter(name).grad(); };

  using Slice = std::function<Tensor(const Tensor&)>;
  auto check = [&](const char* what, const Tensor& got, size_t k, const Slice& slice) {
    const double err = rel_frob(got.to(DType::F64), slice(truth[k]));
    const double bound =
        dt == DType::F64 ? 1e-12 : 1e-6 + 4 * rel_frob(slice(same[k]), slice(truth[k]));
    EXPECT_LE(err, bound) << what << " (" << dtype_name(dt) << ")";
  };
  Slice full = [](const Tensor& t) { return t; };
  auto piece = [&](const char* name) {
    return Slice([&, name](const Tensor& t) { return piece_of(block, name, t.to(dt)).to(DType::F64); });
  };
  auto qkv_part = [&](int64_t part) {
    return Slice([&, part](const Tensor& t) {
      return piece_of(block, "attn.qkv.bias", t.to(dt)).to(DType::F64).narrow(0, part * Cl, Cl);
    });
  };
  check("y", y, 0, full);
  check("dx", x.grad(), 13, full);
  check("ln_1.weight", grad("ln_1.weight"), 1, full);
  check("ln_1.bias", grad("ln_1.bias"), 2, full);
  check("qkv.weight", grad("attn.qkv.weight"), 3, piece("attn.qkv.weight"));
  Tensor dbq = grad("attn.qkv.bias");
  check("qkv.bias q", dbq.narrow(0, 0, Cl), 4, qkv_part(0));
  check("qkv.bias v", dbq.narrow(0, 2 * Cl, Cl), 4, qkv_part(2));
  // NB: the key bias has a mathematically zero gradient (q.b_k shifts a whole score row, which
  // leaves the softmax unchanged); its computed value is rounding noise, bounded absolutely by
  // 1e-5 (f32) / 1e-13 (f64) of the whole bias gradient's norm (>= 30x the noise measured).
  const double noise = (dt == DType::F64 ? 1e-13 : 1e-5) * rel_frob(truth[4], 0.0 * truth[4]);
  Tensor dbk = dbq.narrow(0, Cl, Cl);
  EXPECT_LE(rel_frob(dbk, 0.0 * dbk), noise);
  check("attn.proj.weight", grad("attn.proj.weight"), 5, piece("attn.proj.weight"));
  check("attn.proj.bias", grad("attn.proj.bias"), 6, full);
  check("ln_2.weight", grad("ln_2.weight"), 7, full);
  check("ln_2.bias", grad("ln_2.bias"), 8, full);
  check("mlp.fc.weight", grad("mlp.fc.weight"), 9, piece("mlp.fc.weight"));
  check("mlp.fc.bias", grad("mlp.fc.bias"), 10, piece("mlp.fc.bias"));
  check("mlp.proj.weight", grad("mlp.proj.weight"), 11, piece("mlp.proj.weight"));
  check("mlp.proj.bias", grad("mlp.proj.bias"), 12, full);
}

// dropout masks drawn from tensor_parallel() differ across TP ranks, those from replicated()
// are equal on every rank, and restoring the state reproduces both bitwise.
inline void check_dropout_rng(Communicator& c) {
  tp::TensorParallelRng rng(2024, c.rank());
  Tensor ones = Tensor::ones({64, 32});
  auto masks = [&] {
    Tensor inside = dropout(ones, 0.5, rng.tensor_parallel());
    Tensor outside = dropout(ones, 0.5, rng.replicated());
    return std::vector<Tensor>{inside, outside};
  };
  const tp::TensorParallelRng::State start = rng.state();
  std::vector<Tensor> first = masks();
  std::vector<Tensor> second = masks();  // streams advance: a new mask each call
  EXPECT_GT(rel_frob(second[0], first[0]), 0.0);
  rng.set_state(start);
  std::vector<Tensor> again = masks();
  EXPECT_EQ(again[0].to_vector<float>(), first[0].to_vector<float>());
  EXPECT_EQ(again[1].to_vector<float>(), first[1].to_vector<float>());

  const int n = c.size();
  for (size_t k = 0; k < 2; ++k) {
    Tensor all = tp::all_gather_last_dim(first[k].contiguous(), c);  // (64, 32*n)
    for (int q = 1; q < n; ++q) {
      Tensor a = all.narrow(1, 0, 32), b = all.narrow(1, 32 * q, 32);
      if (k == 0) {
        EXPECT_GT(rel_frob(b, a), 0.5) << "inside-TP masks of ranks 0 and " << q;
      } else {
        EXPECT_EQ(rel_frob(b, a), 0.0) << "outside-TP masks of ranks 0 and " << q;
      }
    }
  }
}

}  // namespace loom::test
