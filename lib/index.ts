/**
 * mmesid — MME-SID (multimodal embeddings + semantic IDs) for LLM-based sequential recommendation,
 * in Node.js on native C++/CUDA kernels and libtorch.
 *
 * Stages: data → collaborative encoder (SASRec) → tokenizer (MM-RQ-VAE) → LLM fine-tune (Llama 3 + LoRA)
 * → evaluate / serve. This release ships the kernels every stage runs on.
 */
export { kernels } from './kernels';
export type {
  Kernels,
  RqEncodeOptions,
  RqEncodeResult,
  MmdOptions,
  MmdResult,
  InfoNceOptions,
  InfoNceResult,
  LoraLinearOptions,
  LoraLinearBackwardOptions,
  LoraLinearBackwardResult,
} from './kernels';
export { InvalidArgumentError, NativeError, NativeUnavailableError, CancelledError } from './errors';
export type { MmesidErrorCode } from './errors';
export { buildInfo } from './info';
export type { BuildInfo } from './info';
