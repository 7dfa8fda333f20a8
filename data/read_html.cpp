// HTML: gumbo's HTML5 parse for ordinary pages; a linear tag-stripping read for
// hostile ones. Gumbo builds and frees its tree recursively and re-opens every open
// formatting element (<b>, <font id=..>, ...) at each new block, so thousands of nested
// or unclosed tags cost it quadratic time, unbounded memory or the whole stack; a
// linear pre-scan sends such pages to the stripper, and the tree walk here is iterative.
#include <gumbo.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <cstring>
#include <vector>

#include "data/readers_internal.hpp"
#include "ldqa/error.hpp"
#include "util/utf8.hpp"

namespace ldqa::data::detail {

namespace {

bool is_block(GumboTag tag) {
  switch (tag) {
    case GUMBO_TAG_P:
    case GUMBO_TAG_DIV:
    case GUMBO_TAG_H1:
    case GUMBO_TAG_H2:
    case GUMBO_TAG_H3:
    case GUMBO_TAG_H4:
    case GUMBO_TAG_H5:
    case GUMBO_TAG_H6:
    case GUMBO_TAG_LI:
    case GUMBO_TAG_UL:
    case GUMBO_TAG_OL:
    case GUMBO_TAG_DL:
    case GUMBO_TAG_DT:
    case GUMBO_TAG_DD:
    case GUMBO_TAG_TR:
    case GUMBO_TAG_TABLE:
    case GUMBO_TAG_SECTION:
    case GUMBO_TAG_ARTICLE:
    case GUMBO_TAG_BLOCKQUOTE:
    case GUMBO_TAG_PRE:
    case GUMBO_TAG_HEADER:
    case GUMBO_TAG_FOOTER:
    case GUMBO_TAG_NAV:
    case GUMBO_TAG_ASIDE:
    case GUMBO_TAG_FIGURE:
    case GUMBO_TAG_FIGCAPTION:
    case GUMBO_TAG_HR:
    case GUMBO_TAG_FORM:
    case GUMBO_TAG_MAIN:
    case GUMBO_TAG_ADDRESS:
    case GUMBO_TAG_BODY:
    case GUMBO_TAG_CAPTION:
    case GUMBO_TAG_DETAILS:
    case GUMBO_TAG_SUMMARY:
      return true;
    default:
      return false;
  }
}

bool is_dropped(GumboTag tag) {
  return tag == GUMBO_TAG_SCRIPT || tag == GUMBO_TAG_STYLE || tag == GUMBO_TAG_NOSCRIPT || tag == GUMBO_TAG_TEMPLATE ||
         tag == GUMBO_TAG_HEAD || tag == GUMBO_TAG_IFRAME || tag == GUMBO_TAG_OBJECT;
}

// ------------------------------------------------------------------ the pre-scan
// Above either bound the page is read by the stripper (a real page nests a few dozen
// deep and keeps a handful of formatting elements open).
constexpr int kMaxNesting = 400;
constexpr int kMaxOpenFormatting = 32;

bool ascii_letter(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }

std::string lower_name(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

bool is_void(const std::string& name) {
  static const std::array<const char*, 16> kVoid = {"area",  "base",  "br",     "col",  "embed", "hr",
                                                    "img",   "input", "link",   "meta", "param", "source",
                                                    "track", "wbr",   "keygen", "frame"};
  return std::any_of(kVoid.begin(), kVoid.end(), [&](const char* v) { return name == v; });
}

bool is_formatting(const std::string& name) {
  static const std::array<const char*, 14> kFormatting = {"a",    "b", "big",   "code",   "em",     "font", "i",
                                                          "nobr", "s", "small", "strike", "strong", "tt",   "u"};
  return std::any_of(kFormatting.begin(), kFormatting.end(), [&](const char* v) { return name == v; });
}

bool is_raw_text(const std::string& name) {
  return name == "script" || name == "style" || name == "textarea" || name == "title" || name == "xmp";
}

struct Tag {
  std::string name;  // lower case
  bool end = false, self_closing = false;
  std::size_t next = 0;  // just past the tag
};

// The tag at bytes[at] == '<', if any (comments and doctypes are skipped by the caller).
bool parse_tag(std::string_view b, std::size_t at, Tag& tag) {
  std::size_t i = at + 1;
  tag.end = i < b.size() && b[i] == '/';
  if (tag.end) ++i;
  if (i >= b.size() || !ascii_letter(b[i])) return false;
  const std::size_t name_start = i;
  while (i < b.size() && (std::isalnum(static_cast<unsigned char>(b[i])) || b[i] == '-' || b[i] == ':')) ++i;
  tag.name = lower_name(b.substr(name_start, i - name_start));
  // Attributes: up to the '>' outside quotes.
  char quote = 0;
  for (; i < b.size(); ++i) {
    const char c = b[i];
    if (quote) {
      if (c == quote) quote = 0;
    } else if (c == '"' || c == '\'') {
      quote = c;
    } else if (c == '>') {
      break;
    }
  }
  tag.self_closing = i > 0 && i < b.size() && b[i - 1] == '/';
  tag.next = i < b.size() ? i + 1 : b.size();
  return true;
}

// Where a comment, doctype or processing instruction at bytes[at] ends.
std::size_t skip_markup_declaration(std::string_view b, std::size_t at) {
  if (b.substr(at, 4) == "<!--") {
    const auto end = b.find("-->", at + 4);
    return end == std::string_view::npos ? b.size() : end + 3;
  }
  const auto end = b.find('>', at);
  return end == std::string_view::npos ? b.size() : end + 1;
}

// Past the raw text of a <script>, <style>... opened before `at`.
std::size_t skip_raw_text(std::string_view b, std::size_t at, const std::string& name) {
  for (std::size_t i = at; (i = b.find("</", i)) != std::string_view::npos; i += 2)
    if (lower_name(b.substr(i + 2, name.size())) == name) return i;
  return b.size();
}

// True when gumbo would be asked to build a pathological tree.
bool too_hostile_for_gumbo(std::string_view b) {
  int depth = 0, formatting = 0;
  std::vector<int> open_formatting_by_name(14, 0);
  for (std::size_t i = 0; (i = b.find('<', i)) != std::string_view::npos;) {
    if (i + 1 < b.size() && (b[i + 1] == '!' || b[i + 1] == '?')) {
      i = skip_markup_declaration(b, i);
      continue;
    }
    Tag tag;
    if (!parse_tag(b, i, tag)) {
      ++i;
      continue;
    }
    i = tag.next;
    if (tag.end) {
      if (!is_void(tag.name)) depth = std::max(0, depth - 1);
      if (is_formatting(tag.name)) formatting = std::max(0, formatting - 1);
      continue;
    }
    if (!is_void(tag.name) && !tag.self_closing) ++depth;
    if (is_formatting(tag.name)) ++formatting;
    if (depth > kMaxNesting || formatting > kMaxOpenFormatting) return true;
    if (is_raw_text(tag.name)) i = skip_raw_text(b, i, tag.name);
  }
  return false;
}

// ------------------------------------------------------------------ the stripper
bool is_block_name(const std::string& name) {
  static const std::array<const char*, 34> kBlocks = {
      "p",          "div",  "h1",      "h2",     "h3",      "h4",      "h5",     "h6",         "li",
      "ul",         "ol",   "dl",      "dt",     "dd",      "tr",      "table",  "section",    "article",
      "blockquote", "pre",  "header",  "footer", "nav",     "aside",   "figure", "figcaption", "hr",
      "form",       "main", "address", "body",   "caption", "details", "summary"};
  return std::any_of(kBlocks.begin(), kBlocks.end(), [&](const char* v) { return name == v; });
}

// Elements whose content is not text (the head is not among them: its <title> is
// read, its scripts and styles are dropped one by one).
bool is_dropped_name(const std::string& name) {
  return name == "script" || name == "style" || name == "noscript" || name == "template" || name == "iframe" ||
         name == "object";
}

void append_entity(std::string_view b, std::size_t& i, std::string& out) {
  // &name; or &#NNN; or &#xHH; ; anything else stays as written.
  const auto semi = b.find(';', i);
  if (semi == std::string_view::npos || semi - i > 10) {
    out.push_back('&');
    ++i;
    return;
  }
  const std::string_view name = b.substr(i + 1, semi - i - 1);
  uint32_t cp = 0;
  if (!name.empty() && name[0] == '#') {
    const bool hex = name.size() > 1 && (name[1] == 'x' || name[1] == 'X');
    for (char c : name.substr(hex ? 2 : 1)) {
      const int digit = std::isdigit(static_cast<unsigned char>(c)) ? c - '0'
                        : hex && std::isxdigit(static_cast<unsigned char>(c))
                            ? std::tolower(static_cast<unsigned char>(c)) - 'a' + 10
                            : -1;
      if (digit < 0 || cp > 0x10FFFF) {
        cp = 0xFFFD;
        break;
      }
      cp = cp * (hex ? 16 : 10) + static_cast<uint32_t>(digit);
    }
    if (cp == 0 || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) cp = 0xFFFD;
  } else {
    static const std::pair<const char*, uint32_t> kNamed[] = {{"amp", '&'},      {"lt", '<'},       {"gt", '>'},
                                                              {"quot", '"'},     {"apos", '\''},    {"nbsp", 0xA0},
                                                              {"mdash", 0x2014}, {"ndash", 0x2013}, {"hellip", 0x2026}};
    for (const auto& [n, v] : kNamed)
      if (name == n) cp = v;
    if (cp == 0) {
      out.push_back('&');
      ++i;
      return;
    }
  }
  utf8::append(out, cp);
  i = semi + 1;
}

// Text of hostile HTML in one pass: tags dropped (blocks become paragraph breaks),
// script/style/head content dropped, entities decoded; the title from <title>.
ExtractedText strip_tags(std::string_view b) {
  ExtractedText out;
  out.format = "html";
  std::string raw, title;
  bool in_title = false;
  for (std::size_t i = 0; i < b.size();) {
    const char c = b[i];
    if (c == '<') {
      if (i + 1 < b.size() && (b[i + 1] == '!' || b[i + 1] == '?')) {
        i = skip_markup_declaration(b, i);
        continue;
      }
      Tag tag;
      if (parse_tag(b, i, tag)) {
        i = tag.next;
        if (tag.name == "title") {
          in_title = !tag.end;
        } else if (!tag.end && is_dropped_name(tag.name)) {
          i = skip_raw_text(b, i, tag.name);  // up to its end tag
        } else if (tag.name == "br") {
          raw.push_back('\n');
        } else if (is_block_name(tag.name)) {
          raw.append("\n\n");
        } else if (tag.name == "td" || tag.name == "th") {
          raw.push_back(' ');
        }
        continue;
      }
    }
    std::string& target = in_title ? title : raw;
    if (c == '&') {
      append_entity(b, i, target);
      continue;
    }
    target.push_back(c == '\t' || c == '\r' || c == '\f' ? ' ' : c);
    ++i;
  }
  // Whitespace inside a paragraph folds to one space, as a browser shows it.
  std::string folded;
  folded.reserve(raw.size());
  for (std::size_t i = 0; i < raw.size(); ++i) {
    if (raw[i] == '\n' && !(i + 1 < raw.size() && raw[i + 1] == '\n') && !(i > 0 && raw[i - 1] == '\n')) {
      folded.push_back(' ');
      continue;
    }
    folded.push_back(raw[i]);
  }
  out.text = tidy_paragraphs(folded);
  std::replace(title.begin(), title.end(), '\n', ' ');
  out.title = tidy_paragraphs(title);
  return out;
}

// ------------------------------------------------------------------ gumbo's tree
// Text of a subtree, depth-first without recursion (a tree as deep as the page nests).
void node_text(const GumboNode* root, std::string& out) {
  struct Step {
    const GumboNode* node;
    bool in_pre;
    bool leaving;  // after the children: close the block
  };
  std::vector<Step> stack{{root, false, false}};
  while (!stack.empty()) {
    const Step step = stack.back();
    stack.pop_back();
    const GumboNode* node = step.node;
    if (step.leaving) {
      const GumboTag tag = node->v.element.tag;
      if (is_block(tag)) out.append("\n\n");
      if (tag == GUMBO_TAG_TD || tag == GUMBO_TAG_TH) out.push_back(' ');
      continue;
    }
    if (node->type == GUMBO_NODE_TEXT || node->type == GUMBO_NODE_CDATA || node->type == GUMBO_NODE_WHITESPACE) {
      for (const char* t = node->v.text.text; *t; ++t) {
        const char c = *t;
        if (step.in_pre) {
          out.push_back(c == '\t' ? ' ' : c);
        } else if (c == ' ' || c == '\n' || c == '\t' || c == '\r' || c == '\f') {
          if (!out.empty() && out.back() != ' ' && out.back() != '\n') out.push_back(' ');
        } else {
          out.push_back(c);
        }
      }
      continue;
    }
    if (node->type != GUMBO_NODE_ELEMENT && node->type != GUMBO_NODE_DOCUMENT) continue;
    const GumboVector* children = nullptr;
    bool in_pre = step.in_pre;
    if (node->type == GUMBO_NODE_ELEMENT) {
      const GumboTag tag = node->v.element.tag;
      if (is_dropped(tag)) continue;
      if (tag == GUMBO_TAG_BR) {
        out.push_back('\n');
        continue;
      }
      if (is_block(tag)) out.append("\n\n");
      stack.push_back({node, in_pre, true});
      in_pre = in_pre || tag == GUMBO_TAG_PRE;
      children = &node->v.element.children;
    } else {
      children = &node->v.document.children;
    }
    for (unsigned i = children->length; i-- > 0;)
      stack.push_back({static_cast<const GumboNode*>(children->data[i]), in_pre, false});
  }
}

const GumboNode* find_tag(const GumboNode* root, GumboTag wanted) {
  std::vector<const GumboNode*> stack{root};
  while (!stack.empty()) {
    const GumboNode* node = stack.back();
    stack.pop_back();
    if (node->type != GUMBO_NODE_ELEMENT && node->type != GUMBO_NODE_DOCUMENT) continue;
    if (node->type == GUMBO_NODE_ELEMENT && node->v.element.tag == wanted) return node;
    const GumboVector& children =
        node->type == GUMBO_NODE_ELEMENT ? node->v.element.children : node->v.document.children;
    for (unsigned i = children.length; i-- > 0;) stack.push_back(static_cast<const GumboNode*>(children.data[i]));
  }
  return nullptr;
}

}  // namespace

ExtractedText read_html(std::string_view bytes) {
  int64_t replaced = 0;
  const std::string clean = normalise_utf8(bytes, &replaced);
  if (too_hostile_for_gumbo(clean)) {
    ExtractedText out = strip_tags(clean);
    out.replaced = replaced;
    out.note = "nesting or unclosed tags beyond what an HTML parser should build: read with the tags stripped";
    return out;
  }
  ExtractedText out;
  out.format = "html";
  out.replaced = replaced;
  GumboOutput* doc = gumbo_parse_with_options(&kGumboDefaultOptions, clean.data(), clean.size());
  if (doc == nullptr) fail("HTML parser gave up");
  std::string raw;
  node_text(doc->document, raw);
  // The head is dropped from the text; its title is read on its own (or the first h1).
  const GumboNode* title = find_tag(doc->document, GUMBO_TAG_TITLE);
  if (title == nullptr) title = find_tag(doc->document, GUMBO_TAG_H1);
  if (title != nullptr) {
    std::string t;
    node_text(title, t);
    out.title = tidy_paragraphs(t);
  }
  gumbo_destroy_output(&kGumboDefaultOptions, doc);
  out.text = tidy_paragraphs(raw);
  return out;
}

}  // namespace ldqa::data::detail
