// LoRA adapter forwards for the column-, row-parallel and replicated linear layers (Lora.h).
#include "parallel/tensor/Lora.h"

#include "core/autograd/GradMode.h"
#include "core/ops/Elementwise.h"
#include "core/ops/Linear.h"
#include "core/ops/Nn.h"
#include "core/util/Check.h"
#include "parallel/tensor/Mappings.h"

namespace loom::tp {

void check_lora_options(const LoraOptions& o) {
  LOOM_CHECK(o.rank >= 1, "lora.rank: expected >= 1, got ", o.rank);
  LOOM_CHECK(o.alpha > 0.0, "lora.alpha: expected > 0, got ", o.alpha);
  LOOM_CHECK(o.dropout >= 0.0 && o.dropout < 1.0, "lora.dropout: expected in [0, 1), got ",
             o.dropout);
}

Tensor lora_column(const Tensor& x, const Tensor& A, const Tensor& B, const LoraOptions& o,
                   Generator* gen, Communicator& tp) {
  Tensor xd = gen != nullptr ? dropout(x, o.dropout, *gen) : x;
  Tensor u = linear(xd, A);                            // (..., r), equal on every rank
  return linear(copy_to_tp(u, tp), B) * o.scale();     // (..., out/tp)
}

Tensor lora_row(const Tensor& x, const Tensor& A, const Tensor& B, const LoraOptions& o,
                Generator* gen, Communicator& tp) {
  Tensor xd = x;
  if (gen != nullptr) {  // this rank's columns of the logical input's mask
    const int64_t local = x.size(-1);
    Shape full = x.shape();
    full.back() = local * tp.size();
    Tensor mask = dropout(Tensor::ones(full, x.dtype(), x.device()), o.dropout, *gen);
    xd = x * mask.narrow(-1, tp.rank() * local, local);
  }
  Tensor u = linear(xd, A);                            // (..., r), this rank's partial sum
  if (tp.size() > 1) u = reduce_from_tp(u, tp);
  return linear(u, B) * o.scale();                     // (..., out)
}

Tensor lora_whole(const Tensor& x, const Tensor& A, const Tensor& B, const LoraOptions& o,
                  Generator* gen) {
  Tensor xd = gen != nullptr ? dropout(x, o.dropout, *gen) : x;
  return linear(linear(xd, A), B) * o.scale();
}

Tensor lora_merge(const Tensor& W, const Tensor& A, const Tensor& B, const LoraOptions& o) {
  LOOM_CHECK(W.dim() == 2 && A.dim() == 2 && B.dim() == 2 && A.size(1) == W.size(1) &&
                 B.size(0) == W.size(0) && B.size(1) == A.size(0),
             "lora_merge: expected W (out, in), A (r, in), B (out, r), got ", W.shape(), ", ",
             A.shape(), ", ", B.shape());
  NoGradGuard g;
  return W.detach() + matmul(B.detach(), A.detach()) * o.scale();
}

}  // namespace loom::tp
