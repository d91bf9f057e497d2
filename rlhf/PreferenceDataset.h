// Preference data for reward modelling and DPO: JSONL of {"prompt","chosen","rejected"}. The
// prompt is rendered with the ChatTemplate (user turn + the assistant text before {content});
// each response is its tokens + EOT; with DatasetOptions::model_template the model's template
// renders [user: prompt, assistant: response] instead (encode_prompt_response). Bad lines follow
// the SFT rules (DataError "preference: <file>:<line>: ..." unless skip_bad); over-long pairs
// follow DatasetOptions::overlong, where TruncateResponse cuts each response to seq_len - prompt.
//
//   auto ds = load_preference_jsonl("pairs.jsonl", tok, {.seq_len = 256});
//   PreferenceBatch b = collate_preferences(ds.examples, 0, 8, 256, *tok.eot_id());
//   Tensor r_c = select_at(reward_model(b.chosen_ids), b.chosen_last);   // score at the last token
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "core/tensor/Tensor.h"
#include "rlhf/ChatTemplate.h"

namespace loom::rlhf {

struct PreferenceExample {
  std::vector<int32_t> prompt;    // template-rendered prompt tokens
  std::vector<int32_t> chosen;    // response tokens + EOT / end-of-turn (unless truncated)
  std::vector<int32_t> rejected;  // response tokens + EOT / end-of-turn (unless truncated)
};

struct PreferenceDataset {
  std::vector<PreferenceExample> examples;
  LoadStats stats;
};

PreferenceDataset load_preference_jsonl(const std::string& path, const data::Tokenizer& tok,
                                        const DatasetOptions& opt);

struct PreferenceBatch {
  Tensor chosen_ids;        // (B,T) I64 prompt + chosen, padded with pad_id
  Tensor rejected_ids;      // (B,T) I64 prompt + rejected, padded with pad_id
  Tensor chosen_targets;    // (B,T) I64 next token on response positions, else -100 (for DPO)
  Tensor rejected_targets;  // (B,T) I64
  Tensor chosen_last;       // (B) I64 index of the last real token (where a reward head reads)
  Tensor rejected_last;     // (B) I64
};
PreferenceBatch collate_preferences(const std::vector<PreferenceExample>& examples, size_t begin,
                                    size_t count, int64_t seq_len, int32_t pad_id,
                                    Device device = Device::cpu());

}  // namespace loom::rlhf
