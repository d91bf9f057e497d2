// SFT JSONL loading, over-long handling, and padded / packed row layout (see SftDataset.h).
#include "rlhf/SftDataset.h"

#include "core/util/Check.h"
#include "rlhf/JsonlReader.h"

namespace loom::rlhf {

namespace {

using detail::LineError;
using nlohmann::json;

std::vector<ChatMessage> parse_messages(const json& j) {
  const json& msgs = j.at("messages");
  if (!msgs.is_array() || msgs.empty()) {
    throw LineError{
        "expected \"messages\" to be a non-empty array, got " + std::string(msgs.type_name()),
        "bad_type"};
  }
  std::vector<ChatMessage> out;
  for (const json& m : msgs) {
    if (!m.is_object()) {
      throw LineError{"expected each message to be an object, got " + std::string(m.type_name()),
                      "bad_type"};
    }
    out.push_back({detail::get_string(m, "role"), detail::get_string(m, "content")});
    if (out.back().role == "assistant" && out.back().content.empty()) {
      throw LineError{"expected a non-empty assistant message, got \"\"", "empty_response"};
    }
  }
  return out;
}

// The conversation of one line: "messages", or "prompt" + "response".
std::vector<ChatMessage> parse_sft_line(const json& j) {
  if (j.contains("messages")) return parse_messages(j);
  std::string prompt = detail::get_string(j, "prompt");
  std::string response = detail::get_string(j, "response");
  if (response.empty())
    throw LineError{"expected a non-empty \"response\", got \"\"", "empty_response"};
  return {{"user", std::move(prompt)}, {"assistant", std::move(response)}};
}

void append_document(SftRow& row, const TokenizedExample& ex, int64_t doc) {
  const size_t n = ex.tokens.size();
  for (size_t i = 0; i < n; ++i) {
    row.ids.push_back(ex.tokens[i]);
    row.targets.push_back(i + 1 < n && ex.is_response[i + 1] ? ex.tokens[i + 1] : -100);
    row.position_ids.push_back(int64_t(i));
    row.document_ids.push_back(doc);
  }
}

void pad_row(SftRow& row, int64_t seq_len, int32_t pad_id) {
  while (int64_t(row.ids.size()) < seq_len) {
    row.ids.push_back(pad_id);
    row.targets.push_back(-100);
    row.position_ids.push_back(0);
    row.document_ids.push_back(-1);
  }
}

void check_fits(const TokenizedExample& ex, int64_t seq_len, const char* op) {
  LOOM_CHECK(!ex.tokens.empty() && int64_t(ex.tokens.size()) <= seq_len, op,
             ": expected examples of 1..", seq_len, " tokens, got ", ex.tokens.size(),
             "; hint: load with the same seq_len so the over-long policy applies");
  LOOM_INTERNAL_ASSERT(ex.tokens.size() == ex.is_response.size());
}

}  // namespace

bool fit_example(TokenizedExample& ex, int64_t seq_len, OverlongPolicy policy, bool* truncated) {
  LOOM_CHECK(seq_len >= 2, "fit_example: expected seq_len >= 2, got ", seq_len);
  if (truncated) *truncated = false;
  const int64_t n = int64_t(ex.tokens.size());
  if (n <= seq_len) return true;
  if (policy == OverlongPolicy::Skip) return false;
  LOOM_CHECK(policy != OverlongPolicy::Error, "expected an example of at most seq_len=", seq_len,
             " tokens, got ", n, " tokens");
  const int64_t p = ex.prompt_length();
  LOOM_CHECK(p < seq_len, "expected a prompt shorter than the context (seq_len=", seq_len,
             "), got a prompt of ", p, " tokens");
  ex.tokens.resize(size_t(seq_len));
  ex.is_response.resize(size_t(seq_len));
  if (truncated) *truncated = true;
  return true;
}

SftDataset load_sft_jsonl(const std::string& path, const data::Tokenizer& tok,
                          const DatasetOptions& opt) {
  if (!opt.model_template) {
    opt.chat_template.validate();
    require_eot(tok);
  }
  SftDataset ds;
  auto on_line = [&](const json& j) {
    std::vector<ChatMessage> msgs = parse_sft_line(j);
    TokenizedExample ex;
    try {
      ex = opt.model_template ? encode_chat(tok, *opt.model_template, msgs)
                              : encode_chat(tok, opt.chat_template, msgs);
    } catch (const ValueError& e) {
      throw LineError{e.what(), "bad_chat"};
    } catch (const DataError& e) {  // the model's template rejects the chat (raise_exception)
      throw LineError{e.what(), "bad_chat"};
    }
    bool truncated = false, keep = false;
    try {
      keep = fit_example(ex, opt.seq_len, opt.overlong, &truncated);
    } catch (const ValueError& e) {
      throw LineError{e.what(),
                      opt.overlong == OverlongPolicy::Error ? "too_long" : "prompt_too_long"};
    }
    if (!keep) {
      ++ds.stats.skipped_long;
      return;
    }
    ds.stats.truncated += truncated ? 1 : 0;
    ds.examples.push_back(std::move(ex));
    ++ds.stats.loaded;
  };
  auto on_skip = [&](const std::string& reason) { ++ds.stats.skip_reasons[reason]; };
  ds.stats.skipped_bad = detail::read_jsonl("sft", path, opt.skip_bad, on_line, on_skip);
  return ds;
}

std::vector<SftRow> pad_rows(const std::vector<TokenizedExample>& examples, int64_t seq_len,
                             int32_t pad_id) {
  std::vector<SftRow> rows;
  rows.reserve(examples.size());
  for (const TokenizedExample& ex : examples) {
    check_fits(ex, seq_len, "pad_rows");
    SftRow row;
    append_document(row, ex, 0);
    pad_row(row, seq_len, pad_id);
    rows.push_back(std::move(row));
  }
  return rows;
}

std::vector<SftRow> pack_rows(const std::vector<TokenizedExample>& examples, int64_t seq_len,
                              int32_t pad_id) {
  std::vector<SftRow> rows;
  SftRow row;
  int64_t docs = 0;
  for (const TokenizedExample& ex : examples) {
    check_fits(ex, seq_len, "pack_rows");
    if (int64_t(row.ids.size() + ex.tokens.size()) > seq_len) {
      pad_row(row, seq_len, pad_id);
      rows.push_back(std::move(row));
      row = SftRow();
      docs = 0;
    }
    append_document(row, ex, docs++);
  }
  if (!row.ids.empty()) {
    pad_row(row, seq_len, pad_id);
    rows.push_back(std::move(row));
  }
  return rows;
}

SftBatch collate(const std::vector<SftRow>& rows, size_t begin, size_t count, Device device) {
  LOOM_CHECK(count > 0 && begin + count <= rows.size(), "collate: expected rows [", begin, ", ",
             begin + count, ") within 0..", rows.size());
  const int64_t T = int64_t(rows[begin].ids.size());
  std::vector<int64_t> ids, targets, pos, docs;
  for (size_t r = begin; r < begin + count; ++r) {
    LOOM_CHECK(int64_t(rows[r].ids.size()) == T, "collate: expected rows of ", T, " tokens, got ",
               rows[r].ids.size());
    ids.insert(ids.end(), rows[r].ids.begin(), rows[r].ids.end());
    targets.insert(targets.end(), rows[r].targets.begin(), rows[r].targets.end());
    pos.insert(pos.end(), rows[r].position_ids.begin(), rows[r].position_ids.end());
    docs.insert(docs.end(), rows[r].document_ids.begin(), rows[r].document_ids.end());
  }
  const Shape s{int64_t(count), T};
  return {Tensor::from_vector(ids, s, device), Tensor::from_vector(targets, s, device),
          Tensor::from_vector(pos, s, device), Tensor::from_vector(docs, s, device)};
}

}  // namespace loom::rlhf
