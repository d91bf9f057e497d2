// `loom eval SOURCE --data FILE.h5`: validation loss and perplexity of a model on a token
// dataset, as one JSON line {"loss":..,"ppl":..,"tokens":..,"windows":..}. SOURCE is a Loom
// checkpoint (a step dir or a root: its newest checkpoint) or "hf:DIR" (a Hugging Face GPT-2
// directory). Windows are the data loader's, in order (data/DataLoader.h: window w is tokens
// [w*T, w*T+T+1)), B per batch, the last batch possibly short; --max-batches N stops after N
// batches. The loss is the mean over every target token of the windows actually evaluated (each
// batch weighted by its windows), with the model in eval mode (no dropout).
//   loom eval runs/tiny/checkpoints --data data/tiny/val.h5 --seq-len 32 --batch 8
#include <cmath>
#include <cstdio>
#include <limits>
#include <memory>

#include <nlohmann/json.hpp>

#include "core/autograd/GradMode.h"
#include "core/util/Check.h"
#include "data/DataLoader.h"
#include "data/TokenDataset.h"
#include "launch/cli/Cli.h"
#include "launch/cli/Commands.h"
#include "launch/cli/ModelSource.h"

namespace loom::cli {

namespace {

constexpr int64_t kMaxInt64 = std::numeric_limits<int64_t>::max();

int run_eval(const Verb& a) {
  LOOM_CHECK_T(ConfigError, a.positional().size() == 1, "loom eval: expected one CHECKPOINT ",
               "directory or hf:DIR, got ", a.positional().size(), " positional arguments; see ",
               "`loom eval --help`");
  const std::string data_path = a.require("data");
  const int64_t batch = a.get_int("batch", 8, 1, 1 << 20);
  const int64_t max_batches = a.get_int("max-batches", 0, 0, kMaxInt64);
  auto dataset = std::make_shared<data::TokenDataset>(data_path);  // its errors first: cheap
  LoadedModel m = load_model(a.positional()[0], a.get("device", ""), "loom eval");
  const models::GPTConfig& gc = m.model->config();
  const int64_t seq_len = a.get_int("seq-len", gc.block_size, 1, gc.block_size);

  data::DataLoader loader(
      dataset, {.batch_size = batch, .seq_len = seq_len, .shuffle = false, .drop_last = false});
  try {
    loader.check_vocab(gc.logits_size());
  } catch (const ValueError& e) {
    throw DataError(std::string("loom eval: ") + e.what());
  }
  int64_t n_batches = loader.batches_per_epoch();
  if (max_batches > 0) n_batches = std::min(n_batches, max_batches);
  LOOM_CHECK_T(DataError, n_batches > 0, "loom eval: ", data_path, " has no full window of ",
               "--seq-len + 1 = ", seq_len + 1, " tokens");

  const Device device = m.device;
  NoGradGuard no_grad;
  double loss_sum = 0.0;  // sum over batches of (mean loss of the batch) * (its windows)
  int64_t windows = 0;
  for (int64_t i = 0; i < n_batches; ++i) {
    data::Batch b = loader.next();
    const int64_t rows = b.inputs.size(0);
    loss_sum += m.model->loss(b.inputs.to(device), b.targets.to(device)).item() * double(rows);
    windows += rows;
  }
  const double loss = loss_sum / double(windows);
  nlohmann::json j;
  j["loss"] = loss;
  j["ppl"] = std::exp(loss);
  j["tokens"] = windows * seq_len;
  j["windows"] = windows;
  std::printf("%s\n", j.dump().c_str());
  return 0;
}

}  // namespace

void add_eval(Cli& cli) {
  cli.verb(cli.root(), "eval",
           "validation loss and perplexity of a checkpoint on a dataset "
           "(one JSON line)",
           run_eval)
      .positionals("SOURCE",
                   "a Loom checkpoint (step dir, or a root: its newest checkpoint) or "
                   "hf:DIR (a Hugging Face GPT-2 directory)")
      .value("data", "FILE.h5", "token dataset (made by `loom preprocess`)")
      .value("seq-len", "T", "tokens per window (default: the model's block_size)")
      .value("batch", "B", "windows per forward pass (default 8)")
      .value("max-batches", "N", "evaluate at most N batches (default 0 = all windows)")
      .value("device", "DEV", "cpu or cuda (default: the checkpoint config's device; hf: cpu)");
}

}  // namespace loom::cli
