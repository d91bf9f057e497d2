// Chat template rendering and tokenisation (see ChatTemplate.h).
#include "rlhf/ChatTemplate.h"

#include "core/util/Check.h"
#include "data/Unicode.h"

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

namespace {

// Python str.strip(): what templates' `| trim` does to a content.
std::string py_strip(const std::string& s) {
  size_t begin = 0, end = s.size();
  int len = 0;
  while (begin < end && data::is_python_space(data::decode_utf8(s, begin, &len)))
    begin += size_t(len);
  while (end > begin) {
    size_t prev = data::previous_utf8_start(s, end);
    if (!data::is_python_space(data::decode_utf8(s, prev, &len))) break;
    end = prev;
  }
  return s.substr(begin, end - begin);
}

// U+E000 <k> U+E001: private-use characters no filter changes and no real content should hold.
std::string sentinel(size_t k) { return "\xEE\x80\x80" + std::to_string(k) + "\xEE\x80\x81"; }

// [start, end) of each assistant content in the real rendering `full`.
std::vector<std::pair<size_t, size_t>> locate_contents(const data::ChatTemplateJinja& tmpl,
                                                       std::vector<ChatMessage> messages,
                                                       const std::vector<size_t>& turns,
                                                       const std::string& full) {
  std::vector<std::string> contents;
  for (size_t k = 0; k < turns.size(); ++k) {
    contents.push_back(messages[turns[k]].content);
    messages[turns[k]].content = sentinel(k);
  }
  const std::string marked = tmpl.render(messages, false);
  std::vector<std::string> pieces;  // the rendering between the sentinels
  size_t pos = 0;
  for (size_t k = 0; k < turns.size(); ++k) {
    const std::string s = sentinel(k);
    size_t at = marked.find(s, pos);
    LOOM_CHECK_T(DataError, at != std::string::npos && marked.find(s, at + s.size()) == std::string::npos,
                 "chat template '", tmpl.name(), "': expected assistant message ", k,
                 " to be rendered exactly once, in order; got it ",
                 at == std::string::npos ? "missing or out of order" : "more than once");
    pieces.push_back(marked.substr(pos, at - pos));
    pos = at + s.size();
  }
  pieces.push_back(marked.substr(pos));
  // The template may trim contents (Llama-3: `content | trim`): the transform must reproduce
  // the real rendering exactly.
  for (bool trim : {false, true}) {
    std::string candidate = pieces[0];
    std::vector<std::pair<size_t, size_t>> spans;
    for (size_t k = 0; k < turns.size(); ++k) {
      const std::string c = trim ? py_strip(contents[k]) : contents[k];
      spans.emplace_back(candidate.size(), candidate.size() + c.size());
      candidate += c + pieces[k + 1];
    }
    if (candidate == full) return spans;
  }
  throw DataError("chat template '" + tmpl.name() +
                  "': expected the assistant messages in the rendering as given or trimmed, got "
                  "them changed otherwise; the assistant-only loss cannot locate them");
}

bool only_space(const std::string& s, size_t begin, size_t end) {
  for (size_t i = begin; i < end;) {
    int len = 0;
    if (!data::is_python_space(data::decode_utf8(s, i, &len))) return false;
    i += size_t(len);
  }
  return true;
}

// Where the response of assistant turn `turn` starts: after the generation prompt of the messages
// before it when the rendering continues it with whitespace only, else at the content.
size_t response_start(const data::ChatTemplateJinja& tmpl, const std::vector<ChatMessage>& messages,
                      size_t turn, size_t content_start, const std::string& full) {
  std::string gen;
  try {
    gen = tmpl.render({messages.begin(), messages.begin() + std::ptrdiff_t(turn)}, true);
  } catch (const DataError&) {
    return content_start;  // the template rejects that prefix of the chat (e.g. no user turn)
  }
  if (gen.size() <= content_start && full.compare(0, gen.size(), gen) == 0 &&
      only_space(full, gen.size(), content_start))
    return gen.size();
  return content_start;
}

// End of the response: the content, then whitespace and a special token if one follows.
size_t response_end(const data::Tokenizer& tok, const std::string& full, size_t content_end) {
  size_t p = content_end;
  int len = 0;
  while (p < full.size() && data::is_python_space(data::decode_utf8(full, p, &len)))
    p += size_t(len);
  for (const auto& [text, id] : tok.special_tokens())  // longest first
    if (full.compare(p, text.size(), text) == 0) return p + text.size();
  return content_end;
}

}  // namespace

TokenizedExample encode_chat(const data::Tokenizer& tok, const data::ChatTemplateJinja& tmpl,
                             const std::vector<ChatMessage>& messages) {
  LOOM_CHECK(!messages.empty() && messages.back().role == "assistant",
             "encode_chat: expected the last message to be from the assistant, got ",
             messages.empty() ? std::string("no messages") : "\"" + messages.back().role + "\"");
  std::vector<size_t> turns;
  for (size_t i = 0; i < messages.size(); ++i) {
    if (messages[i].role != "assistant") continue;
    LOOM_CHECK(!messages[i].content.empty(),
               "encode_chat: expected a non-empty assistant message, got \"\"");
    turns.push_back(i);
  }
  const std::string full = tmpl.render(messages, false);
  const auto spans = locate_contents(tmpl, messages, turns, full);
  std::vector<std::string> pieces;  // prompt, response, prompt, response, ..., prompt
  size_t pos = 0;
  for (size_t k = 0; k < turns.size(); ++k) {
    const size_t begin = std::max(pos, response_start(tmpl, messages, turns[k], spans[k].first, full));
    const size_t end = response_end(tok, full, spans[k].second);
    pieces.push_back(full.substr(pos, begin - pos));
    pieces.push_back(full.substr(begin, end - begin));
    pos = end;
  }
  pieces.push_back(full.substr(pos));
  const auto ids = tok.encode_pieces(pieces);
  TokenizedExample ex;
  for (size_t k = 0; k < ids.size(); ++k) {
    ex.tokens.insert(ex.tokens.end(), ids[k].begin(), ids[k].end());
    ex.is_response.insert(ex.is_response.end(), ids[k].size(), uint8_t(k % 2));
  }
  LOOM_CHECK(!ex.tokens.empty() && !ex.is_response[0],
             "encode_chat: expected a prompt before the first response token; hint: the chat "
             "template must render text before the first assistant message");
  return ex;
}

std::pair<std::vector<int32_t>, std::vector<int32_t>> encode_prompt_response(
    const data::Tokenizer& tok, const data::ChatTemplateJinja& tmpl, const std::string& prompt,
    const std::string& response) {
  TokenizedExample ex = encode_chat(tok, tmpl, {{"user", prompt}, {"assistant", response}});
  const size_t p = size_t(ex.prompt_length());
  size_t end = p;
  while (end < ex.tokens.size() && ex.is_response[end]) ++end;
  return {std::vector<int32_t>(ex.tokens.begin(), ex.tokens.begin() + std::ptrdiff_t(p)),
          std::vector<int32_t>(ex.tokens.begin() + std::ptrdiff_t(p),
                               ex.tokens.begin() + std::ptrdiff_t(end))};
}

}  // namespace loom::rlhf
