// Fuzz harness: the JSONL readers of the RLHF datasets (rlhf/JsonlReader through the SFT and
// preference loaders: prompt/response, chat messages, chosen/rejected records) with a byte-level
// tokenizer. Only DataError and ValueError may reject an input. An input mentioning "chosen" goes
// to the preference loader, any other to the SFT loader; the input's length picks skip_bad, the
// over-long policy and the sequence length, so mutations explore the options too.
#include "data/ByteLevel.h"
#include "data/Tokenizer.h"
#include "rlhf/PreferenceDataset.h"
#include "rlhf/SftDataset.h"
#include "tests/fuzz/FuzzUtil.h"

using namespace loom;

namespace {
// NB: built per input, so no state (the tokenizer's word cache) carries from one input to the next
// and every run depends on its input only.
data::Tokenizer byte_tokenizer() {
  std::vector<std::string> tokens;
  for (int i = 0; i < 256; ++i) tokens.push_back(data::bytes_to_token(std::string(1, char(i))));
  tokens.push_back("<|endoftext|>");
  return data::Tokenizer::from_vocab(tokens, {}, {"<|endoftext|>"});
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  const std::string path = fuzz::scratch_file("data.jsonl", text);
  const bool preference = text.find("\"chosen\"") != std::string_view::npos;
  const size_t mode = size;
  rlhf::DatasetOptions opt;
  opt.skip_bad = mode & 1;
  const rlhf::OverlongPolicy policies[] = {rlhf::OverlongPolicy::TruncateResponse,
                                           rlhf::OverlongPolicy::Skip, rlhf::OverlongPolicy::Error,
                                           rlhf::OverlongPolicy::TruncateResponse};
  opt.overlong = policies[(mode >> 1) & 3];
  opt.seq_len = int64_t(4 + 8 * ((mode >> 3) & 15));
  const data::Tokenizer tok = byte_tokenizer();
  fuzz::accept<DataError, ValueError>([&] {
    if (preference) {
      rlhf::PreferenceDataset ds = rlhf::load_preference_jsonl(path, tok, opt);
      if (!ds.examples.empty())
        rlhf::collate_preferences(ds.examples, 0, ds.examples.size(), opt.seq_len, 256);
    } else {
      rlhf::SftDataset ds = rlhf::load_sft_jsonl(path, tok, opt);
      rlhf::pack_rows(ds.examples, opt.seq_len, 256);
    }
  });
  return 0;
}
