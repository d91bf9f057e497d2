// preprocess() output paths (issue 15, D8): an output that is an input or the other output --
// however it is spelled (relative, "..", a symlink, a hard link) -- is a ConfigError raised before
// anything is written, and the outputs appear only when both splits are complete.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "core/util/Check.h"
#include "data/BpeTrainer.h"
#include "data/Preprocess.h"
#include "data/TokenDataset.h"
#include "tests/data/DataTestUtil.h"

namespace loom::data {
namespace {

namespace fs = std::filesystem;
using testing::TempDir;
using testing::write_file;

const Tokenizer& small_tokenizer() {
  static const Tokenizer tok = train_bpe_texts({"the cat sat on the mat. the dog sat on the log."},
                                               {.vocab_size = 280, .min_frequency = 2})
                                   .tokenizer();
  return tok;
}

std::string read_all(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  std::ostringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

const std::string kCorpus =
    "{\"text\": \"the cat sat\"}\n{\"text\": \"the dog sat\"}\n"
    "{\"text\": \"on the mat\"}\n{\"text\": \"on the log\"}\n";

// preprocess(o) must throw a ConfigError whose message has every part, and leave `input` as it was
// and no other file in `dir`.
void expect_refused(const PreprocessOptions& o, const fs::path& dir, const fs::path& input,
                    const std::vector<std::string>& parts) {
  const std::string before = read_all(input);
  std::vector<fs::path> files_before;
  for (const auto& e : fs::directory_iterator(dir)) files_before.push_back(e.path());
  try {
    preprocess(o, small_tokenizer());
    ADD_FAILURE() << "no ConfigError for output " << o.output;
  } catch (const ConfigError& e) {
    for (const std::string& p : parts)
      EXPECT_NE(std::string(e.what()).find(p), std::string::npos) << p << "\n" << e.what();
  }
  EXPECT_EQ(read_all(input), before);
  std::vector<fs::path> files_after;
  for (const auto& e : fs::directory_iterator(dir)) files_after.push_back(e.path());
  EXPECT_EQ(files_after.size(), files_before.size());
}

TEST(PreprocessTest, OutputThatIsAnInputIsRefusedHoweverSpelled) {
  TempDir dir;
  const fs::path in = dir / "corpus.jsonl";
  write_file(in, kCorpus);
  fs::create_directories(dir / "sub");
  fs::create_symlink(in, dir / "link.jsonl");
  fs::create_hard_link(in, dir / "hard.jsonl");
  PreprocessOptions o;
  o.inputs = {in.string()};
  for (const fs::path& out :
       {in, dir / "sub" / ".." / "corpus.jsonl", dir / "link.jsonl", dir / "hard.jsonl"}) {
    o.output = out.string();
    expect_refused(o, dir.path(), in, {"output", "input", in.string()});
  }
  // A relative spelling of the input, from the current directory.
  const fs::path cwd = fs::current_path();
  fs::current_path(dir.path());
  o.inputs = {"corpus.jsonl"};
  o.output = "./sub/../corpus.jsonl";
  expect_refused(o, dir.path(), in, {"'./sub/../corpus.jsonl'", "'corpus.jsonl'"});
  fs::current_path(cwd);
}

TEST(PreprocessTest, ValidationOutputThatIsTheOutputOrAnInputIsRefused) {
  TempDir dir;
  const fs::path in = dir / "corpus.jsonl";
  write_file(in, kCorpus);
  PreprocessOptions o;
  o.inputs = {in.string()};
  o.output = (dir / "train.h5").string();
  o.val_fraction = 0.25;
  o.val_output = o.output;
  expect_refused(o, dir.path(), in, {"validation output", "train.h5"});
  o.val_output = (dir / "." / "train.h5").string();
  expect_refused(o, dir.path(), in, {"validation output"});
  o.val_output = in.string();
  expect_refused(o, dir.path(), in, {"validation output", "corpus.jsonl"});
  // The default validation name (OUTPUT with .val) may also hit an input.
  const fs::path val_named = dir / "data.val.h5";
  write_file(val_named, kCorpus);
  o.inputs = {val_named.string()};
  o.val_output.clear();
  o.output = (dir / "data.h5").string();
  expect_refused(o, dir.path(), val_named, {"data.val.h5"});
  // Without a validation split, val_output is not written and cannot clash.
  o.inputs = {in.string()};
  o.val_fraction = 0.0;
  o.val_output = o.output;
  EXPECT_NO_THROW(preprocess(o, small_tokenizer()));
}

TEST(PreprocessTest, OutputsAppearOnlyWhenBothSplitsAreComplete) {
  TempDir dir;
  const fs::path in = dir / "corpus.jsonl";
  write_file(in, kCorpus);
  PreprocessOptions o;
  o.inputs = {in.string()};
  o.output = (dir / "train.h5").string();
  o.val_fraction = 0.25;
  o.val_output = (dir / "missing_dir" / "val.h5").string();  // this write fails
  EXPECT_ANY_THROW(preprocess(o, small_tokenizer()));
  EXPECT_FALSE(fs::exists(o.output));
  size_t files = 0;
  for (const auto& e : fs::directory_iterator(dir.path())) files += e.path() != in;
  EXPECT_EQ(files, 0u) << "a temporary file was left behind";
  // Success: both outputs, nothing else.
  o.val_output = (dir / "val.h5").string();
  PreprocessStats s = preprocess(o, small_tokenizer());
  EXPECT_EQ(TokenDataset(o.output).num_docs() + TokenDataset(o.val_output).num_docs(), 4);
  EXPECT_EQ(s.val_docs, 1);
  files = 0;
  for (const auto& e : fs::directory_iterator(dir.path())) files += e.path() != in;
  EXPECT_EQ(files, 2u);
}

}  // namespace
}  // namespace loom::data
