/**
 * Embedding-table I/O: the real SASRec table, f16/bf16 widening against an independent formula (all
 * 65,536 halves), every npy header version, safetensors, every malformed-file rejection (file + byte
 * offset + problem), the item-table rule, and the atomic npy writer.
 */
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

import { DataFormatError, InvalidArgumentError } from '../../lib/errors';
import { loadEmbeddings, loadNpy, loadSafetensors, loadTensors, saveNpy, saveTensors, validateItemTable } from '../../lib/data/embeddings';

const sasrec = path.resolve(__dirname, '..', '..', '..', 'shared', 'data', 'beauty', 'sasrec_item_emb.npy');

/** An npy file's bytes, built by hand (the writer under test is not used to make reader fixtures). */
function npyBytes(dict: string, payload: Uint8Array, major = 1): Buffer {
  const prefix = major === 1 ? 10 : 12;
  const encoded = Buffer.from(dict, major === 3 ? 'utf8' : 'latin1');
  const total = Math.ceil((prefix + encoded.length + 1) / 64) * 64;
  const header = Buffer.alloc(total, 0x20);
  Buffer.from([0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59, major, 0]).copy(header);
  if (major === 1) header.writeUInt16LE(total - prefix, 8);
  else header.writeUInt32LE(total - prefix, 8);
  encoded.copy(header, prefix);
  header[total - 1] = 0x0a;
  return Buffer.concat([header, payload]);
}

const dictOf = (descr: string, shape: string, fortran = 'False'): string => `{'descr': '${descr}', 'fortran_order': ${fortran}, 'shape': ${shape}, }`;

/** A safetensors file's bytes from header entries and a data section. */
function safetensorsBytes(header: unknown, data: Uint8Array, headerText = JSON.stringify(header)): Buffer {
  const json = Buffer.from(headerText, 'utf8');
  const prefix = Buffer.alloc(8);
  prefix.writeBigUInt64LE(BigInt(json.length));
  return Buffer.concat([prefix, json, data]);
}

const bytesOf = (a: ArrayBufferView): Uint8Array => new Uint8Array(a.buffer, a.byteOffset, a.byteLength);

/** An independent f16 decoder: the IEEE 754 binary16 formula. */
function halfValue(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const e = (h >> 10) & 0x1f;
  const m = h & 0x3ff;
  if (e === 0) return sign * m * 2 ** -24;
  if (e === 31) return m === 0 ? sign * Infinity : NaN;
  return sign * (1 + m / 1024) * 2 ** (e - 15);
}

describe('data: embedding tables', () => {
  let dir: string;
  before(() => (dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mmesid-emb-'))));
  after(() => fs.rmSync(dir, { recursive: true, force: true }));

  const write = (name: string, bytes: Uint8Array): string => {
    const file = path.join(dir, name);
    fs.writeFileSync(file, bytes);
    return file;
  };

  it('reads the real SASRec table: float32 [12087, 64], bytes identical to the file\'s payload', async () => {
    assert.ok(fs.existsSync(sasrec), `the shared Beauty data is missing: ${sasrec} (see ../shared/data/README.md)`);
    const table = await loadNpy(sasrec);
    assert.deepEqual([table.rows, table.dim, table.data.length, table.storedDtype, table.format], [12087, 64, 12087 * 64, 'f32', 'npy']);
    const raw = fs.readFileSync(sasrec);
    const headerEnd = raw.length - 12087 * 64 * 4;
    assert.ok(Buffer.from(bytesOf(table.data)).equals(raw.subarray(headerEnd)));
    validateItemTable(table, 12086, 'SASRec item embeddings');
    const viaAuto = await loadEmbeddings(sasrec);
    assert.deepEqual([viaAuto.rows, viaAuto.dim], [12087, 64]);
  });

  it('widens every float16 value exactly (all 65,536 bit patterns, npy v1.0, v2.0 and v3.0)', async () => {
    const halves = new Uint16Array(65536).map((_, i) => i);
    for (const major of [1, 2, 3]) {
      const file = write(`all_f16_v${major}.npy`, npyBytes(dictOf('<f2', '(256, 256)'), bytesOf(halves), major));
      const table = await loadNpy(file);
      assert.deepEqual([table.rows, table.dim, table.storedDtype], [256, 256, 'f16']);
      for (let h = 0; h < 65536; h += 1) {
        const expected = halfValue(h);
        if (Number.isNaN(expected)) assert.ok(Number.isNaN(table.data[h]), `half 0x${h.toString(16)}`);
        else assert.ok(Object.is(table.data[h], expected), `half 0x${h.toString(16)}: ${table.data[h]} vs ${expected}`);
      }
    }
  });

  it('reads safetensors F32, F16 and BF16 tensors by name, skipping __metadata__', async () => {
    const f32 = Float32Array.from([1.5, -2, 3.25, 0, 1e-3, 7]);
    const f16 = Uint16Array.from([0x3c00, 0xc000, 0x0001, 0x7bff]); // 1, -2, 2^-24, 65504
    const bf16 = Uint16Array.from([0x3f80, 0xc020, 0x4049, 0x0001, 0xff80, 0x7f7f]);
    const data = Buffer.concat([bytesOf(f32), bytesOf(f16), bytesOf(bf16)]);
    const header = {
      __metadata__: { format: 'pt' },
      a: { dtype: 'F32', shape: [2, 3], data_offsets: [0, 24] },
      b: { dtype: 'F16', shape: [2, 2], data_offsets: [24, 32] },
      c: { dtype: 'BF16', shape: [3, 2], data_offsets: [32, 44] },
    };
    const file = write('three.safetensors', safetensorsBytes(header, data));
    const a = await loadSafetensors(file, { tensor: 'a' });
    assert.deepEqual([a.rows, a.dim, a.tensor, Array.from(a.data)], [2, 3, 'a', Array.from(f32)]);
    const b = await loadEmbeddings(file, { tensor: 'b' });
    assert.deepEqual([b.format, b.storedDtype, Array.from(b.data)], ['safetensors', 'f16', [1, -2, 2 ** -24, 65504]]);
    const c = await loadSafetensors(file, { tensor: 'c' });
    const view = new DataView(new ArrayBuffer(4));
    const expected = Array.from(bf16, (h) => {
      view.setUint32(0, h << 16);
      return view.getFloat32(0);
    });
    assert.deepEqual(Array.from(c.data), expected);
    assert.equal(c.data[4], -Infinity);

    const single = write('single.safetensors', safetensorsBytes({ only: { dtype: 'F32', shape: [1, 2], data_offsets: [0, 8] } }, bytesOf(Float32Array.from([4, 5]))));
    assert.deepEqual(Array.from((await loadSafetensors(single)).data), [4, 5]);
  });

  it('lists the tensor names when the name is missing (several tensors) or wrong', async () => {
    const header = { x: { dtype: 'F32', shape: [1, 1], data_offsets: [0, 4] }, y: { dtype: 'F32', shape: [1, 1], data_offsets: [4, 8] } };
    const file = write('two.safetensors', safetensorsBytes(header, new Uint8Array(8)));
    for (const options of [undefined, { tensor: 'z' }]) {
      await assert.rejects(loadSafetensors(file, options), (e: unknown) => {
        assert.ok(e instanceof InvalidArgumentError, String(e));
        assert.match(e.message, /options\.tensor/);
        assert.match(e.message, /"x", "y"/);
        return true;
      });
    }
  });

  const f32Payload = (n: number): Uint8Array => bytesOf(new Float32Array(n).map((_, i) => i));
  const good = npyBytes(dictOf('<f4', '(2, 3)'), f32Payload(6));
  const npyCases: [string, Buffer, number, RegExp][] = [
    ['bad magic', Buffer.concat([Buffer.from('XNUMPY'), good.subarray(6)]), 0, /bad magic/],
    ['tiny file', good.subarray(0, 4), 0, /bad magic/],
    ['version 4.0', Buffer.concat([good.subarray(0, 6), Buffer.from([4, 0]), good.subarray(8)]), 6, /unsupported npy format version 4\.0/],
    ['float64', npyBytes(dictOf('<f8', '(2, 3)'), f32Payload(12)), 10, /unsupported dtype "<f8"/],
    ['big-endian', npyBytes(dictOf('>f4', '(2, 3)'), f32Payload(6)), 10, /unsupported dtype ">f4"/],
    ['fortran order', npyBytes(dictOf('<f4', '(2, 3)', 'True'), f32Payload(6)), 10, /unsupported order: fortran_order is True/],
    ['rank 1', npyBytes(dictOf('<f4', '(6,)'), f32Payload(6)), 10, /unsupported rank 1/],
    ['rank 3', npyBytes(dictOf('<f4', '(1, 2, 3)'), f32Payload(6)), 10, /unsupported rank 3/],
    ['truncated payload', good.subarray(0, good.length - 5), good.length - 5, /truncated payload: shape \[2, 3\] f32 needs 24 bytes/],
    ['trailing bytes', Buffer.concat([good, Buffer.from([1, 2])]), good.length, /2 unexpected bytes after the payload/],
    ['broken header', npyBytes("{'descr': '<f4', 'fortran_order': Fal", f32Payload(6)), 10 + 34, /npy header has a value that is not/],
    ['header past end', good.subarray(0, 40), 40, /file ends inside the npy header/],
  ];
  for (const [name, bytes, offset, problem] of npyCases) {
    it(`npy: rejects ${name}: DataFormatError with file, byte ${offset} and the problem`, async () => {
      const file = write(`${name.replace(/ /g, '_')}.npy`, bytes);
      for (const load of [loadNpy, loadEmbeddings]) {
        if (load === loadEmbeddings && /magic|tiny/.test(name)) continue; // not npy → read as safetensors
        await assert.rejects(load(file), (e: unknown) => {
          assert.ok(e instanceof DataFormatError, String(e));
          assert.equal(e.code, 'ERR_MMESID_DATA_FORMAT');
          assert.equal(e.file, file);
          assert.equal(e.offset, offset, e.message);
          assert.match(e.problem, problem);
          assert.ok(e.message.startsWith(`${file}: byte ${offset}: `), e.message);
          return true;
        });
      }
    });
  }

  const entry = { t: { dtype: 'F32', shape: [2, 2], data_offsets: [0, 16] } };
  const data16 = f32Payload(4);
  const hugeLength = Buffer.alloc(16);
  hugeLength.writeBigUInt64LE(1n << 40n);
  // The header JSON of the two data_offsets cases is 57 bytes: the data section starts at byte 8 + 57.
  const stCases: [string, Buffer, number, RegExp][] = [
    ['short file', Buffer.from([1, 2, 3]), 3, /file ends inside the safetensors header length/],
    ['huge header length', hugeLength, 0, /header length 1099511627776 exceeds/],
    ['header past end', safetensorsBytes(entry, data16).subarray(0, 20), 0, /runs past the end of the file/],
    ['not an object', safetensorsBytes(null, data16, '[1, 2]'), 8, /does not start with "\{"/],
    ['broken JSON', safetensorsBytes(null, data16, '{"t": {"dtype": "F32",'), 8, /not valid JSON/],
    ['unsupported dtype', safetensorsBytes({ t: { dtype: 'I64', shape: [2, 1], data_offsets: [0, 16] } }, data16), 8, /unsupported dtype "I64"/],
    ['rank 3', safetensorsBytes({ t: { dtype: 'F32', shape: [1, 2, 2], data_offsets: [0, 16] } }, data16), 8, /unsupported rank 3/],
    ['bad shape', safetensorsBytes({ t: { dtype: 'F32', shape: [2, -2], data_offsets: [0, 16] } }, data16), 8, /shape is not a list/],
    ['bad offsets', safetensorsBytes({ t: { dtype: 'F32', shape: [2, 2], data_offsets: [16, 0] } }, data16), 8, /data_offsets is not a pair/],
    ['offsets span', safetensorsBytes({ t: { dtype: 'F32', shape: [2, 2], data_offsets: [0, 12] } }, data16), 8 + 57 + 0, /span 12 bytes but shape \[2, 2\] F32 needs 16/],
    ['offsets out of range', safetensorsBytes({ t: { dtype: 'F32', shape: [2, 2], data_offsets: [8, 24] } }, data16), 8 + 57 + 16, /out of range/],
  ];
  for (const [name, bytes, offset, problem] of stCases) {
    it(`safetensors: rejects ${name}: DataFormatError with file, byte ${offset} and the problem`, async () => {
      const file = write(`${name.replace(/ /g, '_')}.safetensors`, bytes);
      await assert.rejects(loadSafetensors(file, { tensor: 't' }), (e: unknown) => {
        assert.ok(e instanceof DataFormatError, String(e));
        assert.equal(e.file, file);
        assert.equal(e.offset, offset, e.message);
        assert.match(e.problem, problem);
        assert.ok(e.message.startsWith(`${file}: byte ${offset}: `), e.message);
        return true;
      });
    });
  }

  it('a missing file rejects with the file system error; bad arguments throw InvalidArgumentError', async () => {
    await assert.rejects(loadNpy(path.join(dir, 'missing.npy')), { code: 'ENOENT' });
    await assert.rejects(loadEmbeddings(''), InvalidArgumentError);
    await assert.rejects(loadSafetensors(sasrec, { tensor: 3 as unknown as string }), InvalidArgumentError);
  });

  it('validateItemTable: numItems + 1 rows and finite values, naming the first bad row and column', () => {
    const table = { rows: 4, dim: 3, data: new Float32Array(12) };
    validateItemTable(table, 3, 'text embeddings');
    assert.throws(() => validateItemTable(table, 4, 'text embeddings'), (e: unknown) => {
      assert.ok(e instanceof InvalidArgumentError);
      assert.equal(e.message, 'Expected 5 rows (numItems + 1; row 0 is padding) for text embeddings but received 4 rows');
      return true;
    });
    table.data[2 * 3 + 1] = NaN;
    table.data[3 * 3 + 0] = Infinity;
    assert.throws(() => validateItemTable(table, 3, 'visual embeddings'), {
      message: 'Expected finite values for visual embeddings but received NaN at row 2, column 1',
    });
    assert.throws(() => validateItemTable({ rows: 4, dim: 3, data: new Float32Array(11) }, 3, 't'), /12 elements \(\[4, 3\]\)/);
  });

  it('saveNpy writes an npy v1.0 file (64-byte aligned header) that loads back bit-identically, replacing an old file', async () => {
    const file = path.join(dir, 'saved.npy');
    fs.writeFileSync(file, 'old contents');
    const data = new Float32Array(5 * 7).map((_, i) => Math.sin(i) * 1e3);
    data[3] = -0;
    await saveNpy(file, 5, 7, data);
    const raw = fs.readFileSync(file);
    assert.equal(raw[6], 1);
    assert.equal((raw.length - data.byteLength) % 64, 0);
    assert.match(raw.subarray(10, raw.length - data.byteLength).toString('latin1'), /^\{'descr': '<f4', 'fortran_order': False, 'shape': \(5, 7\), \} +\n$/);
    const back = await loadNpy(file);
    assert.deepEqual([back.rows, back.dim], [5, 7]);
    assert.ok(Buffer.from(bytesOf(back.data)).equals(Buffer.from(bytesOf(data))));
    // a view into a larger buffer writes only its own elements
    await saveNpy(file, 1, 7, data.subarray(7, 14));
    assert.deepEqual(Array.from((await loadNpy(file)).data), Array.from(data.subarray(7, 14)));
  });

  it('saveNpy is atomic: a failed write leaves neither a partial target nor a temporary file', async () => {
    const folder = fs.mkdtempSync(path.join(dir, 'atomic-'));
    const target = path.join(folder, 'table.npy');
    fs.mkdirSync(target); // rename onto a directory fails after the bytes were written
    await assert.rejects(saveNpy(target, 2, 2, new Float32Array(4)));
    assert.ok(fs.statSync(target).isDirectory());
    assert.deepEqual(fs.readdirSync(folder), ['table.npy']);
    await assert.rejects(saveNpy(path.join(folder, 'no-such-folder', 't.npy'), 1, 1, new Float32Array(1)), { code: 'ENOENT' });
    assert.deepEqual(fs.readdirSync(folder), ['table.npy']);
    await assert.rejects(saveNpy(path.join(folder, 'x.npy'), 2, 2, new Float32Array(3)), InvalidArgumentError);
    assert.deepEqual(fs.readdirSync(folder), ['table.npy']);
  });

  it('saveTensors writes F32 tensors of any rank with metadata; loadTensors and loadSafetensors read them back exactly', async () => {
    const file = path.join(dir, 'weights.safetensors');
    const tensors = [
      { name: 'scalar', shape: [], data: Float32Array.of(-0) },
      { name: 'bias', shape: [3], data: Float32Array.of(1, -2, 3.5) },
      { name: 'w', shape: [2, 3], data: new Float32Array(6).map((_, i) => Math.cos(i) * 1e-3) },
      { name: 'cube', shape: [2, 1, 2], data: Float32Array.of(Infinity, -Infinity, 7, 8) },
      { name: 'empty', shape: [0, 4], data: new Float32Array(0) },
    ];
    await saveTensors(file, tensors, { format: 'test', note: 'ünïcode' });
    const raw = fs.readFileSync(file);
    const headerLength = Number(raw.readBigUInt64LE(0));
    assert.equal(headerLength % 8, 0);
    const header = JSON.parse(raw.subarray(8, 8 + headerLength).toString('utf8')) as Record<string, { data_offsets?: number[] }>;
    assert.deepEqual(header.bias!.data_offsets, [4, 16]);
    const back = await loadTensors(file);
    assert.deepEqual(back.metadata, { format: 'test', note: 'ünïcode' });
    assert.deepEqual(back.tensors.map((t) => t.name), tensors.map((t) => t.name));
    back.tensors.forEach((t, i) => {
      assert.deepEqual(t.shape, tensors[i]!.shape);
      assert.ok(Buffer.from(bytesOf(t.data)).equals(Buffer.from(bytesOf(tensors[i]!.data))), t.name);
    });
    const table = await loadSafetensors(file, { tensor: 'w' });
    assert.deepEqual([table.rows, table.dim], [2, 3]);
    assert.deepEqual(Array.from(table.data), Array.from(tensors[2]!.data));
  });

  it('loadTensors widens F16/BF16 tensors and rejects a malformed entry with the byte offset', async () => {
    const f16 = Uint16Array.of(0x3c00, 0xc000); // 1, -2
    const bf16 = Uint16Array.of(0x3f80); // 1
    const file = write('mixed.safetensors', safetensorsBytes({ a: { dtype: 'F16', shape: [2], data_offsets: [0, 4] }, b: { dtype: 'BF16', shape: [1, 1], data_offsets: [4, 6] } }, Buffer.concat([bytesOf(f16), bytesOf(bf16)])));
    const back = await loadTensors(file);
    assert.deepEqual(back.tensors.map((t) => Array.from(t.data)), [[1, -2], [1]]);
    const bad = write('bad-shape.safetensors', safetensorsBytes({ a: { dtype: 'F32', shape: [3], data_offsets: [0, 8] } }, new Uint8Array(8)));
    await assert.rejects(loadTensors(bad), (e: unknown) => e instanceof DataFormatError && e.offset === 8 + Number(fs.readFileSync(bad).readBigUInt64LE(0)) && /span 8 bytes but shape \[3\] F32 needs 12/.test(e.message));
    const meta = write('bad-meta.safetensors', safetensorsBytes({ __metadata__: { n: 1 } }, new Uint8Array(0)));
    await assert.rejects(loadTensors(meta), (e: unknown) => e instanceof DataFormatError && /__metadata__" is not an object of strings/.test(e.message));
  });

  it('saveTensors refuses bad tensors (naming which) and is atomic', async () => {
    const folder = fs.mkdtempSync(path.join(dir, 'atomic-st-'));
    const target = path.join(folder, 'w.safetensors');
    const ok = { name: 'a', shape: [2], data: new Float32Array(2) };
    await assert.rejects(saveTensors(target, [ok, { ...ok }]), (e: unknown) => e instanceof InvalidArgumentError && /tensors\[1\]\.name/.test(e.message));
    await assert.rejects(saveTensors(target, [{ name: '__metadata__', shape: [0], data: new Float32Array(0) }]), /tensors\[0\]\.name/);
    await assert.rejects(saveTensors(target, [{ name: 'x', shape: [2, -1], data: new Float32Array(0) }]), /tensors\[0\]\.shape/);
    await assert.rejects(saveTensors(target, [{ name: 'x', shape: [2, 2], data: new Float32Array(3) }]), /tensors\[0\]\.data/);
    await assert.rejects(saveTensors(target, [ok], { n: 1 } as unknown as Record<string, string>), /metadata\.n/);
    assert.deepEqual(fs.readdirSync(folder), []);
    fs.mkdirSync(target);
    await assert.rejects(saveTensors(target, [ok]));
    assert.deepEqual(fs.readdirSync(folder), ['w.safetensors']);
  });
});
