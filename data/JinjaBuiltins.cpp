// Jinja filters, tests, string/dict methods and Python conversions (see Jinja.h). tojson is
// transformers' override: json.dumps(x, ensure_ascii=False, indent=indent).
#include <charconv>
#include <cmath>
#include <cstdio>
#include <optional>

#include "core/util/Check.h"
#include "data/Jinja.h"
#include "data/Unicode.h"

namespace loom::data::jinja {
namespace {

using Kind = Value::Kind;

// Python repr() of a float: shortest round-trip digits, scientific below 1e-4 and from 1e16.
std::string float_repr(double f) {
  if (std::isnan(f)) return "nan";
  if (std::isinf(f)) return f > 0 ? "inf" : "-inf";
  char buf[64];
  auto sci = std::to_chars(buf, buf + sizeof(buf), f, std::chars_format::scientific);
  std::string s(buf, sci.ptr);
  const int exp = std::stoi(s.substr(s.find('e') + 1));
  if (exp < -4 || exp >= 16) {
    const size_t e = s.find('e');
    std::string mant = s.substr(0, e), ex = s.substr(e + 1);
    const char sign = ex[0] == '-' ? '-' : '+';
    if (ex[0] == '-' || ex[0] == '+') ex = ex.substr(1);
    while (ex.size() > 1 && ex[0] == '0') ex = ex.substr(1);
    if (ex.size() < 2) ex = "0" + ex;
    return mant + "e" + sign + ex;
  }
  auto fixed = std::to_chars(buf, buf + sizeof(buf), f, std::chars_format::fixed);
  std::string out(buf, fixed.ptr);
  if (out.find('.') == std::string::npos) out += ".0";
  return out;
}

// Python repr() of a str, for printing lists and dicts.
std::string str_repr(const std::string& s) {
  const bool dq = s.find('\'') != std::string::npos && s.find('"') == std::string::npos;
  const char q = dq ? '"' : '\'';
  std::string out(1, q);
  for (unsigned char c : s) {
    if (c == '\\' || c == q) {
      out += '\\';
      out += char(c);
    } else if (c == '\n') {
      out += "\\n";
    } else if (c == '\r') {
      out += "\\r";
    } else if (c == '\t') {
      out += "\\t";
    } else if (c < 0x20 || c == 0x7F) {
      char buf[8];
      std::snprintf(buf, sizeof(buf), "\\x%02x", c);
      out += buf;
    } else {
      out += char(c);
    }
  }
  return out + q;
}

std::string repr(const Value& v) {
  if (v.is(Kind::String)) return str_repr(v.s);
  if (v.is(Kind::List)) {
    std::string out = "[";
    for (size_t k = 0; k < v.list->size(); ++k) out += (k ? ", " : "") + repr((*v.list)[k]);
    return out + "]";
  }
  if (v.is(Kind::Dict)) {
    std::string out = "{";
    for (size_t k = 0; k < v.dict->items.size(); ++k)
      out +=
          (k ? ", " : "") + str_repr(v.dict->items[k].first) + ": " + repr(v.dict->items[k].second);
    return out + "}";
  }
  return to_output(v);
}

void json_string(const std::string& s, std::string& out) {
  out += '"';
  for (unsigned char c : s) {
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      case '\b':
        out += "\\b";
        break;
      case '\f':
        out += "\\f";
        break;
      default:
        if (c < 0x20) {
          char buf[8];
          std::snprintf(buf, sizeof(buf), "\\u%04x", c);
          out += buf;
        } else {
          out += char(c);
        }
    }
  }
  out += '"';
}

// json.dumps(v, ensure_ascii=False, indent=indent); indent < 0 means None.
void to_json(const Value& v, int indent, int depth, std::string& out, const Fail& fail) {
  auto newline = [&](int d) {
    if (indent < 0) return;
    out += '\n';
    out.append(size_t(indent * d), ' ');
  };
  const char* sep = indent < 0 ? ", " : ",";
  switch (v.kind) {
    case Kind::None:
      out += "null";
      return;
    case Kind::Bool:
      out += v.b ? "true" : "false";
      return;
    case Kind::Int:
      out += std::to_string(v.i);
      return;
    case Kind::Float:
      out += std::isnan(v.f)   ? "NaN"
             : std::isinf(v.f) ? (v.f > 0 ? "Infinity" : "-Infinity")
                               : float_repr(v.f);
      return;
    case Kind::String:
      json_string(v.s, out);
      return;
    case Kind::List:
      if (v.list->empty()) {
        out += "[]";
        return;
      }
      out += '[';
      for (size_t k = 0; k < v.list->size(); ++k) {
        if (k) out += sep;
        newline(depth + 1);
        to_json((*v.list)[k], indent, depth + 1, out, fail);
      }
      newline(depth);
      out += ']';
      return;
    case Kind::Dict:
    case Kind::Namespace:
      if (v.dict->items.empty()) {
        out += "{}";
        return;
      }
      out += '{';
      for (size_t k = 0; k < v.dict->items.size(); ++k) {
        if (k) out += sep;
        newline(depth + 1);
        json_string(v.dict->items[k].first, out);
        out += ": ";
        to_json(v.dict->items[k].second, indent, depth + 1, out, fail);
      }
      newline(depth);
      out += '}';
      return;
    case Kind::Undefined:
      fail("tojson: '" + v.s + "' is undefined");
  }
}

// Python str.strip / lstrip / rstrip: whitespace by default, else any character of `chars`.
std::string strip(const std::string& s, const Value* chars, bool left, bool right) {
  auto drop = [&](size_t pos, int* len) {
    int32_t cp = decode_utf8(s, pos, len);
    if (!chars || chars->is(Kind::None)) return is_python_space(cp);
    return chars->s.find(s.substr(pos, size_t(*len))) != std::string::npos;
  };
  size_t begin = 0, end = s.size();
  int len = 0;
  while (left && begin < end && drop(begin, &len)) begin += size_t(len);
  while (right && end > begin) {
    size_t prev = previous_utf8_start(s, end);
    if (!drop(prev, &len)) break;
    end = prev;
  }
  return s.substr(begin, end - begin);
}

List chars_of(const std::string& s) {
  List out;
  for (size_t i = 0; i < s.size();) {
    int len = 0;
    decode_utf8(s, i, &len);
    out.push_back(Value::string(s.substr(i, size_t(len))));
    i += size_t(len);
  }
  return out;
}

std::string replace_all(const std::string& s, const std::string& a, const std::string& b,
                        int64_t count) {
  if (a.empty()) return s;
  std::string out;
  size_t pos = 0;
  for (size_t at; count != 0 && (at = s.find(a, pos)) != std::string::npos; --count) {
    out.append(s, pos, at - pos);
    out += b;
    pos = at + a.size();
  }
  return out + s.substr(pos);
}

void expect_args(const std::vector<Value>& args, size_t lo, size_t hi, const std::string& what,
                 const Fail& fail) {
  if (args.size() < lo || args.size() > hi)
    fail(what + " expected " + std::to_string(lo) + (hi > lo ? " to " + std::to_string(hi) : "") +
         " arguments, got " + std::to_string(args.size()));
}

const Value& expect_string(const Value& v, const std::string& what, const Fail& fail) {
  if (!v.is(Kind::String)) fail(what + " expected a string, got " + type_name(v));
  return v;
}

}  // namespace

std::string to_output(const Value& v) {
  switch (v.kind) {
    case Kind::Undefined:
      return "";
    case Kind::None:
      return "None";
    case Kind::Bool:
      return v.b ? "True" : "False";
    case Kind::Int:
      return std::to_string(v.i);
    case Kind::Float:
      return float_repr(v.f);
    case Kind::String:
      return v.s;
    case Kind::Namespace:
      return "<Namespace>";
    default:
      return repr(v);
  }
}

bool truthy(const Value& v) {
  switch (v.kind) {
    case Kind::Undefined:
    case Kind::None:
      return false;
    case Kind::Bool:
      return v.b;
    case Kind::Int:
      return v.i != 0;
    case Kind::Float:
      return v.f != 0;
    case Kind::String:
      return !v.s.empty();
    case Kind::List:
      return !v.list->empty();
    case Kind::Dict:
      return !v.dict->items.empty();
    case Kind::Namespace:
      return true;
  }
  return false;
}

bool equal(const Value& a, const Value& b) {
  const auto num = [](const Value& v) {
    return v.is(Kind::Int) || v.is(Kind::Float) || v.is(Kind::Bool);
  };
  const auto dbl = [](const Value& v) {
    return v.is(Kind::Float) ? v.f : double(v.is(Kind::Bool) ? int64_t(v.b) : v.i);
  };
  if (num(a) && num(b)) return dbl(a) == dbl(b);
  if (a.kind != b.kind) return false;
  switch (a.kind) {
    case Kind::String:
      return a.s == b.s;
    case Kind::List:
      if (a.list->size() != b.list->size()) return false;
      for (size_t k = 0; k < a.list->size(); ++k)
        if (!equal((*a.list)[k], (*b.list)[k])) return false;
      return true;
    case Kind::Dict:
      if (a.dict->items.size() != b.dict->items.size()) return false;
      for (const auto& [k, v] : a.dict->items) {
        const Value* w = b.dict->find(k);
        if (!w || !equal(v, *w)) return false;
      }
      return true;
    case Kind::Namespace:
      return a.dict == b.dict;
    default:
      return true;  // Undefined == Undefined, None == None
  }
}

std::string type_name(const Value& v) {
  switch (v.kind) {
    case Kind::Undefined:
      return "Undefined";
    case Kind::None:
      return "NoneType";
    case Kind::Bool:
      return "bool";
    case Kind::Int:
      return "int";
    case Kind::Float:
      return "float";
    case Kind::String:
      return "str";
    case Kind::List:
      return "list";
    case Kind::Dict:
      return "dict";
    case Kind::Namespace:
      return "Namespace";
  }
  return "?";
}

namespace {

// Filters over sequences: list, first, last, join, items, length / count.
std::optional<Value> sequence_filter(const std::string& name, const Value& v,
                                     const std::vector<Value>& args, const Fail& fail) {
  if (name == "list") {
    if (v.is(Kind::String)) return Value::list_of(chars_of(v.s));
    if (v.is(Kind::List)) return v;
    if (!v.is(Kind::Dict)) fail("'" + type_name(v) + "' object is not iterable");
    List keys;
    for (const auto& kv : v.dict->items) keys.push_back(Value::string(kv.first));
    return Value::list_of(std::move(keys));
  }
  if (name == "first" || name == "last") {
    Value seq = *sequence_filter("list", v, {}, fail);
    if (seq.list->empty()) return Value::undefined();
    return name == "first" ? seq.list->front() : seq.list->back();
  }
  if (name == "join") {
    expect_args(args, 0, 1, "filter 'join'", fail);
    Value seq = *sequence_filter("list", v, {}, fail);
    const std::string sep = args.empty() ? "" : to_output(args[0]);
    std::string out;
    for (size_t k = 0; k < seq.list->size(); ++k) out += (k ? sep : "") + to_output((*seq.list)[k]);
    return Value::string(std::move(out));
  }
  if (name == "items") {
    if (!v.is(Kind::Dict)) fail("filter 'items' expected a dict, got " + type_name(v));
    List out;
    for (const auto& [k, x] : v.dict->items) out.push_back(Value::list_of({Value::string(k), x}));
    return Value::list_of(std::move(out));
  }
  if (name == "length" || name == "count") {
    if (v.is(Kind::Undefined)) return Value::integer(0);
    if (v.is(Kind::String)) return Value::integer(int64_t(chars_of(v.s).size()));
    if (v.is(Kind::List)) return Value::integer(int64_t(v.list->size()));
    if (v.is(Kind::Dict)) return Value::integer(int64_t(v.dict->items.size()));
    fail("object of type '" + type_name(v) + "' has no len()");
  }
  return std::nullopt;
}

// Filters over str(v): trim, upper, lower, replace, string.
std::optional<Value> string_filter(const std::string& name, const Value& v,
                                   const std::vector<Value>& args, const Fail& fail) {
  const std::string what = "filter '" + name + "'";
  if (name == "string") return Value::string(to_output(v));
  if (name == "trim") {
    expect_args(args, 0, 1, what, fail);
    return Value::string(strip(to_output(v), args.empty() ? nullptr : &args[0], true, true));
  }
  if (name == "upper") return Value::string(to_upper(to_output(v)));
  if (name == "lower") return Value::string(to_lower(to_output(v)));
  if (name == "replace") {
    expect_args(args, 2, 3, what, fail);
    return Value::string(replace_all(to_output(v), to_output(args[0]), to_output(args[1]),
                                     args.size() > 2 ? args[2].i : -1));
  }
  return std::nullopt;
}

}  // namespace

Value apply_filter(const std::string& name, const Value& v, const std::vector<Value>& args,
                   const std::vector<std::string>& keywords, const Fail& fail) {
  const std::string what = "filter '" + name + "'";
  if (name != "tojson" && name != "default" && name != "d")
    for (const std::string& kw : keywords)
      if (!kw.empty()) fail(what + " takes no keyword arguments here");
  if (name == "default" || name == "d") {
    expect_args(args, 0, 2, what, fail);
    const bool boolean = args.size() > 1 && truthy(args[1]);
    const bool use_default = v.is(Kind::Undefined) || (boolean && !truthy(v));
    return use_default ? (args.empty() ? Value::string("") : args[0]) : v;
  }
  if (name == "tojson") {
    int indent = -1;
    for (size_t k = 0; k < args.size(); ++k) {
      if (!(keywords[k] == "indent" || (keywords[k].empty() && k == 0)))
        fail("filter 'tojson' supports only indent, got " + keywords[k]);
      if (!args[k].is(Kind::None)) indent = int(args[k].i);
    }
    std::string out;
    to_json(v, indent, 0, out, fail);
    return Value::string(std::move(out));
  }
  if (auto r = sequence_filter(name, v, args, fail)) return *r;
  if (auto r = string_filter(name, v, args, fail)) return *r;
  fail("unsupported filter '" + name +
       "'; supported: trim, length, count, upper, lower, tojson, default, d, first, last, join, "
       "string, list, items, replace");
}

bool apply_test(const std::string& name, const Value& v, const std::vector<Value>& args,
                const Fail& fail) {
  auto no_args = [&] { expect_args(args, 0, 0, "test '" + name + "'", fail); };
  if (name == "defined") return no_args(), !v.is(Kind::Undefined);
  if (name == "undefined") return no_args(), v.is(Kind::Undefined);
  if (name == "none") return no_args(), v.is(Kind::None);
  if (name == "string") return no_args(), v.is(Kind::String);
  if (name == "number") return no_args(), v.is(Kind::Int) || v.is(Kind::Float);
  if (name == "integer") return no_args(), v.is(Kind::Int);
  if (name == "float") return no_args(), v.is(Kind::Float);
  if (name == "boolean") return no_args(), v.is(Kind::Bool);
  if (name == "true") return no_args(), v.is(Kind::Bool) && v.b;
  if (name == "false") return no_args(), v.is(Kind::Bool) && !v.b;
  if (name == "mapping") return no_args(), v.is(Kind::Dict);
  if (name == "sequence")
    return no_args(), v.is(Kind::List) || v.is(Kind::String) || v.is(Kind::Dict);
  if (name == "iterable")
    return no_args(), v.is(Kind::List) || v.is(Kind::String) || v.is(Kind::Dict);
  if (name == "odd" || name == "even") {
    no_args();
    if (!v.is(Kind::Int)) fail("test '" + name + "' expected an integer, got " + type_name(v));
    return (((v.i % 2) + 2) % 2 == 1) == (name == "odd");
  }
  if (name == "divisibleby") {
    expect_args(args, 1, 1, "test 'divisibleby'", fail);
    if (!v.is(Kind::Int) || !args[0].is(Kind::Int) || args[0].i == 0)
      fail("test 'divisibleby' expected non-zero integers");
    return v.i % args[0].i == 0;
  }
  fail("unsupported test '" + name +
       "'; supported: defined, undefined, none, string, number, "
       "integer, float, boolean, true, false, mapping, sequence, iterable, odd, even, divisibleby");
}

namespace {

List split(const std::string& s, const std::vector<Value>& args, const std::string& what,
           const Fail& fail) {
  List out;
  if (args.empty() || args[0].is(Kind::None)) {  // runs of whitespace, no empty items
    std::string cur;
    for (const Value& c : chars_of(s)) {
      int len = 0;
      if (!is_python_space(decode_utf8(c.s, 0, &len))) {
        cur += c.s;
        continue;
      }
      if (!cur.empty()) out.push_back(Value::string(cur));
      cur.clear();
    }
    if (!cur.empty()) out.push_back(Value::string(cur));
    return out;
  }
  const std::string& sep = expect_string(args[0], what, fail).s;
  if (sep.empty()) fail("split: empty separator");
  size_t pos = 0;
  for (size_t at; (at = s.find(sep, pos)) != std::string::npos; pos = at + sep.size())
    out.push_back(Value::string(s.substr(pos, at - pos)));
  out.push_back(Value::string(s.substr(pos)));
  return out;
}

std::optional<Value> string_method(const std::string& s, const std::string& name,
                                   const std::vector<Value>& args, const Fail& fail) {
  const std::string what = "method '" + name + "'";
  if (name == "strip" || name == "lstrip" || name == "rstrip") {
    expect_args(args, 0, 1, what, fail);
    return Value::string(
        strip(s, args.empty() ? nullptr : &args[0], name != "rstrip", name != "lstrip"));
  }
  if (name == "startswith" || name == "endswith") {
    expect_args(args, 1, 1, what, fail);
    const std::string& x = expect_string(args[0], what, fail).s;
    if (x.size() > s.size()) return Value::boolean(false);
    return Value::boolean(name == "startswith" ? s.compare(0, x.size(), x) == 0
                                               : s.compare(s.size() - x.size(), x.size(), x) == 0);
  }
  if (name == "upper" || name == "lower") {
    expect_args(args, 0, 0, what, fail);
    return Value::string(name == "upper" ? to_upper(s) : to_lower(s));
  }
  if (name == "replace") {
    expect_args(args, 2, 3, what, fail);
    return Value::string(replace_all(s, expect_string(args[0], what, fail).s,
                                     expect_string(args[1], what, fail).s,
                                     args.size() > 2 ? args[2].i : -1));
  }
  if (name == "split") {
    expect_args(args, 0, 1, what, fail);
    return Value::list_of(split(s, args, what, fail));
  }
  return std::nullopt;
}

std::optional<Value> dict_method(const Value& obj, const std::string& name,
                                 const std::vector<Value>& args, const Fail& fail) {
  if (name == "get") {
    expect_args(args, 1, 2, "method 'get'", fail);
    const Value* v = args[0].is(Kind::String) ? obj.dict->find(args[0].s) : nullptr;
    return v ? *v : (args.size() > 1 ? args[1] : Value::none());
  }
  if (name == "items") return apply_filter("items", obj, {}, {}, fail);
  if (name == "keys" || name == "values") {
    List out;
    for (const auto& [k, v] : obj.dict->items) out.push_back(name == "keys" ? Value::string(k) : v);
    return Value::list_of(std::move(out));
  }
  return std::nullopt;
}

}  // namespace

Value call_method(const Value& obj, const std::string& name, const std::vector<Value>& args,
                  const Fail& fail) {
  std::optional<Value> r;
  if (obj.is(Kind::String)) r = string_method(obj.s, name, args, fail);
  if (obj.is(Kind::Dict)) r = dict_method(obj, name, args, fail);
  if (r) return *r;
  fail("unsupported method '" + name + "' of " + type_name(obj) +
       "; supported: str.strip/lstrip/rstrip/startswith/endswith/upper/lower/replace/split, "
       "dict.get/items/keys/values");
}

}  // namespace loom::data::jinja
