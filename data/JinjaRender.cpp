// Jinja renderer (see Jinja.h): walks the AST with a stack of scopes. As in jinja2, every loop
// iteration gets a fresh scope on top of the enclosing one (so {% set %} inside a loop does not
// leak out; namespace() objects are shared and carry state across iterations), `if` opens none.
// Operators follow Python: + on numbers / strings / lists, ~ joins str() of both sides, and/or
// return an operand, comparisons chain.
#include <algorithm>
#include <cmath>
#include <optional>

#include "core/util/Check.h"
#include "data/Jinja.h"

namespace loom::data::jinja {

Value Value::undefined(std::string name) {
  Value v;
  v.s = std::move(name);
  return v;
}
Value Value::none() {
  Value v;
  v.kind = Kind::None;
  return v;
}
Value Value::boolean(bool b) {
  Value v;
  v.kind = Kind::Bool;
  v.b = b;
  return v;
}
Value Value::integer(int64_t i) {
  Value v;
  v.kind = Kind::Int;
  v.i = i;
  return v;
}
Value Value::real(double f) {
  Value v;
  v.kind = Kind::Float;
  v.f = f;
  return v;
}
Value Value::string(std::string s) {
  Value v;
  v.kind = Kind::String;
  v.s = std::move(s);
  return v;
}
Value Value::list_of(List l) {
  Value v;
  v.kind = Kind::List;
  v.list = std::make_shared<List>(std::move(l));
  return v;
}
Value Value::dict_of(Dict d) {
  Value v;
  v.kind = Kind::Dict;
  v.dict = std::make_shared<Dict>(std::move(d));
  return v;
}

const Value* Dict::find(std::string_view key) const {
  for (const auto& [k, v] : items)
    if (k == key) return &v;
  return nullptr;
}

void Dict::set(const std::string& key, Value v) {
  for (auto& [k, old] : items)
    if (k == key) {
      old = std::move(v);
      return;
    }
  items.emplace_back(key, std::move(v));
}

void Fail::operator()(const std::string& msg) const {
  throw DataError("chat template '" + program.name + "': line " + std::to_string(line) +
                  ", column " + std::to_string(col) + ": " + msg);
}

namespace {

using Kind = Value::Kind;

bool is_number(const Value& v) { return v.is(Kind::Int) || v.is(Kind::Float) || v.is(Kind::Bool); }
double as_double(const Value& v) {
  return v.is(Kind::Float) ? v.f : double(v.is(Kind::Bool) ? int64_t(v.b) : v.i);
}
int64_t as_int(const Value& v) { return v.is(Kind::Bool) ? int64_t(v.b) : v.i; }

class Renderer {
 public:
  Renderer(const Program& p, const Dict& globals) : program_(p) { scopes_.push_back(globals); }

  std::string run() {
    render(program_.body);
    return std::move(out_);
  }

 private:
  Fail at(int line, int col) const { return Fail{program_, line, col}; }
  Fail at(const Expr& e) const { return at(e.line, e.col); }

  void render(const Body& body);
  void render_for(const Stmt& st);
  Value eval(const Expr& e);
  Value eval_logic(const Expr& e);
  Value filter_or_test(const Expr& e);
  Value lookup(const std::string& name) const;
  Value binary(const Expr& e, const Value& a, const Value& b);
  bool compare(const Expr& e, const std::string& op, const Value& a, const Value& b);
  Value subscript(const Expr& e, const Value& obj, const Value& key);
  Value slice(const Expr& e, const Value& obj);
  Value call(const Expr& e);
  void require_defined(const Expr& e, const Value& v) const {
    if (v.is(Kind::Undefined))
      at(e)("'" + (v.s.empty() ? std::string("value") : v.s) + "' is undefined");
  }

  const Program& program_;
  std::vector<Dict> scopes_;
  std::string out_;
};

void Renderer::render(const Body& body) {
  for (const Stmt& st : body) {
    switch (st.kind) {
      case Stmt::Kind::Text:
        out_ += st.text;
        break;
      case Stmt::Kind::Output:
        out_ += to_output(eval(*st.exprs[0]));
        break;
      case Stmt::Kind::If: {
        size_t k = 0;
        while (k < st.exprs.size() && !truthy(eval(*st.exprs[k]))) ++k;
        if (k < st.bodies.size()) render(st.bodies[k]);
        break;
      }
      case Stmt::Kind::For:
        render_for(st);
        break;
      case Stmt::Kind::Set:
        scopes_.back().set(st.text, eval(*st.exprs[0]));
        break;
      case Stmt::Kind::SetAttr: {
        Value ns = lookup(st.text);
        if (!ns.is(Kind::Namespace))
          at(st.line, st.col)("can only set attributes of a namespace(), got " + type_name(ns) +
                              " '" + st.text + "'");
        ns.dict->set(st.attr, eval(*st.exprs[0]));
        break;
      }
      case Stmt::Kind::Generation:
        render(st.bodies[0]);
        break;
    }
  }
}

void Renderer::render_for(const Stmt& st) {
  const Expr& iter_expr = *st.exprs[0];
  Value seq = eval(iter_expr);
  List items;
  if (seq.is(Kind::List)) {
    items = *seq.list;
  } else if (seq.is(Kind::Dict)) {
    for (const auto& kv : seq.dict->items) items.push_back(Value::string(kv.first));
  } else if (seq.is(Kind::String)) {
    items = *apply_filter("list", seq, {}, {}, at(iter_expr)).list;
  } else if (!seq.is(Kind::Undefined)) {
    at(iter_expr)("'" + type_name(seq) + "' object is not iterable");
  }
  auto bind = [&](Dict& scope, const Value& item) {
    if (st.targets.size() == 1) {
      scope.set(st.targets[0], item);
      return;
    }
    if (!item.is(Kind::List) || item.list->size() != st.targets.size())
      at(st.line, st.col)("cannot unpack " + type_name(item) + " into " +
                          std::to_string(st.targets.size()) + " loop variables");
    for (size_t k = 0; k < st.targets.size(); ++k) scope.set(st.targets[k], (*item.list)[k]);
  };
  if (st.exprs.size() > 1) {  // {% for x in xs if cond %}: loop.* counts the kept items only
    List kept;
    for (const Value& item : items) {
      scopes_.emplace_back();
      bind(scopes_.back(), item);
      const bool keep = truthy(eval(*st.exprs[1]));
      scopes_.pop_back();
      if (keep) kept.push_back(item);
    }
    items = std::move(kept);
  }
  const int64_t n = int64_t(items.size());
  for (int64_t k = 0; k < n; ++k) {
    Dict loop;
    loop.set("index0", Value::integer(k));
    loop.set("index", Value::integer(k + 1));
    loop.set("revindex0", Value::integer(n - k - 1));
    loop.set("revindex", Value::integer(n - k));
    loop.set("first", Value::boolean(k == 0));
    loop.set("last", Value::boolean(k == n - 1));
    loop.set("length", Value::integer(n));
    loop.set("previtem", k > 0 ? items[size_t(k - 1)] : Value::undefined("previtem"));
    loop.set("nextitem", k + 1 < n ? items[size_t(k + 1)] : Value::undefined("nextitem"));
    scopes_.emplace_back();
    bind(scopes_.back(), items[size_t(k)]);
    scopes_.back().set("loop", Value::dict_of(std::move(loop)));
    render(st.bodies[0]);
    scopes_.pop_back();
  }
  if (n == 0 && st.bodies.size() > 1) render(st.bodies[1]);
}

Value Renderer::lookup(const std::string& name) const {
  for (auto it = scopes_.rbegin(); it != scopes_.rend(); ++it)
    if (const Value* v = it->find(name)) return *v;
  return Value::undefined(name);
}

Value Renderer::eval(const Expr& e) {
  switch (e.op) {
    case Expr::Op::Literal:
      return e.literal;
    case Expr::Op::Name:
      return lookup(e.name);
    case Expr::Op::Attr: {
      Value obj = eval(*e.args[0]);
      require_defined(e, obj);
      const Value* v =
          obj.is(Kind::Dict) || obj.is(Kind::Namespace) ? obj.dict->find(e.name) : nullptr;
      return v ? *v : Value::undefined(e.name);
    }
    case Expr::Op::Item:
      return subscript(e, eval(*e.args[0]), eval(*e.args[1]));
    case Expr::Op::Slice:
      return slice(e, eval(*e.args[0]));
    case Expr::Op::Call:
      return call(e);
    case Expr::Op::Filter:
    case Expr::Op::Test:
      return filter_or_test(e);
    case Expr::Op::Neg:
    case Expr::Op::Pos: {
      Value v = eval(*e.args[0]);
      if (!is_number(v))
        at(e)("bad operand type for unary " + std::string(e.op == Expr::Op::Neg ? "-" : "+") +
              ": '" + type_name(v) + "'");
      if (e.op == Expr::Op::Pos) return v.is(Kind::Float) ? v : Value::integer(as_int(v));
      return v.is(Kind::Float) ? Value::real(-v.f) : Value::integer(-as_int(v));
    }
    case Expr::Op::Not:
      return Value::boolean(!truthy(eval(*e.args[0])));
    case Expr::Op::Binary:
      return binary(e, eval(*e.args[0]), eval(*e.args[1]));
    default:
      return eval_logic(e);
  }
}

// Comparisons, and/or, a if c else b, list and dict literals.
Value Renderer::eval_logic(const Expr& e) {
  switch (e.op) {
    case Expr::Op::Compare: {
      Value left = eval(*e.args[0]);
      for (size_t k = 0; k < e.compare_ops.size(); ++k) {
        Value right = eval(*e.args[k + 1]);
        if (!compare(e, e.compare_ops[k], left, right)) return Value::boolean(false);
        left = std::move(right);
      }
      return Value::boolean(true);
    }
    case Expr::Op::And:
    case Expr::Op::Or: {
      Value a = eval(*e.args[0]);
      return truthy(a) == (e.op == Expr::Op::And) ? eval(*e.args[1]) : a;
    }
    case Expr::Op::Cond:
      if (truthy(eval(*e.args[1]))) return eval(*e.args[0]);
      return e.args[2] ? eval(*e.args[2]) : Value::undefined();
    case Expr::Op::ListLit: {
      List l;
      for (const ExprPtr& a : e.args) l.push_back(eval(*a));
      return Value::list_of(std::move(l));
    }
    case Expr::Op::DictLit: {
      Dict d;
      for (size_t k = 0; k + 1 < e.args.size(); k += 2) {
        Value key = eval(*e.args[k]);
        if (!key.is(Kind::String))
          at (*e.args[k])("dict keys must be strings here, got " + type_name(key));
        d.set(key.s, eval(*e.args[k + 1]));
      }
      return Value::dict_of(std::move(d));
    }
    default:
      at(e)("internal: unknown expression");
  }
}

Value Renderer::filter_or_test(const Expr& e) {
  Value v = eval(*e.args[0]);
  std::vector<Value> args;
  std::vector<std::string> kws(e.keywords.begin() + 1, e.keywords.end());
  for (size_t k = 1; k < e.args.size(); ++k) args.push_back(eval(*e.args[k]));
  if (e.op == Expr::Op::Filter) return apply_filter(e.name, v, args, kws, at(e));
  for (const std::string& kw : kws)
    if (!kw.empty()) at(e)("test '" + e.name + "' takes no keyword arguments");
  return Value::boolean(apply_test(e.name, v, args, at(e)) != e.negated);
}

Value Renderer::binary(const Expr& e, const Value& a, const Value& b) {
  const std::string& op = e.name;
  if (op == "~") return Value::string(to_output(a) + to_output(b));
  require_defined(*e.args[0], a);
  require_defined(*e.args[1], b);
  const std::string unsupported =
      "unsupported operand types for " + op + ": '" + type_name(a) + "' and '" + type_name(b) + "'";
  if (op == "+" && a.is(Kind::String) && b.is(Kind::String)) return Value::string(a.s + b.s);
  if (op == "+" && a.is(Kind::List) && b.is(Kind::List)) {
    List l = *a.list;
    l.insert(l.end(), b.list->begin(), b.list->end());
    return Value::list_of(std::move(l));
  }
  if (op == "*" && (a.is(Kind::String) || a.is(Kind::List)) &&
      (b.is(Kind::Int) || b.is(Kind::Bool))) {
    Value r = a.is(Kind::String) ? Value::string("") : Value::list_of({});
    for (int64_t k = 0; k < as_int(b); ++k) {
      if (a.is(Kind::String))
        r.s += a.s;
      else
        r.list->insert(r.list->end(), a.list->begin(), a.list->end());
    }
    return r;
  }
  if (!is_number(a) || !is_number(b)) at(e)(unsupported);
  const bool real = a.is(Kind::Float) || b.is(Kind::Float) || op == "/";
  if (op == "/" || op == "//" || op == "%") {
    if (as_double(b) == 0) at(e)("division by zero");
  }
  if (real) {
    const double x = as_double(a), y = as_double(b);
    if (op == "+") return Value::real(x + y);
    if (op == "-") return Value::real(x - y);
    if (op == "*") return Value::real(x * y);
    if (op == "/") return Value::real(x / y);
    if (op == "//") return Value::real(std::floor(x / y));
    if (op == "%") return Value::real(x - std::floor(x / y) * y);
    if (op == "**") return Value::real(std::pow(x, y));
  } else {
    const int64_t x = as_int(a), y = as_int(b);
    if (op == "+") return Value::integer(x + y);
    if (op == "-") return Value::integer(x - y);
    if (op == "*") return Value::integer(x * y);
    if (op == "//") return Value::integer(x / y - ((x % y != 0) && ((x < 0) != (y < 0)) ? 1 : 0));
    if (op == "%") return Value::integer(((x % y) + y) % y);
    if (op == "**") {
      if (y < 0) return Value::real(std::pow(double(x), double(y)));
      int64_t r = 1;
      for (int64_t k = 0; k < y; ++k) r *= x;
      return Value::integer(r);
    }
  }
  at(e)(unsupported);
}

bool Renderer::compare(const Expr& e, const std::string& op, const Value& a, const Value& b) {
  if (op == "==") return equal(a, b);
  if (op == "!=") return !equal(a, b);
  if (op == "in" || op == "not in") {
    bool found = false;
    if (b.is(Kind::String)) {
      if (!a.is(Kind::String))
        at(e)("'in <string>' requires string as left operand, not " + type_name(a));
      found = b.s.find(a.s) != std::string::npos;
    } else if (b.is(Kind::List)) {
      for (const Value& x : *b.list) found = found || equal(a, x);
    } else if (b.is(Kind::Dict) || b.is(Kind::Namespace)) {
      found = a.is(Kind::String) && b.dict->find(a.s) != nullptr;
    } else {
      at(e)("argument of type '" + type_name(b) + "' is not iterable");
    }
    return op == "in" ? found : !found;
  }
  int c = 0;
  if (is_number(a) && is_number(b)) {
    c = as_double(a) < as_double(b) ? -1 : as_double(a) > as_double(b) ? 1 : 0;
  } else if (a.is(Kind::String) && b.is(Kind::String)) {
    c = a.s.compare(b.s);  // UTF-8 byte order == code point order
  } else {
    at(e)("'" + op + "' not supported between '" + type_name(a) + "' and '" + type_name(b) + "'");
  }
  if (op == "<") return c < 0;
  if (op == "<=") return c <= 0;
  if (op == ">") return c > 0;
  return c >= 0;
}

Value Renderer::subscript(const Expr& e, const Value& obj, const Value& key) {
  require_defined(*e.args[0], obj);
  if (obj.is(Kind::Dict) || obj.is(Kind::Namespace)) {
    const Value* v = key.is(Kind::String) ? obj.dict->find(key.s) : nullptr;
    return v ? *v : Value::undefined(key.is(Kind::String) ? key.s : to_output(key));
  }
  if (obj.is(Kind::List) || obj.is(Kind::String)) {
    if (!key.is(Kind::Int) && !key.is(Kind::Bool))
      at(e)("indices must be integers, got " + type_name(key));
    Value seq = obj.is(Kind::String) ? apply_filter("list", obj, {}, {}, at(e)) : obj;
    int64_t i = as_int(key), n = int64_t(seq.list->size());
    if (i < 0) i += n;
    if (i < 0 || i >= n) return Value::undefined();
    return (*seq.list)[size_t(i)];
  }
  at(e)("'" + type_name(obj) + "' object is not subscriptable");
}

// Python slicing obj[start:stop:step] on lists and strings (by code point).
Value Renderer::slice(const Expr& e, const Value& obj) {
  require_defined(*e.args[0], obj);
  if (!obj.is(Kind::List) && !obj.is(Kind::String))
    at(e)("'" + type_name(obj) + "' object is not sliceable");
  Value seq = obj.is(Kind::String) ? apply_filter("list", obj, {}, {}, at(e)) : obj;
  const int64_t n = int64_t(seq.list->size());
  auto bound = [&](size_t k) -> std::optional<int64_t> {
    if (!e.args[k]) return std::nullopt;
    Value v = eval(*e.args[k]);
    if (v.is(Kind::None)) return std::nullopt;
    if (!v.is(Kind::Int) && !v.is(Kind::Bool))
      at(e)("slice indices must be integers, got " + type_name(v));
    return as_int(v);
  };
  const int64_t step = bound(3).value_or(1);
  if (step == 0) at(e)("slice step cannot be zero");
  auto clamp = [&](std::optional<int64_t> v, int64_t def) {
    if (!v) return def;
    int64_t x = *v < 0 ? *v + n : *v;
    return step > 0 ? std::clamp<int64_t>(x, 0, n) : std::clamp<int64_t>(x, -1, n - 1);
  };
  const int64_t start = clamp(bound(1), step > 0 ? 0 : n - 1);
  const int64_t stop = clamp(bound(2), step > 0 ? n : -1);
  List out;
  for (int64_t i = start; step > 0 ? i < stop : i > stop; i += step)
    out.push_back((*seq.list)[size_t(i)]);
  if (!obj.is(Kind::String)) return Value::list_of(std::move(out));
  std::string s;
  for (const Value& c : out) s += c.s;
  return Value::string(std::move(s));
}

Value Renderer::call(const Expr& e) {
  const Expr& callee = *e.args[0];
  std::vector<Value> args;
  for (size_t k = 1; k < e.args.size(); ++k) args.push_back(eval(*e.args[k]));
  const std::vector<std::string> kws(e.keywords.begin() + 1, e.keywords.end());
  auto positional_only = [&](const std::string& what) {
    for (const std::string& kw : kws)
      if (!kw.empty()) at(e)(what + " takes no keyword arguments");
  };
  if (callee.op == Expr::Op::Attr) {
    positional_only("method '" + callee.name + "'");
    return call_method(eval(*callee.args[0]), callee.name, args, at(e));
  }
  const std::string name = callee.op == Expr::Op::Name ? callee.name : std::string();
  if (name == "raise_exception") {
    positional_only("raise_exception");
    const std::string msg = args.empty() ? std::string() : to_output(args[0]);
    throw DataError("chat template '" + program_.name + "' (line " + std::to_string(e.line) +
                    "): raise_exception: " + msg);
  }
  if (name == "namespace") {
    Value ns = Value::dict_of({});
    ns.kind = Kind::Namespace;
    for (size_t k = 0; k < args.size(); ++k) {
      if (kws[k].empty()) at(e)("namespace() takes keyword arguments only");
      ns.dict->set(kws[k], args[k]);
    }
    return ns;
  }
  if (name == "range") {
    positional_only("range");
    if (args.empty() || args.size() > 3) at(e)("range expected 1 to 3 arguments");
    for (const Value& a : args)
      if (!a.is(Kind::Int)) at(e)("range arguments must be integers, got " + type_name(a));
    int64_t start = args.size() > 1 ? args[0].i : 0, stop = args.size() > 1 ? args[1].i : args[0].i;
    int64_t step = args.size() > 2 ? args[2].i : 1;
    if (step == 0) at(e)("range() arg 3 must not be zero");
    List l;
    for (int64_t i = start; step > 0 ? i < stop : i > stop; i += step)
      l.push_back(Value::integer(i));
    return Value::list_of(std::move(l));
  }
  at(e)("unsupported call" + (name.empty() ? std::string() : " of '" + name + "'") +
        "; supported: raise_exception, namespace, range and string/dict methods");
}

}  // namespace

std::string render(const Program& program, const Dict& globals) {
  return Renderer(program, globals).run();
}

}  // namespace loom::data::jinja
