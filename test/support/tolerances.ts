/** Per-kernel tolerances, kept as data in test/fixtures/tolerances.json (one place to review them). */
import * as fs from 'node:fs';
import * as path from 'node:path';

export interface Tolerance {
  rtol: number;
  atol: number;
}

export interface FiniteDifference {
  step: number;
  tolerance: Tolerance;
  coordinates: number;
}

export interface Tolerances {
  rqEncode: { maxCodeMismatchRate: number; sqError: Tolerance };
  mmd: { loss: Tolerance; grad: Tolerance };
  infoNce: { loss: Tolerance; grad: Tolerance };
  lora: { forward: Tolerance; grad: Tolerance };
  torchOps: { loss: Tolerance; grad: Tolerance; lora: Tolerance };
  finiteDifference: FiniteDifference;
  finiteDifferenceLinear: FiniteDifference;
  eventLoop: { maxTimerDelayMs: number };
  evaluate: { sums: Tolerance; popularityBeauty: { atol: number } };
  sasrec: { reloadedMetrics: { atol: number } };
  tokenizer: { maxCodeMismatchRate: number; nearTie: Tolerance; rssSlackBytes: number; residualGradient: Tolerance };
  llm: { hidden: Tolerance; merge: Tolerance };
  mmesid: { headParity: Tolerance };
}

export const tolerances = JSON.parse(
  fs.readFileSync(path.join(__dirname, '..', 'fixtures', 'tolerances.json'), 'utf8'),
) as Tolerances;
