/**
 * mmesid — MME-SID (multimodal embeddings + semantic IDs) for LLM-based sequential recommendation,
 * in Node.js on native C++/CUDA kernels and libtorch.
 *
 * Stages: data → collaborative encoder (SASRec) → tokenizer (MM-RQ-VAE) → LLM fine-tune (Llama 3 + LoRA)
 * → evaluate / serve. This release ships the kernels every stage runs on, the data stage's loaders
 * (sequences, item metadata, embedding tables), leave-one-out splits and synthetic data generator, and
 * the full-ranking evaluation harness.
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
export { loadSequences, saveSequences, sequenceStats, userItems } from './data/sequences';
export type { Sequences, SequenceStats, LoadSequencesOptions } from './data/sequences';
export {
  evaluationSplit,
  evaluationInput,
  modelHistory,
  trainingSamples,
  trainingHistory,
  trainFrequency,
  DEFAULT_MAX_HISTORY,
  DEFAULT_MAX_TARGETS_PER_USER,
} from './data/splits';
export type { EvaluationSplit, SplitName, SplitOptions, TrainingSamples } from './data/splits';
export { loadEmbeddings, loadNpy, loadSafetensors, loadTensors, saveNpy, saveTensors, validateItemTable } from './data/embeddings';
export type { EmbeddingTable, LoadedEmbeddingTable, LoadEmbeddingsOptions, NamedTensor, TensorFile } from './data/embeddings';
export { loadItems, itemInfo } from './data/items';
export type { ItemCatalog, ItemInfo, LoadItemsOptions } from './data/items';
export { generateSynthetic } from './data/synthetic';
export type { SyntheticDataset, SyntheticOptions } from './data/synthetic';
export { rankBatch, evaluateRanking, RankingAccumulator, DEFAULT_KS, DEFAULT_COLD_THRESHOLD } from './evaluate/ranking';
export type { RankBatchOptions, BatchRanking, EvaluateRankingOptions, RankingSummary, GroupMetrics, MetricTable } from './evaluate/ranking';
export { evaluatePopularity, popularityCounts } from './evaluate/popularity';
export type { EvaluatePopularityOptions, EvaluationReport, EvaluationProtocol } from './evaluate/popularity';
export { InvalidArgumentError, NativeError, NativeUnavailableError, CancelledError, DataFormatError } from './errors';
export type { MmesidErrorCode } from './errors';
export { buildInfo } from './info';
export type { BuildInfo } from './info';
// Raw-data converters: Amazon review dumps (JSON lines, plain or gzip) and RecBole atomic files.
export { prepareAmazon, loadAmazonIdMap } from './data/amazon';
export type { PrepareAmazonOptions, AmazonPrepareResult, AmazonPrepareStats, AmazonIdMap } from './data/amazon';
export { loadRecBole } from './data/recbole';
export type { LoadRecBoleOptions, RecBoleDataset, RecBoleField, RecBoleType, RecBoleValue } from './data/recbole';
// Text embeddings without a pretrained model: TF-IDF of title, brand and categories → randomized truncated SVD.
export { itemDocument, buildTfidf, randomizedSvd, embedItemText } from './data/textEmbedding';
export type { CsrMatrix, TfidfOptions, TfidfMatrix, RandomizedSvdOptions, TruncatedSvd, TextEmbeddingOptions, TextEmbedding } from './data/textEmbedding';
// The collaborative encoder: SASRec trained in libtorch (mmesid_torch.node); writes item_emb.npy + metrics.json.
export { trainSasrec, SasrecModel, SASREC_DEFAULTS, SASREC_LOSSES, SASREC_MODEL_FILE, SASREC_MODEL_FORMAT } from './sasrec';
export type { TrainSasrecOptions, SasrecTrainReport, SasrecProgress, SasrecEpochReport, SasrecLoss, SasrecArchitecture } from './sasrec';
export { evaluateSasrec } from './evaluate/sasrec';
export type { EvaluateSasrecOptions } from './evaluate/sasrec';
// The LLM stage's prompt: MME-SID's Llama 3 templates and their tokenization with the checkpoint's tokenizer.json.
export { PromptTokenizer, PROMPT_TEMPLATES, DEFAULT_PROMPT_TEMPLATE, ITEMS_PLACEHOLDER } from './llm/prompt';
export type { PromptTemplateName, PromptEncodeOptions, PromptDecodeOptions, EncodedTemplate } from './llm/prompt';
// The LLM: Hugging Face Llama checkpoints hosted in libtorch, LoRA in PEFT's layout, generation, training.
export { LlamaModel, LORA_TARGET_MODULES, PAPER_LORA } from './llm/model';
export type { LlamaLoadOptions, LlamaForwardInput, LlamaForwardOutput, GenerateOptions, LoraOptions, LoraTargetModule, LoraTrainOptions, PeftAdapterConfig } from './llm/model';
export { readLlamaConfig, checkpointFiles } from './llm/checkpoint';
export type { LlamaConfig, RopeScalingConfig } from './llm/checkpoint';
export { resolveLoopOptions } from './llm/train';
export type { TrainLoopOptions, TrainStep, TrainResult } from './llm/train';
