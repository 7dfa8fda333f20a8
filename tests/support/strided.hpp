// Strided views for the attention tests: a [batch, heads, n, d] tensor placed inside a
// larger buffer the way callers hold one (a projection's [batch, n, heads, d] output, a
// column block of a fused q/k/v projection, rows with padding), so that a backend can be
// checked to read and write through the strides, and to touch nothing outside the view.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "attention/attention.hpp"

namespace ldqa::test {

struct StridedView {
  std::string kind;
  int batch = 0, heads = 0, n = 0, d = 0;
  attention::Strides strides;
  int64_t offset = 0;        // elements before (0, 0, 0, 0)
  std::size_t elements = 0;  // the whole buffer's size

  std::size_t at(int b, int h, int i, int e) const {
    return static_cast<std::size_t>(offset + b * strides.batch + h * strides.head + i * strides.row + e);
  }
};

// kind: "bnhd" (a [batch, n, heads, d] buffer); "fused0".."fused2" (column block 0..2 of
// [batch, n, 3 * heads * d], as q, k, v of one fused projection: all three fit one
// buffer of that view's `elements`); "padded" (rows, heads and sequences each followed
// by `align` unused elements, a multiple of 16 bytes when `align` is 8 halves).
inline StridedView strided_view(const std::string& kind, int batch, int heads, int n, int d, int align) {
  StridedView v{kind, batch, heads, n, d, {}, 0, 0};
  const int64_t B = batch, H = heads, N = n, D = d;
  if (kind == "bnhd") {
    v.strides = {N * H * D, D, H * D};
    v.elements = static_cast<std::size_t>(B * N * H * D);
  } else if (kind.rfind("fused", 0) == 0) {
    const int slot = kind.back() - '0';
    v.strides = {N * 3 * H * D, D, 3 * H * D};
    v.offset = slot * H * D;
    v.elements = static_cast<std::size_t>(B * N * 3 * H * D);
  } else {  // padded
    const int64_t row = D + align, head = N * row + align, seq = H * head + align;
    v.strides = {seq, head, row};
    v.offset = align;
    v.elements = static_cast<std::size_t>(align + B * seq);
  }
  return v;
}

// Writes a contiguous [batch, heads, n, d] tensor into `buffer` through the view.
template <typename X, typename Y>
void place(std::vector<X>& buffer, const StridedView& v, const std::vector<Y>& contiguous) {
  std::size_t from = 0;
  for (int b = 0; b < v.batch; ++b)
    for (int h = 0; h < v.heads; ++h)
      for (int i = 0; i < v.n; ++i)
        for (int e = 0; e < v.d; ++e) buffer[v.at(b, h, i, e)] = static_cast<X>(contiguous[from++]);
}

// The view's elements, contiguous.
template <typename X>
std::vector<X> gather(const std::vector<X>& buffer, const StridedView& v) {
  std::vector<X> out;
  out.reserve(static_cast<std::size_t>(v.batch) * v.heads * v.n * v.d);
  for (int b = 0; b < v.batch; ++b)
    for (int h = 0; h < v.heads; ++h)
      for (int i = 0; i < v.n; ++i)
        for (int e = 0; e < v.d; ++e) out.push_back(buffer[v.at(b, h, i, e)]);
  return out;
}

// Elements outside the view that no longer equal `fill` (compared bit for bit through
// `same`): what a backend wrote where it must not.
template <typename X, typename Same>
int64_t changed_outside(const std::vector<X>& buffer, const StridedView& v, const X& fill, Same&& same) {
  std::vector<uint8_t> inside(buffer.size(), 0);
  for (int b = 0; b < v.batch; ++b)
    for (int h = 0; h < v.heads; ++h)
      for (int i = 0; i < v.n; ++i)
        for (int e = 0; e < v.d; ++e) inside[v.at(b, h, i, e)] = 1;
  int64_t changed = 0;
  for (std::size_t x = 0; x < buffer.size(); ++x) changed += !inside[x] && !same(buffer[x], fill);
  return changed;
}

}  // namespace ldqa::test
