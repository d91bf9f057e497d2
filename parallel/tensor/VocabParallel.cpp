// Vocabulary-parallel embedding and cross entropy (VocabParallel.h). Both are written with core
// tensor ops (so they run on any device the ops support); the cross entropy is one autograd
// function whose three forward all-reduces are on detached statistics, and whose backward is
// local: softmax - onehot, scaled by the incoming per-row gradient.
#include "parallel/tensor/VocabParallel.h"

#include <algorithm>
#include <limits>
#include <numeric>
#include <vector>

#include "core/autograd/Function.h"
#include "core/autograd/GradMode.h"
#include "core/ops/Elementwise.h"
#include "core/ops/Indexing.h"
#include "core/ops/Linear.h"
#include "core/ops/Reduction.h"
#include "core/util/Check.h"
#include "parallel/tensor/Mappings.h"
#include "parallel/tensor/VocabCrossEntropyCpu.h"

namespace loom::tp {

namespace {

constexpr int64_t kNoIgnore = std::numeric_limits<int64_t>::min();

Tensor i64(int64_t v, Device device) { return Tensor::scalar(double(v), DType::I64, device); }
Tensor boolean(bool v, Device device) { return Tensor::scalar(v ? 1.0 : 0.0, DType::Bool, device); }

// ids in [lo, hi) (Bool, ids' shape).
Tensor in_range(const Tensor& ids, int64_t lo, int64_t hi) {
  const Device d = ids.device();
  return where(ge(ids, i64(lo, d)), lt(ids, i64(hi, d)), boolean(false, d));
}

// Throws unless every id is in [0, vocab) or equals `ignore` (kNoIgnore: none is ignored).
// Returns how many ids are not `ignore`.
int64_t check_ids(const char* op, const Tensor& ids, int64_t vocab, int64_t ignore) {
  LOOM_CHECK(ids.dtype() == DType::I64, op, ": expected I64 ids, got ", dtype_name(ids.dtype()));
  int64_t count = 0;
  for (int64_t id : ids.to_vector<int64_t>()) {
    if (id == ignore) continue;
    LOOM_CHECK(id >= 0 && id < vocab, op, ": expected ids in [0, ", vocab, "), got ", id);
    ++count;
  }
  return count;
}

struct VocabParallelCrossEntropyFn {
  static constexpr const char* kName = "VocabParallelCrossEntropyBackward";
  // logits (N, Vl), targets (N) -> per-row loss (N)
  static Tensor forward(autograd::Ctx& ctx, const Tensor& logits, const Tensor& targets,
                        const VocabPartition& part, Communicator& tp, int64_t ignore_index) {
    const Device dev = logits.device();
    const DType dt = logits.dtype();
    Tensor cols = Tensor::arange(part.local_size(), DType::I64, dev) + double(part.start);  // (Vl)
    Tensor x = logits;
    if (part.end > part.vocab_size)  // padded columns never win
      x = masked_fill(x, ge(cols, i64(part.vocab_size, dev)),
                      -std::numeric_limits<double>::infinity());
    Tensor m = max(x, 1).contiguous();  // (N)
    tp.all_reduce(m, ReduceOp::Max);
    Tensor e = exp(x - m.unsqueeze(1));   // (N, Vl)
    Tensor s = sum(e, {1}).contiguous();  // (N)
    tp.all_reduce(s);
    Tensor owned = in_range(targets, part.start, part.end);                  // (N)
    Tensor idx = where(owned, targets - i64(part.start, dev), i64(0, dev));  // (N) local column
    Tensor zero = Tensor::scalar(0.0, dt, dev);
    Tensor target_logit = where(owned, gather(x, 1, idx.unsqueeze(1)).squeeze(1), zero);
    target_logit = target_logit.contiguous();  // (N)
    tp.all_reduce(target_logit);
    Tensor valid = ne(targets, i64(ignore_index, dev));  // (N)
    ctx.save(e / s.unsqueeze(1), idx, owned, valid);
    return where(valid, log(s) + m - target_logit, zero);
  }
  static std::vector<Tensor> backward(autograd::Ctx& ctx, std::vector<Tensor> g) {
    Tensor softmax = ctx.saved(0), idx = ctx.saved(1), owned = ctx.saved(2);
    Tensor valid = ctx.saved(3);
    const Device dev = softmax.device();
    const DType dt = softmax.dtype();
    Tensor zero = Tensor::scalar(0.0, dt, dev), one = Tensor::scalar(1.0, dt, dev);
    Tensor dloss = where(valid, g[0], zero);                         // (N)
    Tensor cols = Tensor::arange(softmax.size(1), DType::I64, dev);  // (Vl) local columns
    Tensor hot = where(owned.unsqueeze(1), eq(cols.unsqueeze(0), idx.unsqueeze(1)),
                       boolean(false, dev));                                  // (N, Vl)
    Tensor dlogits = (softmax - where(hot, one, zero)) * dloss.unsqueeze(1);  // (N, Vl)
    return {dlogits, Tensor()};
  }
};

// The same function on contiguous f32/f64 CPU logits with the fused row kernels: saves the logits
// and the log-sum-exp per row instead of the softmax, and the target columns in ctx.ints.
struct FusedVocabParallelCrossEntropyFn {
  static constexpr const char* kName = "VocabParallelCrossEntropyBackward";
  // logits (N, Vl), targets (N) -> per-row loss (N)
  static Tensor forward(autograd::Ctx& ctx, const Tensor& logits, const Tensor& targets,
                        const VocabPartition& part, Communicator& tp, int64_t ignore_index) {
    Tensor x = logits.contiguous();
    const int64_t N = x.size(0), Vl = x.size(1);
    const int64_t real = std::clamp<int64_t>(part.vocab_size - part.start, 0, Vl);
    std::vector<int64_t> col;
    for (int64_t t : targets.to_vector<int64_t>()) {
      col.push_back(t == ignore_index                 ? cpu::kTargetIgnored
                    : t >= part.start && t < part.end ? t - part.start
                                                      : cpu::kTargetElsewhere);
    }
    Tensor m = Tensor::empty({N}, x.dtype()), s = Tensor::empty({N}, x.dtype());
    Tensor target_logit = Tensor::empty({N}, x.dtype());
    cpu::row_max(m, x, real);
    tp.all_reduce(m, ReduceOp::Max);
    cpu::row_sum_exp_and_pick(s, target_logit, x, m, col, real);
    tp.all_reduce(s);
    tp.all_reduce(target_logit);
    Tensor lse = m + log(s);  // (N)
    Tensor ignored = Tensor::from_vector(col, {N}).to(x.device());
    Tensor zero = Tensor::scalar(0.0, x.dtype());
    ctx.save(x, lse);
    ctx.ints = std::move(col);
    ctx.reals = {double(real)};
    return where(eq(ignored, i64(cpu::kTargetIgnored, x.device())), zero, lse - target_logit);
  }
  static std::vector<Tensor> backward(autograd::Ctx& ctx, std::vector<Tensor> g) {
    Tensor x = ctx.saved(0), lse = ctx.saved(1);
    Tensor dx = Tensor::empty(x.shape(), x.dtype());
    const int64_t real = int64_t(ctx.reals[0]);
    cpu::softmax_minus_onehot(dx, x, lse, g[0].contiguous(), ctx.ints, real);
    return {dx, Tensor()};
  }
};

// vocab_parallel_linear_cross_entropy: one chunk of rows at a time, logits (n, Vl) -> loss and
// the unit-upstream gradients; dh and dw are saved and scaled by the upstream gradient in backward.
struct LinearCrossEntropyFn {
  static constexpr const char* kName = "LinearCrossEntropyBackward";
  // h (N, C), w (Vl, C), targets (N) -> scalar loss
  static Tensor forward(autograd::Ctx& ctx, const Tensor& h, const Tensor& w,
                        const Tensor& targets, const VocabPartition& part, Communicator& tp,
                        int64_t ignore_index, Reduction reduction) {
    const int64_t N = h.size(0), C = h.size(1), Vl = w.size(0);
    const int64_t real = std::clamp<int64_t>(part.vocab_size - part.start, 0, Vl);
    std::vector<int64_t> col;
    int64_t count = 0;
    for (int64_t t : targets.to_vector<int64_t>()) {
      col.push_back(t == ignore_index                 ? cpu::kTargetIgnored
                    : t >= part.start && t < part.end ? t - part.start
                                                      : cpu::kTargetElsewhere);
      count += t != ignore_index;
    }
    const double scale = reduction == Reduction::Mean ? (count > 0 ? 1.0 / double(count) : 0.0) : 1.0;
    const bool grads = ctx.needs_grad(0) || ctx.needs_grad(1);
    Tensor dh = grads ? Tensor::empty({N, C}, h.dtype()) : Tensor();
    Tensor dw = grads ? Tensor::zeros({Vl, C}, w.dtype()) : Tensor();
    // Rows per chunk: about 8M logits (32 MiB in f32) at a time.
    const int64_t chunk = std::clamp<int64_t>((int64_t(1) << 23) / std::max<int64_t>(Vl, 1), 1, N);
    double total = 0.0;
    for (int64_t r0 = 0; r0 < N; r0 += chunk) {
      const int64_t n = std::min(chunk, N - r0);
      const Tensor hc = h.narrow(0, r0, n);
      const Tensor x = linear(hc, w);  // (n, Vl)
      const std::vector<int64_t> cc(col.begin() + r0, col.begin() + r0 + n);
      Tensor m = Tensor::empty({n}, x.dtype()), s = Tensor::empty({n}, x.dtype());
      Tensor tl = Tensor::empty({n}, x.dtype());
      cpu::row_max(m, x, real);
      tp.all_reduce(m, ReduceOp::Max);
      cpu::row_sum_exp_and_pick(s, tl, x, m, cc, real);
      tp.all_reduce(s);
      tp.all_reduce(tl);
      const Tensor lse = m + log(s);  // (n)
      const std::vector<double> l = lse.to_vector<double>(), t = tl.to_vector<double>();
      for (int64_t i = 0; i < n; ++i)
        if (cc[size_t(i)] != cpu::kTargetIgnored) total += l[size_t(i)] - t[size_t(i)];
      if (!grads) continue;
      Tensor dx = Tensor::empty({n, Vl}, x.dtype());
      cpu::softmax_minus_onehot(dx, x, lse, Tensor::full({n}, scale, x.dtype()), cc, real);
      dh.narrow(0, r0, n).copy_(matmul(dx, w));  // (n, C): this rank's columns' part
      addmm_(dw, dx.t(), hc);                     // (Vl, C)
    }
    if (grads) ctx.save(dh, dw);
    return Tensor::scalar(total * scale, h.dtype());
  }
  // NB: consumes the saved gradients (scaled in place, then handed on without a copy), so a second
  // backward through the node (retain_graph) is an error.
  static std::vector<Tensor> backward(autograd::Ctx& ctx, std::vector<Tensor> g) {
    LOOM_CHECK(ctx.num_saved() == 2, "vocab_parallel_linear_cross_entropy: expected one backward ",
               "through the fused LM head, got a second (retain_graph is not supported here)");
    const double up = g[0].item();
    Tensor dh = ctx.saved(0), dw = ctx.saved(1);
    ctx.release();
    if (up != 1.0) {
      dh.mul_(up);
      dw.mul_(up);
    }
    return {dh, dw, Tensor()};
  }
};

}  // namespace

int64_t padded_vocab_size(int64_t vocab_size, int tp, int64_t pad_multiple) {
  LOOM_CHECK(vocab_size >= 1, "padded_vocab_size: expected vocab_size >= 1, got ", vocab_size);
  LOOM_CHECK(tp >= 1 && pad_multiple >= 1, "padded_vocab_size: expected tp >= 1 and ",
             "pad_multiple >= 1, got ", tp, " and ", pad_multiple);
  const int64_t m = std::lcm(pad_multiple, int64_t(tp));
  return (vocab_size + m - 1) / m * m;
}

VocabPartition VocabPartition::make(int64_t vocab_size, int tp, int tp_rank, int64_t pad_multiple) {
  VocabPartition p;
  p.vocab_size = vocab_size;
  p.padded_size = padded_vocab_size(vocab_size, tp, pad_multiple);
  LOOM_CHECK(tp_rank >= 0 && tp_rank < tp, "VocabPartition: expected tp_rank in [0, ", tp,
             "), got ", tp_rank);
  const int64_t local = p.padded_size / tp;
  p.start = local * tp_rank;
  p.end = p.start + local;
  return p;
}

VocabParallelEmbedding::VocabParallelEmbedding(const VocabPartition& part, int64_t dim,
                                               Communicator& tp, double init_std, bool owner,
                                               DType dtype, Device device)
    : part_(part), tp_(tp) {
  LOOM_CHECK(part.local_size() * tp.size() == part.padded_size,
             "VocabParallelEmbedding: expected a partition for ", tp.size(), " TP ranks (",
             part.padded_size, " rows), got ", part.local_size(), " local rows");
  LOOM_CHECK(dim >= 1, "VocabParallelEmbedding: expected dim >= 1, got ", dim);
  nn::ParamMeta m{ShardSpec::row_range({part.padded_size, dim}, part.start, part.end), owner,
                  nn::Init::Normal, init_std, part.vocab_size};
  weight_ = register_parameter("weight", Tensor::zeros({part.local_size(), dim}, dtype, device), m);
}

Tensor VocabParallelEmbedding::forward(const Tensor& ids) const {
  if (tp_.size() == 1) return embedding(weight_, ids);  // every id is a row of this rank
  check_ids("VocabParallelEmbedding", ids, part_.vocab_size, kNoIgnore);
  const Device d = ids.device();
  Tensor owned = in_range(ids, part_.start, part_.end);
  Tensor local_ids = where(owned, ids - i64(part_.start, d), i64(0, d));
  Tensor rows = embedding(weight_, local_ids);  // (..., dim)
  rows = masked_fill(rows, eq(owned, boolean(false, d)).unsqueeze(-1), 0.0);
  return reduce_from_tp(rows, tp_);
}

Tensor VocabParallelEmbedding::logits(const Tensor& h) const {
  LOOM_CHECK(h.dim() >= 1 && h.size(-1) == weight_.size(1),
             "VocabParallelEmbedding.logits: expected h (..., ", weight_.size(1), "), got ",
             h.shape());
  if (tp_.size() == 1 && part_.vocab_size < part_.padded_size)
    return linear(h, weight_.narrow(0, 0, part_.vocab_size));  // (..., vocab_size)
  return linear(copy_to_tp(h, tp_), weight_);  // (..., local rows)
}

namespace {

Tensor vocab_parallel_cross_entropy_impl(const Tensor& logits_local, const Tensor& targets,
                                         const VocabPartition& part, Communicator& tp,
                                         int64_t ignore_index, Reduction reduction, bool fused) {
  LOOM_CHECK(logits_local.dim() == 2 && logits_local.size(1) == part.local_size(),
             "vocab_parallel_cross_entropy: expected logits (N, ", part.local_size(), "), got ",
             logits_local.shape());
  LOOM_CHECK(targets.dim() == 1 && targets.size(0) == logits_local.size(0),
             "vocab_parallel_cross_entropy: expected targets (", logits_local.size(0), "), got ",
             targets.shape());
  const int64_t count =
      check_ids("vocab_parallel_cross_entropy", targets, part.vocab_size, ignore_index);
  Tensor loss = fused ? autograd::apply<FusedVocabParallelCrossEntropyFn>(logits_local, targets,
                                                                          part, tp, ignore_index)
                      : autograd::apply<VocabParallelCrossEntropyFn>(logits_local, targets, part,
                                                                     tp, ignore_index);
  if (reduction == Reduction::None) return loss;
  Tensor total = sum(loss);
  if (reduction == Reduction::Sum) return total;
  return count > 0 ? total / double(count) : total * 0.0;
}

}  // namespace

Tensor vocab_parallel_cross_entropy(const Tensor& logits_local, const Tensor& targets,
                                    const VocabPartition& part, Communicator& tp,
                                    int64_t ignore_index, Reduction reduction) {
  if (tp.size() == 1) {  // the whole vocabulary is here: the plain (fused) kernel
    const Tensor real = logits_local.size(-1) > part.vocab_size
                            ? logits_local.narrow(-1, 0, part.vocab_size)
                            : logits_local;
    return cross_entropy(real, targets, ignore_index, reduction);
  }
  const DType dt = logits_local.dtype();
  const bool fused = logits_local.device().is_cpu() && (dt == DType::F32 || dt == DType::F64);
  return vocab_parallel_cross_entropy_impl(logits_local, targets, part, tp, ignore_index, reduction,
                                           fused);
}

namespace detail {
Tensor vocab_parallel_cross_entropy_composed(const Tensor& logits_local, const Tensor& targets,
                                             const VocabPartition& part, Communicator& tp,
                                             int64_t ignore_index, Reduction reduction) {
  return vocab_parallel_cross_entropy_impl(logits_local, targets, part, tp, ignore_index, reduction,
                                           /*fused=*/false);
}
}  // namespace detail

Tensor vocab_parallel_linear_cross_entropy(const Tensor& h, const Tensor& weight,
                                           const Tensor& targets, const VocabPartition& part,
                                           Communicator& tp, int64_t ignore_index,
                                           Reduction reduction) {
  LOOM_CHECK(h.dim() == 2 && weight.dim() == 2 && h.size(1) == weight.size(1) &&
                 weight.size(0) == part.local_size() && targets.dim() == 1 &&
                 targets.size(0) == h.size(0),
             "vocab_parallel_linear_cross_entropy: expected h (N, C), weight (", part.local_size(),
             ", C) and targets (N), got ", h.shape(), ", ", weight.shape(), " and ",
             targets.shape());
  LOOM_CHECK(reduction != Reduction::None && h.device().is_cpu() &&
                 (h.dtype() == DType::F32 || h.dtype() == DType::F64) && h.dtype() == weight.dtype(),
             "vocab_parallel_linear_cross_entropy: expected a Mean or Sum reduction over f32 / f64 ",
             "CPU tensors, got ", dtype_name(h.dtype()));
  check_ids("vocab_parallel_linear_cross_entropy", targets, part.vocab_size, ignore_index);
  return autograd::apply<LinearCrossEntropyFn>(copy_to_tp(h, tp).contiguous(), weight.contiguous(),
                                               targets, part, tp, ignore_index, reduction);
}

}  // namespace loom::tp
