/**
 * `mmesid sasrec train`: trains the SASRec collaborative encoder on a sequence file and writes
 * item_emb.npy + metrics.json. Progress (a cli-progress bar per epoch, then one line per epoch) goes
 * to stderr; the report to stdout.
 */
import { loadSequences } from '../data/sequences';
import { EpochBar } from './epochBar';
import { trainSasrec } from '../sasrec';
import type { SasrecSettings, SasrecTrainReport } from '../sasrec';

export interface RunSasrecTrainOptions extends SasrecSettings {
  sequences: string;
  out: string;
  /** Show the progress bar and per-epoch lines on stderr. */
  progress: boolean;
  signal?: AbortSignal;
}

const fmt = (v: number | undefined): string => (v === undefined ? '-' : v.toFixed(4));

export async function runSasrecTrain(o: RunSasrecTrainOptions): Promise<SasrecTrainReport> {
  const sequences = await loadSequences(o.sequences, o.signal ? { signal: o.signal } : {});
  const { progress, sequences: _file, out, ...rest } = o;
  void _file;
  const bar = new EpochBar('sasrec epoch {epoch} [{bar}] {value}/{total} steps | loss {loss} | {rate} rows/s');
  try {
    return await trainSasrec({
      ...rest,
      sequences,
      outDir: out,
      onProgress: (event) => {
        if (!progress) return;
        if (event.kind === 'step') bar.step(event.epoch, event.step, event.steps, { loss: event.loss.toFixed(4), rate: Math.round(event.samplesPerSecond) });
        else {
          const m = event.valid.metrics;
          bar.line(
            `epoch ${event.epoch}: loss ${event.loss.toFixed(4)} (${event.seconds.toFixed(1)} s), valid HR@10 ${fmt(m['HR@10'])} nDCG@10 ${fmt(m['nDCG@10'])} (${event.evalSeconds.toFixed(1)} s)${event.improved ? ' *' : ''}`,
          );
        }
      },
    });
  } finally {
    bar.stop();
  }
}

export function formatSasrecReport(r: SasrecTrainReport): string {
  const best = r.epochs[r.bestEpoch - 1];
  const lines = [
    `SASRec (${r.config.loss}, d=${r.config.dim}, ${r.config.blocks} blocks, ${r.config.heads} heads, maxLen ${r.config.maxLen}) on ${r.dataset.source}`,
    `  ${r.epochs.length} epochs in ${r.wallSeconds.toFixed(1)} s${r.stoppedEarly ? ' (early stop)' : ''}; best epoch ${r.bestEpoch}: valid HR@10 ${fmt(best?.valid.metrics['HR@10'])}, nDCG@10 ${fmt(best?.valid.metrics['nDCG@10'])}`,
    `  test (${r.test.users} users): ${Object.entries(r.test.metrics)
      .map(([k, v]) => `${k} ${v.toFixed(4)}`)
      .join(', ')}`,
    `  wrote ${r.outDir}/item_emb.npy [${r.itemEmbeddings.rows}, ${r.itemEmbeddings.dim}] and ${r.outDir}/metrics.json`,
  ];
  return lines.join('\n');
}
