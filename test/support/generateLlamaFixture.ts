/**
 * Writes test/fixtures/llm/stories260K.greedy200.json: the float64 reference's 200 greedy ids for the
 * prompt [1] (BOS) on ../shared/models/stories260K. Run once, when the reference changes:
 *   npx ts-node --transpile-only test/support/generateLlamaFixture.ts
 */
import * as fs from 'node:fs';
import * as path from 'node:path';

import { loadReferenceLlama, referenceGreedy } from './llamaReference';

const model = path.resolve(__dirname, '..', '..', '..', 'shared', 'models', 'stories260K');
const fixture = path.resolve(__dirname, '..', 'fixtures', 'llm', 'stories260K.greedy200.json');

async function main(): Promise<void> {
  const promptIds = [1];
  const reference = await loadReferenceLlama(model);
  const started = process.hrtime.bigint();
  const ids = referenceGreedy(reference, promptIds, 200);
  const ms = Number(process.hrtime.bigint() - started) / 1e6;
  const body = `{\n  "promptIds": ${JSON.stringify(promptIds)},\n  "ids": ${JSON.stringify(ids)},\n  "source": "test/support/llamaReference.ts (float64)"\n}\n`;
  fs.mkdirSync(path.dirname(fixture), { recursive: true });
  fs.writeFileSync(fixture, body);
  console.log(`wrote ${path.relative(process.cwd(), fixture)}: ${ids.length} ids in ${ms.toFixed(0)} ms`);
}

main().catch((error: unknown) => {
  console.error(error);
  process.exitCode = 1;
});
