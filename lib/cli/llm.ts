/**
 * `mmesid llm …`: the libtorch-hosted Llama (lib/llm/model.ts) on the command line.
 *
 *   mmesid llm generate --model DIR (--prompt-ids 1,2,3 | --prompt TEXT) [--max-new-tokens N]
 *                       [--greedy | --temperature T --top-k K --top-p P --seed S] [--ignore-eos]
 *                       [--adapter DIR] [--threads T] [--json]
 *
 * Output: the new token ids (and, with a tokenizer.json in the model directory, their text); `--json`
 * prints `{ "ids": [...], "text"?: "...", "promptIds": [...], "tokensPerSecond": n }` on stdout.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';

import { Command, InvalidArgumentError as CommanderArgumentError } from 'commander';

import { InvalidArgumentError } from '../errors';
import { type GenerateOptions, LlamaModel } from '../llm/model';
import { PromptTokenizer } from '../llm/prompt';
import { finiteNumber, nonNegativeInt, withInterrupt } from './args';

/** Options of {@link runLlmGenerate}: the model directory, one prompt, decoding settings (lib/llm/model.ts GenerateOptions). */
export type RunLlmGenerateOptions = Required<Pick<GenerateOptions, 'maxNewTokens' | 'greedy' | 'temperature' | 'topK' | 'topP' | 'seed'>> & {
  model: string;
  promptIds?: number[];
  prompt?: string;
  ignoreEos: boolean;
  adapter?: string;
  threads: number;
  signal?: AbortSignal;
};

/** What `mmesid llm generate` reports. */
export interface LlmGenerateReport {
  promptIds: number[];
  ids: number[];
  text?: string;
  seconds: number;
  tokensPerSecond: number;
}

/** Loads the model, generates, disposes it. @throws InvalidArgumentError without a prompt; the model's errors. */
export async function runLlmGenerate(o: RunLlmGenerateOptions): Promise<LlmGenerateReport> {
  if ((o.promptIds === undefined) === (o.prompt === undefined)) {
    throw new InvalidArgumentError('--prompt-ids / --prompt', 'exactly one of them', o.prompt === undefined ? 'neither' : 'both');
  }
  const hasTokenizer = fs.existsSync(path.join(o.model, 'tokenizer.json'));
  let tokenizer: PromptTokenizer | undefined;
  if (o.prompt !== undefined || hasTokenizer) {
    if (!hasTokenizer) throw new InvalidArgumentError('--prompt', `a model directory with tokenizer.json (use --prompt-ids otherwise)`, o.model);
    tokenizer = await PromptTokenizer.load(o.model);
  }
  const promptIds = o.promptIds ?? Array.from(tokenizer!.encode(o.prompt!, { addSpecialTokens: true }));
  const model = await LlamaModel.load(o.model, { threads: o.threads });
  try {
    if (o.adapter) await model.loadAdapter(o.adapter);
    const started = process.hrtime.bigint();
    const ids = await model.generate(promptIds, {
      maxNewTokens: o.maxNewTokens,
      greedy: o.greedy,
      temperature: o.temperature,
      topK: o.topK,
      topP: o.topP,
      seed: o.seed,
      ...(o.ignoreEos ? { stopIds: [] } : {}),
      signal: o.signal,
    });
    const seconds = Number(process.hrtime.bigint() - started) / 1e9;
    const report: LlmGenerateReport = { promptIds, ids: Array.from(ids), seconds, tokensPerSecond: ids.length / seconds };
    if (tokenizer) report.text = tokenizer.decode(ids);
    return report;
  } finally {
    await model.dispose();
  }
}

function idList(value: string): number[] {
  const parts = value.split(',').map((p) => p.trim());
  return parts.map((p) => {
    const n = Number(p);
    if (p === '' || !Number.isInteger(n) || n < 0) throw new CommanderArgumentError(`expected comma-separated token ids, got "${value}"`);
    return n;
  });
}

function probability(value: string): number {
  const n = finiteNumber(value);
  if (!(n > 0 && n <= 1)) throw new CommanderArgumentError(`expected a number in (0, 1], got "${value}"`);
  return n;
}

/** Adds `llm generate` to `program`. */
export function registerLlmCommand(program: Command): Command {
  const llm = program.command('llm').description('the libtorch-hosted Llama (Hugging Face checkpoints, LoRA adapters in PEFT layout)');
  llm
    .command('generate')
    .description('continue a prompt with a Hugging Face Llama checkpoint (KV-cached decoding, greedy or sampled)')
    .requiredOption('--model <dir>', 'checkpoint directory: config.json + model.safetensors (or sharded with model.safetensors.index.json)')
    .option('--prompt-ids <ids>', 'comma-separated prompt token ids, e.g. 1', idList)
    .option('--prompt <text>', 'prompt text (needs tokenizer.json in the model directory)')
    .option('--max-new-tokens <n>', 'tokens to generate at most', nonNegativeInt, 32)
    .option('--greedy', 'argmax decoding (ties: lowest id); otherwise sample')
    .option('--temperature <t>', 'sampling temperature', finiteNumber, 1)
    .option('--top-k <k>', 'sample among the k most likely (0 = off)', nonNegativeInt, 0)
    .option('--top-p <p>', 'nucleus sampling mass (1 = off)', probability, 1)
    .option('--seed <s>', 'sampling seed', nonNegativeInt, 0)
    .option('--ignore-eos', "do not stop at config.json's eos_token_id")
    .option('--adapter <dir>', 'a PEFT LoRA adapter directory to apply')
    .option('--threads <T>', 'native threads (0 = all cores)', nonNegativeInt, 0)
    .option('--json', 'one JSON document on stdout')
    .action(
      async (opts: {
        model: string;
        promptIds?: number[];
        prompt?: string;
        maxNewTokens: number;
        greedy?: boolean;
        temperature: number;
        topK: number;
        topP: number;
        seed: number;
        ignoreEos?: boolean;
        adapter?: string;
        threads: number;
        json?: boolean;
      }) => {
        if (opts.temperature <= 0) throw new CommanderArgumentError(`--temperature must be positive, got ${opts.temperature}`);
        await withInterrupt(async (signal) => {
          const { json, greedy, ignoreEos, ...rest } = opts;
          const report = await runLlmGenerate({ ...rest, greedy: greedy === true, ignoreEos: ignoreEos === true, signal });
          if (json) {
            console.log(JSON.stringify(report));
          } else {
            console.log(report.text ?? report.ids.join(' '));
            console.error(`mmesid: ${report.ids.length} tokens in ${report.seconds.toFixed(2)} s (${report.tokensPerSecond.toFixed(1)} tokens/s)`);
          }
        });
      },
    );
  return llm;
}

