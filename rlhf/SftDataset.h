// SFT data: JSONL of {"prompt","response"} or {"messages":[{"role","content"}...]} (the format is
// detected per line), tokenised with a ChatTemplate, then laid out in rows of T tokens:
//   ids[t] = token t, targets[t] = token t+1 if it is a response token of the same document,
//   else -100 (ignore_index), so prompt tokens, padding and document boundaries carry no loss.
// pad_rows puts one example per row; pack_rows puts consecutive examples into one row (next-fit,
// order kept) with position_ids restarting at 0 and document_ids (0, 1, ...; -1 for padding).
//
// NB (attention boundaries): the loss never crosses documents, but the current GPT (learned
// absolute positions, fused causal attention without a block-diagonal mask) does NOT use
// position_ids/document_ids: inside a packed row a later document attends to the earlier ones and
// sees row positions. The ids are produced so a varlen/masked attention can use them later; until
// then packing changes what the model conditions on, and pad_rows is the exact choice.
//
//   auto ds = load_sft_jsonl("train.jsonl", tok, {.seq_len = 256});
//   auto rows = pack_rows(ds.examples, 256, *tok.eot_id());
//   SftBatch b = collate(rows, 0, 8);   // model.loss(b.ids, b.targets)
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "core/tensor/Tensor.h"
#include "rlhf/ChatTemplate.h"

namespace loom::rlhf {

struct SftDataset {
  std::vector<TokenizedExample> examples;
  LoadStats stats;
};

// Reads every non-blank line. Bad lines give DataError "sft: <file>:<line>: ..." unless
// opt.skip_bad; over-long examples follow opt.overlong.
SftDataset load_sft_jsonl(const std::string& path, const data::Tokenizer& tok,
                          const DatasetOptions& opt);

// Applies the over-long policy to one example in place. Returns false if the example must be
// dropped (Skip). Throws ValueError for Error, or for TruncateResponse when the prompt leaves no
// room for a response token. Sets *truncated when it cut tokens.
bool fit_example(TokenizedExample& ex, int64_t seq_len, OverlongPolicy policy, bool* truncated);

struct SftRow {
  std::vector<int64_t> ids;           // (T)
  std::vector<int64_t> targets;       // (T) next token or -100
  std::vector<int64_t> position_ids;  // (T) restart at 0 per document
  std::vector<int64_t> document_ids;  // (T) 0,1,... per document in the row, -1 on padding
};

// One example per row, padded with pad_id. Every example must have <= seq_len tokens.
std::vector<SftRow> pad_rows(const std::vector<TokenizedExample>& examples, int64_t seq_len,
                             int32_t pad_id);
// Several consecutive examples per row (a new row starts when the next one does not fit).
std::vector<SftRow> pack_rows(const std::vector<TokenizedExample>& examples, int64_t seq_len,
                              int32_t pad_id);

struct SftBatch {
  Tensor ids;           // (B,T) I64
  Tensor targets;       // (B,T) I64, -100 = ignore
  Tensor position_ids;  // (B,T) I64
  Tensor document_ids;  // (B,T) I64
};
// Rows [begin, begin+count) as tensors on `device`.
SftBatch collate(const std::vector<SftRow>& rows, size_t begin, size_t count,
                 Device device = Device::cpu());

}  // namespace loom::rlhf
