/**
 * The LLM stage's prompt: the Llama 3 templates MME-SID wraps around a user's history, and a tokenizer
 * that turns them into token ids with the checkpoint's own Hugging Face `tokenizer.json`.
 *
 * Tokenization is delegated to `@huggingface/tokenizers` (the pure-JS port of the Rust `tokenizers`
 * library used by transformers.js): byte-level BPE, the pre-tokenizer regex, added/special tokens and
 * the post-processor all come from the checkpoint's files, nothing is hand-written here.
 *
 * The model never sees the history as text: {@link PromptTokenizer.encodeTemplate} splits a template at
 * its one `{items}` placeholder and returns the prefix and suffix ids; the model embeds them with the
 * LLM's token embedding table and puts the history's item embeddings between the two
 * (`[embed(prefix), items, embed(suffix)]`, the authors' `instruct_ids` / `response_ids`).
 *
 * @example
 *   const tok = await PromptTokenizer.load('models/Meta-Llama-3-8B-Instruct');
 *   const { prefix, suffix } = tok.encodeTemplate(PROMPT_TEMPLATES.paper);
 *   // prefix: Int32Array [128000, 128006, 9125, 128007, 271, …], suffix: Int32Array [128009, 128006, 78191, 128007]
 */
import * as fs from 'node:fs';
import * as path from 'node:path';

import { Tokenizer as HfTokenizer } from '@huggingface/tokenizers';

import { DataFormatError, InvalidArgumentError, describe } from '../errors';
import { isInt32Array, optionalBoolean, requireObject } from '../validate';

/** The placeholder a template holds exactly once: where the history's item embeddings go. */
export const ITEMS_PLACEHOLDER = '{items}';

/**
 * The prompt templates of MME-SID, Llama 3 chat format, special tokens written literally (each becomes
 * its single id). `{items}` marks where the history's item embeddings go.
 *
 * - `paper` (the default): the template the paper's README publishes, as fixed in
 *   docs/ARCHITECTURE.md ("Fidelity notes"): a system turn "You are a helpful AI assistant for
 *   recommendations", then the user turn "Given the user's purchase history, predict next possible item
 *   to be purchased. {items}", then the assistant header. The space before `{items}` is part of it, so
 *   the prefix ends with the id of " " (220 for Llama 3).
 * - `official`: what the authors' code (Applied-Machine-Learning-Lab/MME-SID) actually feeds the model.
 *   `utils/prompter.py` overrides the `prompt_input` of `dataset/llama3.json` at run time with
 *   `"<|begin_of_text|>{{ Given the user's purchase history, predict next possible item to be purchased."`
 *   and passes it through Python's `str.format`, which turns `{{` into a literal `{`: the system turn and
 *   the user header are gone and a stray "{" follows BOS. The response part is
 *   `llama3.json`'s `response_split`, `"<|eot_id|><|start_header_id|>assistant<|end_header_id|>"`.
 *   `model.py` tokenizes both parts separately with `add_special_tokens=False`, which is what
 *   {@link PromptTokenizer.encodeTemplate} does; there is no space between the instruction and the items.
 */
export const PROMPT_TEMPLATES = {
  paper:
    '<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nYou are a helpful AI assistant for recommendations<|eot_id|>' +
    "<|start_header_id|>user<|end_header_id|>\n\nGiven the user's purchase history, predict next possible item to be purchased. {items}" +
    '<|eot_id|><|start_header_id|>assistant<|end_header_id|>',
  official:
    "<|begin_of_text|>{ Given the user's purchase history, predict next possible item to be purchased.{items}" +
    '<|eot_id|><|start_header_id|>assistant<|end_header_id|>',
} as const;

/** Names of {@link PROMPT_TEMPLATES}. */
export type PromptTemplateName = keyof typeof PROMPT_TEMPLATES;

/** The template used when none is given. */
export const DEFAULT_PROMPT_TEMPLATE: PromptTemplateName = 'paper';

/** File names read from a Hugging Face checkpoint folder. */
export const HF_TOKENIZER_FILE = 'tokenizer.json';
export const HF_TOKENIZER_CONFIG_FILE = 'tokenizer_config.json';

/** Options of {@link PromptTokenizer.encode}. */
export interface PromptEncodeOptions {
  /**
   * Apply the tokenizer.json post-processor's special tokens (default true, as Hugging Face's
   * `tokenizer(text)`). Recent Llama 3 files prepend `<|begin_of_text|>` here; the files as Meta first
   * published them (ByteLevel post-processor) add nothing. Special tokens written in `text` are always
   * recognised, whatever this says.
   */
  addSpecialTokens?: boolean;
}

/** Options of {@link PromptTokenizer.decode}. */
export interface PromptDecodeOptions {
  /** Leave out special tokens (e.g. `<|eot_id|>`) from the text (default false). */
  skipSpecialTokens?: boolean;
  /**
   * Remove the space before punctuation and contractions (" ." → ".", " 's" → "'s"), as Hugging Face
   * does; default: `clean_up_tokenization_spaces` of tokenizer_config.json, true when absent. Pass
   * false for an exact round trip of text such as "a , b".
   */
  cleanUpTokenizationSpaces?: boolean;
}

/** A template's token ids on either side of its `{items}` placeholder. */
export interface EncodedTemplate {
  /** int32 [prefixLength]: ids before `{items}`, special tokens included (BOS first for Llama 3). */
  prefix: Int32Array;
  /** int32 [suffixLength]: ids after `{items}`. */
  suffix: Int32Array;
}

/** Reads a file as UTF-8, or returns undefined when it does not exist. */
async function readOptional(file: string): Promise<string | undefined> {
  try {
    return await fs.promises.readFile(file, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException)?.code === 'ENOENT') return undefined;
    throw error;
  }
}

/** Parses a JSON object, or throws DataFormatError naming the file and, where V8 says, the line. */
function parseJsonObject(text: string, file: string, what: string): Record<string, unknown> {
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (error) {
    const message = (error as Error).message;
    const at = /position (\d+)/.exec(message);
    const line = at ? text.slice(0, Number(at[1])).split('\n').length : 1;
    throw new DataFormatError(file, line, `not valid JSON (${message})`);
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
    throw new DataFormatError(file, 1, `${what} must be a JSON object, not ${Array.isArray(parsed) ? 'an array' : describe(parsed)}`);
  }
  return parsed as Record<string, unknown>;
}

/**
 * A Hugging Face tokenizer for prompts (Llama 3's in MME-SID), loaded from a checkpoint's
 * `tokenizer.json` (+ `tokenizer_config.json`). Ids are int32 (Llama 3: 128,000 BPE tokens + 256
 * special tokens, ids 0..128255). Immutable after load; every method is synchronous and cheap for
 * prompt-sized text, and one instance may be shared freely.
 */
export class PromptTokenizer {
  private constructor(
    private readonly tokenizer: HfTokenizer,
    /** The tokenizer.json it was loaded from. */
    readonly source: string,
    /** The tokenizer_config.json read next to it, or null where there was none. */
    readonly configSource: string | null,
    /** Number of token ids (the LLM's embedding rows): highest id + 1, added tokens included. */
    readonly vocabSize: number,
    private readonly specialIds: ReadonlyMap<string, number>,
  ) {}

  /**
   * Loads a tokenizer from a checkpoint folder (reading `tokenizer.json` and, when present,
   * `tokenizer_config.json`) or from the path of a `tokenizer.json` file (reading the
   * `tokenizer_config.json` beside it, when present). Without a config the library's defaults apply
   * (e.g. `clean_up_tokenization_spaces` true). Building the BPE tables takes about a second for
   * Llama 3, on the calling thread.
   * @param pathToTokenizerJsonOrCheckpointDir a folder or a tokenizer.json file
   * @throws InvalidArgumentError when the argument is not a non-empty string, or the file (or the
   *   folder's tokenizer.json) does not exist; DataFormatError naming the file for malformed JSON, a
   *   non-object, or content the tokenizer library rejects (e.g. an mmesid MM-RQ-VAE manifest, which
   *   is also called tokenizer.json); the file system's own error for other read failures.
   */
  static async load(pathToTokenizerJsonOrCheckpointDir: string): Promise<PromptTokenizer> {
    const given: unknown = pathToTokenizerJsonOrCheckpointDir;
    const name = 'pathToTokenizerJsonOrCheckpointDir';
    const expected = `a Hugging Face ${HF_TOKENIZER_FILE} file or a checkpoint folder holding one`;
    if (typeof given !== 'string' || given.length === 0) throw new InvalidArgumentError(name, expected, given);
    let stat: fs.Stats;
    try {
      stat = await fs.promises.stat(given);
    } catch (error) {
      if ((error as NodeJS.ErrnoException)?.code === 'ENOENT') throw new InvalidArgumentError(name, expected, given, `${JSON.stringify(given)}, which does not exist`);
      throw error;
    }
    const file = stat.isDirectory() ? path.join(given, HF_TOKENIZER_FILE) : given;
    const text = await readOptional(file);
    if (text === undefined) throw new InvalidArgumentError(name, expected, given, `${JSON.stringify(given)}, where ${file} does not exist`);
    const json = parseJsonObject(text, file, HF_TOKENIZER_FILE);
    if (json.format === 'mmesid.tokenizer') {
      throw new DataFormatError(file, 1, 'is an mmesid MM-RQ-VAE tokenizer manifest, not a Hugging Face tokenizer.json (give the LLM checkpoint folder)');
    }
    const configFile = path.join(path.dirname(file), HF_TOKENIZER_CONFIG_FILE);
    const configText = await readOptional(configFile);
    const config = configText === undefined ? {} : parseJsonObject(configText, configFile, HF_TOKENIZER_CONFIG_FILE);

    let tokenizer: HfTokenizer;
    try {
      tokenizer = new HfTokenizer(json, config);
    } catch (error) {
      throw new DataFormatError(file, 1, `not a Hugging Face tokenizer.json the tokenizer library accepts (${(error as Error).message})`);
    }
    let maxId = -1;
    for (const id of tokenizer.get_vocab(true).values()) if (id > maxId) maxId = id;
    const specialIds = new Map<string, number>();
    for (const [id, token] of tokenizer.get_added_tokens_decoder()) if (token.special) specialIds.set(token.content, id);
    return new PromptTokenizer(tokenizer, file, configText === undefined ? null : configFile, maxId + 1, specialIds);
  }

  /**
   * Encodes text to token ids. Special tokens written in `text` (e.g. `<|eot_id|>`) become their single
   * ids.
   * @returns int32 [tokens]
   * @throws InvalidArgumentError when `text` is not a string or an option has the wrong type.
   */
  encode(text: string, options: PromptEncodeOptions = {}): Int32Array {
    if (typeof text !== 'string') throw new InvalidArgumentError('text', 'a string', text);
    const o = requireObject(options, 'options');
    const addSpecialTokens = optionalBoolean(o.addSpecialTokens, 'options.addSpecialTokens', true);
    return Int32Array.from(this.tokenizer.encode(text, { add_special_tokens: addSpecialTokens }).ids);
  }

  /**
   * Decodes token ids to text (special tokens as their text unless skipped). An empty list gives "".
   * @param ids int32 [tokens] (an Int32Array or an array of integers), each in [0, vocabSize)
   * @throws InvalidArgumentError when `ids` is not an Int32Array or array, an id is outside
   *   [0, vocabSize), or an option has the wrong type.
   */
  decode(ids: Int32Array | readonly number[], options: PromptDecodeOptions = {}): string {
    if (!isInt32Array(ids) && !Array.isArray(ids)) throw new InvalidArgumentError('ids', 'an Int32Array or an array of token ids', ids);
    const o = requireObject(options, 'options');
    const skipSpecialTokens = optionalBoolean(o.skipSpecialTokens, 'options.skipSpecialTokens', false);
    const cleanUp = o.cleanUpTokenizationSpaces === undefined ? undefined : optionalBoolean(o.cleanUpTokenizationSpaces, 'options.cleanUpTokenizationSpaces', false);
    const list = Array.from(ids as ArrayLike<unknown>);
    list.forEach((id, i) => {
      if (typeof id !== 'number' || !Number.isInteger(id) || id < 0 || id >= this.vocabSize) {
        throw new InvalidArgumentError(`ids[${i}]`, `a token id in [0, ${this.vocabSize - 1}]`, id);
      }
    });
    if (list.length === 0) return '';
    return this.tokenizer.decode(list as number[], {
      skip_special_tokens: skipSpecialTokens,
      ...(cleanUp === undefined ? {} : { clean_up_tokenization_spaces: cleanUp }),
    });
  }

  /**
   * The id of a special token, by its text (e.g. `"<|eot_id|>"` → 128009 for Llama 3).
   * @throws InvalidArgumentError when `name` is not one of this tokenizer's special tokens (ordinary
   *   vocabulary entries included).
   */
  specialTokenId(name: string): number {
    const id = typeof name === 'string' ? this.specialIds.get(name) : undefined;
    if (id === undefined) {
      const examples = [...this.specialIds.keys()].slice(0, 4).map((s) => JSON.stringify(s)).join(', ');
      throw new InvalidArgumentError('name', `a special token of ${this.source} (one of ${this.specialIds.size}, e.g. ${examples})`, name);
    }
    return id;
  }

  /**
   * Encodes a prompt template around its `{items}` placeholder. Each side is encoded on its own with
   * the post-processor's special tokens off (as the authors' `add_special_tokens=False`): the template
   * spells out every special token it wants, so `<|begin_of_text|>` appears once, where it is written.
   * @param template a {@link PromptTemplateName} or a template string holding `{items}` exactly once
   *   (default {@link DEFAULT_PROMPT_TEMPLATE})
   * @returns the int32 ids before and after the placeholder; the model inserts the history's item
   *   embeddings between them.
   * @throws InvalidArgumentError when `template` is not a string, or holds `{items}` zero or several
   *   times (and is no template name).
   */
  encodeTemplate(template: string = DEFAULT_PROMPT_TEMPLATE): EncodedTemplate {
    if (typeof template !== 'string') throw new InvalidArgumentError('template', 'a template name or a template string', template);
    const text = Object.prototype.hasOwnProperty.call(PROMPT_TEMPLATES, template) ? PROMPT_TEMPLATES[template as PromptTemplateName] : template;
    const parts = text.split(ITEMS_PLACEHOLDER);
    if (parts.length !== 2) {
      const names = Object.keys(PROMPT_TEMPLATES).map((n) => JSON.stringify(n)).join(' or ');
      throw new InvalidArgumentError(
        'template',
        `${names}, or a template string holding "${ITEMS_PLACEHOLDER}" exactly once`,
        template,
        `${describe(template)} (${parts.length - 1} "${ITEMS_PLACEHOLDER}" placeholders)`,
      );
    }
    return { prefix: this.encode(parts[0]!, { addSpecialTokens: false }), suffix: this.encode(parts[1]!, { addSpecialTokens: false }) };
  }
}
