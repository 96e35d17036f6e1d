#include "sasrec_trainer.h"

#include <ATen/CPUGeneratorImpl.h>
#include <ATen/Context.h>
#include <ATen/Parallel.h>
#include <ATen/ops/binary_cross_entropy_with_logits.h>
#include <ATen/ops/cross_entropy_loss.h>
#include <ATen/ops/embedding.h>
#include <ATen/ops/from_blob.h>
#include <ATen/ops/ones_like.h>
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
#include <mutex>
#include <random>
#include <sstream>

#include "eval/ranking.h"
#include "torch/train/checkpoint.h"

namespace mmesid::train {
namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

/// The CSR data with each user's training part and evaluation split derived.
struct Data {
  const SasrecTrainOptions& o;
  int64_t users;
  std::vector<int64_t> train_users;              // users whose training part has >= 2 items
  std::vector<std::vector<int32_t>> train_sets;  // sorted distinct items of each user's training part
  std::vector<int64_t> eval_users;               // users with >= 3 items

  explicit Data(const SasrecTrainOptions& options)
      : o(options), users(static_cast<int64_t>(options.offsets.size()) - 1) {
    TORCH_CHECK(users >= 1, "sasrec: expected at least one user");
    TORCH_CHECK(o.offsets[0] == 0 && o.offsets[users] == static_cast<int32_t>(o.items.size()),
                "sasrec: inconsistent offsets");
    for (int32_t item : o.items) {
      TORCH_CHECK(item >= 1 && item <= o.model.num_items, "sasrec: item ", item, " outside [1, ",
                  o.model.num_items, "]");
    }
    train_sets.resize(users);
    for (int64_t u = 0; u < users; ++u) {
      TORCH_CHECK(o.offsets[u + 1] >= o.offsets[u], "sasrec: offsets must be non-decreasing");
      const int64_t n = length(u), m = train_length(u);
      if (m >= 2) train_users.push_back(u);
      if (n >= 3) eval_users.push_back(u);
      std::vector<int32_t>& set = train_sets[u];
      set.assign(o.items.begin() + o.offsets[u], o.items.begin() + o.offsets[u] + m);
      std::sort(set.begin(), set.end());
      set.erase(std::unique(set.begin(), set.end()), set.end());
    }
    TORCH_CHECK(!train_users.empty(), "sasrec: no user has a training sequence of 2 items or more");
  }

  int64_t length(int64_t u) const { return o.offsets[u + 1] - o.offsets[u]; }
  int64_t train_length(int64_t u) const { return length(u) >= 3 ? length(u) - 2 : length(u); }
  const int32_t* seq(int64_t u) const { return o.items.data() + o.offsets[u]; }
};

/// Evaluates the model on the validation (drop = 2) or test (drop = 1) split.
SasrecMetrics evaluate(const models::Sasrec& model, const Data& data, int drop, const SasrecCallbacks& cb) {
  const auto& ks = sasrec_ks();
  const int64_t num_ks = static_cast<int64_t>(ks.size());
  const int64_t max_len = model.config().max_len, num_items = model.config().num_items;
  eval::RankingConfig config;
  config.ks = ks;
  config.threads = data.o.threads;
  std::vector<double> sums(eval::sums_length(num_ks), 0.0);
  const int64_t total = static_cast<int64_t>(data.eval_users.size());
  for (int64_t start = 0; start < total; start += data.o.eval_batch_size) {
    if (cb.cancelled && cb.cancelled()) throw TrainingCancelled("sasrec training was cancelled");
    const int64_t batch = std::min(data.o.eval_batch_size, total - start);
    at::Tensor x = at::zeros({batch, max_len}, at::kLong);
    int64_t* xp = x.data_ptr<int64_t>();
    std::vector<int32_t> targets(batch), offsets(batch + 1, 0), history;
    for (int64_t b = 0; b < batch; ++b) {
      const int64_t u = data.eval_users[start + b];
      const int32_t* s = data.seq(u);
      const int64_t input = data.length(u) - drop;
      targets[b] = s[input];
      history.insert(history.end(), s, s + input);
      offsets[b + 1] = static_cast<int32_t>(history.size());
      const int64_t k = std::min(input, max_len);
      for (int64_t j = 0; j < k; ++j) xp[b * max_len + max_len - k + j] = s[input - k + j];
    }
    const at::Tensor scores = model.score_last(x).contiguous();
    eval::RankingBatch rb;
    rb.scores = scores.data_ptr<float>();
    rb.batch = batch;
    rb.num_items = num_items;
    rb.targets = targets.data();
    rb.history_offsets = offsets.data();
    rb.history_items = history.data();
    rb.history_length = static_cast<int64_t>(history.size());
    std::vector<int32_t> ranks(batch);
    eval::rank_targets(rb, config.threads, ranks.data());
    eval::accumulate_metrics(ranks.data(), targets.data(), batch, config, sums.data());
  }
  SasrecMetrics m;
  m.users = total;
  const double n = total > 0 ? static_cast<double>(total) : 1.0;
  for (int64_t k = 0; k < num_ks; ++k) {
    m.hr.push_back(sums[eval::sums_index(eval::kGroupAll, eval::kMetricHr, k, num_ks)] / n);
    m.ndcg.push_back(sums[eval::sums_index(eval::kGroupAll, eval::kMetricNdcg, k, num_ks)] / n);
    m.mrr.push_back(sums[eval::sums_index(eval::kGroupAll, eval::kMetricMrr, k, num_ks)] / n);
  }
  return m;
}

SasrecBatch make_batch(const Data& data, const std::vector<int64_t>& order, int64_t start, int64_t batch,
                       int64_t max_len, bool negatives, std::mt19937_64& rng) {
  SasrecBatch out;
  out.x = at::zeros({batch, max_len}, at::kLong);
  out.pos = at::zeros({batch, max_len}, at::kLong);
  if (negatives) out.neg = at::zeros({batch, max_len}, at::kLong);
  int64_t* xp = out.x.data_ptr<int64_t>();
  int64_t* pp = out.pos.data_ptr<int64_t>();
  int64_t* np = negatives ? out.neg.data_ptr<int64_t>() : nullptr;
  const int64_t num_items = data.o.model.num_items;
  std::uniform_int_distribution<int64_t> draw(1, num_items);
  for (int64_t b = 0; b < batch; ++b) {
    const int64_t u = order[start + b];
    const int32_t* s = data.seq(u);
    const int64_t m = data.train_length(u);
    const int64_t k = std::min(m - 1, max_len);  // positions with a target
    const std::vector<int32_t>& set = data.train_sets[u];
    const bool can_sample = static_cast<int64_t>(set.size()) < num_items;
    for (int64_t j = 0; j < k; ++j) {
      const int64_t col = max_len - k + j;
      xp[b * max_len + col] = s[m - 1 - k + j];
      pp[b * max_len + col] = s[m - k + j];
      if (np) {
        int64_t item = draw(rng);
        // Rejection sampling; a user who saw every item gets unrestricted negatives.
        while (can_sample && std::binary_search(set.begin(), set.end(), static_cast<int32_t>(item)))
          item = draw(rng);
        np[b * max_len + col] = item;
      }
    }
  }
  return out;
}

// ---------------------------------------------------------------- checkpoints

constexpr const char* kCheckpointFormat = "mmesid.sasrec.checkpoint";
constexpr int64_t kCheckpointVersion = 1;
constexpr int64_t kEpochFields =
    6 + 3 * 3;  // epoch, loss, seconds, eval_seconds, improved, users, hr/ndcg/mrr × 3

/// Everything that evolves during training.
struct TrainState {
  int64_t epoch = 0;  // epochs done
  int64_t best_epoch = 0, since_best = 0;
  double best_ndcg = -1.0;
  std::vector<at::Tensor> best;
  std::vector<SasrecEpoch> history;
};

at::Tensor history_tensor(const std::vector<SasrecEpoch>& history) {
  at::Tensor t = at::zeros({static_cast<int64_t>(history.size()), kEpochFields}, at::kDouble);
  double* p = t.data_ptr<double>();
  for (const SasrecEpoch& e : history) {
    *p++ = static_cast<double>(e.epoch);
    *p++ = e.loss;
    *p++ = e.seconds;
    *p++ = e.eval_seconds;
    *p++ = e.improved ? 1.0 : 0.0;
    *p++ = static_cast<double>(e.valid.users);
    for (const auto* list : {&e.valid.hr, &e.valid.ndcg, &e.valid.mrr}) {
      for (double v : *list) *p++ = v;
    }
  }
  return t;
}

std::vector<SasrecEpoch> history_of(const at::Tensor& t) {
  TORCH_CHECK(t.dim() == 2 && t.size(1) == kEpochFields && t.scalar_type() == at::kDouble,
              "sasrec checkpoint: malformed epoch history");
  std::vector<SasrecEpoch> out;
  const at::Tensor c = t.contiguous();
  const double* p = c.data_ptr<double>();
  for (int64_t i = 0; i < c.size(0); ++i) {
    SasrecEpoch e;
    e.epoch = static_cast<int64_t>(*p++);
    e.loss = *p++;
    e.seconds = *p++;
    e.eval_seconds = *p++;
    e.improved = *p++ != 0.0;
    e.valid.users = static_cast<int64_t>(*p++);
    for (auto* list : {&e.valid.hr, &e.valid.ndcg, &e.valid.mrr}) {
      for (int k = 0; k < 3; ++k) list->push_back(*p++);
    }
    out.push_back(e);
  }
  return out;
}

/// The identity a checkpoint must match to be resumed.
std::string fingerprint(const SasrecTrainOptions& o) {
  std::ostringstream s;
  s << "items=" << o.model.num_items << " dim=" << o.model.dim << " blocks=" << o.model.blocks
    << " heads=" << o.model.heads << " maxLen=" << o.model.max_len << " dropout=" << o.model.dropout
    << " loss=" << o.loss << " seed=" << o.seed << " batchSize=" << o.batch_size << " lr=" << o.lr
    << " users=" << (o.offsets.size() - 1) << " interactions=" << o.items.size();
  return s.str();
}

const CheckpointKind& checkpoint_kind() {
  static const CheckpointKind kind{kCheckpointFormat, kCheckpointVersion, "sasrec"};
  return kind;
}

void save_checkpoint(const SasrecTrainOptions& o, const models::Sasrec& model, SasrecAdam& adam,
                     const TrainState& st, const std::mt19937_64& rng) {
  c10::impl::GenericDict dict =
      checkpoint_dict(checkpoint_kind(), fingerprint(o), model.parameters(), st.best, adam, rng);
  dict.insert("epoch", st.epoch);
  dict.insert("best_epoch", st.best_epoch);
  dict.insert("since_best", st.since_best);
  dict.insert("best_ndcg", st.best_ndcg);
  dict.insert("history", history_tensor(st.history));
  write_checkpoint(dict, o.checkpoint, checkpoint_kind());
}

/// Loads `o.checkpoint` into the model, the optimizer, the state and both generators.
/// @return false when the file does not exist.
bool load_checkpoint(const SasrecTrainOptions& o, models::Sasrec& model, SasrecAdam& adam, TrainState& st,
                     std::mt19937_64& rng) {
  LoadedCheckpoint checkpoint;
  if (!checkpoint.open(o.checkpoint, checkpoint_kind(), fingerprint(o))) return false;
  st.best = checkpoint.restore(model.parameters(), adam, rng);
  st.epoch = checkpoint.get("epoch").toInt();
  st.best_epoch = checkpoint.get("best_epoch").toInt();
  st.since_best = checkpoint.get("since_best").toInt();
  st.best_ndcg = checkpoint.get("best_ndcg").toDouble();
  st.history = history_of(checkpoint.get("history").toTensor());
  return true;
}

}  // namespace

at::Tensor sasrec_loss(const models::Sasrec& model, const SasrecBatch& batch, bool bce) {
  const int64_t d = model.config().dim, num_items = model.config().num_items;
  const at::Tensor h = model.forward(batch.x, true);  // [B, L, d]
  // Only the positions with a target (≈ 6 of 50 on Beauty) enter the loss: select them before the
  // item lookups and products, not after.
  const at::Tensor rows = batch.pos.reshape({-1}).ne(0).nonzero().squeeze(1);
  const at::Tensor hv = h.reshape({-1, d}).index_select(0, rows);  // [M, d]
  const at::Tensor target = batch.pos.reshape({-1}).index_select(0, rows);
  const at::Tensor& emb = model.item_embedding();
  if (bce) {
    const at::Tensor negative = batch.neg.reshape({-1}).index_select(0, rows);
    const at::Tensor pos_logits = hv.mul(at::embedding(emb, target, 0)).sum(-1);
    const at::Tensor neg_logits = hv.mul(at::embedding(emb, negative, 0)).sum(-1);
    return at::binary_cross_entropy_with_logits(pos_logits, at::ones_like(pos_logits))
        .add(at::binary_cross_entropy_with_logits(neg_logits, at::zeros_like(neg_logits)));
  }
  const at::Tensor logits = hv.matmul(emb.narrow(0, 1, num_items).t());  // [M, N]
  return at::cross_entropy_loss(logits, target.sub(1));
}

SasrecStepper::SasrecStepper(models::Sasrec& model, double lr, bool bce)
    : model_(model), adam_(model.parameters(), lr), bce_(bce) {}

double SasrecStepper::step(const SasrecBatch& batch) {
  adam_.zero_grad();
  const at::Tensor loss = sasrec_loss(model_, batch, bce_);
  torch::autograd::backward({loss});
  adam_.step();
  return loss.item<double>();
}

SasrecTrainResult train_sasrec(const SasrecTrainOptions& o, const SasrecCallbacks& cb) {
  TORCH_CHECK(o.loss == "bce" || o.loss == "ce", "sasrec: expected loss \"bce\" or \"ce\" but received ",
              o.loss);
  TORCH_CHECK(o.batch_size >= 1 && o.epochs >= 1 && o.patience >= 1 && o.eval_batch_size >= 1,
              "sasrec: expected batch_size, epochs, patience >= 1");
  TORCH_CHECK(o.lr > 0 && std::isfinite(o.lr), "sasrec: expected lr > 0 but received ", o.lr);
  at::set_num_threads(std::max(1, o.threads));
  at::manual_seed(o.seed);
  std::mt19937_64 rng(o.seed);
  const Data data(o);
  models::Sasrec model(o.model);
  const bool bce = o.loss == "bce";
  SasrecStepper stepper(model, o.lr, bce);
  SasrecAdam& adam = stepper.optimizer();
  const int64_t ndcg10 = 1;  // index of K = 10 in sasrec_ks()

  SasrecTrainResult result;
  result.training_rows = static_cast<int64_t>(data.train_users.size());
  TrainState st;
  if (o.resume && !o.checkpoint.empty() && load_checkpoint(o, model, adam, st, rng)) {
    result.resumed_from_epoch = st.epoch;
  }
  std::vector<int64_t> order = data.train_users;
  const int64_t rows = static_cast<int64_t>(order.size());
  const int64_t steps = (rows + o.batch_size - 1) / o.batch_size;
  bool stop = st.since_best >= o.patience;

  for (int64_t epoch = st.epoch + 1; epoch <= o.epochs && !stop; ++epoch) {
    // The order is re-derived from the sorted list each epoch, so resuming needs only the rng state.
    order = data.train_users;
    std::shuffle(order.begin(), order.end(), rng);
    const auto start = Clock::now();
    double loss_sum = 0.0;
    for (int64_t step = 0; step < steps; ++step) {
      if (cb.cancelled && cb.cancelled()) throw TrainingCancelled("sasrec training was cancelled");
      const int64_t first = step * o.batch_size, batch = std::min(o.batch_size, rows - first);
      const double value = stepper.step(make_batch(data, order, first, batch, o.model.max_len, bce, rng));
      TORCH_CHECK(std::isfinite(value), "sasrec: the training loss became non-finite at epoch ", epoch,
                  ", step ", step + 1, " (lower the learning rate)");
      loss_sum += value;
      if (cb.on_step) {
        cb.on_step({epoch, step + 1, steps, value,
                    static_cast<double>(first + batch) / std::max(1e-9, seconds_since(start))});
      }
    }
    SasrecEpoch report;
    report.epoch = epoch;
    report.loss = loss_sum / static_cast<double>(steps);
    report.seconds = seconds_since(start);
    const auto eval_start = Clock::now();
    report.valid = evaluate(model, data, 2, cb);
    report.eval_seconds = seconds_since(eval_start);
    report.improved = report.valid.ndcg[ndcg10] > st.best_ndcg;
    if (report.improved) {
      st.best_ndcg = report.valid.ndcg[ndcg10];
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
  result.epochs = st.history;
  result.best_epoch = st.best_epoch;
  result.stopped_early = st.since_best >= o.patience && st.epoch < o.epochs;
  TORCH_CHECK(!st.best.empty(), "sasrec: no epoch was trained");
  const std::vector<at::Tensor>& best = st.best;
  {
    c10::NoGradGuard no_grad;
    const auto& params = model.parameters();
    for (size_t i = 0; i < params.size(); ++i) params[i].second.copy_(best[i]);
  }
  result.test = evaluate(model, data, 1, cb);
  const at::Tensor emb = model.item_embedding().detach().contiguous();
  result.item_emb.resize(static_cast<size_t>(emb.numel()));
  std::memcpy(result.item_emb.data(), emb.data_ptr<float>(), result.item_emb.size() * sizeof(float));
  for (const auto& [name, p] : model.parameters())
    result.parameters.emplace_back(name, p.detach().contiguous());
  return result;
}

}  // namespace mmesid::train
