// Chat templates vs transformers 4.45.2 (goldens written by tests/golden/gen_hf_tokenizers.py):
// the Llama-3, ChatML (Qwen2) and Mistral templates of tests/golden/tokenizers/*/
// tokenizer_config.json on multi-turn conversations with and without system prompts and
// add_generation_prompt on/off, including Mistral's raise_exception cases; the wider Jinja subset
// rendered by transformers' own jinja2 environment; and errors naming source, line and column.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "core/util/Check.h"
#include "data/ChatTemplateJinja.h"
#include "tests/data/DataTestUtil.h"

namespace loom::data {
namespace {

using loom::testing::GoldenFile;
using json = nlohmann::ordered_json;  // keeps the key order of the goldens, as Python dicts
using testing::golden_bytes;
using testing::TempDir;
using testing::write_file;

const json& goldens() {
  static const json j = [] {
    GoldenFile g("hf_tokenizers.h5");
    return json::parse(golden_bytes(g, "probes_json"));
  }();
  return j;
}

std::string config_path(const std::string& name) {
  return std::string(LOOM_SOURCE_DIR) + "/tests/golden/tokenizers/" + name +
         "/tokenizer_config.json";
}

std::vector<ChatMessage> messages_of(const json& conv) {
  std::vector<ChatMessage> out;
  for (const json& m : conv) out.push_back({m["role"], m["content"]});
  return out;
}

// Runs fn and returns the DataError message ("" if none was thrown).
template <class Fn>
std::string error_of(Fn&& fn) {
  try {
    fn();
  } catch (const DataError& e) {
    return e.what();
  }
  return "";
}

class ChatTemplateGolden : public ::testing::TestWithParam<const char*> {};

TEST_P(ChatTemplateGolden, RenderEqualsApplyChatTemplate) {
  const std::string name = GetParam();
  ChatTemplateJinja tmpl = ChatTemplateJinja::from_tokenizer_config(config_path(name));
  const json& cases = goldens()[name + "_chat"];
  ASSERT_GE(cases.size(), 10u);
  int errors = 0;
  for (const json& c : cases) {
    const std::string conv = c["conversation"];
    const bool gen = c["add_generation_prompt"];
    SCOPED_TRACE(conv + (gen ? " +generation prompt" : ""));
    auto msgs = messages_of(goldens()["conversations"][conv]);
    if (c.contains("error")) {
      ++errors;
      const std::string msg = error_of([&] { tmpl.render(msgs, gen); });
      EXPECT_NE(msg.find("raise_exception: " + c["error"].get<std::string>()), std::string::npos)
          << msg;
      EXPECT_NE(msg.find(config_path(name)), std::string::npos) << msg;
      continue;
    }
    EXPECT_EQ(tmpl.render(msgs, gen), c["text"].get<std::string>());
  }
  if (name == "mistral") {
    EXPECT_EQ(errors, 4);  // non-alternating roles and a "tool" role, each with and without
  }
}

INSTANTIATE_TEST_SUITE_P(Models, ChatTemplateGolden,
                         ::testing::Values("llama3", "qwen2", "mistral"),
                         [](const auto& info) { return std::string(info.param); });

// The wider subset (loops, namespace, scoping, slices, filters, tests, operators, whitespace
// control, methods, literals, errors) against transformers' jinja2 environment.
TEST(ChatTemplateJinjaTest, JinjaSubsetEqualsTransformersJinja2) {
  const json& cases = goldens()["jinja_cases"];
  ASSERT_GE(cases.size(), 20u);
  for (size_t i = 0; i < cases.size(); ++i) {
    const json& c = cases[i];
    const std::string src = c["template"];
    SCOPED_TRACE("case " + std::to_string(i) + ": " + src);
    ChatTemplateJinja tmpl = ChatTemplateJinja::parse(src, "case" + std::to_string(i));
    if (c.contains("error")) {
      const std::string msg = error_of([&] { tmpl.render_json(c["variables"].dump()); });
      EXPECT_NE(msg.find("chat template 'case" + std::to_string(i) + "'"), std::string::npos)
          << "expected a DataError like jinja2's " << c["error"] << ", got '" << msg << "'";
      if (c["error"].get<std::string>().rfind("TemplateError: ", 0) == 0) {  // raise_exception
        EXPECT_NE(msg.find("raise_exception: " + c["error"].get<std::string>().substr(15)),
                  std::string::npos)
            << msg;
      }
      continue;
    }
    EXPECT_EQ(tmpl.render_json(c["variables"].dump()), c["text"].get<std::string>());
  }
}

TEST(ChatTemplateJinjaTest, UnsupportedSyntaxNamesSourceLineAndColumn) {
  auto expect = [](const std::string& src, const std::vector<std::string>& parts) {
    const std::string msg = error_of([&] { ChatTemplateJinja::parse(src, "my.jinja"); });
    ASSERT_FALSE(msg.empty()) << "no error for " << src;
    EXPECT_NE(msg.find("chat template 'my.jinja'"), std::string::npos) << msg;
    for (const std::string& p : parts)
      EXPECT_NE(msg.find(p), std::string::npos) << "message lacks '" << p << "': " << msg;
  };
  expect("{% macro m() %}x{% endmacro %}", {"line 1, column 1", "unsupported tag 'macro'"});
  expect("ok\n    {% include 'x' %}", {"line 2, column 5", "unsupported tag 'include'"});
  expect("{% if x %}never closed", {"expected 'endif'"});
  expect("{{ a ! b }}", {"line 1, column 6", "unexpected character '!'"});
  expect("{% for x in xs recursive %}{% endfor %}", {"recursive"});
  expect("{% set x %}block{% endset %}", {"block {% set %}"});
  expect("{% endfor %}", {"unexpected 'endfor'"});
  expect("{{ (1, 2) }}", {"tuples"});
  expect("{{ 'open", {"unterminated string"});
  expect("{# never closed", {"missing end of comment"});
  // Unsupported filters, tests and calls are found when rendering; the message says where.
  ChatTemplateJinja t = ChatTemplateJinja::parse("line one\n  {{ x | frobnicate }}", "f.jinja");
  std::string msg = error_of([&] { t.render({}, false); });
  EXPECT_NE(msg.find("chat template 'f.jinja': line 2, column 8: unsupported filter 'frobnicate'"),
            std::string::npos)
      << msg;
  t = ChatTemplateJinja::parse("{{ strftime_now('%Y') }}", "g.jinja");
  msg = error_of([&] { t.render({}, false); });
  EXPECT_NE(msg.find("unsupported call of 'strftime_now'"), std::string::npos) << msg;
}

TEST(ChatTemplateJinjaTest, ReadsTokenizerConfigForms) {
  TempDir dir;
  const std::string path = (dir / "tokenizer_config.json").string();
  write_file(path, R"({"chat_template": [{"name": "tool_use", "template": "T"},
                                         {"name": "default", "template": "{{ bos_token }}D"}],
                       "bos_token": {"content": "<s>", "lstrip": false}, "eos_token": null})");
  ChatTemplateJinja t = ChatTemplateJinja::from_tokenizer_config(path);
  EXPECT_EQ(t.render({}, false), "<s>D");
  EXPECT_EQ(t.special_token("bos_token"), "<s>");
  EXPECT_EQ(t.special_token("eos_token"), "");
  auto found = ChatTemplateJinja::find_for_tokenizer((dir / "tokenizer.json").string());
  ASSERT_TRUE(found.has_value());
  EXPECT_EQ(found->render({}, false), "<s>D");
  write_file(path, R"({"bos_token": "<s>"})");
  EXPECT_FALSE(ChatTemplateJinja::find_for_tokenizer((dir / "tokenizer.json").string()));
  std::string msg = error_of([&] { ChatTemplateJinja::from_tokenizer_config(path); });
  EXPECT_NE(msg.find(path), std::string::npos) << msg;
  EXPECT_NE(msg.find("chat_template"), std::string::npos) << msg;
  write_file(path, R"({"chat_template": 5})");
  msg = error_of([&] { ChatTemplateJinja::from_tokenizer_config(path); });
  EXPECT_NE(msg.find("chat_template: expected a string"), std::string::npos) << msg;
}

}  // namespace
}  // namespace loom::data
