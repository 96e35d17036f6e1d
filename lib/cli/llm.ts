/**
 * `mmesid llm …`: the libtorch-hosted Llama (lib/llm/model.ts) on the command line.
 *
 *   mmesid llm generate --model DIR (--prompt-ids 1,2,3 | --prompt TEXT) [--max-new-tokens N]
 *                       [--greedy | --temperature T --top-k K --top-p P --seed S] [--ignore-eos]
 *                       [--adapter DIR] [--threads T] [--json]
 *
 * Output: the new token ids (and, with a tokenizer.json in the model directory, their text); `--json`
 * prints `{ "ids": [...], "text"?: "...", "promptIds": [...], "tokensPerSecond": n }` on stdout.
 *
 *   mmesid llm finetune --model DIR --data FILE.jsonl --out ADAPTER_DIR --steps N
 *                       [--rank 8 --alpha 16 --dropout 0.05 --targets gate_proj,up_proj,down_proj]
 *                       [--lr 3e-4 --schedule cosine --warmup W --micro-batch 4 --accumulation 4
 *                        --max-length 512 --max-grad-norm 1 --weight-decay 0 --seed 42]
 *                       [--gradient-checkpointing] [--checkpoint FILE --checkpoint-every K] [--resume]
 *                       [--threads T] [--json]
 *
 * LoRA fine-tuning as a causal language model. FILE.jsonl: one sequence per line, a JSON array of token
 * ids, `{ "ids": [...] }`, or `{ "text": "..." }` (tokenized with the model directory's tokenizer.json,
 * special tokens added). Writes a PEFT adapter directory (adapter_config.json + adapter_model.safetensors)
 * to ADAPTER_DIR; the checkpoint (default ADAPTER_DIR/checkpoint.pt) is written atomically every K steps,
 * at the end and on Ctrl-C, and `--resume` continues from it exactly.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';

import { Command, InvalidArgumentError as CommanderArgumentError } from 'commander';

import { InvalidArgumentError } from '../errors';
import { DataFormatError } from '../errors';
import { type GenerateOptions, LORA_TARGET_MODULES, type LoraTargetModule, LlamaModel } from '../llm/model';
import type { TrainStep } from '../llm/train';
import { readHashedLines } from '../data/lineReader';
import { EpochBar } from './epochBar';
import { PromptTokenizer } from '../llm/prompt';
import { finiteNumber, nonNegativeInt, oneOf, positiveInt, withInterrupt } from './args';

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

/** Options of {@link runLlmFinetune}. */
export interface RunLlmFinetuneOptions {
  model: string;
  data: string;
  out: string;
  steps: number;
  rank: number;
  alpha: number;
  dropout: number;
  targets: LoraTargetModule[];
  lr: number;
  schedule: 'constant' | 'linear' | 'cosine';
  warmup?: number;
  microBatch: number;
  accumulation: number;
  maxLength: number;
  maxGradNorm: number;
  weightDecay: number;
  seed: number;
  gradientCheckpointing: boolean;
  checkpoint?: string;
  checkpointEvery: number;
  resume: boolean;
  threads: number;
  progress: boolean;
  signal?: AbortSignal;
}

/** What `mmesid llm finetune` reports. */
export interface LlmFinetuneReport {
  adapter: string;
  sequences: number;
  tokens: number;
  steps: number;
  resumedFrom: number;
  firstLoss: number;
  lastLoss: number;
  seconds: number;
  tokensPerSecond: number;
}

/** Reads a sequences file (see the header). @throws DataFormatError naming the line. */
export async function readSequences(file: string, tokenizer: () => Promise<PromptTokenizer>): Promise<number[][]> {
  const reader = readHashedLines(file);
  const out: number[][] = [];
  let line = 0;
  try {
    for await (const text of reader.lines) {
      line += 1;
      if (text.trim() === '') continue;
      let value: unknown;
      try {
        value = JSON.parse(text);
      } catch {
        throw new DataFormatError(file, line, 'not valid JSON');
      }
      if (value !== null && typeof value === 'object' && !Array.isArray(value)) {
        const o = value as { ids?: unknown; text?: unknown };
        if (typeof o.text === 'string') value = Array.from((await tokenizer()).encode(o.text, { addSpecialTokens: true }));
        else value = o.ids;
      }
      if (!Array.isArray(value) || !value.every((id) => Number.isInteger(id) && (id as number) >= 0)) {
        throw new DataFormatError(file, line, 'expected an array of token ids, {"ids": [...]} or {"text": "..."}');
      }
      if (value.length < 2) throw new DataFormatError(file, line, `a sequence needs at least 2 tokens, found ${value.length}`);
      out.push(value as number[]);
    }
  } finally {
    reader.close();
  }
  if (out.length === 0) throw new DataFormatError(file, line, 'no sequences');
  return out;
}

/** Fine-tunes LoRA adapters and writes them as a PEFT directory. */
export async function runLlmFinetune(o: RunLlmFinetuneOptions): Promise<LlmFinetuneReport> {
  let tokenizer: PromptTokenizer | undefined;
  const sequences = await readSequences(o.data, async () => (tokenizer ??= await PromptTokenizer.load(o.model)));
  const tokens = sequences.reduce((sum, s) => sum + Math.min(s.length, o.maxLength), 0);
  fs.mkdirSync(o.out, { recursive: true });
  const model = await LlamaModel.load(o.model, { threads: o.threads });
  const bar = o.progress ? new EpochBar('llm finetune [{bar}] {value}/{total} steps | loss {loss} | lr {lr}') : undefined;
  const started = process.hrtime.bigint();
  try {
    model.applyLora({ rank: o.rank, alpha: o.alpha, dropout: o.dropout, targetModules: o.targets, seed: o.seed });
    const result = await model.trainLora(sequences, {
      steps: o.steps,
      lr: o.lr,
      schedule: o.schedule,
      ...(o.warmup === undefined ? {} : { warmupSteps: o.warmup }),
      microBatch: o.microBatch,
      accumulationSteps: o.accumulation,
      maxLength: o.maxLength,
      maxGradNorm: o.maxGradNorm,
      weightDecay: o.weightDecay,
      seed: o.seed,
      gradientCheckpointing: o.gradientCheckpointing,
      checkpoint: o.checkpoint ?? path.join(o.out, 'checkpoint.pt'),
      checkpointEvery: o.checkpointEvery,
      resume: o.resume,
      signal: o.signal,
      onProgress: (s: TrainStep) => bar?.step(1, s.step, s.totalSteps, { loss: s.loss.toFixed(4), lr: s.lr.toExponential(2) }),
    });
    bar?.stop();
    await model.saveAdapter(o.out);
    const seconds = Number(process.hrtime.bigint() - started) / 1e9;
    const run = result.losses.length;
    return {
      adapter: o.out,
      sequences: sequences.length,
      tokens,
      steps: result.steps,
      resumedFrom: result.resumedFrom,
      firstLoss: result.losses[0] ?? Number.NaN,
      lastLoss: result.losses[run - 1] ?? Number.NaN,
      seconds,
      tokensPerSecond: (run * o.microBatch * o.accumulation * (tokens / sequences.length)) / seconds,
    };
  } finally {
    bar?.stop();
    await model.dispose();
  }
}

function targetList(value: string): LoraTargetModule[] {
  const parts = value.split(',').map((p) => p.trim());
  for (const p of parts) {
    if (!(LORA_TARGET_MODULES as readonly string[]).includes(p)) throw new CommanderArgumentError(`expected modules among ${LORA_TARGET_MODULES.join(', ')}, got "${p}"`);
  }
  return parts as LoraTargetModule[];
}

/** Adds `llm generate` and `llm finetune` to `program`. */
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
  llm
    .command('finetune')
    .description('LoRA fine-tuning as a causal language model on token sequences; writes a PEFT adapter directory')
    .requiredOption('--model <dir>', 'checkpoint directory (config.json + model.safetensors or shards)')
    .requiredOption('--data <file>', 'JSON lines: an array of token ids, {"ids": [...]} or {"text": "..."} per line')
    .requiredOption('--out <dir>', 'adapter directory to write (adapter_config.json + adapter_model.safetensors)')
    .requiredOption('--steps <n>', 'optimizer steps', positiveInt)
    .option('--rank <r>', 'LoRA rank', positiveInt, 8)
    .option('--alpha <a>', 'LoRA alpha', finiteNumber, 16)
    .option('--dropout <p>', 'LoRA dropout', finiteNumber, 0.05)
    .option('--targets <list>', 'target modules', targetList, ['gate_proj', 'up_proj', 'down_proj'] as LoraTargetModule[])
    .option('--lr <lr>', 'peak learning rate', finiteNumber, 3e-4)
    .option('--schedule <s>', 'constant | linear | cosine', oneOf(['constant', 'linear', 'cosine'] as const), 'cosine' as const)
    .option('--warmup <w>', 'warmup steps (default min(100, steps / 10))', nonNegativeInt)
    .option('--micro-batch <b>', 'sequences per micro-batch', positiveInt, 4)
    .option('--accumulation <k>', 'micro-batches per optimizer step', positiveInt, 4)
    .option('--max-length <n>', 'tokens per sequence at most', positiveInt, 512)
    .option('--max-grad-norm <c>', 'gradient clipping (0 = off)', finiteNumber, 1)
    .option('--weight-decay <wd>', 'decoupled weight decay', finiteNumber, 0)
    .option('--seed <s>', 'seed of the adapters, the data order and dropout', nonNegativeInt, 42)
    .option('--gradient-checkpointing', 'recompute layers in the backward (less memory)')
    .option('--checkpoint <file>', 'checkpoint file (default OUT/checkpoint.pt)')
    .option('--checkpoint-every <k>', 'also checkpoint every k steps (0 = only at the end and on Ctrl-C)', nonNegativeInt, 0)
    .option('--resume', 'continue from the checkpoint')
    .option('--threads <T>', 'native threads (0 = all cores)', nonNegativeInt, 0)
    .option('--json', 'one JSON document on stdout')
    .action(async (opts: Omit<RunLlmFinetuneOptions, 'progress' | 'signal' | 'gradientCheckpointing' | 'resume'> & { gradientCheckpointing?: boolean; resume?: boolean; json?: boolean }) => {
      await withInterrupt(async (signal) => {
        const { json, gradientCheckpointing, resume, ...rest } = opts;
        const report = await runLlmFinetune({ ...rest, gradientCheckpointing: gradientCheckpointing === true, resume: resume === true, progress: process.stderr.isTTY || !json, signal });
        console.log(json ? JSON.stringify(report) : `adapter written to ${report.adapter}: ${report.steps} steps, loss ${report.firstLoss.toFixed(4)} → ${report.lastLoss.toFixed(4)}, ${report.seconds.toFixed(1)} s`);
      });
    });
  return llm;
}

