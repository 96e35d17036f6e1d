/**
 * The float64 Llama reference (test/support/llamaReference.ts) that the libtorch Llama is checked
 * against, checked itself:
 * - on ../shared/models/stories260K (llama2.c's 260K-parameter TinyStories model in HF layout): greedy
 *   decoding from BOS gives the recorded ids and the 200-id fixture, and the KV-cache decoder agrees
 *   with the full-sequence forward;
 * - on tiny random checkpoints (test/support/tinyLlama.ts): every file layout reads back to the same
 *   model, 16-bit dtypes hold the weights at their stored precision, broken checkpoints are refused;
 * - invariants that a wrong implementation breaks: left padding with HF generate's position ids, GQA as
 *   MHA with repeated kv heads, RoPE's shift invariance, llama3 rope_scaling's inv_freq.
 */
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

import {
  argmax,
  llamaInvFreq,
  loadReferenceLlama,
  parseLlamaConfig,
  referenceForward,
  referenceGreedy,
  type ReferenceLlama,
} from '../support/llamaReference';
import { writeCheckpointFiles, writeTinyLlama, type TinyLlamaOptions, type TinyTensor } from '../support/tinyLlama';

const stories = path.resolve(__dirname, '..', '..', '..', 'shared', 'models', 'stories260K');
const fixtureFile = path.resolve(__dirname, '..', 'fixtures', 'llm', 'stories260K.greedy200.json');

/** The first 32 greedy ids from [1], recorded independently of this reference. */
const FIRST_32 = '461 461 401 401 401 461 378 455 473 456 435 299 362 409 283 264 283 452 288 13 431 431 431 431 431 431 431 431 431 431 431 431'.split(' ').map(Number);

/** Largest |a − b| over two [batch][seq][dim] arrays, only where `keep(b, t)`. */
function maxDiff(a: Float64Array[][], b: Float64Array[][], keep: (b: number, t: number) => boolean = () => true): number {
  assert.equal(a.length, b.length);
  let worst = 0;
  a.forEach((row, i) => {
    assert.equal(row.length, b[i]!.length);
    row.forEach((x, t) => {
      if (!keep(i, t)) return;
      const y = b[i]![t]!;
      assert.equal(x.length, y.length);
      for (let d = 0; d < x.length; d += 1) worst = Math.max(worst, Math.abs(x[d]! - y[d]!));
    });
  });
  return worst;
}

/** The header of a safetensors file (names → dtype/shape), read independently of any library reader. */
function safetensorsHeader(file: string): Record<string, { dtype: string; shape: number[] }> {
  const bytes = fs.readFileSync(file);
  const n = Number(bytes.readBigUInt64LE(0));
  const header = JSON.parse(bytes.subarray(8, 8 + n).toString('utf8')) as Record<string, { dtype: string; shape: number[] }>;
  delete header.__metadata__;
  return header;
}

describe('Llama reference (float64 HF LlamaForCausalLM)', function () {
  this.timeout(300_000);
  let root: string;
  before(() => {
    root = fs.mkdtempSync(path.join(os.tmpdir(), 'mmesid-llama-ref-'));
  });
  after(() => {
    if (root) fs.rmSync(root, { recursive: true, force: true });
  });

  describe('stories260K (../shared/models/stories260K)', () => {
    let model: ReferenceLlama | undefined;
    let greedy200: number[] = [];

    before(async function () {
      if (!fs.existsSync(path.join(stories, 'config.json')) || !fs.existsSync(path.join(stories, 'model.safetensors'))) {
        console.log(`    skipped: ${stories} (config.json + model.safetensors) is missing; see ../shared/models`);
        this.skip();
      }
      model = await loadReferenceLlama(stories);
    });

    it('reads the HF config and tensors: GQA 8/4 heads, tied lm_head stored equal to embed_tokens', () => {
      const m = model!;
      assert.deepEqual(
        { ...m.config },
        {
          hidden_size: 64, intermediate_size: 172, num_hidden_layers: 5, num_attention_heads: 8, num_key_value_heads: 4, head_dim: 8,
          vocab_size: 512, rms_norm_eps: 1e-5, rope_theta: 10000, rope_scaling: null, tie_word_embeddings: true, attention_bias: false, mlp_bias: false,
        },
      );
      assert.equal(m.tensors.size, 2 + 9 * 5 + 1);
      assert.equal(m.lmHeadSource, 'tied to embed_tokens');
      assert.deepEqual(m.tensors.get('lm_head.weight')!.data, m.tensors.get('model.embed_tokens.weight')!.data);
    });

    it('greedy from [1] gives the recorded first 32 ids', () => {
      const started = process.hrtime.bigint();
      greedy200 = referenceGreedy(model!, [1], 200);
      const ms = Number(process.hrtime.bigint() - started) / 1e6;
      console.log(`    200 greedy tokens in ${ms.toFixed(0)} ms`);
      assert.deepEqual(greedy200.slice(0, 32), FIRST_32);
      assert.ok(ms < 20_000, `200 tokens took ${ms} ms`);
    });

    it('reproduces the 200-id fixture test/fixtures/llm/stories260K.greedy200.json', () => {
      const fixture = JSON.parse(fs.readFileSync(fixtureFile, 'utf8')) as { promptIds: number[]; ids: number[]; source: string };
      assert.deepEqual(fixture.promptIds, [1]);
      assert.equal(fixture.ids.length, 200);
      assert.deepEqual(fixture.ids.slice(0, 32), FIRST_32);
      const ids = greedy200.length === 200 ? greedy200 : referenceGreedy(model!, fixture.promptIds, 200);
      assert.deepEqual(ids, fixture.ids);
    });

    it('the KV-cache decoder agrees with the full-sequence forward on the generated text', () => {
      const ids = greedy200.length === 200 ? greedy200 : referenceGreedy(model!, [1], 200);
      const { logits } = referenceForward(model!, { inputIds: [[1, ...ids.slice(0, 199)]] });
      assert.deepEqual(logits![0]!.map((l) => argmax(l)), ids);
    });
  });

  describe('tiny checkpoints (writeTinyLlama → loadReferenceLlama)', () => {
    const base: TinyLlamaOptions = { hidden: 16, layers: 2, heads: 4, kvHeads: 2, intermediate: 24, vocab: 40, seed: 5 };
    const batch = { inputIds: [[1, 5, 9, 3, 30, 7], [2, 2, 39, 0, 11, 4]] };
    const write = (name: string, options: TinyLlamaOptions): ReturnType<typeof writeTinyLlama> => writeTinyLlama(path.join(root, name), { ...base, ...options });

    it('single-file vs sharded, prefix vs none, tied lm_head stored vs omitted: the same forward, bit for bit', async () => {
      const variants: [string, TinyLlamaOptions][] = [
        ['single', {}],
        ['sharded', { shards: 2 }],
        ['sharded3-noprefix', { shards: 3, prefix: false }],
        ['noprefix', { prefix: false }],
        ['tied-stored', { lmHead: 'tied-stored' }],
      ];
      const results = [];
      for (const [name, options] of variants) {
        const written = write(name, options);
        const model = await loadReferenceLlama(written.dir);
        assert.deepEqual(model.files, written.files, name);
        results.push({ name, written, model, out: referenceForward(model, batch) });
      }
      const [single, sharded, sharded3, noprefix, tiedStored] = results;
      // The layouts really differ on disk.
      assert.deepEqual(fs.readdirSync(sharded!.written.dir).sort(), ['config.json', 'model-00001-of-00002.safetensors', 'model-00002-of-00002.safetensors', 'model.safetensors.index.json']);
      const index = JSON.parse(fs.readFileSync(path.join(sharded!.written.dir, 'model.safetensors.index.json'), 'utf8')) as { weight_map: Record<string, string> };
      assert.deepEqual(new Set(Object.values(index.weight_map)), new Set(['model-00001-of-00002.safetensors', 'model-00002-of-00002.safetensors']));
      assert.equal(sharded3!.model.files.length, 3);
      assert.ok(Object.keys(safetensorsHeader(noprefix!.written.files[0]!)).every((n) => !n.startsWith('model.')));
      assert.ok('model.norm.weight' in safetensorsHeader(single!.written.files[0]!));
      assert.ok(!('lm_head.weight' in safetensorsHeader(single!.written.files[0]!)));
      assert.ok('lm_head.weight' in safetensorsHeader(tiedStored!.written.files[0]!));
      for (const r of results.slice(1)) {
        assert.deepEqual(r.out.hidden, single!.out.hidden, r.name);
        assert.deepEqual(r.out.logits, single!.out.logits, r.name);
      }
      // The weights read are the float32 weights drawn.
      for (const [name, t] of single!.written.weights) assert.deepEqual(single!.model.tensors.get(name)!.data, Float64Array.from(t.data), name);
    });

    it('tied logits are hidden · embed_tokensᵀ; untied ones use lm_head.weight (and differ)', async () => {
      const tied = write('tied', {});
      const untied = write('untied', { lmHead: 'untied' });
      const mt = await loadReferenceLlama(tied.dir), mu = await loadReferenceLlama(untied.dir);
      assert.equal(mu.lmHeadSource, 'lm_head.weight');
      const ot = referenceForward(mt, batch), ou = referenceForward(mu, batch);
      assert.deepEqual(ou.hidden, ot.hidden, 'an untied lm_head is drawn after every other weight');
      const H = 16, V = 40;
      const byHand = (hidden: Float64Array, w: ArrayLike<number>): Float64Array => Float64Array.from({ length: V }, (_, v) => {
        let s = 0;
        for (let d = 0; d < H; d += 1) s += hidden[d]! * w[v * H + d]!;
        return s;
      });
      const embed = tied.weights.get('model.embed_tokens.weight')!.data, head = untied.weights.get('lm_head.weight')!.data;
      assert.ok(maxDiff(ot.logits!, ot.hidden.map((row) => row.map((h) => byHand(h, embed)))) < 1e-12);
      assert.ok(maxDiff(ou.logits!, ou.hidden.map((row) => row.map((h) => byHand(h, head)))) < 1e-12);
      assert.ok(maxDiff(ou.logits!, ot.logits!) > 0.1);
    });

    for (const [dtype, bits] of [['F16', 11], ['BF16', 8]] as const) {
      it(`${dtype}: every weight is the float32 weight rounded to ${bits} significant bits`, async () => {
        const written = write(`dtype-${dtype}`, { dtype, shards: 2, lmHead: 'untied' });
        for (const file of written.files) assert.ok(Object.values(safetensorsHeader(file)).every((t) => t.dtype === dtype), file);
        const model = await loadReferenceLlama(written.dir);
        const u = 2 ** -bits; // unit roundoff of round-to-nearest
        const subnormalStep = dtype === 'F16' ? 2 ** -25 : 0; // half an f16 subnormal step (bf16 has float32's range)
        let changed = 0, count = 0;
        for (const [name, t] of written.weights) {
          const loaded = model.tensors.get(name)!.data;
          for (let i = 0; i < t.data.length; i += 1) {
            const x = t.data[i]!, y = loaded[i]!;
            assert.ok(Math.abs(y - x) <= u * Math.abs(x) + subnormalStep, `${name}[${i}]: ${y} is not ${x} rounded to ${dtype}`);
            if (y !== 0) {
              const e = Math.floor(Math.log2(Math.abs(y)));
              assert.ok(Number.isInteger(y * 2 ** (bits - 1 - e)), `${name}[${i}]: ${y} has more than ${bits} significant bits`);
            }
            if (y !== x) changed += 1;
            count += 1;
          }
        }
        assert.ok(changed > count / 2, `${changed} of ${count} weights changed when stored as ${dtype}`);
        // The forward moves by about the rounding, no more (measured: ~3 unit roundoffs for both dtypes).
        const f32 = await loadReferenceLlama(write(`dtype-${dtype}-f32`, { lmHead: 'untied' }).dir);
        const d = maxDiff(referenceForward(model, batch).hidden, referenceForward(f32, batch).hidden);
        assert.ok(d > 0 && d < 20 * u, `hidden moved by ${d} (${d / u} unit roundoffs)`);
      });
    }

    it('argmax breaks ties toward the lowest id', () => {
      assert.equal(argmax([1, 3, 3, 2]), 1);
      assert.equal(argmax(Float64Array.of(-1, -1)), 0);
    });

    it('inputsEmbeds = the embed_tokens rows gives the inputIds forward', async () => {
      const model = await loadReferenceLlama(write('embeds', {}).dir);
      const H = model.config.hidden_size;
      const inputsEmbeds = batch.inputIds.map((row) => row.map((id) => model.embedTokens.slice(id * H, (id + 1) * H)));
      assert.deepEqual(referenceForward(model, { inputsEmbeds }), referenceForward(model, batch));
      assert.throws(() => referenceForward(model, { ...batch, inputsEmbeds }), /exactly one/);
      assert.throws(() => referenceForward(model, { inputIds: [[1, 40]] }), /token id 40/);
    });

    describe('broken checkpoints are refused, naming the tensor', () => {
      const cases: [string, TinyLlamaOptions, RegExp][] = [
        ['a dropped tensor', { dropTensor: 'model.layers.1.mlp.up_proj.weight' }, /"model\.layers\.1\.mlp\.up_proj\.weight" is missing/],
        ['a dropped tensor (sharded, no prefix)', { dropTensor: 'model.norm.weight', shards: 2, prefix: false }, /"model\.norm\.weight" is missing/],
        ['untied without lm_head.weight', { lmHead: 'untied', dropTensor: 'lm_head.weight' }, /"lm_head\.weight" is missing/],
        ['an unexpected tensor', { extraTensor: 'model.layers.0.self_attn.q_norm.weight' }, /unexpected tensor "model\.layers\.0\.self_attn\.q_norm\.weight"/],
        ['a layer beyond num_hidden_layers', { extraTensor: 'model.layers.2.input_layernorm.weight' }, /unexpected tensor "model\.layers\.2\.input_layernorm\.weight"/],
        ['a mis-shaped tensor', { misshapeTensor: 'model.layers.0.self_attn.k_proj.weight' }, /"model\.layers\.0\.self_attn\.k_proj\.weight" has shape \[7, 16\] but \[8, 16\]/],
        ['a mis-shaped tied lm_head', { lmHead: 'tied-stored', misshapeTensor: 'lm_head.weight' }, /"lm_head\.weight" has shape \[39, 16\] but \[40, 16\]/],
      ];
      for (const [what, options, message] of cases) {
        it(what, async () => {
          const written = write(`bad-${what.replace(/\W+/g, '-')}`, options);
          await assert.rejects(loadReferenceLlama(written.dir), message);
        });
      }

      it('a weight_map that disagrees with its shards', async () => {
        const written = write('bad-index', { shards: 2 });
        const file = path.join(written.dir, 'model.safetensors.index.json');
        const index = JSON.parse(fs.readFileSync(file, 'utf8')) as { weight_map: Record<string, string> };
        index.weight_map['model.norm.weight'] = 'model-00001-of-00002.safetensors';
        fs.writeFileSync(file, JSON.stringify(index));
        await assert.rejects(loadReferenceLlama(written.dir), /"model\.norm\.weight" is not listed for this file/);
      });

      it('a tensor stored both with and without the prefix', async () => {
        const dir = path.join(root, 'bad-duplicate');
        const written = writeTinyLlama(dir, base);
        const tensors: TinyTensor[] = [...written.weights.values()];
        const norm = written.weights.get('model.norm.weight')!;
        writeCheckpointFiles(dir, [...tensors, { ...norm, name: 'norm.weight' }], 'F32');
        await assert.rejects(loadReferenceLlama(dir), /"norm\.weight" duplicates "model\.norm\.weight"/);
      });
    });
  });

  describe('invariants', () => {
    let model: ReferenceLlama;
    before(async () => {
      model = await loadReferenceLlama(writeTinyLlama(path.join(root, 'invariants'), { hidden: 16, layers: 2, heads: 4, kvHeads: 2, intermediate: 24, vocab: 40, seed: 9, attentionBias: true, mlpBias: true }).dir);
    });

    it('left padding: k pads + mask + positions cumsum(mask) − 1 give the unpadded hidden states', () => {
      const ids = [3, 14, 15, 9, 26, 5];
      const unpadded = referenceForward(model, { inputIds: [ids] });
      for (const k of [1, 3]) {
        const padded = [...new Array<number>(k).fill(0), ...ids];
        const mask = padded.map((_, t) => (t < k ? 0 : 1));
        // HF generate: position_ids = cumsum(mask) − 1, then masked_fill(mask == 0, 1).
        let run = 0;
        const positions = mask.map((m) => ((run += m), m === 0 ? 1 : run - 1));
        const out = referenceForward(model, { inputIds: [padded, [...ids, 7, 8, 9].slice(0, padded.length)], attentionMask: [mask, mask.map(() => 1)], positionIds: [positions, padded.map((_, t) => t)] });
        const real = [out.hidden[0]!.slice(k)];
        assert.ok(maxDiff(real, unpadded.hidden) < 1e-12, `k = ${k}: ${maxDiff(real, unpadded.hidden)}`);
        // Row 1 (no padding) is untouched by row 0's mask.
        const alone = referenceForward(model, { inputIds: [out.hidden[1]!.map((_, t) => [...ids, 7, 8, 9][t]!)] });
        assert.ok(maxDiff([out.hidden[1]!], alone.hidden) < 1e-12);
        // Control: without the mask the states move.
        const noMask = referenceForward(model, { inputIds: [padded], positionIds: [positions] });
        assert.ok(maxDiff([noMask.hidden[0]!.slice(k)], unpadded.hidden) > 1e-3);
        // HF forward's default positions (0..seq−1) shift every real token by k; RoPE is relative, so
        // with the mask the states agree up to rounding as well.
        const defaultPositions = referenceForward(model, { inputIds: [padded], attentionMask: [mask] });
        assert.ok(maxDiff([defaultPositions.hidden[0]!.slice(k)], unpadded.hidden) < 1e-10);
      }
    });

    it('RoPE is relative: shifting every position by 37 leaves the hidden states unchanged', () => {
      const inputIds = [[4, 8, 15, 16, 23, 42 % 40, 1]];
      const a = referenceForward(model, { inputIds });
      const b = referenceForward(model, { inputIds, positionIds: [inputIds[0]!.map((_, t) => t + 37)] });
      assert.ok(maxDiff(a.hidden, b.hidden) < 1e-10, `${maxDiff(a.hidden, b.hidden)}`);
      // Control: a non-uniform change of positions moves them.
      const c = referenceForward(model, { inputIds, positionIds: [inputIds[0]!.map((_, t) => 2 * t)] });
      assert.ok(maxDiff(a.hidden, c.hidden) > 1e-3);
    });

    it('GQA equals MHA whose kv heads are repeated (query head h reads kv head ⌊h / group⌋)', async () => {
      const { config } = model;
      const heads = config.num_attention_heads, kv = config.num_key_value_heads, hd = config.head_dim, group = heads / kv;
      assert.ok(group > 1);
      const repeat = (mapping: (h: number) => number): Promise<ReferenceLlama> => {
        const dir = path.join(root, `mha-${mapping(1)}`);
        const tensors: TinyTensor[] = [];
        for (const [name, t] of model.tensors) {
          const proj = /self_attn\.[kv]_proj\.(weight|bias)$/.exec(name);
          if (!proj) {
            tensors.push({ name, shape: t.shape, data: Float32Array.from(t.data) });
            continue;
          }
          const rowLength = t.shape.length === 2 ? t.shape[1]! : 1;
          const data = new Float32Array(heads * hd * rowLength);
          for (let h = 0; h < heads; h += 1) data.set(t.data.subarray(mapping(h) * hd * rowLength, (mapping(h) + 1) * hd * rowLength), h * hd * rowLength);
          tensors.push({ name, shape: t.shape.length === 2 ? [heads * hd, rowLength] : [heads * hd], data });
        }
        writeCheckpointFiles(dir, tensors, 'F32');
        fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify({ ...config, num_key_value_heads: heads }));
        return loadReferenceLlama(dir);
      };
      const mha = await repeat((h) => Math.floor(h / group));
      assert.equal(mha.config.num_key_value_heads, heads);
      const inputIds = [[5, 6, 7, 8, 9, 10, 11]];
      const gqa = referenceForward(model, { inputIds });
      assert.ok(maxDiff(referenceForward(mha, { inputIds }).hidden, gqa.hidden) < 1e-12);
      // Control: the interleaved mapping h mod kv (a common bug) is a different model.
      const interleaved = await repeat((h) => h % kv);
      assert.ok(maxDiff(referenceForward(interleaved, { inputIds }).hidden, gqa.hidden) > 1e-3);
      // And greedy decoding (the KV-cache path) sees GQA the same way.
      assert.deepEqual(referenceGreedy(mha, [3, 1, 4], 12), referenceGreedy(model, [3, 1, 4], 12));
    });

    it('llama3 rope_scaling divides low-frequency inv_freq by factor, blends the middle, keeps the rest', async () => {
      // head_dim 16, theta 10000: inv_freq_j = 10000^(−j/8); wavelengths 2π·10^(j/2) = 6.3, 19.9, 62.8,
      // 198.7, 628.3, 1987, 6283, 19869. original_max 2048, low 1, high 4: keep below 512, divide above
      // 2048, blend j = 4, 5.
      const scaling = { rope_type: 'llama3', factor: 8, low_freq_factor: 1, high_freq_factor: 4, original_max_position_embeddings: 2048 };
      const raw = { hidden_size: 32, intermediate_size: 8, num_hidden_layers: 1, num_attention_heads: 2, vocab_size: 8, rms_norm_eps: 1e-5, rope_theta: 10000 };
      const plain = llamaInvFreq(parseLlamaConfig(raw));
      const scaled = llamaInvFreq(parseLlamaConfig({ ...raw, rope_scaling: scaling }));
      const viaType = llamaInvFreq(parseLlamaConfig({ ...raw, rope_scaling: { ...scaling, rope_type: undefined, type: 'llama3' } }));
      assert.equal(scaled.length, 8);
      assert.deepEqual(viaType, scaled);
      for (const j of [0, 1, 2, 3]) assert.equal(scaled[j], plain[j], `dim ${j} is high-frequency`);
      const close = (a: number, b: number, what: string): void => assert.ok(Math.abs(a - b) <= 1e-12 * Math.abs(b), `${what}: ${a} vs ${b}`);
      close(plain[4]!, 0.01, 'plain j=4');
      // j = 4: wavelen 200π; s = (2048 / 200π − 1) / 3 = 0.7531...; (1 − s)·0.01/8 + s·0.01.
      const s4 = (2048 / (200 * Math.PI) - 1) / 3;
      close(scaled[4]!, 0.01 * ((1 - s4) / 8 + s4), 'j=4');
      close(scaled[4]!, 0.007840188600689215, 'j=4 (computed by hand in Python)');
      const s5 = (2048 / (2 * Math.PI * 10 ** 2.5) - 1) / 3;
      close(scaled[5]!, 10 ** -2.5 * ((1 - s5) / 8 + s5), 'j=5');
      close(scaled[5]!, 0.0004236392500408582, 'j=5 (computed by hand in Python)');
      close(scaled[6]!, 0.001 / 8, 'j=6');
      close(scaled[7]!, 10 ** -3.5 / 8, 'j=7');

      // Through a checkpoint: position 0 is unrotated, so only later tokens see the scaling.
      const options: TinyLlamaOptions = { hidden: 32, heads: 2, kvHeads: 1, layers: 1, intermediate: 16, vocab: 20, seed: 2 };
      const a = await loadReferenceLlama(writeTinyLlama(path.join(root, 'rope-plain'), options).dir);
      const b = await loadReferenceLlama(writeTinyLlama(path.join(root, 'rope-llama3'), { ...options, ropeScaling: scaling }).dir);
      assert.deepEqual(b.invFreq, scaled);
      const inputIds = [Array.from({ length: 40 }, (_, t) => (t * 7) % 20)];
      const ha = referenceForward(a, { inputIds }).hidden, hb = referenceForward(b, { inputIds }).hidden;
      assert.deepEqual(hb[0]![0], ha[0]![0]);
      assert.ok(maxDiff([hb[0]!.slice(1)], [ha[0]!.slice(1)]) > 1e-6);
    });
  });
});
