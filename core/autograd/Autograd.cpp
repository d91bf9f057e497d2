// GradMode, saved tensors, leaf accumulation and the wiring of recorded ops (Function.h).
#include <atomic>

#include "core/autograd/Function.h"
#include "core/autograd/GradMode.h"
#include "core/autograd/Node.h"

namespace loom::autograd {

namespace {
thread_local bool t_grad_enabled = true;
std::atomic<uint64_t> g_next_sequence_nr{0};
}  // namespace

bool GradMode::is_enabled() { return t_grad_enabled; }
void GradMode::set_enabled(bool enabled) { t_grad_enabled = enabled; }

Node::Node() : sequence_nr(g_next_sequence_nr.fetch_add(1, std::memory_order_relaxed)) {}

AutogradMeta& meta(const Tensor& t) {
  auto& m = t.impl().autograd;
  if (!m) m = std::make_shared<AutogradMeta>();
  return *m;
}

SavedTensor::SavedTensor(const Tensor& t) {
  if (!t.defined()) return;
  data_ = t.detach();
  version_ = t.version();
}

Tensor SavedTensor::unpack(const std::string& op_name) const {
  if (data_.defined() && data_.version() != version_) {
    throw ValueError(loom::detail::str_cat(
        "autograd: a tensor of shape ", shape_str(data_.shape()), " saved by ", op_name,
        " for backward was modified in place (saved at version ", version_, ", now version ",
        data_.version(), "); hint: use an out-of-place op or clone() it before modifying"));
  }
  return data_;
}

Tensor Ctx::saved(size_t i) const {
  LOOM_INTERNAL_ASSERT(i < saved_.size(), op_name_, ": saved(", i, ") of ", saved_.size());
  return saved_[i].unpack(op_name_);
}

AccumulateGrad::AccumulateGrad(const Tensor& leaf) : leaf_(leaf.impl_ptr()) {
  outputs.push_back(OutputMeta{leaf.shape(), leaf.dtype(), leaf.device()});
  eager = true;
}

std::vector<Tensor> AccumulateGrad::apply(std::vector<Tensor>&& grads) {
  auto impl = leaf_.lock();
  if (!impl) return {};
  Tensor leaf(impl);
  Tensor g = std::move(grads[0]);
  AutogradMeta& m = meta(leaf);
  if (!m.grad.defined()) {
    // Steal the incoming buffer when nobody else can see it; otherwise copy, so that .grad never
    // aliases another tensor (in-place accumulation later would corrupt it).
    bool sole = g.impl_ptr().use_count() == 1 && g.storage().use_count() == 1 &&
                g.is_contiguous() && g.offset() == 0 && g.dtype() == leaf.dtype();
    m.grad = sole ? g : g.to(leaf.dtype()).clone();
  } else {
    m.grad.add_(g.dtype() == leaf.dtype() ? g : g.to(leaf.dtype()));
  }
  for (auto& [id, hook] : m.post_accumulate_hooks) hook(leaf);
  return {};
}

Edge gradient_edge(const Tensor& t) {
  if (!t.defined() || !t.requires_grad()) return {};
  AutogradMeta& m = meta(t);
  if (m.grad_fn) return Edge{m.grad_fn, m.output_nr};
  std::shared_ptr<Node> acc = m.grad_accumulator.lock();
  if (!acc) {
    acc = std::make_shared<AccumulateGrad>(t);
    m.grad_accumulator = acc;
  }
  return Edge{acc, 0};
}

namespace detail {

bool any_requires_grad(const std::vector<Tensor>& ts) {
  for (const Tensor& t : ts)
    if (t.defined() && t.requires_grad()) return true;
  return false;
}

void connect(const std::shared_ptr<Node>& node, const std::vector<Tensor>& inputs,
             std::vector<Tensor>& outputs) {
  node->next_edges.reserve(inputs.size());
  for (const Tensor& t : inputs) node->next_edges.push_back(gradient_edge(t));
  for (size_t i = 0; i < outputs.size(); ++i) {
    Tensor& out = outputs[i];
    if (!out.defined()) {
      node->outputs.push_back(OutputMeta{});
      continue;
    }
    // forward ran with grad mode off, so fresh outputs carry no autograd meta; one that does is
    // an existing tensor returned as-is, which must keep its own history: alias it.
    if (out.impl().autograd) out = make_view(out, out.shape(), out.strides(), out.offset());
    AutogradMeta& m = meta(out);
    m.requires_grad = is_floating(out.dtype());
    m.grad_fn = m.requires_grad ? node : nullptr;
    m.output_nr = uint32_t(i);
    node->outputs.push_back(OutputMeta{out.shape(), out.dtype(), out.device()});
  }
}

}  // namespace detail
}  // namespace loom::autograd
