// PipelineP2P: point-to-point transfer of activations (forward) and their gradients (backward)
// between adjacent pipeline stages over the pipeline group (group rank = stage index). Every
// message has the one activation shape fixed at construction (micro-batch b, T, C), so receivers
// allocate their buffer up front. Sends are asynchronous: the sent tensor is kept alive until
// wait_sends(); receives are posted asynchronously and wait() under the communicator's deadline,
// so a stage whose neighbour never sends raises CommTimeout instead of hanging.
//   PipelineP2P p2p(grid.pp_group(), {b, T, C}, DType::F32);
//   if (!p2p.is_last()) p2p.send_forward(y, mb);
//   Tensor x = p2p.recv_forward(mb);   // on stage s > 0
#pragma once

#include <cstdint>
#include <utility>
#include <vector>

#include "core/tensor/Tensor.h"
#include "parallel/comm/Communicator.h"

namespace loom::pipeline {

class PipelineP2P {
 public:
  PipelineP2P(Communicator& pp, Shape activation_shape, DType dtype);
  ~PipelineP2P();  // waits for outstanding sends (logs, never throws)
  PipelineP2P(const PipelineP2P&) = delete;
  PipelineP2P& operator=(const PipelineP2P&) = delete;

  int stage() const { return pp_.rank(); }
  int num_stages() const { return pp_.size(); }
  bool is_first() const { return stage() == 0; }
  bool is_last() const { return stage() == num_stages() - 1; }
  const Shape& activation_shape() const { return shape_; }
  Communicator& group() const { return pp_; }

  // act (b,T,C) of micro-batch mb to stage+1 (not on the last stage). Async.
  void send_forward(const Tensor& act, int64_t mb);
  // The activation of micro-batch mb from stage-1 (not on the first stage). Blocks until it
  // arrived or the deadline passed.
  Tensor recv_forward(int64_t mb);
  // grad (b,T,C) w.r.t. this stage's input of micro-batch mb to stage-1. Async.
  void send_backward(const Tensor& grad, int64_t mb);
  // The gradient w.r.t. this stage's output of micro-batch mb from stage+1.
  Tensor recv_backward(int64_t mb);

  // Waits for every send issued so far and releases its buffer.
  void wait_sends();
  int64_t pending_sends() const { return int64_t(pending_.size()); }

 private:
  void send(const Tensor& t, int peer, int tag, const char* what);
  Tensor recv(int peer, int tag, const char* what);
  static int tag_of(int64_t mb, bool backward);

  Communicator& pp_;
  Shape shape_;
  DType dtype_;
  std::vector<std::pair<WorkPtr, Tensor>> pending_;  // in-flight sends and their buffers
};

}  // namespace loom::pipeline
