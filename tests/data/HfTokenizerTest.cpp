// Hugging Face tokenizer.json pipelines vs HF `tokenizers` 0.20.3 (goldens written by
// tests/golden/gen_hf_tokenizers.py): a Llama-3-style and a Qwen2-style byte-level BPE and two
// SentencePiece-style byte_fallback BPEs (Prepend+Replace normalizer; Metaspace), each on the whole
// golden text and on hard probe strings (ids with and without the post-processor, decode with and
// without special tokens); encode_pieces; and the errors for unsupported tokenizer.json contents.
#include <gtest/gtest.h>

#include <fstream>
#include <nlohmann/json.hpp>

#include "core/util/Check.h"
#include "data/Tokenizer.h"
#include "tests/data/DataTestUtil.h"

namespace loom::data {
namespace {

using loom::testing::GoldenFile;
using nlohmann::json;
using testing::golden_bytes;
using testing::TempDir;
using testing::write_file;

const char* const kNames[] = {"llama3", "qwen2", "mistral", "llama2_metaspace"};
constexpr size_t kBlockIds = 8192;  // BLOCK_IDS of gen_hf_tokenizers.py

std::string tokenizer_dir(const std::string& name) {
  return std::string(LOOM_SOURCE_DIR) + "/tests/golden/tokenizers/" + name;
}

uint64_t fnv1a64(const void* data, size_t n) {
  uint64_t h = 0xCBF29CE484222325ull;
  for (size_t i = 0; i < n; ++i) h = (h ^ static_cast<const uint8_t*>(data)[i]) * 0x100000001B3ull;
  return h;
}

const json& probes() {
  static const json j = [] {
    GoldenFile g("hf_tokenizers.h5");
    return json::parse(golden_bytes(g, "probes_json"));
  }();
  return j;
}

std::vector<int32_t> ids_of(const json& a) { return a.get<std::vector<int32_t>>(); }

class HfTokenizerGolden : public ::testing::TestWithParam<const char*> {};

// All ids of the ~2.6 MB text: their count, the first ids in full and an FNV-1a-64 hash per
// block of 8192 (hashes are stored as int64 bit patterns).
TEST_P(HfTokenizerGolden, IdsEqualHuggingFaceOnTheWholeGoldenText) {
  const std::string name = GetParam();
  Tokenizer tok = Tokenizer::from_tokenizer_json(tokenizer_dir(name) + "/tokenizer.json");
  const std::string text = golden_bytes(GoldenFile("tokenizer.h5"), "gpt2/text");
  GoldenFile g("hf_tokenizers.h5");
  std::vector<int32_t> head = g.get(name + "/text_ids_head").to_vector<int32_t>();
  std::vector<int64_t> blocks = g.get(name + "/text_ids_block_fnv").to_vector<int64_t>();
  const int64_t count = g.get(name + "/text_ids_count").to_vector<int64_t>()[0];
  std::vector<int32_t> got = tok.encode(text);
  ASSERT_EQ(int64_t(got.size()), count);
  for (size_t i = 0; i < head.size(); ++i)
    ASSERT_EQ(got[i], head[i]) << "id " << i << " ('" << tok.token_bytes(got[i]) << "' vs '"
                               << tok.token_bytes(head[i]) << "')";
  ASSERT_EQ(blocks.size(), (got.size() + kBlockIds - 1) / kBlockIds);
  for (size_t b = 0; b < blocks.size(); ++b) {
    const size_t n = std::min(kBlockIds, got.size() - b * kBlockIds);
    ASSERT_EQ(fnv1a64(got.data() + b * kBlockIds, n * sizeof(int32_t)), uint64_t(blocks[b]))
        << "first differing block " << b << " (ids " << b * kBlockIds << "..), text there: '"
        << tok.decode(std::span<const int32_t>(got.data() + b * kBlockIds, 8)) << "'";
  }
  for (bool skip : {false, true}) {
    const std::string key = name + (skip ? "/text_decode_skip" : "/text_decode");
    std::string dec = tok.decode(got, skip);
    EXPECT_EQ(int64_t(dec.size()), g.get(key + "_len").to_vector<int64_t>()[0]) << key;
    EXPECT_EQ(fnv1a64(dec.data(), dec.size()),
              uint64_t(g.get(key + "_fnv").to_vector<int64_t>()[0]))
        << key;
  }
}

TEST_P(HfTokenizerGolden, ProbesMatchHuggingFaceIdsAndDecode) {
  const std::string name = GetParam();
  Tokenizer tok = Tokenizer::from_tokenizer_json(tokenizer_dir(name) + "/tokenizer.json");
  const json& p = probes();
  ASSERT_EQ(p["probes"].size(), p[name].size());
  for (size_t i = 0; i < p["probes"].size(); ++i) {
    const std::string text = p["probes"][i].get<std::string>();
    const json& want = p[name][i];
    SCOPED_TRACE("probe " + std::to_string(i) + ": '" + text + "'");
    EXPECT_EQ(tok.encode(text), ids_of(want["ids"]));
    std::vector<int32_t> with_special = tok.encode(text, /*add_special_tokens=*/true);
    EXPECT_EQ(with_special, ids_of(want["ids_special"]));
    EXPECT_EQ(tok.decode(with_special), want["decode"].get<std::string>());
    EXPECT_EQ(tok.decode(with_special, /*skip_special_tokens=*/true),
              want["decode_skip"].get<std::string>());
  }
}

INSTANTIATE_TEST_SUITE_P(Models, HfTokenizerGolden, ::testing::ValuesIn(kNames),
                         [](const auto& info) { return std::string(info.param); });

TEST(HfTokenizerTest, PipelineFactsOfTheGoldenFiles) {
  Tokenizer llama = Tokenizer::from_tokenizer_json(tokenizer_dir("llama3") + "/tokenizer.json");
  const int32_t bos = *llama.token_to_id("<|begin_of_text|>");
  EXPECT_GE(bos, 4000);  // added after the trained model vocab, as in Llama-3
  EXPECT_EQ(llama.prefix_ids(), std::vector<int32_t>{bos});
  EXPECT_TRUE(llama.suffix_ids().empty());
  EXPECT_TRUE(llama.is_special(bos));
  EXPECT_FALSE(llama.eot_id().has_value());  // no <|endoftext|> in Llama-3
  EXPECT_NE(llama.description().find("hf-bpe byte-level"), std::string::npos);
  Tokenizer mistral = Tokenizer::from_tokenizer_json(tokenizer_dir("mistral") + "/tokenizer.json");
  EXPECT_EQ(mistral.token_to_id("<0x41>"), std::optional<int32_t>(3 + 0x41));
  EXPECT_EQ(mistral.token_bytes(3 + 0x41), "A");
  EXPECT_FALSE(mistral.is_special(3 + 0x41));  // byte tokens are model vocab, not added tokens
  EXPECT_NE(mistral.description().find("sentencepiece"), std::string::npos);
}

// Pieces are encoded separately (no token spans two), and the SentencePiece "▁" goes where HF
// puts it in the joined text: at the start and after an added token, not where a piece continues.
TEST(HfTokenizerTest, EncodePiecesKeepsBoundariesAndPrependsOnlyWhereHfDoes) {
  for (const char* name : {"mistral", "llama2_metaspace", "llama3"}) {
    SCOPED_TRACE(name);
    Tokenizer tok = Tokenizer::from_tokenizer_json(tokenizer_dir(name) + "/tokenizer.json");
    const std::vector<std::string> pieces = {"<s>[INST] Hi [/INST] ", "Hello there", "</s>",
                                             " more", ""};
    auto parts = tok.encode_pieces(pieces);
    ASSERT_EQ(parts.size(), pieces.size());
    std::string joined_text, joined_decode;
    std::vector<int32_t> all;
    for (const auto& p : parts) all.insert(all.end(), p.begin(), p.end());
    for (const std::string& p : pieces) joined_text += p;
    // The same text decodes the same whether it was encoded whole or in pieces.
    EXPECT_EQ(tok.decode(all), tok.decode(tok.encode(joined_text)));
    // A piece that continues text gets no "▁" of its own: "Hello there" decodes as itself.
    EXPECT_EQ(tok.decode(parts[1]), "Hello there");
    EXPECT_TRUE(parts[4].empty());
  }
}

// Writes a modified copy of the llama3 tokenizer.json and expects a DataError naming the file, the
// JSON path and the given message parts.
void expect_json_error(const std::function<void(json&)>& edit,
                       const std::vector<std::string>& parts, const std::string& base = "llama3") {
  json j = json::parse(std::ifstream(tokenizer_dir(base) + "/tokenizer.json"));
  edit(j);
  TempDir dir;
  const std::string path = (dir / "tokenizer.json").string();
  write_file(path, j.dump());
  try {
    Tokenizer::from_tokenizer_json(path);
    ADD_FAILURE() << "expected DataError for " << parts[0];
  } catch (const DataError& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find(path), std::string::npos) << msg;
    for (const std::string& part : parts)
      EXPECT_NE(msg.find(part), std::string::npos) << "message lacks '" << part << "': " << msg;
  }
}

TEST(HfTokenizerTest, UnsupportedComponentsNameFileJsonPathAndSupportedValues) {
  expect_json_error(
      [](json& j) { j["pre_tokenizer"]["pretokenizers"][1]["type"] = "Whitespace"; },
      {"pre_tokenizer.pretokenizers[1].type", "\"ByteLevel\", \"Split\"", "\"Whitespace\""});
  expect_json_error(
      [](json& j) {
        j["normalizer"] = {{"type", "Lowercase"}};
      },
      {"normalizer.type", "\"NFC\", \"Prepend\", \"Replace\", \"Sequence\""});
  expect_json_error(
      [](json& j) {
        j["decoder"] = {{"type", "WordPiece"}};
      },
      {"decoder.type", "\"ByteFallback\", \"Fuse\", \"Strip\", \"Metaspace\""});
  expect_json_error(
      [](json& j) {
        j["post_processor"] = {{"type", "BertProcessing"}};
      },
      {"post_processor.type", "\"TemplateProcessing\""});
  expect_json_error([](json& j) { j["model"]["type"] = "Unigram"; },
                    {"model.type", "expected model.type \"BPE\"", "Unigram"});
  expect_json_error([](json& j) { j["model"]["continuing_subword_prefix"] = "##"; },
                    {"model.continuing_subword_prefix", "not supported", "##"});
  expect_json_error([](json& j) { j["model"]["end_of_word_suffix"] = "</w>"; },
                    {"model.end_of_word_suffix", "not supported"});
  expect_json_error([](json& j) { j["model"]["dropout"] = 0.1; }, {"model.dropout"});
  expect_json_error([](json& j) { j["pre_tokenizer"]["pretokenizers"][0]["behavior"] = "Removed"; },
                    {"pre_tokenizer.pretokenizers[0].behavior", "\"Isolated\"", "Removed"});
  expect_json_error(
      [](json& j) {
        j["pre_tokenizer"]["pretokenizers"][0]["pattern"] = {{"Regex", "(?<"}};
      },
      {"pre_tokenizer", "PCRE2", "(?<"});
  expect_json_error(
      [](json& j) { j["pre_tokenizer"]["pretokenizers"][1]["add_prefix_space"] = true; },
      {"pre_tokenizer.pretokenizers[1].add_prefix_space"});
  expect_json_error(
      [](json& j) {
        std::swap(j["pre_tokenizer"]["pretokenizers"][0], j["pre_tokenizer"]["pretokenizers"][1]);
      },
      {"pre_tokenizer.pretokenizers[1]", "ByteLevel to be the last"});
  expect_json_error([](json& j) { j["model"]["unk_token"] = "<nope>"; }, {"model.unk_token"});
  expect_json_error([](json& j) { j["model"]["merges"][3] = "onlyone"; },
                    {"model.merges[3]", "malformed"});
  expect_json_error([](json& j) { j["added_tokens"][0]["id"] = 5; }, {"added_tokens[0]"});
  expect_json_error(
      [](json& j) {
        j["normalizer"]["normalizers"][1]["pattern"] = {{"Regex", " +"}};
      },
      {"normalizer.normalizers[1].pattern", "String"}, "mistral");
  expect_json_error([](json& j) { j["decoder"]["decoders"][3]["start"] = "1"; },
                    {"decoder.decoders[3].start", "expected an integer"}, "mistral");
  expect_json_error([](json& j) { j["pre_tokenizer"]["prepend_scheme"] = "sometimes"; },
                    {"pre_tokenizer.prepend_scheme", "\"first\", \"always\", \"never\""},
                    "llama2_metaspace");
}

}  // namespace
}  // namespace loom::data
