// The normalizer, pre_tokenizer, decoder and post_processor sections of a Hugging Face
// tokenizer.json (see TokenizerJson.h). Field names and defaults follow `tokenizers` 0.20.
#include "data/TokenizerJson.h"

#include "core/util/Check.h"

namespace loom::data {
namespace {

using Value = JsonCtx::Value;

std::string join_quoted(const std::vector<std::string>& v) {
  std::string out;
  for (size_t i = 0; i < v.size(); ++i) out += (i ? ", \"" : "\"") + v[i] + "\"";
  return out;
}

// A literal string as a PCRE2 pattern.
std::string regex_escape(const std::string& s) {
  std::string out;
  for (char c : s) {
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
        uint8_t(c) >= 0x80) {
      out += c;
    } else {
      out += '\\';
      out += c;
    }
  }
  return out;
}

// Metaspace's prepend_scheme, or the older add_prefix_space (false means never, as in HF).
PreTokenizer::Prepend prepend_scheme(const Value& v, const std::string& path, const JsonCtx& ctx) {
  std::string scheme = "always";
  if (v.contains("prepend_scheme") && !v["prepend_scheme"].is_null())
    scheme = ctx.get_string(v, path, "prepend_scheme");
  if (!ctx.get_bool(v, path, "add_prefix_space", true)) scheme = "never";
  if (scheme == "always") return PreTokenizer::Prepend::Always;
  if (scheme == "first") return PreTokenizer::Prepend::First;
  if (scheme == "never") return PreTokenizer::Prepend::Never;
  ctx.fail(path + ".prepend_scheme",
           "expected one of \"first\", \"always\", \"never\", got \"" + scheme + "\"");
}

std::string metaspace_replacement(const Value& v, const std::string& path, const JsonCtx& ctx) {
  std::string r = ctx.get_string(v, path, "replacement");
  if (r.empty()) ctx.fail(path + ".replacement", "expected one character, got \"\"");
  return r;
}

}  // namespace

void JsonCtx::fail(const std::string& path, const std::string& msg) const {
  throw DataError("tokenizer: " + where + ": " + path + ": " + msg);
}

std::string JsonCtx::type_of(const Value& v, const std::string& path,
                             const std::vector<std::string>& supported) const {
  if (!v.is_object()) fail(path, std::string("expected an object, got ") + v.type_name());
  std::string type =
      v.contains("type") && v["type"].is_string() ? v["type"].get<std::string>() : std::string();
  for (const std::string& s : supported)
    if (s == type) return type;
  fail(path + ".type", "expected one of " + join_quoted(supported) +
                           " (the supported values), got " +
                           (v.contains("type") ? v["type"].dump() : std::string("none")));
}

bool JsonCtx::get_bool(const Value& v, const std::string& path, const char* key, bool def) const {
  if (!v.contains(key) || v[key].is_null()) return def;
  if (!v[key].is_boolean())
    fail(path + "." + key, std::string("expected true or false, got ") + v[key].dump());
  return v[key].get<bool>();
}

std::string JsonCtx::get_string(const Value& v, const std::string& path, const char* key) const {
  if (!v.contains(key) || !v[key].is_string())
    fail(path + "." + key, std::string("expected a string, got ") +
                               (v.contains(key) ? v[key].dump() : std::string("none")));
  return v[key].get<std::string>();
}

int64_t JsonCtx::get_int(const Value& v, const std::string& path, const char* key) const {
  if (!v.contains(key) || !v[key].is_number_integer())
    fail(path + "." + key, std::string("expected an integer, got ") +
                               (v.contains(key) ? v[key].dump() : std::string("none")));
  return v[key].get<int64_t>();
}

std::string JsonCtx::literal_pattern(const Value& v, const std::string& path) const {
  if (v.is_object() && v.contains("String") && v["String"].is_string())
    return v["String"].get<std::string>();
  fail(path, "expected {\"String\": ...} (literal patterns are supported, not " +
                 (v.is_object() && v.contains("Regex") ? std::string("Regex") : v.dump()) + ")");
}

std::unique_ptr<Normalizer> Tokenizer::HfJson::normalizer(const Value& v, const Ctx& ctx) {
  if (v.is_null()) return nullptr;
  std::vector<Normalizer::Step> steps;
  auto add = [&](auto& self, const Value& n, const std::string& path) -> void {
    std::string type = ctx.type_of(n, path, {"NFC", "Prepend", "Replace", "Sequence"});
    if (type == "NFC") {
      steps.push_back({Normalizer::Kind::Nfc, "", ""});
    } else if (type == "Prepend") {
      steps.push_back({Normalizer::Kind::Prepend, ctx.get_string(n, path, "prepend"), ""});
    } else if (type == "Replace") {
      std::string pat = ctx.literal_pattern(n.value("pattern", Value()), path + ".pattern");
      if (pat.empty()) ctx.fail(path + ".pattern", "expected a non-empty string, got \"\"");
      steps.push_back({Normalizer::Kind::Replace, pat, ctx.get_string(n, path, "content")});
    } else {
      const Value& list = n.value("normalizers", Value());
      if (!list.is_array()) ctx.fail(path + ".normalizers", "expected an array");
      for (size_t i = 0; i < list.size(); ++i)
        self(self, list[i], path + ".normalizers[" + std::to_string(i) + "]");
    }
  };
  add(add, v, "normalizer");
  return std::make_unique<Normalizer>(std::move(steps));
}

std::vector<PreTokenizer::Step> Tokenizer::HfJson::pre_tokenizer(const Value& v, const Ctx& ctx,
                                                                 bool* byte_level) {
  *byte_level = false;
  std::vector<PreTokenizer::Step> steps;
  if (v.is_null()) return steps;
  const std::vector<std::string> kinds = {"ByteLevel", "Split", "Metaspace", "Sequence"};
  std::vector<std::pair<Value, std::string>> items;  // (component, JSON path)
  if (ctx.type_of(v, "pre_tokenizer", kinds) == "Sequence") {
    const Value& list = v.value("pretokenizers", Value());
    if (!list.is_array()) ctx.fail("pre_tokenizer.pretokenizers", "expected an array");
    for (size_t i = 0; i < list.size(); ++i)
      items.emplace_back(list[i], "pre_tokenizer.pretokenizers[" + std::to_string(i) + "]");
  } else {
    items.emplace_back(v, "pre_tokenizer");
  }
  for (size_t i = 0; i < items.size(); ++i) {
    const auto& [p, path] = items[i];
    std::string type = ctx.type_of(p, path, {"ByteLevel", "Split", "Metaspace"});
    if (*byte_level)
      ctx.fail(path,
               "expected ByteLevel to be the last pre-tokenizer, got \"" + type + "\" after it");
    if (type == "ByteLevel") {
      if (ctx.get_bool(p, path, "add_prefix_space", false))
        ctx.fail(path + ".add_prefix_space", "expected false (true is not supported), got true");
      *byte_level = true;  // bytes map to the alphabet inside BPE; use_regex adds GPT-2's split
      if (ctx.get_bool(p, path, "use_regex", true))
        steps.push_back(PreTokenizer::Step{.pattern = PreTokenizer::kGpt2Pattern});
    } else if (type == "Split") {
      std::string behavior = p.value("behavior", Value()).is_string()
                                 ? p["behavior"].get<std::string>()
                                 : std::string();
      if (behavior != "Isolated")
        ctx.fail(path + ".behavior",
                 "expected \"Isolated\" (the only supported behavior), got \"" + behavior + "\"");
      if (ctx.get_bool(p, path, "invert", false))
        ctx.fail(path + ".invert", "expected false (true is not supported), got true");
      const Value& pat = p.value("pattern", Value());
      PreTokenizer::Step s;
      if (pat.is_object() && pat.contains("Regex") && pat["Regex"].is_string()) {
        s.pattern = pat["Regex"].get<std::string>();
      } else {
        s.pattern = regex_escape(ctx.literal_pattern(pat, path + ".pattern"));
      }
      steps.push_back(std::move(s));
    } else {
      if (i != 0) ctx.fail(path, "expected Metaspace to be the first pre-tokenizer");
      PreTokenizer::Step s;
      s.kind = PreTokenizer::Step::Kind::Metaspace;
      s.replacement = metaspace_replacement(p, path, ctx);
      s.prepend = prepend_scheme(p, path, ctx);
      s.split = ctx.get_bool(p, path, "split", true);
      steps.push_back(std::move(s));
    }
  }
  return steps;
}

void Tokenizer::HfJson::decoder(const Value& v, const Ctx& ctx, Tokenizer& t) {
  if (v.is_null()) {
    t.decode_mode_ = DecodeMode::JoinWithSpace;
    return;
  }
  std::vector<TokenDecoder::Step> steps;
  auto add = [&](auto& self, const Value& d, const std::string& path) -> void {
    std::string type = ctx.type_of(
        d, path,
        {"ByteLevel", "Replace", "ByteFallback", "Fuse", "Strip", "Metaspace", "Sequence"});
    TokenDecoder::Step s{TokenDecoder::Kind::Fuse, "", ""};
    if (type == "Sequence") {
      const Value& list = d.value("decoders", Value());
      if (!list.is_array()) ctx.fail(path + ".decoders", "expected an array");
      for (size_t i = 0; i < list.size(); ++i)
        self(self, list[i], path + ".decoders[" + std::to_string(i) + "]");
      return;
    }
    if (type == "ByteLevel") s.kind = TokenDecoder::Kind::ByteLevel;
    if (type == "ByteFallback") s.kind = TokenDecoder::Kind::ByteFallback;
    if (type == "Replace") {
      s.kind = TokenDecoder::Kind::Replace;
      s.text = ctx.literal_pattern(d.value("pattern", Value()), path + ".pattern");
      if (s.text.empty()) ctx.fail(path + ".pattern", "expected a non-empty string, got \"\"");
      s.content = ctx.get_string(d, path, "content");
    } else if (type == "Strip") {
      s.kind = TokenDecoder::Kind::Strip;
      s.text = ctx.get_string(d, path, "content");
      s.start = int(ctx.get_int(d, path, "start"));
      s.stop = int(ctx.get_int(d, path, "stop"));
    } else if (type == "Metaspace") {
      s.kind = TokenDecoder::Kind::Metaspace;
      s.text = metaspace_replacement(d, path, ctx);
      s.prepend = prepend_scheme(d, path, ctx) != PreTokenizer::Prepend::Never;
    }
    steps.push_back(std::move(s));
  };
  add(add, v, "decoder");
  if (t.byte_level_ && steps.size() == 1 && steps[0].kind == TokenDecoder::Kind::ByteLevel) {
    t.decode_mode_ = DecodeMode::Bytes;  // token_bytes() already holds what ByteLevel decodes to
    return;
  }
  t.decode_mode_ = DecodeMode::Steps;
  t.decoder_ = std::make_unique<TokenDecoder>(std::move(steps));
}

void Tokenizer::HfJson::post_processor(const Value& v, const Ctx& ctx, Tokenizer& t) {
  if (v.is_null()) return;
  std::vector<std::pair<Value, std::string>> items;
  if (ctx.type_of(v, "post_processor", {"TemplateProcessing", "ByteLevel", "Sequence"}) ==
      "Sequence") {
    const Value& list = v.value("processors", Value());
    if (!list.is_array()) ctx.fail("post_processor.processors", "expected an array");
    for (size_t i = 0; i < list.size(); ++i)
      items.emplace_back(list[i], "post_processor.processors[" + std::to_string(i) + "]");
  } else {
    items.emplace_back(v, "post_processor");
  }
  bool have_template = false;
  for (const auto& [p, path] : items) {
    // ByteLevel only trims offsets, which Loom does not produce.
    if (ctx.type_of(p, path, {"TemplateProcessing", "ByteLevel"}) == "ByteLevel") continue;
    if (have_template) ctx.fail(path, "expected at most one TemplateProcessing");
    have_template = true;
    const Value& single = p.value("single", Value());
    const Value& specials = p.value("special_tokens", Value());
    if (!single.is_array()) ctx.fail(path + ".single", "expected an array");
    bool seen_a = false;
    for (size_t i = 0; i < single.size(); ++i) {
      const std::string ipath = path + ".single[" + std::to_string(i) + "]";
      const Value& item = single[i];
      if (item.is_object() && item.contains("Sequence")) {
        if (item["Sequence"].value("id", "") != "A" || seen_a)
          ctx.fail(ipath, "expected one {\"Sequence\": {\"id\": \"A\"}}, got " + item.dump());
        seen_a = true;
        continue;
      }
      if (!item.is_object() || !item.contains("SpecialToken"))
        ctx.fail(ipath,
                 "expected {\"SpecialToken\": ...} or {\"Sequence\": ...}, got " + item.dump());
      std::string name = item["SpecialToken"].value("id", "");
      if (!specials.is_object() || !specials.contains(name) ||
          !specials[name].value("ids", Value()).is_array())
        ctx.fail(path + ".special_tokens", "expected an entry with \"ids\" for \"" + name + "\"");
      for (const Value& id : specials[name]["ids"]) {
        if (!id.is_number_integer() || id.get<int64_t>() < 0 || id.get<int64_t>() >= t.vocab_size())
          ctx.fail(path + ".special_tokens." + name + ".ids",
                   "expected ids in [0, " + std::to_string(t.vocab_size()) + "), got " + id.dump());
        (seen_a ? t.suffix_ids_ : t.prefix_ids_).push_back(int32_t(id.get<int64_t>()));
      }
    }
    if (!seen_a) ctx.fail(path + ".single", "expected a {\"Sequence\": {\"id\": \"A\"}} item");
  }
}

}  // namespace loom::data
