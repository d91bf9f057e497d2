// The list of `loom` verbs (see Commands.h).
#include "launch/cli/Commands.h"

namespace loom::cli {

void add_all_commands(Cli& cli) {
  add_train(cli);
  add_pipeline(cli);
  add_launch(cli);
  add_preprocess(cli);
  add_tokenizer(cli);
  add_generate(cli);
  add_eval(cli);
  add_convert(cli);
  add_bench(cli);
  add_plan(cli);
}

}  // namespace loom::cli
