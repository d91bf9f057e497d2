// Reading tokenizer files: vocab.json + merges.txt (GPT-2 / HF slow format) and HF tokenizer.json.
// Every error is a DataError that names the file and what was wrong with it.
#include <fstream>
#include <map>
#include <sstream>

#include <nlohmann/json.hpp>

#include "core/util/Check.h"
#include "data/Tokenizer.h"

namespace loom::data {
namespace {

using Json = nlohmann::json;

std::string read_file(const std::string& path, const char* what) {
  std::ifstream f(path, std::ios::binary);
  LOOM_CHECK_T(DataError, f.good(), "tokenizer: cannot open ", what, " '", path,
               "' (missing or unreadable)");
  std::ostringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

Json parse_json(const std::string& path, const char* what) {
  std::string text = read_file(path, what);
  try {
    return Json::parse(text);
  } catch (const Json::exception& e) {  // NB: a number too large is out_of_range, not parse_error
    throw DataError("tokenizer: " + std::string(what) + " '" + path + "' is not valid JSON: " +
                    e.what());
  }
}

// {"token": id, ...} -> tokens[id]; ids must be exactly 0..N-1.
std::vector<std::string> vocab_from_object(const Json& vocab, const std::string& where) {
  LOOM_CHECK_T(DataError, vocab.is_object(), "tokenizer: ", where,
               ": expected a JSON object {\"token\": id}, got ", vocab.type_name());
  std::vector<std::string> tokens(vocab.size());
  std::vector<char> seen(vocab.size(), 0);
  for (const auto& [tok, id] : vocab.items()) {
    LOOM_CHECK_T(DataError, id.is_number_integer(), "tokenizer: ", where, ": token '", tok,
                 "' has a non-integer id ", id.dump());
    int64_t i = id.get<int64_t>();
    LOOM_CHECK_T(DataError, i >= 0 && i < int64_t(tokens.size()) && !seen[size_t(i)],
                 "tokenizer: ", where, ": expected ids 0..", tokens.size() - 1,
                 " each used once, got id ", i, " for token '", tok, "'");
    seen[size_t(i)] = 1;
    tokens[size_t(i)] = tok;
  }
  return tokens;
}

}  // namespace

Tokenizer Tokenizer::from_files(const std::string& vocab_json, const std::string& merges_txt,
                                const std::vector<std::string>& special_tokens) {
  std::vector<std::string> tokens = vocab_from_object(parse_json(vocab_json, "vocab file"),
                                                      vocab_json);
  std::string text = read_file(merges_txt, "merges file");
  std::vector<std::pair<std::string, std::string>> merges;
  std::istringstream in(text);
  std::string line;
  int line_no = 0, first_line = 0;
  bool trailing_blank = false;
  while (std::getline(in, line)) {
    ++line_no;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line_no == 1 && line.rfind("#version", 0) == 0) continue;
    if (line.empty()) {
      trailing_blank = true;
      continue;
    }
    LOOM_CHECK_T(DataError, !trailing_blank, "tokenizer: merges file '", merges_txt, "' line ",
                 line_no - 1, ": expected 'left right', got an empty line");
    size_t sp = line.find(' ');
    LOOM_CHECK_T(DataError,
                 sp != std::string::npos && sp > 0 && sp + 1 < line.size() &&
                     line.find(' ', sp + 1) == std::string::npos,
                 "tokenizer: merges file '", merges_txt, "' line ", line_no,
                 " is malformed: expected 'left right', got '", line, "'");
    if (first_line == 0) first_line = line_no;
    merges.emplace_back(line.substr(0, sp), line.substr(sp + 1));
  }
  Tokenizer t;
  t.build(std::move(tokens), merges, special_tokens, "merges file '" + merges_txt + "'",
          first_line == 0 ? 1 : first_line);
  t.description_ = "gpt2-bpe vocab_size=" + std::to_string(t.vocab_size()) +
                   " merges=" + std::to_string(t.num_merges()) + " vocab=" + vocab_json +
                   " merges=" + merges_txt;
  return t;
}

namespace {

// NB: nlohmann's value() throws its own type_error for a key of another type (or on a non-object);
// these return the field or `fallback`, and a mistyped one is a DataError naming it.
std::string string_field(const Json& o, const char* key, const std::string& where) {
  if (!o.is_object() || !o.contains(key)) return "";
  LOOM_CHECK_T(DataError, o[key].is_string(), "tokenizer: ", where, ": expected \"", key,
               "\" a string, got ", o[key].dump());
  return o[key].get<std::string>();
}

bool bool_field(const Json& o, const char* key, bool fallback, const std::string& where) {
  if (!o.is_object() || !o.contains(key)) return fallback;
  LOOM_CHECK_T(DataError, o[key].is_boolean(), "tokenizer: ", where, ": expected \"", key,
               "\" true or false, got ", o[key].dump());
  return o[key].get<bool>();
}

bool has_byte_level(const Json& pre, const std::string& where) {
  if (!pre.is_object()) return false;
  std::string type = string_field(pre, "type", where + " pre_tokenizer");
  if (type == "ByteLevel") return true;
  if (type == "Sequence" && pre.contains("pretokenizers") && pre["pretokenizers"].is_array())
    for (const Json& p : pre["pretokenizers"])
      if (has_byte_level(p, where)) return true;
  return false;
}

std::pair<std::string, std::string> parse_merge(const Json& m, const std::string& where,
                                                size_t k) {
  if (m.is_string()) {
    std::string s = m.get<std::string>();
    size_t sp = s.find(' ');
    LOOM_CHECK_T(DataError,
                 sp != std::string::npos && sp > 0 && sp + 1 < s.size() &&
                     s.find(' ', sp + 1) == std::string::npos,
                 "tokenizer: ", where, ": model.merges[", k,
                 "] is malformed: expected \"left right\", got \"", s, "\"");
    return {s.substr(0, sp), s.substr(sp + 1)};
  }
  LOOM_CHECK_T(DataError, m.is_array() && m.size() == 2 && m[0].is_string() && m[1].is_string(),
               "tokenizer: ", where, ": model.merges[", k,
               "] is malformed: expected \"left right\" or [\"left\", \"right\"], got ", m.dump());
  return {m[0].get<std::string>(), m[1].get<std::string>()};
}

}  // namespace

Tokenizer Tokenizer::from_tokenizer_json(const std::string& path) {
  Json j = parse_json(path, "tokenizer.json");
  const std::string where = "tokenizer.json '" + path + "'";
  LOOM_CHECK_T(DataError, j.is_object() && j.contains("model") && j["model"].is_object(),
               "tokenizer: ", where, ": expected a \"model\" object");
  const Json& model = j["model"];
  std::string type = string_field(model, "type", where + " model");
  LOOM_CHECK_T(DataError, type == "BPE", "tokenizer: ", where,
               ": expected model.type \"BPE\", got \"", type, "\"");
  LOOM_CHECK_T(DataError, j.contains("pre_tokenizer") && has_byte_level(j["pre_tokenizer"], where),
               "tokenizer: ", where,
               ": expected a ByteLevel pre_tokenizer (GPT-2 style byte-level BPE)");
  LOOM_CHECK_T(DataError,
               !bool_field(j["pre_tokenizer"], "add_prefix_space", false, where + " pre_tokenizer"),
               "tokenizer: ", where, ": add_prefix_space=true is not supported (GPT-2 uses false)");
  LOOM_CHECK_T(DataError, model.contains("vocab") && model.contains("merges"), "tokenizer: ",
               where, ": expected model.vocab and model.merges");
  std::vector<std::string> tokens = vocab_from_object(model["vocab"], where + " model.vocab");
  // Added tokens may extend the vocabulary past model.vocab.
  std::vector<std::string> specials;
  std::map<int64_t, std::string> extra;
  if (j.contains("added_tokens") && j["added_tokens"].is_array()) {
    for (const Json& a : j["added_tokens"]) {
      LOOM_CHECK_T(DataError, a.is_object() && (!a.contains("id") || a["id"].is_number_integer()),
                   "tokenizer: ", where,
                   ": expected added_tokens entries {\"id\": integer, \"content\": string}, got ",
                   a.dump());
      std::string content = string_field(a, "content", where + " added_tokens");
      int64_t id = a.contains("id") ? a["id"].get<int64_t>() : -1;
      // HF matches every added token literally before pre-tokenization, special or not.
      if (!content.empty()) specials.push_back(content);
      if (id >= int64_t(tokens.size())) extra[id] = content;
    }
  }
  for (const auto& [id, content] : extra) {
    LOOM_CHECK_T(DataError, id == int64_t(tokens.size()), "tokenizer: ", where,
                 ": added token '", content, "' has id ", id, ", expected ", tokens.size());
    tokens.push_back(content);
  }
  const Json& jm = model["merges"];
  LOOM_CHECK_T(DataError, jm.is_array(), "tokenizer: ", where, ": model.merges is not an array");
  std::vector<std::pair<std::string, std::string>> merges;
  merges.reserve(jm.size());
  for (size_t k = 0; k < jm.size(); ++k) merges.push_back(parse_merge(jm[k], where, k));
  Tokenizer t;
  t.build(std::move(tokens), merges, specials, where, 0);
  return t;
}

}  // namespace loom::data
