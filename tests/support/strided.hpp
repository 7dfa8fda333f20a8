// Strided views for the attention tests: a [batch, heads, n, d] tensor placed inside a
// larger buffer the way callers hold one (a projection's [batch, n, heads, d] output, a
// column block of a fused q/k/v projection, rows with padding), so that a backend can be
// checked to read and write through the strides, and to touch nothing outside the view.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "attention/attention.hpp"
#include "support/attention_grid.hpp"

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

// The strides of every tensor of a call, by the names strided_views uses (q, k, v, qg,
// kg, vg, out; d_out, dq, dk, dv, dqg, dkg, dvg); a name not in `strides` is contiguous.
inline attention::Strides strides_of(const std::map<std::string, attention::Strides>& strides,
                                     const std::string& name) {
  const auto it = strides.find(name);
  return it == strides.end() ? attention::Strides{} : it->second;
}
inline void set_strides(attention::AttentionInputs& in, const std::map<std::string, attention::Strides>& strides) {
  in.q_strides = strides_of(strides, "q");
  in.k_strides = strides_of(strides, "k");
  in.v_strides = strides_of(strides, "v");
  in.q_global_strides = strides_of(strides, "qg");
  in.k_global_strides = strides_of(strides, "kg");
  in.v_global_strides = strides_of(strides, "vg");
  in.out_strides = strides_of(strides, "out");
}
inline void set_strides(attention::AttentionGradients& g, const std::map<std::string, attention::Strides>& strides) {
  g.d_out_strides = strides_of(strides, "d_out");
  g.d_q_strides = strides_of(strides, "dq");
  g.d_k_strides = strides_of(strides, "dk");
  g.d_v_strides = strides_of(strides, "dv");
  g.d_q_global_strides = strides_of(strides, "dqg");
  g.d_k_global_strides = strides_of(strides, "dkg");
  g.d_v_global_strides = strides_of(strides, "dvg");
}

// Every tensor of a forward + backward call, by name: each with its view in `round` 0 or
// 1 (two assignments, so that every kind serves as input and as output of both passes;
// q, k, v as fused0..2 share one buffer), for a case's shape.
inline std::map<std::string, StridedView> strided_views(int round, const AttentionCase& c, int align) {
  const std::map<std::string, std::string> kinds =
      round == 0 ? std::map<std::string, std::string>{{"q", "fused0"},   {"k", "fused1"},   {"v", "fused2"},
                                                      {"qg", "bnhd"},    {"kg", "padded"},  {"vg", "fused1"},
                                                      {"out", "padded"}, {"d_out", "bnhd"}, {"dq", "fused0"},
                                                      {"dk", "bnhd"},    {"dv", "padded"},  {"dqg", "padded"},
                                                      {"dkg", "fused2"}, {"dvg", "bnhd"}}
                 : std::map<std::string, std::string>{
                       {"q", "bnhd"},    {"k", "padded"}, {"v", "bnhd"},       {"qg", "fused0"}, {"kg", "fused1"},
                       {"vg", "fused2"}, {"out", "bnhd"}, {"d_out", "padded"}, {"dq", "padded"}, {"dk", "fused1"},
                       {"dv", "bnhd"},   {"dqg", "bnhd"}, {"dkg", "padded"},   {"dvg", "fused0"}};
  std::map<std::string, StridedView> views;
  for (const auto& [name, kind] : kinds)
    views[name] = strided_view(kind, c.batch, c.heads, c.seq_len, c.head_dim, align);
  return views;
}

// The strided tests' cases, by shape name: "window+global" (shared projections, a
// 17-global prefix, random lengths), "separate globals" (scattered globals, holes),
// "layout" (BSLongformer blocks of 16, separate projections), "top-k" (k = 5); three
// heads, `n` positions (the layout case 200).
inline AttentionCase strided_case(const std::string& shape, int index, int n, int head_dim, std::mt19937_64& rng) {
  GridPoint p;
  p.index = index;
  p.n = shape == "layout" ? 200 : n;
  p.window = shape == "layout" ? 3 : 64;
  p.globals = shape == "window+global" ? "first17" : "scattered17";
  p.padding = shape == "separate globals" ? "mask" : "lengths";
  p.separate = shape != "window+global";
  if (shape == "layout") {
    p.block = 16;
    p.kind = 3;
  }
  if (shape == "top-k") p.top_k = 5;
  AttentionCase c = make_case(p, head_dim, rng);
  c.heads = 3;
  if (shape == "layout") c.pattern.layout = make_test_layout(3, c.seq_len, 16, c.heads, rng());
  return c;
}

}  // namespace ldqa::test
