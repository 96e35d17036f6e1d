/** The training commands' progress display on stderr: one cli-progress bar per epoch (its steps), a line per finished epoch. */
import { Presets, SingleBar } from 'cli-progress';

/** A bar that restarts for each epoch. `format` gets the bar tokens plus the payload keys, e.g. `{loss}`. */
export class EpochBar {
  private bar: SingleBar | undefined;
  private epoch = 0;

  /** @param format e.g. `'sasrec epoch {epoch} [{bar}] {value}/{total} steps | loss {loss}'` ({epoch} is filled in) */
  constructor(private readonly format: string) {}

  /** A step of `epoch` finished (`step` of `steps`). */
  step(epoch: number, step: number, steps: number, payload: Record<string, string | number>): void {
    if (epoch !== this.epoch) {
      this.stop();
      this.epoch = epoch;
      this.bar = new SingleBar({ format: this.format.replace('{epoch}', String(epoch)), stream: process.stderr, hideCursor: true }, Presets.shades_classic);
      this.bar.start(steps, 0, Object.fromEntries(Object.keys(payload).map((k) => [k, '-'])));
    }
    this.bar?.update(step, payload);
  }

  /** Ends the current bar and writes `line` (a finished epoch's summary) below it. */
  line(line: string): void {
    this.stop();
    process.stderr.write(`${line}\n`);
  }

  /** Ends the current bar, if any. */
  stop(): void {
    this.bar?.stop();
    this.bar = undefined;
  }
}
