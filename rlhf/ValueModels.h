// The RL stage's reward model and critic, each of its own shape (issue 14, item 3). A model's
// shape comes from its own source: a Loom checkpoint's meta "config", an "hf:" model's
// config.json; the policy's for a fresh init or a checkpoint that records none. Its vocabulary is
// padded for the run's layout and it must split over the run's TP x PP grid (ConfigError naming
// the field otherwise). The critic's values are per policy token, so it must share the policy's
// vocabulary. A reward model whose source carries another tokenizer scores the text: the policy's
// response is decoded, prompt + response re-encoded with the reward model's tokenizer under the
// run's chat template (as a REWARD run with that tokenizer encodes them), scored at its last token.
//   RewardScorer rm(ctx, policy_tok, policy_cfg, cfg.ppo().reward_model());
//   std::vector<double> s = rm.score(rollout, texts, ctx.grid(), ctx.device());
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "data/Tokenizer.h"
#include "rlhf/ChatTemplate.h"
#include "rlhf/Rollout.h"
#include "train/Stage.h"

namespace loom::rlhf {

// What a model source says about itself.
struct SourceModel {
  models::GPTConfig config;  // padded for the run's layout
  bool own_shape = false;    // false: the policy's shape (the source records none)
  // The tokenizer the source carries; null when none.
  std::unique_ptr<data::Tokenizer> tokenizer;
};

// The model of `source` (the value of config field `field`, e.g. "ppo.reward_model") for `run`:
// its shape, or `policy` when source is "" or records no shape. ConfigError naming the field, the
// source and each problem when that shape cannot be built under run's TP x PP layout.
SourceModel read_source_model(const config::RunConfig& run, const std::string& field,
                              const std::string& source, const models::GPTConfig& policy);

// True when a and b map every id to the same token (and have as many merges).
bool same_vocabulary(const data::Tokenizer& a, const data::Tokenizer& b);

// The critic of ppo.critic_init=`source`, trained by a learner of its own. ConfigError when its
// tokenizer or vocabulary differs from the policy's (values are per policy token) or its context
// is shorter than the policy's.
std::unique_ptr<train::Learner> make_critic(train::StageContext& ctx,
                                            const data::Tokenizer& policy_tok,
                                            const models::GPTConfig& policy,
                                            const std::string& source);

// One sample as text: the prompt (before the chat template), the response (without EOS) and
// whether the response ended with EOS.
struct SampleText {
  std::string prompt, response;
  bool eos = false;
};

// The reward model of ppo.reward_model and how it reads the policy's samples.
class RewardScorer {
 public:
  // ConfigError when its shape does not fit the layout, when it carries no tokenizer and its
  // vocabulary size differs from the policy's, or (same tokenizer) its context is shorter.
  RewardScorer(train::StageContext& ctx, const data::Tokenizer& policy_tok,
               const models::GPTConfig& policy, const std::string& source);
  ~RewardScorer();

  models::RewardModel& model() { return *model_; }
  // True when the reward model has a tokenizer of its own and re-encodes the text.
  bool retokenizes() const { return tok_ != nullptr; }
  // "n_layer=4 n_embd=64" and, when it re-encodes, that it has its own tokenizer.
  std::string describe() const;
  // The reward model's ids of each sample (retokenizes() only): the run's chat template around the
  // prompt, the response, and the reward model's EOT when the response ended with EOS; the last
  // block_size tokens of a longer one.
  std::vector<std::vector<int64_t>> encode(const std::vector<SampleText>& texts) const;
  // The score of each row of `r` (texts: the same rows as text) at its last token, on the last
  // pipeline stage (zeros elsewhere). Collective over the grid's TP and PP groups.
  std::vector<double> score(const Rollout& r, const std::vector<SampleText>& texts,
                            ProcessGrid& grid, Device device);

 private:
  std::unique_ptr<models::RewardModel> model_;
  std::unique_ptr<data::Tokenizer> tok_;  // null: the policy's tokenizer, the rollout's ids
  ChatTemplate template_;
  int32_t eot_ = 0;
  mutable bool warned_long_ = false;
};

// The reward model's score of each row of ids (each non-empty, at most block_size) at its last
// token, on the last pipeline stage (zeros elsewhere). Collective over the grid's TP and PP groups.
std::vector<double> score_sequences(models::RewardModel& reward, ProcessGrid& grid,
                                    const std::vector<std::vector<int64_t>>& rows, int64_t pad_id,
                                    Device device);

}  // namespace loom::rlhf
