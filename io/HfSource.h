// "hf:" model sources: a Hugging Face model directory named by path or, as "ORG/NAME", found in
// the local Hugging Face cache (never downloaded), and the run's model section taken from its
// config.json (or from a Loom checkpoint's recorded config), so fine-tuning needs no model { }
// block.
//   std::string dir = resolve_hf_dir("meta-llama/Llama-3.2-1B");  // .../snapshots/<rev>
//   RunConfig cfg = config::resolve(path, sets, world, io::model_from_init);
#pragma once

#include <string>

#include "config/Config.pb.h"

namespace loom::io {

// `spec` when it is an existing directory; else, for "ORG/NAME", the snapshot
// models--ORG--NAME/snapshots/<rev>/ under $HF_HUB_CACHE, else $HF_HOME/hub, else
// $HOME/.cache/huggingface/hub, with <rev> the commit refs/main names (else the only snapshot).
// CheckpointError naming the places searched when there is none.
std::string resolve_hf_dir(const std::string& spec);

// When cfg.init_from() is "hf:SPEC": sets the model section from SPEC's config.json (GPT-2,
// Llama, Qwen2 or Mistral); when it is a Loom checkpoint directory: from the run config its
// meta.json records. Fields the section already sets, directly or through a preset, must agree
// (ConfigError listing each "model.F=X but DIR has Y"); a rotary-embedding model may keep a
// smaller block_size. dropout, init_std and vocab_pad_multiple stay the run's. Otherwise (no
// init_from, an "@stage" reference, a checkpoint without a recorded config) a no-op.
void model_from_init(config::RunConfig& cfg);

}  // namespace loom::io
