// Vocabulary-parallel embedding and cross entropy: the (padded) vocabulary's rows are split into
// TP equal contiguous ranges, so no rank ever holds the full embedding table or full-vocab logits.
// Padding policy (matches config::padded_vocab_size): the row count is vocab_size rounded up to a
// multiple of lcm(vocab_pad_multiple, tp). Padded rows are never looked up (ids < vocab_size), and
// the cross entropy masks padded columns out of the softmax, so the loss equals the loss over the
// real vocab_size columns whatever the padding.
//   VocabPartition part = VocabPartition::make(50257, tp.size(), tp.rank(), 128);
//   VocabParallelEmbedding wte(part, C, tp);                  // weight (local rows, C)
//   Tensor h = wte.forward(ids);                              // (B,T,C) on every rank
//   Tensor loss = vocab_parallel_cross_entropy(wte.logits(h_final).reshape({B * T, -1}),
//                                              targets.reshape({B * T}), part, tp);  // mean
#pragma once

#include <cstdint>

#include "core/nn/Module.h"
#include "core/ops/Nn.h"
#include "core/tensor/Tensor.h"
#include "parallel/comm/Communicator.h"

namespace loom::tp {

// vocab_size rounded up to a multiple of lcm(pad_multiple, tp).
int64_t padded_vocab_size(int64_t vocab_size, int tp, int64_t pad_multiple = 1);

// Which rows [start, end) of the padded vocabulary one TP rank holds.
struct VocabPartition {
  int64_t vocab_size = 0;   // real tokens; ids and targets are < vocab_size
  int64_t padded_size = 0;  // rows over all ranks
  int64_t start = 0, end = 0;
  int64_t local_size() const { return end - start; }
  static VocabPartition make(int64_t vocab_size, int tp, int tp_rank, int64_t pad_multiple = 1);
};

class VocabParallelEmbedding : public nn::Module {
 public:
  // Parameter "weight": this rank's rows of the logical (padded_size, dim) table, ~N(0, init_std)
  // with the padded rows (>= vocab_size) zero. owner = false for a copy another rank also holds
  // (the last pipeline stage's copy of a tied table).
  VocabParallelEmbedding(const VocabPartition& part, int64_t dim, Communicator& tp,
                         double init_std = 0.02, bool owner = true, DType dtype = DType::F32,
                         Device device = Device::cpu());
  // ids (...) I64 in [0, vocab_size) -> (..., dim), equal on every rank. Ids outside this rank's
  // rows give zeros locally; reduce_from_tp then sums the one owner's row into every rank.
  Tensor forward(const Tensor& ids) const;
  // Tied or untied LM head: h (..., dim) replicated -> this rank's logits h @ weight^T, ready for
  // vocab_parallel_cross_entropy (copy_to_tp sums h's gradient over the ranks): (..., local rows),
  // or at tp = 1 (..., vocab_size): the padded rows are left out of the product.
  Tensor logits(const Tensor& h) const;
  const Tensor& weight() const { return weight_; }  // (local rows, dim)
  const VocabPartition& partition() const { return part_; }

 private:
  VocabPartition part_;
  Communicator& tp_;
  Tensor weight_;
};

// logits_local (N, part.local_size()) this rank's vocab columns (at tp = 1 also (N, vocab_size):
// the padded columns left out), targets (N) I64 global ids (or ignore_index). Cross entropy over the real vocabulary: local max -> all-reduce max, local sum
// of exp -> all-reduce sum, target logit from the owning rank -> all-reduce sum. Backward is
// softmax - onehot on the local shard (no communication). Returns per-row losses (N) with
// Reduction::None (0 on ignored rows), otherwise the sum or the mean over non-ignored rows.
Tensor vocab_parallel_cross_entropy(const Tensor& logits_local, const Tensor& targets,
                                    const VocabPartition& part, Communicator& tp,
                                    int64_t ignore_index = -100,
                                    Reduction reduction = Reduction::Mean);

// The LM head and its cross entropy in one: mean (or sum) over the non-ignored rows of the cross
// entropy of h (N, C) @ weight^T (this rank's vocabulary rows (part.local_size(), C)) against
// targets (N), computed in chunks of rows so the (N, V/tp) logits never exist at once. The
// gradients for a unit upstream gradient (dh (N, C), dweight) are computed in the same pass and
// scaled in backward, so nothing is recomputed. Equal to
// vocab_parallel_cross_entropy(linear(copy_to_tp(h), weight)) up to summation order. Contiguous
// f32 / f64 CPU tensors (the fused row kernels); Reduction Mean or Sum.
Tensor vocab_parallel_linear_cross_entropy(const Tensor& h, const Tensor& weight,
                                           const Tensor& targets, const VocabPartition& part,
                                           Communicator& tp, int64_t ignore_index = -100,
                                           Reduction reduction = Reduction::Mean);

namespace detail {
// The op-composed implementation (any device, any float dtype the ops support). The public
// function uses fused row kernels for contiguous f32/f64 CPU logits and is tested against this.
Tensor vocab_parallel_cross_entropy_composed(const Tensor& logits_local, const Tensor& targets,
                                             const VocabPartition& part, Communicator& tp,
                                             int64_t ignore_index = -100,
                                             Reduction reduction = Reduction::Mean);
}  // namespace detail

}  // namespace loom::tp
