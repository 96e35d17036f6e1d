/**
 * MME-SID end to end on synthetic data with a tiny random Llama (hidden 16) and a tokenizer trained at
 * code dim 16:
 * - the head's formulas against an independent TypeScript computation from the saved weights (item
 *   inputs, fusion weights, item vectors, scores);
 * - the chunked cross-entropy: equal across chunk sizes, equal to a plain TypeScript cross-entropy, and
 *   its gradient w.r.t. h equal to central finite differences;
 * - fine-tuning: the loss falls; validating in segments (checkpoint + resume) gives the same run bytes as
 *   one straight run; every variant and a modality subset train; run directories load back;
 * - evaluate --run (report + spectra + code τ), Recommender and `mmesid recommend` agree with the scores;
 * - bad configs are refused naming the field.
 */
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

import { loadEmbeddings, loadTensors } from '../../lib/data/embeddings';
import { loadSequences } from '../../lib/data/sequences';
import { trainFrequency } from '../../lib/data/splits';
import { DataFormatError } from '../../lib/errors';
import { readFinetuneConfig } from '../../lib/mmesid/config';
import { collapseSpectrum, evaluateRun } from '../../lib/mmesid/evaluate';
import { Recommender } from '../../lib/mmesid/recommender';
import { MmesidRun, historyBatch } from '../../lib/mmesid/run';
import { torchAvailable } from '../support/backends';
import { mmesid, oneJson } from '../support/cli';
import { tolerances } from '../support/tolerances';
import { writeTinyLlama } from '../support/tinyLlama';

const H = 16;

function gelu(x: number): number {
  // erf-based GELU (at::gelu's default), via Abramowitz–Stegun 7.1.26 would be too coarse: use a series.
  return 0.5 * x * (1 + erf(x / Math.SQRT2));
}

function erf(x: number): number {
  // High-precision erf: series for |x| < 3, continued-fraction tail otherwise.
  const sign = x < 0 ? -1 : 1;
  const a = Math.abs(x);
  if (a < 3) {
    let sum = a, term = a;
    for (let n = 1; n < 200; n++) {
      term *= (-a * a) / n;
      const add = term / (2 * n + 1);
      sum += add;
      if (Math.abs(add) < 1e-17) break;
    }
    return (sign * 2 * sum) / Math.sqrt(Math.PI);
  }
  let f = 0;
  for (let n = 60; n >= 1; n--) f = n / 2 / (a + f);
  return sign * (1 - Math.exp(-a * a) / Math.sqrt(Math.PI) / (a + f));
}

/** Head tensors by name without the "head." prefix (Float32 as saved, or Float64 copies to perturb). */
type Tensors = ReadonlyMap<string, { data: ArrayLike<number> }>;

/** y = W·x (+ b) with W [out, x.length] row-major. */
function linear(x: number[], t: Tensors, name: string, bias = true): number[] {
  const w = t.get(`${name}.weight`)!.data;
  const inDim = x.length, out = w.length / inDim;
  const b = bias ? t.get(`${name}.bias`)!.data : undefined;
  const y = new Array<number>(out).fill(0);
  for (let o = 0; o < out; o++) {
    let s = b ? b[o]! : 0;
    for (let i = 0; i < inDim; i++) s += w[o * inDim + i]! * x[i]!;
    y[o] = s;
  }
  return y;
}

/** The fusion weights softmax(MLP₂(MLP₁(f)) / temperature) of one item's frequency feature f. */
function fusionWeights(f: number, t: Tensors, temperature: number): number[] {
  const z = linear(linear([f], t, 'fusion.mlp1.0').map(gelu), t, 'fusion.mlp1.2');
  const logits = linear(linear(z, t, 'fusion.mlp2.0', false).map(gelu), t, 'fusion.mlp2.2').map((v) => v / temperature);
  const top = Math.max(...logits);
  const e = logits.map((v) => Math.exp(v - top));
  const sum = e.reduce((a, b) => a + b, 0);
  return e.map((v) => v / sum);
}

/** Mean cross-entropy of h [B, H] over items 1 … n−1 with scores h·U[item] (float64), against targets [B]. */
function plainCrossEntropy(x: Float32Array, u: ArrayLike<number>, targets: Int32Array, n: number): number {
  let total = 0;
  for (let r = 0; r < targets.length; r++) {
    const scores: number[] = [];
    for (let item = 1; item < n; item++) {
      let dot = 0;
      for (let o = 0; o < H; o++) dot += x[r * H + o]! * u[item * H + o]!;
      scores.push(dot);
    }
    const top = Math.max(...scores);
    total += top + Math.log(scores.reduce((a, v) => a + Math.exp(v - top), 0)) - scores[targets[r]! - 1]!;
  }
  return total / targets.length;
}

(torchAvailable ? describe : describe.skip)('MME-SID (head, fine-tuning, evaluation, serving)', function () {
  this.timeout(600_000);
  let dir: string;
  let configFile: string;
  const base = (over: Record<string, unknown> = {}): Record<string, unknown> => ({
    model: 'llm',
    sequences: 'data/sequences.txt',
    tokenizer: 'tok',
    embeddings: { collab: 'data/visual_emb.npy', text: 'data/text_emb.npy' },
    variant: 'mme-sid',
    prompt: { prefixIds: [1, 2], suffixIds: [3] },
    lora: { rank: 2, alpha: 4, dropout: 0.05 },
    train: { steps: 6, lr: 5e-3, microBatch: 4, accumulationSteps: 2, warmupSteps: 1, seed: 5, scoreChunk: 37 },
    threads: 1,
    out: 'run',
    ...over,
  });
  const writeConfig = (name: string, over: Record<string, unknown> = {}): string => {
    const file = path.join(dir, `${name}.json`);
    fs.writeFileSync(file, JSON.stringify(base({ out: name, ...over })));
    return file;
  };

  before(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mmesid-e2e-'));
    const data = mmesid('data', 'synthetic', '--out', path.join(dir, 'data'), '--users', '120', '--items', '60', '--text-dim', '12', '--visual-dim', '8', '--json');
    assert.equal(data.status, 0, data.stderr);
    const tok = mmesid('tokenizer', 'train', '--collab', path.join(dir, 'data', 'visual_emb.npy'), '--text', path.join(dir, 'data', 'text_emb.npy'), '--out', path.join(dir, 'tok'), '--code-dim', String(H), '--levels', '2', '--codes', '8', '--hidden', '16', '--epochs', '5', '--batch-size', '32', '--threads', '1', '--json');
    assert.equal(tok.status, 0, tok.stderr);
    writeTinyLlama(path.join(dir, 'llm'), { hidden: H, layers: 2, heads: 4, kvHeads: 2, vocab: 40 });
    configFile = writeConfig('main');
  });
  after(() => fs.rmSync(dir, { recursive: true, force: true }));

  it('the head computes the documented formulas (item inputs, fusion, item vectors, scores)', async () => {
    const run = await MmesidRun.create(readFinetuneConfig(configFile));
    try {
      await run.save();
      const head = new Map((await loadTensors(path.join(dir, 'main', 'head.safetensors'))).tensors.map((t) => [t.name.replace(/^head\./, ''), t]));
      const collab = await loadEmbeddings(path.join(dir, 'data', 'visual_emb.npy'));
      const text = await loadEmbeddings(path.join(dir, 'data', 'text_emb.npy'));
      const sequences = await loadSequences(path.join(dir, 'data', 'sequences.txt'));
      const n = sequences.numItems + 1;
      const { readInt32Npy } = await import('../support/npy');
      const sids = { collab: readInt32Npy(path.join(dir, 'tok', 'sids.collab.npy')), text: readInt32Npy(path.join(dir, 'tok', 'sids.text.npy')) };
      const row = (t: { data: Float32Array; dim: number }, i: number): number[] => Array.from(t.data.subarray(i * t.dim, (i + 1) * t.dim));
      const codeSum = (m: 'collab' | 'text', i: number): number[] => {
        const s = new Array<number>(H).fill(0);
        for (let l = 0; l < 2; l++) {
          const code = sids[m].data[i * 2 + l]!;
          if (code < 0) continue;
          const table = head.get(`codes.${m}.${l}`)!.data;
          for (let d = 0; d < H; d++) s[d] = s[d]! + table[code * H + d]!;
        }
        return s;
      };
      const inputs = await run.tensor('itemInputs');
      const freq = trainFrequency(sequences);
      const logf = Array.from(freq, (c) => Math.log1p(c));
      const real = logf.slice(1);
      const lo = Math.min(...real), hi = Math.max(...real);
      const vectors = await run.tensor('itemVectors');
      const weights = await run.tensor('fusionWeights');
      let worstInput = 0, worstVector = 0, worstWeight = 0;
      for (const i of [0, 1, 7, n - 1]) {
        const concat = [...linear(row(collab, i), head, 'proj.collab'), ...codeSum('collab', i), ...linear(row(text, i), head, 'proj.text'), ...codeSum('text', i)];
        const x = linear(linear(concat, head, 'input.0').map((v) => Math.max(0, v)), head, 'input.2').map(gelu);
        x.forEach((v, d) => (worstInput = Math.max(worstInput, Math.abs(v - inputs[i * H + d]!))));
        const w = fusionWeights((logf[i]! - lo) / (hi - lo), head, 1e-3);
        w.forEach((v, k) => (worstWeight = Math.max(worstWeight, Math.abs(v - weights[i * 3 + k]!))));
        const s = head.get('target_items.weight')!.data.subarray(i * H, (i + 1) * H);
        const pc = linear(row(collab, i), head, 'proj.collab'), pt = linear(row(text, i), head, 'proj.text');
        for (let d = 0; d < H; d++) worstVector = Math.max(worstVector, Math.abs(w[0]! * s[d]! + w[1]! * pc[d]! + w[2]! * pt[d]! - vectors[i * H + d]!));
      }
      assert.ok(worstInput < 1e-4, `item inputs: ${worstInput}`);
      assert.ok(worstWeight < 1e-4, `fusion weights: ${worstWeight}`);
      assert.ok(worstVector < 1e-4, `item vectors: ${worstVector}`);
    } finally {
      await run.dispose();
    }
  });

  it('the chunked cross-entropy equals a plain one for every chunk size, and its ∂/∂h matches finite differences', async () => {
    const run = await MmesidRun.create(readFinetuneConfig(configFile));
    try {
      const vectors = await run.tensor('itemVectors');
      const n = run.manifest.numItems + 1;
      const b = 3;
      const h = Float32Array.from({ length: b * H }, (_, i) => Math.sin(i * 0.7) * 0.5);
      const targets = Int32Array.from([1, 17, n - 1]);
      const plain = (x: Float32Array): number => plainCrossEntropy(x, vectors, targets, n);
      const expected = plain(h);
      const results = await Promise.all([1, 7, 37, n].map((chunk) => run._loss(h, targets, chunk)));
      for (const r of results) assert.ok(Math.abs(r.loss - expected) < 1e-4, `loss ${r.loss} vs ${expected}`);
      results.slice(1).forEach((r) => r.gradH.forEach((g, i) => assert.ok(Math.abs(g - results[0]!.gradH[i]!) < 1e-5)));
      const { step, tolerance } = tolerances.finiteDifference;
      for (const i of [0, 5, 17, 40]) {
        const up = Float32Array.from(h), down = Float32Array.from(h);
        up[i]! += step;
        down[i]! -= step;
        const fd = (plain(up) - plain(down)) / (2 * step);
        const g = results[2]!.gradH[i]!;
        assert.ok(Math.abs(fd - g) <= tolerance.atol + tolerance.rtol * Math.abs(fd), `∂/∂h[${i}]: ${g} vs FD ${fd}`);
      }
    } finally {
      await run.dispose();
    }
  });

  it('∂loss/∂(S, P_m, b_m, fusion MLP) match finite differences and the plain reference, with fewer rows than H (factorized scores) and more (item vectors)', async () => {
    // Temperature 1 so that every score term and the fusion MLP carry gradient (at 1e-3 the softmax saturates).
    const run = await MmesidRun.create(readFinetuneConfig(writeConfig('fd', { temperature: 1 })));
    try {
      await run.save();
      const head = new Map((await loadTensors(path.join(dir, 'fd', 'head.safetensors'))).tensors.map((t) => [t.name, t]));
      const tables = { collab: await loadEmbeddings(path.join(dir, 'data', 'visual_emb.npy')), text: await loadEmbeddings(path.join(dir, 'data', 'text_emb.npy')) };
      const sequences = await loadSequences(path.join(dir, 'data', 'sequences.txt'));
      const logf = Array.from(trainFrequency(sequences), (c) => Math.log1p(c));
      const lo = Math.min(...logf.slice(1)), hi = Math.max(...logf.slice(1));
      const n = run.manifest.numItems + 1;
      const p = new Map([...head].map(([name, t]) => [name.replace(/^head\./, ''), { data: Float64Array.from(t.data) }]));
      // The plain loss in float64 from the head's tensors: fusion MLP → w, U = w₀·S + Σ w_m·(P_m·T_m + b_m).
      const plain = (x: Float32Array, targets: Int32Array): number => {
        const s = p.get('target_items.weight')!.data;
        const u = new Float64Array(n * H);
        for (let i = 0; i < n; i++) {
          const w = fusionWeights((logf[i]! - lo) / (hi - lo), p, 1);
          for (let o = 0; o < H; o++) u[i * H + o] = w[0]! * s[i * H + o]!;
          (['collab', 'text'] as const).forEach((m, k) => {
            const y = linear(Array.from(tables[m].data.subarray(i * tables[m].dim, (i + 1) * tables[m].dim)), p, `proj.${m}`);
            for (let o = 0; o < H; o++) u[i * H + o] = u[i * H + o]! + w[1 + k]! * y[o]!;
          });
        }
        return plainCrossEntropy(x, u, targets, n);
      };
      const names = ['target_items.weight', 'proj.collab.weight', 'proj.collab.bias', 'proj.text.weight', 'proj.text.bias', 'fusion.mlp1.0.weight', 'fusion.mlp2.2.bias'];
      const { step, tolerance } = tolerances.finiteDifference;
      let largest = 0;
      for (const b of [3, H + 4]) {
        const x = Float32Array.from({ length: b * H }, (_, i) => Math.cos(i * 0.37) * 0.8);
        const targets = Int32Array.from({ length: b }, (_, r) => 1 + ((r * 13) % (n - 1)));
        const { loss, gradH, gradHead } = await run._loss(x, targets, 23, head);
        assert.ok(Math.abs(loss - plain(x, targets)) < 1e-4, `B ${b}: loss ${loss} vs ${plain(x, targets)}`);
        // Parity with the head's plain reference path (the benchmarks' eager baseline), every gradient.
        const reference = await run._loss(x, targets, 23, head, true);
        const close = (a: number, e: number): boolean => Math.abs(a - e) <= tolerances.mmesid.headParity.atol + tolerances.mmesid.headParity.rtol * Math.abs(e);
        assert.ok(close(loss, reference.loss), `B ${b}: loss ${loss} vs reference ${reference.loss}`);
        gradH.forEach((g, i) => assert.ok(close(g, reference.gradH[i]!), `B ${b}: ∂/∂h[${i}] ${g} vs reference ${reference.gradH[i]}`));
        for (const [name, g] of gradHead!) g.forEach((v, i) => assert.ok(close(v, reference.gradHead!.get(name)![i]!), `B ${b}: ∂/∂${name}[${i}] ${v} vs reference ${reference.gradHead!.get(name)![i]}`));
        for (const name of names) {
          const v = p.get(name)!.data, g = gradHead!.get(`head.${name}`)!;
          for (const i of [...new Set([0, (v.length * 5) >> 3, targets[0]! * H + 2, v.length - 1])].filter((j) => j < v.length)) {
            const keep = v[i]!;
            v[i] = keep + step;
            const up = plain(x, targets);
            v[i] = keep - step;
            const down = plain(x, targets);
            v[i] = keep;
            const fd = (up - down) / (2 * step);
            largest = Math.max(largest, Math.abs(fd));
            assert.ok(Math.abs(fd - g[i]!) <= tolerance.atol + tolerance.rtol * Math.abs(fd), `B ${b}: ∂/∂${name}[${i}] ${g[i]} vs FD ${fd}`);
          }
        }
      }
      assert.ok(largest > 1e-2, 'the checked gradients are not all negligible');
    } finally {
      await run.dispose();
    }
  });

  it('the chunked cross-entropy holds no [B, N] logits or [N, H] intermediates: its peak memory is S\'s gradient plus chunk-sized terms', async () => {
    const { LlamaModel } = await import('../../lib/llm/model');
    const { torch } = await import('../../lib/native');
    const llm = await LlamaModel.load(path.join(dir, 'llm'), { threads: 1 });
    try {
      const n = 200_001, d = 8, chunk = 2048;
      const table = (seed: number) => Float32Array.from({ length: n * d }, (_, i) => Math.sin(i * 0.001 + seed));
      const head = await torch().mmesidHead(llm._native(), {
        variant: 'concat', fusion: true, temperature: 1, hidden: H, scoreChunk: chunk, seed: 1, numItems: n,
        frequency: Float64Array.from({ length: n }, (_, i) => i % 50),
        modalities: [{ name: 'collab', table: table(1), dim: d }, { name: 'text', table: table(2), dim: d }],
      });
      try {
        // b < H: factorized scores; b > H: item vectors per chunk.
        for (const b of [8, 24]) {
          const x = Float32Array.from({ length: b * H }, (_, i) => Math.cos(i)), gradH = new Float32Array(b * H);
          const targets = Int32Array.from({ length: b }, (_, i) => 1 + i * 7919);
          const peak = async (options: { chunk: number; reference: boolean }): Promise<number> => {
            const before = torch()._peakReset();
            await head._loss({ h: x, targets, gradH, ...options });
            return torch()._peakBytes() - before;
          };
          const sBytes = n * H * 4;
          const chunked = await peak({ chunk, reference: false });
          const whole = await peak({ chunk: n, reference: true });
          // S's gradient arrives in three [N, H] pieces (the chunks' concatenation, the padding row's narrow,
          // the targets' rows) plus per-item [N, 1 + M] weights; nothing else may scale with N.
          const bound = 3 * sBytes + n * 3 * 4 + 64 * b * chunk * 4;
          assert.ok(chunked <= bound, `B ${b}: chunked peak ${chunked} B > bound ${bound} B`);
          assert.ok(whole > 2 * chunked, `B ${b}: one chunk of all items (${whole} B) should need far more than chunks (${chunked} B)`);
        }
      } finally {
        await head.dispose();
      }
    } finally {
      await llm.dispose();
    }
  });

  it('mme-sid and mme-random with one seed start from the same head except the code tables (the ablation changes the codes alone)', async () => {
    const initial = async (variant: string): Promise<Map<string, Float32Array>> => {
      const run = await MmesidRun.create(readFinetuneConfig(writeConfig(`init-${variant}`, { variant })));
      try {
        await run.save();
      } finally {
        await run.dispose();
      }
      return new Map((await loadTensors(path.join(dir, `init-${variant}`, 'head.safetensors'))).tensors.map((t) => [t.name, t.data]));
    };
    const sid = await initial('mme-sid'), random = await initial('mme-random');
    assert.deepEqual([...sid.keys()].sort(), [...random.keys()].sort());
    const tokenizer = new Map((await loadTensors(path.join(dir, 'tok', 'tokenizer.safetensors'))).tensors.map((t) => [t.name, t.data]));
    for (const [name, a] of sid) {
      const b = random.get(name)!;
      const code = /^head\.codes\.(\w+)\.(\d+)$/.exec(name);
      if (!code) {
        assert.deepEqual(a, b, `${name} differs between the variants`);
        continue;
      }
      const codebooks = tokenizer.get(`${code[1]}.codebooks`)!;
      const level = Number(code[2]);
      assert.deepEqual(a, codebooks.subarray(level * a.length, (level + 1) * a.length), `${name} is the tokenizer's codebook`);
      assert.ok(b.some((v, i) => v !== a[i]), `${name} is random in mme-random`);
    }
  });

  it('the head gradients through the recomputed chunks do not depend on the chunk size', async () => {
    const trained = async (scoreChunk: number): Promise<Map<string, Float32Array>> => {
      const name = `chunk-${scoreChunk}`;
      const run = await MmesidRun.create(readFinetuneConfig(writeConfig(name, { lora: { rank: 2, alpha: 4, dropout: 0 }, train: { ...(base().train as object), steps: 3, scoreChunk } })));
      try {
        await run.train();
        await run.save();
      } finally {
        await run.dispose();
      }
      return new Map((await loadTensors(path.join(dir, name, 'head.safetensors'))).tensors.map((t) => [t.name, t.data]));
    };
    const small = await trained(7), whole = await trained(100000);
    let worst = 0, moved = 0;
    const untrained = await MmesidRun.create(readFinetuneConfig(configFile));
    await untrained.save();
    await untrained.dispose();
    const initial = new Map((await loadTensors(path.join(dir, 'main', 'head.safetensors'))).tensors.map((t) => [t.name, t.data]));
    for (const [name, a] of small) {
      const b = whole.get(name)!;
      a.forEach((x, i) => {
        worst = Math.max(worst, Math.abs(x - b[i]!));
        moved = Math.max(moved, Math.abs(x - initial.get(name)![i]!));
      });
    }
    assert.ok(moved > 1e-3, 'training moved the head');
    assert.ok(worst < 1e-5, `chunk 7 vs one chunk: ${worst}`);
  });

  it('fine-tuning lowers the loss; validating in segments (checkpoint + resume) equals one straight run byte for byte', async () => {
    const straight = await MmesidRun.create(readFinetuneConfig(writeConfig('straight', { train: { ...(base().train as object), steps: 12 } })));
    let losses: number[];
    try {
      const training = await straight.train();
      losses = training.losses;
      await straight.save(training);
    } finally {
      await straight.dispose();
    }
    assert.equal(losses.length, 12);
    const mean = (xs: number[]): number => xs.reduce((a, x) => a + x, 0) / xs.length;
    assert.ok(mean(losses.slice(-3)) < mean(losses.slice(0, 3)), `losses ${losses.map((l) => l.toFixed(3)).join(' ')}`);
    const segmented = await MmesidRun.create(readFinetuneConfig(writeConfig('segmented', { train: { ...(base().train as object), steps: 12, validateEvery: 5 } })));
    try {
      const validations: number[] = [];
      const training = await segmented.train({ validate: (_run, s) => (validations.push(s), Promise.resolve({ step: s, users: 0, hr10: 0, ndcg10: 0 })) });
      assert.deepEqual(validations, [5, 10, 12]);
      assert.deepEqual(training.losses, losses);
      await segmented.save(training);
    } finally {
      await segmented.dispose();
    }
    for (const file of ['head.safetensors', 'adapter/adapter_model.safetensors']) {
      assert.deepEqual(fs.readFileSync(path.join(dir, 'segmented', file)), fs.readFileSync(path.join(dir, 'straight', file)), file);
    }
  });

  it('mmesid finetune → evaluate --run (same test metrics; spectra; code τ) → recommend; the Recommender agrees with the scores', async () => {
    const finetune = mmesid('finetune', '--config', configFile, '--json');
    assert.equal(finetune.status, 0, finetune.stderr);
    const report = oneJson(finetune.stdout) as { run: string; steps: number; test: Record<string, number> };
    assert.equal(report.steps, 6);
    const evaluated = mmesid('evaluate', '--run', report.run, '--json');
    assert.equal(evaluated.status, 0, evaluated.stderr);
    const e = oneJson(evaluated.stdout) as {
      metrics: Record<string, number>;
      diagnostics: { collabCodeKendallTau: number; spectrumCsv: string; spectrumSvg: string; fusion: { terms: string[]; meanWeight: number[]; argmaxShare: number[] } };
    };
    assert.deepEqual(e.metrics, report.test);
    assert.ok(e.diagnostics.collabCodeKendallTau > -1 && e.diagnostics.collabCodeKendallTau < 1);
    const { fusion } = e.diagnostics;
    assert.deepEqual(fusion.terms, ['target', 'collab', 'text']);
    for (const shares of [fusion.meanWeight, fusion.argmaxShare]) assert.ok(Math.abs(shares.reduce((a, v) => a + v, 0) - 1) < 1e-4, `shares sum to 1: ${shares.join(", ")}`);
    const csv = fs.readFileSync(e.diagnostics.spectrumCsv, 'utf8').trim().split('\n');
    assert.equal(csv[0], 'index,item input embeddings,target-item table');
    assert.equal(csv.length, 1 + H);
    assert.equal(Number(csv[1]!.split(',')[1]), 0, 'the largest singular value normalises to log10 1 = 0');
    assert.match(fs.readFileSync(e.diagnostics.spectrumSvg, 'utf8'), /^<svg/);

    const rec = await Recommender.load(report.run);
    const run = await MmesidRun.load(report.run);
    try {
      const histories = [[3, 5, 7], [10], [2, 2, 9, 11]];
      const top = await rec.recommend(histories, { k: 5 });
      const n = run.manifest.numItems + 1;
      const scores = new Float32Array(histories.length * n);
      await run.scoreInto(historyBatch(histories), scores);
      histories.forEach((h, b) => {
        const ranked = Array.from({ length: n - 1 }, (_, j) => j + 1)
          .filter((item) => !h.includes(item))
          .sort((x, y) => scores[b * n + y]! - scores[b * n + x]! || x - y)
          .slice(0, 5);
        assert.deepEqual(Array.from(top[b]!.items), ranked);
        top[b]!.scores.forEach((s, j) => assert.ok(Math.abs(s - scores[b * n + ranked[j]!]!) < 1e-5));
      });
      // A user's scores do not depend on the rest of the batch (padding goes to the very left).
      const alone = new Float32Array(n);
      await run.scoreInto(historyBatch([histories[1]!]), alone);
      alone.forEach((v, j) => assert.ok(Math.abs(v - scores[n + j]!) < 1e-5, `item ${j}: ${v} alone vs ${scores[n + j]} in the batch`));
      // Scoring in groups of similar length (more histories than one group holds) = one padded batch.
      const mixed = Array.from({ length: 70 }, (_, u) => Array.from({ length: 1 + ((u * 7) % 19) }, (_, t) => 1 + ((u * 31 + t * 17) % (n - 1))));
      const grouped = new Float32Array(mixed.length * n), single = new Float32Array(mixed.length * n);
      await run.scoreInto(historyBatch(mixed), grouped);
      await run.scoreInto(historyBatch(mixed), single, { oneBatch: true });
      grouped.forEach((v, j) => assert.ok(Math.abs(v - single[j]!) < 1e-5, `score ${j}: ${v} grouped vs ${single[j]} in one batch`));
      const cli = mmesid('recommend', '--run', report.run, '--history', '3 5 7', '-k', '5', '--json');
      assert.equal(cli.status, 0, cli.stderr);
      assert.deepEqual((oneJson(cli.stdout) as { items: number[] }).items, Array.from(top[0]!.items));
      await assert.rejects(rec.recommend([[0]]), /histories\[0\]\[0\]/);
    } finally {
      await rec.dispose();
      await run.dispose();
    }
  });

  it('every variant trains and evaluates in the same harness; fusion off; a single modality', async () => {
    for (const [name, over] of [
      ['e4srec', { variant: 'e4srec', embeddings: { collab: 'data/visual_emb.npy' } }],
      ['random', { variant: 'mme-random' }],
      ['concat', { variant: 'concat' }],
      ['concat-mlp', { variant: 'concat-mlp', fusion: false }],
      ['text-only', { embeddings: { text: 'data/text_emb.npy' } }],
    ] as const) {
      const run = await MmesidRun.create(readFinetuneConfig(writeConfig(name, { ...over, train: { ...(base().train as object), steps: 2 } })));
      try {
        const training = await run.train();
        assert.equal(training.losses.length, 2, name);
        assert.ok(training.losses.every((l) => Number.isFinite(l)), name);
        const r = await evaluateRun(run, { split: 'valid' });
        assert.ok(r.metrics['HR@10']! >= 0 && r.metrics['HR@10']! <= 1, name);
        const n = run.manifest.numItems + 1;
        const spectrum = collapseSpectrum(await run.tensor('targetItems'), n, H);
        assert.equal(spectrum.length, H);
      } finally {
        await run.dispose();
      }
    }
  });

  it('`mmesid demo` runs the whole pipeline on a small synthetic set and prints the table and the run directory', () => {
    const out = path.join(dir, 'demo');
    // Relative, as `npm run demo` passes it (the CLI runs in the repository root).
    const relativeOut = path.relative(path.join(__dirname, '..', '..'), out);
    assert.ok(!path.isAbsolute(relativeOut));
    const run = mmesid('demo', '--out', relativeOut, '--users', '80', '--items', '40', '--epochs', '1', '--threads', '1', '--json');
    assert.equal(run.status, 0, run.stderr);
    const report = oneJson(run.stdout) as { run: string; table: Record<string, Record<string, number>>; stages: Record<string, number> };
    assert.deepEqual(Object.keys(report.table), ['popularity', 'sasrec', 'mme-sid', 'e4srec']);
    for (const m of Object.values(report.table)) assert.ok(m['HR@10']! >= 0 && m['HR@10']! <= 1);
    assert.ok(fs.existsSync(path.join(report.run, 'run.json')));
    assert.ok(fs.existsSync(path.join(out, 'llm', 'model.safetensors')));
    assert.ok(['data', 'sasrec', 'tokenizer', 'train mme-sid'].every((stage) => typeof report.stages[stage] === 'number'));
  });

  it('bad configs and inputs are refused naming the field or file', async () => {
    assert.throws(() => readFinetuneConfig(writeConfig('bad1', { variant: 'gpt' })), (e: unknown) => e instanceof DataFormatError && /"variant"/.test(e.message));
    assert.throws(() => readFinetuneConfig(writeConfig('bad2', { lora: { targetModules: ['lm_head'] } })), (e: unknown) => e instanceof DataFormatError && /lora\.targetModules/.test(e.message));
    assert.throws(() => readFinetuneConfig(writeConfig('bad3', { modalities: ['visual'] })), (e: unknown) => e instanceof DataFormatError && /modalities/.test(e.message));
    assert.throws(() => readFinetuneConfig(writeConfig('bad4', { prompt: { prefixIds: [1] } })), (e: unknown) => e instanceof DataFormatError && /prompt/.test(e.message));
    assert.throws(() => readFinetuneConfig(writeConfig('bad5', { variant: 'e4srec', embeddings: { text: 'data/text_emb.npy' } })), (e: unknown) => e instanceof DataFormatError && /collab/.test(e.message));
    // A tokenizer whose code dim is not the LLM's hidden size.
    const wide = mmesid('tokenizer', 'train', '--collab', path.join(dir, 'data', 'visual_emb.npy'), '--out', path.join(dir, 'tok32'), '--code-dim', '32', '--levels', '2', '--codes', '8', '--epochs', '1', '--json');
    assert.equal(wide.status, 0, wide.stderr);
    await assert.rejects(MmesidRun.create(readFinetuneConfig(writeConfig('bad6', { tokenizer: 'tok32', embeddings: { collab: 'data/visual_emb.npy' } }))), (e: unknown) => e instanceof DataFormatError && /hidden size is 16/.test(e.message));
    await assert.rejects(MmesidRun.load(path.join(dir, 'nowhere')), (e: unknown) => e instanceof DataFormatError && /run\.json/.test(e.message));
  });
});
