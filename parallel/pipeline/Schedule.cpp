// GPipe and 1F1B schedules over a PipelineStage (see Schedule.h). One StageRunner holds the
// per-micro-batch state (the stage's received input leaf and its output) between a micro-batch's
// forward and its backward; the schedules only decide the order of forward_step/backward_step.
// NB: sends are asynchronous and receives block (under the deadline) right before use; with that
// rule 1F1B cannot deadlock: a stage's recv_backward(m) only needs stage+1 to have finished
// forward(m), which needs only sends that were already issued. run_pipeline_eval is the same
// sweep forward only: no StageRunner, no history, the loss averaged on the last stage.
#include "parallel/pipeline/Schedule.h"

#include <algorithm>
#include <map>

#include "core/autograd/GradMode.h"
#include "core/ops/Elementwise.h"
#include "core/util/Check.h"

namespace loom::pipeline {

const char* schedule_name(ScheduleKind kind) {
  return kind == ScheduleKind::GPipe ? "gpipe" : "1f1b";
}

int64_t warmup_forwards(int stage, int pp, int64_t num_micro_batches) {
  return std::min<int64_t>(pp - stage - 1, num_micro_batches);
}

namespace {

class StageRunner {
 public:
  StageRunner(PipelineStage& stage, PipelineP2P& p2p, const std::vector<MicroBatch>& mbs,
              const PipelineHooks& hooks)
      : stage_(stage), p2p_(p2p), mbs_(mbs), hooks_(hooks), scale_(1.0 / double(mbs.size())) {}

  void forward_step(int64_t m) {
    Live live;
    if (!p2p_.is_first()) live.input = p2p_.recv_forward(m).set_requires_grad(true);
    Tensor out = stage_.forward(live.input, mbs_[size_t(m)]);
    if (p2p_.is_last()) {
      LOOM_CHECK(out.numel() == 1,
                 "run_pipeline: expected the last stage to return a scalar loss, ", "got shape ",
                 out.shape());
      out = out * scale_;
      loss_ += out.item();
    } else {
      p2p_.send_forward(out, m);
    }
    live.output = out;
    live_.emplace(m, std::move(live));
    result_.max_live_micro_batches =
        std::max<int64_t>(result_.max_live_micro_batches, int64_t(live_.size()));
    ++result_.forwards;
  }

  void backward_step(int64_t m) {
    auto it = live_.find(m);
    LOOM_INTERNAL_ASSERT(it != live_.end(), "run_pipeline: backward of micro-batch ", m,
                         " before its forward");
    Live live = std::move(it->second);
    live_.erase(it);
    if (hooks_.before_backward) hooks_.before_backward(m);
    if (p2p_.is_last()) {
      (hooks_.backward_scale == 1.0 ? live.output : live.output * hooks_.backward_scale).backward();
    } else {
      live.output.backward(p2p_.recv_backward(m));
    }
    if (!p2p_.is_first()) {
      Tensor g = live.input.grad();
      LOOM_CHECK(g.defined(), "run_pipeline: the stage's output of micro-batch ", m,
                 " does not depend on its input (no gradient to send back)");
      p2p_.send_backward(g, m);
    }
    ++result_.backwards;
  }

  PipelineResult finish() {
    p2p_.wait_sends();
    LOOM_INTERNAL_ASSERT(live_.empty(), "run_pipeline: ", live_.size(),
                         " micro-batches never ran backward");
    Tensor loss = Tensor::scalar(p2p_.is_last() ? loss_ : 0.0, DType::F64);
    p2p_.group().broadcast(loss, p2p_.num_stages() - 1);
    result_.loss = loss.item();
    return result_;
  }

 private:
  struct Live {
    Tensor input;   // (b,T,C) leaf received from stage-1; undefined on the first stage
    Tensor output;  // (b,T,C) sent to stage+1, or the scaled loss on the last stage
  };
  PipelineStage& stage_;
  PipelineP2P& p2p_;
  const std::vector<MicroBatch>& mbs_;
  const PipelineHooks& hooks_;
  double scale_;
  double loss_ = 0.0;
  std::map<int64_t, Live> live_;
  PipelineResult result_;
};

void run_gpipe(StageRunner& r, int64_t M) {
  for (int64_t m = 0; m < M; ++m) r.forward_step(m);
  for (int64_t m = 0; m < M; ++m) r.backward_step(m);
}

void run_1f1b(StageRunner& r, int stage, int pp, int64_t M) {
  const int64_t warmup = warmup_forwards(stage, pp, M);
  int64_t next_fwd = 0, next_bwd = 0;
  for (; next_fwd < warmup; ++next_fwd) r.forward_step(next_fwd);
  while (next_fwd < M) {  // steady state: one forward, then one backward
    r.forward_step(next_fwd++);
    r.backward_step(next_bwd++);
  }
  while (next_bwd < M) r.backward_step(next_bwd++);  // cool-down
}

}  // namespace

PipelineResult run_pipeline(ScheduleKind kind, PipelineStage& stage, PipelineP2P& p2p,
                            const std::vector<MicroBatch>& micro_batches,
                            const PipelineHooks& hooks) {
  const int64_t M = int64_t(micro_batches.size());
  LOOM_CHECK(M >= 1, "run_pipeline: expected at least one micro-batch, got 0");
  StageRunner runner(stage, p2p, micro_batches, hooks);
  if (kind == ScheduleKind::GPipe) {
    run_gpipe(runner, M);
  } else {
    run_1f1b(runner, p2p.stage(), p2p.num_stages(), M);
  }
  return runner.finish();
}

double run_pipeline_eval(PipelineStage& stage, PipelineP2P& p2p,
                         const std::vector<MicroBatch>& micro_batches) {
  const int64_t M = int64_t(micro_batches.size());
  LOOM_CHECK(M >= 1, "run_pipeline_eval: expected at least one micro-batch, got 0");
  NoGradGuard no_grad;
  double total = 0.0;
  for (int64_t m = 0; m < M; ++m) {
    Tensor input = p2p.is_first() ? Tensor() : p2p.recv_forward(m);
    Tensor out = stage.forward(input, micro_batches[size_t(m)]);
    if (p2p.is_last()) {
      LOOM_CHECK(out.numel() == 1, "run_pipeline_eval: expected the last stage to return a ",
                 "scalar loss, got shape ", out.shape());
      total += out.item();
    } else {
      p2p.send_forward(out, m);
    }
  }
  p2p.wait_sends();
  Tensor loss = Tensor::scalar(p2p.is_last() ? total / double(M) : 0.0, DType::F64);
  p2p.group().broadcast(loss, p2p.num_stages() - 1);
  return loss.item();
}

}  // namespace loom::pipeline
