// SFT data: the chat template and prompt masking (no loss on prompt tokens, checked through the
// core cross entropy), multi-turn chats, padded and packed rows (position ids restart, document
// ids, no target across a document boundary), the over-long policies, and bad lines that name
// file:line or are skipped and counted.
#include <gtest/gtest.h>

#include <cmath>

#include "core/ops/Nn.h"
#include "core/random/Generator.h"
#include "core/util/Check.h"
#include "rlhf/SftDataset.h"
#include "tests/rlhf/RlhfTestUtil.h"

namespace loom::rlhf {
namespace {

using testing::byte_tokenizer;
using testing::bytes_of;
using testing::TempDir;

constexpr int32_t kEot = 256;

std::vector<int32_t> concat(std::vector<int32_t> a, const std::vector<int32_t>& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

TEST(SftDatasetTest, PromptResponseTemplateMasksThePrompt) {
  auto tok = byte_tokenizer();
  TokenizedExample ex = encode_chat(tok, ChatTemplate{}, {{"user", "hi"}, {"assistant", "yo"}});
  const std::vector<int32_t> prompt = bytes_of("<|user|>\nhi\n<|assistant|>\n");
  EXPECT_EQ(ex.tokens, concat(prompt, {'y', 'o', kEot}));
  EXPECT_EQ(ex.prompt_length(), int64_t(prompt.size()));
  std::vector<uint8_t> flags(prompt.size(), 0);
  flags.insert(flags.end(), {1, 1, 1});
  EXPECT_EQ(ex.is_response, flags);
}

TEST(SftDatasetTest, MultiTurnChatTrainsOnEveryAssistantTurn) {
  auto tok = byte_tokenizer();
  ChatTemplate tmpl{"S:{content}|", "U:{content}|", "A:{content}|"};
  TokenizedExample ex = encode_chat(
      tok, tmpl,
      {{"system", "s"}, {"user", "q1"}, {"assistant", "a1"}, {"user", "q2"}, {"assistant", "a2"}});
  // "S:s|U:q1|A:" a1 EOT "|U:q2|A:" a2 EOT "|"
  std::vector<int32_t> want = concat(bytes_of("S:s|U:q1|A:"), {'a', '1', kEot});
  want = concat(concat(want, bytes_of("|U:q2|A:")), {'a', '2', kEot});
  want = concat(want, bytes_of("|"));
  EXPECT_EQ(ex.tokens, want);
  std::string flags;
  for (uint8_t f : ex.is_response) flags += f ? '1' : '0';
  // "S:s|U:q1|A:" (11) a1 EOT (3) "|U:q2|A:" (8) a2 EOT (3) "|" (1)
  EXPECT_EQ(flags, "00000000000111000000001110");
}

TEST(SftDatasetTest, ChatErrors) {
  auto tok = byte_tokenizer();
  ChatTemplate bad;
  bad.user = "<|user|>";  // no {content}
  EXPECT_THROW(bad.validate(), ValueError);
  EXPECT_THROW(encode_chat(tok, ChatTemplate{}, {{"user", "q"}}), ValueError);
  EXPECT_THROW(encode_chat(tok, ChatTemplate{}, {{"robot", "q"}, {"assistant", "a"}}), ValueError);
  auto no_eot = byte_tokenizer(/*with_eot=*/false);
  EXPECT_THROW(encode_chat(no_eot, ChatTemplate{}, {{"user", "a"}, {"assistant", "b"}}),
               ValueError);
}

// Only response tokens are targets: the masked cross entropy of the core equals the mean of
// -log p over the response tokens computed by hand, and no target is a prompt token.
TEST(SftDatasetTest, NoLossOnPromptTokens) {
  auto tok = byte_tokenizer();
  TokenizedExample ex = encode_chat(tok, ChatTemplate{}, {{"user", "2+2?"}, {"assistant", "4"}});
  const int64_t T = 40, p = ex.prompt_length();
  auto rows = pad_rows({ex}, T, kEot);
  ASSERT_EQ(rows.size(), 1u);
  const SftRow& row = rows[0];
  for (int64_t t = 0; t < T; ++t) {
    const bool predicts_response = t >= p - 1 && t + 1 < int64_t(ex.tokens.size());
    EXPECT_EQ(row.targets[size_t(t)], predicts_response ? ex.tokens[size_t(t + 1)] : -100)
        << "t=" << t;
  }
  Generator gen(7);
  Tensor logits = Tensor::randn({T, 257}, gen, DType::F64);
  SftBatch b = collate(rows, 0, 1);
  const double loss = cross_entropy(logits, b.targets.view({T})).item();
  std::vector<double> lg = logits.to_vector<double>();
  double want = 0;
  for (int64_t t = p - 1; t + 1 < int64_t(ex.tokens.size()); ++t) {
    double mx = -1e300, z = 0;
    for (int v = 0; v < 257; ++v) mx = std::max(mx, lg[size_t(t * 257 + v)]);
    for (int v = 0; v < 257; ++v) z += std::exp(lg[size_t(t * 257 + v)] - mx);
    want += -(lg[size_t(t * 257 + ex.tokens[size_t(t + 1)])] - mx - std::log(z));
  }
  want /= 2.0;  // two response tokens: "4" and EOT
  // f64 log-softmax vs the same sum in f64 by hand: rounding only.
  EXPECT_NEAR(loss, want, 1e-12);
}

TEST(SftDatasetTest, PackingRestartsPositionsAndMasksBoundaries) {
  auto tok = byte_tokenizer();
  ChatTemplate tmpl{"{content}", "U{content}", "A{content}"};
  auto ex = [&](const std::string& q, const std::string& a) {
    return encode_chat(tok, tmpl, {{"user", q}, {"assistant", a}});
  };
  // lengths: "Uq" "A" "ab" EOT = 6, "Ux" "A" "y" EOT = 5, "Ulong" "A" "zz" EOT = 9
  std::vector<TokenizedExample> exs = {ex("q", "ab"), ex("x", "y"), ex("long", "zz")};
  auto rows = pack_rows(exs, 12, kEot);
  ASSERT_EQ(rows.size(), 2u);  // 6 + 5 fit in 12; 9 starts a new row
  const SftRow& r0 = rows[0];
  EXPECT_EQ(r0.ids,
            (std::vector<int64_t>{'U', 'q', 'A', 'a', 'b', kEot, 'U', 'x', 'A', 'y', kEot, kEot}));
  EXPECT_EQ(r0.position_ids, (std::vector<int64_t>{0, 1, 2, 3, 4, 5, 0, 1, 2, 3, 4, 0}));
  EXPECT_EQ(r0.document_ids, (std::vector<int64_t>{0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, -1}));
  // Targets: doc 0 predicts a, b, EOT; its EOT (t=5) must not predict doc 1's first token.
  EXPECT_EQ(r0.targets, (std::vector<int64_t>{-100, -100, 'a', 'b', kEot, -100, -100, -100, 'y',
                                              kEot, -100, -100}));
  EXPECT_EQ(rows[1].document_ids[0], 0);
  EXPECT_EQ(rows[1].position_ids[8], 8);
  EXPECT_EQ(rows[1].document_ids[9], -1);
  SftBatch b = collate(rows, 0, 2);
  EXPECT_EQ(b.ids.shape(), (Shape{2, 12}));
  EXPECT_EQ(b.position_ids.dtype(), DType::I64);
  // Padded layout: one example per row, same per-document targets.
  auto padded = pad_rows(exs, 12, kEot);
  ASSERT_EQ(padded.size(), 3u);
  EXPECT_EQ(std::vector<int64_t>(padded[1].targets.begin(), padded[1].targets.begin() + 5),
            std::vector<int64_t>(r0.targets.begin() + 6, r0.targets.begin() + 11));
  EXPECT_THROW(pack_rows(exs, 8, kEot), ValueError);  // a 9-token example never fits in 8
}

TEST(SftDatasetTest, LoadsBothFormatsAndAppliesOverlongPolicies) {
  auto tok = byte_tokenizer();
  TempDir dir;
  const std::string path = dir.write("sft.jsonl",
                                     "{\"prompt\":\"hi\",\"response\":\"hello there\"}\n"
                                     "\n"
                                     "{\"messages\":[{\"role\":\"user\",\"content\":\"q\"},"
                                     "{\"role\":\"assistant\",\"content\":\"a\"}]}\n");
  DatasetOptions opt;
  opt.seq_len = 64;
  SftDataset ds = load_sft_jsonl(path, tok, opt);
  ASSERT_EQ(ds.examples.size(), 2u);
  EXPECT_EQ(ds.stats.loaded, 2);
  EXPECT_EQ(
      ds.examples[0].tokens,
      encode_chat(tok, opt.chat_template, {{"user", "hi"}, {"assistant", "hello there"}}).tokens);
  // The first example has 26 prompt + 12 response tokens = 38; the second 25 + 2 = 27.
  opt.seq_len = 30;
  ds = load_sft_jsonl(path, tok, opt);  // TruncateResponse
  ASSERT_EQ(ds.examples.size(), 2u);
  EXPECT_EQ(ds.stats.truncated, 1);
  EXPECT_EQ(ds.examples[0].tokens.size(), 30u);
  EXPECT_EQ(ds.examples[0].prompt_length(), 26);
  opt.overlong = OverlongPolicy::Skip;
  ds = load_sft_jsonl(path, tok, opt);
  EXPECT_EQ(ds.examples.size(), 1u);
  EXPECT_EQ(ds.stats.skipped_long, 1);
  opt.overlong = OverlongPolicy::Error;
  try {
    load_sft_jsonl(path, tok, opt);
    FAIL() << "expected DataError";
  } catch (const DataError& e) {
    EXPECT_NE(std::string(e.what()).find(path + ":1:"), std::string::npos) << e.what();
  }
}

// A path that names nothing is a config error (exit code 2, README), not a bad data file (1):
// the drills found sft / preference / PPO prompt files missing reported as DataError.
TEST(SftDatasetTest, AMissingFileIsAConfigErrorNamingIt) {
  auto tok = byte_tokenizer();
  TempDir dir;
  const std::string path = dir.write("sft.jsonl", "") + ".missing";
  try {
    load_sft_jsonl(path, tok, DatasetOptions{});
    FAIL() << "expected ConfigError";
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("'" + path + "' does not exist"), std::string::npos)
        << e.what();
  }
}

// Each bad line raises DataError naming file:line; with skip_bad it is counted by reason.
TEST(SftDatasetTest, BadLinesNameFileAndLineOrAreSkipped) {
  auto tok = byte_tokenizer();
  TempDir dir;
  const std::string good = "{\"prompt\":\"p\",\"response\":\"r\"}\n";
  const std::string long_prompt = std::string(100, 'x');
  const std::vector<std::pair<std::string, std::string>> bad = {
      {"not json at all", "invalid JSON"},
      {"[1,2]", "expected a JSON object"},
      {"{\"prompt\":\"p\"}", "expected a field \"response\""},
      {"{\"prompt\":3,\"response\":\"r\"}", "\"prompt\" to be a string"},
      {"{\"prompt\":\"p\",\"response\":\"\"}", "non-empty \"response\""},
      {"{\"prompt\":\"" + long_prompt + "\",\"response\":\"r\"}",
       "prompt shorter than the context"},
      {"{\"messages\":[{\"role\":\"user\",\"content\":\"q\"}]}", "last message"},
      {"{\"messages\":[{\"role\":\"user\"}]}", "expected a field \"content\""},
  };
  DatasetOptions opt;
  opt.seq_len = 64;
  std::string all = good;
  for (const auto& [line, why] : bad) {
    const std::string path = dir.write("bad.jsonl", good + good + line + "\n" + good);
    try {
      load_sft_jsonl(path, tok, opt);
      ADD_FAILURE() << "no error for: " << line;
    } catch (const DataError& e) {
      const std::string msg = e.what();
      EXPECT_NE(msg.find("sft: " + path + ":3: "), std::string::npos) << msg;
      EXPECT_NE(msg.find(why), std::string::npos) << msg;
    }
    all += line + "\n";
  }
  opt.skip_bad = true;
  SftDataset ds = load_sft_jsonl(dir.write("all.jsonl", all + good), tok, opt);
  EXPECT_EQ(ds.stats.loaded, 2);
  EXPECT_EQ(ds.stats.skipped_bad, int64_t(bad.size()));
  EXPECT_EQ(ds.stats.skip_reasons["missing_field"], 2);
  EXPECT_EQ(ds.stats.skip_reasons["prompt_too_long"], 1);
  EXPECT_EQ(ds.stats.skip_reasons["empty_response"], 1);
}

}  // namespace
}  // namespace loom::rlhf
