/**
 * The training utilities every LLM trainer shares (native/torch/train/train_loop) and LoRA language-model
 * fine-tuning on them (LlamaModel.trainLora, `mmesid llm finetune`):
 * - schedules equal Hugging Face's formulas; clipping equals torch.nn.utils.clip_grad_norm_;
 * - the loss falls when memorising a few sequences; one progress event per step;
 * - gradient accumulation (2 × 2) equals one micro-batch of 4; gradient checkpointing equals none;
 * - N steps straight = N/2 + cancel + resume + N/2 (with dropout), and = N/2 + SIGKILL of the CLI +
 *   `--resume`: bit-identical adapters; a checkpoint of another run is refused;
 * - bad data and options are refused with the argument named.
 */
import * as assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

import { CancelledError, InvalidArgumentError, NativeError } from '../../lib/errors';
import { loadTensors } from '../../lib/data/embeddings';
import { LlamaModel } from '../../lib/llm/model';
import type { TrainStep } from '../../lib/llm/train';
import { torch } from '../../lib/native';
import { torchAvailable } from '../support/backends';
import { mmesid, oneJson } from '../support/cli';
import { writeCheckpointFiles, writeTinyLlama } from '../support/tinyLlama';

const root = path.resolve(__dirname, '..', '..');

function sequences(count: number, length: number, vocab: number, seed: number): number[][] {
  let s = seed >>> 0;
  const next = (): number => (s = (Math.imul(s, 1664525) + 1013904223) >>> 0);
  return Array.from({ length: count }, () => Array.from({ length }, () => next() % vocab));
}

async function adapterBytes(model: LlamaModel, dir: string): Promise<Buffer> {
  await model.saveAdapter(dir);
  return fs.readFileSync(path.join(dir, 'adapter_model.safetensors'));
}

(torchAvailable ? describe : describe.skip)('LLM training utilities and LoRA fine-tuning', function () {
  this.timeout(300_000);
  let dir: string;
  let base: string;
  const data = sequences(12, 10, 40, 3);
  before(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mmesid-train-'));
    base = writeTinyLlama(path.join(dir, 'base'), { hidden: 16, layers: 2, vocab: 40 }).dir;
  });
  after(() => fs.rmSync(dir, { recursive: true, force: true }));

  async function fresh(lora: Parameters<LlamaModel['applyLora']>[0] = {}): Promise<LlamaModel> {
    const model = await LlamaModel.load(base, { threads: 1 });
    model.applyLora({ rank: 4, alpha: 8, dropout: 0.05, targetModules: ['q_proj', 'v_proj', 'gate_proj', 'up_proj', 'down_proj'], seed: 1, ...lora });
    return model;
  }

  it('schedules follow Hugging Face: warmup from 0, then cosine / linear / constant', () => {
    const total = 20, warmup = 5;
    const cosine = torch()._lrMultipliers({ schedule: 'cosine', warmupSteps: warmup, totalSteps: total });
    const linear = torch()._lrMultipliers({ schedule: 'linear', warmupSteps: warmup, totalSteps: total });
    const constant = torch()._lrMultipliers({ schedule: 'constant', warmupSteps: warmup, totalSteps: total });
    for (let s = 0; s < total; s++) {
      const w = s < warmup ? s / warmup : undefined;
      const progress = (s - warmup) / (total - warmup);
      assert.ok(Math.abs(cosine[s]! - (w ?? 0.5 * (1 + Math.cos(Math.PI * progress)))) < 1e-12, `cosine step ${s}`);
      assert.ok(Math.abs(linear[s]! - (w ?? (total - s) / (total - warmup))) < 1e-12, `linear step ${s}`);
      assert.ok(Math.abs(constant[s]! - (w ?? 1)) < 1e-12, `constant step ${s}`);
    }
    assert.equal(cosine[0], 0);
  });

  it('clipping equals clip_grad_norm_: the global norm, scaled by max / (norm + 1e-6) only above max', () => {
    const grads = Float32Array.from([3, 4, 0, 12]);
    const norm = torch()._clipGradNorm({ grads, sizes: Float64Array.from([2, 2]), maxNorm: 6.5 });
    assert.ok(Math.abs(norm - 13) < 1e-6);
    const coef = 6.5 / (13 + 1e-6);
    assert.deepEqual(Array.from(grads), [3, 4, 0, 12].map((g) => Math.fround(g * coef)));
    const untouched = Float32Array.from([0.3, 0.4]);
    assert.ok(Math.abs(torch()._clipGradNorm({ grads: untouched, sizes: Float64Array.from([2]), maxNorm: 1 }) - 0.5) < 1e-6);
    assert.deepEqual(Array.from(untouched), [Math.fround(0.3), Math.fround(0.4)]);
  });

  it('the loss falls when memorising sequences; one progress event per step with the scheduled lr', async () => {
    const model = await fresh();
    try {
      const events: TrainStep[] = [];
      const result = await model.trainLora(data.slice(0, 4), { steps: 40, lr: 1e-2, microBatch: 4, warmupSteps: 4, schedule: 'cosine', onProgress: (e) => events.push(e) });
      assert.equal(result.steps, 40);
      assert.equal(events.length, 40);
      events.forEach((e, i) => assert.equal(e.step, i + 1));
      const multipliers = torch()._lrMultipliers({ schedule: 'cosine', warmupSteps: 4, totalSteps: 40 });
      events.forEach((e, i) => assert.ok(Math.abs(e.lr - 1e-2 * multipliers[i]!) < 1e-15, `lr of step ${i + 1}`));
      const first = result.losses[0]!, last = result.losses[39]!;
      assert.ok(last < 0.7 * first, `loss ${first} → ${last}`);
      assert.ok(events.every((e) => Number.isFinite(e.gradNorm) && e.gradNorm > 0 && !e.skipped));
    } finally {
      await model.dispose();
    }
  });

  it('gradient accumulation 2 × 2 equals one micro-batch of 4; gradient checkpointing equals none', async () => {
    const equalLength = data.slice(0, 8);
    const run = async (options: { microBatch: number; accumulationSteps: number; gradientCheckpointing?: boolean }): Promise<Float32Array> => {
      const model = await fresh({ dropout: 0 });
      try {
        await model.trainLora(equalLength, { steps: 3, lr: 5e-3, warmupSteps: 0, ...options });
        const out = await model.forward({ batch: 1, length: 10, inputIds: Int32Array.from(data[9]!), logits: true });
        return out.logits!;
      } finally {
        await model.dispose();
      }
    };
    const one = await run({ microBatch: 4, accumulationSteps: 1 });
    const two = await run({ microBatch: 2, accumulationSteps: 2 });
    const maxDiff = (a: Float32Array, b: Float32Array): number => a.reduce((m, x, i) => Math.max(m, Math.abs(x - b[i]!)), 0);
    assert.ok(maxDiff(one, two) < 1e-4, `accumulation: ${maxDiff(one, two)}`);
    const untrained = await LlamaModel.load(base, { threads: 1 });
    const plain = (await untrained.forward({ batch: 1, length: 10, inputIds: Int32Array.from(data[9]!), logits: true })).logits!;
    await untrained.dispose();
    assert.ok(maxDiff(one, plain) > 1e-3, 'training changed the model');
    const checkpointed = await run({ microBatch: 4, accumulationSteps: 1, gradientCheckpointing: true });
    assert.ok(maxDiff(one, checkpointed) < 1e-6, `checkpointing: ${maxDiff(one, checkpointed)}`);
  });

  it('fp16 loss scaling (a power of two) leaves float32 training bit-identical', async () => {
    const run = async (fp16LossScaling: boolean): Promise<Buffer> => {
      const model = await fresh();
      try {
        await model.trainLora(data, { steps: 3, lr: 5e-3, microBatch: 4, fp16LossScaling });
        return await adapterBytes(model, path.join(dir, `scaled-${fp16LossScaling}`));
      } finally {
        await model.dispose();
      }
    };
    assert.deepEqual(await run(true), await run(false));
  });

  it('gradient checkpointing replays dropout: equal results with dropout on', async () => {
    const run = async (gradientCheckpointing: boolean): Promise<Float32Array[]> => {
      const model = await fresh({ dropout: 0.3 });
      try {
        await model.trainLora(data, { steps: 4, lr: 5e-3, microBatch: 3, gradientCheckpointing });
        const out = path.join(dir, `gc-${gradientCheckpointing}`);
        await model.saveAdapter(out);
        return (await loadTensors(path.join(out, 'adapter_model.safetensors'))).tensors.map((t) => t.data);
      } finally {
        await model.dispose();
      }
    };
    const plain = await run(false);
    const checkpointed = await run(true);
    const noDropout = await (async () => {
      const model = await fresh({ dropout: 0 });
      await model.trainLora(data, { steps: 4, lr: 5e-3, microBatch: 3 });
      await model.saveAdapter(path.join(dir, 'gc-nodrop'));
      await model.dispose();
      return (await loadTensors(path.join(dir, 'gc-nodrop', 'adapter_model.safetensors'))).tensors.map((t) => t.data);
    })();
    let worst = 0, dropoutEffect = 0;
    plain.forEach((a, k) => a.forEach((x, i) => {
      worst = Math.max(worst, Math.abs(x - checkpointed[k]![i]!));
      dropoutEffect = Math.max(dropoutEffect, Math.abs(x - noDropout[k]![i]!));
    }));
    assert.ok(worst < 1e-6, `checkpointed vs plain: ${worst}`);
    assert.ok(dropoutEffect > 1e-4, 'dropout changed the result (the control)');
  });

  it('N steps straight = N/2, cancel, resume, N/2: bit-identical adapters (dropout on); another run’s checkpoint is refused', async () => {
    const options = { steps: 8, lr: 5e-3, microBatch: 3, accumulationSteps: 2, warmupSteps: 2 };
    const straight = await fresh();
    const expected = await adapterBytes(straight, path.join(dir, 'straight'));
    await straight.trainLora(data, options);
    const expectedTrained = await adapterBytes(straight, path.join(dir, 'straight'));
    await straight.dispose();
    assert.notDeepEqual(expectedTrained, expected);

    const checkpoint = path.join(dir, 'resume.pt');
    const first = await fresh();
    const ac = new AbortController();
    await assert.rejects(
      first.trainLora(data, { ...options, checkpoint, signal: ac.signal, onProgress: (e) => e.step === 4 && ac.abort() }),
      CancelledError,
    );
    await first.dispose();
    assert.ok(fs.existsSync(checkpoint));
    const second = await fresh();
    try {
      const result = await second.trainLora(data, { ...options, checkpoint, resume: true });
      assert.ok(result.resumedFrom >= 4 && result.resumedFrom < 8, `resumed from ${result.resumedFrom}`);
      assert.equal(result.losses.length, 8 - result.resumedFrom);
      assert.deepEqual(await adapterBytes(second, path.join(dir, 'resumed')), expectedTrained);
      await assert.rejects(second.trainLora(data, { ...options, lr: 1e-3, checkpoint, resume: true }), (e: unknown) => e instanceof NativeError && /another run/.test(e.message));
    } finally {
      await second.dispose();
    }
  });

  it('`mmesid llm finetune`: SIGKILL mid-run, then --resume, equals a straight run byte for byte', async function () {
    const file = path.join(dir, 'data.jsonl');
    fs.writeFileSync(file, `${data.map((s, i) => (i % 2 ? JSON.stringify(s) : JSON.stringify({ ids: s }))).join('\n')}\n`);
    const args = (out: string): string[] => ['llm', 'finetune', '--model', base, '--data', file, '--out', out, '--steps', '60', '--rank', '4', '--micro-batch', '3', '--accumulation', '1', '--threads', '1', '--checkpoint-every', '1', '--lr', '5e-3'];
    const straight = mmesid(...args(path.join(dir, 'cli-straight')), '--json');
    assert.equal(straight.status, 0, straight.stderr);
    const report = oneJson(straight.stdout) as { steps: number; resumedFrom: number; firstLoss: number; lastLoss: number };
    assert.equal(report.steps, 60);
    assert.equal(report.resumedFrom, 0);

    const out = path.join(dir, 'cli-killed');
    const checkpoint = path.join(out, 'checkpoint.pt');
    const child = spawn(process.execPath, ['-r', 'ts-node/register/transpile-only', path.join(root, 'lib', 'cli', 'main.ts'), ...args(out)], { cwd: root, stdio: 'ignore' });
    await new Promise<void>((resolve, reject) => {
      const started = Date.now();
      const poll = setInterval(() => {
        if (fs.existsSync(checkpoint)) {
          clearInterval(poll);
          child.kill('SIGKILL');
          resolve();
        } else if (Date.now() - started > 120_000) {
          clearInterval(poll);
          child.kill('SIGKILL');
          reject(new Error('no checkpoint appeared'));
        }
      }, 5);
    });
    await new Promise((resolve) => child.once('exit', resolve));
    assert.ok(!fs.existsSync(path.join(out, 'adapter_model.safetensors')), 'the killed run wrote no adapter');
    const resumed = mmesid(...args(out), '--resume', '--json');
    assert.equal(resumed.status, 0, resumed.stderr);
    const resumedReport = oneJson(resumed.stdout) as { steps: number; resumedFrom: number };
    assert.ok(resumedReport.resumedFrom >= 1 && resumedReport.resumedFrom < 60, `resumed from ${resumedReport.resumedFrom}`);
    assert.deepEqual(fs.readFileSync(path.join(out, 'adapter_model.safetensors')), fs.readFileSync(path.join(dir, 'cli-straight', 'adapter_model.safetensors')));
    const config = JSON.parse(fs.readFileSync(path.join(out, 'adapter_config.json'), 'utf8')) as { r: number; target_modules: string[] };
    assert.equal(config.r, 4);
    assert.deepEqual(config.target_modules, ['gate_proj', 'up_proj', 'down_proj']);
  });

  it('refuses bad data and options, naming them', async () => {
    const model = await fresh();
    try {
      await assert.rejects(model.trainLora([[1]], { steps: 1 }), (e: unknown) => e instanceof InvalidArgumentError && /sequences\[0\]/.test(e.message));
      await assert.rejects(model.trainLora([[1, 99]], { steps: 1 }), (e: unknown) => e instanceof InvalidArgumentError && /sequences\[0\]\[1\]/.test(e.message));
      await assert.rejects(model.trainLora(data, { steps: 0 }), (e: unknown) => e instanceof InvalidArgumentError && /options\.steps/.test(e.message));
      await assert.rejects(model.trainLora(data, { steps: 2, lr: -1 }), (e: unknown) => e instanceof InvalidArgumentError && /options\.lr/.test(e.message));
      await assert.rejects(model.trainLora(data, { steps: 2, autocast: 'bfloat16' }), (e: unknown) => e instanceof InvalidArgumentError && /options\.autocast/.test(e.message));
      await assert.rejects(model.trainLora(data, { steps: 2, resume: true }), (e: unknown) => e instanceof InvalidArgumentError && /options\.resume/.test(e.message));
    } finally {
      await model.dispose();
    }
    // A NaN in the base weights makes the loss NaN: an error naming the step, never a silent NaN run.
    const broken = writeTinyLlama(path.join(dir, 'nan-base'), { hidden: 16, layers: 2, vocab: 40 });
    const tensors = [...broken.weights.values()].map((t) => (t.name === 'model.norm.weight' ? { ...t, data: t.data.map((x, i) => (i === 3 ? Number.NaN : x)) } : t));
    writeCheckpointFiles(broken.dir, tensors, 'F32');
    const nan = await LlamaModel.load(broken.dir, { threads: 1 });
    nan.applyLora({ rank: 2 });
    await assert.rejects(nan.trainLora(data, { steps: 2 }), (e: unknown) => e instanceof NativeError && /loss is not finite at step 1/.test(e.message));
    // With fp16 loss scaling an overflow skips the step (and halves the scale) instead.
    const skipped: TrainStep[] = [];
    await nan.trainLora(data, { steps: 3, fp16LossScaling: true, onProgress: (e) => skipped.push(e) });
    assert.deepEqual(skipped.map((e) => e.skipped), [true, true, true]);
    await nan.dispose();
    const plain = await LlamaModel.load(base, { threads: 1 });
    await assert.rejects(plain.trainLora(data, { steps: 1 }), (e: unknown) => e instanceof InvalidArgumentError && /LoRA adapters/.test(e.message));
    await plain.dispose();
  });
});
