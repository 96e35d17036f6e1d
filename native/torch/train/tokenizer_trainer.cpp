#include "tokenizer_trainer.h"

#include "torch/train/checkpoint.h"

#include <ATen/CPUGeneratorImpl.h>
#include <ATen/Context.h>
#include <ATen/Parallel.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/from_blob.h>
#include <ATen/ops/minimum.h>
#include <ATen/ops/mse_loss.h>
#include <ATen/ops/ones_like.h>
#include <ATen/ops/sort.h>
#include <ATen/ops/where.h>
#include <ATen/ops/zeros.h>
#include <ATen/ops/zeros_like.h>
#include <c10/core/GradMode.h>
#include <torch/csrc/autograd/autograd.h>
#include <torch/csrc/jit/serialization/pickle.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iterator>
#include <limits>
#include <mutex>
#include <numeric>
#include <queue>
#include <sstream>

namespace mmesid::train {
namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

void require(bool ok, const std::string& message) {
  if (!ok) throw std::invalid_argument("tokenizer: " + message);
}

std::string num(double v) {
  std::ostringstream s;
  s << v;
  return s.str();
}

void validate(const TokenizerTrainOptions& o) {
  require(!o.tables.empty() && o.tables.size() <= 3,
          "expected 1 to 3 tables but received " + std::to_string(o.tables.size()));
  for (const TokenizerTable& t : o.tables) {
    require(t.rows == o.tables[0].rows, "expected every table with " + std::to_string(o.tables[0].rows) +
                                            " rows but " + t.name + " has " + std::to_string(t.rows));
    require(t.dim >= 1 && t.rows >= 3, "expected table " + t.name + " with >= 3 rows (2 items) and dim >= 1");
    require(static_cast<int64_t>(t.data.size()) == t.rows * t.dim,
            "table " + t.name + " holds " + std::to_string(t.data.size()) + " values, not rows × dim");
  }
  require(o.levels >= 1, "expected levels >= 1 but received " + std::to_string(o.levels));
  require(o.codes >= 1, "expected codes >= 1 but received " + std::to_string(o.codes));
  require(o.code_dim >= 1, "expected codeDim >= 1 but received " + std::to_string(o.code_dim));
  const auto& l = o.loss;
  require(l.recon == "mmd" || l.recon == "mse",
          "expected recon \"mmd\" or \"mse\" but received \"" + l.recon + "\"");
  require(l.align == "infonce" || l.align == "mmd" || l.align == "none",
          "expected align \"infonce\", \"mmd\" or \"none\" but received \"" + l.align + "\"");
  require(l.residual_gradient == "exact" || l.residual_gradient == "lc-rec",
          "expected residualGradient \"exact\" or \"lc-rec\" but received \"" + l.residual_gradient + "\"");
  require(std::isfinite(l.recon_weight) && l.recon_weight >= 0,
          "expected reconWeight >= 0 but received " + num(l.recon_weight));
  require(std::isfinite(l.align_weight) && l.align_weight >= 0,
          "expected alignWeight >= 0 but received " + num(l.align_weight));
  require(std::isfinite(l.beta) && l.beta >= 0, "expected beta >= 0 but received " + num(l.beta));
  require(std::isfinite(l.temperature) && l.temperature > 0,
          "expected temperature > 0 but received " + num(l.temperature));
  require(std::isfinite(l.mmd_alpha) && l.mmd_alpha > 0,
          "expected mmdAlpha > 0 but received " + num(l.mmd_alpha));
  for (int64_t s : l.sinkhorn_levels) {
    require(s >= 0 && s < o.levels, "expected sinkhorn levels in [0, " + std::to_string(o.levels) +
                                        ") but received " + std::to_string(s));
  }
  require(std::isfinite(l.sinkhorn_epsilon) && l.sinkhorn_epsilon > 0,
          "expected sinkhornEpsilon > 0 but received " + num(l.sinkhorn_epsilon));
  require(l.sinkhorn_iterations >= 1,
          "expected sinkhornIterations >= 1 but received " + std::to_string(l.sinkhorn_iterations));
  require(
      o.kmeans_init == "plain" || o.kmeans_init == "constrained" || o.kmeans_init == "none",
      "expected kmeansInit \"plain\", \"constrained\" or \"none\" but received \"" + o.kmeans_init + "\"");
  require(o.kmeans_iterations >= 1,
          "expected kmeansIterations >= 1 but received " + std::to_string(o.kmeans_iterations));
  require(std::isfinite(o.lr) && o.lr > 0, "expected lr > 0 but received " + num(o.lr));
  require(std::isfinite(o.weight_decay) && o.weight_decay >= 0,
          "expected weightDecay >= 0 but received " + num(o.weight_decay));
  require(o.batch_size >= 2, "expected batchSize >= 2 but received " + std::to_string(o.batch_size));
  require(o.epochs >= 1, "expected epochs >= 1 but received " + std::to_string(o.epochs));
  require(o.patience >= 1, "expected patience >= 1 but received " + std::to_string(o.patience));
  require(o.threads >= 1, "expected threads >= 1 but received " + std::to_string(o.threads));
  require(!o.resume || !o.checkpoint.empty(), "resume needs a checkpoint path");
}

models::MmRqvaeConfig model_config(const TokenizerTrainOptions& o) {
  models::MmRqvaeConfig c;
  for (const TokenizerTable& t : o.tables) c.modalities.push_back({t.name, t.dim, o.hidden});
  c.levels = o.levels;
  c.codes = o.codes;
  c.code_dim = o.code_dim;
  return c;
}

// ---------------------------------------------------------------- k-means

/// Nearest centroid of every row (ties → lower index). int64 [n].
at::Tensor nearest(const at::Tensor& x, const at::Tensor& x_norms, const at::Tensor& centroids) {
  return models::squared_distances(x, x_norms, centroids).argmin(1);
}

at::Tensor nearest(const at::Tensor& x, const at::Tensor& centroids) {
  return nearest(x, models::squared_norms(x), centroids);
}

/// Greedy capacity-respecting assignment: pairs by distance ascending (ties → lower point, then lower
/// centroid); a pair is taken when its point is free and its centroid has room. Computed lazily — each
/// free point offers its best remaining centroid through a min-heap — which takes the pairs in exactly
/// the order of the full sorted pass without sorting all n·K of them.
at::Tensor constrained_assign(const at::Tensor& x, const at::Tensor& x_norms, const at::Tensor& centroids) {
  const at::Tensor d = models::squared_distances(x, x_norms, centroids).contiguous();
  const int64_t n = d.size(0), k = d.size(1), capacity = (n + k - 1) / k;
  const auto sorted = d.sort(/*stable=*/true, 1, false);  // per point, ties → lower centroid
  const at::Tensor dist = std::get<0>(sorted).contiguous(), rank = std::get<1>(sorted).contiguous();
  const float* dp = dist.data_ptr<float>();
  const int64_t* rp = rank.data_ptr<int64_t>();
  struct Offer {
    float distance;
    int64_t point, centroid, position;
    bool operator>(const Offer& o) const {
      if (distance != o.distance) return distance > o.distance;
      if (point != o.point) return point > o.point;
      return centroid > o.centroid;
    }
  };
  std::priority_queue<Offer, std::vector<Offer>, std::greater<Offer>> heap;
  for (int64_t i = 0; i < n; ++i) heap.push({dp[i * k], i, rp[i * k], 0});
  at::Tensor out = at::empty({n}, at::kLong);
  int64_t* a = out.data_ptr<int64_t>();
  std::vector<int64_t> load(static_cast<size_t>(k), 0);
  while (!heap.empty()) {
    const Offer o = heap.top();
    heap.pop();
    if (load[o.centroid] < capacity) {
      ++load[o.centroid];
      a[o.point] = o.centroid;
    } else {  // total capacity >= n, so a point always finds room before its list ends
      const int64_t next = o.position + 1;
      heap.push({dp[o.point * k + next], o.point, rp[o.point * k + next], next});
    }
  }
  return out;
}

/// k-means++ seeding from rng: the first centre uniform, each next one with probability ∝ D².
at::Tensor kmeans_pp(const at::Tensor& x, const at::Tensor& x_norms, int64_t k, std::mt19937_64& rng) {
  const int64_t n = x.size(0);
  std::vector<int64_t> chosen;
  chosen.push_back(std::uniform_int_distribution<int64_t>(0, n - 1)(rng));
  at::Tensor best = models::squared_distances(x, x_norms, x.narrow(0, chosen[0], 1))
                        .squeeze(1)
                        .to(at::kDouble)
                        .clamp_min(0);
  std::uniform_real_distribution<double> unit(0.0, 1.0);
  while (static_cast<int64_t>(chosen.size()) < k) {
    const at::Tensor c = best.contiguous();
    const double* w = c.data_ptr<double>();
    const double total = std::accumulate(w, w + n, 0.0);
    int64_t pick = n - 1;
    if (total > 0) {
      const double target = unit(rng) * total;
      double run = 0.0;
      for (int64_t i = 0; i < n; ++i) {
        run += w[i];
        if (run > target && w[i] > 0) {
          pick = i;
          break;
        }
      }
    } else {
      pick = std::uniform_int_distribution<int64_t>(0, n - 1)(rng);  // every point is already a centre
    }
    chosen.push_back(pick);
    const at::Tensor dist =
        models::squared_distances(x, x_norms, x.narrow(0, pick, 1)).squeeze(1).to(at::kDouble);
    best = at::minimum(best, dist.clamp_min(0));
  }
  at::Tensor index = at::empty({k}, at::kLong);
  std::copy(chosen.begin(), chosen.end(), index.data_ptr<int64_t>());
  return x.index_select(0, index).clone();
}

// ---------------------------------------------------------------- checkpoints

constexpr const char* kCheckpointFormat = "mmesid.tokenizer.checkpoint";
constexpr int64_t kCheckpointVersion = 1;
constexpr int64_t kEpochFields = 7;  // epoch, loss, recon, align, rq, seconds, improved

struct TrainState {
  int64_t epoch = 0;  // epochs done
  int64_t best_epoch = 0, since_best = 0;
  double best_loss = std::numeric_limits<double>::infinity();
  std::vector<at::Tensor> best;
  std::vector<TokenizerEpoch> history;
};

at::Tensor history_tensor(const std::vector<TokenizerEpoch>& history) {
  at::Tensor t = at::zeros({static_cast<int64_t>(history.size()), kEpochFields}, at::kDouble);
  double* p = t.data_ptr<double>();
  for (const TokenizerEpoch& e : history) {
    for (double v :
         {static_cast<double>(e.epoch), e.loss, e.recon, e.align, e.rq, e.seconds, e.improved ? 1.0 : 0.0})
      *p++ = v;
  }
  return t;
}

std::vector<TokenizerEpoch> history_of(const at::Tensor& t) {
  TORCH_CHECK(t.dim() == 2 && t.size(1) == kEpochFields && t.scalar_type() == at::kDouble,
              "tokenizer checkpoint: malformed epoch history");
  std::vector<TokenizerEpoch> out;
  const at::Tensor c = t.contiguous();
  const double* p = c.data_ptr<double>();
  for (int64_t i = 0; i < c.size(0); ++i, p += kEpochFields) {
    out.push_back({static_cast<int64_t>(p[0]), p[1], p[2], p[3], p[4], p[5], p[6] != 0.0});
  }
  return out;
}

/// The identity a checkpoint must match to be resumed (everything but epochs, patience, threads).
std::string fingerprint(const TokenizerTrainOptions& o) {
  std::ostringstream s;
  s.precision(17);
  for (const TokenizerTable& t : o.tables) s << t.name << "=" << t.rows << "x" << t.dim << " ";
  s << "hidden=";
  for (int64_t h : o.hidden) s << h << ",";
  const auto& l = o.loss;
  s << " levels=" << o.levels << " codes=" << o.codes << " codeDim=" << o.code_dim << " recon=" << l.recon
    << " align=" << l.align << " reconWeight=" << l.recon_weight << " alignWeight=" << l.align_weight
    << " beta=" << l.beta << " temperature=" << l.temperature << " symmetric=" << l.infonce_symmetric
    << " mmdAlpha=" << l.mmd_alpha << " residualGradient=" << l.residual_gradient << " sinkhorn=";
  for (int64_t v : l.sinkhorn_levels) s << v << ",";
  s << " epsilon=" << l.sinkhorn_epsilon << " iterations=" << l.sinkhorn_iterations
    << " kmeansInit=" << o.kmeans_init << " kmeansIterations=" << o.kmeans_iterations << " lr=" << o.lr
    << " weightDecay=" << o.weight_decay << " batchSize=" << o.batch_size << " seed=" << o.seed;
  return s.str();
}

const CheckpointKind& checkpoint_kind() {
  static const CheckpointKind kind{kCheckpointFormat, kCheckpointVersion, "tokenizer"};
  return kind;
}

void save_checkpoint(const TokenizerTrainOptions& o, const models::MmRqvae& model, TokenizerAdamW& adam,
                     const TrainState& st, const std::mt19937_64& rng) {
  c10::impl::GenericDict dict =
      checkpoint_dict(checkpoint_kind(), fingerprint(o), model.parameters(), st.best, adam, rng);
  dict.insert("epoch", st.epoch);
  dict.insert("best_epoch", st.best_epoch);
  dict.insert("since_best", st.since_best);
  dict.insert("best_loss", st.best_loss);
  dict.insert("history", history_tensor(st.history));
  write_checkpoint(dict, o.checkpoint, checkpoint_kind());
}

/// Loads `o.checkpoint` into the model, the optimizer, the state and both generators.
/// @return false when the file does not exist.
bool load_checkpoint(const TokenizerTrainOptions& o, models::MmRqvae& model, TokenizerAdamW& adam,
                     TrainState& st, std::mt19937_64& rng) {
  LoadedCheckpoint checkpoint;
  if (!checkpoint.open(o.checkpoint, checkpoint_kind(), fingerprint(o))) return false;
  st.best = checkpoint.restore(model.parameters(), adam, rng);
  st.epoch = checkpoint.get("epoch").toInt();
  st.best_epoch = checkpoint.get("best_epoch").toInt();
  st.since_best = checkpoint.get("since_best").toInt();
  st.best_loss = checkpoint.get("best_loss").toDouble();
  st.history = history_of(checkpoint.get("history").toTensor());
  return true;
}

}  // namespace

std::pair<at::Tensor, at::Tensor> kmeans(const at::Tensor& x_in, int64_t k, int64_t iterations,
                                         bool constrained, std::mt19937_64& rng,
                                         const std::function<bool()>& cancelled) {
  c10::NoGradGuard no_grad;
  TORCH_CHECK(x_in.dim() == 2 && x_in.size(0) >= 1 && x_in.scalar_type() == at::kFloat,
              "kmeans: expected float32 [n, e] with n >= 1 but received ", x_in.sizes());
  TORCH_CHECK(k >= 1, "kmeans: expected k >= 1 but received ", k);
  const at::Tensor x = x_in.contiguous();
  const at::Tensor x_norms = models::squared_norms(x);  // reused by every query against x
  at::Tensor centroids = kmeans_pp(x, x_norms, k, rng);
  at::Tensor assign;
  for (int64_t it = 0; it < iterations; ++it) {
    if (cancelled && cancelled()) throw TokenizerCancelled();
    const at::Tensor next =
        constrained ? constrained_assign(x, x_norms, centroids) : nearest(x, x_norms, centroids);
    if (assign.defined() && next.equal(assign)) break;
    assign = next;
    const at::Tensor sums = at::zeros_like(centroids).index_add_(0, assign, x);
    const at::Tensor counts =
        at::zeros({k}, at::kFloat).index_add_(0, assign, at::ones_like(assign, at::kFloat));
    const at::Tensor filled = counts.gt(0).unsqueeze(1);
    centroids = at::where(filled, sums.div(counts.clamp_min(1).unsqueeze(1)), centroids);
  }
  // The assignment to the returned centroids (the loop's last one predates its centroid update).
  return {centroids,
          constrained ? constrained_assign(x, x_norms, centroids) : nearest(x, x_norms, centroids)};
}

TokenizerTrainResult train_tokenizer(const TokenizerTrainOptions& o, const TokenizerCallbacks& cb) {
  validate(o);
  at::set_num_threads(std::max(1, o.threads));
  at::manual_seed(o.seed);
  std::mt19937_64 rng(o.seed);
  const int64_t num_items = o.tables[0].rows - 1;
  // Items 1..num_items of each table (row 0 = padding is never used).
  std::vector<at::Tensor> items;
  for (const TokenizerTable& t : o.tables) {
    const at::Tensor full = at::from_blob(const_cast<float*>(t.data.data()), {t.rows, t.dim},
                                          at::TensorOptions().dtype(at::kFloat));
    items.push_back(full.narrow(0, 1, num_items));
  }
  models::MmRqvae model(model_config(o));
  TokenizerAdamW adam(model.parameters(), o.lr, o.weight_decay);
  const int64_t modalities = model.modalities();

  TokenizerTrainResult result;
  result.num_items = num_items;
  TrainState st;
  if (o.resume && load_checkpoint(o, model, adam, st, rng)) {
    result.resumed_from_epoch = st.epoch;
  } else if (o.kmeans_init != "none") {
    c10::NoGradGuard no_grad;
    for (int64_t m = 0; m < modalities; ++m) {
      at::Tensor r = model.encode_z(m, items[m]).contiguous();
      const at::Tensor& books = model.codebooks(m);
      for (int64_t l = 0; l < o.levels; ++l) {
        const at::Tensor centroids =
            kmeans(r, o.codes, o.kmeans_iterations, o.kmeans_init == "constrained", rng, cb.cancelled).first;
        books.select(0, l).copy_(centroids);
        r = r.sub(centroids.index_select(0, nearest(r, centroids)));
      }
    }
  }

  // Batches over a shuffled order; a last batch of one item joins the previous one (MMD needs n >= 2).
  int64_t steps = (num_items + o.batch_size - 1) / o.batch_size;
  if (steps > 1 && num_items % o.batch_size == 1) --steps;
  std::vector<int64_t> order(static_cast<size_t>(num_items));
  bool stop = st.since_best >= o.patience;
  for (int64_t epoch = st.epoch + 1; epoch <= o.epochs && !stop; ++epoch) {
    std::iota(order.begin(), order.end(), 0);
    std::shuffle(order.begin(), order.end(), rng);
    const auto start = Clock::now();
    double sums[4] = {0, 0, 0, 0};
    for (int64_t step = 0; step < steps; ++step) {
      if (cb.cancelled && cb.cancelled()) throw TokenizerCancelled();
      const int64_t first = step * o.batch_size;
      const int64_t last = step + 1 == steps ? num_items : first + o.batch_size;
      at::Tensor index = at::empty({last - first}, at::kLong);
      std::copy(order.begin() + first, order.begin() + last, index.data_ptr<int64_t>());
      std::vector<at::Tensor> xs;
      for (const at::Tensor& t : items) xs.push_back(t.index_select(0, index));
      adam.zero_grad();
      const models::MmRqvaeLosses losses = model.loss(xs, o.loss, true);
      const double total = losses.total.item<double>();
      TORCH_CHECK(std::isfinite(total), "tokenizer: the training loss became non-finite at epoch ", epoch,
                  ", step ", step + 1, " (lower the learning rate)");
      torch::autograd::backward({losses.total});
      adam.step();
      sums[0] += total;
      sums[1] += losses.recon;
      sums[2] += losses.align;
      sums[3] += losses.rq;
      if (cb.on_step) cb.on_step({epoch, step + 1, steps, total, losses.recon, losses.align, losses.rq});
    }
    const double n = static_cast<double>(steps);
    TokenizerEpoch report{epoch,       sums[0] / n,          sums[1] / n, sums[2] / n,
                          sums[3] / n, seconds_since(start), false};
    report.improved = report.loss < st.best_loss;
    if (report.improved) {
      st.best_loss = report.loss;
      st.best_epoch = epoch;
      st.since_best = 0;
      st.best.clear();
      for (const auto& [name, p] : model.parameters()) st.best.push_back(p.detach().clone());
    } else {
      ++st.since_best;
    }
    st.epoch = epoch;
    st.history.push_back(report);
    if (!o.checkpoint.empty()) save_checkpoint(o, model, adam, st, rng);
    if (cb.on_epoch) cb.on_epoch(report);
    stop = st.since_best >= o.patience;
  }
  TORCH_CHECK(!st.best.empty(), "tokenizer: no epoch was trained");
  result.epochs = st.history;
  result.best_epoch = st.best_epoch;
  result.stopped_early = st.since_best >= o.patience && st.epoch < o.epochs;
  c10::NoGradGuard no_grad;
  const auto& params = model.parameters();
  for (size_t i = 0; i < params.size(); ++i) params[i].second.copy_(st.best[i]);
  for (const auto& [name, p] : params) result.parameters.emplace_back(name, p.detach().clone().contiguous());
  for (int64_t m = 0; m < modalities; ++m) {
    TokenizerModalityResult out;
    out.name = o.tables[m].name;
    const at::Tensor codes = model.encode(m, items[m]).contiguous();
    const at::Tensor z_q = model.lookup(m, codes).contiguous();
    out.codes.assign(codes.data_ptr<int32_t>(), codes.data_ptr<int32_t>() + codes.numel());
    out.quantized.assign(z_q.data_ptr<float>(), z_q.data_ptr<float>() + z_q.numel());
    out.recon_mse = at::mse_loss(model.decode(m, z_q), items[m]).item<double>();
    result.modalities.push_back(std::move(out));
  }
  return result;
}

}  // namespace mmesid::train
