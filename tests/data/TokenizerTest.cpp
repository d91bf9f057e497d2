// GPT-2 byte-level BPE tokenizer vs Hugging Face `tokenizers` (golden ids written by
// tests/golden/gen_tokenizer.py from the same vocab/merges), tokenizer.json loading, special
// tokens, invalid UTF-8, and the error messages for bad tokenizer files.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "core/random/Philox.h"
#include "core/util/Check.h"
#include "data/Tokenizer.h"
#include "tests/data/DataTestUtil.h"

namespace loom::data {
namespace {

using loom::testing::GoldenFile;
using testing::golden_bytes;
using testing::TempDir;
using testing::write_file;

// The GPT-2 files from the golden file, written to a temp dir (no network or shared dir needed).
struct Gpt2Files {
  TempDir dir;
  std::string vocab = (dir / "vocab.json").string();
  std::string merges = (dir / "merges.txt").string();
  std::string tokenizer_json = (dir / "tokenizer.json").string();
  Gpt2Files() {
    GoldenFile g("tokenizer.h5");
    write_file(vocab, golden_bytes(g, "gpt2/vocab_json"));
    write_file(merges, golden_bytes(g, "gpt2/merges_txt"));
    write_file(tokenizer_json, golden_bytes(g, "gpt2/tokenizer_json"));
  }
};

// Index of the first difference, or -1.
int64_t first_mismatch(const std::vector<int32_t>& a, const std::vector<int32_t>& b) {
  for (size_t i = 0; i < std::min(a.size(), b.size()); ++i)
    if (a[i] != b[i]) return int64_t(i);
  return a.size() == b.size() ? -1 : int64_t(std::min(a.size(), b.size()));
}

TEST(TokenizerTest, MatchesHuggingFaceGpt2OnGoldenText) {
  Gpt2Files files;
  Tokenizer tok = Tokenizer::from_files(files.vocab, files.merges);
  GoldenFile g("tokenizer.h5");
  std::string text = golden_bytes(g, "gpt2/text");
  std::vector<int32_t> want = g.get("gpt2/ids").to_vector<int32_t>();
  ASSERT_GT(text.size(), 1'000'000u);
  std::vector<int32_t> got = tok.encode(text);
  int64_t bad = first_mismatch(got, want);
  if (bad >= 0) {
    std::string ctx;
    int64_t hi = std::min<int64_t>(bad + 3, int64_t(want.size()));
    for (int64_t i = std::max<int64_t>(0, bad - 3); i < hi; ++i)
      ctx += "'" + tok.token_bytes(want[size_t(i)]) + "' ";
    FAIL() << "first mismatch at id " << bad << " of " << want.size() << " (got "
           << (size_t(bad) < got.size() ? got[size_t(bad)] : -1) << ", want " << want[size_t(bad)]
           << "); HF tokens around it: " << ctx;
  }
  EXPECT_EQ(got.size(), want.size());
  EXPECT_EQ(tok.decode(got), text);
  // Second pass is served from the word cache and must give the same ids.
  EXPECT_EQ(tok.encode(text), want);
}

TEST(TokenizerTest, KnownGpt2Facts) {
  Gpt2Files files;
  Tokenizer tok = Tokenizer::from_files(files.vocab, files.merges);
  EXPECT_EQ(tok.vocab_size(), 50257);
  EXPECT_EQ(tok.num_merges(), 50000);
  EXPECT_EQ(tok.id_to_token(50256), "<|endoftext|>");
  EXPECT_EQ(tok.eot_id(), std::optional<int32_t>(50256));
  EXPECT_EQ(tok.token_to_id("\xC4\xA0the"), std::optional<int32_t>(262));  // "Ġthe"
  EXPECT_EQ(tok.token_bytes(262), " the");
  EXPECT_EQ(tok.encode("Hello world"), (std::vector<int32_t>{15496, 995}));
  EXPECT_TRUE(tok.encode("").empty());
  EXPECT_THROW(tok.decode(std::vector<int32_t>{50257}), ValueError);
  EXPECT_THROW(tok.id_to_token(-1), ValueError);
}

TEST(TokenizerTest, TokenizerJsonEqualsVocabAndMerges) {
  Gpt2Files files;
  Tokenizer a = Tokenizer::from_files(files.vocab, files.merges);
  Tokenizer b = Tokenizer::from_tokenizer_json(files.tokenizer_json);
  // Same file with merges rewritten in the other of HF's two formats ("a b" <-> ["a","b"]).
  nlohmann::json j = nlohmann::json::parse(std::ifstream(files.tokenizer_json));
  bool was_pairs = j["model"]["merges"][0].is_array();
  for (auto& m : j["model"]["merges"]) {
    if (was_pairs) {
      m = m[0].get<std::string>() + " " + m[1].get<std::string>();
    } else {
      std::string s = m.get<std::string>();
      size_t sp = s.find(' ');
      m = nlohmann::json::array({s.substr(0, sp), s.substr(sp + 1)});
    }
  }
  std::string other = (files.dir / "tokenizer_other.json").string();
  write_file(other, j.dump());
  Tokenizer c = Tokenizer::from_tokenizer_json(other);
  for (const Tokenizer* t : {&b, &c}) {
    ASSERT_EQ(t->vocab_size(), a.vocab_size());
    ASSERT_EQ(t->num_merges(), a.num_merges());
    for (int32_t id = 0; id < a.vocab_size(); ++id)
      ASSERT_EQ(t->id_to_token(id), a.id_to_token(id));
    EXPECT_EQ(t->eot_id(), a.eot_id());
  }
  GoldenFile g("tokenizer.h5");
  std::string text = golden_bytes(g, "gpt2/text").substr(0, 200'000);
  std::vector<int32_t> ids = a.encode(text);
  EXPECT_EQ(b.encode(text), ids);
  EXPECT_EQ(c.encode(text), ids);
}

TEST(TokenizerTest, SpecialTokenIsMatchedLiterallyUnlessDisabled) {
  Gpt2Files files;
  Tokenizer tok = Tokenizer::from_files(files.vocab, files.merges);
  std::string text = "a<|endoftext|>b <|endoftext|><|endoftext|>";
  std::vector<int32_t> ids = tok.encode(text);
  EXPECT_EQ(std::count(ids.begin(), ids.end(), 50256), 3);
  EXPECT_EQ(tok.decode(ids), text);
  tok.set_allow_special(false);
  std::vector<int32_t> plain = tok.encode(text);
  EXPECT_EQ(std::count(plain.begin(), plain.end(), 50256), 0);
  EXPECT_EQ(tok.decode(plain), text);
  // With no special tokens configured, the vocab entry is still a normal (byte-level) token.
  Tokenizer none = Tokenizer::from_files(files.vocab, files.merges, {});
  EXPECT_TRUE(none.special_tokens().empty());
  EXPECT_EQ(none.encode(text), plain);
}

TEST(TokenizerTest, InvalidUtf8NeverThrowsAndRoundTrips) {
  Gpt2Files files;
  Tokenizer tok = Tokenizer::from_files(files.vocab, files.merges);
  std::string bad = "ok \xff\xfe the \xc3\x28 caf\xc3\xa9 \xe2\x82 end\x80";
  std::vector<int32_t> ids = tok.encode(bad);
  EXPECT_EQ(tok.decode(ids), bad);
  // The valid parts still encode as usual: " the" (id 262) survives between invalid bytes.
  EXPECT_NE(std::find(ids.begin(), ids.end(), 262), ids.end());
  // 64 KiB of random bytes (Philox, fixed seed).
  std::string noise(1 << 16, '\0');
  for (size_t i = 0; i < noise.size(); ++i) noise[i] = char(philox::random4(7, i).x[0] & 0xFF);
  EXPECT_EQ(tok.decode(tok.encode(noise)), noise);
}

TEST(TokenizerTest, BadFilesNameTheFileAndTheProblem) {
  Gpt2Files files;
  TempDir dir;
  auto expect_error = [](auto&& fn, const std::vector<std::string>& parts) {
    try {
      fn();
      ADD_FAILURE() << "expected DataError";
    } catch (const DataError& e) {
      for (const std::string& p : parts)
        EXPECT_NE(std::string(e.what()).find(p), std::string::npos)
            << "message lacks '" << p << "': " << e.what();
    }
  };
  std::string missing = (dir / "nope.json").string();
  expect_error([&] { Tokenizer::from_files(missing, files.merges); }, {missing, "missing"});
  std::string notjson = (dir / "bad.json").string();
  write_file(notjson, "{\"a\": 1,,}");
  expect_error([&] { Tokenizer::from_files(notjson, files.merges); }, {notjson, "not valid JSON"});
  std::string merges = (dir / "merges.txt").string();
  write_file(merges, "#version: 0.2\n\xC4\xA0 t\nthisisonetoken\n");
  expect_error([&] { Tokenizer::from_files(files.vocab, merges); },
               {merges, "line 3", "malformed", "thisisonetoken"});
  write_file(merges, "#version: 0.2\n\xC4\xA0 t\nzzzqqq xyzzy\n");
  expect_error([&] { Tokenizer::from_files(files.vocab, merges); },
               {merges, "line 3", "'zzzqqq' is not in the vocabulary"});
  std::string tj = (dir / "tokenizer.json").string();
  write_file(tj, R"({"model": {"type": "WordPiece", "vocab": {}}, "pre_tokenizer": null})");
  expect_error([&] { Tokenizer::from_tokenizer_json(tj); }, {tj, "expected model.type \"BPE\""});
  write_file(tj, R"({"model": {"type": "BPE", "vocab": {"a": 0}, "merges": []},
                     "pre_tokenizer": {"type": "Whitespace"}})");
  expect_error([&] { Tokenizer::from_tokenizer_json(tj); }, {tj, "ByteLevel"});
  std::string vocab = (dir / "vocab.json").string();
  write_file(vocab, R"({"a": 0, "b": 5})");
  expect_error([&] { Tokenizer::from_files(vocab, files.merges); }, {vocab, "got id 5"});
}

}  // namespace
}  // namespace loom::data
