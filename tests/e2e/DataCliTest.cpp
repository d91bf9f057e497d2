// `loom preprocess` and `loom tokenizer train` on user files (issue 15): an output that is the
// input or the other output (also through a symlink or a relative path) is refused with exit code 2
// before anything is written (D8: it used to overwrite the data and exit 0); a .jsonl corpus trains
// the tokenizer on its "text" documents, not on the raw JSON lines.
#include <filesystem>
#include <fstream>
#include <sstream>

#include "tests/e2e/LoomCli.h"

namespace loom::e2e {
namespace {

namespace fs = std::filesystem;

std::string read_all(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::ostringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

const std::string kJsonl =
    "{\"text\": \"the quick brown fox jumps over the lazy dog\"}\n"
    "{\"text\": \"the lazy dog sleeps in the sun\"}\n"
    "{\"text\": \"a quick fox runs over the hill\"}\n"
    "{\"text\": \"the dog and the fox are friends\"}\n";

class DataCliTest : public ::testing::Test {
 protected:
  void SetUp() override {
    write_file(d_.file("corpus.jsonl"), kJsonl);
    RunResult r = run_loom("tokenizer train --input " + d_.file("corpus.jsonl") +
                           " --vocab-size 300 --min-frequency 1 --output " + d_.file("tok"));
    ASSERT_EQ(r.exit_code, 0) << r.output;
  }
  std::string tok() const {
    return " --vocab " + d_.file("tok/vocab.json") + " --merges " + d_.file("tok/merges.txt");
  }
  // `loom preprocess ARGS` must fail with exit code 2 naming `what`, leaving corpus.jsonl intact.
  void expect_refused(const std::string& args, const std::string& what) {
    RunResult r = run_loom("preprocess " + args + tok());
    EXPECT_EQ(r.exit_code, 2) << args << "\n" << r.output;
    EXPECT_NE(r.output.find(what), std::string::npos) << what << "\n" << r.output;
    EXPECT_EQ(read_all(d_.file("corpus.jsonl")), kJsonl) << args;
  }
  TempDir d_{"data_cli"};
};

TEST_F(DataCliTest, PreprocessRefusesAnOutputThatIsTheInputOrTheOtherOutput) {
  const std::string in = d_.file("corpus.jsonl");
  expect_refused("--input " + in + " --output " + in, "output");
  fs::create_symlink(in, d_.file("alias.h5"));
  expect_refused("--input " + in + " --output " + d_.file("alias.h5"), "alias.h5");
  fs::create_directories(d_.file("sub"));
  expect_refused("--input " + in + " --output " + d_.file("sub/../corpus.jsonl"), "output");
  expect_refused("--input " + in + " --output " + d_.file("t.h5") + " --val-fraction 0.25" +
                     " --val-output " + d_.file("t.h5"),
                 "validation output");
  expect_refused("--input " + in + " --output " + d_.file("t.h5") + " --val-fraction 0.25" +
                     " --val-output " + in,
                 "validation output");
  // Relative spellings, from the corpus' directory.
  RunResult r =
      run_shell("cd " + d_.str() + " && " + LOOM_BIN +
                " preprocess --input corpus.jsonl --output ./sub/../corpus.jsonl" + tok());
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_EQ(read_all(in), kJsonl);
  EXPECT_FALSE(fs::exists(d_.file("t.h5")));
  EXPECT_FALSE(fs::exists(d_.file("t.val.h5")));
}

TEST_F(DataCliTest, PreprocessWritesBothSplitsAndNoTemporaryFiles) {
  RunResult r = run_loom("preprocess --input " + d_.file("corpus.jsonl") + " --output " +
                         d_.file("out/train.h5") + " --val-fraction 0.25" + tok());
  ASSERT_EQ(r.exit_code, 0) << r.output;
  std::vector<std::string> names;
  for (const auto& e : fs::directory_iterator(d_.file("out"))) names.push_back(e.path().filename());
  std::sort(names.begin(), names.end());
  EXPECT_EQ(names, (std::vector<std::string>{"train.h5", "train.val.h5"}));
}

TEST_F(DataCliTest, TokenizerTrainReadsJsonlDocuments) {
  // Trained on the documents, the merges never join JSON syntax or the key; on the raw lines,
  // `{"text": "` (in every line) is the most frequent run and is merged first.
  const std::string merges = read_all(d_.file("tok/merges.txt"));
  EXPECT_EQ(merges.find('{'), std::string::npos) << merges;
  EXPECT_EQ(merges.find("te xt"), std::string::npos) << merges;
  EXPECT_EQ(merges.find("tex t"), std::string::npos) << merges;
  // The same corpus as plain text documents gives the same merges.
  std::string text;
  for (const char* doc :
       {"the quick brown fox jumps over the lazy dog", "the lazy dog sleeps in the sun",
        "a quick fox runs over the hill", "the dog and the fox are friends"}) {
    write_file(d_.file("doc" + std::to_string(text.size()) + ".txt"), doc);
    text += doc;
  }
  std::string inputs;
  for (const auto& e : fs::directory_iterator(d_.str()))
    if (e.path().extension() == ".txt") inputs += " --input " + e.path().string();
  // Directory order is arbitrary, but BPE counts do not depend on the order of documents.
  RunResult r = run_loom("tokenizer train" + inputs + " --vocab-size 300 --min-frequency 1 " +
                         "--output " + d_.file("tok_txt"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_EQ(read_all(d_.file("tok_txt/merges.txt")), merges);
}

}  // namespace
}  // namespace loom::e2e
