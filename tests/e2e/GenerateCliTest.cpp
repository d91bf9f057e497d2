// `loom generate` end to end: train the tiny test-plan model for a few steps in one process, then
// generate from its checkpoint in fresh processes. Greedy output is deterministic, has exactly
// --max-new-tokens ids, and is the same from the checkpoint root and its step directory; seeded
// sampling repeats; a prompts file is generated as one batch with the same outputs as each prompt
// alone; bad flags exit with code 2 and a message naming the flag. A Hugging Face directory
// ("hf:DIR") generates with its own tokenizer exactly as the checkpoint converted from it.
#include <memory>
#include <sstream>

#include "tests/e2e/LoomCli.h"

namespace loom::e2e {
namespace {

std::vector<int64_t> parse_ids(const std::string& line) {
  std::vector<int64_t> ids;
  std::stringstream ss(line);
  for (std::string item; std::getline(ss, item, ',');) ids.push_back(std::stoll(item));
  return ids;
}

std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> out;
  std::stringstream ss(text);
  for (std::string line; std::getline(ss, line);) out.push_back(line);
  return out;
}

class GenerateCliTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = std::make_unique<TempDir>("generate_cli");
    write_random_dataset(dir_->file("train.h5"), 4000, 64);
    write_random_dataset(dir_->file("val.h5"), 600, 64, 8);
    write_file(dir_->file("cfg.pbtxt"), tiny_config(*dir_, 5));
    RunResult r = run_loom("train " + dir_->file("cfg.pbtxt"));
    ASSERT_EQ(r.exit_code, 0) << r.output;
  }
  static void TearDownTestSuite() { dir_.reset(); }

  static std::string root() { return dir_->file("run/checkpoints"); }
  static RunResult generate(const std::string& flags) {
    return run_loom("generate --checkpoint " + root() + " " + flags);
  }
  static void expect_error(const RunResult& r, int code, const std::string& needle) {
    EXPECT_EQ(r.exit_code, code) << r.output;
    EXPECT_NE(r.output.find(needle), std::string::npos) << needle << "\n" << r.output;
  }

  static std::unique_ptr<TempDir> dir_;
};

std::unique_ptr<TempDir> GenerateCliTest::dir_;

TEST_F(GenerateCliTest, GreedyIsDeterministicAndPrintsMaxNewTokensIds) {
  const std::string flags = "--prompt-ids 5,17,42 --temperature 0 --print-ids --max-new-tokens 9";
  RunResult a = generate(flags);
  ASSERT_EQ(a.exit_code, 0) << a.output;
  std::vector<std::string> lines = lines_of(a.output);
  ASSERT_EQ(lines.size(), 1u) << a.output;
  std::vector<int64_t> ids = parse_ids(lines[0]);
  ASSERT_EQ(ids.size(), 9u) << a.output;
  for (int64_t id : ids) EXPECT_TRUE(id >= 0 && id < 64) << id;

  RunResult b = generate(flags);
  EXPECT_EQ(b.exit_code, 0);
  EXPECT_EQ(b.output, a.output);
  RunResult step = run_loom("generate --checkpoint " + root() + "/step_00000005 " + flags);
  EXPECT_EQ(step.exit_code, 0) << step.output;
  EXPECT_EQ(step.output, a.output);
  // top-k 1 is greedy whatever the temperature and seed.
  RunResult k1 = generate(
      "--prompt-ids 5,17,42 --temperature 2 --top-k 1 --seed 9 --print-ids "
      "--max-new-tokens 9");
  EXPECT_EQ(k1.output, a.output);
}

TEST_F(GenerateCliTest, SeededSamplingRepeatsAndSamplesDiffer) {
  const std::string flags =
      "--prompt-ids 3 --seed 4 --top-p 0.95 --num-samples 3 --print-ids "
      "--max-new-tokens 12";
  RunResult a = generate(flags), b = generate(flags);
  ASSERT_EQ(a.exit_code, 0) << a.output;
  EXPECT_EQ(a.output, b.output);
  std::vector<std::string> lines = lines_of(a.output);
  ASSERT_EQ(lines.size(), 3u) << a.output;
  for (const std::string& l : lines) EXPECT_EQ(parse_ids(l).size(), 12u) << l;
  // 12 draws over 64 tokens from a barely trained model: equal samples by chance are negligible.
  EXPECT_NE(lines[0], lines[1]);
  RunResult other = generate(
      "--prompt-ids 3 --seed 5 --top-p 0.95 --num-samples 3 --print-ids "
      "--max-new-tokens 12");
  EXPECT_NE(other.output, a.output);
}

TEST_F(GenerateCliTest, PromptsFileEqualsEachPromptAlone) {
  // Three prompts of different lengths, two samples each, in one batch; a blank line is skipped.
  write_file(dir_->file("prompts.txt"), "5,17,42\n\n3\n1,2,3,4,5,6,7,8,9,10,11,12,13,14\n");
  const std::string opts = "--temperature 0 --print-ids --max-new-tokens 6 --num-samples 2";
  RunResult all = generate("--prompt-ids-file " + dir_->file("prompts.txt") + " " + opts);
  ASSERT_EQ(all.exit_code, 0) << all.output;
  std::vector<std::string> lines = lines_of(all.output);
  ASSERT_EQ(lines.size(), 6u) << all.output;
  const std::vector<std::string> alone = {"5,17,42", "3", "1,2,3,4,5,6,7,8,9,10,11,12,13,14"};
  for (size_t p = 0; p < alone.size(); ++p) {
    RunResult one = generate("--prompt-ids " + alone[p] + " " + opts);
    ASSERT_EQ(one.exit_code, 0) << one.output;
    EXPECT_EQ(lines_of(one.output), (std::vector<std::string>{lines[2 * p], lines[2 * p + 1]}))
        << "prompt " << p;
  }
  EXPECT_EQ(parse_ids(lines[4]).size(), 2u);  // 14 prompt tokens + 2 = block_size 16
  // Sampling repeats for a seed; a file of one prompt draws exactly as --prompt-ids.
  const std::string sampled = "--seed 3 --print-ids --max-new-tokens 8 --num-samples 2";
  RunResult a = generate("--prompt-ids-file " + dir_->file("prompts.txt") + " " + sampled);
  RunResult b = generate("--prompt-ids-file " + dir_->file("prompts.txt") + " " + sampled);
  ASSERT_EQ(a.exit_code, 0) << a.output;
  EXPECT_EQ(a.output, b.output);
  EXPECT_EQ(lines_of(a.output).size(), 6u);
  write_file(dir_->file("one.txt"), "5,17,42\n");
  RunResult file_one = generate("--prompt-ids-file " + dir_->file("one.txt") + " " + sampled);
  RunResult flag_one = generate("--prompt-ids 5,17,42 " + sampled);
  ASSERT_EQ(file_one.exit_code, 0) << file_one.output;
  EXPECT_EQ(file_one.output, flag_one.output);
  write_file(dir_->file("bad.txt"), "1,2\n4,x\n");
  expect_error(generate("--prompt-ids-file " + dir_->file("bad.txt") + " --print-ids"), 2,
               "prompt 2");
  expect_error(generate("--prompt-ids-file " + dir_->file("none.txt") + " --print-ids"), 2,
               "cannot read --prompt-ids-file");
}

TEST_F(GenerateCliTest, PromptIsCutAtBlockSize) {
  // block_size 16: a 14-token prompt leaves room for 2 new tokens.
  RunResult r = generate(
      "--prompt-ids 1,2,3,4,5,6,7,8,9,10,11,12,13,14 --temperature 0 "
      "--print-ids --max-new-tokens 9");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_EQ(parse_ids(lines_of(r.output).at(0)).size(), 2u) << r.output;
}

TEST_F(GenerateCliTest, BadFlagsExitWithCode2) {
  const std::string ok = "--prompt-ids 1,2 --print-ids ";
  expect_error(generate(ok + "--top-p 1.5"), 2, "--top-p");
  expect_error(generate(ok + "--top-p 0"), 2, "--top-p");
  expect_error(generate(ok + "--temperature -1"), 2, "--temperature");
  expect_error(generate(ok + "--top-k -2"), 2, "--top-k");
  expect_error(generate(ok + "--max-new-tokens many"), 2, "--max-new-tokens");
  expect_error(generate(ok + "--topk 3"), 2, "unknown flag --topk");
  expect_error(generate(ok + "--num-samples 0"), 2, "--num-samples");
  expect_error(generate("--prompt-ids 1,x --print-ids"), 2, "--prompt-ids");
  expect_error(generate("--prompt-ids 1,64 --print-ids"), 2, "prompt ids in [0, 64)");
  expect_error(generate("--prompt-ids 1 --prompt hi --print-ids"), 2, "exactly one of --prompt");
  expect_error(generate("--print-ids"), 2, "exactly one of --prompt");
  expect_error(run_loom("generate --prompt-ids 1"), 2, "--checkpoint is required");
  // The tiny run has no tokenizer: text output needs one.
  expect_error(generate("--prompt-ids 1,2"), 2, "no tokenizer");
  expect_error(generate("--prompt hello"), 2, "no tokenizer");
  // A directory without checkpoints is a checkpoint error (exit 3).
  expect_error(run_loom("generate --checkpoint " + dir_->str() + " --prompt-ids 1 --print-ids"), 3,
               "no checkpoint found");
}

// Issue 15: a checkpoint carries its run's tokenizer, so `loom generate --prompt` works from any
// working directory even when the config named the tokenizer by a relative path.
TEST(GenerateCliCarriedTokenizer, TextPromptWorksFromAnotherDirectory) {
  TempDir d("generate_tok");
  std::string corpus;
  for (int i = 0; i < 200; ++i) corpus += "the cat sat on the mat and the dog ran. ";
  write_file(d.file("corpus.txt"), corpus);
  const std::string in_dir = "cd " + d.str() + " && " + std::string(LOOM_BIN);
  RunResult tok = run_shell(in_dir + " tokenizer train --input corpus.txt --vocab-size 300 "
                            "--min-frequency 1 --output tok");
  ASSERT_EQ(tok.exit_code, 0) << tok.output;
  RunResult pre = run_shell(in_dir + " preprocess --input corpus.txt --output data.h5 "
                            "--vocab tok/vocab.json --merges tok/merges.txt");
  ASSERT_EQ(pre.exit_code, 0) << pre.output;
  write_file(d.file("cfg.pbtxt"),
             "name: \"t\"\nmax_steps: 3\noutput_dir: \"run\"\n"
             "model { n_layer: 1 n_head: 2 n_embd: 16 vocab_size: 300 block_size: 16 }\n"
             "data { train_path: \"data.h5\" seq_len: 16 tokenizer_vocab: \"tok/vocab.json\" "
             "tokenizer_merges: \"tok/merges.txt\" }\n"
             "batch { micro_batch_size: 2 }\neval { interval: 0 }\nlogging { progress: OFF }\n");
  RunResult train = run_shell(in_dir + " train cfg.pbtxt");
  ASSERT_EQ(train.exit_code, 0) << train.output;
  RunResult gen = run_shell("cd / && " + std::string(LOOM_BIN) + " generate --checkpoint " +
                            d.file("run/checkpoints") + " --prompt 'the cat' --max-new-tokens 4 "
                            "--temperature 0");
  EXPECT_EQ(gen.exit_code, 0) << gen.output;
  EXPECT_NE(gen.output.find("the cat"), std::string::npos) << gen.output;
}

TEST(GenerateCliHf, AnHfDirectoryGeneratesAsTheCheckpointConvertedFromIt) {
  TempDir d("generate_hf");
  const std::string hf = std::string(LOOM_SOURCE_DIR) + "/tests/golden/hf/gpt2_untied_v300";
  RunResult conv = run_loom("convert --from hf " + hf + " --to " + d.file("ck"));
  ASSERT_EQ(conv.exit_code, 0) << conv.output;
  const std::string flags = " --prompt 'hello world' --max-new-tokens 6 --temperature 0.8 "
                            "--seed 3 --num-samples 2";
  RunResult from_hf = run_loom("generate --checkpoint hf:" + hf + flags);
  RunResult from_ck = run_loom("generate --checkpoint " + d.file("ck") + flags);
  ASSERT_EQ(from_hf.exit_code, 0) << from_hf.output;
  ASSERT_EQ(from_ck.exit_code, 0) << from_ck.output;
  EXPECT_EQ(from_hf.output, from_ck.output);  // the conversion is exact; same tokenizer, same keys
  const std::vector<std::string> lines = lines_of(from_hf.output);  // "--- sample j ---", text
  ASSERT_EQ(lines.size(), 4u) << from_hf.output;
  EXPECT_EQ(lines[1].rfind("hello world", 0), 0u) << from_hf.output;
  EXPECT_EQ(lines[3].rfind("hello world", 0), 0u) << from_hf.output;
}

}  // namespace
}  // namespace loom::e2e
