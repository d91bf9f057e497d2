// clip_grad_norm: f64 sum of squared gradient norms in parameter order (one host sync), then
// one in-place scale per gradient.
#include "optim/ClipGradNorm.h"

#include <algorithm>
#include <cmath>

#include "core/autograd/GradMode.h"
#include "core/ops/Elementwise.h"
#include "core/ops/Indexing.h"
#include "core/ops/Reduction.h"
#include "core/util/Check.h"

namespace loom::optim {

double grad_sq_sum(const std::vector<Tensor>& params) {
  NoGradGuard no_grad;
  // One f64 sum of squares per gradient, left on its device; a single copy to the host then adds
  // them in parameter order. (A host read per tensor would sync the GPU once per parameter.)
  // NB: chunks of kChunk elements keep the f64 copy and its square small: converting a whole
  // (V, C) embedding gradient at once cost twice its size in f64 at the step's memory peak.
  constexpr int64_t kChunk = int64_t(1) << 20;
  std::vector<Tensor> parts;
  for (const Tensor& p : params) {
    Tensor g = p.grad();
    if (!g.defined() || g.numel() == 0) continue;
    Tensor flat = g.is_contiguous() ? g.view({g.numel()}) : g.contiguous().view({g.numel()});
    for (int64_t at = 0; at < flat.numel(); at += kChunk) {
      Tensor c = flat.narrow(0, at, std::min(kChunk, flat.numel() - at));
      Tensor part = sum(square(c.dtype() == DType::F64 ? c : c.to(DType::F64))).reshape({1});
      if (!parts.empty() && part.device() != parts.front().device())
        part = part.to(parts.front().device());
      parts.push_back(part);
    }
  }
  double sq = 0.0;
  if (parts.empty()) return sq;
  for (double x : cat(parts, 0).to_vector<double>()) sq += x;
  return sq;
}

void scale_grads(const std::vector<Tensor>& params, double coef) {
  NoGradGuard no_grad;
  for (const Tensor& p : params) {
    Tensor g = p.grad();
    if (g.defined()) g.mul_(coef);
  }
}

double clip_coefficient(double total, double max_norm) {
  if (!std::isfinite(total)) return 1.0;
  const double coef = max_norm / (total + 1e-6);
  return coef < 1.0 ? coef : 1.0;
}

double grad_norm(const std::vector<Tensor>& params) { return std::sqrt(grad_sq_sum(params)); }

double clip_grad_norm(const std::vector<Tensor>& params, double max_norm) {
  LOOM_CHECK(max_norm > 0.0, "clip_grad_norm: expected max_norm > 0, got ", max_norm);
  const double total = grad_norm(params);
  const double coef = clip_coefficient(total, max_norm);
  if (coef < 1.0) scale_grads(params, coef);
  return total;
}

double clip_grad_norm(const std::vector<NamedParam>& params, double max_norm) {
  std::vector<Tensor> ts;
  ts.reserve(params.size());
  for (const auto& [name, p] : params) ts.push_back(p);
  return clip_grad_norm(ts, max_norm);
}

}  // namespace loom::optim
