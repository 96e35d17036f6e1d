/**
 * SASRec training (lib/sasrec.ts → mmesid_torch.node) on a small synthetic data set with sequential
 * structure: the loss falls, the validation HR@10 beats popularity, the same seed reproduces the run
 * bit for bit (threads = 1), cancellation is prompt and writes nothing, arguments are validated, and the
 * event loop keeps running while the native thread trains.
 *
 * Figures measured when the bounds were set (600 users, 200 items, d = 16, 1 block, maxLen 20, lr 5e-3,
 * batch 64, 40 epochs, seeds 1–3 of the generator): best validation HR@10 0.483–0.540 (bce 0.483–0.520,
 * ce 0.482–0.540) against popularity 0.343–0.420 and random ≈ 0.05; about 1.5 s per run on one thread.
 */
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

import { CancelledError, DataFormatError, InvalidArgumentError, NativeError } from '../../lib/errors';
import { generateSynthetic } from '../../lib/data/synthetic';
import { loadNpy, loadTensors, saveTensors } from '../../lib/data/embeddings';
import { evaluateSasrec } from '../../lib/evaluate/sasrec';
import { tolerances } from '../support/tolerances';
import { evaluatePopularity } from '../../lib/evaluate/popularity';
import { SasrecModel, trainSasrec } from '../../lib/sasrec';
import type { SasrecProgress, SasrecTrainReport, TrainSasrecOptions } from '../../lib/sasrec';
import { torchAvailable } from '../support/backends';

describe('SASRec training (mmesid_torch.node)', function () {
  const dataset = generateSynthetic({ seed: 1, numUsers: 600, numItems: 200 });
  const sequences = dataset.sequences;
  let root: string;
  const small = (outDir: string, extra: Partial<TrainSasrecOptions> = {}): TrainSasrecOptions => ({
    sequences,
    outDir,
    dim: 16,
    blocks: 1,
    maxLen: 20,
    lr: 5e-3,
    batchSize: 64,
    epochs: 40,
    patience: 40,
    seed: 1,
    threads: 1,
    ...extra,
  });

  before(function () {
    if (!torchAvailable) {
      if (process.env.CI) throw new Error('mmesid_torch.node is missing in CI: libtorch should have been found');
      this.skip();
    }
    root = fs.mkdtempSync(path.join(os.tmpdir(), 'mmesid-sasrec-'));
  });
  after(() => {
    if (root) fs.rmSync(root, { recursive: true, force: true });
  });

  it('bce: the loss falls, validation HR@10 beats popularity, outputs are written', async () => {
    const outDir = path.join(root, 'bce');
    const events: SasrecProgress[] = [];
    const report = await trainSasrec(small(outDir, { onProgress: (e) => events.push(e) }));
    const losses = report.epochs.map((e) => e.loss);
    assert.equal(losses.length, 40);
    assert.ok(losses.at(-1)! < 0.85 * losses[0]!, `loss did not fall enough: ${losses[0]} → ${losses.at(-1)}`);

    const popularity = await evaluatePopularity(sequences, { split: 'valid' });
    const best = report.epochs[report.bestEpoch - 1]!;
    const hr10 = best.valid.metrics['HR@10']!;
    const popHr10 = popularity.metrics['HR@10']!;
    assert.equal(best.valid.users, popularity.protocol.usersAveraged);
    assert.ok(hr10 > popHr10 + 0.03, `SASRec valid HR@10 ${hr10} does not beat popularity ${popHr10}`);
    assert.ok(hr10 > 0.25, `SASRec valid HR@10 ${hr10} is too close to random (≈ 0.05)`);
    assert.ok(report.test.metrics['HR@10']! > 0.25);
    // nDCG@10 picks the best epoch.
    const ndcgs = report.epochs.map((e) => e.valid.metrics['nDCG@10']!);
    assert.equal(Math.max(...ndcgs), ndcgs[report.bestEpoch - 1]);

    const steps = events.filter((e) => e.kind === 'step');
    const epochs = events.filter((e) => e.kind === 'epoch');
    assert.equal(epochs.length, 40);
    const perEpoch = Math.ceil(report.trainingRows / 64);
    assert.equal(steps.length, 40 * perEpoch);
    assert.ok(steps.every((s) => s.kind === 'step' && s.steps === perEpoch && Number.isFinite(s.loss) && s.samplesPerSecond > 0));

    const emb = await loadNpy(path.join(outDir, 'item_emb.npy'));
    assert.equal(emb.rows, sequences.numItems + 1);
    assert.equal(emb.dim, 16);
    assert.ok(emb.data.subarray(0, 16).every((v) => v === 0), 'padding row is not zero');
    const metrics = JSON.parse(fs.readFileSync(path.join(outDir, 'metrics.json'), 'utf8')) as Record<string, unknown>;
    assert.equal(metrics.format, 'mmesid.sasrec.metrics');
    assert.equal(metrics.bestEpoch, report.bestEpoch);
    assert.deepEqual(metrics.test, report.test);
    assert.deepEqual(fs.readdirSync(outDir).sort(), ['item_emb.npy', 'metrics.json', 'model.safetensors']);
  });

  it('model.safetensors reloads: evaluateSasrec reproduces the reported metrics; scoring validates its input', async () => {
    const outDir = path.join(root, 'bce');
    const report = JSON.parse(fs.readFileSync(path.join(outDir, 'metrics.json'), 'utf8')) as SasrecTrainReport;
    const model = await SasrecModel.load(outDir);
    assert.deepEqual({ ...model.architecture }, { numItems: sequences.numItems, dim: 16, blocks: 1, heads: 1, maxLen: 20 });
    assert.equal(model.dataset.sha256, sequences.sha256);
    const tol = tolerances.sasrec.reloadedMetrics;
    const test = await evaluateSasrec(sequences, model, { split: 'test', batchSize: 100 });
    const valid = await evaluateSasrec(sequences, outDir, { split: 'valid' });
    for (const [name, expected] of [
      ['test', report.test.metrics],
      ['valid', report.epochs[report.bestEpoch - 1]!.valid.metrics],
    ] as const) {
      const got = name === 'test' ? test.metrics : valid.metrics;
      for (const [metric, value] of Object.entries(expected)) {
        assert.ok(Math.abs(got[metric]! - value) <= tol.atol, `${name} ${metric}: reloaded ${got[metric]} vs trained ${value}`);
      }
    }
    assert.match(test.protocol.model, /^sasrec: .*model\.safetensors \(d=16, 1 blocks, 1 heads, maxLen 20, trained on sha256 /);

    // score(): left-padding and truncation to maxLen, the padding column is −Infinity.
    const long = sequences.items.subarray(0, 25);
    const [a, b] = [await model.score([long]), await model.score([long.subarray(5)])];
    assert.equal(a.length, sequences.numItems + 1);
    assert.equal(a[0], -Infinity);
    assert.deepEqual(Array.from(a), Array.from(b), 'only the last maxLen (20) items are read');
    await assert.rejects(model.score([Int32Array.of(1, sequences.numItems + 1)]), (e: unknown) => e instanceof InvalidArgumentError && /histories\[0\]\[1\]/.test(e.message));
    await assert.rejects(model.score([]), InvalidArgumentError);
    await assert.rejects(model.scoreInto(new Int32Array(20).fill(-1), 1, new Float32Array(sequences.numItems + 1)), (e: unknown) => e instanceof InvalidArgumentError && /inputs\[0\]/.test(e.message));

    // Foreign data and broken weight files are refused with the reason.
    const other = generateSynthetic({ seed: 2, numUsers: 50, numItems: 120 }).sequences;
    await assert.rejects(evaluateSasrec(other, model), (e: unknown) => e instanceof InvalidArgumentError && /120 items/.test(e.message));
    const { tensors, metadata } = await loadTensors(path.join(outDir, 'model.safetensors'));
    const broken = path.join(root, 'broken.safetensors');
    await saveTensors(broken, tensors.slice(1), metadata);
    await assert.rejects(SasrecModel.load(broken), (e: unknown) => e instanceof DataFormatError && /lack the tensor "item_emb"/.test(e.message));
    await saveTensors(broken, tensors.map((t, i) => (i === 1 ? { ...t, shape: [t.data.length] } : t)), metadata);
    await assert.rejects(SasrecModel.load(broken), (e: unknown) => e instanceof DataFormatError && /should be float32/.test(e.message));
    await saveTensors(broken, tensors, { ...metadata, format: 'something else' });
    await assert.rejects(SasrecModel.load(broken), (e: unknown) => e instanceof DataFormatError && /not an mmesid SASRec weight file/.test(e.message));
  });

  it('ce: full cross-entropy also learns the sequential structure', async () => {
    const report = await trainSasrec(small(path.join(root, 'ce'), { loss: 'ce' }));
    const popularity = await evaluatePopularity(sequences, { split: 'valid' });
    assert.ok(report.epochs.at(-1)!.loss < 0.9 * report.epochs[0]!.loss);
    const hr10 = report.epochs[report.bestEpoch - 1]!.valid.metrics['HR@10']!;
    assert.ok(hr10 > popularity.metrics['HR@10']! + 0.03, `ce valid HR@10 ${hr10}`);
  });

  it('the same seed gives the same losses and item_emb.npy bytes; another seed does not', async () => {
    const run = async (name: string, seed: number) => {
      const outDir = path.join(root, name);
      const steps: number[] = [];
      const report = await trainSasrec(
        small(outDir, { epochs: 3, seed, onProgress: (e) => e.kind === 'step' && steps.push(e.loss) }),
      );
      return { report, steps, bytes: fs.readFileSync(path.join(outDir, 'item_emb.npy')) };
    };
    const a = await run('seed-a', 7);
    const b = await run('seed-b', 7);
    const c = await run('seed-c', 8);
    assert.deepEqual(b.steps, a.steps);
    assert.deepEqual(
      b.report.epochs.map((e) => [e.loss, e.valid.metrics]),
      a.report.epochs.map((e) => [e.loss, e.valid.metrics]),
    );
    assert.ok(a.bytes.equals(b.bytes), 'item_emb.npy differs between runs with the same seed');
    assert.notDeepEqual(c.steps, a.steps);
    assert.ok(!a.bytes.equals(c.bytes));
  });

  it('resuming from a checkpoint continues exactly as the uninterrupted run; a foreign checkpoint is refused', async () => {
    const straight = path.join(root, 'straight');
    fs.mkdirSync(straight);
    const a = await trainSasrec(small(straight, { epochs: 4, checkpoint: path.join(straight, 'ckpt.pt') }));
    const split = path.join(root, 'split');
    fs.mkdirSync(split);
    const checkpoint = path.join(split, 'ckpt.pt');
    const first = await trainSasrec(small(split, { epochs: 2, checkpoint, resume: true }));
    assert.equal(first.resumedFromEpoch, 0);
    const resumed = await trainSasrec(small(split, { epochs: 4, checkpoint, resume: true }));
    assert.equal(resumed.resumedFromEpoch, 2);
    assert.deepEqual(
      resumed.epochs.map((e) => [e.epoch, e.loss, e.valid.metrics]),
      a.epochs.map((e) => [e.epoch, e.loss, e.valid.metrics]),
    );
    assert.deepEqual(resumed.test, a.test);
    assert.ok(fs.readFileSync(path.join(split, 'item_emb.npy')).equals(fs.readFileSync(path.join(straight, 'item_emb.npy'))));
    assert.ok(fs.readFileSync(path.join(split, 'model.safetensors')).equals(fs.readFileSync(path.join(straight, 'model.safetensors'))));
    assert.deepEqual(fs.readdirSync(split).sort(), ['ckpt.pt', 'item_emb.npy', 'metrics.json', 'model.safetensors']);

    await assert.rejects(
      trainSasrec(small(path.join(root, 'foreign'), { dim: 8, epochs: 4, checkpoint, resume: true })),
      (error: unknown) => error instanceof NativeError && /made for another run/.test(error.message),
    );
    assert.equal(fs.existsSync(path.join(root, 'foreign')), false);
  });

  it('aborting rejects with CancelledError promptly and writes nothing', async () => {
    const outDir = path.join(root, 'cancelled');
    const ac = new AbortController();
    let abortedAt = 0;
    const promise = trainSasrec(
      small(outDir, {
        epochs: 100_000,
        signal: ac.signal,
        onProgress: (e) => {
          if (e.kind === 'step' && e.epoch === 2 && abortedAt === 0) {
            abortedAt = Date.now();
            ac.abort();
          }
        },
      }),
    );
    await assert.rejects(promise, (error: unknown) => error instanceof CancelledError && error.code === 'ERR_MMESID_CANCELLED');
    assert.ok(abortedAt > 0);
    assert.ok(Date.now() - abortedAt < 1000, `cancellation took ${Date.now() - abortedAt} ms`);
    assert.equal(fs.existsSync(outDir), false);

    const before = new AbortController();
    before.abort();
    await assert.rejects(trainSasrec(small(path.join(root, 'pre-aborted'), { signal: before.signal })), CancelledError);
    assert.equal(fs.existsSync(path.join(root, 'pre-aborted')), false);
  });

  it('refuses a second training while one runs in this process, then accepts one again', async () => {
    const ac = new AbortController();
    const first = trainSasrec(small(path.join(root, 'busy-1'), { epochs: 100_000, signal: ac.signal }));
    await assert.rejects(
      trainSasrec(small(path.join(root, 'busy-2'), { epochs: 1 })),
      (error: unknown) => error instanceof NativeError && error.code === 'ERR_MMESID_NATIVE' && /already running/.test(error.message),
    );
    ac.abort();
    await assert.rejects(first, CancelledError);
    const again = await trainSasrec(small(path.join(root, 'busy-3'), { epochs: 1 }));
    assert.equal(again.epochs.length, 1);
  });

  it('a throwing onProgress cancels the run and rejects with its error', async () => {
    const boom = new Error('boom');
    await assert.rejects(
      trainSasrec(
        small(path.join(root, 'throwing'), {
          onProgress: () => {
            throw boom;
          },
        }),
      ),
      (error: unknown) => error === boom,
    );
    assert.equal(fs.existsSync(path.join(root, 'throwing')), false);
  });

  it('rejects bad arguments with InvalidArgumentError', async () => {
    const out = path.join(root, 'bad');
    const cases: [Partial<TrainSasrecOptions> | Record<string, unknown>, string][] = [
      [{ dim: 0 }, 'options.dim'],
      [{ dim: 16, heads: 3 }, 'options.heads'],
      [{ blocks: 1.5 }, 'options.blocks'],
      [{ maxLen: -1 }, 'options.maxLen'],
      [{ dropout: 1 }, 'options.dropout'],
      [{ loss: 'mse' }, 'options.loss'],
      [{ lr: 0 }, 'options.lr'],
      [{ lr: Number.NaN }, 'options.lr'],
      [{ batchSize: 0 }, 'options.batchSize'],
      [{ epochs: 0 }, 'options.epochs'],
      [{ patience: 0 }, 'options.patience'],
      [{ seed: -1 }, 'options.seed'],
      [{ threads: -1 }, 'options.threads'],
      [{ signal: 'no' }, 'options.signal'],
      [{ onProgress: 3 }, 'options.onProgress'],
      [{ outDir: '' }, 'options.outDir'],
      [{ checkpoint: '' }, 'options.checkpoint'],
      [{ resume: true }, 'options.resume'],
      [{ checkpoint: path.join(root, 'c.pt'), resume: 1 }, 'options.resume'],
      [{ sequences: { ...sequences, items: Array.from(sequences.items) } }, 'options.sequences.items'],
      [{ sequences: { ...sequences, numItems: 10 } }, 'options.sequences.items[0]'],
      [{ sequences: { ...sequences, offsets: sequences.offsets.subarray(1) } }, 'options.sequences.offsets'],
    ];
    for (const [patch, argument] of cases) {
      await assert.rejects(
        trainSasrec({ ...small(out), ...patch }),
        (error: unknown) => error instanceof InvalidArgumentError && error.argument.startsWith(argument),
        `expected InvalidArgumentError for ${argument}`,
      );
    }
    await assert.rejects(trainSasrec(undefined as unknown as TrainSasrecOptions), InvalidArgumentError);
    assert.equal(fs.existsSync(out), false);
  });

  it('keeps the event loop ticking while training', async () => {
    let ticks = 0;
    const timer = setInterval(() => (ticks += 1), 5);
    const started = Date.now();
    try {
      await trainSasrec(small(path.join(root, 'ticking'), { epochs: 15 }));
    } finally {
      clearInterval(timer);
    }
    const elapsed = Date.now() - started;
    assert.ok(elapsed > 200, `training too short to judge (${elapsed} ms)`);
    // A blocked loop would fire the timer about once; a free one about elapsed / 5 times.
    assert.ok(ticks >= elapsed / 5 / 4, `only ${ticks} ticks in ${elapsed} ms`);
  });
});
