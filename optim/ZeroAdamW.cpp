// ZeroAdamW (see ZeroAdamW.h): flat layout, reduce-scatter / clip / shard update / all-gather,
// and the conversion between sharded and logical optimizer state.
#include "optim/ZeroAdamW.h"

#include <cmath>

#include "core/autograd/GradMode.h"
#include "core/ops/Elementwise.h"
#include "core/ops/Reduction.h"
#include "core/util/Check.h"

namespace loom {

ZeroAdamW::ZeroAdamW(std::vector<optim::ParamGroup> groups, const optim::AdamWOptions& options,
                     Communicator& dp, ZeroNormOptions norm)
    : dp_(dp), norm_(std::move(norm)), groups_(std::move(groups)) {
  for (size_t gi = 0; gi < groups_.size(); ++gi) {
    for (const auto& [name, p] : groups_[gi].params) {
      if (!slots_.empty()) {
        const Tensor& first = slots_.front().param;
        LOOM_CHECK(p.dtype() == first.dtype() && p.device() == first.device(),
                   "ZeroAdamW: expected every parameter in one dtype and device, got '", name,
                   "' as ", dtype_name(p.dtype()), " while '", slots_.front().name, "' is ",
                   dtype_name(first.dtype()));
      }
      slots_.push_back({name, p, total_, int(gi)});
      total_ += p.numel();
    }
  }
  LOOM_CHECK(!slots_.empty(), "ZeroAdamW: expected at least one parameter, got none");
  const int n = dp_.size();
  shard_ = (total_ + n - 1) / n;
  lo_ = shard_ * dp_.rank();
  const DType dt = slots_.front().param.dtype();
  const Device dev = slots_.front().param.device();
  flat_grad_ = Tensor::zeros({shard_ * n}, dt, dev);
  flat_param_ = Tensor::zeros({shard_ * n}, dt, dev);
  grad_shard_ = Tensor::zeros({shard_}, dt, dev);
  param_shard_ = Tensor::zeros({shard_}, dt, dev);
  m_shard_ = Tensor::zeros({shard_}, dt, dev);
  v_shard_ = Tensor::zeros({shard_}, dt, dev);

  // The local AdamW sees one "parameter" per (parameter x shard) overlap: views of the shard
  // buffers, with the parameter's name and group, so lr / weight decay per group carry over.
  std::vector<optim::ParamGroup> local(groups_.size());
  for (size_t gi = 0; gi < groups_.size(); ++gi) {
    local[gi].lr = groups_[gi].lr;
    local[gi].weight_decay = groups_[gi].weight_decay;
  }
  if (!norm_.not_counted.empty()) norm_mask_ = Tensor::ones({shard_}, DType::F64, dev);
  for (const Slot& s : slots_) {
    int64_t a = std::max(s.offset, lo_), b = std::min(s.offset + s.param.numel(), lo_ + shard_);
    if (a >= b) continue;
    local[size_t(s.group)].params.emplace_back(s.name, param_shard_.narrow(0, a - lo_, b - a));
    shard_offset_[s.name] = a - lo_;
    if (norm_.not_counted.count(s.name)) norm_mask_.narrow(0, a - lo_, b - a).zero_();
  }
  std::vector<optim::ParamGroup> nonempty;
  for (auto& g : local)
    if (!g.params.empty()) nonempty.push_back(std::move(g));
  if (nonempty.empty()) return;
  local_ = std::make_unique<optim::AdamW>(nonempty, options);
  for (const auto& g : local_->param_groups()) {
    for (const auto& [name, view] : g.params) {
      int64_t off = shard_offset_.at(name);
      optim::ParamState& st = local_->state(name);
      st.buffers["exp_avg"] = m_shard_.narrow(0, off, view.numel());
      st.buffers["exp_avg_sq"] = v_shard_.narrow(0, off, view.numel());
    }
  }
}

ZeroAdamW::~ZeroAdamW() = default;

void ZeroAdamW::set_lr(double lr) {
  for (auto& g : groups_) g.lr = lr;
  if (local_) local_->set_lr(lr);
}

void ZeroAdamW::zero_grad() {
  for (const Slot& s : slots_) s.param.set_grad(Tensor());
}

void ZeroAdamW::pack_grads() {
  flat_grad_.zero_();
  for (const Slot& s : slots_) {
    Tensor g = s.param.grad();
    if (g.defined()) flat_grad_.narrow(0, s.offset, s.param.numel()).view(s.param.shape()).copy_(g);
  }
}

double ZeroAdamW::clip_shard(double max_norm) {
  Tensor g64 = grad_shard_.to(DType::F64);
  if (norm_mask_.defined()) g64 = g64 * norm_mask_;
  Tensor sq = sum(square(g64)).reshape({1});
  if (sq.device() != Device::cpu()) sq = sq.to(Device::cpu());
  dp_.all_reduce(sq);
  if (norm_.model_parallel) norm_.model_parallel->all_reduce(sq);
  const double total = std::sqrt(sq.item());
  if (max_norm <= 0.0 || !std::isfinite(total)) return total;
  const double coef = max_norm / (total + 1e-6);  // as optim::clip_grad_norm
  if (coef < 1.0) grad_shard_.mul_(coef);
  return total;
}

void ZeroAdamW::scatter_params() {
  for (const Slot& s : slots_) {
    int64_t a = std::max(s.offset, lo_), b = std::min(s.offset + s.param.numel(), lo_ + shard_);
    if (a >= b) continue;
    param_shard_.narrow(0, a - lo_, b - a)
        .copy_(s.param.detach().reshape({-1}).narrow(0, a - s.offset, b - a));
  }
}

double ZeroAdamW::step(double max_norm) {
  NoGradGuard no_grad;
  pack_grads();
  dp_.reduce_scatter(grad_shard_, flat_grad_);
  grad_shard_.mul_(1.0 / double(dp_.size()));
  const double norm = clip_shard(max_norm);
  // The parameters are replicated; the shard is re-read each step so that outside changes
  // (checkpoint loads, broadcasts) are never overwritten by a stale copy.
  scatter_params();
  if (local_) {
    for (const auto& g : local_->param_groups()) {
      for (const auto& [name, view] : g.params) {
        int64_t off = shard_offset_.at(name);
        view.set_grad(grad_shard_.narrow(0, off, view.numel()));
      }
    }
    local_->step();
  }
  dp_.all_gather(flat_param_, param_shard_);
  for (const Slot& s : slots_) {
    s.param.detach().copy_(flat_param_.narrow(0, s.offset, s.param.numel()).view(s.param.shape()));
    s.param.bump_version();
  }
  ++step_count_;
  return norm;
}

std::map<std::string, optim::ParamState> ZeroAdamW::gather_states() {
  NoGradGuard no_grad;
  std::map<std::string, optim::ParamState> out;
  Tensor m_full = Tensor::zeros({shard_ * dp_.size()}, m_shard_.dtype(), m_shard_.device());
  Tensor v_full = Tensor::zeros({shard_ * dp_.size()}, v_shard_.dtype(), v_shard_.device());
  dp_.all_gather(m_full, m_shard_);
  dp_.all_gather(v_full, v_shard_);
  if (step_count_ == 0) return out;  // like AdamW: no state before the first update
  for (const Slot& s : slots_) {
    optim::ParamState st;
    st.step = step_count_;
    st.buffers["exp_avg"] = m_full.narrow(0, s.offset, s.param.numel()).view(s.param.shape()).clone();
    st.buffers["exp_avg_sq"] =
        v_full.narrow(0, s.offset, s.param.numel()).view(s.param.shape()).clone();
    out[s.name] = std::move(st);
  }
  return out;
}

void ZeroAdamW::load_states(const std::map<std::string, optim::ParamState>& states,
                            int64_t step_count) {
  NoGradGuard no_grad;
  step_count_ = step_count;
  m_shard_.zero_();
  v_shard_.zero_();
  for (const Slot& s : slots_) {
    auto it = states.find(s.name);
    if (it == states.end()) continue;
    int64_t a = std::max(s.offset, lo_), b = std::min(s.offset + s.param.numel(), lo_ + shard_);
    if (a >= b) continue;
    for (auto [key, dst] : {std::pair{"exp_avg", m_shard_}, std::pair{"exp_avg_sq", v_shard_}}) {
      auto buf = it->second.buffers.find(key);
      LOOM_CHECK(buf != it->second.buffers.end() && buf->second.numel() == s.param.numel(),
                 "ZeroAdamW::load_states: expected ", key, " of ", s.param.numel(),
                 " elements for '", s.name, "'");
      dst.narrow(0, a - lo_, b - a)
          .copy_(buf->second.reshape({-1}).narrow(0, a - s.offset, b - a).to(dst.device()));
    }
    if (local_) local_->state(s.name).step = it->second.step;
  }
  if (local_) local_->set_step_count(step_count);
}

}  // namespace loom
