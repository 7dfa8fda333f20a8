// Readers: what a file's bytes hold, decided by content first. gzip is opened (once),
// a PDF is known by its magic, a byte-order mark names UTF-8/16/32, binary bytes are
// skipped; then the name decides between HTML, Markdown and plain text (a file with
// no or an unknown extension that holds text is plain text: README, AUTHORS, copyright).
#include <algorithm>
#include <array>
#include <cctype>

#include "data/readers.hpp"
#include "data/readers_internal.hpp"
#include "ldqa/error.hpp"
#include "util/utf8.hpp"

namespace ldqa::data {

namespace {

std::string lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return s;
}

std::string lower_extension(const std::filesystem::path& path) { return lower(path.extension().string()); }

bool is_html_extension(const std::string& ext) { return ext == ".html" || ext == ".htm" || ext == ".xhtml"; }
bool is_markdown_extension(const std::string& ext) { return ext == ".md" || ext == ".markdown"; }
bool is_text_extension(const std::string& ext) { return ext == ".txt" || ext == ".text"; }

// Formats whose bytes are never prose: skipped by name, without reading them.
bool is_binary_extension(const std::string& ext) {
  static const std::array<const char*, 56> kBinary = {
      ".jpg", ".jpeg", ".png",   ".gif", ".bmp",  ".tif",  ".tiff",  ".webp", ".ico",  ".heic", ".mp3",  ".mp4",
      ".m4a", ".wav",  ".flac",  ".ogg", ".opus", ".avi",  ".mkv",   ".mov",  ".webm", ".zip",  ".tar",  ".tgz",
      ".bz2", ".xz",   ".7z",    ".rar", ".zst",  ".jar",  ".deb",   ".rpm",  ".so",   ".o",    ".a",    ".exe",
      ".dll", ".bin",  ".class", ".pyc", ".wasm", ".doc",  ".docx",  ".xls",  ".xlsx", ".ppt",  ".pptx", ".odt",
      ".ods", ".odp",  ".epub",  ".ttf", ".otf",  ".woff", ".woff2", ".iso"};
  return std::any_of(kBinary.begin(), kBinary.end(), [&](const char* b) { return ext == b; });
}

// Binary: a NUL byte, many control characters, or mostly bytes that are not UTF-8
// (checked on the first 8 KiB of text already decoded from UTF-16/32).
bool looks_binary(std::string_view bytes) {
  const std::size_t n = std::min<std::size_t>(bytes.size(), 8192);
  std::size_t control = 0, high = 0, invalid = 0;
  for (std::size_t i = 0; i < n;) {
    const auto c = static_cast<unsigned char>(bytes[i]);
    if (c == 0) return true;
    if (c < 0x09 || (c > 0x0D && c < 0x20 && c != 0x1B) || c == 0x7F) ++control;
    if (c < 0x80) {
      ++i;
      continue;
    }
    ++high;
    const std::size_t len = utf8::sequence_length(bytes, i);
    if (len == 0 && i + 4 <= n) ++invalid;  // a sequence cut by the 8 KiB window is not held against it
    i += len ? len : 1;
  }
  return n > 0 && (control * 10 > n || (high > 64 && invalid * 2 > high));
}

bool starts_like_html(std::string_view bytes) {
  std::size_t i = 0;
  while (i < bytes.size() && i < 1024 && std::isspace(static_cast<unsigned char>(bytes[i]))) ++i;
  const std::string head = lower(std::string(bytes.substr(i, 15)));
  return head.rfind("<!doctype html", 0) == 0 || head.rfind("<html", 0) == 0;
}

std::string first_line_title(const std::string& text, bool markdown) {
  std::size_t at = 0;
  while (at < text.size()) {
    const std::size_t end = std::min(text.find('\n', at), text.size());
    std::string_view line(text.data() + at, end - at);
    if (markdown && line.rfind("# ", 0) == 0) return std::string(utf8::prefix(line.substr(2), 200));
    if (!markdown && !line.empty()) return std::string(utf8::prefix(line, 200));
    at = end + 1;
  }
  return "";
}

// Text in whatever Unicode encoding its byte-order mark names, as UTF-8 bytes (not yet
// normalised); encoding "" or "utf-8" passes through.
std::string decoded(std::string_view bytes, std::string_view encoding, int64_t* replaced) {
  if (encoding.empty() || encoding == "utf-8") return std::string(bytes);
  return detail::utf16_32_to_utf8(bytes, encoding, replaced);
}

std::variant<ExtractedText, SkipReason> read_text(const std::filesystem::path& path, std::string_view bytes) {
  const std::string ext = lower_extension(path);
  ExtractedText out;
  const std::string_view encoding = detail::bom_encoding(bytes);
  const std::string text = decoded(bytes, encoding, &out.replaced);
  if (looks_binary(text))
    return SkipReason{"binary content" + (ext.empty() ? std::string() : " in a " + ext + " file")};
  if (encoding.size() > 5) out.note = "read as " + std::string(encoding);
  if (is_html_extension(ext) || (!is_markdown_extension(ext) && !is_text_extension(ext) && starts_like_html(text))) {
    ExtractedText html = detail::read_html(text);
    html.replaced += out.replaced;
    if (!out.note.empty()) html.note = out.note + (html.note.empty() ? "" : "; " + html.note);
    return html;
  }
  out.format = is_markdown_extension(ext) ? "md" : "txt";
  out.text = normalise_utf8(text, &out.replaced);
  out.title = first_line_title(out.text, out.format == "md");
  if (out.title.empty()) out.title = path.stem().string();
  return out;
}

}  // namespace

bool has_supported_extension(const std::filesystem::path& path) {
  std::string ext = lower_extension(path);
  if (ext == ".gz") ext = lower_extension(path.stem());
  return is_text_extension(ext) || is_markdown_extension(ext) || is_html_extension(ext) || ext == ".pdf";
}

bool may_hold_text(const std::filesystem::path& path, std::string_view first_bytes) {
  const std::string ext = lower_extension(path);
  if (is_binary_extension(ext)) return false;
  if (detail::is_gzip(first_bytes) || first_bytes.substr(0, 5) == "%PDF-") return true;
  const std::string_view encoding = detail::bom_encoding(first_bytes);
  if (!encoding.empty() && encoding != "utf-8") {
    const std::size_t unit = encoding.substr(0, 6) == "utf-32" ? 4 : 2;
    return !looks_binary(
        detail::utf16_32_to_utf8(first_bytes.substr(0, first_bytes.size() / unit * unit), encoding, nullptr));
  }
  return !looks_binary(first_bytes);
}

namespace {

std::variant<ExtractedText, SkipReason> extract(const std::filesystem::path& path, std::string_view bytes);

// A U+FEFF from inside a page (its markup gone) must not open the text: it would read as
// a byte-order mark.
std::variant<ExtractedText, SkipReason> finished(std::variant<ExtractedText, SkipReason> result) {
  if (auto* t = std::get_if<ExtractedText>(&result)) {
    constexpr std::string_view kBom = "\xEF\xBB\xBF";
    std::size_t cut = 0;
    while (std::string_view(t->text).substr(cut, 3) == kBom) cut += 3;
    if (cut) {
      t->text.erase(0, cut);
      for (auto& page : t->pages) {
        page.byte_start = std::max<int64_t>(0, page.byte_start - static_cast<int64_t>(cut));
        page.byte_end = std::max<int64_t>(0, page.byte_end - static_cast<int64_t>(cut));
      }
    }
    while (std::string_view(t->title).substr(0, 3) == kBom) t->title.erase(0, 3);
  }
  return result;
}

}  // namespace

std::variant<ExtractedText, SkipReason> extract_text(const std::filesystem::path& path, std::string_view bytes) {
  return finished(extract(path, bytes));
}

namespace {

std::variant<ExtractedText, SkipReason> extract(const std::filesystem::path& path, std::string_view bytes) {
  const std::string ext = lower_extension(path);
  if (detail::is_gzip(bytes)) {
    // Read once through gzip (README.gz, changelog.Debian.gz): the name inside is the
    // name without .gz. A gzip inside is not opened again.
    const std::filesystem::path inner = ext == ".gz" ? path.parent_path() / path.stem() : path;
    bool truncated = false;
    const std::string data = detail::gunzip(bytes, &truncated);
    if (detail::is_gzip(data)) return SkipReason{"gzip inside gzip"};
    if (!may_hold_text(inner, std::string_view(data).substr(0, 8192)))
      return SkipReason{"binary content inside gzip" +
                        (lower_extension(inner).empty() ? std::string() : " (" + lower_extension(inner) + ")")};
    auto result = extract(inner, data);
    if (auto* text = std::get_if<ExtractedText>(&result)) {
      text->note = "read through gzip" + std::string(truncated ? ", cut at 512 MiB of text" : "") +
                   (text->note.empty() ? "" : "; " + text->note);
    }
    return result;
  }
  if (bytes.substr(0, 5) == "%PDF-") {
    try {
      return detail::read_pdf(bytes);
    } catch (const Error& e) {
      // A text file that only begins like a PDF (notes about the format, a log) is text.
      if (ext != ".pdf" && !looks_binary(bytes)) {
        auto text = read_text(path, bytes);
        if (auto* t = std::get_if<ExtractedText>(&text))
          t->note = std::string("begins like a PDF but is not one (") + e.what() + "): read as text";
        return text;
      }
      throw;
    }
  }
  if (ext == ".pdf") return detail::read_pdf(bytes);  // a PDF without its header: poppler decides
  if (is_binary_extension(ext)) return SkipReason{"unsupported file type " + ext};
  return read_text(path, bytes);
}

}  // namespace

}  // namespace ldqa::data
