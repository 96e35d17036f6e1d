/**
 * Training the LLM's LoRA adapters, on the step loop every LLM trainer shares
 * (native/torch/train/train_loop.h): AdamW (decoupled weight decay), a warmup + cosine/linear/constant
 * schedule (Hugging Face's), gradient accumulation, gradient-norm clipping, optional gradient
 * checkpointing, bf16/fp16 autocast on CUDA (fp16 with dynamic loss scaling), a progress event every
 * optimizer step, cancellation through an AbortSignal, and atomic checkpoints with exact resume: N steps
 * straight and N/2 steps + interruption + resume + N/2 steps give bit-identical adapters on CPU.
 *
 * {@link LlamaModel.trainLora} fine-tunes the adapters as a causal language model on token sequences
 * (the MME-SID recommender's trainer reuses {@link TrainLoopOptions}).
 */
import { createHash } from 'node:crypto';

import { InvalidArgumentError, describe } from '../errors';
import { optionalBoolean, optionalInteger, requireInteger, requireObject } from '../validate';

/** Options of the shared step loop. Defaults: the paper's fine-tuning (lr 3e-4, cosine, warmup 100 capped at a tenth of the run). */
export interface TrainLoopOptions {
  /** Optimizer steps of the whole run (required, >= 1). */
  steps: number;
  /** Micro-batches per optimizer step. Default 1. */
  accumulationSteps?: number;
  /** Peak learning rate. Default 3e-4. */
  lr?: number;
  /** Decoupled weight decay. Default 0. */
  weightDecay?: number;
  /** AdamW β₁, β₂, ε. Defaults 0.9, 0.999, 1e-8. */
  beta1?: number;
  beta2?: number;
  eps?: number;
  /** Default 'cosine'. */
  schedule?: 'constant' | 'linear' | 'cosine';
  /** Linear warmup steps (the first step has lr 0 when > 0, as Hugging Face's schedules). Default min(100, ⌊steps / 10⌋). */
  warmupSteps?: number;
  /** Clip the global gradient L2 norm to this; 0 = off. Default 1 (Hugging Face Trainer's). */
  maxGradNorm?: number;
  /** fp16 dynamic loss scaling (for fp16 autocast on CUDA). Default false. */
  fp16LossScaling?: boolean;
  /** Seeds the data order, dropout and everything random. Default 42. */
  seed?: number;
  /** Checkpoint file (torch pickle); written atomically on cancellation, every `checkpointEvery` steps and at the end. */
  checkpoint?: string;
  /** Default 0: only on cancellation and at the end. */
  checkpointEvery?: number;
  /** Continue from `checkpoint` when it exists (it must belong to the same run). Default false. */
  resume?: boolean;
}

/** One optimizer step's report. */
export interface TrainStep {
  step: number;
  totalSteps: number;
  /** Mean micro-batch loss. */
  loss: number;
  /** The learning rate this step used. */
  lr: number;
  /** Global gradient norm before clipping. */
  gradNorm: number;
  /** fp16 overflow: the update was skipped. */
  skipped: boolean;
  seconds: number;
}

/** What a training run resolves with. */
export interface TrainResult {
  steps: number;
  /** The checkpoint's step when resumed, else 0. */
  resumedFrom: number;
  /** Loss of every step run in this call. */
  losses: Float64Array;
}

/** The fully-defaulted loop options as the native side reads them. */
export interface NativeLoopOptions {
  totalSteps: number;
  accumulationSteps: number;
  lr: number;
  weightDecay: number;
  beta1: number;
  beta2: number;
  eps: number;
  schedule: 'constant' | 'linear' | 'cosine';
  warmupSteps: number;
  maxGradNorm: number;
  fp16LossScaling: boolean;
  seed: number;
  checkpointPath: string;
  checkpointEvery: number;
  resume: boolean;
}

function number(value: unknown, name: string, fallback: number, ok: (x: number) => boolean, expected: string): number {
  const v = value ?? fallback;
  if (typeof v !== 'number' || !Number.isFinite(v) || !ok(v)) throw new InvalidArgumentError(name, expected, describe(v));
  return v;
}

/**
 * Validates and defaults the loop options (`prefix` names them in errors, e.g. "options").
 * @throws InvalidArgumentError naming the option.
 */
export function resolveLoopOptions(options: TrainLoopOptions, prefix = 'options'): NativeLoopOptions {
  const o = requireObject(options, prefix);
  const steps = requireInteger(o.steps, `${prefix}.steps`, 1);
  const schedule = o.schedule ?? 'cosine';
  if (schedule !== 'constant' && schedule !== 'linear' && schedule !== 'cosine') {
    throw new InvalidArgumentError(`${prefix}.schedule`, '"constant", "linear" or "cosine"', describe(schedule));
  }
  const checkpoint = o.checkpoint ?? '';
  if (typeof checkpoint !== 'string') throw new InvalidArgumentError(`${prefix}.checkpoint`, 'a file path', describe(checkpoint));
  const resume = optionalBoolean(o.resume, `${prefix}.resume`, false);
  if (resume && checkpoint === '') throw new InvalidArgumentError(`${prefix}.resume`, 'a checkpoint path to resume from (options.checkpoint)', 'none');
  return {
    totalSteps: steps,
    accumulationSteps: optionalInteger(o.accumulationSteps, `${prefix}.accumulationSteps`, 1, 1),
    lr: number(o.lr, `${prefix}.lr`, 3e-4, (x) => x > 0, 'a positive number'),
    weightDecay: number(o.weightDecay, `${prefix}.weightDecay`, 0, (x) => x >= 0, 'a number >= 0'),
    beta1: number(o.beta1, `${prefix}.beta1`, 0.9, (x) => x >= 0 && x < 1, 'a number in [0, 1)'),
    beta2: number(o.beta2, `${prefix}.beta2`, 0.999, (x) => x >= 0 && x < 1, 'a number in [0, 1)'),
    eps: number(o.eps, `${prefix}.eps`, 1e-8, (x) => x > 0, 'a positive number'),
    schedule,
    warmupSteps: optionalInteger(o.warmupSteps, `${prefix}.warmupSteps`, Math.min(100, Math.floor(steps / 10)), 0),
    maxGradNorm: number(o.maxGradNorm, `${prefix}.maxGradNorm`, 1, (x) => x >= 0, 'a number >= 0 (0 = no clipping)'),
    fp16LossScaling: optionalBoolean(o.fp16LossScaling, `${prefix}.fp16LossScaling`, false),
    seed: optionalInteger(o.seed, `${prefix}.seed`, 42, 0),
    checkpointPath: checkpoint,
    checkpointEvery: optionalInteger(o.checkpointEvery, `${prefix}.checkpointEvery`, 0, 0),
    resume,
  };
}

/**
 * The identity of a run, stored in its checkpoints: a resume is refused unless everything that shapes
 * the result (data, model, adapters, options) is the same. Checkpoint path, resume and progress
 * settings are not part of it.
 */
export function runFingerprint(parts: Record<string, unknown>, buffers: readonly ArrayBufferView[]): string {
  const hash = createHash('sha256');
  hash.update(JSON.stringify(parts));
  for (const b of buffers) hash.update(new Uint8Array(b.buffer, b.byteOffset, b.byteLength));
  return hash.digest('hex');
}
