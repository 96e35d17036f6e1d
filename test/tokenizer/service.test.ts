import * as assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Worker } from 'node:worker_threads';

import { Command } from 'commander';

import { defaultBatchRows, parseShard, registerTokenizeCommand, runTokenize, shardRange, type TokenizeReport } from '../../lib/cli/tokenize';
import { loadNpy, saveNpy, saveTensors, type NamedTensor } from '../../lib/data/embeddings';
import { NpyRowReader, NpyWriter } from '../../lib/data/npyStream';
import { CancelledError, DataFormatError, InvalidArgumentError } from '../../lib/errors';
import { kernels } from '../../lib/kernels';
import { hasTorch, torch } from '../../lib/native';
import { TOKENIZER_FORMAT, Tokenizer, type TokenizerManifestModality, type TokenizerModalityName } from '../../lib/tokenizer/service';
import { readInt32Npy, tempFiles } from '../support/npy';
import { Rng } from '../support/random';
import { tolerances } from '../support/tolerances';

// ---------------------------------------------------------------------------------------------------
// Fixtures: tokenizer artifacts per the specification, from random weights (no trainer needed)

interface Layer {
  weight: Float32Array;
  bias: Float32Array;
  inDim: number;
  outDim: number;
}

interface ModalityFixture {
  name: TokenizerModalityName;
  inputDim: number;
  hidden: number[];
  encoder: Layer[];
  codebooks: Float32Array;
}

interface Fixture {
  dir: string;
  levels: number;
  codes: number;
  codeDim: number;
  modalities: ModalityFixture[];
  tensors: NamedTensor[];
}

/** Encoder forward in float64 (bias + Σ x·w, ReLU between layers). */
function mlp64(layers: Layer[], x: Float32Array | Float64Array, n: number): Float64Array {
  let input: Float32Array | Float64Array = x;
  for (const [i, l] of layers.entries()) {
    const out = new Float64Array(n * l.outDim);
    for (let r = 0; r < n; r += 1) {
      for (let o = 0; o < l.outDim; o += 1) {
        let acc = l.bias[o] as number;
        for (let p = 0; p < l.inDim; p += 1) acc += (input[r * l.inDim + p] as number) * (l.weight[o * l.inDim + p] as number);
        out[r * l.outDim + o] = i + 1 < layers.length && acc < 0 ? 0 : acc;
      }
    }
    input = out;
  }
  return input as Float64Array;
}

/** Squared distances of residual r (length e) to every codeword of level `level`. */
function distances(r: Float64Array, books: Float32Array, level: number, codes: number, e: number): Float64Array {
  const d = new Float64Array(codes);
  for (let k = 0; k < codes; k += 1) {
    let s = 0;
    for (let j = 0; j < e; j += 1) {
      const diff = (r[j] as number) - (books[(level * codes + k) * e + j] as number);
      s += diff * diff;
    }
    d[k] = s;
  }
  return d;
}

function argmin(d: Float64Array): number {
  let best = 0;
  for (let k = 1; k < d.length; k += 1) if ((d[k] as number) < (d[best] as number)) best = k;
  return best;
}

/**
 * Checks `codes` against greedy nearest-codeword on the float64 latent z: every item either matches,
 * or diverges first at a level where its choice is a near tie of the reference residual's best.
 * @returns the number of items that differ
 */
function checkAgainstGreedy(z: Float64Array, n: number, books: Float32Array, levels: number, size: number, e: number, codes: Int32Array): number {
  const { rtol, atol } = tolerances.tokenizer.nearTie;
  let differ = 0;
  for (let i = 0; i < n; i += 1) {
    const r = z.slice(i * e, (i + 1) * e);
    for (let l = 0; l < levels; l += 1) {
      const d = distances(r, books, l, size, e);
      const ref = argmin(d);
      const got = codes[i * levels + l] as number;
      assert.ok(got >= 0 && got < size, `item ${i} level ${l}: code ${got} out of range`);
      if (got !== ref) {
        const best = d[ref] as number;
        assert.ok((d[got] as number) <= best * (1 + rtol) + atol, `item ${i} level ${l}: code ${got} (distance ${d[got]}) is not a near tie of the nearest ${ref} (${best})`);
        differ += 1;
        break;
      }
      for (let j = 0; j < e; j += 1) r[j] = (r[j] as number) - (books[(l * size + ref) * e + j] as number);
    }
  }
  return differ;
}

function sha256(file: string): string {
  return createHash('sha256').update(fs.readFileSync(file)).digest('hex');
}

/** Codebooks shaped like the data: level l's codewords are residual rows of a sample, as a k-means init would start. */
function dataShapedCodebooks(rng: Rng, encoder: Layer[], inputDim: number, levels: number, size: number, e: number): Float32Array {
  const sample = 2 * size;
  const r = mlp64(encoder, rng.gaussian(sample * inputDim), sample);
  const books = new Float32Array(levels * size * e);
  for (let l = 0; l < levels; l += 1) {
    for (let k = 0; k < size; k += 1) {
      const row = rng.int(sample);
      for (let j = 0; j < e; j += 1) books[(l * size + k) * e + j] = (r[row * e + j] as number) + rng.normal() * 1e-3;
    }
    for (let i = 0; i < sample; i += 1) {
      const ri = r.subarray(i * e, (i + 1) * e);
      const best = argmin(distances(ri, books, l, size, e));
      for (let j = 0; j < e; j += 1) ri[j] = (ri[j] as number) - (books[(l * size + best) * e + j] as number);
    }
  }
  return books;
}

async function writeFixture(
  dir: string,
  spec: { modalities: Array<{ name: TokenizerModalityName; inputDim: number; hidden: number[] }>; levels: number; codes: number; codeDim: number; seed: number },
): Promise<Fixture> {
  fs.mkdirSync(dir, { recursive: true });
  const rng = new Rng(spec.seed);
  const tensors: NamedTensor[] = [];
  const modalities: ModalityFixture[] = [];
  for (const m of spec.modalities) {
    const dims = [m.inputDim, ...m.hidden, spec.codeDim];
    const encoder: Layer[] = [];
    for (const [part, chain] of [['encoder', dims], ['decoder', dims.slice().reverse()]] as const) {
      for (let i = 0; i + 1 < chain.length; i += 1) {
        const inDim = chain[i]!, outDim = chain[i + 1]!;
        const weight = rng.gaussian(outDim * inDim, Math.sqrt(2 / (inDim + outDim)));
        const bias = rng.gaussian(outDim, 0.1);
        tensors.push({ name: `${m.name}.${part}.${i}.weight`, shape: [outDim, inDim], data: weight }, { name: `${m.name}.${part}.${i}.bias`, shape: [outDim], data: bias });
        if (part === 'encoder') encoder.push({ weight, bias, inDim, outDim });
      }
    }
    const codebooks = dataShapedCodebooks(rng, encoder, m.inputDim, spec.levels, spec.codes, spec.codeDim);
    tensors.push({ name: `${m.name}.codebooks`, shape: [spec.levels, spec.codes, spec.codeDim], data: codebooks });
    modalities.push({ ...m, encoder, codebooks });
  }
  const weights = path.join(dir, 'tokenizer.safetensors');
  await saveTensors(weights, tensors);
  writeManifest(dir, {
    modalities: spec.modalities.map((m): TokenizerManifestModality => ({ name: m.name, inputDim: m.inputDim, hidden: m.hidden })),
    levels: spec.levels,
    codes: spec.codes,
    codeDim: spec.codeDim,
    weightsSha256: sha256(weights),
  });
  return { dir, levels: spec.levels, codes: spec.codes, codeDim: spec.codeDim, modalities, tensors };
}

function writeManifest(dir: string, fields: Record<string, unknown>): void {
  const manifest = {
    format: TOKENIZER_FORMAT,
    version: 1,
    weights: 'tokenizer.safetensors',
    numItems: 100,
    settings: { recon: 'mmd', align: 'infonce', reconWeight: 3, alignWeight: 0.01, beta: 0.01, sinkhorn: { levels: [3], epsilon: 0.003, iterations: 50 }, kmeansInit: 'plain', lr: 1e-3, weightDecay: 1e-4, batchSize: 1024, epochs: 200, patience: 20, seed: 1 },
    ...fields,
  };
  fs.writeFileSync(path.join(dir, 'tokenizer.json'), `${JSON.stringify(manifest, null, 2)}\n`);
}

function readManifest(dir: string): Record<string, unknown> {
  return JSON.parse(fs.readFileSync(path.join(dir, 'tokenizer.json'), 'utf8')) as Record<string, unknown>;
}

/** Reads an int32 2-D .npy written by NpyWriter. */

/** Runs `mmesid tokenize ARGS` in this process through a fresh commander program; returns the --json report. */
async function cli(...args: string[]): Promise<TokenizeReport> {
  const program = new Command().exitOverride();
  registerTokenizeCommand(program);
  const lines: string[] = [];
  const log = console.log;
  console.log = (...parts: unknown[]) => void lines.push(parts.map(String).join(' '));
  try {
    await program.parseAsync(['tokenize', ...args, '--json'], { from: 'user' });
  } finally {
    console.log = log;
  }
  assert.equal(lines.length, 1, 'one JSON document on stdout');
  return JSON.parse(lines[0]!) as TokenizeReport;
}


const isInvalid = (argument: string, pattern: RegExp) => (e: unknown) => {
  assert.ok(e instanceof InvalidArgumentError, String(e));
  assert.equal(e.code, 'ERR_MMESID_INVALID_ARGUMENT');
  assert.equal(e.argument, argument);
  assert.match(e.message, pattern);
  return true;
};

const isDataFormat = (file: string, pattern: RegExp) => (e: unknown) => {
  assert.ok(e instanceof DataFormatError, String(e));
  assert.equal(e.code, 'ERR_MMESID_DATA_FORMAT');
  assert.equal(e.file, file);
  assert.match(e.message, pattern);
  return true;
};

// ---------------------------------------------------------------------------------------------------

describe('tokenizer service', function () {
  let root: string;
  let three: Fixture;
  let single: Fixture;

  before(async () => {
    root = fs.mkdtempSync(path.join(os.tmpdir(), 'mmesid-tokenizer-'));
    three = await writeFixture(path.join(root, 'three'), {
      modalities: [
        { name: 'collab', inputDim: 24, hidden: [48, 32] },
        { name: 'text', inputDim: 40, hidden: [32] },
        { name: 'visual', inputDim: 12, hidden: [] },
      ],
      levels: 4,
      codes: 64,
      codeDim: 16,
      seed: 1,
    });
    single = await writeFixture(path.join(root, 'single'), { modalities: [{ name: 'collab', inputDim: 64, hidden: [256, 128] }], levels: 4, codes: 256, codeDim: 64, seed: 2 });
  });

  after(() => fs.rmSync(root, { recursive: true, force: true }));

  describe('Tokenizer.load / encode', () => {
    it('loads the manifest and reports the modalities', async () => {
      const tok = await Tokenizer.load(three.dir);
      try {
        assert.deepEqual(
          tok.modalities.map((m) => [m.name, m.inputDim, m.hidden, m.codeDim, m.levels, m.codes]),
          [
            ['collab', 24, [48, 32], 16, 4, 64],
            ['text', 40, [32], 16, 4, 64],
            ['visual', 12, [], 16, 4, 64],
          ],
        );
        assert.equal(tok.levels, 4);
        assert.equal(tok.codes, 64);
        assert.ok(tok.nativeBytes > 0);
      } finally {
        tok.dispose();
      }
    });

    for (const which of ['three', 'single'] as const) {
      it(`encode equals the float64 TypeScript reference and kernels.rqEncode on the latent (${which})`, async () => {
        const fx = which === 'three' ? three : single;
        const tok = await Tokenizer.load(fx.dir);
        try {
          const rng = new Rng(which === 'three' ? 10 : 20);
          const n = which === 'three' ? 700 : 1500;
          const input: Partial<Record<TokenizerModalityName, Float32Array>> = {};
          for (const m of fx.modalities) input[m.name] = rng.gaussian(n * m.inputDim);
          const codes = await tok.encode(input, { batchRows: 333 });
          for (const m of fx.modalities) {
            const got = codes[m.name]!;
            assert.equal(got.length, n * fx.levels);
            const z = mlp64(m.encoder, input[m.name]!, n);
            const differ = checkAgainstGreedy(z, n, m.codebooks, fx.levels, fx.codes, fx.codeDim, got);
            assert.ok(differ <= Math.ceil(n * tolerances.tokenizer.maxCodeMismatchRate), `${m.name}: ${differ} of ${n} items differ from the float64 reference`);
            // The RQ kernel on the TS-computed latent (rounded to float32) agrees the same way.
            const viaKernel = await kernels.rqEncode({ x: Float32Array.from(z), dim: fx.codeDim, codebooks: m.codebooks, levels: fx.levels, codes: fx.codes });
            let mismatched = 0;
            for (let i = 0; i < n; i += 1) {
              if (!got.subarray(i * fx.levels, (i + 1) * fx.levels).every((c, l) => c === viaKernel.codes[i * fx.levels + l])) mismatched += 1;
            }
            assert.ok(mismatched <= Math.ceil(n * tolerances.tokenizer.maxCodeMismatchRate), `${m.name}: ${mismatched} of ${n} items differ from kernels.rqEncode(z)`);
            // And the native naive references.
            const reference = await tok._encodeReference(m.name, input[m.name]!);
            assert.equal(checkAgainstGreedy(z, n, m.codebooks, fx.levels, fx.codes, fx.codeDim, reference) <= Math.ceil(n * tolerances.tokenizer.maxCodeMismatchRate), true);
          }
        } finally {
          tok.dispose();
        }
      });
    }

    it('codes are identical to the libtorch path (mmesid_torch.node tokenizerEncode: at::addmm + ReLU, rq_encode)', async function () {
      if (!hasTorch()) return this.skip();
      // The trainer's inference export; typed locally so this test only depends on its documented call shape.
      const addon = torch() as unknown as { tokenizerEncode?: (o: Record<string, unknown>) => Promise<number> };
      if (typeof addon.tokenizerEncode !== 'function') return this.skip();
      for (const fx of [single, three]) {
        const tok = await Tokenizer.load(fx.dir);
        try {
          const rng = new Rng(30);
          for (const m of fx.modalities) {
            const n = 2500;
            const x = rng.gaussian(n * m.inputDim);
            const ours = (await tok.encode({ [m.name]: x }))[m.name]!;
            const theirs = new Int32Array(n * fx.levels);
            await addon.tokenizerEncode({
              weights: fx.tensors,
              levels: fx.levels,
              codebookSize: fx.codes,
              codeDim: fx.codeDim,
              modalities: fx.modalities.map((f) => ({ name: f.name, inputDim: f.inputDim, hidden: f.hidden })),
              modality: m.name,
              x,
              n,
              codes: theirs,
            });
            assert.deepEqual(ours, theirs, `${m.name}: codes differ from the libtorch path`);
          }
        } finally {
          tok.dispose();
        }
      }
    });

    it('loads and encodes inside a worker_thread (same codes; the thread may exit without dispose)', async () => {
      const x = new Rng(31).gaussian(300 * 64);
      const tok = await Tokenizer.load(single.dir);
      const main = await tok.encode({ collab: x });
      tok.dispose();
      const service = path.resolve(__dirname, '..', '..', 'lib', 'tokenizer', 'service.ts');
      const source = `
        require('ts-node/register/transpile-only');
        const { parentPort, workerData } = require('node:worker_threads');
        const { Tokenizer } = require(${JSON.stringify(service)});
        Tokenizer.load(workerData.dir)
          .then((tok) => tok.encode({ collab: workerData.x }))
          .then((codes) => parentPort.postMessage(codes.collab), (e) => parentPort.postMessage({ error: String(e) }));
      `;
      const worker = new Worker(source, { eval: true, workerData: { dir: single.dir, x } });
      const fromWorker = await new Promise<unknown>((resolve, reject) => {
        worker.once('message', resolve);
        worker.once('error', reject);
      });
      await worker.terminate();
      assert.deepEqual(fromWorker, main.collab);
    });

    it('codes do not depend on batchRows or threads', async () => {
      const tok = await Tokenizer.load(single.dir);
      try {
        const x = new Rng(3).gaussian(3000 * 64);
        const a = await tok.encode({ collab: x }, { batchRows: 4096, threads: 1 });
        const b = await tok.encode({ collab: x }, { batchRows: 97, threads: 2 });
        const c = await tok.encode({ collab: x }, { batchRows: 1, threads: 0 });
        assert.deepEqual(b.collab, a.collab);
        assert.deepEqual(c.collab, a.collab);
      } finally {
        tok.dispose();
      }
    });

    it('handles empty inputs and omitted modalities', async () => {
      const tok = await Tokenizer.load(three.dir);
      try {
        const out = await tok.encode({ text: new Float32Array(0) });
        assert.deepEqual(Object.keys(out), ['text']);
        assert.equal(out.text!.length, 0);
        assert.deepEqual(await tok.encode({}), {});
      } finally {
        tok.dispose();
      }
    });

    it('many concurrent encodes on one handle equal the serial results', async () => {
      const tok = await Tokenizer.load(three.dir);
      try {
        const rng = new Rng(4);
        const inputs = Array.from({ length: 24 }, (_, i) => ({ collab: rng.gaussian((50 + 13 * i) * 24), text: rng.gaussian((50 + 13 * i) * 40) }));
        const serial = [];
        for (const input of inputs) serial.push(await tok.encode(input, { batchRows: 64 }));
        const parallel = await Promise.all(inputs.map((input) => tok.encode(input, { batchRows: 64, threads: 1 })));
        assert.deepEqual(parallel, serial);
      } finally {
        tok.dispose();
      }
    });

    it('dispose while encodes run lets them finish; encode after dispose rejects clearly; dispose is idempotent', async () => {
      const tok = await Tokenizer.load(single.dir);
      const x = new Rng(5).gaussian(20000 * 64);
      const expected = await tok.encode({ collab: x.subarray(0, 4096 * 64) });
      const running = Array.from({ length: 4 }, () => tok.encode({ collab: x.subarray(0, 4096 * 64) }, { batchRows: 4096 }));
      tok.dispose();
      for (const r of await Promise.all(running)) assert.deepEqual(r.collab, expected.collab);
      assert.equal(tok.disposed, true);
      assert.equal(tok.nativeBytes, 0);
      await assert.rejects(tok.encode({ collab: x }), isInvalid('tokenizer', /disposed/));
      tok.dispose();
      // A multi-batch encode cut by dispose stops at its next batch with the same error.
      const tok2 = await Tokenizer.load(single.dir);
      const cut = tok2.encode({ collab: x }, { batchRows: 1000 });
      tok2.dispose();
      await assert.rejects(cut, isInvalid('tokenizer', /disposed/));
    });

    it('rejects bad inputs: unknown modality, wrong dims, NaN/Inf rows (named), bad options, cancellation', async () => {
      const tok = await Tokenizer.load(three.dir);
      const one = await Tokenizer.load(single.dir);
      try {
        await assert.rejects(one.encode({ text: new Float32Array(40) }), isInvalid('input.text', /this tokenizer encodes collab/));
        await assert.rejects(tok.encode({ collab: new Float32Array(25) }), isInvalid('input.collab', /multiple of 24/));
        await assert.rejects(tok.encode({ collab: [1, 2] as unknown as Float32Array }), isInvalid('input.collab', /Float32Array/));
        await assert.rejects(tok.encode(null as unknown as Record<string, Float32Array>), isInvalid('input', /options object/));
        await assert.rejects(tok.encode({ collab: new Float32Array(24) }, { threads: -1 }), isInvalid('options.threads', /integer/));
        await assert.rejects(tok.encode({ collab: new Float32Array(24) }, { batchRows: 0 }), isInvalid('options.batchRows', /integer/));
        const x = new Rng(6).gaussian(500 * 24);
        x[317 * 24 + 5] = NaN;
        await assert.rejects(tok.encode({ collab: x }, { batchRows: 100 }), isInvalid('input.collab', /finite values .*NaN at row 317, column 5/));
        await assert.rejects(tok.encode({ collab: x }, { batchRows: 100, firstRow: 1000 }), isInvalid('input.collab', /NaN at row 1317, column 5/));
        const v = new Rng(7).gaussian(10 * 12);
        v[3 * 12] = -Infinity;
        await assert.rejects(tok.encode({ visual: v }), isInvalid('input.visual', /-Infinity at row 3, column 0/));
        // Finite inputs that overflow float32 inside the MLP: a native error naming the row, never NaN codes.
        const huge = new Float32Array(2 * 24).fill(3e38);
        await assert.rejects(tok.encode({ collab: huge }), (e: unknown) => {
          assert.match(String((e as Error).message), /overflowed float32/);
          return true;
        });
        const ac = new AbortController();
        ac.abort();
        await assert.rejects(tok.encode({ collab: new Float32Array(24) }, { signal: ac.signal }), (e: unknown) => e instanceof CancelledError);
      } finally {
        tok.dispose();
        one.dispose();
      }
    });
  });

  describe('Tokenizer.load rejects a bad folder, naming the file', () => {
    let n = 0;
    /** A copy of the single-modality fixture to damage. */
    function copy(): string {
      const dir = path.join(root, `bad-${(n += 1)}`);
      fs.cpSync(single.dir, dir, { recursive: true });
      return dir;
    }
    async function rewriteWeights(dir: string, tensors: NamedTensor[]): Promise<void> {
      const file = path.join(dir, 'tokenizer.safetensors');
      await saveTensors(file, tensors);
      writeManifest(dir, { ...readManifest(dir), weightsSha256: sha256(file) });
    }

    it('missing folder, tokenizer.json or weights → InvalidArgumentError naming the file', async () => {
      const missing = path.join(root, 'nowhere');
      await assert.rejects(Tokenizer.load(missing), isInvalid('dir', new RegExp(`${path.join(missing, 'tokenizer.json').replace(/[.*+?^${}()|[\]\\]/g, '\\$&')} does not exist`)));
      const dir = copy();
      fs.rmSync(path.join(dir, 'tokenizer.safetensors'));
      await assert.rejects(Tokenizer.load(dir), isInvalid('dir', /tokenizer\.safetensors does not exist/));
      await assert.rejects(Tokenizer.load(''), isInvalid('dir', /folder path/));
    });

    it('malformed manifests → DataFormatError naming tokenizer.json', async () => {
      const cases: Array<[Record<string, unknown> | string, RegExp]> = [
        ['{ not json', /not valid JSON/],
        [{ format: 'other' }, /"format"/],
        [{ version: 2 }, /unsupported "version" 2/],
        [{ weights: '../x.safetensors' }, /"weights" must be a file name/],
        [{ levels: 0 }, /"levels" must be an integer >= 1/],
        [{ modalities: [] }, /"modalities" must be a non-empty array/],
        [{ modalities: [{ name: 'audio', inputDim: 64, hidden: [] }] }, /name must be one of collab, text, visual/],
        [{ modalities: [{ name: 'text', inputDim: 4, hidden: [] }, { name: 'collab', inputDim: 4, hidden: [] }] }, /in the order collab, text, visual/],
        [{ modalities: [{ name: 'collab', inputDim: 64, hidden: [256, 0] }] }, /hidden must be an array of integers >= 1/],
        [{ weightsSha256: 'abc' }, /"weightsSha256" must be 64 lowercase hex digits/],
      ];
      for (const [change, pattern] of cases) {
        const dir = copy();
        const file = path.join(dir, 'tokenizer.json');
        if (typeof change === 'string') fs.writeFileSync(file, change);
        else writeManifest(dir, { ...readManifest(dir), ...change });
        await assert.rejects(Tokenizer.load(dir), isDataFormat(file, pattern));
      }
    });

    it('weights that do not match weightsSha256 → DataFormatError naming the weights file', async () => {
      const dir = copy();
      const file = path.join(dir, 'tokenizer.safetensors');
      const bytes = fs.readFileSync(file);
      bytes[bytes.length - 3] = bytes[bytes.length - 3]! ^ 0x40;
      fs.writeFileSync(file, bytes);
      await assert.rejects(Tokenizer.load(dir), isDataFormat(file, /sha256 [0-9a-f]{64} does not match "weightsSha256"/));
    });

    it('a missing or mis-shaped tensor → DataFormatError naming the tensor and the weights file', async () => {
      const dir1 = copy();
      await rewriteWeights(dir1, single.tensors.filter((t) => t.name !== 'collab.encoder.1.bias'));
      await assert.rejects(Tokenizer.load(dir1), isDataFormat(path.join(dir1, 'tokenizer.safetensors'), /missing tensor "collab\.encoder\.1\.bias" \(shape \[128\]\)/));
      const dir2 = copy();
      await rewriteWeights(dir2, single.tensors.map((t) => (t.name === 'collab.codebooks' ? { ...t, shape: [4, 128, 128] } : t)));
      await assert.rejects(Tokenizer.load(dir2), isDataFormat(path.join(dir2, 'tokenizer.safetensors'), /tensor "collab\.codebooks" has shape \[4, 128, 128\] but .* implies \[4, 256, 64\]/));
      const dir3 = copy();
      await rewriteWeights(dir3, single.tensors.filter((t) => !t.name.startsWith('collab.decoder.2')));
      await assert.rejects(Tokenizer.load(dir3), isDataFormat(path.join(dir3, 'tokenizer.safetensors'), /missing tensor "collab\.decoder\.2\.weight"/));
    });

    it('a non-finite weight → DataFormatError naming the weights file and the layer', async () => {
      const dir = copy();
      await rewriteWeights(
        dir,
        single.tensors.map((t) => {
          if (t.name !== 'collab.encoder.1.weight') return t;
          const data = t.data.slice();
          data[77] = NaN;
          return { ...t, data };
        }),
      );
      await assert.rejects(Tokenizer.load(dir), isDataFormat(path.join(dir, 'tokenizer.safetensors'), /encoder layer 1 weight holds a non-finite value .* index 77/));
    });
  });

  describe('npyStream', () => {
    it('NpyRowReader streams f32 and f16 tables like loadNpy, in chunks and ranges', async () => {
      const dir = path.join(root, 'npy');
      fs.mkdirSync(dir, { recursive: true });
      const rows = 1001, dim = 7;
      const data = new Rng(8).gaussian(rows * dim);
      const f32 = path.join(dir, 'a.npy');
      await saveNpy(f32, rows, dim, data);
      // float16 twin written by hand: header '<f2' and rounded halves of small integers (exact).
      const halfValues = Float32Array.from({ length: rows * dim }, (_, i) => (i % 200) - 100);
      const f16 = path.join(dir, 'h.npy');
      const dict = `{'descr': '<f2', 'fortran_order': False, 'shape': (${rows}, ${dim}), }`;
      const total = Math.ceil((10 + dict.length + 1) / 64) * 64;
      const header = Buffer.alloc(total, 0x20);
      Buffer.from([0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59, 1, 0]).copy(header);
      header.writeUInt16LE(total - 10, 8);
      header.write(dict, 10, 'latin1');
      header[total - 1] = 0x0a;
      const halves = new Uint16Array(rows * dim);
      halfValues.forEach((v, i) => {
        // Exact f16 encoding of integers |v| <= 100.
        if (v === 0) return;
        const sign = v < 0 ? 0x8000 : 0;
        const a = Math.abs(v);
        const e = Math.floor(Math.log2(a));
        halves[i] = sign | ((e + 15) << 10) | Math.round((a / 2 ** e - 1) * 1024);
      });
      fs.writeFileSync(f16, Buffer.concat([header, Buffer.from(halves.buffer)]));
      for (const [file, expected] of [[f32, data], [f16, halfValues]] as const) {
        const reader = await NpyRowReader.open(file);
        try {
          assert.equal(reader.rows, rows);
          assert.equal(reader.dim, dim);
          const parts: Float32Array[] = [];
          for await (const chunk of reader.chunks(128)) {
            assert.equal(chunk.start, parts.length * 128);
            parts.push(chunk.data);
          }
          assert.equal(parts.length, Math.ceil(rows / 128));
          const all = new Float32Array(rows * dim);
          let at = 0;
          for (const p of parts) {
            all.set(p, at);
            at += p.length;
          }
          assert.deepEqual(all, expected);
          const mid = [];
          for await (const chunk of reader.chunks(50, { from: 300, to: 420 })) mid.push(chunk.rows);
          assert.deepEqual(mid, [50, 50, 20]);
          assert.deepEqual(await reader.read(999, 2), expected.subarray(999 * dim));
          await assert.rejects(reader.read(1000, 2), isInvalid('count', /integer in \[0, 1\]/));
        } finally {
          await reader.close();
        }
      }
      // Header validation like loadNpy.
      const bad = path.join(dir, 'bad.npy');
      fs.writeFileSync(bad, fs.readFileSync(f32).subarray(0, 200));
      await assert.rejects(NpyRowReader.open(bad), isDataFormat(bad, /truncated payload/));
      fs.writeFileSync(bad, Buffer.from('not numpy at all'));
      await assert.rejects(NpyRowReader.open(bad), isDataFormat(bad, /bad magic/));
      const loaded = await loadNpy(f32);
      assert.deepEqual(loaded.data, data);
    });

    it('NpyWriter writes int32 and float32 tables atomically; discard and short writes leave no file', async () => {
      const dir = path.join(root, 'npyw');
      fs.mkdirSync(dir, { recursive: true });
      const file = path.join(dir, 'sids.npy');
      const w = await NpyWriter.create(file, { dtype: 'int32', rows: 5, dim: 3 });
      await w.write(Int32Array.from([1, 2, 3, 4, 5, 6]));
      assert.equal(fs.existsSync(file), false, 'nothing at the target before finish');
      await w.write(Int32Array.from([7, 8, 9, 10, 11, 12, -1, -1, -1]));
      await assert.rejects(w.write(Int32Array.from([0, 0, 0])), isInvalid('chunk', /at most 0 more rows/));
      const sha = await w.finish();
      assert.equal(sha, sha256(file));
      assert.deepEqual(readInt32Npy(file), { rows: 5, dim: 3, data: Int32Array.from([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, -1, -1, -1]) });

      const f = path.join(dir, 'f.npy');
      const wf = await NpyWriter.create(f, { dtype: 'float32', rows: 2, dim: 2 });
      await assert.rejects(wf.write(Int32Array.from([1, 2])), isInvalid('chunk', /Float32Array/));
      await assert.rejects(wf.write(Float32Array.from([1, 2, 3])), isInvalid('chunk', /whole rows/));
      await wf.write(Float32Array.from([1.5, 2, 3, 4]));
      await wf.finish();
      assert.deepEqual((await loadNpy(f)).data, Float32Array.from([1.5, 2, 3, 4]));

      const gone = path.join(dir, 'gone.npy');
      const wd = await NpyWriter.create(gone, { dtype: 'int32', rows: 10, dim: 1 });
      await wd.write(new Int32Array(4));
      await wd.discard();
      await wd.discard();
      assert.equal(fs.existsSync(gone), false);
      const ws = await NpyWriter.create(gone, { dtype: 'int32', rows: 10, dim: 1 });
      await ws.write(new Int32Array(4));
      await assert.rejects(ws.finish(), /only 4 of 10 rows were written/);
      assert.equal(fs.existsSync(gone), false);
      assert.deepEqual(tempFiles(dir), []);
      // Header v2.0 when the dict does not fit v1.0 is exercised by shape; a large-shape header stays v1.0.
      await assert.rejects(NpyWriter.create(path.join(dir, 'x.npy'), { dtype: 'int64' as 'int32', rows: 1, dim: 1 }), isInvalid('options.dtype', /"int32" or "float32"/));
    });
  });

  describe('mmesid tokenize', () => {
    let input: string;
    let unsharded: Int32Array;
    const rows = 5003;

    before(async () => {
      input = path.join(root, 'items.npy');
      await saveNpy(input, rows, 64, new Rng(9).gaussian(rows * 64));
    });

    it('streams an input of many chunks; equals Tokenizer.encode; reports the memory bound', async () => {
      const out = path.join(root, 'sids.npy');
      const report = await cli('--tokenizer', single.dir, '--input', input, '--modality', 'collab', '--out', out, '--batch-rows', '512');
      assert.equal(report.rows, rows);
      assert.equal(report.batchRows, 512);
      assert.deepEqual(report.shard, { index: 0, count: 1, start: 0, end: rows });
      assert.equal(report.sha256, sha256(out));
      const written = readInt32Npy(out);
      assert.equal(written.rows, rows);
      assert.equal(written.dim, 4);
      const tok = await Tokenizer.load(single.dir);
      try {
        const { collab } = await tok.encode({ collab: (await loadNpy(input)).data });
        assert.deepEqual(written.data, collab);
        assert.ok(report.memoryBoundBytes >= tok.nativeBytes + 2 * 512 * 64 * 4);
      } finally {
        tok.dispose();
      }
      unsharded = written.data;
      assert.deepEqual(tempFiles(root), []);
    });

    it('--shard 0/3, 1/3, 2/3 concatenated equal the unsharded output', async () => {
      const parts: Int32Array[] = [];
      for (let i = 0; i < 3; i += 1) {
        const out = path.join(root, `sids.${i}.npy`);
        const report = await cli('--tokenizer', single.dir, '--input', input, '--modality', 'collab', '--out', out, '--shard', `${i}/3`, '--batch-rows', '700', '--threads', '1');
        assert.deepEqual(report.shard, { index: i, count: 3, ...shardRange(rows, { index: i, count: 3 }) });
        parts.push(readInt32Npy(out).data);
      }
      const joined = new Int32Array(parts.reduce((s, p) => s + p.length, 0));
      let at = 0;
      for (const p of parts) {
        joined.set(p, at);
        at += p.length;
      }
      assert.deepEqual(joined, unsharded);
    });

    it('shard ranges tile the table; parseShard validates', () => {
      for (const total of [0, 1, 2, 7, 5003, 2 ** 40 + 3]) {
        for (const count of [1, 2, 3, 16]) {
          let expected = 0;
          for (let index = 0; index < count; index += 1) {
            const { start, end } = shardRange(total, { index, count });
            assert.equal(start, expected);
            assert.ok(end >= start);
            expected = end;
          }
          assert.equal(expected, total);
        }
      }
      assert.deepEqual(parseShard('2/5'), { index: 2, count: 5 });
      assert.throws(() => parseShard('5/5'), isInvalid('--shard', /0 <= i < n/));
      assert.throws(() => parseShard('1'), isInvalid('--shard', /0 <= i < n/));
      assert.equal(defaultBatchRows(64), 65536);
      assert.equal(defaultBatchRows(4096), 1024);
    });

    it('--item-table gives the padding row codes -1 and leaves it unencoded', async () => {
      const table = path.join(root, 'table.npy');
      const data = new Rng(10).gaussian(300 * 64);
      data.fill(NaN, 0, 64); // never read by the encoder
      await saveNpy(table, 300, 64, data);
      const out = path.join(root, 'sids.table.npy');
      await cli('--tokenizer', single.dir, '--input', table, '--modality', 'collab', '--out', out, '--item-table', '--batch-rows', '128');
      const written = readInt32Npy(out).data;
      assert.deepEqual(Array.from(written.subarray(0, 4)), [-1, -1, -1, -1]);
      assert.deepEqual(written.subarray(4), await encodeRows(data.subarray(64)));
    });

    async function encodeRows(x: Float32Array): Promise<Int32Array> {
      const tok = await Tokenizer.load(single.dir);
      try {
        return (await tok.encode({ collab: x })).collab!;
      } finally {
        tok.dispose();
      }
    }

    it('bad inputs fail with the file or row named and leave no output', async () => {
      const out = path.join(root, 'never.npy');
      await assert.rejects(cli('--tokenizer', single.dir, '--input', input, '--modality', 'text', '--out', out), isInvalid('--modality', /collab/));
      const narrow = path.join(root, 'narrow.npy');
      await saveNpy(narrow, 10, 32, new Float32Array(320));
      await assert.rejects(cli('--tokenizer', single.dir, '--input', narrow, '--modality', 'collab', '--out', out), isInvalid('--input', /\[rows, 64\].*narrow\.npy of shape \[10, 32\]/));
      const nan = path.join(root, 'nan.npy');
      const x = new Rng(11).gaussian(2000 * 64);
      x[1234 * 64 + 9] = Infinity;
      await saveNpy(nan, 2000, 64, x);
      await assert.rejects(cli('--tokenizer', single.dir, '--input', nan, '--modality', 'collab', '--out', out, '--batch-rows', '300'), isInvalid('--input', /Infinity at row 1234, column 9 of .*nan\.npy/));
      assert.equal(fs.existsSync(out), false);
      assert.deepEqual(tempFiles(root), []);
    });

    it('Ctrl-C (SIGINT) cancels and leaves no output file', async () => {
      const big = path.join(root, 'big.npy');
      await saveNpy(big, 200_000, 64, new Rng(12).gaussian(200_000 * 64));
      const out = path.join(root, 'interrupted.npy');
      const listeners = process.listenerCount('SIGINT');
      const run = cli('--tokenizer', single.dir, '--input', big, '--modality', 'collab', '--out', out, '--batch-rows', '256');
      // Interrupt once the temporary output exists (the run is under way).
      await new Promise<void>((resolve) => {
        const poll = setInterval(() => {
          if (tempFiles(root).length > 0) {
            clearInterval(poll);
            process.emit('SIGINT');
            resolve();
          }
        }, 2);
      });
      await assert.rejects(run, (e: unknown) => e instanceof CancelledError && e.code === 'ERR_MMESID_CANCELLED');
      assert.equal(fs.existsSync(out), false);
      assert.deepEqual(tempFiles(root), []);
      assert.equal(process.listenerCount('SIGINT'), listeners, 'the handler is removed');
      // Also through the API's signal, mid-stream.
      const ac = new AbortController();
      await assert.rejects(
        runTokenize({ tokenizer: single.dir, input: big, modality: 'collab', out, batchRows: 1000, progress: false, signal: ac.signal, onProgress: (done) => done >= 5000 && ac.abort() }),
        (e: unknown) => e instanceof CancelledError,
      );
      assert.equal(fs.existsSync(out), false);
      assert.deepEqual(tempFiles(root), []);
      fs.rmSync(big);
    });

    it('resident memory stays bounded while streaming a file 20× the chunk size', async () => {
      const dim = 256, batchRows = 4096;
      const total = 20 * batchRows;
      const file = path.join(root, 'large.npy');
      const writer = await NpyWriter.create(file, { dtype: 'float32', rows: total, dim });
      const rng = new Rng(13);
      for (let i = 0; i < 20; i += 1) await writer.write(rng.gaussian(batchRows * dim));
      await writer.finish();
      const dir = path.join(root, 'wide');
      await writeFixture(dir, { modalities: [{ name: 'collab', inputDim: dim, hidden: [128] }], levels: 4, codes: 64, codeDim: 32, seed: 14 });
      const out = path.join(root, 'large.sids.npy');
      // Warm-up run: first-use costs (thread pools, BLAS buffers, code) are not streaming growth.
      await runTokenize({ tokenizer: dir, input: file, modality: 'collab', out, batchRows, progress: false });
      global.gc?.();
      const before = process.memoryUsage().rss;
      let peak = before;
      const report = await runTokenize({ tokenizer: dir, input: file, modality: 'collab', out, batchRows, progress: false, onProgress: () => void (peak = Math.max(peak, process.memoryUsage().rss)) });
      const growth = peak - before;
      const bound = report.memoryBoundBytes + tolerances.tokenizer.rssSlackBytes;
      assert.ok(growth <= bound, `RSS grew ${(growth / 1048576).toFixed(1)} MiB > bound ${(bound / 1048576).toFixed(1)} MiB`);
      assert.ok(bound < total * dim * 4, 'the bound is well below the file size (the test means something)');
      assert.equal(report.rows, total);
      fs.rmSync(file);
    });
  });
});
