// ChatTemplateJinja: tokenizer_config.json reading and the variables a chat template sees (see
// ChatTemplateJinja.h). The engine is in Jinja*.cpp.
#include "data/ChatTemplateJinja.h"

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "core/util/Check.h"
#include "data/Jinja.h"

namespace loom::data {
namespace {

using Json = nlohmann::ordered_json;
constexpr const char* kSpecialKeys[] = {"bos_token", "eos_token", "unk_token", "pad_token"};

jinja::Value from_json(const Json& j) {
  using jinja::Value;
  switch (j.type()) {
    case Json::value_t::null:
      return Value::none();
    case Json::value_t::boolean:
      return Value::boolean(j.get<bool>());
    case Json::value_t::number_integer:
    case Json::value_t::number_unsigned:
      return Value::integer(j.get<int64_t>());
    case Json::value_t::number_float:
      return Value::real(j.get<double>());
    case Json::value_t::string:
      return Value::string(j.get<std::string>());
    case Json::value_t::array: {
      jinja::List l;
      for (const Json& x : j) l.push_back(from_json(x));
      return Value::list_of(std::move(l));
    }
    case Json::value_t::object: {
      jinja::Dict d;
      for (const auto& [k, v] : j.items()) d.set(k, from_json(v));
      return Value::dict_of(std::move(d));
    }
    default:
      return Value::undefined();
  }
}

Json read_json(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  LOOM_CHECK_T(DataError, f.good(), "chat template: cannot open tokenizer_config.json '", path,
               "' (missing or unreadable)");
  std::ostringstream ss;
  ss << f.rdbuf();
  try {
    return Json::parse(ss.str());
  } catch (const Json::parse_error& e) {
    throw DataError("chat template: tokenizer_config.json '" + path +
                    "' is not valid JSON: " + e.what());
  }
}

// The "chat_template" field: a string, or [{"name": ..., "template": ...}] with a "default".
std::optional<std::string> template_source(const Json& cfg, const std::string& path) {
  if (!cfg.contains("chat_template") || cfg["chat_template"].is_null()) return std::nullopt;
  const Json& t = cfg["chat_template"];
  if (t.is_string()) return t.get<std::string>();
  if (t.is_array()) {
    for (const Json& e : t)
      if (e.is_object() && e.value("name", "") == "default" && e.contains("template") &&
          e["template"].is_string())
        return e["template"].get<std::string>();
  }
  throw DataError("chat template: tokenizer_config.json '" + path +
                  "': chat_template: expected a string or a list with a {\"name\": \"default\", "
                  "\"template\": ...} entry, got " +
                  t.dump().substr(0, 200));
}

}  // namespace

ChatTemplateJinja ChatTemplateJinja::parse(std::string_view source, const std::string& name) {
  ChatTemplateJinja t;
  t.name_ = name;
  t.program_ = std::make_shared<const jinja::Program>(jinja::parse(source, name));
  return t;
}

ChatTemplateJinja ChatTemplateJinja::from_tokenizer_config(const std::string& path) {
  Json cfg = read_json(path);
  LOOM_CHECK_T(DataError, cfg.is_object(), "chat template: tokenizer_config.json '", path,
               "': expected a JSON object");
  std::optional<std::string> source = template_source(cfg, path);
  LOOM_CHECK_T(DataError, source.has_value(), "chat template: tokenizer_config.json '", path,
               "': expected a \"chat_template\" field, got none");
  ChatTemplateJinja t = parse(*source, path);
  for (const char* key : kSpecialKeys) {
    if (!cfg.contains(key) || cfg[key].is_null()) continue;
    const Json& v = cfg[key];
    if (v.is_string()) {
      t.special_tokens_[key] = v.get<std::string>();
    } else if (v.is_object() && v.contains("content") && v["content"].is_string()) {
      t.special_tokens_[key] = v["content"].get<std::string>();
    } else {
      throw DataError("chat template: tokenizer_config.json '" + path + "': " + key +
                      ": expected a string or {\"content\": ...}, got " + v.dump());
    }
  }
  return t;
}

std::optional<ChatTemplateJinja> ChatTemplateJinja::find_for_tokenizer(
    const std::string& tokenizer_json) {
  const std::filesystem::path cfg =
      std::filesystem::path(tokenizer_json).parent_path() / "tokenizer_config.json";
  if (!std::filesystem::exists(cfg)) return std::nullopt;
  if (!template_source(read_json(cfg.string()), cfg.string())) return std::nullopt;
  return from_tokenizer_config(cfg.string());
}

std::string ChatTemplateJinja::render(const std::vector<ChatMessage>& messages,
                                      bool add_generation_prompt) const {
  jinja::Dict vars;
  jinja::List msgs;
  for (const ChatMessage& m : messages) {
    jinja::Dict d;
    d.set("role", jinja::Value::string(m.role));
    d.set("content", jinja::Value::string(m.content));
    msgs.push_back(jinja::Value::dict_of(std::move(d)));
  }
  vars.set("messages", jinja::Value::list_of(std::move(msgs)));
  vars.set("tools", jinja::Value::none());
  vars.set("documents", jinja::Value::none());
  vars.set("add_generation_prompt", jinja::Value::boolean(add_generation_prompt));
  for (const auto& [k, v] : special_tokens_) vars.set(k, jinja::Value::string(v));
  return jinja::render(*program_, vars);
}

std::string ChatTemplateJinja::render_json(std::string_view variables_json) const {
  Json j;
  try {
    j = Json::parse(variables_json);
  } catch (const Json::parse_error& e) {
    throw ValueError(std::string("chat template: render_json: expected a JSON object, got: ") +
                     e.what());
  }
  LOOM_CHECK(j.is_object(), "chat template: render_json: expected a JSON object, got ",
             j.type_name());
  jinja::Dict vars;
  for (const auto& [k, v] : special_tokens_) vars.set(k, jinja::Value::string(v));
  for (const auto& [k, v] : j.items()) vars.set(k, from_json(v));
  return jinja::render(*program_, vars);
}

std::string ChatTemplateJinja::special_token(const std::string& key) const {
  auto it = special_tokens_.find(key);
  return it == special_tokens_.end() ? std::string() : it->second;
}

void ChatTemplateJinja::set_special_token(const std::string& key, std::string value) {
  special_tokens_[key] = std::move(value);
}

}  // namespace loom::data
