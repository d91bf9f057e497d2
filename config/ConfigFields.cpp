// Reflection helpers for config error messages (see ConfigFields.h).
#include "config/ConfigFields.h"

#include <algorithm>
#include <sstream>
#include <vector>

namespace loom::config {

namespace pb = google::protobuf;

size_t edit_distance(std::string_view a, std::string_view b) {
  std::vector<size_t> prev(b.size() + 1), cur(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) prev[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    cur[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      size_t sub = prev[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1);
      cur[j] = std::min({prev[j] + 1, cur[j - 1] + 1, sub});
    }
    std::swap(prev, cur);
  }
  return prev[b.size()];
}

std::string field_names(const pb::Descriptor& desc) {
  std::string out;
  for (int i = 0; i < desc.field_count(); ++i) {
    if (i) out += ", ";
    out += desc.field(i)->name();
  }
  return out;
}

std::string closest_field(const pb::Descriptor& desc, std::string_view name) {
  size_t limit = std::max<size_t>(2, name.size() / 3);
  size_t best = limit + 1;
  std::string best_name;
  for (int i = 0; i < desc.field_count(); ++i) {
    size_t d = edit_distance(name, desc.field(i)->name());
    if (d < best) {
      best = d;
      best_name = desc.field(i)->name();
    }
  }
  return best_name;
}

std::string enum_names(const pb::EnumDescriptor& desc) {
  std::string out;
  for (int i = 0; i < desc.value_count(); ++i) {
    if (desc.value(i)->number() == 0) continue;  // the *_UNSET placeholder
    if (!out.empty()) out += ", ";
    out += desc.value(i)->name();
  }
  return out;
}

std::string field_value(const pb::Message& msg, const pb::FieldDescriptor& f) {
  const pb::Reflection& r = *msg.GetReflection();
  if (f.has_presence() && !r.HasField(msg, &f)) return "unset";
  std::ostringstream os;
  switch (f.cpp_type()) {
    case pb::FieldDescriptor::CPPTYPE_INT32:
      os << r.GetInt32(msg, &f);
      break;
    case pb::FieldDescriptor::CPPTYPE_INT64:
      os << r.GetInt64(msg, &f);
      break;
    case pb::FieldDescriptor::CPPTYPE_UINT32:
      os << r.GetUInt32(msg, &f);
      break;
    case pb::FieldDescriptor::CPPTYPE_UINT64:
      os << r.GetUInt64(msg, &f);
      break;
    case pb::FieldDescriptor::CPPTYPE_FLOAT:
      os << r.GetFloat(msg, &f);
      break;
    case pb::FieldDescriptor::CPPTYPE_DOUBLE:
      os << r.GetDouble(msg, &f);
      break;
    case pb::FieldDescriptor::CPPTYPE_BOOL:
      os << (r.GetBool(msg, &f) ? "true" : "false");
      break;
    case pb::FieldDescriptor::CPPTYPE_ENUM:
      os << r.GetEnum(msg, &f)->name();
      break;
    case pb::FieldDescriptor::CPPTYPE_STRING:
      os << '"' << r.GetString(msg, &f) << '"';
      break;
    case pb::FieldDescriptor::CPPTYPE_MESSAGE:
      os << "{...}";
      break;
  }
  return os.str();
}

}  // namespace loom::config
