// Readers and UTF-8 normalisation, on real bytes: valid and broken UTF-8, HTML with
// scripts and entities, hand-made PDFs (whole, truncated, garbage), binary files.
#include <catch2/catch.hpp>

#include "data/readers.hpp"
#include "fixtures.hpp"
#include "ldqa/error.hpp"

using namespace ldqa;
using namespace ldqa::data;

namespace {
ExtractedText text_of(const std::string& name, const std::string& bytes) {
  auto r = extract_text(name, bytes);
  REQUIRE(std::holds_alternative<ExtractedText>(r));
  return std::get<ExtractedText>(r);
}
std::string skip_of(const std::string& name, const std::string& bytes) {
  auto r = extract_text(name, bytes);
  REQUIRE(std::holds_alternative<SkipReason>(r));
  return std::get<SkipReason>(r).reason;
}
}  // namespace

TEST_CASE("normalise_utf8 keeps valid text and replaces every invalid sequence", "[data][readers]") {
  int64_t replaced = 0;
  CHECK(normalise_utf8("caf\xC3\xA9 \xE5\x8C\x97\xE4\xBA\xAC \xF0\x9F\x99\x82", &replaced) ==
        "caf\xC3\xA9 \xE5\x8C\x97\xE4\xBA\xAC \xF0\x9F\x99\x82");
  CHECK(replaced == 0);
  // lone continuation, overlong '/', surrogate, beyond U+10FFFF, truncated 3-byte, NUL
  const std::string bad = std::string("a\x80") + "b\xC0\xAF" + "c\xED\xA0\x80" + "d\xF4\x90\x80\x80" + "e\xE2\x82" +
                          std::string(1, '\0') + "f";
  replaced = 0;
  const std::string out = normalise_utf8(bad, &replaced);
  CHECK(replaced == 1 + 2 + 3 + 4 + 2 + 1);
  CHECK(out.find('\0') == std::string::npos);
  CHECK(normalise_utf8(out, nullptr) == out);  // the output is valid UTF-8
  CHECK(normalise_utf8("\xEF\xBB\xBFline1\r\nline2\rline3", nullptr) == "line1\nline2\nline3");
}

TEST_CASE("txt and md: text kept, titles found", "[data][readers]") {
  const auto t = text_of("notes.txt", "First line here\n\nSecond paragraph.");
  CHECK(t.format == "txt");
  CHECK(t.title == "First line here");
  CHECK(t.text == "First line here\n\nSecond paragraph.");
  const auto m = text_of("README.MD", "intro\n# The Title\n\nbody");
  CHECK(m.format == "md");
  CHECK(m.title == "The Title");
  CHECK(text_of("empty.txt", "").text.empty());
}

TEST_CASE("html: scripts and styles dropped, entities decoded, blocks become paragraphs", "[data][readers]") {
  const auto h = text_of("page.html",
                         "<html><head><title>Caf&eacute; &amp; Co</title><style>p{color:red}</style>"
                         "<script>var x = '<p>not text</p>';</script></head><body><h1>Menu</h1>"
                         "<p>Espresso &mdash; 2&nbsp;&euro;<br>Tea</p><div>Open <b>daily</b></div>"
                         "<ul><li>one</li><li>two</li></ul><noscript>enable js</noscript></body></html>");
  CHECK(h.title == "Caf\xC3\xA9 & Co");
  CHECK(h.text.find("color") == std::string::npos);
  CHECK(h.text.find("not text") == std::string::npos);
  CHECK(h.text.find("enable js") == std::string::npos);
  CHECK(h.text.find("Espresso \xE2\x80\x94 2\xC2\xA0\xE2\x82\xAC\nTea") != std::string::npos);
  CHECK(h.text.find("Menu\n\nEspresso") != std::string::npos);
  CHECK(h.text.find("Open daily") != std::string::npos);
  CHECK(h.text.find("one\n\ntwo") != std::string::npos);
  // broken markup is still read
  const auto broken = text_of("broken.htm", "<p>unclosed <b>bold <div>deep <span>text");
  CHECK(broken.text.find("unclosed bold") != std::string::npos);
  CHECK(broken.text.find("deep text") != std::string::npos);
}

TEST_CASE("pdf: text per page with page spans; corrupt and truncated PDFs fail clearly", "[data][readers]") {
  const std::string pdf = test::make_pdf({{"Alpha line one", "Alpha line two"}, {}, {"Gamma page three"}}, "Greek");
  const auto p = text_of("doc.pdf", pdf);
  CHECK(p.format == "pdf");
  CHECK(p.title == "Greek");
  REQUIRE(p.pages.size() == 2);  // the empty page has no span
  CHECK(p.pages[0].page == 1);
  CHECK(p.pages[1].page == 3);
  CHECK(p.text
            .substr(static_cast<std::size_t>(p.pages[0].byte_start),
                    static_cast<std::size_t>(p.pages[0].byte_end - p.pages[0].byte_start))
            .find("Alpha line two") != std::string::npos);
  CHECK(p.text.substr(static_cast<std::size_t>(p.pages[1].byte_start)) == "Gamma page three");
  // a PDF named .txt is still a PDF (content wins)
  CHECK(text_of("liar.txt", pdf).format == "pdf");
  CHECK_THROWS_AS(extract_text("cut.pdf", pdf.substr(0, 40)), ldqa::Error);
  CHECK_THROWS_WITH(extract_text("junk.pdf", "%PDF-1.4\nthis is not a pdf at all"), Catch::Contains("PDF"));
}

TEST_CASE("binary and unsupported files are skipped with a reason", "[data][readers]") {
  std::string binary = "ELF";
  binary += std::string(1, '\0');
  binary += "\x01\x02\x03 some bytes";
  CHECK_THAT(skip_of("program.txt", binary), Catch::Contains("binary"));
  CHECK_THAT(skip_of("photo.jpg", "\xFF\xD8\xFF\xE0"), Catch::Contains("unsupported"));
  // no extension, binary bytes (not UTF-8, no NUL): skipped by content
  std::mt19937 rng(static_cast<unsigned>(test::test_seed()));
  std::string noise(4096, ' ');
  for (auto& c : noise) c = static_cast<char>(0x80 + rng() % 0x80);
  CHECK_THAT(skip_of("blob", noise), Catch::Contains("binary"));
}

TEST_CASE("files without a known extension are read when they hold text", "[data][readers]") {
  const auto readme = text_of("README", "Project notes\n\nBuild with make.");
  CHECK(readme.format == "txt");
  CHECK(readme.title == "Project notes");
  CHECK(text_of("copyright", "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\n").format ==
        "txt");
  CHECK(text_of("changelog.Debian", "pkg (1.0-1) unstable; urgency=low\n").text.find("urgency") != std::string::npos);
  CHECK(text_of("Makefile", "all:\n\techo").format == "txt");
  // an extension-less page that says it is HTML is HTML
  CHECK(text_of("index", "<!DOCTYPE html><title>T</title><p>Body text</p>").format == "html");
}

TEST_CASE("gzip-compressed files are read through gzip", "[data][readers]") {
  const std::string body = "Compressed notes\n\nThe keeper lit the lamp at dusk.";
  const auto t = text_of("/usr/share/doc/x/README.gz", test::gzip(body));
  CHECK(t.format == "txt");
  CHECK(t.text == body);
  CHECK_THAT(t.note, Catch::Contains("gzip"));
  // the name inside decides the format: a gzipped page is HTML, a gzipped PDF a PDF
  CHECK(text_of("page.html.gz", test::gzip("<p>one</p><p>two</p>")).text == "one\n\ntwo");
  CHECK(text_of("doc.pdf.gz", test::gzip(test::make_pdf({{"Zipped page"}}))).format == "pdf");
  // concatenated members are one file
  CHECK(text_of("two.txt.gz", test::gzip("first ") + test::gzip("second")).text == "first second");
  std::string binary(64, '\0');
  CHECK_THAT(skip_of("data.bin.gz", test::gzip(binary)), Catch::Contains("binary"));
  // corrupt and truncated gzip data fail clearly
  std::string broken = test::gzip(body);
  broken[broken.size() / 2] = static_cast<char>(broken[broken.size() / 2] ^ 0x55);
  CHECK_THROWS_AS(extract_text("broken.txt.gz", broken), ldqa::Error);
  CHECK_THROWS_WITH(extract_text("cut.txt.gz", test::gzip(body).substr(0, 20)), Catch::Contains("gzip"));
}

TEST_CASE("UTF-16 and UTF-32 text with a byte-order mark is decoded", "[data][readers]") {
  // "Café 北 🙂" (a supplementary character: a surrogate pair in UTF-16)
  const std::u32string chars = U"Caf\u00e9 \u5317 \U0001F642\r\nline two";
  const std::string utf8 = "Caf\xC3\xA9 \xE5\x8C\x97 \xF0\x9F\x99\x82\nline two";
  auto encode = [&](bool wide, bool little) {
    std::string out;
    auto put = [&](uint32_t unit) {
      const int n = wide ? 4 : 2;
      for (int k = 0; k < n; ++k) {
        const int shift = 8 * (little ? k : n - 1 - k);
        out.push_back(static_cast<char>((unit >> shift) & 0xFF));
      }
    };
    put(0xFEFF);
    for (char32_t c : chars) {
      if (!wide && c > 0xFFFF) {
        put(0xD800 + ((c - 0x10000) >> 10));
        put(0xDC00 + ((c - 0x10000) & 0x3FF));
      } else {
        put(static_cast<uint32_t>(c));
      }
    }
    return out;
  };
  for (bool wide : {false, true})
    for (bool little : {false, true}) {
      INFO((wide ? "utf-32" : "utf-16") << (little ? "le" : "be"));
      const auto t = text_of("notes.txt", encode(wide, little));
      CHECK(t.text == utf8);
      CHECK(t.replaced == 0);
      CHECK_THAT(t.note, Catch::Contains(wide ? "utf-32" : "utf-16"));
    }
  // an unpaired surrogate becomes U+FFFD, counted
  const auto lone = text_of("lone.txt", std::string("\xFF\xFE\x41\x00\x00\xD8\x42\x00", 8));
  CHECK(lone.text ==
        "A\xEF\xBF\xBD"
        "B");
  CHECK(lone.replaced == 1);
}

TEST_CASE("a .txt that only begins like a PDF is read as text", "[data][readers]") {
  const auto t = text_of("notes.txt", "%PDF-1.7 is the version we target.\n\nThe rest is prose.");
  CHECK(t.format == "txt");
  CHECK(t.text.find("The rest is prose.") != std::string::npos);
  CHECK_THAT(t.note, Catch::Contains("begins like a PDF"));
  CHECK_THROWS_AS(extract_text("real.pdf", "%PDF-1.4\nnot a pdf"), ldqa::Error);  // named .pdf: a corrupt PDF
}

TEST_CASE("pdf: words hyphenated at a line break are joined again", "[data][readers]") {
  const auto p = text_of("doc.pdf", test::make_pdf({{"the unique iden-", "tifier is kept", "a well-", "Known case"}}));
  CHECK(p.text.find("unique identifier is kept") != std::string::npos);
  CHECK(p.text.find("iden-") == std::string::npos);
  CHECK(p.text.find("well-\nKnown") != std::string::npos);  // an upper-case continuation is left alone
}

TEST_CASE("titles are cut at a character boundary", "[data][readers]") {
  std::string line;
  while (line.size() < 400) line += "\xC3\xA9t\xC3\xA9 ";  // "été " is 6 bytes: 200 falls mid-character
  const auto t = text_of("long.txt", line + "\n\nbody");
  CHECK(t.title.size() <= 200);
  CHECK(normalise_utf8(t.title, nullptr) == t.title);  // valid UTF-8: no character cut
}

TEST_CASE("hostile HTML: deep nesting and unclosed tags are read in bounded time and memory", "[data][readers]") {
  // 200 000 nested elements crashed gumbo (its tree is built and freed recursively)
  std::string deep = "<html><body>";
  for (int i = 0; i < 200000; ++i) deep += "<div>";
  deep += "the keeper's log";
  const auto d = text_of("deep.html", deep);
  CHECK(d.text.find("the keeper's log") != std::string::npos);
  CHECK_THAT(d.note, Catch::Contains("stripped"));
  // about a megabyte of formatting elements never closed: gumbo re-opened all of them in
  // every paragraph (quadratic time, memory until the kernel killed the process)
  std::string unclosed = "<html><head><title>Runaway &amp; bold</title><script>x = '<p>no</p>'</script></head><body>";
  for (int i = 0; unclosed.size() < (1 << 20); ++i)
    unclosed += "<b id=\"b" + std::to_string(i) + "\"><font color=red>word" + std::to_string(i) + "<p>";
  const auto u = text_of("unclosed.htm", unclosed);
  CHECK(u.title == "Runaway & bold");
  CHECK(u.text.find("word0") != std::string::npos);
  CHECK(u.text.find("word1000 ") == std::string::npos);  // paragraphs stay apart
  CHECK(u.text.find("no</p>") == std::string::npos);     // script text dropped
  CHECK_THAT(u.note, Catch::Contains("stripped"));
  // an ordinary page still goes through the HTML5 parser (no note)
  CHECK(text_of("plain.html", "<p>a <b>b</b> c</p>").note.empty());
}
