// RewardModel: a GPT backbone with a scalar head on the final hidden states, for the REWARD stage
// (score at the last real token of each sequence) and later a PPO critic (a value per token).
// It IS a GPT (the LM head stays, so one checkpoint layout serves every stage): its parameters are
// the GPT's, named as in GPT.h, followed by value_head.weight (1,C) and value_head.bias (1).
//   Generator gen(1337);
//   RewardModel rm(cfg, gen);                       // GPT init, then the head from the same gen
//   Tensor r = rm.score(ids, last);                 // ids (B,T), last (B) I64 -> (B)
//   Tensor v = rm.values(ids);                      // (B,T)
#pragma once

#include "models/GPT.h"

namespace loom::models {

class RewardModel : public GPT {
 public:
  // The backbone as GPT(config, init_gen), then the head: weight N(0, 1/sqrt(C+1)), bias 0.
  RewardModel(const GPTConfig& config, Generator& init_gen, DType dtype = DType::F32,
              Device device = Device::cpu());
  // ids (B,T) I64 -> the head's value at every position (B,T).
  Tensor values(const Tensor& ids);
  // ids (B,T) I64, last (B) I64 (index of each row's last real token) -> (B).
  Tensor score(const Tensor& ids, const Tensor& last);
  Linear& value_head() { return value_head_; }

 private:
  Linear value_head_;
};

}  // namespace loom::models
