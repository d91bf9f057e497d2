// Assistant-only loss with the model's own chat template (tokenizer_config.json): for the Llama-3,
// ChatML (Qwen2) and Mistral templates with their tokenizers (tests/golden/tokenizers/), the
// response tokens of each assistant turn spell exactly the assistant content (trimmed where the
// template trims) plus the end-of-turn token, everything else is prompt, and all tokens together
// decode like the tokenized rendering; SFT and preference JSONL loading with the model template;
// errors for templates that hide or change the assistant content.
#include <gtest/gtest.h>

#include "core/util/Check.h"
#include "rlhf/PreferenceDataset.h"
#include "rlhf/SftDataset.h"
#include "tests/rlhf/RlhfTestUtil.h"

namespace loom::rlhf {
namespace {

using testing::TempDir;

struct Model {
  data::Tokenizer tok;
  data::ChatTemplateJinja tmpl;
};

Model load_model(const std::string& name) {
  const std::string dir = std::string(LOOM_SOURCE_DIR) + "/tests/golden/tokenizers/" + name;
  return {data::Tokenizer::from_tokenizer_json(dir + "/tokenizer.json"),
          data::ChatTemplateJinja::from_tokenizer_config(dir + "/tokenizer_config.json")};
}

// The text of tokens [begin, end) (token_bytes: SentencePiece '▁' as ' ', added tokens as is).
std::string text_of(const data::Tokenizer& tok, const std::vector<int32_t>& ids, size_t begin,
                    size_t end) {
  std::string s;
  for (size_t i = begin; i < end; ++i) s += tok.token_bytes(ids[i]);
  return s;
}

// The maximal runs of response tokens, as text.
std::vector<std::string> response_runs(const data::Tokenizer& tok, const TokenizedExample& ex) {
  std::vector<std::string> runs;
  for (size_t i = 0; i < ex.tokens.size();) {
    if (!ex.is_response[i]) {
      ++i;
      continue;
    }
    size_t j = i;
    while (j < ex.tokens.size() && ex.is_response[j]) ++j;
    runs.push_back(text_of(tok, ex.tokens, i, j));
    i = j;
  }
  return runs;
}

const std::vector<ChatMessage> kChat = {{"system", "You are terse."},
                                        {"user", "Hi there!"},
                                        {"assistant", "Hello. How can I help?"},
                                        {"user", "Name a prime.\nJust one."},
                                        {"assistant", " 7 \n"}};

struct Case {
  const char* model;
  std::vector<std::string> responses;  // text of each assistant turn's response tokens
};

class ModelChatTemplate : public ::testing::TestWithParam<Case> {};

TEST_P(ModelChatTemplate, ResponseTokensAreExactlyTheAssistantTurnsAndTheirEndToken) {
  const Case& c = GetParam();
  Model m = load_model(c.model);
  TokenizedExample ex = encode_chat(m.tok, m.tmpl, kChat);
  ASSERT_EQ(ex.tokens.size(), ex.is_response.size());
  EXPECT_EQ(response_runs(m.tok, ex), c.responses);
  EXPECT_FALSE(ex.is_response[0]);
  // Prompt and response pieces were tokenised separately, yet the whole decodes like HF's
  // tokenisation of the rendered chat.
  const std::string rendered = m.tmpl.render(kChat, false);
  EXPECT_EQ(m.tok.decode(ex.tokens), m.tok.decode(m.tok.encode(rendered)));
  // The prompt of the first turn is exactly what the model sees at inference time.
  const std::string gen = m.tmpl.render({kChat.begin(), kChat.begin() + 2}, true);
  const size_t p = size_t(ex.prompt_length());
  EXPECT_EQ(
      m.tok.decode(std::vector<int32_t>(ex.tokens.begin(), ex.tokens.begin() + std::ptrdiff_t(p))),
      m.tok.decode(m.tok.encode(gen)));
}

INSTANTIATE_TEST_SUITE_P(
    Templates, ModelChatTemplate,
    ::testing::Values(
        // Llama-3 trims the content; <|eot_id|> follows it.
        Case{"llama3", {"Hello. How can I help?<|eot_id|>", "7<|eot_id|>"}},
        // ChatML keeps the content as is; <|im_end|> follows (the "\n" after it is prompt side).
        Case{"qwen2", {"Hello. How can I help?<|im_end|>", " 7 \n<|im_end|>"}},
        // Mistral's generation prompt ends at [/INST]; the response is " " + content + </s>.
        Case{"mistral", {" Hello. How can I help?</s>", "  7 \n</s>"}}),
    [](const auto& info) { return std::string(info.param.model); });

TEST(ModelChatTemplateTest, SftJsonlUsesTheModelTemplateAndItsErrorsAreBadLines) {
  Model m = load_model("mistral");
  TempDir dir;
  const std::string good =
      R"({"messages":[{"role":"system","content":"S"},{"role":"user","content":"q"},)"
      R"({"role":"assistant","content":"a"}]})";
  const std::string bad =  // Mistral's template rejects two user turns in a row
      R"({"messages":[{"role":"user","content":"q"},{"role":"user","content":"q2"},)"
      R"({"role":"assistant","content":"a"}]})";
  DatasetOptions opt;
  opt.seq_len = 256;
  opt.model_template = m.tmpl;
  const std::string path =
      dir.write("sft.jsonl", good + "\n" + R"({"prompt":"p","response":"r"})" + "\n" + bad + "\n");
  try {
    load_sft_jsonl(path, m.tok, opt);  // no <|endoftext|> needed with the model template
    ADD_FAILURE() << "expected DataError";
  } catch (const DataError& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("sft: " + path + ":3: "), std::string::npos) << msg;
    EXPECT_NE(msg.find("conversation roles must alternate"), std::string::npos) << msg;
  }
  opt.skip_bad = true;
  SftDataset ds = load_sft_jsonl(path, m.tok, opt);
  ASSERT_EQ(ds.examples.size(), 2u);
  EXPECT_EQ(ds.stats.skip_reasons["bad_chat"], 1);
  EXPECT_EQ(response_runs(m.tok, ds.examples[0]), std::vector<std::string>{" a</s>"});
  EXPECT_EQ(response_runs(m.tok, ds.examples[1]), std::vector<std::string>{" r</s>"});
}

TEST(ModelChatTemplateTest, PreferencePairsUseTheModelTemplate) {
  Model m = load_model("qwen2");
  TempDir dir;
  DatasetOptions opt;
  opt.seq_len = 128;
  opt.model_template = m.tmpl;
  const std::string path =
      dir.write("pairs.jsonl", R"({"prompt":"2+2?","chosen":"4","rejected":"five"})"
                               "\n");
  PreferenceDataset ds = load_preference_jsonl(path, m.tok, opt);
  ASSERT_EQ(ds.examples.size(), 1u);
  const PreferenceExample& ex = ds.examples[0];
  EXPECT_EQ(m.tok.decode(ex.prompt), m.tmpl.render({{"user", "2+2?"}}, true));
  EXPECT_EQ(m.tok.decode(ex.chosen), "4<|im_end|>");
  EXPECT_EQ(m.tok.decode(ex.rejected), "five<|im_end|>");
}

TEST(ModelChatTemplateTest, TemplatesThatHideOrChangeTheContentAreErrors) {
  Model m = load_model("llama3");
  const std::vector<ChatMessage> chat = {{"user", "q"}, {"assistant", "answer"}};
  auto expect_error = [&](const std::string& src, const std::string& part) {
    auto tmpl = data::ChatTemplateJinja::parse(src, "t.jinja");
    try {
      encode_chat(m.tok, tmpl, chat);
      ADD_FAILURE() << "expected DataError for " << src;
    } catch (const DataError& e) {
      EXPECT_NE(std::string(e.what()).find(part), std::string::npos) << e.what();
    }
  };
  expect_error("{% for m in messages %}{{ m.content | upper }}{% endfor %}", "changed otherwise");
  expect_error("{% for m in messages %}{{ m.content }}{{ m.content }}{% endfor %}", "exactly once");
  expect_error(
      "{% for m in messages %}{% if m.role == 'user' %}{{ m.content }}{% endif %}"
      "{% endfor %}",
      "exactly once");
  EXPECT_THROW(encode_chat(m.tok, m.tmpl, {{"user", "q"}}), ValueError);
  EXPECT_THROW(encode_chat(m.tok, m.tmpl, {{"user", "q"}, {"assistant", ""}}), ValueError);
}

}  // namespace
}  // namespace loom::rlhf
