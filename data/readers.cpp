// Readers: content sniffing, UTF-8 normalisation, and text extraction for txt, md,
// html (gumbo) and pdf (poppler-cpp).
#include <gumbo.h>

#include <poppler-document.h>
#include <poppler-global.h>
#include <poppler-page.h>
#include <algorithm>
#include <cstring>
#include <mutex>

#include "data/readers.hpp"
#include "ldqa/error.hpp"
#include "util/utf8.hpp"

namespace ldqa::data {

namespace {

constexpr std::string_view kReplacement = "\xEF\xBF\xBD";  // U+FFFD

std::string lower_extension(const std::filesystem::path& path) {
  std::string ext = path.extension().string();
  std::transform(ext.begin(), ext.end(), ext.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return ext;
}

bool looks_binary(std::string_view bytes) {
  const std::size_t n = std::min<std::size_t>(bytes.size(), 8192);
  std::size_t control = 0;
  for (std::size_t i = 0; i < n; ++i) {
    const auto c = static_cast<unsigned char>(bytes[i]);
    if (c == 0) return true;  // also UTF-16 text, which ldqa does not read
    if (c < 0x09 || (c > 0x0D && c < 0x20 && c != 0x1B)) ++control;
  }
  return n > 0 && control * 10 > n;
}

// Squeezes the extracted text: trailing spaces dropped, at most one blank line.
std::string tidy_paragraphs(const std::string& in) {
  std::string out;
  out.reserve(in.size());
  int newlines = 0;
  for (char c : in) {
    if (c == '\n') {
      while (!out.empty() && out.back() == ' ') out.pop_back();
      ++newlines;
      continue;
    }
    if (newlines > 0) {
      if (!out.empty()) out.append(newlines >= 2 ? "\n\n" : "\n");
      newlines = 0;
      if (c == ' ') continue;  // no leading space on a line
    }
    if (c == ' ' && (out.empty() || out.back() == ' ')) continue;
    out.push_back(c);
  }
  while (!out.empty() && out.back() == ' ') out.pop_back();
  return out;
}

// ---------------------------------------------------------------------------- HTML
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

void node_text(const GumboNode* node, std::string& out, bool in_pre) {
  if (node->type == GUMBO_NODE_TEXT || node->type == GUMBO_NODE_CDATA || node->type == GUMBO_NODE_WHITESPACE) {
    const char* t = node->v.text.text;
    for (; *t; ++t) {
      const char c = *t;
      if (in_pre) {
        out.push_back(c == '\t' ? ' ' : c);
      } else if (c == ' ' || c == '\n' || c == '\t' || c == '\r' || c == '\f') {
        if (!out.empty() && out.back() != ' ' && out.back() != '\n') out.push_back(' ');
      } else {
        out.push_back(c);
      }
    }
    return;
  }
  if (node->type != GUMBO_NODE_ELEMENT && node->type != GUMBO_NODE_DOCUMENT) return;
  const GumboVector* children = nullptr;
  GumboTag tag = GUMBO_TAG_UNKNOWN;
  if (node->type == GUMBO_NODE_ELEMENT) {
    tag = node->v.element.tag;
    if (is_dropped(tag)) return;
    if (tag == GUMBO_TAG_BR) {
      out.push_back('\n');
      return;
    }
    children = &node->v.element.children;
  } else {
    children = &node->v.document.children;
  }
  const bool block = is_block(tag);
  if (block) out.append("\n\n");
  for (unsigned i = 0; i < children->length; ++i)
    node_text(static_cast<const GumboNode*>(children->data[i]), out, in_pre || tag == GUMBO_TAG_PRE);
  if (block) out.append("\n\n");
  if (tag == GUMBO_TAG_TD || tag == GUMBO_TAG_TH) out.push_back(' ');
}

const GumboNode* find_tag(const GumboNode* node, GumboTag wanted) {
  if (node->type != GUMBO_NODE_ELEMENT && node->type != GUMBO_NODE_DOCUMENT) return nullptr;
  if (node->type == GUMBO_NODE_ELEMENT && node->v.element.tag == wanted) return node;
  const GumboVector& children = node->type == GUMBO_NODE_ELEMENT ? node->v.element.children : node->v.document.children;
  for (unsigned i = 0; i < children.length; ++i)
    if (const GumboNode* hit = find_tag(static_cast<const GumboNode*>(children.data[i]), wanted)) return hit;
  return nullptr;
}

ExtractedText read_html(std::string_view bytes) {
  ExtractedText out;
  out.format = "html";
  const std::string clean = normalise_utf8(bytes, &out.replaced);
  GumboOutput* doc = gumbo_parse_with_options(&kGumboDefaultOptions, clean.data(), clean.size());
  if (doc == nullptr) fail("HTML parser gave up");
  std::string raw;
  node_text(doc->document, raw, false);
  // The head is dropped from the text; its title is read on its own (or the first h1).
  const GumboNode* title = find_tag(doc->document, GUMBO_TAG_TITLE);
  if (title == nullptr) title = find_tag(doc->document, GUMBO_TAG_H1);
  if (title != nullptr) {
    std::string t;
    node_text(title, t, false);
    out.title = tidy_paragraphs(t);
  }
  gumbo_destroy_output(&kGumboDefaultOptions, doc);
  out.text = tidy_paragraphs(raw);
  return out;
}

// ----------------------------------------------------------------------------- PDF
void silence_poppler(const std::string&, void*) {}

ExtractedText read_pdf(std::string_view bytes) {
  static std::once_flag quiet;
  std::call_once(quiet, [] { poppler::set_debug_error_function(silence_poppler, nullptr); });
  ExtractedText out;
  out.format = "pdf";
  std::unique_ptr<poppler::document> doc(
      poppler::document::load_from_raw_data(bytes.data(), static_cast<int>(bytes.size())));
  if (!doc) fail("not a readable PDF (corrupt or truncated)");
  if (doc->is_locked()) fail("encrypted PDF");
  const auto title = doc->info_key("Title").to_utf8();
  out.title = normalise_utf8(std::string_view(title.data(), title.size()), nullptr);
  const int pages = doc->pages();
  for (int i = 0; i < pages; ++i) {
    std::unique_ptr<poppler::page> page(doc->create_page(i));
    if (!page) continue;
    const auto utf8 = page->text().to_utf8();
    std::string text = normalise_utf8(std::string_view(utf8.data(), utf8.size()), &out.replaced);
    std::replace(text.begin(), text.end(), '\f', '\n');
    text = tidy_paragraphs(text);
    if (text.empty()) continue;
    if (!out.text.empty()) out.text.append("\n\n");
    PageSpan span;
    span.page = i + 1;
    span.byte_start = static_cast<int64_t>(out.text.size());
    out.text.append(text);
    span.byte_end = static_cast<int64_t>(out.text.size());
    out.pages.push_back(span);
  }
  return out;
}

std::string first_line_title(const std::string& text, bool markdown) {
  std::size_t at = 0;
  while (at < text.size()) {
    const std::size_t end = std::min(text.find('\n', at), text.size());
    std::string_view line(text.data() + at, end - at);
    if (markdown && line.rfind("# ", 0) == 0) return std::string(line.substr(2, 200));
    if (!markdown && !line.empty()) return std::string(line.substr(0, 200));
    at = end + 1;
  }
  return "";
}

}  // namespace

std::string normalise_utf8(std::string_view in, int64_t* replaced) {
  std::string out;
  out.reserve(in.size());
  int64_t bad = 0;
  std::size_t i = 0;
  if (in.substr(0, 3) == "\xEF\xBB\xBF") i = 3;
  const auto* s = reinterpret_cast<const unsigned char*>(in.data());
  const std::size_t n = in.size();
  while (i < n) {
    const unsigned char c = s[i];
    if (c < 0x80) {
      if (c == 0) {
        out.append(kReplacement);
        ++bad;
      } else if (c == '\r') {
        out.push_back('\n');
        if (i + 1 < n && s[i + 1] == '\n') ++i;
      } else {
        out.push_back(static_cast<char>(c));
      }
      ++i;
      continue;
    }
    const std::size_t len = utf8::sequence_length(in, i);
    if (len == 0) {
      out.append(kReplacement);
      ++bad;
      ++i;
      continue;
    }
    out.append(in.substr(i, len));
    i += len;
  }
  if (replaced) *replaced += bad;
  return out;
}

bool has_supported_extension(const std::filesystem::path& path) {
  const std::string ext = lower_extension(path);
  return ext == ".txt" || ext == ".text" || ext == ".md" || ext == ".markdown" || ext == ".html" || ext == ".htm" ||
         ext == ".xhtml" || ext == ".pdf";
}

std::variant<ExtractedText, SkipReason> extract_text(const std::filesystem::path& path, std::string_view bytes) {
  const std::string ext = lower_extension(path);
  if (bytes.substr(0, 5) == "%PDF-") return read_pdf(bytes);
  if (ext == ".pdf") return read_pdf(bytes);  // a PDF without its header: poppler decides
  if (!has_supported_extension(path))
    return SkipReason{"unsupported file type" + (ext.empty() ? std::string() : " " + ext)};
  if (looks_binary(bytes)) return SkipReason{"binary content in a " + ext + " file"};
  if (ext == ".html" || ext == ".htm" || ext == ".xhtml") return read_html(bytes);
  ExtractedText out;
  out.format = (ext == ".md" || ext == ".markdown") ? "md" : "txt";
  out.text = normalise_utf8(bytes, &out.replaced);
  out.title = first_line_title(out.text, out.format == "md");
  if (out.title.empty()) out.title = path.stem().string();
  return out;
}

}  // namespace ldqa::data
