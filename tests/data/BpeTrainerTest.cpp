// BPE trainer: merges equal the slow reference trainer in tests/golden/gen_tokenizer.py (same
// documented tie-breaking), the saved vocab/merges load in Loom and give the ids that Hugging Face
// `tokenizers` gives for the reference vocab, encode/decode round-trips, and bad inputs are errors.
#include <gtest/gtest.h>

#include <sstream>

#include "core/util/Check.h"
#include "data/BpeTrainer.h"
#include "tests/data/DataTestUtil.h"

namespace loom::data {
namespace {

using loom::testing::GoldenFile;
using testing::golden_bytes;
using testing::TempDir;
using testing::write_file;

struct TrainerGolden {
  GoldenFile g{"tokenizer.h5"};
  TempDir dir;
  std::vector<std::string> files;
  TrainerGolden() {
    for (int i = 0; i < 2; ++i) {
      files.push_back((dir / ("corpus" + std::to_string(i) + ".txt")).string());
      write_file(files.back(), golden_bytes(g, "trainer/corpus" + std::to_string(i)));
    }
  }
  BpeTrainerOptions options() const {
    BpeTrainerOptions o;
    o.vocab_size = int32_t(g.scalar("trainer/vocab_size"));
    o.min_frequency = int64_t(g.scalar("trainer/min_frequency"));
    return o;
  }
};

TEST(BpeTrainerTest, MergesEqualReferenceTrainer) {
  TrainerGolden t;
  BpeModel m = train_bpe(t.files, t.options());
  std::string merges;
  for (const auto& [l, r] : m.merges) merges += l + " " + r + "\n";
  std::string want = golden_bytes(t.g, "trainer/merges");
  ASSERT_EQ(merges.size(), want.size());
  EXPECT_EQ(merges, want);
  EXPECT_EQ(int32_t(m.tokens.size()), 256 + int32_t(m.merges.size()) + 1);
  EXPECT_EQ(m.tokens.back(), "<|endoftext|>");
}

TEST(BpeTrainerTest, SavedFilesGiveHuggingFaceIdsAndRoundTrip) {
  TrainerGolden t;
  BpeModel m = train_bpe(t.files, t.options());
  std::string vocab = (t.dir / "vocab.json").string(), merges = (t.dir / "merges.txt").string();
  save_bpe(m, vocab, merges);
  Tokenizer tok = Tokenizer::from_files(vocab, merges);
  EXPECT_EQ(tok.vocab_size(), int32_t(m.tokens.size()));
  EXPECT_EQ(tok.eot_id(), std::optional<int32_t>(tok.vocab_size() - 1));
  std::string probe = golden_bytes(t.g, "trainer/probe");
  std::vector<int32_t> ids = tok.encode(probe);
  EXPECT_EQ(ids, t.g.get("trainer/probe_ids").to_vector<int32_t>());
  EXPECT_EQ(tok.decode(ids), probe);
  // The in-memory tokenizer equals the one loaded from the saved files.
  EXPECT_EQ(m.tokenizer().encode(probe), ids);
  std::string odd = "x<|endoftext|>y \xff\xfe\n\n\t  zz";
  EXPECT_EQ(tok.decode(tok.encode(odd)), odd);
}

TEST(BpeTrainerTest, IsDeterministicAndHonoursMinFrequency) {
  TrainerGolden t;
  BpeTrainerOptions o = t.options();
  BpeModel a = train_bpe(t.files, o);
  BpeModel b = train_bpe(t.files, o);
  EXPECT_EQ(a.merges, b.merges);
  o.min_frequency = 50;
  BpeModel c = train_bpe(t.files, o);
  EXPECT_LT(c.merges.size(), a.merges.size());
  EXPECT_GT(c.merges.size(), 0u);
  // Merges learnt under a higher threshold are a prefix of the ones learnt under a lower one.
  EXPECT_TRUE(std::equal(c.merges.begin(), c.merges.end(), a.merges.begin()));
  // A tiny corpus runs out of pairs before reaching vocab_size.
  BpeModel d = train_bpe_texts({"aaaa"}, {.vocab_size = 1000, .min_frequency = 1,
                                          .special_tokens = {}});
  EXPECT_EQ(d.merges.size(), 2u);  // "a a" then "aa aa"
  EXPECT_EQ(d.tokens.size(), 258u);
}

// Issue 15: a .jsonl corpus is read as documents (the "text" field, or opts.text_field), as
// `loom preprocess` reads it, not as raw JSON lines.
TEST(BpeTrainerTest, JsonlCorpusIsReadAsDocuments) {
  TempDir dir;
  const std::vector<std::string> docs = {"the quick brown fox", "jumps over the lazy dog",
                                         "the lazy dog sleeps", "the fox runs"};
  std::string jsonl, body_jsonl;
  for (const std::string& d : docs) {
    jsonl += "{\"id\": 7, \"text\": \"" + d + "\"}\n";
    body_jsonl += "{\"body\": \"" + d + "\"}\n";
  }
  const std::string path = (dir / "corpus.jsonl").string(), body = (dir / "body.jsonl").string();
  write_file(path, jsonl);
  write_file(body, body_jsonl);
  const BpeTrainerOptions o{.vocab_size = 290, .min_frequency = 1};
  const BpeModel want = train_bpe_texts(docs, o);
  const BpeModel got = train_bpe({path}, o);
  EXPECT_EQ(got.merges, want.merges);
  EXPECT_EQ(got.tokens, want.tokens);
  for (const auto& [l, r] : got.merges)  // the JSON syntax and key are not in the corpus
    EXPECT_EQ((l + r).find_first_of("{}:"), std::string::npos) << l << " " << r;
  BpeTrainerOptions ob = o;
  ob.text_field = "body";
  EXPECT_EQ(train_bpe({body}, ob).merges, want.merges);
  EXPECT_THROW(train_bpe({body}, o), DataError);  // no "text" field
}

TEST(BpeTrainerTest, BadInputsAreErrors) {
  EXPECT_THROW(train_bpe({"/nonexistent/corpus.txt"}, {}), DataError);
  EXPECT_THROW(train_bpe_texts({""}, {}), DataError);
  EXPECT_THROW(train_bpe_texts({"abc"}, {.vocab_size = 200}), ValueError);
  EXPECT_THROW(train_bpe_texts({"abc"}, {.vocab_size = 300, .min_frequency = 0}), ValueError);
}

}  // namespace
}  // namespace loom::data
