// ParallelMLP, ParallelSelfAttention and ParallelBlock (ParallelBlocks.h). The attention core
// mirrors models/GPT.cpp: the fused causal kernel without dropout, explicit softmax(q k^T) with
// dropout on the probabilities when training with dropout > 0.
#include "parallel/tensor/ParallelBlocks.h"

#include <cmath>
#include <limits>

#include "core/autograd/GradMode.h"
#include "core/ops/Attention.h"
#include "core/ops/Elementwise.h"
#include "core/ops/Indexing.h"
#include "core/ops/Linear.h"
#include "core/ops/Nn.h"
#include "core/util/Check.h"

namespace loom::tp {

namespace {

// q, k, v (B,h,T,D) -> (B,h,T,D), causal; probabilities dropped with `gen` when p > 0.
Tensor causal_attention(const Tensor& q, const Tensor& k, const Tensor& v, double p,
                        Generator& gen) {
  if (p <= 0.0) return scaled_dot_product_attention(q, k, v, /*causal=*/true);
  const int64_t T = q.size(2), D = q.size(3);
  Tensor att = matmul(q, k.transpose(2, 3)) * (1.0 / std::sqrt(double(D)));  // (B,h,T,T)
  Tensor pos = Tensor::arange(T, DType::I64, q.device());
  Tensor future = gt(pos.unsqueeze(0), pos.unsqueeze(1));  // (T,T): key j > query i
  att = masked_fill(att, future, -std::numeric_limits<double>::infinity());
  att = dropout(softmax(att, -1), p, gen, /*training=*/true);
  return matmul(att, v);
}

std::vector<Tensor> concat(std::vector<Tensor> a, const std::vector<Tensor>& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

}  // namespace

ParallelMLP::ParallelMLP(int64_t C, Communicator& tp, double dropout, bool bias, DType dtype,
                         Device device)
    : dropout_(dropout),
      fc_(C, 4 * C, tp, bias, /*gather_output=*/false, dtype, device),
      proj_(4 * C, C, tp, bias, /*input_is_parallel=*/true, dtype, device) {}

Tensor ParallelMLP::forward(const Tensor& x, TensorParallelRng& rng, bool training) const {
  Tensor y = proj_.forward(gelu(fc_.forward(x)));  // (B,T,C), replicated
  return dropout(y, dropout_, rng.replicated(), training);
}

void ParallelMLP::load_full(const Tensor& fc_w, const Tensor& fc_b, const Tensor& proj_w,
                            const Tensor& proj_b) {
  fc_.load_full(fc_w, fc_b);
  proj_.load_full(proj_w, proj_b);
}

std::vector<Tensor> ParallelMLP::parameters() const {
  return concat(fc_.parameters(), proj_.parameters());
}

std::vector<Tensor> ParallelMLP::sharded_parameters() const {
  return concat(fc_.sharded_parameters(), proj_.sharded_parameters());
}

std::vector<Tensor> ParallelMLP::replicated_parameters() const {
  return concat(fc_.replicated_parameters(), proj_.replicated_parameters());
}

ParallelSelfAttention::ParallelSelfAttention(int64_t C, int64_t n_head, Communicator& tp,
                                             double dropout, bool bias, DType dtype, Device device)
    : local_heads_(n_head / tp.size()),
      dropout_(dropout),
      qkv_(C, 3 * C, tp, bias, /*gather_output=*/false, dtype, device),
      proj_(C, C, tp, bias, /*input_is_parallel=*/true, dtype, device) {
  LOOM_CHECK(n_head >= 1 && C % n_head == 0, "ParallelSelfAttention: expected n_embd ", C,
             " divisible by n_head ", n_head);
  LOOM_CHECK(n_head % tp.size() == 0, "ParallelSelfAttention: expected n_head ", n_head,
             " divisible by the TP size ", tp.size());
}

Tensor ParallelSelfAttention::forward(const Tensor& x, TensorParallelRng& rng,
                                      bool training) const {
  LOOM_CHECK(x.dim() == 3, "ParallelSelfAttention: expected x (B,T,C), got ", x.shape());
  const int64_t B = x.size(0), T = x.size(1), Cl = qkv_.weight().size(0) / 3;
  const int64_t H = local_heads_, D = Cl / H;
  std::vector<Tensor> qkv = split(qkv_.forward(x), Cl, -1);  // 3 x (B,T,C/tp): this rank's heads
  auto heads = [&](const Tensor& t) { return t.reshape({B, T, H, D}).transpose(1, 2); };
  const double p = training ? dropout_ : 0.0;
  Tensor y = causal_attention(heads(qkv[0]), heads(qkv[1]), heads(qkv[2]), p,
                              rng.tensor_parallel());        // (B,H/tp,T,D)
  y = proj_.forward(y.transpose(1, 2).reshape({B, T, Cl}));  // (B,T,C), replicated
  return dropout(y, dropout_, rng.replicated(), training);
}

void ParallelSelfAttention::load_full(const Tensor& qkv_w, const Tensor& qkv_b,
                                      const Tensor& proj_w, const Tensor& proj_b) {
  qkv_.load_full(qkv_w, qkv_b, /*stacked=*/3);
  proj_.load_full(proj_w, proj_b);
}

std::vector<Tensor> ParallelSelfAttention::parameters() const {
  return concat(qkv_.parameters(), proj_.parameters());
}

std::vector<Tensor> ParallelSelfAttention::sharded_parameters() const {
  return concat(qkv_.sharded_parameters(), proj_.sharded_parameters());
}

std::vector<Tensor> ParallelSelfAttention::replicated_parameters() const {
  return concat(qkv_.replicated_parameters(), proj_.replicated_parameters());
}

ParallelBlock::ParallelBlock(int64_t C, int64_t n_head, Communicator& tp, double dropout, bool bias,
                             DType dtype, Device device)
    : attn_(C, n_head, tp, dropout, bias, dtype, device),
      mlp_(C, tp, dropout, bias, dtype, device) {
  ln1_w_ = Tensor::ones({C}, dtype, device).set_requires_grad(true);
  ln2_w_ = Tensor::ones({C}, dtype, device).set_requires_grad(true);
  if (bias) {
    ln1_b_ = Tensor::zeros({C}, dtype, device).set_requires_grad(true);
    ln2_b_ = Tensor::zeros({C}, dtype, device).set_requires_grad(true);
  }
}

Tensor ParallelBlock::forward(const Tensor& x, TensorParallelRng& rng, bool training) const {
  Tensor h = x + attn_.forward(layer_norm(x, ln1_w_, ln1_b_), rng, training);
  return h + mlp_.forward(layer_norm(h, ln2_w_, ln2_b_), rng, training);
}

void ParallelBlock::load_full_norms(const Tensor& ln1_w, const Tensor& ln1_b, const Tensor& ln2_w,
                                    const Tensor& ln2_b) {
  autograd::NoGradGuard guard;
  const Tensor* src[] = {&ln1_w, &ln1_b, &ln2_w, &ln2_b};
  const Tensor* dst[] = {&ln1_w_, &ln1_b_, &ln2_w_, &ln2_b_};
  for (int i = 0; i < 4; ++i) {
    LOOM_CHECK(src[i]->defined() == dst[i]->defined() &&
                   (!dst[i]->defined() || src[i]->shape() == dst[i]->shape()),
               "ParallelBlock.load_full_norms: expected layer-norm tensors of shape ",
               ln1_w_.shape(), (ln1_b_.defined() ? " with" : " without"), " biases");
    if (dst[i]->defined()) dst[i]->detach().copy_(*src[i]);
  }
}

std::vector<Tensor> ParallelBlock::replicated_parameters() const {
  std::vector<Tensor> out = {ln1_w_};
  if (ln1_b_.defined()) out.push_back(ln1_b_);
  out.push_back(ln2_w_);
  if (ln2_b_.defined()) out.push_back(ln2_b_);
  out = concat(out, attn_.replicated_parameters());
  return concat(out, mlp_.replicated_parameters());
}

std::vector<Tensor> ParallelBlock::sharded_parameters() const {
  return concat(attn_.sharded_parameters(), mlp_.sharded_parameters());
}

std::vector<Tensor> ParallelBlock::parameters() const {
  return concat(sharded_parameters(), replicated_parameters());
}

}  // namespace loom::tp
