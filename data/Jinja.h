// Private to loom_data: the Jinja subset that Hugging Face chat templates use, compiled once into a
// small AST (JinjaParse.cpp) and rendered many times (JinjaRender.cpp, JinjaBuiltins.cpp). The
// public face is ChatTemplateJinja.h. Behaviour follows jinja2 3.1 as transformers configures it
// (trim_blocks, lstrip_blocks, no trailing newline kept) and Python's semantics for values.
// Errors are DataError "chat template '<name>': line L, column C: ...".
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace loom::data::jinja {

struct Value;
using List = std::vector<Value>;
struct Dict;

struct Value {
  enum class Kind : uint8_t { Undefined, None, Bool, Int, Float, String, List, Dict, Namespace };
  Kind kind = Kind::Undefined;
  bool b = false;
  int64_t i = 0;
  double f = 0;
  std::string s;               // String; for Undefined the name that was looked up
  std::shared_ptr<List> list;  // List
  std::shared_ptr<Dict> dict;  // Dict and Namespace (a namespace is shared and mutable)

  static Value undefined(std::string name = {});
  static Value none();
  static Value boolean(bool v);
  static Value integer(int64_t v);
  static Value real(double v);
  static Value string(std::string v);
  static Value list_of(List v);
  static Value dict_of(Dict v);
  bool is(Kind k) const { return kind == k; }
};

// Insertion-ordered like a Python dict.
struct Dict {
  std::vector<std::pair<std::string, Value>> items;
  const Value* find(std::string_view key) const;
  void set(const std::string& key, Value v);
};

struct Expr {
  enum class Op {
    Literal,
    Name,
    Attr,
    Item,
    Slice,
    Call,
    Filter,
    Test,
    Neg,
    Pos,
    Not,
    Binary,
    Compare,
    And,
    Or,
    Cond,
    ListLit,
    DictLit
  };
  Op op = Op::Literal;
  int line = 0, col = 0;
  Value literal;                            // Literal
  std::string name;                         // Name, Attr, Filter/Test/Call name, Binary operator
  bool negated = false;                     // Test: "is not"
  std::vector<std::unique_ptr<Expr>> args;  // operands / arguments (null: absent slice part)
  std::vector<std::string> keywords;     // Call/Filter/Test: keyword of args[k] ("" = positional)
  std::vector<std::string> compare_ops;  // Compare: operator between args[k] and args[k+1]
};
using ExprPtr = std::unique_ptr<Expr>;

struct Stmt;
using Body = std::vector<Stmt>;

struct Stmt {
  enum class Kind { Text, Output, If, For, Set, SetAttr, Generation };
  Kind kind = Kind::Text;
  int line = 0, col = 0;
  std::string text;                  // Text; Set / SetAttr: variable name
  std::string attr;                  // SetAttr: attribute
  std::vector<ExprPtr> exprs;        // Output/Set: value; If: conditions; For: iterable, filter
  std::vector<Body> bodies;          // If: one per condition (+ else); For: body (+ else)
  std::vector<std::string> targets;  // For: loop variables
};

struct Program {
  std::string name;
  Body body;
};

// Compiles `source`; DataError naming `name`, line and column for syntax outside the subset.
Program parse(std::string_view source, const std::string& name);
// Renders with the given global variables.
std::string render(const Program& program, const Dict& globals);

// Builtins shared by the renderer (JinjaBuiltins.cpp). `fail` throws a positioned DataError.
struct Fail {
  const Program& program;
  int line, col;
  [[noreturn]] void operator()(const std::string& msg) const;
};
std::string to_output(const Value& v);  // Python str()
bool truthy(const Value& v);
bool equal(const Value& a, const Value& b);
std::string type_name(const Value& v);  // Python type names for messages
Value apply_filter(const std::string& name, const Value& v, const std::vector<Value>& args,
                   const std::vector<std::string>& keywords, const Fail& fail);
bool apply_test(const std::string& name, const Value& v, const std::vector<Value>& args,
                const Fail& fail);
Value call_method(const Value& obj, const std::string& name, const std::vector<Value>& args,
                  const Fail& fail);

}  // namespace loom::data::jinja
