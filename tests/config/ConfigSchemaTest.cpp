// Schema-wide config checks (issue 15): sizes from input have upper bounds so products cannot
// overflow (D1), enum fields accept only named values in pbtxt, JSON and --set (D6), every
// floating-point field must be finite (D7), and a directory given as a config is an error (D9).
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "config/ConfigLoader.h"
#include "config/ConfigOverride.h"
#include "config/ConfigValidate.h"
#include "core/util/Check.h"

namespace loom::config {
namespace {

// The tiny test-plan model, without the blocks the enum cases add (a message given twice is a
// parse error).
constexpr const char* kTiny = R"pb(
  max_steps: 200
  model { n_layer: 4 n_head: 4 n_embd: 64 vocab_size: 256 block_size: 32 }
  data { train_path: "train.h5" seq_len: 32 }
  batch { micro_batch_size: 8 }
)pb";

template <class Fn>
std::string config_error(Fn&& fn) {
  try {
    fn();
  } catch (const ConfigError& e) {
    return e.what();
  }
  ADD_FAILURE() << "expected ConfigError";
  return "";
}

#define EXPECT_CONTAINS(haystack, needle)                          \
  EXPECT_NE(std::string(haystack).find(needle), std::string::npos) \
      << "missing \"" << (needle) << "\" in:\n"                    \
      << (haystack)

std::string validate_error(const std::string& text, const std::vector<std::string>& sets = {},
                           bool json = false) {
  return config_error([&] {
    RunConfig cfg = json ? parse_json(text, "c.json") : parse_text(text, "c.pbtxt");
    apply_overrides(cfg, sets);
    validate(cfg, 1);
  });
}

// D1: block_size 2^61 with n_embd 8 crashed `loom plan` and the trainer (the products wrapped).
TEST(ConfigSchemaTest, OverflowingSizesAreConfigErrorsNamingTheField) {
  std::string m = validate_error(kTiny, {"model.block_size=2305843009213693952", "model.n_embd=8",
                                         "data.seq_len=2305843009213693952"});
  EXPECT_CONTAINS(m, "model.block_size=2305843009213693952: expected <= 1048576");
  EXPECT_CONTAINS(m, "data.seq_len=2305843009213693952");
  // Through the full resolve path (defaults run before validation and must not overflow either).
  std::string path = (std::filesystem::temp_directory_path() /
                      ("loom_schema_" + std::to_string(::getpid()) + ".pbtxt"))
                         .string();
  std::ofstream(path) << kTiny;
  m = config_error([&] {
    resolve(path, {"model.block_size=2305843009213693952", "model.n_embd=8"}, 1);
  });
  EXPECT_CONTAINS(m, "model.block_size=2305843009213693952");
  m = config_error([&] {
    resolve(path,
            {"parallel.tp=4611686018427387904", "parallel.pp=4",
             "batch.micro_batch_size=9223372036854775807"},
            1);
  });
  EXPECT_CONTAINS(m, "parallel.tp=4611686018427387904: expected <= 65536");
  EXPECT_CONTAINS(m, "batch.micro_batch_size=9223372036854775807");
  std::filesystem::remove(path);
}

TEST(ConfigSchemaTest, EverySizeFieldHasAnUpperBound) {
  for (const char* field : {"model.n_layer",
                            "model.n_head",
                            "model.n_embd",
                            "model.vocab_size",
                            "model.vocab_pad_multiple",
                            "model.block_size",
                            "parallel.tp",
                            "parallel.pp",
                            "parallel.dp",
                            "parallel.micro_batches",
                            "batch.micro_batch_size",
                            "batch.global_batch_size",
                            "max_steps",
                            "schedule.warmup_steps",
                            "schedule.decay_steps",
                            "eval.interval",
                            "eval.steps",
                            "checkpoint.interval",
                            "checkpoint.keep_last",
                            "logging.interval",
                            "loss_scale.growth_interval",
                            "ppo.kl_horizon",
                            "ppo.epochs"}) {
    std::string m = validate_error(kTiny, {std::string(field) + "=9223372036854775807"});
    EXPECT_CONTAINS(m, std::string(field) + "=9223372036854775807: expected <= ");
  }
  // The tokens of one micro-batch are bounded too (their product with n_embd * n_layer sizes the
  // activations).
  std::string m = validate_error(
      kTiny, {"model.block_size=1048576", "data.seq_len=1048576", "batch.micro_batch_size=64"});
  EXPECT_CONTAINS(m, "tokens per micro-batch");
  // Real large runs stay valid: GPT-2 1.5B shape, 1M-token context at micro-batch 16.
  RunConfig big = parse_text(kTiny);
  apply_overrides(big, {"model.preset=gpt2-1.5b", "model.n_layer=48", "model.n_head=25",
                        "model.n_embd=1600", "model.vocab_size=50257", "model.block_size=1048576",
                        "data.seq_len=1048576", "batch.micro_batch_size=16"});
  EXPECT_TRUE(find_problems(big, 1).empty());
}

// D6: unknown numeric enum values were accepted and ran the defaults.
TEST(ConfigSchemaTest, UnknownNumericEnumValuesAreRejectedInTextJsonAndSet) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"optimizer { type: 7 }", "optimizer.type=7: expected one of ADAMW, SGD"},
      {"device: 5", "device=5: expected one of CPU, CUDA"},
      {"dtype: 9", "dtype=9: expected one of F32, BF16, F16"},
      {"schedule { decay: 9 }", "schedule.decay=9: expected one of COSINE, LINEAR, CONSTANT"},
      {"parallel { schedule: 9 }", "parallel.schedule=9: expected one of ONE_F_ONE_B, GPIPE"},
      {"stage: 12", "stage=12: expected one of PRETRAIN, SFT, REWARD, PPO, DPO"},
      {"logging { progress: 4 }", "logging.progress=4: expected one of AUTO, ON, OFF"},
      {"optimizer { type: TYPE_UNSET }", "optimizer.type=TYPE_UNSET: expected one of ADAMW, SGD"},
  };
  for (const auto& [text, want] : cases) {
    SCOPED_TRACE(text);
    EXPECT_CONTAINS(validate_error(std::string(kTiny) + text), want);
  }
  std::string m = validate_error(R"({"maxSteps": 200, "data": {"trainPath": "t.h5"},
                                     "optimizer": {"type": 7}, "dtype": 9})",
                                 {}, /*json=*/true);
  EXPECT_CONTAINS(m, "optimizer.type=7");
  EXPECT_CONTAINS(m, "dtype=9");
  RunConfig cfg = parse_text(kTiny);
  m = config_error([&] { apply_override(cfg, "optimizer.type=7"); });
  EXPECT_CONTAINS(m, "one of ADAMW, SGD");
  m = config_error([&] { apply_override(cfg, "dtype=TYPE_UNSET"); });
  EXPECT_CONTAINS(m, "one of F32, BF16, F16");
}

// D7: optimizer.eps=inf was accepted and the model silently never learned.
TEST(ConfigSchemaTest, NonFiniteNumbersInAnyFloatFieldAreRejected) {
  for (const char* set :
       {"optimizer.eps=inf", "optimizer.lr=nan", "optimizer.weight_decay=inf",
        "optimizer.grad_clip=inf", "optimizer.momentum=-inf", "model.init_std=inf",
        "schedule.min_lr_ratio=nan", "loss_scale.init_scale=inf", "ppo.kl_coef=inf"}) {
    SCOPED_TRACE(set);
    std::string s = set;
    std::string field = s.substr(0, s.find('='));
    std::vector<std::string> sets = {s};
    if (field.rfind("ppo.", 0) == 0) sets.push_back("stage=PPO");
    EXPECT_CONTAINS(validate_error(kTiny, sets), field + "=");
    EXPECT_CONTAINS(validate_error(kTiny, sets), "expected a finite number");
  }
  EXPECT_CONTAINS(validate_error(std::string(kTiny) + "optimizer { eps: inf }"),
                  "optimizer.eps=inf: expected a finite number");
  EXPECT_CONTAINS(validate_error(R"({"maxSteps": 200, "data": {"trainPath": "t.h5"},
                                     "optimizer": {"beta1": "NaN"}})",
                                 {}, /*json=*/true),
                  "optimizer.beta1=nan: expected a finite number");
}

// D9: a directory given as a (pipeline stage) config was read as an empty config.
TEST(ConfigSchemaTest, ADirectoryAsAConfigIsAConfigErrorNamingIt) {
  std::string dir = (std::filesystem::temp_directory_path() /
                     ("loom_schema_dir_" + std::to_string(::getpid()) + ".pbtxt"))
                        .string();
  std::filesystem::create_directories(dir);
  std::string m = config_error([&] { load_file(dir); });
  EXPECT_CONTAINS(m, dir);
  EXPECT_CONTAINS(m, "is a directory");
  m = config_error([&] { read_config_file(dir, "pipeline"); });
  EXPECT_CONTAINS(m, "pipeline: \"" + dir + "\" is a directory");
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace loom::config
