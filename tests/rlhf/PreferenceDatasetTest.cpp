// Preference data: prompt/chosen/rejected tokenisation, batches for the reward model (index of
// the last token) and for DPO (targets only on response tokens), over-long handling, and bad
// lines that name file:line or are skipped and counted.
#include <gtest/gtest.h>

#include "core/util/Check.h"
#include "rlhf/PreferenceDataset.h"
#include "tests/rlhf/RlhfTestUtil.h"

namespace loom::rlhf {
namespace {

using testing::byte_tokenizer;
using testing::bytes_of;
using testing::TempDir;

constexpr int32_t kEot = 256;

DatasetOptions short_template(int64_t seq_len) {
  DatasetOptions opt;
  opt.seq_len = seq_len;
  opt.chat_template = ChatTemplate{"{content}", "Q{content}", "A{content}"};
  return opt;
}

TEST(PreferenceDatasetTest, LoadsAndCollates) {
  auto tok = byte_tokenizer();
  TempDir dir;
  const std::string path =
      dir.write("pairs.jsonl",
                "{\"prompt\":\"1+1\",\"chosen\":\"2\",\"rejected\":\"11\"}\n"
                "{\"prompt\":\"hi\",\"chosen\":\"hello\",\"rejected\":\"no\"}\n");
  PreferenceDataset ds = load_preference_jsonl(path, tok, short_template(10));
  ASSERT_EQ(ds.examples.size(), 2u);
  EXPECT_EQ(ds.examples[0].prompt, bytes_of("Q1+1A"));
  EXPECT_EQ(ds.examples[0].chosen, (std::vector<int32_t>{'2', kEot}));
  EXPECT_EQ(ds.examples[0].rejected, (std::vector<int32_t>{'1', '1', kEot}));
  PreferenceBatch b = collate_preferences(ds.examples, 0, 2, 10, kEot);
  EXPECT_EQ(b.chosen_ids.shape(), (Shape{2, 10}));
  EXPECT_EQ(b.chosen_ids.to_vector<int64_t>()[0 * 10 + 5], '2');
  // "Q1+1A" + "2" EOT: last real token at index 6; "Q1+1A" + "11" EOT at 7.
  // "QhiA" + "hello" EOT at 9; "QhiA" + "no" EOT at 6.
  EXPECT_EQ(b.chosen_last.to_vector<int64_t>(), (std::vector<int64_t>{6, 9}));
  EXPECT_EQ(b.rejected_last.to_vector<int64_t>(), (std::vector<int64_t>{7, 6}));
  // Targets: position t predicts token t+1 only when t+1 is a response token.
  std::vector<int64_t> rt = b.rejected_targets.to_vector<int64_t>();
  EXPECT_EQ(std::vector<int64_t>(rt.begin(), rt.begin() + 10),
            (std::vector<int64_t>{-100, -100, -100, -100, '1', '1', kEot, -100, -100, -100}));
  std::vector<int64_t> ri = b.rejected_ids.to_vector<int64_t>();
  EXPECT_EQ(ri[8], kEot);  // padding uses pad_id
}

TEST(PreferenceDatasetTest, OverlongPairs) {
  auto tok = byte_tokenizer();
  TempDir dir;
  const std::string path =
      dir.write("p.jsonl", "{\"prompt\":\"abc\",\"chosen\":\"long answer\",\"rejected\":\"x\"}\n");
  // prompt "QabcA" = 5 tokens, chosen 12, rejected 2.
  PreferenceDataset ds = load_preference_jsonl(path, tok, short_template(9));
  ASSERT_EQ(ds.examples.size(), 1u);
  EXPECT_EQ(ds.stats.truncated, 1);
  EXPECT_EQ(ds.examples[0].chosen, bytes_of("long"));                     // cut to 9 - 5 = 4 tokens
  EXPECT_EQ(ds.examples[0].rejected, (std::vector<int32_t>{'x', kEot}));  // already fits
  DatasetOptions skip = short_template(9);
  skip.overlong = OverlongPolicy::Skip;
  ds = load_preference_jsonl(path, tok, skip);
  EXPECT_TRUE(ds.examples.empty());
  EXPECT_EQ(ds.stats.skipped_long, 1);
  try {
    load_preference_jsonl(path, tok, short_template(5));  // the prompt alone fills the context
    FAIL() << "expected DataError";
  } catch (const DataError& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("preference: " + path + ":1: "), std::string::npos) << msg;
    EXPECT_NE(msg.find("prompt shorter than the context"), std::string::npos) << msg;
  }
}

TEST(PreferenceDatasetTest, BadLinesNameFileAndLineOrAreSkipped) {
  auto tok = byte_tokenizer();
  TempDir dir;
  const std::string good = "{\"prompt\":\"p\",\"chosen\":\"a\",\"rejected\":\"b\"}\n";
  const std::vector<std::pair<std::string, std::string>> bad = {
      {"{\"prompt\":\"p\",\"chosen\":\"a\"", "invalid JSON"},
      {"{\"prompt\":\"p\",\"chosen\":\"a\"}", "expected a field \"rejected\""},
      {"{\"prompt\":\"p\",\"chosen\":\"\",\"rejected\":\"b\"}", "non-empty \"chosen\""},
      {"{\"prompt\":\"p\",\"chosen\":\"a\",\"rejected\":null}", "\"rejected\" to be a string"},
  };
  for (const auto& [line, why] : bad) {
    const std::string path = dir.write("bad.jsonl", good + "\n" + line + "\n");
    try {
      load_preference_jsonl(path, tok, short_template(32));
      ADD_FAILURE() << "no error for: " << line;
    } catch (const DataError& e) {
      const std::string msg = e.what();
      EXPECT_NE(msg.find("preference: " + path + ":3: "), std::string::npos) << msg;
      EXPECT_NE(msg.find(why), std::string::npos) << msg;
    }
  }
  std::string all = good;
  for (const auto& kv : bad) all += kv.first + "\n";
  DatasetOptions opt = short_template(32);
  opt.skip_bad = true;
  PreferenceDataset ds = load_preference_jsonl(dir.write("all.jsonl", all), tok, opt);
  EXPECT_EQ(ds.stats.loaded, 1);
  EXPECT_EQ(ds.stats.skipped_bad, 4);
  EXPECT_EQ(ds.stats.skip_reasons["not_json"], 1);
  EXPECT_EQ(ds.stats.skip_reasons["empty_response"], 1);
  EXPECT_EQ(ds.stats.skip_reasons["bad_type"], 1);
}

}  // namespace
}  // namespace loom::rlhf
