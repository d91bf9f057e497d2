// Every command shown in README.md, docs/*.md and examples/*/README.md runs (issue 15: three of
// them failed as written). The commands are the lines of the ```bash blocks (a trailing `\`
// continues a line; `# ...` comments are dropped); every fenced block must say what it is
// (```bash, ```text, ```cpp, ...), so a command cannot hide in an untagged block. Each file's
// commands run in order, as one `set -e` script, in a fresh scratch directory that holds what a
// reader's checkout would: build/bin/loom (this build; `loom` is on PATH too), configs/, examples/,
// and tiny stand-ins for the reader's data (see Scratch). Two things are added, both listed below:
// arguments that make training runs short (kShort), and the commands not run, each with its reason
// (kNotRun). A command matching no rule runs exactly as written.
#include <algorithm>
#include <cctype>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "tests/e2e/LoomCli.h"

namespace loom::e2e {
namespace {

namespace fs = std::filesystem;

// Commands that are not run, by file and the start of the command, with the reason.
struct NotRun {
  const char* file;
  const char* command_start;
  const char* reason;
};
const NotRun kNotRun[] = {
    {"README.md", "scripts/quickstart.sh",
     "installs packages and builds Loom (its job, "
     "examples/pretrain/run.sh, runs from its README)"},
    {"README.md", "scripts/test.sh", "builds Loom and runs the whole suite, this test included"},
    {"README.md", "scripts/install-deps.sh", "installs Debian packages (root, network)"},
    {"README.md", "cmake ", "configures and builds Loom: this test runs inside that build"},
    {"README.md", "ctest ", "runs the whole suite, this test included"},
    {"README.md", "python3 -m venv", "installs PyTorch from the network"},
    {"README.md", "tests/golden/gen_all.sh", "needs PyTorch, and rewrites tests/golden/"},
    {"examples/pretrain/README.md", "scripts/quickstart.sh",
     "installs packages and builds Loom "
     "(its job runs on the next line)"},
    {"docs/DISTRIBUTED.md", "mpirun ", "runs the MPI test binaries, which CTest runs (label mpi)"},
    {"docs/DISTRIBUTED.md", "OMP_NUM_THREADS=1 LOOM_COMM_TIMEOUT_S=60",
     "the same, with debug "
     "settings"},
    {"docs/DISTRIBUTED.md", "loom launch -n 16 --hostfile", "needs the nodes named in hosts.txt"},
    {"docs/DISTRIBUTED.md", "srun ", "needs a Slurm allocation"},
    {"docs/PERFORMANCE.md", "OMP_NUM_THREADS=2 build/bin/bench_attention",
     "a benchmark: its "
     "numbers need an idle "
     "machine"},
    {"docs/PERFORMANCE.md", "BUILD=build ROUNDS=3",
     "times PyTorch next to Loom for minutes "
     "(needs PyTorch)"},
    {"docs/PERFORMANCE.md", "python bench/tokenizer_hf.py",
     "needs Python and GPT-2's tokenizer "
     "files (a download)"},
    {"docs/PERFORMANCE.md", "build/bin/bench_tokenizer",
     "needs GPT-2's tokenizer files "
     "(a download)"},
    {"docs/PERFORMANCE.md", "loom bench --device cuda", "needs a GPU"},
    {"docs/PERFORMANCE.md", "loom bench --model gpt2-124m --batch 4 --seq 64 --steps 5",
     "a benchmark: its numbers need an idle machine"},
    {"docs/PERFORMANCE.md", "loom bench --model llama-124m --batch 4 --seq 64 --steps 5",
     "a benchmark: its numbers need an idle machine"},
    {"docs/PERFORMANCE.md", "OMP_NUM_THREADS=1 build/bin/bench_rollout",
     "a benchmark: its numbers need an idle machine"},
    {"docs/PERFORMANCE.md", "build/bin/bench_memory",
     "trains GPT-2 350M and 774M on up to 8 ranks: about 20 GiB and many minutes"},
    {"docs/PERFORMANCE.md", "OMP_WAIT_POLICY=passive python3 bench/pytorch_train_gpt2.py",
     "needs PyTorch"},
};

// Arguments appended to commands that contain `pattern`, to keep runs short. Training: 2 steps
// (warm-up 1, since warm-up may not exceed max_steps); bench: 1 timed step. The fine-tuning example
// names Hugging Face's `gpt2`, whose stand-in here is the tiny tests/golden/hf/gpt2_untied_v300:
// its model section is set to match (the command's data.seq_len=256 exceeds its 32 positions).
struct Short {
  const char* pattern;
  const char* args;
};
constexpr const char* kShortTrain = " --set max_steps=2 --set schedule.warmup_steps=1";
const Short kShort[] = {
    {"init_from=hf:gpt2",
     " --set model.n_layer=3 --set model.n_head=2 --set model.n_embd=24"
     " --set model.block_size=32 --set model.vocab_size=300"
     " --set model.tie_embeddings=false --set data.seq_len=16"},
    {"loom train ", kShortTrain},
    {"loom launch ", kShortTrain},
    {"loom pipeline ", kShortTrain},
    {"examples/pretrain/run.sh ", kShortTrain},  // its extra arguments go to `loom train`
    {"examples/rlhf/run.sh ", kShortTrain},      // ... and here to `loom pipeline`
    {"loom bench ", " --steps 1 --warmup 0"},
};

struct Command {
  int line;
  std::string text;
};

std::string trimmed(const std::string& s) {
  const size_t b = s.find_first_not_of(" \t");
  return b == std::string::npos ? "" : s.substr(b, s.find_last_not_of(" \t") - b + 1);
}

// Drops a `# comment` (a '#' at the start or after a blank, outside quotes); trims blanks.
std::string without_comment(const std::string& line) {
  char quote = 0;
  for (size_t i = 0; i < line.size(); ++i) {
    const char c = line[i];
    if (quote != 0) {
      if (c == quote) quote = 0;
    } else if (c == '\'' || c == '"') {
      quote = c;
    } else if (c == '#' && (i == 0 || line[i - 1] == ' ' || line[i - 1] == '\t')) {
      return trimmed(line.substr(0, i));
    }
  }
  return trimmed(line);
}

// The commands of the ```bash blocks of a markdown file; fails the test on an untagged block.
std::vector<Command> commands_of(const std::string& rel) {
  std::ifstream in(std::string(LOOM_SOURCE_DIR) + "/" + rel);
  std::vector<Command> out;
  bool in_block = false, bash = false;
  std::string pending;
  int pending_line = 0, n = 0;
  for (std::string line; std::getline(in, line);) {
    ++n;
    if (line.rfind("```", 0) == 0) {
      if (!in_block) {
        const std::string lang = line.substr(3);
        EXPECT_FALSE(lang.empty()) << rel << ":" << n << ": a fenced block without a language; "
                                   << "use ```bash for commands, ```text for output";
        bash = lang == "bash";
      }
      in_block = !in_block;
      continue;
    }
    if (!in_block || !bash) continue;
    const bool continued = !line.empty() && line.back() == '\\';
    const std::string part = without_comment(continued ? line.substr(0, line.size() - 1) : line);
    if (pending.empty()) pending_line = n;
    if (!part.empty()) pending += (pending.empty() ? "" : " ") + part;
    if (continued) continue;
    if (!pending.empty()) out.push_back({pending_line, pending});
    pending.clear();
  }
  EXPECT_FALSE(in_block) << rel << ": a fenced block is not closed";
  return out;
}

// Deterministic English-like text: `docs` documents of a few sentences over a small vocabulary.
std::vector<std::string> tiny_documents(int docs, uint32_t seed) {
  static const char* const kWords[] = {
      "the",   "a",       "cat",   "dog",    "fox",   "sat",   "ran",   "on",    "over",
      "under", "mat",     "log",   "hill",   "river", "quick", "lazy",  "brown", "small",
      "old",   "tree",    "and",   "but",    "then",  "it",    "was",   "is",    "saw",
      "found", "green",   "house", "garden", "bird",  "sang",  "slept", "in",    "near",
      "with",  "morning", "night", "sun",    "moon",  "rain",  "wind",  "stone", "bridge"};
  std::mt19937 rng(seed);
  std::vector<std::string> out;
  for (int d = 0; d < docs; ++d) {
    std::string doc;
    const int sentences = 4 + int(rng() % 6);
    for (int s = 0; s < sentences; ++s) {
      const int words = 5 + int(rng() % 9);
      for (int w = 0; w < words; ++w) {
        std::string word = kWords[rng() % std::size(kWords)];
        if (w == 0) word[0] = char(std::toupper(word[0]));
        doc += (w == 0 ? (s == 0 ? "" : " ") : " ") + word;
      }
      doc += ".";
    }
    out.push_back(doc);
  }
  return out;
}

std::string jsonl_of(const std::vector<std::string>& docs) {
  std::string s;
  for (const std::string& d : docs) s += "{\"text\": \"" + d + "\"}\n";
  return s;
}

// The reader's checkout and data, in a fresh directory: build/bin/loom, configs/, examples/; the
// README's corpus.txt, docs.jsonl, my_data.jsonl and gpt2/ (a tiny Hugging Face GPT-2 with a
// tokenizer.json); configs/tiny.pbtxt's data/tiny/{train,val}.h5 (random ids below 256); and a
// small stand-in for Debian's fortunes (FORTUNES_DIR, read by examples/pretrain/make_corpus.sh).
void prepare_scratch(const TempDir& d) {
  const fs::path src = LOOM_SOURCE_DIR;
  fs::create_directories(d.file("build/bin"));
  fs::create_symlink(LOOM_BIN, d.file("build/bin/loom"));
  for (const char* dir : {"configs", "examples"})
    fs::copy(src / dir, d.file(dir), fs::copy_options::recursive);
  const std::vector<std::string> docs = tiny_documents(600, 1);
  std::string text;
  for (const std::string& doc : docs) text += doc + "\n";
  write_file(d.file("corpus.txt"), text);
  write_file(d.file("docs.jsonl"), jsonl_of(docs));
  write_file(d.file("my_data.jsonl"), jsonl_of(tiny_documents(200, 2)));
  fs::copy(src / "tests/golden/hf/gpt2_untied_v300", d.file("gpt2"));
  fs::create_directories(d.file("data/tiny"));
  write_random_dataset(d.file("data/tiny/train.h5"), 6000, 256, 3);
  write_random_dataset(d.file("data/tiny/val.h5"), 2000, 256, 4);
  fs::create_directories(d.file("fortunes"));
  std::string fortunes;
  for (const std::string& doc : docs) fortunes += doc + "\n\t\t-- Anonymous\n%\n";
  write_file(d.file("fortunes/tiny"), fortunes);
}

bool starts_with(const std::string& s, const std::string& prefix) {
  return s.compare(0, prefix.size(), prefix) == 0;
}

// The script for `rel`: each command (with its kShort arguments) after an echo naming its line
// and timed (a failure's output shows where the time went), or a comment saying why it is not run.
std::string script_for(const std::string& rel, std::vector<bool>& not_run_used) {
  std::string script = "set -euo pipefail\nTIMEFORMAT='TIME %R'\n";
  for (const Command& c : commands_of(rel)) {
    const NotRun* skip = nullptr;
    for (size_t i = 0; i < std::size(kNotRun); ++i) {
      if (rel == kNotRun[i].file && starts_with(c.text, kNotRun[i].command_start)) {
        skip = &kNotRun[i];
        not_run_used[i] = true;
      }
    }
    if (skip != nullptr) {
      script += "# not run (" + std::string(skip->reason) + "): " + c.text + "\n";
      continue;
    }
    std::string cmd = c.text;
    for (const Short& s : kShort)
      if (cmd.find(s.pattern) != std::string::npos) cmd += s.args;
    script += "echo '>>> " + rel + ":" + std::to_string(c.line) + "'\ntime " + cmd + "\n";
  }
  return script;
}

std::vector<std::string> markdown_files() {
  std::vector<std::string> files = {"README.md"};
  const fs::path src = LOOM_SOURCE_DIR;
  for (const char* dir : {"docs", "examples"}) {
    for (const auto& e : fs::recursive_directory_iterator(src / dir)) {
      const std::string rel = fs::relative(e.path(), src).string();
      const bool doc = dir == std::string("docs") ? e.path().extension() == ".md"
                                                  : e.path().filename() == "README.md";
      if (e.is_regular_file() && doc) files.push_back(rel);
    }
  }
  std::sort(files.begin(), files.end());
  return files;
}

class DocsCommandsTest : public ::testing::TestWithParam<std::string> {};

TEST_P(DocsCommandsTest, EveryCommandRunsAsWritten) {
  const std::string rel = GetParam();
  std::string tag = rel;
  std::replace_if(
      tag.begin(), tag.end(), [](char c) { return !std::isalnum(c); }, '_');
  TempDir d("docs_" + tag);
  prepare_scratch(d);
  std::vector<bool> used(std::size(kNotRun), false);
  const std::string script = script_for(rel, used);
  write_file(d.file("commands.sh"), script);
  RunResult r = run_shell("cd " + d.str() + " && PATH=" + d.file("build/bin") + ":$PATH" +
                          " FORTUNES_DIR=" + d.file("fortunes") +
                          " OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1" +
                          " OMP_NUM_THREADS=1 bash commands.sh");
  const size_t last = r.output.rfind(">>> ");
  EXPECT_EQ(r.exit_code, 0) << "failed at "
                            << (last == std::string::npos ? std::string("the start")
                                                          : r.output.substr(last + 4, 60))
                            << "\n--- script\n"
                            << script << "--- output (last 6000 bytes)\n"
                            << r.output.substr(r.output.size() > 6000 ? r.output.size() - 6000 : 0);
  for (size_t i = 0; i < std::size(kNotRun); ++i) {
    if (rel == kNotRun[i].file) {
      EXPECT_TRUE(used[i]) << "kNotRun entry matches no command of " << rel << ": "
                           << kNotRun[i].command_start;
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Markdown, DocsCommandsTest, ::testing::ValuesIn(markdown_files()),
                         [](const ::testing::TestParamInfo<std::string>& info) {
                           std::string name = info.param;
                           std::replace_if(
                               name.begin(), name.end(), [](char c) { return !std::isalnum(c); },
                               '_');
                           return name;
                         });

// Every file's kNotRun entries name a file that exists (a renamed file cannot leave stale skips).
TEST(DocsCommandsListTest, NotRunEntriesNameExistingFiles) {
  const std::vector<std::string> files = markdown_files();
  for (const NotRun& n : kNotRun)
    EXPECT_NE(std::find(files.begin(), files.end(), n.file), files.end()) << n.file;
}

}  // namespace
}  // namespace loom::e2e
