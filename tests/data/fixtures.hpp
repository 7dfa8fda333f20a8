// Test helpers for the data module: hand-made PDFs and test folders (temporary
// folders and files: support/support.hpp).
#pragma once

#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "support/support.hpp"

#include <zlib.h>

namespace ldqa::test {

// bytes as one gzip member (what gzip(1) writes).
inline std::string gzip(const std::string& bytes) {
  z_stream z{};
  deflateInit2(&z, 6, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY);
  std::string out(deflateBound(&z, bytes.size()) + 32, '\0');
  z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(bytes.data()));
  z.avail_in = static_cast<uInt>(bytes.size());
  z.next_out = reinterpret_cast<Bytef*>(out.data());
  z.avail_out = static_cast<uInt>(out.size());
  deflate(&z, Z_FINISH);
  out.resize(z.total_out);
  deflateEnd(&z);
  return out;
}

// A valid PDF with one page per entry; each page's lines drawn with Helvetica.
inline std::string make_pdf(const std::vector<std::vector<std::string>>& pages, const std::string& title = "") {
  std::vector<std::string> objects;  // object i+1
  const int n = static_cast<int>(pages.size());
  const int font = 3 + 2 * n;
  std::string kids;
  for (int p = 0; p < n; ++p) kids += std::to_string(3 + 2 * p) + " 0 R ";
  objects.push_back("<< /Type /Catalog /Pages 2 0 R >>");
  objects.push_back("<< /Type /Pages /Kids [" + kids + "] /Count " + std::to_string(n) + " >>");
  for (int p = 0; p < n; ++p) {
    objects.push_back("<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents " + std::to_string(4 + 2 * p) +
                      " 0 R /Resources << /Font << /F1 " + std::to_string(font) + " 0 R >> >> >>");
    std::string content = "BT /F1 12 Tf 72 720 Td 14 TL\n";
    for (const auto& line : pages[static_cast<std::size_t>(p)]) content += "(" + line + ") Tj T*\n";
    content += "ET\n";
    objects.push_back("<< /Length " + std::to_string(content.size()) + " >>\nstream\n" + content + "endstream");
  }
  objects.push_back("<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>");
  objects.push_back("<< /Title (" + title + ") >>");
  std::string pdf = "%PDF-1.4\n";
  std::vector<std::size_t> offsets;
  for (std::size_t i = 0; i < objects.size(); ++i) {
    offsets.push_back(pdf.size());
    pdf += std::to_string(i + 1) + " 0 obj\n" + objects[i] + "\nendobj\n";
  }
  const std::size_t xref = pdf.size();
  pdf += "xref\n0 " + std::to_string(objects.size() + 1) + "\n0000000000 65535 f \n";
  for (auto off : offsets) {
    char line[32];
    std::snprintf(line, sizeof line, "%010zu 00000 n \n", off);
    pdf += line;
  }
  pdf += "trailer\n<< /Size " + std::to_string(objects.size() + 1) + " /Root 1 0 R /Info " +
         std::to_string(objects.size()) + " 0 R >>\nstartxref\n" + std::to_string(xref) + "\n%%EOF\n";
  return pdf;
}

// English-like filler: random words from a small fixed vocabulary.
inline std::string filler(std::mt19937_64& rng, int words) {
  static const char* vocab[] = {"river",  "stone",   "market", "winter", "engine", "garden",  "letter",  "silver",
                                "harbor", "council", "forest", "signal", "voyage", "castle",  "meadow",  "lantern",
                                "copper", "theory",  "window", "bridge", "valley", "orchard", "compass", "ledger"};
  std::string out;
  for (int i = 0; i < words; ++i) {
    if (i) out += (i % 12 == 11) ? ". " : " ";
    out += vocab[rng() % (sizeof(vocab) / sizeof(vocab[0]))];
  }
  return out + ".";
}

}  // namespace ldqa::test
