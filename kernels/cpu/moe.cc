#include "moe.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <numeric>

#include "linear.h"
#include "simd.h"

namespace qwd {

void route(const float* logits, int64_t tokens, int64_t num_experts, int64_t top_k, bool normalize, int64_t* ids,
           float* weights) {
  std::vector<float> probs(num_experts);   // [E]
  std::vector<int64_t> order(num_experts);  // [E]
  for (int64_t t = 0; t < tokens; ++t) {
    const float* l = logits + t * num_experts;
    const float top = *std::max_element(l, l + num_experts);
    float total = 0.0f;
    for (int64_t e = 0; e < num_experts; ++e) total += probs[e] = std::exp(l[e] - top);
    std::iota(order.begin(), order.end(), 0);
    std::partial_sort(order.begin(), order.begin() + top_k, order.end(), [&](int64_t a, int64_t b) {
      return probs[a] > probs[b] || (probs[a] == probs[b] && a < b);
    });
    float picked = 0.0f;
    for (int64_t j = 0; j < top_k; ++j) picked += probs[order[j]];
    const float denom = normalize ? picked : total;
    for (int64_t j = 0; j < top_k; ++j) {
      ids[t * top_k + j] = order[j];
      weights[t * top_k + j] = probs[order[j]] / denom;
    }
  }
}

namespace {

// One expert applied to a contiguous group of tokens.
struct Job {
  const Expert* expert;
  const float* x;  // [n, H]
  int64_t n;
  float* hidden;   // [n, I]
  float* out;      // [n, H]
};

struct Task {
  const Job* job;
  int64_t begin, end;  // output rows of this phase
};

// Chunks every job's output rows so that a task does roughly the same number of multiply-adds.
std::vector<Task> split(const std::vector<Job>& jobs, bool down) {
  std::vector<Task> tasks;
  for (const Job& job : jobs) {
    const Weights& w = down ? job.expert->down : job.expert->gate_up;
    const int64_t rows = down ? w.rows : w.rows / 2;
    const int64_t per_row = job.n * w.cols * (down ? 1 : 2);
    const int64_t step = std::max<int64_t>(4, 262144 / std::max<int64_t>(per_row, 1));
    for (int64_t r = 0; r < rows; r += step) tasks.push_back({&job, r, std::min(rows, r + step)});
  }
  return tasks;
}

}  // namespace

void moe(const MoEProblem& p, float* y, const Parallel& par) {
  const int64_t T = p.tokens, H = p.hidden, E = static_cast<int64_t>(p.experts.size()), K = p.top_k;
  std::vector<int64_t> ids(T * K);    // [T, K]
  std::vector<float> weights(T * K);  // [T, K]
  route(p.router_logits, T, E, K, p.normalize_topk, ids.data(), weights.data());

  // Group the (token, k) slots by expert: slot_of[t*K + j] is its row in the grouped buffers.
  std::vector<int64_t> count(E + 1, 0), slot_of(T * K);
  for (int64_t s = 0; s < T * K; ++s) ++count[ids[s] + 1];
  std::partial_sum(count.begin(), count.end(), count.begin());  // count[e] = first row of expert e
  std::vector<int64_t> fill(count.begin(), count.end() - 1);
  std::vector<float> xg(T * K * H);  // [T*K, H] tokens gathered per expert
  for (int64_t s = 0; s < T * K; ++s) {
    slot_of[s] = fill[ids[s]]++;
    std::memcpy(xg.data() + slot_of[s] * H, p.x + (s / K) * H, H * sizeof(float));
  }

  int64_t hidden_rows = 0;
  for (const Expert& e : p.experts) hidden_rows = std::max(hidden_rows, e.gate_up.rows / 2);
  const int64_t shared_inter = p.shared ? p.shared->gate_up.rows / 2 : 0;
  std::vector<float> hidden(T * K * hidden_rows + T * shared_inter);  // per job: [n, I]
  std::vector<float> out(T * K * H + (p.shared ? T * H : 0));           // per job: [n, H]

  std::vector<Job> jobs;
  for (int64_t e = 0; e < E; ++e) {
    const int64_t n = count[e + 1] - count[e];
    if (n == 0) continue;  // never touch an expert no token picked
    jobs.push_back({&p.experts[e], xg.data() + count[e] * H, n, hidden.data() + count[e] * hidden_rows,
                    out.data() + count[e] * H});
  }
  if (p.shared)
    jobs.push_back({p.shared, p.x, T, hidden.data() + T * K * hidden_rows, out.data() + T * K * H});

  // Per-job hidden rows use the job's own I as leading dimension, so dense slices stay contiguous.
  const std::vector<Task> up_tasks = split(jobs, false);
  par.run(static_cast<int64_t>(up_tasks.size()), [&](int64_t i) {
    const Task& t = up_tasks[i];
    const int64_t inter = t.job->expert->gate_up.rows / 2;
    swiglu_rows(t.job->x, t.job->n, t.job->expert->gate_up, t.begin, t.end, t.job->hidden, inter);
  });
  const std::vector<Task> down_tasks = split(jobs, true);
  par.run(static_cast<int64_t>(down_tasks.size()), [&](int64_t i) {
    const Task& t = down_tasks[i];
    linear_rows(t.job->hidden, t.job->n, t.job->expert->down, t.begin, t.end, t.job->out, H);
  });

  const float* shared_out = p.shared ? out.data() + T * K * H : nullptr;  // [T, H]
  parallel_ranges(par, T, 16, [&](int64_t begin, int64_t end) {
    for (int64_t t = begin; t < end; ++t) {
      float* yt = y + t * H;
      std::fill(yt, yt + H, 0.0f);
      for (int64_t j = 0; j < K; ++j) simd::axpy(weights[t * K + j], out.data() + slot_of[t * K + j] * H, yt, H);
      if (shared_out) {
        float gate = 1.0f;
        if (p.shared_gate) gate = 1.0f / (1.0f + std::exp(-simd::dot(p.x + t * H, p.shared_gate, H)));
        simd::axpy(gate, shared_out + t * H, yt, H);
      }
    }
  });
}

}  // namespace qwd
