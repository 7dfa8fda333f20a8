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
  CHECK_THAT(skip_of("Makefile", "all:\n\techo"), Catch::Contains("unsupported"));
}
