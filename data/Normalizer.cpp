// Normalizer steps (see Normalizer.h).
#include "data/Normalizer.h"

#include "data/Unicode.h"

namespace loom::data {

std::string Normalizer::apply(std::string_view text, bool prepend) const {
  std::string s(text);
  for (const Step& step : steps_) {
    switch (step.kind) {
      case Kind::Nfc:
        s = nfc(s);
        break;
      case Kind::Prepend:
        if (prepend && !s.empty()) s.insert(0, step.text);
        break;
      case Kind::Replace: {
        if (s.find(step.text) == std::string::npos) break;
        std::string out;
        out.reserve(s.size() + s.size() / 4);
        size_t pos = 0;
        for (size_t at; (at = s.find(step.text, pos)) != std::string::npos;
             pos = at + step.text.size()) {
          out.append(s, pos, at - pos);
          out += step.content;
        }
        out.append(s, pos, std::string::npos);
        s = std::move(out);
        break;
      }
    }
  }
  return s;
}

}  // namespace loom::data
