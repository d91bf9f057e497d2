// Point-to-point activation / gradient transfer between adjacent pipeline stages (see P2P.h).
// Tags encode (micro-batch, direction), so a forward activation can never be matched with a
// backward gradient even when both travel between the same two ranks at once.
#include "parallel/pipeline/P2P.h"

#include <exception>

#include "core/autograd/GradMode.h"
#include "core/util/Check.h"
#include "core/util/Logging.h"

namespace loom::pipeline {

PipelineP2P::PipelineP2P(Communicator& pp, Shape activation_shape, DType dtype)
    : pp_(pp), shape_(std::move(activation_shape)), dtype_(dtype) {
  LOOM_CHECK(!shape_.empty() && shape_numel(shape_) > 0,
             "PipelineP2P: expected a non-empty activation shape, got ", shape_);
}

PipelineP2P::~PipelineP2P() {
  try {
    wait_sends();
  } catch (const std::exception& e) {
    LOG(ERROR) << "PipelineP2P: a send failed while shutting down: " << e.what();
  }
}

int PipelineP2P::tag_of(int64_t mb, bool backward) {
  // NB: MPI guarantees tags up to 32767; 2 * mb + 1 stays below that for mb < 16383.
  LOOM_CHECK(mb >= 0 && mb < 16383, "PipelineP2P: expected a micro-batch index in [0, 16383), got ",
             mb);
  return int(2 * mb + (backward ? 1 : 0));
}

void PipelineP2P::send(const Tensor& t, int peer, int tag, const char* what) {
  LOOM_CHECK(t.shape() == shape_ && t.dtype() == dtype_, "PipelineP2P.", what,
             ": expected a tensor of shape ", shape_, " and dtype ", dtype_name(dtype_), ", got ",
             t.shape(), " and ", dtype_name(t.dtype()));
  Tensor buf;
  {
    NoGradGuard no_grad;
    buf = t.detach().contiguous();
  }
  pending_.emplace_back(pp_.send_async(buf, peer, tag), buf);
}

Tensor PipelineP2P::recv(int peer, int tag, const char* what) {
  Tensor buf = Tensor::empty(shape_, dtype_);
  pp_.recv_async(buf, peer, tag)->wait();
  return buf;
}

void PipelineP2P::send_forward(const Tensor& act, int64_t mb) {
  LOOM_CHECK(!is_last(), "PipelineP2P.send_forward: expected a stage before the last, got stage ",
             stage(), " of ", num_stages());
  send(act, stage() + 1, tag_of(mb, false), "send_forward");
}

Tensor PipelineP2P::recv_forward(int64_t mb) {
  LOOM_CHECK(!is_first(),
             "PipelineP2P.recv_forward: expected a stage after the first, got stage 0");
  return recv(stage() - 1, tag_of(mb, false), "recv_forward");
}

void PipelineP2P::send_backward(const Tensor& grad, int64_t mb) {
  LOOM_CHECK(!is_first(),
             "PipelineP2P.send_backward: expected a stage after the first, got stage 0");
  send(grad, stage() - 1, tag_of(mb, true), "send_backward");
}

Tensor PipelineP2P::recv_backward(int64_t mb) {
  LOOM_CHECK(!is_last(), "PipelineP2P.recv_backward: expected a stage before the last, got stage ",
             stage(), " of ", num_stages());
  return recv(stage() + 1, tag_of(mb, true), "recv_backward");
}

void PipelineP2P::wait_sends() {
  // Pop before waiting so a throwing wait does not leave the handle to be waited again.
  while (!pending_.empty()) {
    auto [work, buf] = std::move(pending_.front());
    pending_.erase(pending_.begin());
    work->wait();
  }
}

}  // namespace loom::pipeline
