// Private to loom_data: reading the components of a Hugging Face tokenizer.json (TokenizerJson.cpp)
// for Tokenizer::from_tokenizer_json (TokenizerLoad.cpp). Every error is a DataError
//   "tokenizer: tokenizer.json '<file>': <json path>: expected <X>, got <Y>"
// naming the JSON path (e.g. pre_tokenizer.pretokenizers[1].type) and the supported values.
#pragma once

#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "data/Normalizer.h"
#include "data/PreTokenizer.h"
#include "data/TokenDecoder.h"
#include "data/Tokenizer.h"

namespace loom::data {

// The file being read, for error messages, and typed field readers that fail with its JSON path.
struct JsonCtx {
  using Value = nlohmann::json;
  std::string where;  // "tokenizer.json '<path>'"
  [[noreturn]] void fail(const std::string& path, const std::string& msg) const;
  // DataError unless v is an object with a string "type" among `supported`; returns the type.
  std::string type_of(const Value& v, const std::string& path,
                      const std::vector<std::string>& supported) const;
  // A field of a given kind; get_bool gives `def` when the field is absent or null.
  bool get_bool(const Value& v, const std::string& path, const char* key, bool def) const;
  std::string get_string(const Value& v, const std::string& path, const char* key) const;
  int64_t get_int(const Value& v, const std::string& path, const char* key) const;
  // {"String": s} -> s; {"Regex": r} is unsupported where only literals are.
  std::string literal_pattern(const Value& v, const std::string& path) const;
};

struct Tokenizer::HfJson {
  using Value = nlohmann::json;
  using Ctx = JsonCtx;

  // null -> no normalizer.
  static std::unique_ptr<Normalizer> normalizer(const Value& v, const Ctx& ctx);
  // Steps of the pre-tokenizer; *byte_level is set if it holds a ByteLevel step.
  static std::vector<PreTokenizer::Step> pre_tokenizer(const Value& v, const Ctx& ctx,
                                                       bool* byte_level);
  // Sets t.decode_mode_ / t.decoder_.
  static void decoder(const Value& v, const Ctx& ctx, Tokenizer& t);
  // Sets t.prefix_ids_ / t.suffix_ids_.
  static void post_processor(const Value& v, const Ctx& ctx, Tokenizer& t);
};

}  // namespace loom::data
