// Chat template rendering and tokenisation (see ChatTemplate.h).
#include "rlhf/ChatTemplate.h"

#include "core/util/Check.h"

namespace loom::rlhf {

namespace {

constexpr const char* kContent = "{content}";
constexpr size_t kContentLen = 9;

// Splits a template at its single "{content}".
std::pair<std::string, std::string> split_template(const std::string& t) {
  size_t at = t.find(kContent);
  LOOM_INTERNAL_ASSERT(at != std::string::npos, "template without {content}: ", t);
  return {t.substr(0, at), t.substr(at + kContentLen)};
}

}  // namespace

void ChatTemplate::validate() const {
  for (const auto* role : {"system", "user", "assistant"}) {
    const std::string& t = for_role(role);
    size_t first = t.find(kContent);
    LOOM_CHECK(first != std::string::npos && t.find(kContent, first + 1) == std::string::npos,
               "chat_template: expected the ", role,
               " template to contain \"{content}\" once, got \"", t, "\"");
  }
}

const std::string& ChatTemplate::for_role(const std::string& role) const {
  if (role == "system") return system;
  if (role == "user") return user;
  if (role == "assistant") return assistant;
  throw ValueError("chat_template: expected role \"system\", \"user\" or \"assistant\", got \"" +
                   role + "\"");
}

int64_t TokenizedExample::prompt_length() const {
  for (size_t i = 0; i < is_response.size(); ++i) {
    if (is_response[i]) return int64_t(i);
  }
  return int64_t(is_response.size());
}

int32_t require_eot(const data::Tokenizer& tok) {
  auto eot = tok.eot_id();
  LOOM_CHECK(eot.has_value(),
             "rlhf data: expected a tokenizer with an <|endoftext|> special token, got none");
  return *eot;
}

TokenizedExample encode_chat(const data::Tokenizer& tok, const ChatTemplate& tmpl,
                             const std::vector<ChatMessage>& messages) {
  tmpl.validate();
  const int32_t eot = require_eot(tok);
  LOOM_CHECK(!messages.empty() && messages.back().role == "assistant",
             "encode_chat: expected the last message to be from the assistant, got ",
             messages.empty() ? std::string("no messages") : "\"" + messages.back().role + "\"");
  TokenizedExample ex;
  std::string pending;  // prompt-side text not yet tokenised
  auto append = [&](const std::vector<int32_t>& ids, uint8_t response) {
    ex.tokens.insert(ex.tokens.end(), ids.begin(), ids.end());
    ex.is_response.insert(ex.is_response.end(), ids.size(), response);
  };
  for (const ChatMessage& m : messages) {
    auto [before, after] = split_template(tmpl.for_role(m.role));
    if (m.role != "assistant") {
      pending += before + m.content + after;
      continue;
    }
    LOOM_CHECK(!m.content.empty(), "encode_chat: expected a non-empty assistant message, got \"\"");
    pending += before;
    append(tok.encode(pending), 0);
    pending = after;
    std::vector<int32_t> response = tok.encode(m.content);
    response.push_back(eot);
    append(response, 1);
  }
  if (!pending.empty()) append(tok.encode(pending), 0);
  LOOM_CHECK(!ex.tokens.empty() && !ex.is_response[0],
             "encode_chat: expected a prompt before the first response token; hint: the assistant "
             "template must put text before {content}, or a user/system turn must come first");
  return ex;
}

std::vector<int32_t> encode_prompt(const data::Tokenizer& tok, const ChatTemplate& tmpl,
                                   const std::string& prompt) {
  tmpl.validate();
  auto [ubefore, uafter] = split_template(tmpl.user);
  const std::string abefore = split_template(tmpl.assistant).first;
  return tok.encode(ubefore + prompt + uafter + abefore);
}

std::vector<int32_t> encode_response(const data::Tokenizer& tok, const std::string& response) {
  std::vector<int32_t> ids = tok.encode(response);
  ids.push_back(require_eot(tok));
  return ids;
}

}  // namespace loom::rlhf
