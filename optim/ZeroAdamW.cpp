// ZeroAdamW (see ZeroAdamW.h): flat layout, shard update, all-gather, and the conversion between
// sharded and logical optimizer state.
#include "optim/ZeroAdamW.h"

#include <algorithm>

#include "core/autograd/GradMode.h"
#include "core/util/Check.h"

namespace loom::optim {

ZeroAdamW::ZeroAdamW(std::vector<ParamGroup> groups, const AdamWOptions& options, Communicator& dp,
                     int64_t gather_chunk)
    : Optimizer(std::move(groups)), dp_(dp) {
  LOOM_CHECK(gather_chunk >= 1, "ZeroAdamW: expected gather_chunk >= 1, got ", gather_chunk);
  for (const ParamGroup& g : groups_) {
    for (const auto& [name, p] : g.params) {
      if (!slots_.empty()) {
        const Tensor& first = slots_.front().param;
        LOOM_CHECK(p.dtype() == first.dtype() && p.device() == first.device(),
                   "ZeroAdamW: expected every parameter in one dtype and device, got '", name,
                   "' as ", dtype_name(p.dtype()), " while '", slots_.front().name, "' is ",
                   dtype_name(first.dtype()));
      }
      slots_.push_back({name, p, total_});
      total_ += p.numel();
    }
  }
  LOOM_CHECK(!slots_.empty(), "ZeroAdamW: expected at least one parameter, got none");
  const int n = dp_.size();
  shard_ = (total_ + n - 1) / n;
  lo_ = shard_ * dp_.rank();
  const DType dt = slots_.front().param.dtype();
  const Device dev = slots_.front().param.device();
  chunk_ = std::min(gather_chunk, shard_);
  gather_buf_ = Tensor::empty({chunk_ * n}, dt, dev);
  send_buf_ = Tensor::zeros({chunk_}, dt, dev);
  m_shard_ = Tensor::zeros({shard_}, dt, dev);
  v_shard_ = Tensor::zeros({shard_}, dt, dev);

  // The local AdamW sees one "parameter" per (parameter x shard) overlap: a view of that part of
  // the parameter itself, updated in place, with the parameter's name and group, so lr / weight
  // decay per group carry over; its moments are views of the moment shards.
  std::vector<ParamGroup> local;
  size_t slot = 0;
  for (size_t gi = 0; gi < groups_.size(); ++gi) {
    const ParamGroup& g = groups_[gi];
    ParamGroup lg{{}, g.lr, g.weight_decay};
    for (size_t i = 0; i < g.params.size(); ++i, ++slot) {
      const auto [a, b] = overlap(slots_[slot]);
      if (a >= b) continue;
      lg.params.emplace_back(slots_[slot].name, flat_part(slots_[slot].param.detach(), slot, a, b));
      local_slots_.push_back(slot);
    }
    if (lg.params.empty()) continue;
    local.push_back(std::move(lg));
    local_source_.push_back(gi);
  }
  if (local.empty()) return;
  local_ = std::make_unique<AdamW>(std::move(local), options);
  for (size_t k = 0; k < local_slots_.size(); ++k) {
    const Slot& sl = slots_[local_slots_[k]];
    const auto [a, b] = overlap(sl);
    ParamState& st = local_->state(sl.name);
    st.buffers["exp_avg"] = m_shard_.narrow(0, a - lo_, b - a);
    st.buffers["exp_avg_sq"] = v_shard_.narrow(0, a - lo_, b - a);
  }
}

ZeroAdamW::~ZeroAdamW() = default;

std::pair<int64_t, int64_t> ZeroAdamW::overlap(const Slot& s) const {
  return {std::max(s.offset, lo_), std::min(s.offset + s.param.numel(), lo_ + shard_)};
}

Tensor ZeroAdamW::flat_part(const Tensor& t, size_t slot, int64_t a, int64_t b) const {
  return t.reshape({-1}).narrow(0, a - slots_[slot].offset, b - a);
}

void ZeroAdamW::step() {
  NoGradGuard no_grad;
  if (local_) {
    size_t k = 0;
    for (size_t i = 0; i < local_->param_groups().size(); ++i) {
      ParamGroup& g = local_->param_groups()[i];
      g.lr = groups_[local_source_[i]].lr;  // what set_lr() left in the source group
      for (const auto& [name, view] : g.params) {
        const size_t slot = local_slots_[k++];
        const auto [a, b] = overlap(slots_[slot]);
        const Tensor grad = slots_[slot].param.grad();
        view.set_grad(grad.defined() ? flat_part(grad, slot, a, b)
                                     : Tensor::zeros({b - a}, view.dtype(), view.device()));
      }
    }
    local_->step();
    for (const auto& g : local_->param_groups())
      for (const auto& [name, view] : g.params) view.set_grad(Tensor());
  }
  // Round k gathers elements [k, k + len) of every rank's shard: rank r's piece is the flat range
  // [r * shard_ + k, r * shard_ + k + len), packed from the parameters into send_buf_.
  const int n = dp_.size(), me = dp_.rank();
  for (int64_t k = 0; k < shard_; k += chunk_) {
    const int64_t len = std::min(chunk_, shard_ - k);
    Tensor send = send_buf_.narrow(0, 0, len);
    copy_params(send, lo_ + k, /*to_params=*/false);
    Tensor out = gather_buf_.narrow(0, 0, len * n);
    dp_.all_gather(out, send);
    for (int r = 0; r < n; ++r)
      if (r != me) copy_params(out.narrow(0, r * len, len), r * shard_ + k, /*to_params=*/true);
  }
  for (const Slot& s : slots_) s.param.bump_version();
  ++step_count_;
}

void ZeroAdamW::copy_params(const Tensor& piece, int64_t begin, bool to_params) {
  const int64_t end = begin + piece.numel();
  for (size_t i = 0; i < slots_.size(); ++i) {
    const Slot& s = slots_[i];
    const int64_t a = std::max(begin, s.offset), b = std::min(end, s.offset + s.param.numel());
    if (a >= b) continue;
    Tensor p = flat_part(s.param.detach(), i, a, b), q = piece.narrow(0, a - begin, b - a);
    if (to_params)
      p.copy_(q);
    else
      q.copy_(p);
  }
}

std::map<std::string, ParamState> ZeroAdamW::export_states() {
  NoGradGuard no_grad;
  std::map<std::string, ParamState> out;
  if (step_count_ == 0) return out;  // like AdamW: no state before the first update (every rank)
  // A parameter's moments meet on the rank whose shard holds its first element, which writes
  // them; the ranks holding the rest send their parts. Every rank walks the same (sender, writer)
  // pairs in the same order, so the blocking sends and receives cannot deadlock.
  constexpr int kTagM = 7301, kTagV = 7302;
  const int me = dp_.rank();
  for (const Slot& s : slots_) {
    ParamState st;
    st.step = step_count_;
    const int64_t n = s.param.numel();
    const int writer = int(s.offset / shard_), last = int((s.offset + n - 1) / shard_);
    if (me == writer) {
      Tensor m = Tensor::empty(s.param.shape(), m_shard_.dtype(), m_shard_.device());
      Tensor v = Tensor::empty(s.param.shape(), v_shard_.dtype(), v_shard_.device());
      for (int r = writer; r <= last; ++r) {  // each rank's part, received in place
        const int64_t a = std::max(s.offset, r * shard_);
        const int64_t b = std::min(s.offset + n, (r + 1) * shard_);
        Tensor mp = m.view({n}).narrow(0, a - s.offset, b - a);
        Tensor vp = v.view({n}).narrow(0, a - s.offset, b - a);
        if (r == me) {
          mp.copy_(m_shard_.narrow(0, a - lo_, b - a));
          vp.copy_(v_shard_.narrow(0, a - lo_, b - a));
        } else {
          dp_.recv(mp, r, kTagM);
          dp_.recv(vp, r, kTagV);
        }
      }
      st.buffers["exp_avg"] = m;
      st.buffers["exp_avg_sq"] = v;
    } else if (me > writer && me <= last) {
      const auto [a, b] = overlap(s);
      dp_.send(m_shard_.narrow(0, a - lo_, b - a), writer, kTagM);
      dp_.send(v_shard_.narrow(0, a - lo_, b - a), writer, kTagV);
    }
    out[s.name] = std::move(st);
  }
  return out;
}

void ZeroAdamW::import_states(std::map<std::string, ParamState> states, int64_t step_count) {
  NoGradGuard no_grad;
  step_count_ = step_count;
  m_shard_.zero_();
  v_shard_.zero_();
  for (const Slot& s : slots_) {
    auto it = states.find(s.name);
    if (it == states.end()) continue;
    const auto [a, b] = overlap(s);
    if (a >= b) continue;
    for (auto [key, dst] : {std::pair{"exp_avg", m_shard_}, std::pair{"exp_avg_sq", v_shard_}}) {
      auto buf = it->second.buffers.find(key);
      LOOM_CHECK(buf != it->second.buffers.end() && buf->second.numel() == s.param.numel(),
                 "ZeroAdamW.import_states: expected ", key, " of ", s.param.numel(),
                 " elements for '", s.name, "'");
      dst.narrow(0, a - lo_, b - a)
          .copy_(buf->second.reshape({-1}).narrow(0, a - s.offset, b - a).to(dst.device()));
    }
    if (local_) local_->state(s.name).step = it->second.step;
  }
  if (local_) local_->set_step_count(step_count);
}

}  // namespace loom::optim
