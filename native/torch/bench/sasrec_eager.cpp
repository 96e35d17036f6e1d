// Plain libtorch eager SASRec (torch::nn modules + torch::optim::Adam), written the way a libtorch
// user would port pmixer/SASRec.pytorch; the same-run baseline of the SASRec trials of `npm run bench`.
#include <torch/torch.h>

#include <cmath>
#include <limits>
#include <map>
#include <memory>
#include <mutex>
#include <sstream>
#include <string>
#include <vector>

#include "torch/bench/sasrec_bench.h"

namespace mmesid::torch_bench {
namespace {

namespace nn = torch::nn;
namespace F = torch::nn::functional;

struct EagerBlockImpl : nn::Module {
  EagerBlockImpl(int64_t dim, int64_t heads, double dropout)
      : attn_ln(register_module("attn_ln", nn::LayerNorm(nn::LayerNormOptions({dim}).eps(1e-8)))),
        attn(register_module(
            "attn", nn::MultiheadAttention(nn::MultiheadAttentionOptions(dim, heads).dropout(dropout)))),
        ffn_ln(register_module("ffn_ln", nn::LayerNorm(nn::LayerNormOptions({dim}).eps(1e-8)))),
        ffn1(register_module("ffn1", nn::Linear(dim, dim))),
        ffn2(register_module("ffn2", nn::Linear(dim, dim))),
        drop1(register_module("drop1", nn::Dropout(dropout))),
        drop2(register_module("drop2", nn::Dropout(dropout))) {}

  /// h float32 [B, L, d] → [B, L, d]; causal_mask float32 [L, L] additive (−inf above the diagonal).
  torch::Tensor forward(torch::Tensor h, const torch::Tensor& causal_mask) {
    torch::Tensor seqs = h.transpose(0, 1);  // [L, B, d], the layout nn::MultiheadAttention takes
    torch::Tensor q = attn_ln(seqs);
    torch::Tensor out = std::get<0>(attn->forward(q, seqs, seqs, {}, /*need_weights=*/false, causal_mask));
    seqs = (q + out).transpose(0, 1);
    seqs = ffn_ln(seqs);
    return seqs + drop2(ffn2(torch::relu(drop1(ffn1(seqs)))));
  }

  nn::LayerNorm attn_ln;
  nn::MultiheadAttention attn;
  nn::LayerNorm ffn_ln;
  nn::Linear ffn1, ffn2;
  nn::Dropout drop1, drop2;
};
TORCH_MODULE(EagerBlock);

struct EagerSasrecImpl : nn::Module {
  explicit EagerSasrecImpl(const models::SasrecConfig& c)
      : config(c),
        item_emb(register_module("item_emb",
                                 nn::Embedding(nn::EmbeddingOptions(c.num_items + 1, c.dim).padding_idx(0)))),
        pos_emb(register_module("pos_emb", nn::Embedding(c.max_len, c.dim))),
        emb_drop(register_module("emb_drop", nn::Dropout(c.dropout))),
        last_ln(register_module("last_ln", nn::LayerNorm(nn::LayerNormOptions({c.dim}).eps(1e-8)))),
        causal_mask(torch::full({c.max_len, c.max_len}, -std::numeric_limits<float>::infinity()).triu(1)) {
    for (int64_t i = 0; i < c.blocks; ++i)
      blocks.push_back(register_module("block" + std::to_string(i), EagerBlock(c.dim, c.heads, c.dropout)));
    // The reference's initialisation: Xavier-normal for every matrix, a zero padding row.
    torch::NoGradGuard no_grad;
    for (torch::Tensor& p : parameters()) {
      if (p.dim() > 1) torch::nn::init::xavier_normal_(p);
    }
    item_emb->weight[0].zero_();
  }

  /// x int64 [B, L] → hidden states float32 [B, L, d].
  torch::Tensor forward(const torch::Tensor& x) {
    const torch::Tensor keep = x.ne(0).unsqueeze(-1);
    torch::Tensor h = item_emb(x) * std::sqrt(static_cast<double>(config.dim));
    h = h + pos_emb(torch::arange(config.max_len, torch::kLong)).unsqueeze(0);
    h = emb_drop(h) * keep;
    for (EagerBlock& block : blocks) h = block(h, causal_mask) * keep;
    return last_ln(h);
  }

  models::SasrecConfig config;
  nn::Embedding item_emb, pos_emb;
  nn::Dropout emb_drop;
  std::vector<EagerBlock> blocks;
  nn::LayerNorm last_ln;
  torch::Tensor causal_mask;
};
TORCH_MODULE(EagerSasrec);

torch::Tensor loss_of(EagerSasrec& model, const torch::Tensor& x, const torch::Tensor& pos,
                      const torch::Tensor& neg, bool bce) {
  const torch::Tensor h = model(x);
  const torch::Tensor valid = pos.ne(0);
  if (bce) {
    const torch::Tensor pos_logits = (h * model->item_emb(pos)).sum(-1).masked_select(valid);
    const torch::Tensor neg_logits = (h * model->item_emb(neg)).sum(-1).masked_select(valid);
    return F::binary_cross_entropy_with_logits(pos_logits, torch::ones_like(pos_logits)) +
           F::binary_cross_entropy_with_logits(neg_logits, torch::zeros_like(neg_logits));
  }
  const torch::Tensor hv = h.index({valid});  // [M, d]
  const torch::Tensor logits = hv.matmul(model->item_emb->weight.narrow(0, 1, model->config.num_items).t());
  return F::cross_entropy(logits, pos.index({valid}) - 1);
}

struct EagerTrainState {
  EagerTrainState(const models::SasrecConfig& config)
      : model(config),
        adam(model->parameters(), torch::optim::AdamOptions(1e-3).betas({0.9, 0.98}).eps(1e-8)) {}
  EagerSasrec model;
  torch::optim::Adam adam;
};

std::string key_of(const models::SasrecConfig& c, int tag) {
  std::ostringstream key;
  key << c.num_items << '/' << c.dim << '/' << c.blocks << '/' << c.heads << '/' << c.max_len << '/'
      << c.dropout << '/' << tag;
  return key.str();
}

std::mutex g_mutex;

torch::Tensor long_view(const int32_t* data, at::IntArrayRef shape) {
  return torch::from_blob(const_cast<int32_t*>(data), shape, torch::kInt).to(torch::kLong);
}

}  // namespace

double sasrec_train_eager(const models::SasrecConfig& config, bool bce, const SasrecTrainBatches& batches) {
  static std::map<std::string, std::unique_ptr<EagerTrainState>> states;
  std::lock_guard<std::mutex> lock(g_mutex);
  std::unique_ptr<EagerTrainState>& state = states[key_of(config, bce ? 1 : 0)];
  if (!state) {
    torch::manual_seed(1234);
    state = std::make_unique<EagerTrainState>(config);
  }
  state->model->train();
  const int64_t rows = batches.batch, len = config.max_len, stride = rows * len;
  double loss_sum = 0.0;
  for (int64_t i = 0; i < batches.count; ++i) {
    const torch::Tensor x = long_view(batches.x + i * stride, {rows, len});
    const torch::Tensor pos = long_view(batches.pos + i * stride, {rows, len});
    const torch::Tensor neg = bce ? long_view(batches.neg + i * stride, {rows, len}) : torch::Tensor();
    state->adam.zero_grad();
    torch::Tensor loss = loss_of(state->model, x, pos, neg, bce);
    loss.backward();
    state->adam.step();
    loss_sum += loss.item<double>();
  }
  return loss_sum / static_cast<double>(std::max<int64_t>(1, batches.count));
}

double sasrec_evaluate_eager(const models::SasrecConfig& config, const SasrecEvalUsers& users) {
  static std::map<std::string, std::unique_ptr<EagerSasrec>> models_by_key;
  std::lock_guard<std::mutex> lock(g_mutex);
  std::unique_ptr<EagerSasrec>& model = models_by_key[key_of(config, 2)];
  if (!model) {
    torch::manual_seed(1234);
    model = std::make_unique<EagerSasrec>(config);
  }
  torch::NoGradGuard no_grad;
  (*model)->eval();
  const int64_t len = config.max_len;
  const std::vector<int64_t> ks{5, 10, 20};
  torch::Tensor hr = torch::zeros({3}, torch::kDouble), ndcg = torch::zeros({3}, torch::kDouble);
  for (int64_t start = 0; start < users.users; start += users.eval_batch) {
    const int64_t batch = std::min(users.eval_batch, users.users - start);
    const torch::Tensor x = long_view(users.inputs + start * len, {batch, len});
    const torch::Tensor target = long_view(users.targets + start, {batch, 1});
    const torch::Tensor offsets = long_view(users.history_offsets + start, {batch + 1});
    const int64_t first = users.history_offsets[start], last = users.history_offsets[start + batch];
    const torch::Tensor history = long_view(users.history_items + first, {last - first});

    const torch::Tensor h = (*model)(x).select(1, len - 1);           // [B, d]
    torch::Tensor scores = h.matmul((*model)->item_emb->weight.t());  // [B, N + 1]
    scores.select(1, 0).fill_(-std::numeric_limits<float>::infinity());
    const torch::Tensor target_score = scores.gather(1, target);  // [B, 1]
    const torch::Tensor rows = torch::repeat_interleave(torch::arange(batch, torch::kLong), offsets.diff());
    scores.index_put_({rows, history}, -std::numeric_limits<float>::infinity());
    const torch::Tensor ids = torch::arange(scores.size(1), torch::kLong).unsqueeze(0);
    const torch::Tensor beats =
        scores.gt(target_score).logical_or(scores.eq(target_score).logical_and(ids.lt(target)));
    const torch::Tensor rank = beats.sum(1).to(torch::kDouble);  // [B]
    for (size_t k = 0; k < ks.size(); ++k) {
      const torch::Tensor hit = rank.lt(static_cast<double>(ks[k])).to(torch::kDouble);
      hr[k] += hit.sum();
      ndcg[k] += (hit / torch::log2(rank + 2.0)).sum();
    }
  }
  return ndcg[1].item<double>();
}

}  // namespace mmesid::torch_bench
