// A model's own chat template, as Hugging Face ships it in tokenizer_config.json ("chat_template",
// a Jinja string), rendered exactly as transformers' apply_chat_template(tokenize=False) does for
// the Jinja subset chat templates use: {{ }}, {% if/elif/else %}, {% for %} with loop.*, {% set %}
// (namespace() attributes too), whitespace control and trim/lstrip_blocks, literals, + ~ and
// arithmetic, comparisons, and/or/not, in, `is` tests, subscripts, slices, attributes, filters
// (trim, length, upper, lower, tojson, default, ...), raise_exception(msg) and namespace().
// Parsed once, rendered many times; unsupported syntax is a DataError naming the template source,
// line and column, and raise_exception() a DataError carrying the template's message.
//   auto tmpl = ChatTemplateJinja::from_tokenizer_config("Llama-3/tokenizer_config.json");
//   std::string text = tmpl.render({{"user", "Hi"}}, /*add_generation_prompt=*/true);
#pragma once

#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace loom::data {

namespace jinja {
struct Program;
}

struct ChatMessage {
  std::string role;  // "system", "user", "assistant", ...
  std::string content;
};

class ChatTemplateJinja {
 public:
  // `name` names the source in error messages (a file path, or e.g. "memory").
  static ChatTemplateJinja parse(std::string_view source, const std::string& name = "memory");
  // tokenizer_config.json: "chat_template" (a string, or a list of {"name", "template"} from which
  // "default" is taken) and the special tokens templates read (bos_token, eos_token, unk_token,
  // pad_token: strings or {"content": ...} objects). DataError naming the file and field.
  static ChatTemplateJinja from_tokenizer_config(const std::string& path);
  // The template of <directory of tokenizer_json>/tokenizer_config.json, if that file exists and
  // has a chat_template; nullopt otherwise.
  static std::optional<ChatTemplateJinja> find_for_tokenizer(const std::string& tokenizer_json);

  // Renders `messages` (+ the assistant header when add_generation_prompt) with the variables
  // transformers passes: messages, add_generation_prompt, tools and documents (none) and the
  // special tokens of the config.
  std::string render(const std::vector<ChatMessage>& messages, bool add_generation_prompt) const;
  // Renders with arbitrary variables: a JSON object whose keys become template variables (the
  // special tokens of the config are added unless given).
  std::string render_json(std::string_view variables_json) const;

  // A special token of the config ("bos_token", ...); "" if absent.
  std::string special_token(const std::string& key) const;
  void set_special_token(const std::string& key, std::string value);
  const std::string& name() const { return name_; }

 private:
  ChatTemplateJinja() = default;
  std::shared_ptr<const jinja::Program> program_;
  std::map<std::string, std::string> special_tokens_;
  std::string name_;
};

}  // namespace loom::data
