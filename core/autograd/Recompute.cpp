// recompute (see Recompute.h): a Node that holds fn and its inputs instead of fn's graph.
#include "core/autograd/Recompute.h"

#include "core/autograd/Engine.h"
#include "core/autograd/Function.h"
#include "core/autograd/GradMode.h"
#include "core/autograd/Node.h"
#include "core/util/Check.h"

namespace loom::autograd {

namespace {

class RecomputeNode : public Node {
 public:
  RecomputeNode(RecomputeFn fn, const std::vector<Tensor>& inputs) : fn_(std::move(fn)) {
    for (const Tensor& t : inputs) saved_.emplace_back(t);
  }

  std::vector<Tensor> apply(std::vector<Tensor>&& grads) override {
    LOOM_CHECK(!released, "autograd: RecomputeBackward: trying to backward through the graph a "
               "second time (its saved inputs were freed)");
    std::vector<Tensor> in;
    for (const SavedTensor& s : saved_) {
      Tensor t = s.defined() ? s.unpack("Recompute").detach() : Tensor();
      if (t.defined() && is_floating(t.dtype())) t.set_requires_grad(true);
      in.push_back(t);
    }
    Tensor y;
    {
      EnableGradGuard grad;
      y = fn_(in);
    }
    if (y.requires_grad()) run_backward({y}, {grads[0]}, /*retain_graph=*/false);
    std::vector<Tensor> out;
    for (size_t i = 0; i < in.size(); ++i)
      out.push_back(next_edges[i].valid() && in[i].defined() ? in[i].grad() : Tensor());
    return out;
  }
  std::string name() const override { return "RecomputeBackward"; }
  void release_saved() override {
    saved_.clear();
    fn_ = nullptr;
    released = true;
  }

 private:
  RecomputeFn fn_;
  std::vector<SavedTensor> saved_;
};

}  // namespace

Tensor recompute(RecomputeFn fn, const std::vector<Tensor>& inputs) {
  if (!GradMode::is_enabled()) return fn(inputs);
  Tensor y;
  {
    NoGradGuard no_grad;
    y = fn(inputs);
  }
  auto node = std::make_shared<RecomputeNode>(std::move(fn), inputs);
  std::vector<Tensor> outs{y};
  detail::connect(node, inputs, outs);
  return outs[0];
}

}  // namespace loom::autograd
