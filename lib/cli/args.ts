/**
 * Shared pieces of the `mmesid` command line: commander argument parsers (each throws commander's
 * InvalidArgumentError, which it prints with the option's name) and the Ctrl-C → AbortSignal wiring
 * every long-running command uses.
 */
import { InvalidArgumentError as CommanderArgumentError } from 'commander';

/** An integer >= 1. */
export function positiveInt(value: string): number {
  const n = Number(value);
  if (!Number.isSafeInteger(n) || n < 1) throw new CommanderArgumentError(`expected a positive integer, got "${value}"`);
  return n;
}

/** An integer >= 0. */
export function nonNegativeInt(value: string): number {
  const n = Number(value);
  if (!Number.isSafeInteger(n) || n < 0) throw new CommanderArgumentError(`expected an integer >= 0, got "${value}"`);
  return n;
}

/** Comma-separated integers >= 1, e.g. `5,10,20`. */
export function intList(value: string): number[] {
  return value.split(',').map((part) => positiveInt(part.trim()));
}

/** Any finite number. */
export function finiteNumber(value: string): number {
  const n = Number(value);
  if (value.trim() === '' || !Number.isFinite(n)) throw new CommanderArgumentError(`expected a number, got "${value}"`);
  return n;
}

/** One of `choices`. */
export function oneOf<T extends string>(choices: readonly T[]) {
  return (value: string): T => {
    if (!(choices as readonly string[]).includes(value)) throw new CommanderArgumentError(`expected one of ${choices.join(', ')}, got "${value}"`);
    return value as T;
  };
}

/** Runs `work` with a signal that the first Ctrl-C (SIGINT) aborts; the handler is removed afterwards. */
export async function withInterrupt<T>(work: (signal: AbortSignal) => Promise<T>): Promise<T> {
  const ac = new AbortController();
  const onSigint = (): void => ac.abort();
  process.once('SIGINT', onSigint);
  try {
    return await work(ac.signal);
  } finally {
    process.off('SIGINT', onSigint);
  }
}
