// RewardModel: a GPT backbone with a scalar head on the final hidden states, for the REWARD stage
// (score at the last real token of each sequence) and later a PPO critic (a value per token).
// It IS a GPT (the LM head stays, so one checkpoint layout serves every stage): its parameters are
// the GPT's, named as in GPT.h, followed by value_head.weight (1,C) and value_head.bias (1).
//   RewardModel rm(cfg);
//   rm.init_weights(1337);
//   Tensor r = rm.score(ids, last);                 // ids (B,T), last (B) I64 -> (B)
//   Tensor v = rm.values(ids);                      // (B,T)
#pragma once

#include "models/GPT.h"

namespace loom::models {

class RewardModel : public GPT {
 public:
  // The backbone as GPT(config, layout), then the head on the last stage: weight (1,C), bias (1),
  // replicated over TP ranks; init_weights draws it N(0, 1/sqrt(C+1)), bias 0.
  explicit RewardModel(const GPTConfig& config, Layout layout = {}, DType dtype = DType::F32,
                       Device device = Device::cpu());
  // Final hidden states h (B,T,C) -> the head's value at every position (B,T). Last stage.
  Tensor values_of(const Tensor& h) const;
  // ids (B,T) I64 -> (B,T) (pp == 1).
  Tensor values(const Tensor& ids);
  // ids (B,T) I64, last (B) I64 (index of each row's last real token) -> (B) (pp == 1).
  Tensor score(const Tensor& ids, const Tensor& last);

 private:
  std::unique_ptr<Linear> value_head_;  // last stage
};

// values (B,T), last (B) I64 -> values[b, last[b]] (B); differentiable in values.
Tensor select_last(const Tensor& values, const Tensor& last);

}  // namespace loom::models
