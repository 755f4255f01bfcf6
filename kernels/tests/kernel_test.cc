// Runs the plain-C++ cores on cases written by numpy (tests/kernels/cases.py) and compares with the
// reference outputs stored beside them. Used for cross builds run under qemu, where no ONNX Runtime
// exists. Usage: kernel_test CASE_DIR...   Each CASE_DIR holds meta.txt ("key value" lines) and raw
// little-endian arrays NAME.bin. Prints one line per case; exits 1 if any case fails.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iterator>
#include <map>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <sys/mman.h>
#include <unistd.h>

#include "../cpu/attention.h"
#include "../cpu/half.h"
#include "../cpu/linear.h"
#include "../cpu/moe.h"
#include "../cpu/qk_norm_rotary.h"
#include "../cpu/quant_gather.h"
#include "../cpu/quant_linear.h"
#include "../cpu/quant_swiglu.h"
#include "../cpu/rms_norm.h"
#include "../cpu/simd.h"
#include "../cpu/swiglu.h"

namespace {

// Tasks spread over a few std::threads, so the threaded paths run under qemu too.
class ThreadParallel : public qwd::Parallel {
 public:
  void run(int64_t tasks, const std::function<void(int64_t)>& fn) const override {
    const int64_t workers = std::min<int64_t>(tasks, 4);
    std::vector<std::thread> threads;
    for (int64_t w = 0; w < workers; ++w)
      threads.emplace_back([&, w] {
        for (int64_t t = w; t < tasks; t += workers) fn(t);
      });
    for (auto& t : threads) t.join();
  }
};

// Bytes placed to end where an inaccessible page begins: a kernel that reads past its weights faults here
// instead of reading a neighbour's bytes unnoticed (an mmapped weight file can end at a page boundary).
class GuardedBytes {
 public:
  explicit GuardedBytes(const std::vector<uint8_t>& bytes) {
    const size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
    size_ = (bytes.size() + page - 1) / page * page + page;
    void* base = mmap(nullptr, size_, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (base == MAP_FAILED) throw std::runtime_error("mmap failed");
    base_ = static_cast<uint8_t*>(base);
    data_ = base_ + size_ - page - bytes.size();
    std::copy(bytes.begin(), bytes.end(), data_);
    if (mprotect(base_ + size_ - page, page, PROT_NONE) != 0) throw std::runtime_error("mprotect failed");
  }
  GuardedBytes(const GuardedBytes&) = delete;
  GuardedBytes& operator=(const GuardedBytes&) = delete;
  ~GuardedBytes() { munmap(base_, size_); }
  const uint8_t* data() const { return data_; }

 private:
  uint8_t* base_ = nullptr;
  uint8_t* data_ = nullptr;
  size_t size_ = 0;
};

struct Case {
  std::string dir;
  std::map<std::string, std::string> meta;

  int64_t i(const std::string& key) const { return std::stoll(meta.at(key)); }
  float f(const std::string& key) const { return std::stof(meta.at(key)); }
  bool has(const std::string& name) const { return std::ifstream(dir + "/" + name + ".bin").good(); }

  template <class T>
  std::vector<T> array(const std::string& name) const {
    std::ifstream in(dir + "/" + name + ".bin", std::ios::binary);
    if (!in) throw std::runtime_error("missing " + dir + "/" + name + ".bin");
    std::vector<char> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    std::vector<T> out(bytes.size() / sizeof(T));
    std::copy(bytes.begin(), bytes.end(), reinterpret_cast<char*>(out.data()));
    return out;
  }
};

Case load(const std::string& dir) {
  Case c{dir, {}};
  std::ifstream in(dir + "/meta.txt");
  std::string key, value;
  while (in >> key >> value) c.meta[key] = value;
  if (c.meta.empty()) throw std::runtime_error("no meta.txt in " + dir);
  return c;
}

// Largest |got - want| beyond the element's bound; <= 0 means every element is within it.
float excess(const std::vector<float>& got, const std::vector<float>& want, const std::vector<float>& bound) {
  if (got.size() != want.size() || bound.size() != want.size()) return INFINITY;
  float worst = -INFINITY;
  for (size_t i = 0; i < got.size(); ++i) {
    const float err = std::fabs(got[i] - want[i]) - bound[i];
    worst = std::isnan(got[i]) ? INFINITY : std::max(worst, err);
  }
  return worst;
}

qwd::Weights quant(const Case& c, const std::vector<uint8_t>& q, const std::vector<float>& s,
                   const std::vector<uint8_t>* zp, int64_t rows, int64_t cols) {
  return qwd::Weights::quantized(q.data(), s.data(), zp ? zp->data() : nullptr, rows, cols,
                                 static_cast<int>(c.i("bits")), c.i("block_size"));
}

// A case's N x K block-quantized weights (`codes`: the input holding them) as QuantLinear reads them:
// float32 or float16 scales, zero points when given, row tiles; the arrays live as long as the view.
struct CaseWeights {
  const bool half;
  const std::vector<float> scales;
  const std::vector<uint16_t> halves;
  const GuardedBytes codes;
  const std::vector<uint8_t> zero_points;
  qwd::Weights view;

  CaseWeights(const Case& c, const std::string& codes_name)
      : half(c.i("half_scales") != 0),
        scales(half ? std::vector<float>{} : c.array<float>("scales")),
        halves(half ? c.array<uint16_t>("scales") : std::vector<uint16_t>{}),
        codes(c.array<uint8_t>(codes_name)),
        zero_points(c.has("zero_points") ? c.array<uint8_t>("zero_points") : std::vector<uint8_t>{}) {
    const uint8_t* zp = zero_points.empty() ? nullptr : zero_points.data();
    const int bits = static_cast<int>(c.i("bits"));
    const int64_t N = c.i("N"), K = c.i("K"), block = c.i("block_size");
    view = half ? qwd::Weights::quantized(codes.data(), halves.data(), zp, N, K, bits, block)
                : qwd::Weights::quantized(codes.data(), scales.data(), zp, N, K, bits, block);
    view.row_tile = c.i("row_tile");
  }
};

// Returns the outputs computed for the case, in the order its expected outputs are named.
std::vector<std::vector<float>> run(const Case& c, const qwd::Parallel& par) {
  const std::string op = c.meta.at("op");
  if (op == "SwiGLU") {
    const auto x = c.array<float>("gate_up");
    const int64_t rows = c.i("rows"), inter = c.i("inter");
    std::vector<float> y(rows * inter);
    qwd::swiglu(x.data(), y.data(), rows, inter, par);
    return {y};
  }
  if (op == "QuantSwiGLU" || op == "QuantLinear") {
    const auto x = c.array<float>("X");
    const auto bias = c.has("bias") ? c.array<float>("bias") : std::vector<float>{};
    const auto weight = c.has("norm_weight") ? c.array<float>("norm_weight") : std::vector<float>{};
    const auto skip = c.has("skip") ? c.array<float>("skip") : std::vector<float>{};
    const int64_t tokens = c.i("tokens"), N = c.i("N");
    const int level = static_cast<int>(c.i("accuracy_level"));
    const CaseWeights cw(c, "B");
    const qwd::Weights& w = cw.view;
    std::vector<std::vector<float>> out(skip.empty() ? 1 : 2);  // Y, and the sum with a skip
    if (!skip.empty()) out[1].resize(x.size());
    const qwd::RmsNorm norm{weight.empty() ? nullptr : weight.data(), weight.empty() ? 0.0f : c.f("epsilon"),
                            skip.empty() ? nullptr : skip.data(), skip.empty() ? nullptr : out[1].data()};
    std::vector<float> normed;
    const float* input = qwd::normed_input(x.data(), tokens, c.i("K"), norm, normed, par);  // as the adapter does
    if (op == "QuantLinear") {
      out[0].resize(tokens * N);
      qwd::quant_linear(input, tokens, w, bias.empty() ? nullptr : bias.data(), out[0].data(), level, par);
    } else {
      out[0].resize(tokens * N / 2);
      qwd::quant_swiglu(input, tokens, w, out[0].data(), level, par);
    }
    return out;
  }
  if (op == "Linear") {
    const auto x = c.array<float>("X"), w = c.array<float>("W");
    const auto bias = c.has("bias") ? c.array<float>("bias") : std::vector<float>{};
    const int64_t tokens = c.i("tokens"), N = c.i("N");
    std::vector<float> y(tokens * N);
    qwd::linear(x.data(), tokens, qwd::Weights::fp32(w.data(), N, c.i("K")), bias.empty() ? nullptr : bias.data(),
                y.data(), par);
    return {y};
  }
  if (op == "QuantGather") {
    const auto indices = c.array<int64_t>("indices");
    const CaseWeights table(c, "data");
    std::vector<float> y(indices.size() * c.i("K"));
    qwd::quant_gather(indices.data(), static_cast<int64_t>(indices.size()), table.view, y.data(), par);
    return {y};
  }
  if (op == "MoE" || op == "QMoE") {
    const bool quantized = op == "QMoE";
    const int64_t T = c.i("tokens"), H = c.i("hidden"), E = c.i("experts"), I = c.i("inter");
    const auto x = c.array<float>("X"), logits = c.array<float>("router_logits");
    const auto gu = c.array<float>(quantized ? "gate_up_scales" : "gate_up_weights");
    const auto dn = c.array<float>(quantized ? "down_scales" : "down_weights");
    const auto gu_q = quantized ? c.array<uint8_t>("gate_up_weights") : std::vector<uint8_t>{};
    const auto dn_q = quantized ? c.array<uint8_t>("down_weights") : std::vector<uint8_t>{};
    const bool shared = c.has("shared_gate_up");
    const auto sgu = shared ? c.array<float>("shared_gate_up") : std::vector<float>{};
    const auto sd = shared ? c.array<float>("shared_down") : std::vector<float>{};
    const auto sg = c.has("shared_gate") ? c.array<float>("shared_gate") : std::vector<float>{};
    const qwd::Weights all_gu = quantized ? quant(c, gu_q, gu, nullptr, E * 2 * I, H) : qwd::Weights::fp32(gu.data(), E * 2 * I, H);
    const qwd::Weights all_dn = quantized ? quant(c, dn_q, dn, nullptr, E * H, I) : qwd::Weights::fp32(dn.data(), E * H, I);
    qwd::MoEProblem p;
    p.x = x.data();
    p.router_logits = logits.data();
    p.tokens = T;
    p.hidden = H;
    p.top_k = c.i("top_k");
    p.normalize_topk = c.i("normalize_topk") != 0;
    for (int64_t e = 0; e < E; ++e) p.experts.push_back({all_gu.slice(e * 2 * I, 2 * I), all_dn.slice(e * H, H)});
    qwd::Expert shared_expert;
    if (shared) {
      const int64_t S = c.i("shared_inter");
      shared_expert = {qwd::Weights::fp32(sgu.data(), 2 * S, H), qwd::Weights::fp32(sd.data(), H, S)};
      p.shared = &shared_expert;
      p.shared_gate = sg.empty() ? nullptr : sg.data();
    }
    std::vector<float> y(T * H);
    qwd::moe(p, y.data(), par);
    return {y};
  }
  if (op == "QKNormRotary" || op == "QKNormRotaryPacked") {
    const auto qw = c.array<float>("q_norm_weight"), kw = c.array<float>("k_norm_weight"),
               cos = c.array<float>("cos_cache"), sin = c.array<float>("sin_cache");
    const auto pos = c.array<int64_t>("position_ids");
    qwd::QKNormRotaryProblem p;
    p.batch = c.i("batch");
    p.seq = c.i("seq");
    p.num_heads = c.i("num_heads");
    p.kv_num_heads = c.i("kv_num_heads");
    p.head_dim = c.i("head_dim");
    p.max_positions = c.i("max_positions");
    p.epsilon = c.f("epsilon");
    p.q_weight = qw.data();
    p.k_weight = kw.data();
    p.position_ids = pos.data();
    p.cos = cos.data();
    p.sin = sin.data();
    if (op == "QKNormRotaryPacked") {
      const auto qkv = c.array<float>("QKV");
      std::vector<float> out(qkv.size());
      qwd::packed_rows(p, qkv.data(), out.data());
      qwd::qk_norm_rotary(p, par);
      return {out};
    }
    const auto q = c.array<float>("Q"), k = c.array<float>("K");
    std::vector<float> q_out(q.size()), k_out(k.size());
    qwd::dense_rows(p, q.data(), k.data(), q_out.data(), k_out.data());
    qwd::qk_norm_rotary(p, par);
    return {q_out, k_out};
  }
  if (op == "GroupQueryAttention") {
    const int64_t B = c.i("batch"), S = c.i("seq"), H = c.i("num_heads"), KV = c.i("kv_num_heads"),
                  D = c.i("head_dim"), T = c.i("total");
    const auto query = c.array<float>("query");
    // A float16 cache is read and written as halves; its present comes back widened, as the reference's.
    const bool half = c.meta.count("half_cache") && c.i("half_cache");
    const auto past_k = c.array<uint8_t>("past_key"), past_v = c.array<uint8_t>("past_value");
    const auto key = c.has("key") ? c.array<float>("key") : std::vector<float>{};
    const auto value = c.has("value") ? c.array<float>("value") : std::vector<float>{};
    const auto cos = c.has("cos_cache") ? c.array<float>("cos_cache") : std::vector<float>{};
    const auto sin = c.has("sin_cache") ? c.array<float>("sin_cache") : std::vector<float>{};
    const auto seqlens = c.array<int32_t>("seqlens_k");
    qwd::AttentionProblem p;
    p.batch = B;
    p.seq = S;
    p.num_heads = H;
    p.kv_num_heads = KV;
    p.head_dim = D;
    p.past_len = c.i("past");
    p.total_len = p.present_len = T;
    p.max_positions = c.i("max_positions");
    p.scale = c.f("scale");
    p.bf16_products = c.meta.count("bf16_products") && c.i("bf16_products");
    if (c.i("packed"))
      qwd::packed_qkv(p, query.data());
    else
      qwd::separate_qkv(p, query.data(), key.data(), value.data());
    p.cache = half ? qwd::CacheType::kFloat16 : qwd::CacheType::kFloat32;
    p.past_k = past_k.data();
    p.past_v = past_v.data();
    p.seqlens_k = seqlens.data();
    p.cos = cos.empty() ? nullptr : cos.data();
    p.sin = sin.empty() ? nullptr : sin.data();
    const auto q_norm = c.has("q_norm_weight") ? c.array<float>("q_norm_weight") : std::vector<float>{};
    const auto k_norm = c.has("k_norm_weight") ? c.array<float>("k_norm_weight") : std::vector<float>{};
    p.q_norm = q_norm.empty() ? nullptr : q_norm.data();
    p.k_norm = k_norm.empty() ? nullptr : k_norm.data();
    if (c.meta.count("epsilon")) p.epsilon = c.f("epsilon");
    const size_t cache = B * KV * T * D, element = half ? 2 : 4;
    std::vector<float> out(B * S * H * D);
    std::vector<uint8_t> present_k(cache * element), present_v(cache * element);
    p.out = out.data();
    p.present_k = present_k.data();
    p.present_v = present_v.data();
    qwd::attention(p, par);
    auto floats = [&](const std::vector<uint8_t>& bytes) {
      std::vector<float> f(cache);
      if (half)
        qwd::halves_to_floats(reinterpret_cast<const uint16_t*>(bytes.data()), cache, f.data());
      else
        std::memcpy(f.data(), bytes.data(), bytes.size());
      return f;
    };
    return {out, floats(present_k), floats(present_v)};
  }
  throw std::runtime_error("unknown op " + op);
}

}  // namespace

int main(int argc, char** argv) {
  std::printf("isa %s\n", qwd::simd::kIsa);
  std::printf("int8 %s\n", qwd::int8_isa());
  const ThreadParallel par;
  int failed = 0;
  for (int a = 1; a < argc; ++a) {
    try {
      const Case c = load(argv[a]);
      const auto outputs = run(c, par);
      const std::string names = c.meta.at("outputs");  // comma-separated expected output names
      float worst = -INFINITY;
      size_t start = 0;
      for (const auto& got : outputs) {
        const size_t comma = names.find(',', start);
        const std::string name = names.substr(start, comma - start);
        start = comma + 1;
        worst = std::max(worst, excess(got, c.array<float>(name), c.array<float>(name + ".bound")));
      }
      const bool ok = worst <= 0.0f;
      failed += !ok;
      std::printf("%s %s excess=%g\n", ok ? "PASS" : "FAIL", argv[a], worst);
    } catch (const std::exception& e) {
      ++failed;
      std::printf("FAIL %s %s\n", argv[a], e.what());
    }
  }
  return failed ? 1 : 0;
}
