// `--help` / `-h` (issue 15): `loom --help` lists exactly the commands that exist, and every
// command prints its usage with every flag and that flag's help text, exiting 0 (it used to be an
// unknown-flag error on every subcommand, and `loom --help` listed `eval` before it existed).
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "tests/e2e/LoomCli.h"

namespace loom::e2e {
namespace {

struct VerbFlags {
  std::string verb;
  std::vector<std::string> flags;
};

// The flags each command takes (README.md and docs/ use them).
const std::vector<VerbFlags> kVerbs = {
    {"train", {"--set", "--resume", "--blas"}},
    {"pipeline", {"--set", "--until", "--dry-run"}},
    {"launch", {"-n", "--hostfile", "--set", "--resume", "--dry-run", "--pipeline", "--until"}},
    {"preprocess",
     {"--input", "--output", "--val-output", "--val-fraction", "--seed", "--text-field", "--no-eot",
      "--vocab", "--merges", "--tokenizer-json"}},
    {"tokenizer train", {"--input", "--vocab-size", "--min-frequency", "--text-field", "--output"}},
    {"tokenizer encode", {"--text", "--vocab", "--merges", "--tokenizer-json"}},
    {"tokenizer decode", {"--ids", "--vocab", "--merges", "--tokenizer-json"}},
    {"generate",
     {"--checkpoint", "--prompt", "--prompt-ids", "--prompts-file", "--prompt-ids-file",
      "--max-new-tokens", "--temperature", "--top-k",
      "--top-p", "--seed", "--num-samples", "--eos-id", "--ignore-eos", "--print-ids", "--device",
      "--vocab", "--merges", "--tokenizer-json"}},
    {"eval", {"--data", "--seq-len", "--batch", "--max-batches", "--device"}},
    {"convert", {"--from", "--to", "--vocab-pad-multiple", "--max-shard-bytes"}},
    {"bench",
     {"--model", "--batch", "--seq", "--steps", "--warmup", "--threads", "--device", "--blas",
      "--dtype"}},
    {"plan", {"--set", "--world"}},
};

std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> out;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) out.push_back(line);
  return out;
}

// The first word of each line of the "Subcommands:" section of a help text.
std::set<std::string> subcommands_in(const std::string& help) {
  std::set<std::string> names;
  bool in_section = false;
  for (const std::string& line : lines_of(help)) {
    if (line == "Subcommands:") {
      in_section = true;
    } else if (in_section && line.empty()) {
      break;
    } else if (in_section) {
      std::istringstream words(line);
      std::string w;
      words >> w;
      names.insert(w);
    }
  }
  return names;
}

TEST(CliHelpTest, RootHelpListsExactlyTheCommandsThatExist) {
  for (const char* flag : {"--help", "-h", "help"}) {
    RunResult r = run_loom(flag);
    EXPECT_EQ(r.exit_code, 0) << flag << "\n" << r.output;
    EXPECT_EQ(subcommands_in(r.output),
              (std::set<std::string>{"train", "pipeline", "launch", "preprocess", "tokenizer",
                                     "generate", "eval", "convert", "bench", "plan"}))
        << r.output;
    EXPECT_NE(r.output.find("Exit codes:"), std::string::npos) << r.output;
  }
  RunResult t = run_loom("tokenizer --help");
  EXPECT_EQ(t.exit_code, 0) << t.output;
  EXPECT_EQ(subcommands_in(t.output), (std::set<std::string>{"train", "encode", "decode"}));
  // Every command listed runs (its --help succeeds).
  for (const std::string& v : subcommands_in(run_loom("--help").output))
    EXPECT_EQ(run_loom(v + " --help").exit_code, 0) << v;
}

TEST(CliHelpTest, EveryCommandPrintsEveryFlagWithItsHelp) {
  for (const VerbFlags& v : kVerbs) {
    for (const char* help : {"--help", "-h"}) {
      RunResult r = run_loom(v.verb + " " + help);
      EXPECT_EQ(r.exit_code, 0) << v.verb << " " << help << "\n" << r.output;
      EXPECT_NE(r.output.find("Usage: loom " + v.verb), std::string::npos) << r.output;
      for (const std::string& flag : v.flags) {
        // The flag's line: "  --flag TYPE    its help text" (help after the name column).
        bool found = false;
        for (const std::string& line : lines_of(r.output)) {
          const size_t at = line.find(flag + " ");
          const size_t alias = line.find(flag + ",");
          if ((at == std::string::npos && alias == std::string::npos) ||
              line.find_first_not_of(' ') != std::min(at, alias))
            continue;
          found = true;
          EXPECT_GT(line.size(), 40u) << v.verb << " " << flag << ": no help text: " << line;
        }
        EXPECT_TRUE(found) << v.verb << ": " << flag << " missing from\n" << r.output;
      }
    }
  }
}

TEST(CliHelpTest, HelpWinsOverOtherArgumentsAndRunsNothing) {
  TempDir d("help_runs_nothing");
  RunResult r = run_loom("tokenizer train --input " + d.file("none.txt") + " --output " +
                         d.file("tok") + " --help");
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_FALSE(std::filesystem::exists(d.file("tok")));
}

// Found by the drills (scripts/drills.sh): exit 1 before, while `loom tokenizer` without its
// command was already 2.
TEST(CliHelpTest, NoCommandPrintsTheHelpAndIsACommandLineError) {
  RunResult r = run_loom("");
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_NE(r.output.find("Usage: loom"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("loom: error: loom: expected a command, one of train"),
            std::string::npos) << r.output;
  EXPECT_EQ(run_loom("tokenizer").exit_code, 2);
  EXPECT_EQ(run_loom("help").exit_code, 0);
}

}  // namespace
}  // namespace loom::e2e
