// Preference JSONL loading and batching (see PreferenceDataset.h).
#include "rlhf/PreferenceDataset.h"

#include <algorithm>

#include "core/util/Check.h"
#include "rlhf/JsonlReader.h"

namespace loom::rlhf {

namespace {

using detail::LineError;
using nlohmann::json;

std::string nonempty_response(const json& j, const std::string& key) {
  std::string s = detail::get_string(j, key);
  if (s.empty())
    throw LineError{"expected a non-empty \"" + key + "\", got \"\"", "empty_response"};
  return s;
}

// A pair under the model's own template: the prompt is what both renderings share.
PreferenceExample encode_pair(const data::Tokenizer& tok, const data::ChatTemplateJinja& tmpl,
                              const std::string& prompt, const std::string& chosen,
                              const std::string& rejected) {
  std::pair<std::vector<int32_t>, std::vector<int32_t>> c, r;
  try {
    c = encode_prompt_response(tok, tmpl, prompt, chosen);
    r = encode_prompt_response(tok, tmpl, prompt, rejected);
  } catch (const Error& e) {  // ValueError, or DataError from the template (raise_exception)
    throw LineError{e.what(), "bad_chat"};
  }
  auto& [p_chosen, r_chosen] = c;
  auto& [p_rejected, r_rejected] = r;
  if (p_chosen != p_rejected)
    throw LineError{"expected the chat template to render the same prompt before \"chosen\" and "
                    "\"rejected\", got different prompt tokens",
                    "bad_chat"};
  return {std::move(p_chosen), std::move(r_chosen), std::move(r_rejected)};
}

// Applies the over-long policy to one pair; false = drop it. Throws LineError for bad pairs.
bool fit_pair(PreferenceExample& ex, const DatasetOptions& opt, bool* truncated) {
  const int64_t p = int64_t(ex.prompt.size());
  const int64_t longest = p + int64_t(std::max(ex.chosen.size(), ex.rejected.size()));
  *truncated = false;
  if (longest <= opt.seq_len) return true;
  if (opt.overlong == OverlongPolicy::Skip) return false;
  if (opt.overlong == OverlongPolicy::Error) {
    throw LineError{"expected prompt + response of at most seq_len=" + std::to_string(opt.seq_len) +
                        " tokens, got " + std::to_string(longest) + " tokens",
                    "too_long"};
  }
  if (p >= opt.seq_len) {
    throw LineError{
        "expected a prompt shorter than the context (seq_len=" + std::to_string(opt.seq_len) +
            "), got a prompt of " + std::to_string(p) + " tokens",
        "prompt_too_long"};
  }
  const size_t room = size_t(opt.seq_len - p);
  if (ex.chosen.size() > room) ex.chosen.resize(room);
  if (ex.rejected.size() > room) ex.rejected.resize(room);
  *truncated = true;
  return true;
}

// Writes prompt+response into row b of the batch buffers; returns the last real token's index.
int64_t fill_row(const std::vector<int32_t>& prompt, const std::vector<int32_t>& response,
                 int64_t T, int32_t pad_id, int64_t* ids, int64_t* targets) {
  const int64_t p = int64_t(prompt.size()), n = p + int64_t(response.size());
  LOOM_CHECK(!response.empty() && n <= T, "collate_preferences: expected prompt + response of ",
             "1..", T, " tokens, got ", n, "; hint: load with the same seq_len");
  for (int64_t t = 0; t < T; ++t) {
    ids[t] = t < p ? prompt[size_t(t)] : t < n ? response[size_t(t - p)] : pad_id;
    targets[t] = (t + 1 >= p && t + 1 < n) ? response[size_t(t + 1 - p)] : -100;
  }
  return n - 1;
}

}  // namespace

PreferenceDataset load_preference_jsonl(const std::string& path, const data::Tokenizer& tok,
                                        const DatasetOptions& opt) {
  if (!opt.model_template) {
    opt.chat_template.validate();
    require_eot(tok);
  }
  PreferenceDataset ds;
  auto on_line = [&](const json& j) {
    const std::string prompt = detail::get_string(j, "prompt");
    const std::string chosen = nonempty_response(j, "chosen");
    const std::string rejected = nonempty_response(j, "rejected");
    PreferenceExample ex = opt.model_template
                               ? encode_pair(tok, *opt.model_template, prompt, chosen, rejected)
                               : PreferenceExample{encode_prompt(tok, opt.chat_template, prompt),
                                                   encode_response(tok, chosen),
                                                   encode_response(tok, rejected)};
    bool truncated = false;
    if (!fit_pair(ex, opt, &truncated)) {
      ++ds.stats.skipped_long;
      return;
    }
    ds.stats.truncated += truncated ? 1 : 0;
    ds.examples.push_back(std::move(ex));
    ++ds.stats.loaded;
  };
  auto on_skip = [&](const std::string& reason) { ++ds.stats.skip_reasons[reason]; };
  ds.stats.skipped_bad = detail::read_jsonl("preference", path, opt.skip_bad, on_line, on_skip);
  return ds;
}

PreferenceBatch collate_preferences(const std::vector<PreferenceExample>& examples, size_t begin,
                                    size_t count, int64_t seq_len, int32_t pad_id, Device device) {
  LOOM_CHECK(count > 0 && begin + count <= examples.size(), "collate_preferences: expected [",
             begin, ", ", begin + count, ") within 0..", examples.size());
  const size_t T = size_t(seq_len), B = count;
  std::vector<int64_t> cid(B * T), rid(B * T), ct(B * T), rt(B * T), clast(B), rlast(B);
  for (size_t b = 0; b < B; ++b) {
    const PreferenceExample& ex = examples[begin + b];
    clast[b] = fill_row(ex.prompt, ex.chosen, seq_len, pad_id, &cid[b * T], &ct[b * T]);
    rlast[b] = fill_row(ex.prompt, ex.rejected, seq_len, pad_id, &rid[b * T], &rt[b * T]);
  }
  const Shape s{int64_t(B), seq_len}, sb{int64_t(B)};
  return {Tensor::from_vector(cid, s, device),    Tensor::from_vector(rid, s, device),
          Tensor::from_vector(ct, s, device),     Tensor::from_vector(rt, s, device),
          Tensor::from_vector(clast, sb, device), Tensor::from_vector(rlast, sb, device)};
}

}  // namespace loom::rlhf
