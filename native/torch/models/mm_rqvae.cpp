#include "mm_rqvae.h"

#include <ATen/ops/addmm.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/linear.h>
#include <ATen/ops/logsumexp.h>
#include <ATen/ops/mse_loss.h>
#include <ATen/ops/ones.h>
#include <ATen/ops/stack.h>
#include <ATen/ops/zeros.h>
#include <c10/core/GradMode.h>

#include <cmath>
#include <map>
#include <sstream>
#include <stdexcept>

#include "torch/ops/kernel_ops.h"

namespace mmesid::models {
namespace {

at::Tensor xavier_normal(int64_t rows, int64_t cols) {
  const double std = std::sqrt(2.0 / static_cast<double>(rows + cols));
  return at::empty({rows, cols}, at::kFloat).normal_(0.0, std);
}

int modality_rank(const std::string& name) {
  if (name == "collab") return 0;
  if (name == "text") return 1;
  if (name == "visual") return 2;
  return -1;
}

void require(bool ok, const std::string& message) {
  if (!ok) throw std::invalid_argument("tokenizer: " + message);
}

}  // namespace

at::Tensor squared_norms(const at::Tensor& a) {
  c10::NoGradGuard no_grad;
  return a.pow(2).sum(1, true);
}

at::Tensor squared_distances(const at::Tensor& a, const at::Tensor& a_norms, const at::Tensor& b) {
  c10::NoGradGuard no_grad;
  const at::Tensor b2 = b.pow(2).sum(1).unsqueeze(0);  // [1, K]
  return a_norms.add(b2).sub(a.matmul(b.t()), 2.0);
}

at::Tensor squared_distances(const at::Tensor& a, const at::Tensor& b) {
  return squared_distances(a, squared_norms(a), b);
}

at::Tensor sinkhorn_assign(const at::Tensor& distances, double epsilon, int64_t iterations) {
  c10::NoGradGuard no_grad;
  TORCH_CHECK(distances.dim() == 2 && distances.size(0) >= 1 && distances.size(1) >= 1,
              "sinkhorn: expected distances [B, K] but received ", distances.sizes());
  const at::Tensor d = distances.to(at::kDouble);
  const double max = d.max().item<double>(), min = d.min().item<double>();
  const double mid = (max + min) / 2.0, amplitude = max - mid + 1e-5;
  const at::Tensor centred = d.sub(mid).div(amplitude);  // in [−1, 1]
  const double rows = static_cast<double>(d.size(0)), cols = static_cast<double>(d.size(1));
  // Fast path, Q = diag(a)·M·diag(c) with the kernel M = exp(−(d − min_k d)/ε) computed once: a row
  // shift is undone by the first row normalisation, and it keeps M in [exp(−2/ε), 1] (> 0 in double
  // for ε >= 0.003), so each iteration is two matrix-vector products instead of B·K exponentials.
  {
    const at::Tensor kernel = centred.sub(std::get<0>(centred.min(1, true))).div(-epsilon).exp();
    at::Tensor a, c = at::ones({d.size(1)}, d.options());
    for (int64_t it = 0; it < iterations; ++it) {
      a = kernel.mv(c).mul(cols).reciprocal();      // rows sum to 1/K
      c = kernel.t().mv(a).mul(rows).reciprocal();  // columns sum to 1/B
    }
    const bool ok = iterations == 0 || (a.isfinite().all().item<bool>() && c.isfinite().all().item<bool>() &&
                                        c.gt(0).all().item<bool>());
    if (ok) return kernel.mul(c.unsqueeze(0)).argmax(1);  // a_b scales a whole row: no effect on argmax
  }
  // Log domain (an underflowing kernel: a very small ε): the same iterations on log Q.
  at::Tensor log_q = centred.div(-epsilon);
  for (int64_t it = 0; it < iterations; ++it) {
    log_q = log_q.sub(at::logsumexp(log_q, {1}, true)).sub(std::log(cols));
    log_q = log_q.sub(at::logsumexp(log_q, {0}, true)).sub(std::log(rows));
  }
  return log_q.argmax(1);
}

at::Tensor MmRqvae::add(const std::string& name, at::Tensor t) {
  t.requires_grad_(true);
  params_.emplace_back(name, t);
  return t;
}

MmRqvae::MmRqvae(const MmRqvaeConfig& config) : config_(config) {
  require(!config.modalities.empty() && config.modalities.size() <= 3,
          "expected 1 to 3 modalities but received " + std::to_string(config.modalities.size()));
  require(config.levels >= 1, "expected levels >= 1 but received " + std::to_string(config.levels));
  require(config.codes >= 1, "expected codes >= 1 but received " + std::to_string(config.codes));
  require(config.code_dim >= 1, "expected codeDim >= 1 but received " + std::to_string(config.code_dim));
  int previous = -1;
  for (const MmRqvaeModality& m : config.modalities) {
    const int rank = modality_rank(m.name);
    require(rank >= 0, "expected a modality collab, text or visual but received \"" + m.name + "\"");
    require(rank > previous, "expected the modalities in the order collab, text, visual, each once");
    previous = rank;
    require(m.input_dim >= 1, "expected inputDim >= 1 for " + m.name);
    for (int64_t h : m.hidden) require(h >= 1, "expected hidden sizes >= 1 for " + m.name);
  }
  c10::NoGradGuard no_grad;
  for (const MmRqvaeModality& m : config.modalities) {
    std::vector<int64_t> dims{m.input_dim};
    dims.insert(dims.end(), m.hidden.begin(), m.hidden.end());
    dims.push_back(config.code_dim);
    Modality mod;
    const size_t layers = dims.size() - 1;
    for (size_t i = 0; i < layers; ++i) {
      const std::string p = m.name + ".encoder." + std::to_string(i) + ".";
      Layer l;
      l.weight = add(p + "weight", xavier_normal(dims[i + 1], dims[i]));
      l.bias = add(p + "bias", at::zeros({dims[i + 1]}, at::kFloat));
      mod.encoder.push_back(l);
    }
    for (size_t i = 0; i < layers; ++i) {
      const int64_t in = dims[layers - i], out = dims[layers - i - 1];
      const std::string p = m.name + ".decoder." + std::to_string(i) + ".";
      Layer l;
      l.weight = add(p + "weight", xavier_normal(out, in));
      l.bias = add(p + "bias", at::zeros({out}, at::kFloat));
      mod.decoder.push_back(l);
    }
    const double bound = 1.0 / static_cast<double>(config.codes);
    mod.codebooks =
        add(m.name + ".codebooks",
            at::empty({config.levels, config.codes, config.code_dim}, at::kFloat).uniform_(-bound, bound));
    mods_.push_back(std::move(mod));
  }
}

int64_t MmRqvae::modality_index(const std::string& name) const {
  for (size_t i = 0; i < config_.modalities.size(); ++i) {
    if (config_.modalities[i].name == name) return static_cast<int64_t>(i);
  }
  return -1;
}

void MmRqvae::assign(const std::vector<std::pair<std::string, at::Tensor>>& named) {
  std::map<std::string, at::Tensor> given;
  for (const auto& [name, t] : named) {
    if (!given.emplace(name, t).second)
      throw std::invalid_argument("tokenizer: tensor \"" + name + "\" is given twice");
  }
  for (const auto& [name, p] : params_) {
    auto it = given.find(name);
    if (it == given.end())
      throw std::invalid_argument("tokenizer: the weights lack the tensor \"" + name + "\"");
    const at::Tensor& t = it->second;
    if (t.scalar_type() != at::kFloat || t.sizes() != p.sizes()) {
      std::ostringstream m;
      m << "tokenizer: tensor \"" << name << "\" should be float32 " << p.sizes() << " but is "
        << t.scalar_type() << " " << t.sizes();
      throw std::invalid_argument(m.str());
    }
    given.erase(it);
  }
  if (!given.empty())
    throw std::invalid_argument("tokenizer: unknown tensor \"" + given.begin()->first + "\" in the weights");
  c10::NoGradGuard no_grad;
  std::map<std::string, at::Tensor> by_name(named.begin(), named.end());
  for (const auto& [name, p] : params_) p.copy_(by_name.at(name));
}

at::Tensor MmRqvae::encode_z(int64_t m, const at::Tensor& x) const {
  const auto& layers = mods_[m].encoder;
  at::Tensor h = x;
  for (size_t i = 0; i < layers.size(); ++i) {
    h = at::linear(h, layers[i].weight, layers[i].bias);
    if (i + 1 < layers.size()) h = h.relu();
  }
  return h;
}

at::Tensor MmRqvae::decode(int64_t m, const at::Tensor& z) const {
  const auto& layers = mods_[m].decoder;
  at::Tensor h = z;
  for (size_t i = 0; i < layers.size(); ++i) {
    h = at::linear(h, layers[i].weight, layers[i].bias);
    if (i + 1 < layers.size()) h = h.relu();
  }
  return h;
}

MmRqvaeQuantized MmRqvae::quantize(int64_t m, const at::Tensor& z, const MmRqvaeLossConfig& loss,
                                   bool sinkhorn, const at::Tensor& frozen) const {
  const int64_t levels = config_.levels, batch = z.size(0);
  const at::Tensor& books = mods_[m].codebooks;
  at::Tensor r = z, z_q, rq;
  std::vector<at::Tensor> codes;
  const bool detach_residuals = loss.residual_gradient == "lc-rec";
  for (int64_t l = 0; l < levels; ++l) {
    const at::Tensor book = books.select(0, l);  // [K, e], with graph
    at::Tensor code;
    if (frozen.defined()) {
      code = frozen.select(1, l).to(at::kLong).contiguous();
    } else {
      const at::Tensor d = squared_distances(r.detach(), book.detach());
      bool balanced = false;
      for (int64_t s : loss.sinkhorn_levels) balanced = balanced || (sinkhorn && s == l);
      code = balanced && batch > 1 ? sinkhorn_assign(d, loss.sinkhorn_epsilon, loss.sinkhorn_iterations)
                                   : d.argmin(1);
    }
    const at::Tensor q = book.index_select(0, code);
    const at::Tensor term =
        at::mse_loss(q, r.detach()).add(at::mse_loss(q.detach(), r), loss.beta);  // codebook + β·commitment
    rq = rq.defined() ? rq.add(term) : term;
    r = detach_residuals ? r.detach().sub(q.detach()) : r.sub(q);
    z_q = z_q.defined() ? z_q.add(q.detach()) : q.detach();
    codes.push_back(code);
  }
  MmRqvaeQuantized out;
  out.z_q_ste = z.add(z_q.sub(z).detach());
  out.codes = at::stack(codes, 1);
  out.rq_loss = rq.div(static_cast<double>(levels));
  return out;
}

MmRqvaeLosses MmRqvae::loss(const std::vector<at::Tensor>& xs, const MmRqvaeLossConfig& cfg,
                            bool sinkhorn) const {
  TORCH_CHECK(static_cast<int64_t>(xs.size()) == modalities(), "tokenizer: expected ", modalities(),
              " batches (one per modality) but received ", xs.size());
  kernels::GaussianBandwidth bandwidth;
  bandwidth.values = {cfg.mmd_alpha};
  bandwidth.relative = true;
  MmRqvaeLosses out;
  at::Tensor recon_sum, rq_sum, align_sum;
  std::vector<at::Tensor> quantized;
  for (int64_t m = 0; m < modalities(); ++m) {
    const at::Tensor z = encode_z(m, xs[m]);
    MmRqvaeQuantized q = quantize(m, z, cfg, sinkhorn);
    const at::Tensor x_hat = decode(m, q.z_q_ste);
    const at::Tensor recon =
        cfg.recon == "mmd" ? torch_ops::mmd_gaussian(x_hat, xs[m], bandwidth) : at::mse_loss(x_hat, xs[m]);
    recon_sum = recon_sum.defined() ? recon_sum.add(recon) : recon;
    rq_sum = rq_sum.defined() ? rq_sum.add(q.rq_loss) : q.rq_loss;
    quantized.push_back(q.z_q_ste);
  }
  if (cfg.align != "none" && modality_index("collab") == 0) {
    for (int64_t m = 1; m < modalities(); ++m) {
      const at::Tensor a =
          cfg.align == "infonce"
              ? torch_ops::info_nce(quantized[0], quantized[m], cfg.temperature, cfg.infonce_symmetric)
              : torch_ops::mmd_gaussian(quantized[0], quantized[m], bandwidth);
      align_sum = align_sum.defined() ? align_sum.add(a) : a;
    }
  }
  at::Tensor total = recon_sum.mul(cfg.recon_weight).add(rq_sum);
  if (align_sum.defined()) total = total.add(align_sum, cfg.align_weight);
  out.total = total;
  out.recon = recon_sum.item<double>();
  out.rq = rq_sum.item<double>();
  out.align = align_sum.defined() ? align_sum.item<double>() : 0.0;
  return out;
}

at::Tensor MmRqvae::infer_z(int64_t m, const at::Tensor& x) const {
  c10::NoGradGuard no_grad;
  const auto& layers = mods_[m].encoder;
  TORCH_CHECK(x.dim() == 2 && x.size(1) == config_.modalities[m].input_dim && x.scalar_type() == at::kFloat,
              "tokenizer: expected float32 ", config_.modalities[m].name, " input [n, ",
              config_.modalities[m].input_dim, "] but received ", x.scalar_type(), " ", x.sizes());
  at::Tensor h = x;
  for (size_t i = 0; i < layers.size(); ++i) {
    h = at::addmm(layers[i].bias.detach(), h, layers[i].weight.detach().t());
    if (i + 1 < layers.size()) h = h.relu();
  }
  return h;
}

at::Tensor MmRqvae::encode(int64_t m, const at::Tensor& x) const {
  const at::Tensor z = infer_z(m, x);
  return std::get<0>(torch_ops::rq_encode(z, mods_[m].codebooks.detach(), 1, false));
}

at::Tensor MmRqvae::lookup(int64_t m, const at::Tensor& codes) const {
  c10::NoGradGuard no_grad;
  const at::Tensor& books = mods_[m].codebooks;
  const at::Tensor c = codes.to(at::kLong);
  at::Tensor out = at::zeros({codes.size(0), config_.code_dim}, at::kFloat);
  for (int64_t l = 0; l < config_.levels; ++l) out.add_(books.select(0, l).index_select(0, c.select(1, l)));
  return out;
}

}  // namespace mmesid::models
