// Jinja lexer and parser (see Jinja.h). The lexer follows jinja2's rules for whitespace: "{%-" /
// "-%}" strip all whitespace on that side, lstrip_blocks removes spaces before a block or comment
// tag that starts a line, trim_blocks removes the newline after "%}" / "#}", and one trailing
// newline of the template is dropped. Expressions use jinja2's precedence:
//   a if c else b  <  or  <  and  <  not  <  comparisons, in  <  + -  <  ~  <  * / // %  <  **
//   <  unary - +  <  postfix . [] ()  then filters | and tests `is`.
#include <algorithm>
#include <charconv>

#include "core/util/Check.h"
#include "data/ByteLevel.h"
#include "data/Jinja.h"
#include "data/Unicode.h"

namespace loom::data::jinja {
namespace {

struct Token {
  enum class Type { Name, String, Int, Float, Op, End } type = Type::End;
  std::string text;
  size_t pos = 0;  // offset in the normalised source
};

// A piece of template: text, an output tag {{ }} or a block tag {% %} with its tokens.
struct Item {
  enum class Kind { Text, Output, Block } kind;
  std::string text;
  std::vector<Token> tokens;
  size_t pos = 0;
};

bool python_space_at(std::string_view s, size_t i, int* len) {
  return is_python_space(decode_utf8(s, i, len));
}

std::string rstrip_ws(std::string_view s) {
  size_t end = s.size();
  while (end > 0) {
    size_t start = previous_utf8_start(s, end);
    int len = 0;
    if (!python_space_at(s, start, &len)) break;
    end = start;
  }
  return std::string(s.substr(0, end));
}

size_t skip_ws(std::string_view s, size_t i) {
  int len = 0;
  while (i < s.size() && python_space_at(s, i, &len)) i += size_t(len);
  return i;
}

class Lexer {
 public:
  Lexer(std::string_view source, const std::string& name) : name_(name) {
    // jinja2: "\r\n" and "\r" are newlines; a single trailing newline is dropped.
    for (size_t i = 0; i < source.size(); ++i) {
      if (source[i] == '\r') {
        src_ += '\n';
        if (i + 1 < source.size() && source[i + 1] == '\n') ++i;
      } else {
        src_ += source[i];
      }
    }
    if (!src_.empty() && src_.back() == '\n') src_.pop_back();
    line_starts_.push_back(0);
    for (size_t i = 0; i < src_.size(); ++i)
      if (src_[i] == '\n') line_starts_.push_back(i + 1);
  }

  std::vector<Item> run();
  [[noreturn]] void fail(size_t pos, const std::string& msg) const {
    auto it = std::upper_bound(line_starts_.begin(), line_starts_.end(), pos);
    const size_t line = size_t(it - line_starts_.begin());
    throw DataError("chat template '" + name_ + "': line " + std::to_string(line) + ", column " +
                    std::to_string(pos - line_starts_[line - 1] + 1) + ": " + msg);
  }
  void position(size_t pos, int* line, int* col) const {
    auto it = std::upper_bound(line_starts_.begin(), line_starts_.end(), pos);
    *line = int(it - line_starts_.begin());
    *col = int(pos - line_starts_[size_t(*line - 1)] + 1);
  }

 private:
  size_t lex_tag(size_t p, char kind, Item& item);
  size_t lex_comment(size_t open, size_t p);
  Token lex_token(size_t& p, int& depth);
  Token lex_number(size_t& p) const;

  std::string name_;
  std::string src_;
  std::vector<size_t> line_starts_;
};

std::vector<Item> Lexer::run() {
  std::vector<Item> items;
  size_t pos = 0;
  bool line_starting = true;
  while (pos < src_.size()) {
    size_t open = pos;
    while ((open = src_.find('{', open)) != std::string::npos &&
           (open + 1 >= src_.size() ||
            std::string_view("{%#").find(src_[open + 1]) == std::string_view::npos))
      ++open;
    if (open == std::string::npos) {
      items.push_back({Item::Kind::Text, src_.substr(pos), {}, pos});
      break;
    }
    const char kind = src_[open + 1];
    const char ctl = open + 2 < src_.size() ? src_[open + 2] : '\0';
    std::string text = src_.substr(pos, open - pos);
    if (ctl == '-') {
      text = rstrip_ws(text);
    } else if (ctl != '+' && kind != '{') {  // lstrip_blocks
      const size_t l_pos = text.rfind('\n') == std::string::npos ? 0 : text.rfind('\n') + 1;
      if ((l_pos > 0 || line_starting) && l_pos < text.size() &&
          skip_ws(text, l_pos) == text.size())
        text.resize(l_pos);
    }
    if (!text.empty()) items.push_back({Item::Kind::Text, std::move(text), {}, pos});
    const size_t p = open + 2 + (ctl == '-' || ctl == '+' ? 1 : 0);
    if (kind == '#') {
      pos = lex_comment(open, p);
    } else {
      Item item{kind == '{' ? Item::Kind::Output : Item::Kind::Block, "", {}, open};
      pos = lex_tag(p, kind, item);
      items.push_back(std::move(item));
    }
    line_starting = pos > 0 && src_[pos - 1] == '\n';
  }
  return items;
}

size_t Lexer::lex_comment(size_t open, size_t p) {
  const size_t q = src_.find("#}", p);
  if (q == std::string::npos) fail(open, "missing end of comment tag '#}'");
  const char ctl = q > p ? src_[q - 1] : '\0';
  if (ctl == '-') return skip_ws(src_, q + 2);
  if (ctl != '+' && q + 2 < src_.size() && src_[q + 2] == '\n') return q + 3;  // trim_blocks
  return q + 2;
}

// Tokens of a tag up to its end ("}}" or "%}", optionally "-"/"+" first); returns the position
// after the end and the whitespace it strips.
size_t Lexer::lex_tag(size_t p, char kind, Item& item) {
  int depth = 0;
  const char close = kind == '{' ? '}' : '%';
  while (true) {
    p = skip_ws(src_, p);
    if (p >= src_.size())
      fail(item.pos, std::string("unexpected end of template, expected '") + close + "}'");
    if (depth == 0) {
      const char c = src_[p];
      const bool ctl = (c == '-' || (c == '+' && kind == '%')) && p + 2 < src_.size() &&
                       src_[p + 1] == close && src_[p + 2] == '}';
      if (ctl || (c == close && p + 1 < src_.size() && src_[p + 1] == '}')) {
        size_t end = p + (ctl ? 3 : 2);
        if (c == '-') return skip_ws(src_, end);
        if (!ctl && kind == '%' && end < src_.size() && src_[end] == '\n') ++end;  // trim_blocks
        return end;
      }
    }
    item.tokens.push_back(lex_token(p, depth));
  }
}

// An integer or float literal (digits with '_' separators, optional fraction and exponent).
Token Lexer::lex_number(size_t& p) const {
  auto digit = [&](size_t k) {
    return k < src_.size() && std::isdigit(static_cast<unsigned char>(src_[k]));
  };
  Token t;
  t.pos = p;
  t.type = Token::Type::Int;
  size_t i = p;
  while (digit(i) || (i < src_.size() && src_[i] == '_')) ++i;
  if (i < src_.size() && src_[i] == '.' && digit(i + 1)) {
    t.type = Token::Type::Float;
    for (++i; digit(i); ++i) {
    }
  }
  if (i < src_.size() && (src_[i] == 'e' || src_[i] == 'E')) {  // exponent: 1e5, 2.5e-7
    size_t k = i + 1 + (i + 1 < src_.size() && (src_[i + 1] == '+' || src_[i + 1] == '-'));
    if (digit(k)) {
      t.type = Token::Type::Float;
      for (i = k; digit(i); ++i) {
      }
    }
  }
  t.text = src_.substr(p, i - p);
  t.text.erase(std::remove(t.text.begin(), t.text.end(), '_'), t.text.end());
  p = i;
  return t;
}

Token Lexer::lex_token(size_t& p, int& depth) {
  Token t;
  t.pos = p;
  const char c = src_[p];
  if (c == '\'' || c == '"') {
    t.type = Token::Type::String;
    size_t i = p + 1;
    while (i < src_.size() && src_[i] != c) i += src_[i] == '\\' ? 2 : 1;
    if (i >= src_.size()) fail(p, "unterminated string literal");
    t.text = src_.substr(p + 1, i - p - 1);
    p = i + 1;
    return t;
  }
  if (std::isdigit(static_cast<unsigned char>(c))) return lex_number(p);
  if (std::isalpha(static_cast<unsigned char>(c)) || c == '_') {
    size_t i = p;
    while (i < src_.size() && (std::isalnum(static_cast<unsigned char>(src_[i])) || src_[i] == '_'))
      ++i;
    t.type = Token::Type::Name;
    t.text = src_.substr(p, i - p);
    p = i;
    return t;
  }
  static const char* const kOps[] = {"//", "**", "==", "!=", "<=", ">=", "+", "-", "*",
                                     "/",  "%",  "~",  "(",  ")",  "[",  "]", "{", "}",
                                     ",",  ".",  ":",  "|",  "=",  "<",  ">"};
  for (const char* op : kOps) {
    const size_t n = std::char_traits<char>::length(op);
    if (src_.compare(p, n, op) != 0) continue;
    t.type = Token::Type::Op;
    t.text = op;
    p += n;
    if (t.text == "(" || t.text == "[" || t.text == "{") ++depth;
    if (t.text == ")" || t.text == "]" || t.text == "}") {
      if (depth == 0) fail(t.pos, "unexpected '" + t.text + "'");
      --depth;
    }
    return t;
  }
  fail(p, std::string("unexpected character '") + c + "'");
}

// Python's unicode-escape on a string literal's body (jinja2 does the same).
std::string unescape(const std::string& s, const Lexer& lex, size_t pos) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] != '\\' || i + 1 >= s.size()) {
      out += s[i];
      continue;
    }
    const char e = s[++i];
    auto hex = [&](size_t n) {
      uint32_t v = 0;
      auto [ptr, ec] =
          std::from_chars(s.data() + i + 1, s.data() + std::min(s.size(), i + 1 + n), v, 16);
      if (ec != std::errc() || ptr != s.data() + i + 1 + n)
        lex.fail(pos, "bad \\" + std::string(1, e) + " escape in a string literal");
      i += n;
      return v;
    };
    static const std::string_view kFrom = "ntr\\'\"abfv0", kTo("\n\t\r\\'\"\a\b\f\v\0", 11);
    if (const size_t k = kFrom.find(e); k != std::string_view::npos) {
      out += kTo[k];
    } else if (e == 'x' || e == 'u' || e == 'U') {
      append_utf8(out, char32_t(hex(e == 'x' ? 2 : e == 'u' ? 4 : 8)));
    } else if (e != '\n') {  // backslash-newline is a line continuation; others stay as written
      out += '\\';
      out += e;
    }
  }
  return out;
}

class Parser {
 public:
  Parser(const Lexer& lex, std::vector<Item> items) : lex_(lex), items_(std::move(items)) {}

  Body parse_template() {
    auto [body, stop] = parse_body({});
    return std::move(body);
  }

 private:
  std::pair<Body, std::string> parse_body(const std::vector<std::string>& stops);
  Stmt parse_if();
  Stmt parse_for();
  Stmt parse_set();
  Body parse_until(const char* end_keyword);

  // Token access within the current tag.
  const Token& peek(size_t k = 0) const {
    static const Token kEnd;
    return tp_ + k < toks_->size() ? (*toks_)[tp_ + k] : kEnd;
  }
  size_t here() const { return tp_ < toks_->size() ? (*toks_)[tp_].pos : tag_end_; }
  bool is_op(const char* op, size_t k = 0) const {
    return peek(k).type == Token::Type::Op && peek(k).text == op;
  }
  bool is_name(const char* name, size_t k = 0) const {
    return peek(k).type == Token::Type::Name && peek(k).text == name;
  }
  bool accept_op(const char* op) { return is_op(op) ? (++tp_, true) : false; }
  bool accept_name(const char* name) { return is_name(name) ? (++tp_, true) : false; }
  void expect_op(const char* op) {
    if (!accept_op(op)) lex_.fail(here(), std::string("expected '") + op + "', got " + describe());
  }
  std::string expect_identifier() {
    if (peek().type != Token::Type::Name) lex_.fail(here(), "expected a name, got " + describe());
    return (*toks_)[tp_++].text;
  }
  void expect_end() {
    if (peek().type != Token::Type::End) lex_.fail(here(), "unexpected " + describe());
  }
  std::string describe() const {
    return peek().type == Token::Type::End ? "the end of the tag" : "'" + peek().text + "'";
  }
  ExprPtr node(Expr::Op op, size_t pos) const {
    auto e = std::make_unique<Expr>();
    e->op = op;
    lex_.position(pos, &e->line, &e->col);
    return e;
  }

  ExprPtr parse_expr();  // a if c else b
  ExprPtr parse_or();
  ExprPtr parse_and();
  ExprPtr parse_not();
  ExprPtr parse_compare();
  ExprPtr parse_math1();
  ExprPtr parse_concat();
  ExprPtr parse_math2();
  ExprPtr parse_pow();
  ExprPtr parse_unary(bool with_filter);
  ExprPtr parse_primary();
  ExprPtr parse_collection();
  ExprPtr parse_postfix(ExprPtr e);
  ExprPtr parse_filters(ExprPtr e);
  void parse_args(Expr& call);  // after '('

  const Lexer& lex_;
  std::vector<Item> items_;
  size_t ip_ = 0;
  const std::vector<Token>* toks_ = nullptr;
  size_t tp_ = 0, tag_end_ = 0;
};

std::pair<Body, std::string> Parser::parse_body(const std::vector<std::string>& stops) {
  Body body;
  while (ip_ < items_.size()) {
    Item& item = items_[ip_++];
    Stmt st;
    lex_.position(item.pos, &st.line, &st.col);
    if (item.kind == Item::Kind::Text) {
      st.text = std::move(item.text);
      body.push_back(std::move(st));
      continue;
    }
    toks_ = &item.tokens;
    tp_ = 0;
    tag_end_ = item.pos;
    if (item.kind == Item::Kind::Output) {
      st.kind = Stmt::Kind::Output;
      st.exprs.push_back(parse_expr());
      expect_end();
      body.push_back(std::move(st));
      continue;
    }
    const std::string kw = peek().type == Token::Type::Name ? peek().text : std::string();
    if (std::find(stops.begin(), stops.end(), kw) != stops.end()) {
      ++tp_;
      return {std::move(body), kw};
    }
    if (kw == "if") {
      body.push_back(parse_if());
    } else if (kw == "for") {
      body.push_back(parse_for());
    } else if (kw == "set") {
      body.push_back(parse_set());
    } else if (kw == "generation") {
      ++tp_;
      expect_end();
      st.kind = Stmt::Kind::Generation;
      st.bodies.push_back(parse_until("endgeneration"));
      body.push_back(std::move(st));
    } else if (kw.rfind("end", 0) == 0 || kw == "elif" || kw == "else") {
      lex_.fail(item.pos, "unexpected '" + kw + "'");
    } else {
      lex_.fail(item.pos, "unsupported tag '" + (kw.empty() ? describe() : kw) +
                              "'; supported: if/elif/else/endif, for/else/endfor, set, generation");
    }
  }
  if (!stops.empty())
    lex_.fail(tag_end_, "unexpected end of template, expected '" + stops.back() + "'");
  return {std::move(body), ""};
}

Body Parser::parse_until(const char* end_keyword) {
  auto [body, stop] = parse_body({end_keyword});
  expect_end();
  return std::move(body);
}

Stmt Parser::parse_if() {
  Stmt st;
  st.kind = Stmt::Kind::If;
  lex_.position(here(), &st.line, &st.col);
  ++tp_;
  while (true) {
    st.exprs.push_back(parse_expr());
    expect_end();
    auto [body, stop] = parse_body({"elif", "else", "endif"});
    st.bodies.push_back(std::move(body));
    if (stop == "elif") continue;
    if (stop == "else") {
      expect_end();
      st.bodies.push_back(parse_until("endif"));
    } else {
      expect_end();
    }
    return st;
  }
}

Stmt Parser::parse_for() {
  Stmt st;
  st.kind = Stmt::Kind::For;
  lex_.position(here(), &st.line, &st.col);
  ++tp_;
  do {
    st.targets.push_back(expect_identifier());
  } while (accept_op(","));
  if (!accept_name("in")) lex_.fail(here(), "expected 'in', got " + describe());
  st.exprs.push_back(parse_or());  // jinja2: no conditional expression here
  if (accept_name("if")) st.exprs.push_back(parse_expr());
  if (is_name("recursive")) lex_.fail(here(), "unsupported: recursive loops");
  expect_end();
  auto [body, stop] = parse_body({"else", "endfor"});
  st.bodies.push_back(std::move(body));
  expect_end();
  if (stop == "else") st.bodies.push_back(parse_until("endfor"));
  return st;
}

Stmt Parser::parse_set() {
  Stmt st;
  lex_.position(here(), &st.line, &st.col);
  ++tp_;
  st.kind = Stmt::Kind::Set;
  st.text = expect_identifier();
  if (accept_op(".")) {
    st.kind = Stmt::Kind::SetAttr;
    st.attr = expect_identifier();
  }
  if (!accept_op("="))
    lex_.fail(here(), "expected '=' (block {% set %} ... {% endset %} is not supported), got " +
                          describe());
  st.exprs.push_back(parse_expr());
  expect_end();
  return st;
}

ExprPtr Parser::parse_expr() {
  const size_t pos = here();
  ExprPtr e = parse_or();
  if (!accept_name("if")) return e;
  auto c = node(Expr::Op::Cond, pos);
  c->args.push_back(std::move(e));
  c->args.push_back(parse_or());
  c->args.push_back(accept_name("else") ? parse_expr() : nullptr);
  return c;
}

ExprPtr Parser::parse_or() {
  ExprPtr e = parse_and();
  while (is_name("or")) {
    auto o = node(Expr::Op::Or, here());
    ++tp_;
    o->args.push_back(std::move(e));
    o->args.push_back(parse_and());
    e = std::move(o);
  }
  return e;
}

ExprPtr Parser::parse_and() {
  ExprPtr e = parse_not();
  while (is_name("and")) {
    auto a = node(Expr::Op::And, here());
    ++tp_;
    a->args.push_back(std::move(e));
    a->args.push_back(parse_not());
    e = std::move(a);
  }
  return e;
}

ExprPtr Parser::parse_not() {
  if (!is_name("not")) return parse_compare();
  auto n = node(Expr::Op::Not, here());
  ++tp_;
  n->args.push_back(parse_not());
  return n;
}

ExprPtr Parser::parse_compare() {
  const size_t pos = here();
  ExprPtr e = parse_math1();
  ExprPtr c;
  while (true) {
    std::string op;
    if (peek().type == Token::Type::Op &&
        (peek().text == "==" || peek().text == "!=" || peek().text == "<" || peek().text == ">" ||
         peek().text == "<=" || peek().text == ">=")) {
      op = peek().text;
      ++tp_;
    } else if (accept_name("in")) {
      op = "in";
    } else if (is_name("not") && is_name("in", 1)) {
      tp_ += 2;
      op = "not in";
    } else {
      break;
    }
    if (!c) {
      c = node(Expr::Op::Compare, pos);
      c->args.push_back(std::move(e));
    }
    c->compare_ops.push_back(op);
    c->args.push_back(parse_math1());
  }
  return c ? std::move(c) : std::move(e);
}

ExprPtr Parser::parse_math1() {
  ExprPtr e = parse_concat();
  while (is_op("+") || is_op("-")) {
    auto b = node(Expr::Op::Binary, here());
    b->name = (*toks_)[tp_++].text;
    b->args.push_back(std::move(e));
    b->args.push_back(parse_concat());
    e = std::move(b);
  }
  return e;
}

ExprPtr Parser::parse_concat() {
  ExprPtr e = parse_math2();
  while (is_op("~")) {
    auto b = node(Expr::Op::Binary, here());
    b->name = (*toks_)[tp_++].text;
    b->args.push_back(std::move(e));
    b->args.push_back(parse_math2());
    e = std::move(b);
  }
  return e;
}

ExprPtr Parser::parse_math2() {
  ExprPtr e = parse_pow();
  while (is_op("*") || is_op("/") || is_op("//") || is_op("%")) {
    auto b = node(Expr::Op::Binary, here());
    b->name = (*toks_)[tp_++].text;
    b->args.push_back(std::move(e));
    b->args.push_back(parse_pow());
    e = std::move(b);
  }
  return e;
}

ExprPtr Parser::parse_pow() {
  ExprPtr e = parse_unary(true);
  while (is_op("**")) {
    auto b = node(Expr::Op::Binary, here());
    b->name = (*toks_)[tp_++].text;
    b->args.push_back(std::move(e));
    b->args.push_back(parse_unary(true));
    e = std::move(b);
  }
  return e;
}

ExprPtr Parser::parse_unary(bool with_filter) {
  ExprPtr e;
  if (is_op("-") || is_op("+")) {
    e = node(is_op("-") ? Expr::Op::Neg : Expr::Op::Pos, here());
    ++tp_;
    e->args.push_back(parse_unary(false));
  } else {
    e = parse_primary();
  }
  e = parse_postfix(std::move(e));
  return with_filter ? parse_filters(std::move(e)) : std::move(e);
}

ExprPtr Parser::parse_primary() {
  const Token& t = peek();
  const size_t pos = here();
  ExprPtr e;
  if (t.type == Token::Type::String) {
    std::string s;
    while (peek().type == Token::Type::String) {  // adjacent literals concatenate
      s += unescape(peek().text, lex_, here());
      ++tp_;
    }
    e = node(Expr::Op::Literal, pos);
    e->literal = Value::string(std::move(s));
    return e;
  }
  if (t.type == Token::Type::Int || t.type == Token::Type::Float) {
    e = node(Expr::Op::Literal, pos);
    e->literal = t.type == Token::Type::Int ? Value::integer(std::stoll(t.text))
                                            : Value::real(std::stod(t.text));
    ++tp_;
    return e;
  }
  if (t.type == Token::Type::Name) {
    const std::string& n = t.text;
    e = node(Expr::Op::Literal, pos);
    if (n == "true" || n == "True") {
      e->literal = Value::boolean(true);
    } else if (n == "false" || n == "False") {
      e->literal = Value::boolean(false);
    } else if (n == "none" || n == "None") {
      e->literal = Value::none();
    } else {
      e->op = Expr::Op::Name;
      e->name = n;
    }
    ++tp_;
    return e;
  }
  if (accept_op("(")) {
    e = parse_expr();
    if (is_op(",")) lex_.fail(here(), "unsupported: tuples");
    expect_op(")");
    return e;
  }
  if (is_op("[") || is_op("{")) return parse_collection();
  lex_.fail(pos, "expected an expression, got " + describe());
}

// [a, b] and {k: v} literals.
ExprPtr Parser::parse_collection() {
  const size_t pos = here();
  const bool list = accept_op("[");
  if (!list) expect_op("{");
  ExprPtr e = node(list ? Expr::Op::ListLit : Expr::Op::DictLit, pos);
  while (!is_op(list ? "]" : "}")) {
    e->args.push_back(parse_expr());
    if (!list) {
      expect_op(":");
      e->args.push_back(parse_expr());
    }
    if (!accept_op(",")) break;
  }
  expect_op(list ? "]" : "}");
  return e;
}

ExprPtr Parser::parse_postfix(ExprPtr e) {
  while (true) {
    const size_t pos = here();
    if (accept_op(".")) {
      auto a = node(Expr::Op::Attr, pos);
      a->name = expect_identifier();
      a->args.push_back(std::move(e));
      e = std::move(a);
    } else if (accept_op("[")) {
      auto sub = node(Expr::Op::Item, pos);
      sub->args.push_back(std::move(e));
      ExprPtr first = is_op(":") ? nullptr : parse_expr();
      if (is_op(":")) {
        sub->op = Expr::Op::Slice;
        sub->args.push_back(std::move(first));
        for (int k = 0; k < 2; ++k) {
          if (!accept_op(":")) {
            sub->args.push_back(nullptr);
            continue;
          }
          sub->args.push_back(is_op(":") || is_op("]") ? nullptr : parse_expr());
        }
      } else {
        sub->args.push_back(std::move(first));
      }
      expect_op("]");
      e = std::move(sub);
    } else if (accept_op("(")) {
      auto c = node(Expr::Op::Call, pos);
      c->args.push_back(std::move(e));
      c->keywords.push_back("");
      parse_args(*c);
      e = std::move(c);
    } else {
      return e;
    }
  }
}

void Parser::parse_args(Expr& call) {
  while (!is_op(")")) {
    std::string kw;
    if (peek().type == Token::Type::Name && is_op("=", 1)) {
      kw = peek().text;
      tp_ += 2;
    }
    call.keywords.push_back(kw);
    call.args.push_back(parse_expr());
    if (!accept_op(",")) break;
  }
  expect_op(")");
}

ExprPtr Parser::parse_filters(ExprPtr e) {
  while (true) {
    const size_t pos = here();
    if (accept_op("|")) {
      auto f = node(Expr::Op::Filter, pos);
      f->name = expect_identifier();
      f->args.push_back(std::move(e));
      f->keywords.push_back("");
      if (accept_op("(")) parse_args(*f);
      e = std::move(f);
    } else if (accept_name("is")) {
      auto t = node(Expr::Op::Test, pos);
      t->negated = accept_name("not");
      t->name = expect_identifier();
      t->args.push_back(std::move(e));
      t->keywords.push_back("");
      if (accept_op("(")) parse_args(*t);
      e = std::move(t);
    } else {
      return e;
    }
  }
}

}  // namespace

Program parse(std::string_view source, const std::string& name) {
  Lexer lex(source, name);
  Program p;
  p.name = name;
  p.body = Parser(lex, lex.run()).parse_template();
  return p;
}

}  // namespace loom::data::jinja
