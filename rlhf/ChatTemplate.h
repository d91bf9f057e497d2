// Chat templates and prompt/response tokenisation shared by the SFT and preference datasets.
//  * ChatTemplate wraps each message at "{content}": the defaults turn [user "2+2?", assistant "4"]
//    into "<|user|>\n2+2?\n<|assistant|>\n" (prompt, no loss) + "4" <|endoftext|> (response, loss);
//    text before an assistant {content} is prompt side, text after it prompt side again.
//  * The model's own template (data::ChatTemplateJinja, tokenizer_config.json) renders the whole
//    chat as apply_chat_template does; each assistant content plus the end-of-turn token the
//    template emits right after it (<|eot_id|>, <|im_end|>, </s>) is the response (encode_chat).
// Prompt and response pieces are tokenised separately, so the boundary between them is exact (BPE
// never merges across it). A {"prompt","response"} line is the chat [user: prompt, assistant:
// response].
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "data/ChatTemplateJinja.h"
#include "data/Tokenizer.h"

namespace loom::rlhf {

struct ChatTemplate {
  std::string system = "<|system|>\n{content}\n";
  std::string user = "<|user|>\n{content}\n";
  std::string assistant = "<|assistant|>\n{content}";
  // ValueError unless each role's template holds "{content}" exactly once.
  void validate() const;
  // The template of `role` ("system", "user", "assistant"); ValueError for any other role.
  const std::string& for_role(const std::string& role) const;
};

using ChatMessage = data::ChatMessage;

// One tokenised example: tokens (n) and, per token, whether it is a response token (the model is
// trained to predict it). The first token is always a prompt token.
struct TokenizedExample {
  std::vector<int32_t> tokens;
  std::vector<uint8_t> is_response;
  int64_t prompt_length() const;  // tokens before the first response token
};

// What to do with an example longer than the context (seq_len tokens).
enum class OverlongPolicy {
  TruncateResponse,  // cut the response(s) from the right; a prompt that leaves no room is bad
  Skip,              // drop the example and count it
  Error,             // a bad line (DataError naming file:line unless skip_bad)
};

struct DatasetOptions {
  int64_t seq_len = 1024;  // T: an example must fit in T tokens (EOT included)
  ChatTemplate chat_template;
  // The model's own template (tokenizer_config.json); when set it is used instead of
  // chat_template and the tokenizer needs no <|endoftext|>.
  std::optional<data::ChatTemplateJinja> model_template;
  OverlongPolicy overlong = OverlongPolicy::TruncateResponse;
  // Bad lines (not JSON, missing field, empty response, prompt longer than the context, ...) are
  // skipped and counted instead of raising DataError with file:line.
  bool skip_bad = false;
};

struct LoadStats {
  int64_t loaded = 0;
  int64_t skipped_bad = 0;   // bad lines skipped (skip_bad)
  int64_t skipped_long = 0;  // over-long examples dropped (OverlongPolicy::Skip)
  int64_t truncated = 0;     // examples whose response was cut (TruncateResponse)
  // Skipped bad lines by reason: "not_json", "missing_field", "empty_response", ...
  std::map<std::string, int64_t> skip_reasons;
};

// Tokenises a conversation with `tmpl`. Needs an EOT token in `tok`. The last message must be
// an assistant turn and every assistant turn non-empty; ValueError otherwise.
TokenizedExample encode_chat(const data::Tokenizer& tok, const ChatTemplate& tmpl,
                             const std::vector<ChatMessage>& messages);
// The prompt side of a single-turn example: user template + the assistant text before {content}.
std::vector<int32_t> encode_prompt(const data::Tokenizer& tok, const ChatTemplate& tmpl,
                                   const std::string& prompt);
// A response: its tokens followed by EOT.
std::vector<int32_t> encode_response(const data::Tokenizer& tok, const std::string& response);

// Tokenises a conversation rendered by the model's own template. The last message must be an
// assistant turn and every assistant turn non-empty (ValueError otherwise). Assistant turn k is
// located by rendering with a unique sentinel in place of each assistant content and aligning with
// the real rendering (the template may trim the content); its response span is
//   [end of render(messages before it, add_generation_prompt=true) if that is a prefix of the
//    rendering followed only by whitespace, else the start of the content,
//    end of the content + whitespace + the special token right after it (if any)).
// DataError if the template changes the contents beyond trimming or renders them other than once.
TokenizedExample encode_chat(const data::Tokenizer& tok, const data::ChatTemplateJinja& tmpl,
                             const std::vector<ChatMessage>& messages);
// [user: prompt, assistant: response] under the model's template: (prompt tokens, response tokens
// incl. the end-of-turn token); what the template renders after that is dropped.
std::pair<std::vector<int32_t>, std::vector<int32_t>> encode_prompt_response(
    const data::Tokenizer& tok, const data::ChatTemplateJinja& tmpl, const std::string& prompt,
    const std::string& response);

// The EOT id of `tok`; ValueError if it has none.
int32_t require_eot(const data::Tokenizer& tok);

}  // namespace loom::rlhf
