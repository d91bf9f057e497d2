// Bad inputs to `loom` give clear errors with the documented exit codes (issue 3): unknown config
// field (file:line:column), wrong type, tp*pp*dp not matching the world, a missing data file, a
// dataset whose vocabulary exceeds the model's, a truncated checkpoint. Issue 15: numbers on the
// command line are range-checked (no wrap), a missing value or repeated flag names the flag, and
// library exceptions (JSON type errors, std::stoll, std::bad_alloc, std::filesystem) reach the user
// labelled, with the documented exit code; `bench` refuses bf16 on the CPU and more threads than
// cores.
#include <sched.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "tests/e2e/LoomCli.h"

namespace loom::e2e {
namespace {

void expect_contains(const RunResult& r, const std::vector<std::string>& parts) {
  for (const std::string& p : parts) EXPECT_NE(r.output.find(p), std::string::npos) << p << "\n" << r.output;
}

TEST(CliErrorsTest, UnknownFieldNamesFileLineColumn) {
  TempDir d("unknown_field");
  write_file(d.file("c.pbtxt"), "max_steps: 5\nmodel {\n  n_layers: 2\n}\n");
  RunResult r = run_loom("train " + d.file("c.pbtxt"));
  EXPECT_EQ(r.exit_code, 2);
  expect_contains(r, {d.file("c.pbtxt") + ":3:3", "n_layers", "n_layer"});
}

TEST(CliErrorsTest, WrongTypeIsAConfigError) {
  TempDir d("wrong_type");
  write_file(d.file("c.pbtxt"), "max_steps: \"many\"\n");
  RunResult r = run_loom("train " + d.file("c.pbtxt"));
  EXPECT_EQ(r.exit_code, 2);
  // protobuf's parser names the position and the expected type ("Expected integer").
  expect_contains(r, {d.file("c.pbtxt") + ":1:12", "integer", "many"});
  RunResult s = run_loom("train " + d.file("c.pbtxt") + " --set optimizer.lr=fast");
  EXPECT_EQ(s.exit_code, 2);
}

TEST(CliErrorsTest, ParallelLayoutMustMatchTheWorld) {
  TempDir d("layout");
  write_random_dataset(d.file("train.h5"), 2000, 64);
  write_random_dataset(d.file("val.h5"), 500, 64);
  write_file(d.file("c.pbtxt"), tiny_config(d, 5) + "parallel { tp: 2 pp: 2 dp: 1 }\n");
  RunResult r = run_loom("train " + d.file("c.pbtxt"));
  EXPECT_EQ(r.exit_code, 2);
  expect_contains(r, {"tp", "pp", "dp", "world"});
}

TEST(CliErrorsTest, MissingDataFileIsNamed) {
  TempDir d("missing_data");
  write_file(d.file("c.pbtxt"), tiny_config(d, 5));  // train.h5 never written
  RunResult r = run_loom("train " + d.file("c.pbtxt"));
  EXPECT_EQ(r.exit_code, 2) << r.output;  // a file named in the config (README), drills
  expect_contains(r, {d.file("train.h5"), "does not exist"});
}

TEST(CliErrorsTest, DatasetVocabLargerThanModelIsRejected) {
  TempDir d("vocab");
  write_random_dataset(d.file("train.h5"), 2000, 1000);  // ids up to 999, model vocab 64
  write_random_dataset(d.file("val.h5"), 500, 64);
  write_file(d.file("c.pbtxt"), tiny_config(d, 5));
  RunResult r = run_loom("train " + d.file("c.pbtxt"));
  EXPECT_NE(r.exit_code, 0);
  expect_contains(r, {"1000", "64"});
}

// The tokenizer a run's checkpoints carry must load and fit the model before training starts (the
// drills found garbage copied into every checkpoint, failing only at `loom generate`).
TEST(CliErrorsTest, ATokenizerThatDoesNotLoadOrFitStopsTheRunBeforeAnyCheckpoint) {
  TempDir d("garbage_tok");
  write_random_dataset(d.file("train.h5"), 2000, 64);
  write_random_dataset(d.file("val.h5"), 500, 64);
  write_file(d.file("c.pbtxt"), tiny_config(d, 5));
  write_file(d.file("vocab.json"), "\x8f\x01 no JSON here");
  write_file(d.file("merges.txt"), "#version: 0.2\n");
  const std::string tok = " --set data.tokenizer_vocab=" + d.file("vocab.json") +
                          " --set data.tokenizer_merges=" + d.file("merges.txt");
  RunResult r = run_loom("train " + d.file("c.pbtxt") + tok);
  EXPECT_EQ(r.exit_code, 1) << r.output;  // a bad data file
  expect_contains(r, {d.file("vocab.json")});
  EXPECT_FALSE(std::filesystem::exists(d.file("run/checkpoints"))) << r.output;
  std::string text;
  for (int i = 0; i < 200; ++i) text += "the quick brown fox " + std::to_string(i) + "\n";
  write_file(d.file("corpus.txt"), text);
  RunResult t = run_loom("tokenizer train --input " + d.file("corpus.txt") +
                         " --vocab-size 300 --output " + d.file("tok"));
  ASSERT_EQ(t.exit_code, 0) << t.output;
  r = run_loom("train " + d.file("c.pbtxt") + " --set data.tokenizer_vocab=" +
               d.file("tok/vocab.json") + " --set data.tokenizer_merges=" +
               d.file("tok/merges.txt"));
  EXPECT_EQ(r.exit_code, 2) << r.output;  // ~300 tokens (as many as merges the text allowed)
  expect_contains(r, {"model.vocab_size=64", "tokens of the run's tokenizer",
                      d.file("tok/vocab.json")});
  EXPECT_FALSE(std::filesystem::exists(d.file("run/checkpoints"))) << r.output;
}

TEST(CliErrorsTest, TruncatedCheckpointIsRejectedWithExitCode3) {
  TempDir d("truncated");
  write_random_dataset(d.file("train.h5"), 2000, 64);
  write_random_dataset(d.file("val.h5"), 500, 64);
  write_file(d.file("c.pbtxt"), tiny_config(d, 4));
  RunResult first = run_loom("train " + d.file("c.pbtxt"));
  ASSERT_EQ(first.exit_code, 0) << first.output;
  std::string ck = d.file("run/checkpoints/step_00000004");
  std::filesystem::resize_file(ck + "/tensors-r00000.h5", 100);  // one rank: one tensor file
  RunResult r = run_loom("train " + d.file("c.pbtxt") + " --set max_steps=6 --resume " + ck);
  EXPECT_EQ(r.exit_code, 3);
  expect_contains(r, {"tensors-r00000.h5", "truncated"});
}

// Found by the drills (scripts/drills.sh, a full tmpfs): a checkpoint write that fails made
// H5Fclose fail, and libhdf5's atexit teardown then crashed (SIGSEGV, exit 139) after the error
// was printed. A file-size limit makes the same write fail without root (SIGXFSZ ignored, so the
// write returns EFBIG).
TEST(CliErrorsTest, ACheckpointWriteThatFailsIsACheckpointErrorNotACrash) {
  TempDir d("write_fails");
  write_random_dataset(d.file("train.h5"), 2000, 64);
  write_random_dataset(d.file("val.h5"), 500, 64);
  write_file(d.file("c.pbtxt"), tiny_config(d, 4));  // the first checkpoint: step 4
  RunResult r = run_shell("bash -c \"trap '' XFSZ; ulimit -f 64; exec " + std::string(LOOM_BIN) +
                          " train " + d.file("c.pbtxt") + "\"");
  EXPECT_EQ(r.exit_code, 3) << r.output;
  expect_contains(r, {"loom: error: checkpoint: ", d.file("run/checkpoints/step_00000004")});
}

TEST(CliErrorsTest, UnknownVerbAndFlag) {
  RunResult v = run_loom("fly");
  EXPECT_EQ(v.exit_code, 2);
  expect_contains(v, {"unknown command \"fly\"", "train", "eval"});
  RunResult r = run_loom("train x.pbtxt --bogus 1");
  EXPECT_EQ(r.exit_code, 2);
  expect_contains(r, {"unknown flag --bogus", "--set"});
  RunResult t = run_loom("tokenizer fly");
  EXPECT_EQ(t.exit_code, 2);
  expect_contains(t, {"loom tokenizer: unknown command \"fly\"", "train, encode, decode"});
}

// D10: 4294967297 = 2^32 + 1 wrapped to 1 in an int32_t.
TEST(CliErrorsTest, NumbersAreRangeCheckedNotWrapped) {
  TempDir d("numbers");
  write_file(d.file("corpus.txt"), "the quick brown fox jumps over the lazy dog\n");
  RunResult tok = run_loom("tokenizer train --input " + d.file("corpus.txt") +
                           " --vocab-size 300 --output " + d.file("tok"));
  ASSERT_EQ(tok.exit_code, 0) << tok.output;
  const std::string files = " --vocab " + d.file("tok/vocab.json") + " --merges " +
                            d.file("tok/merges.txt");
  RunResult r = run_loom("tokenizer decode --ids 4294967297" + files);
  EXPECT_EQ(r.exit_code, 2) << r.output;
  expect_contains(r, {"--ids", "[0, 2147483647]", "4294967297"});
  r = run_loom("tokenizer decode --ids 1,-3" + files);
  EXPECT_EQ(r.exit_code, 2) << r.output;
  expect_contains(r, {"--ids", "-3"});
  r = run_loom("tokenizer decode --ids 1,300" + files);  // ids are below --vocab-size 300
  EXPECT_EQ(r.exit_code, 2) << r.output;
  expect_contains(r, {"--ids", "300"});
  r = run_loom("tokenizer train --input " + d.file("corpus.txt") + " --vocab-size 4294967297" +
               " --output " + d.file("tok2"));
  EXPECT_EQ(r.exit_code, 2) << r.output;
  expect_contains(r, {"--vocab-size", "[257, 2147483647]", "4294967297"});
  EXPECT_FALSE(std::filesystem::exists(d.file("tok2")));
  r = run_loom("bench --model tiny --batch 2x");
  EXPECT_EQ(r.exit_code, 2) << r.output;
  expect_contains(r, {"--batch expects an integer", "\"2x\""});
  r = run_loom("preprocess --input a.txt --output o.h5 --val-fraction nan --vocab v --merges m");
  EXPECT_EQ(r.exit_code, 2) << r.output;
  expect_contains(r, {"--val-fraction expects a number", "nan"});
}

TEST(CliErrorsTest, MissingValueAndRepeatedFlagNameTheFlag) {
  RunResult r = run_loom("generate --checkpoint");
  EXPECT_EQ(r.exit_code, 2) << r.output;
  expect_contains(r, {"loom generate: --checkpoint expects a value"});
  r = run_loom("train x.pbtxt --resume auto --resume none");
  EXPECT_EQ(r.exit_code, 2) << r.output;
  expect_contains(r, {"--resume given 2 times"});
  r = run_loom("train a.pbtxt b.pbtxt");
  EXPECT_EQ(r.exit_code, 2) << r.output;
  expect_contains(r, {"loom train: expected at most 1 CONFIG"});
}

// No message may be a library's raw text: not nlohmann's "[json.exception...]" id, not a bare
// "loom: error: stoll".
void expect_labelled(const RunResult& r) {
  EXPECT_EQ(r.output.find("[json.exception"), std::string::npos) << r.output;
  EXPECT_EQ(r.output.find("loom: error: stoll\n"), std::string::npos) << r.output;
  EXPECT_EQ(r.output.find("loom: error: std::bad_alloc\n"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("loom: error: "), std::string::npos) << r.output;
}

TEST(CliErrorsTest, JsonTypeErrorInAnHfConfigIsLabelled) {
  TempDir d("hf_json_type");
  std::filesystem::copy(std::string(LOOM_SOURCE_DIR) + "/tests/golden/hf/gpt2_tied_v61",
                        d.file("hf"));
  nlohmann::json c = nlohmann::json::parse(std::ifstream(d.file("hf/config.json")));
  c["activation_function"] = 5;  // a string in every real config.json
  std::ofstream(d.file("hf/config.json")) << c.dump();
  RunResult r = run_loom("convert --from hf " + d.file("hf") + " --to " + d.file("ck"));
  EXPECT_NE(r.exit_code, 0);
  expect_labelled(r);
  expect_contains(r, {"type must be string, but is number"});
}

// Rewrites meta.json's "step" of a checkpoint and re-hashes it in the manifest, so that only the
// value's type (not a hash mismatch) is wrong.
void set_meta_step(const std::string& step_dir, const nlohmann::json& step) {
  const std::string meta_path = step_dir + "/meta.json";
  nlohmann::json meta = nlohmann::json::parse(std::ifstream(meta_path));
  meta["step"] = step;
  std::ofstream(meta_path) << meta.dump();
  RunResult sum = run_shell("sha256sum " + meta_path);
  nlohmann::json m = nlohmann::json::parse(std::ifstream(step_dir + "/MANIFEST.json"));
  m["files"]["meta.json"]["bytes"] = std::filesystem::file_size(meta_path);
  m["files"]["meta.json"]["sha256"] = sum.output.substr(0, 64);
  std::ofstream(step_dir + "/MANIFEST.json") << m.dump();
}

TEST(CliErrorsTest, MalformedCheckpointMetaIsLabelled) {
  TempDir d("meta_step");
  write_random_dataset(d.file("train.h5"), 2000, 64);
  write_random_dataset(d.file("val.h5"), 500, 64);
  write_file(d.file("c.pbtxt"), tiny_config(d, 4));
  RunResult t = run_loom("train " + d.file("c.pbtxt") + " --set checkpoint.interval=2");
  ASSERT_EQ(t.exit_code, 0) << t.output;
  const std::string step_dir = d.file("run/checkpoints/step_00000004");
  const std::string gen = "generate --prompt-ids 1 --print-ids --checkpoint " + step_dir;
  set_meta_step(step_dir, "two");  // std::stoll("two")
  RunResult r = run_loom(gen);
  EXPECT_TRUE(r.exit_code == 1 || r.exit_code == 3) << r.output;
  expect_labelled(r);
  set_meta_step(step_dir, 2);  // a number where a string is read: JSON type error 302
  r = run_loom(gen);
  EXPECT_TRUE(r.exit_code == 1 || r.exit_code == 3) << r.output;
  expect_labelled(r);
}

// std::bad_alloc (a std::vector of 16M x 33 token ids, 4.2 GB, under a 3 GB address-space limit)
// is the documented out-of-memory exit code 5, not a bare "std::bad_alloc" with exit code 1.
TEST(CliErrorsTest, HostOutOfMemoryExitsWithCode5) {
  RunResult r = run_loom_env("ulimit -v 3000000; ",
                             "bench --model tiny --batch 16000000 --seq 32 --steps 1 --warmup 0");
  EXPECT_EQ(r.exit_code, 5) << r.output;
  expect_labelled(r);
  expect_contains(r, {"out of memory"});
}

TEST(CliErrorsTest, FilesystemErrorNamesThePath) {
  TempDir d("fs_error");
  write_file(d.file("corpus.txt"), "some text to learn from\n");
  RunResult r = run_loom("tokenizer train --input " + d.file("corpus.txt") +
                         " --vocab-size 300 --output /dev/null/loom_tok");
  EXPECT_EQ(r.exit_code, 1) << r.output;
  expect_contains(r, {"file system error", "/dev/null/loom_tok", "Not a directory"});
}

// D11: the CPU kernels are f32; a bf16 bench on the CPU used to run f32 and print "dtype": "bf16".
TEST(CliErrorsTest, BenchRefusesBf16OnTheCpu) {
  RunResult r = run_loom("bench --model tiny --batch 1 --seq 8 --steps 1 --warmup 0 --dtype bf16");
  EXPECT_EQ(r.exit_code, 2) << r.output;
  expect_contains(r, {"dtype f32 on the CPU", "bf16"});
  EXPECT_EQ(r.output.find("\"dtype\""), std::string::npos) << r.output;  // no JSON result line
}

// D12: more threads than cores, under an address-space limit, spun forever in OpenBLAS's
// allocator. The cap is the cores this process may use; `timeout` turns a hang into a failure.
TEST(CliErrorsTest, BenchThreadsAreCappedAtTheCores) {
  cpu_set_t set;
  CPU_ZERO(&set);
  ASSERT_EQ(sched_getaffinity(0, sizeof(set), &set), 0);
  const int cores = CPU_COUNT(&set);
  RunResult r = run_loom_env("ulimit -v 4000000; timeout 60 ",
                             "bench --model tiny --batch 1 --seq 8 --steps 1 --warmup 0 "
                             "--threads " + std::to_string(std::max(64, cores + 1)));
  EXPECT_EQ(r.exit_code, 2) << r.output;
  expect_contains(r, {"--threads", "[1, " + std::to_string(cores) + "]"});
  RunResult ok = run_loom("bench --model tiny --batch 1 --seq 8 --steps 1 --warmup 0 --threads " +
                          std::to_string(cores));
  EXPECT_EQ(ok.exit_code, 0) << ok.output;
  expect_contains(ok, {"\"threads\":" + std::to_string(cores)});
}

}  // namespace
}  // namespace loom::e2e
