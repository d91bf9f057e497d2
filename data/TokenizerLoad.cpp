// Reading tokenizer files: vocab.json + merges.txt (GPT-2 / HF slow format) and HF tokenizer.json
// (its model and added tokens here, the other sections in TokenizerJson.cpp). Every error is a
// DataError that names the file and what was wrong with it.
#include <algorithm>
#include <fstream>
#include <map>
#include <sstream>

#include "core/util/Check.h"
#include "data/AddedTokens.h"
#include "data/TokenizerJson.h"

namespace loom::data {
namespace {

using Json = nlohmann::json;
using Ctx = JsonCtx;

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
  std::vector<AddedToken> added;
  for (const std::string& s : special_tokens) {
    auto it = std::find(tokens.begin(), tokens.end(), s);
    if (it != tokens.end()) added.push_back(AddedToken{s, int32_t(it - tokens.begin())});
  }
  Tokenizer t;
  t.build(std::move(tokens), merges, std::move(added), "merges file '" + merges_txt + "'",
          first_line == 0 ? 1 : first_line);
  t.description_ = "gpt2-bpe vocab_size=" + std::to_string(t.vocab_size()) +
                   " merges=" + std::to_string(t.num_merges()) + " vocab=" + vocab_json +
                   " merges=" + merges_txt;
  return t;
}


namespace {

std::pair<std::string, std::string> parse_merge(const Json& m, const Ctx& ctx, size_t k) {
  const std::string path = "model.merges[" + std::to_string(k) + "]";
  if (m.is_string()) {
    std::string s = m.get<std::string>();
    size_t sp = s.find(' ');
    if (sp == std::string::npos || sp == 0 || sp + 1 >= s.size() ||
        s.find(' ', sp + 1) != std::string::npos)
      ctx.fail(path, "is malformed: expected \"left right\", got \"" + s + "\"");
    return {s.substr(0, sp), s.substr(sp + 1)};
  }
  if (!(m.is_array() && m.size() == 2 && m[0].is_string() && m[1].is_string()))
    ctx.fail(path, "is malformed: expected \"left right\" or [\"left\", \"right\"], got " +
                       m.dump());
  return {m[0].get<std::string>(), m[1].get<std::string>()};
}

// The fields of a BPE model this tokenizer does not implement must be at their neutral values.
void check_bpe_fields(const Json& model, const Ctx& ctx) {
  for (const char* key : {"continuing_subword_prefix", "end_of_word_suffix"}) {
    if (!model.contains(key) || model[key].is_null()) continue;
    if (!model[key].is_string() || !model[key].get<std::string>().empty())
      ctx.fail(std::string("model.") + key,
               "expected null or \"\" (a non-empty value is not supported), got " +
                   model[key].dump());
  }
  if (model.contains("dropout") && !model["dropout"].is_null() &&
      !(model["dropout"].is_number() && model["dropout"].get<double>() == 0.0))
    ctx.fail("model.dropout", "expected null or 0 (BPE dropout is not supported), got " +
                                  model["dropout"].dump());
  if (!model.contains("vocab") || !model.contains("merges"))
    ctx.fail("model", "expected model.vocab and model.merges");
  if (!model["merges"].is_array()) ctx.fail("model.merges", "expected an array");
}

// added_tokens: ids inside the model vocab must name the same string; the others extend the
// vocabulary in id order (as HF assigns them).
std::vector<AddedToken> added_tokens(const Json& j, const Ctx& ctx,
                                     std::vector<std::string>& tokens) {
  std::vector<AddedToken> added;
  if (!j.contains("added_tokens") || j["added_tokens"].is_null()) return added;
  if (!j["added_tokens"].is_array()) ctx.fail("added_tokens", "expected an array");
  std::map<int64_t, std::string> extra;
  for (size_t i = 0; i < j["added_tokens"].size(); ++i) {
    const Json& a = j["added_tokens"][i];
    const std::string path = "added_tokens[" + std::to_string(i) + "]";
    std::string content = ctx.get_string(a, path, "content");
    if (content.empty()) continue;  // HF ignores empty added tokens
    const int64_t id = ctx.get_int(a, path, "id");
    if (id < 0) ctx.fail(path + ".id", "expected an id >= 0, got " + std::to_string(id));
    if (id < int64_t(tokens.size()) && tokens[size_t(id)] != content)
      ctx.fail(path, "expected id " + std::to_string(id) + " to be '" + tokens[size_t(id)] +
                         "' as in model.vocab, got '" + content + "'");
    if (id >= int64_t(tokens.size())) extra[id] = content;
    added.push_back(AddedToken{content, int32_t(id), ctx.get_bool(a, path, "special", false),
                               ctx.get_bool(a, path, "lstrip", false),
                               ctx.get_bool(a, path, "rstrip", false),
                               ctx.get_bool(a, path, "single_word", false),
                               ctx.get_bool(a, path, "normalized", false)});
  }
  for (const auto& [id, content] : extra) {
    if (id != int64_t(tokens.size()))
      ctx.fail("added_tokens", "added token '" + content + "' has id " + std::to_string(id) +
                                   ", expected " + std::to_string(tokens.size()));
    tokens.push_back(content);
  }
  return added;
}

}  // namespace

Tokenizer Tokenizer::from_tokenizer_json(const std::string& path) {
  Json j = parse_json(path, "tokenizer.json");
  const Ctx ctx{"tokenizer.json '" + path + "'"};
  if (!j.is_object() || !j.contains("model") || !j["model"].is_object())
    ctx.fail("model", "expected a \"model\" object");
  const Json& model = j["model"];
  const std::string type = model.contains("type") ? ctx.get_string(model, "model", "type") : "";
  if (type != "BPE")
    ctx.fail("model.type", "expected model.type \"BPE\" (the only supported model), got \"" +
                               type + "\"");
  Tokenizer t;
  t.normalizer_ = HfJson::normalizer(j.value("normalizer", Json()), ctx);
  bool byte_level = false;
  std::vector<PreTokenizer::Step> steps =
      HfJson::pre_tokenizer(j.value("pre_tokenizer", Json()), ctx, &byte_level);
  try {
    t.pre_ = std::make_unique<PreTokenizer>(std::move(steps));
  } catch (DataError& e) {
    e.add_context("reading the pre_tokenizer of " + ctx.where);
    throw;
  }
  t.byte_level_ = byte_level;
  check_bpe_fields(model, ctx);
  t.bpe_opts_.ignore_merges = ctx.get_bool(model, "model", "ignore_merges", false);
  t.bpe_opts_.byte_fallback = ctx.get_bool(model, "model", "byte_fallback", false);
  t.bpe_opts_.fuse_unk = ctx.get_bool(model, "model", "fuse_unk", false);
  std::vector<std::string> tokens = vocab_from_object(model["vocab"], ctx.where + " model.vocab");
  t.model_size_ = int32_t(tokens.size());
  if (model.contains("unk_token") && !model["unk_token"].is_null()) {
    std::string unk = ctx.get_string(model, "model", "unk_token");
    auto it = std::find(tokens.begin(), tokens.end(), unk);
    if (it == tokens.end())
      ctx.fail("model.unk_token", "expected a token of model.vocab, got \"" + unk + "\"");
    t.bpe_opts_.unk_id = int32_t(it - tokens.begin());
  }
  std::vector<AddedToken> added = added_tokens(j, ctx, tokens);
  const Json& jm = model["merges"];
  std::vector<std::pair<std::string, std::string>> merges;
  merges.reserve(jm.size());
  for (size_t k = 0; k < jm.size(); ++k) merges.push_back(parse_merge(jm[k], ctx, k));
  t.build(std::move(tokens), merges, std::move(added), ctx.where, 0);
  HfJson::decoder(j.value("decoder", Json()), ctx, t);
  HfJson::post_processor(j.value("post_processor", Json()), ctx, t);
  const Json pre = j.value("pre_tokenizer", Json());
  // (pre_tokenizer's fields were type-checked by HfJson::pre_tokenizer above)
  const bool gpt2 = t.byte_level_ && !t.normalizer_ && !t.bpe_opts_.ignore_merges &&
                    t.prefix_ids_.empty() && t.suffix_ids_.empty() &&
                    t.decode_mode_ == DecodeMode::Bytes && pre.is_object() &&
                    pre.value("type", Json()) == Json("ByteLevel") &&
                    pre.value("use_regex", Json(true)) == Json(true);
  if (!gpt2)
    t.description_ = std::string("hf-bpe ") + (t.byte_level_ ? "byte-level" : "sentencepiece") +
                     " vocab_size=" + std::to_string(t.vocab_size()) +
                     " merges=" + std::to_string(t.num_merges()) + " source=" + ctx.where;
  return t;
}

}  // namespace loom::data
