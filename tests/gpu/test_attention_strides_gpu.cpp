// Strided tensors on CUDA: every input and output of the forward and the backward placed
// in a larger, NaN-poisoned device buffer (a [batch, n, heads, d] buffer, a column block
// of a fused q/k/v projection, padded rows), against the same calls on contiguous
// copies, which are checked against the float64 reference: the kernels do the same
// arithmetic in the same order, so the results must agree bit for bit, and nothing
// outside a view may be written. fp16 and bf16, head dims 32, 64 and 128, window +
// global (shared and separate projections), a block layout, top-k.
#include <algorithm>
#include <catch2/catch.hpp>
#include <cmath>
#include <cstring>
#include <map>
#include <memory>
#include <string>
#include <tuple>

#include "attention/attention.hpp"
#include "gpu/gpu_support.hpp"
#include "support/attention_grid.hpp"
#include "support/strided.hpp"
#include "support/support.hpp"

using namespace ldqa;
using namespace ldqa::attention;
using namespace ldqa::test::gpu;

namespace {

constexpr uint16_t kPoison = 0xFFFF;  // NaN in fp16 and bf16

struct Run {
  std::map<std::string, std::vector<uint16_t>> t;  // out, dq, ... (bits); lse as float bits
  std::vector<float> lse;
  int64_t written_outside = 0;
};

const char* const kOutputs[] = {"out", "dq", "dk", "dv", "dqg", "dkg", "dvg"};

// The first `rows` rows of each head of a [batch, heads, n, d] tensor, packed
// [batch, heads, rows, d].
std::vector<uint16_t> first_rows(const std::vector<uint16_t>& full, const test::AttentionCase& c, int rows) {
  const std::size_t per_head = static_cast<std::size_t>(c.seq_len) * c.head_dim;
  const std::size_t kept = static_cast<std::size_t>(rows) * c.head_dim;
  std::vector<uint16_t> packed(static_cast<std::size_t>(c.batch) * c.heads * kept);
  for (std::size_t bh = 0; bh < static_cast<std::size_t>(c.batch) * c.heads; ++bh)
    std::copy_n(full.begin() + static_cast<std::ptrdiff_t>(bh * per_head), kept,
                packed.begin() + static_cast<std::ptrdiff_t>(bh * kept));
  return packed;
}

// One forward (+ backward) of c: contiguous, through `views`, or (qg_rows > 0) with
// q_global and d_q_global of that many rows, contiguous at the start of a full-size
// poisoned buffer (what comes back as dqg is those rows; a write past them counts as
// written outside).
Run run_case(const test::AttentionCase& c, const std::vector<double>& d_out, DType dtype,
             const std::map<std::string, test::StridedView>* views, int qg_rows = 0) {
  SparseAttention attn(c.seq_len, c.heads, c.head_dim, c.pattern);
  const bool backward = c.pattern.top_k == 0;
  const std::size_t size = c.q.size();
  const std::size_t rows = static_cast<std::size_t>(c.batch) * c.heads * c.seq_len;
  std::map<std::string, std::vector<uint16_t>> host;  // the buffers as uploaded
  std::map<std::string, std::unique_ptr<DeviceBuffer>> device;
  std::map<std::string, Strides> strides;
  std::map<std::string, int64_t> offsets;
  auto view_of = [&](const std::string& name) -> const test::StridedView* {
    return views == nullptr ? nullptr : &views->at(name);
  };
  auto buffer_of = [&](const std::string& name) {
    const test::StridedView* v = view_of(name);
    return v != nullptr && v->kind.rfind("fused", 0) == 0 && name.size() == 1 ? std::string("qkv") : name;
  };
  auto place = [&](const std::string& name, const std::vector<double>& values) {
    const test::StridedView* v = view_of(name);
    auto& buf = host[buffer_of(name)];
    const auto bits = to_bits(values, dtype);
    if (v == nullptr) {
      buf = bits;
      if (name == "qg" && qg_rows > 0) {  // packed at the start, poison after
        buf = first_rows(bits, c, qg_rows);
        buf.resize(bits.size(), kPoison);
      }
      return;
    }
    if (buf.empty()) buf.assign(v->elements, kPoison);
    test::place(buf, *v, bits);
    strides[name] = v->strides;
    offsets[name] = v->offset;
  };
  auto output = [&](const std::string& name) {
    const test::StridedView* v = view_of(name);
    host[name].assign(v == nullptr ? size : v->elements, kPoison);
    if (v != nullptr) {
      strides[name] = v->strides;
      offsets[name] = v->offset;
    }
  };
  place("q", c.q);
  place("k", c.k);
  place("v", c.v);
  if (c.separate_global) {
    place("qg", c.qg);
    place("kg", c.kg);
    place("vg", c.vg);
  }
  place("d_out", d_out);
  output("out");
  if (backward)
    for (const char* g : {"dq", "dk", "dv"}) output(g);
  if (backward && c.separate_global)
    for (const char* g : {"dqg", "dkg", "dvg"}) output(g);
  for (const auto& [name, bits] : host) device[name] = upload(bits);
  auto at = [&](const std::string& name) -> void* {
    if (!host.count(buffer_of(name))) return nullptr;
    return static_cast<uint16_t*>(device.at(buffer_of(name))->ptr) + (offsets.count(name) ? offsets[name] : 0);
  };
  auto global_mask = upload(c.global_mask), key_mask = upload(c.key_mask), lengths = upload(c.valid_lengths);
  DeviceBuffer lse(rows * 4);
  CUDA_OK(cudaMemset(lse.ptr, 0xFF, rows * 4));

  AttentionInputs in;
  in.batch = c.batch;
  in.dtype = dtype;
  in.q = at("q");
  in.k = at("k");
  in.v = at("v");
  in.q_global = at("qg");
  in.k_global = at("kg");
  in.v_global = at("vg");
  in.global_mask = static_cast<const uint8_t*>(ptr(global_mask));
  in.valid_lengths = static_cast<const int32_t*>(ptr(lengths));
  in.key_mask = static_cast<const uint8_t*>(ptr(key_mask));
  in.out = at("out");
  in.lse = backward ? static_cast<float*>(lse.ptr) : nullptr;
  in.scale = static_cast<float>(c.scale);
  in.q_global_rows = qg_rows;
  test::set_strides(in, strides);
  attn.run_cuda(in);
  if (backward) {
    AttentionGradients g;
    g.d_out = at("d_out");
    g.d_q = at("dq");
    g.d_k = at("dk");
    g.d_v = at("dv");
    g.d_q_global = at("dqg");
    g.d_k_global = at("dkg");
    g.d_v_global = at("dvg");
    test::set_strides(g, strides);
    attn.backward_cuda(in, g);
  }
  CUDA_OK(cudaDeviceSynchronize());
  Run r;
  r.lse.resize(rows);
  CUDA_OK(cudaMemcpy(r.lse.data(), lse.ptr, rows * 4, cudaMemcpyDeviceToHost));
  for (const char* name : kOutputs) {
    if (!host.count(name)) continue;
    std::vector<uint16_t> bits(host[name].size());
    CUDA_OK(cudaMemcpy(bits.data(), device[name]->ptr, bits.size() * 2, cudaMemcpyDeviceToHost));
    const test::StridedView* v = view_of(name);
    r.t[name] = v == nullptr ? bits : test::gather(bits, *v);
    if (v != nullptr)
      r.written_outside += test::changed_outside(bits, *v, kPoison, [](uint16_t a, uint16_t b) { return a == b; });
    if (std::string(name) == "dqg" && qg_rows > 0) {
      const std::size_t kept = static_cast<std::size_t>(c.batch) * c.heads * qg_rows * c.head_dim;
      for (std::size_t x = kept; x < bits.size(); ++x) r.written_outside += bits[x] != kPoison;
      r.t[name].resize(kept);
    }
  }
  return r;
}

}  // namespace

TEST_CASE("gpu attention reads and writes strided views", "[attention][gpu][strides]") {
  std::mt19937_64 rng(test::test_seed() + 40);
  struct Shape {
    const char* name;
    DType dtype;
    int head_dim;
  };
  const Shape shapes[] = {{"window+global", DType::bf16, 64},
                          {"separate globals", DType::f16, 32},
                          {"separate globals", DType::bf16, 128},
                          {"layout", DType::f16, 64},
                          {"top-k", DType::bf16, 64}};
  int index = 0;
  for (const Shape& shape : shapes) {
    const std::string s = shape.name;
    auto c = test::strided_case(s, ++index, 321, shape.head_dim, rng);
    const auto rounding = shape.dtype == DType::f16 ? round_f16 : round_bf16;
    test::fill_inputs(c, rng, rounding);
    std::vector<double> d_out(c.q.size());
    std::uniform_real_distribution<double> dist(-1.0, 1.0);
    for (auto& x : d_out) x = rounding(dist(rng) + 1e-3);
    INFO(s << " d=" << shape.head_dim << ": " << c.describe() << " seed=" << test::test_seed());
    const Run plain = run_case(c, d_out, shape.dtype, nullptr);
    // The contiguous run against the float64 reference, so that agreement below is not
    // agreement with a broken run (the full grids check it in depth).
    const auto ref = test::reference_attention(c);
    const auto cmp = test::compare(from_bits(plain.t.at("out"), shape.dtype), ref, c.head_dim);
    REQUIRE(cmp.nan_count == 0);
    REQUIRE(cmp.relative_error <= 1e-2);
    for (int r = 0; r < 2; ++r) {
      const auto views = test::strided_views(r, c, /*align=*/8);  // 16-byte steps
      const Run strided = run_case(c, d_out, shape.dtype, &views);
      INFO("round " << r);
      CHECK(strided.written_outside == 0);
      CHECK(std::memcmp(strided.lse.data(), plain.lse.data(), plain.lse.size() * 4) == 0);
      for (const auto& [name, bits] : plain.t) {
        INFO(name);
        REQUIRE(strided.t.count(name) == 1);
        CHECK(strided.t.at(name) == bits);
      }
    }
  }
}

// q_global (and d_q_global) of the global prefix's rows only, as the model passes them:
// the same bits as with a full-length q_global, nothing written past d_q_global's rows,
// and a sequence with a global row beyond them written as NaN (the others untouched).
// fp16 and bf16, head dims 32 and 64 (and 64 on the wgmma path where the device has it).
TEST_CASE("gpu attention takes q_global of the global prefix's rows only", "[attention][gpu][strides]") {
  std::mt19937_64 rng(test::test_seed() + 41);
  const int rows = 17;
  const std::vector<int> prefix{17, 5, 11, 2};
  for (const auto& [dtype, head_dim, wgmma] :
       {std::tuple{DType::f16, 32, false}, std::tuple{DType::bf16, 64, false}, std::tuple{DType::bf16, 64, true}}) {
    std::unique_ptr<ForceWgmmaPath> force;
    if (wgmma) {
      force = std::make_unique<ForceWgmmaPath>();
      if (!force->active) continue;  // not a Hopper device: the first two cover the path
    }
    auto c = test::strided_case("separate globals", 9, 333, head_dim, rng);
    for (int b = 0; b < c.batch; ++b)
      for (int i = 0; i < c.seq_len; ++i)
        c.global_mask[static_cast<std::size_t>(b) * c.seq_len + i] = i < prefix[static_cast<std::size_t>(b) % 4];
    const auto rounding = dtype == DType::f16 ? round_f16 : round_bf16;
    test::fill_inputs(c, rng, rounding);
    std::vector<double> d_out(c.q.size());
    std::uniform_real_distribution<double> dist(-1.0, 1.0);
    for (auto& x : d_out) x = rounding(dist(rng) + 1e-3);
    INFO("d=" << head_dim << (wgmma ? " wgmma" : "") << ": " << c.describe() << " seed=" << test::test_seed());
    const Run full = run_case(c, d_out, dtype, nullptr);
    // The checks below compare the path with itself: its output must also be right.
    const auto ref = test::reference_attention(c, 2e-4);
    CHECK(test::compare(from_bits(full.t.at("out"), dtype), ref, c.head_dim).relative_error <= 1e-2);
    const Run short_qg = run_case(c, d_out, dtype, nullptr, rows);
    CHECK(short_qg.written_outside == 0);
    CHECK(std::memcmp(short_qg.lse.data(), full.lse.data(), full.lse.size() * 4) == 0);
    for (const auto& [name, bits] : full.t) {
      INFO(name);
      if (name == "dqg") {
        CHECK(short_qg.t.at(name) == first_rows(bits, c, rows));
        continue;
      }
      CHECK(short_qg.t.at(name) == bits);
    }
    // The full-length run's d_q_global past the prefix: zeros (+0 or -0).
    int64_t nonzero = 0;
    const std::size_t per_head = static_cast<std::size_t>(c.seq_len) * c.head_dim;
    for (std::size_t x = 0; x < full.t.at("dqg").size(); ++x)
      nonzero += x % per_head >= static_cast<std::size_t>(rows) * c.head_dim && (full.t.at("dqg")[x] & 0x7FFF) != 0;
    CHECK(nonzero == 0);

    // Sequence 0 with a real global row the short q_global does not hold.
    int last = c.seq_len - 1;
    while (!test::is_valid(c, 0, last)) --last;
    REQUIRE(last >= rows);
    auto beyond = c;
    beyond.global_mask[static_cast<std::size_t>(last)] = 1;
    const Run bad = run_case(beyond, d_out, dtype, nullptr, rows);
    CHECK(bad.written_outside == 0);
    const DType t = dtype;
    auto is_nan = [t](uint16_t bits) { return std::isnan(from_bits({bits}, t)[0]); };
    for (const auto& [name, bits] : bad.t) {
      INFO(name);
      const std::size_t per_sequence = bits.size() / static_cast<std::size_t>(c.batch);
      int64_t not_nan = 0, other_differ = 0;
      for (std::size_t x = 0; x < bits.size(); ++x) {
        if (x < per_sequence) {
          not_nan += !is_nan(bits[x]);
        } else {
          const auto& want = name == "dqg" ? first_rows(full.t.at(name), c, rows) : full.t.at(name);
          other_differ += bits[x] != want[x];
        }
      }
      CHECK(not_nan == 0);
      CHECK(other_differ == 0);
    }
  }
}
