/**
 * Errors thrown or rejected by mmesid. Every error has a stable `code`:
 * - `ERR_MMESID_INVALID_ARGUMENT` — an argument failed validation (InvalidArgumentError, a TypeError);
 * - `ERR_MMESID_NATIVE_UNAVAILABLE` — an addon could not be loaded (NativeUnavailableError);
 * - `ERR_MMESID_NATIVE`, `ERR_MMESID_OUT_OF_MEMORY` — a native computation failed (NativeError);
 * - `ERR_MMESID_CANCELLED` — the work was cancelled through its AbortSignal;
 * - `ERR_MMESID_DATA_FORMAT` — a data file is malformed (DataFormatError: file, line or byte offset, what was wrong).
 */

export type MmesidErrorCode =
  | 'ERR_MMESID_INVALID_ARGUMENT'
  | 'ERR_MMESID_NATIVE_UNAVAILABLE'
  | 'ERR_MMESID_NATIVE'
  | 'ERR_MMESID_OUT_OF_MEMORY'
  | 'ERR_MMESID_CANCELLED'
  | 'ERR_MMESID_DATA_FORMAT';

/** An argument was not what the function expects: names the argument, the expectation and the value. */
export class InvalidArgumentError extends TypeError {
  readonly code = 'ERR_MMESID_INVALID_ARGUMENT' as const;

  /**
   * @param argument  dotted path of the argument, e.g. `options.dim`
   * @param expected  what was expected, e.g. `a positive integer`
   * @param received  the offending value (described, never dumped whole)
   */
  constructor(
    readonly argument: string,
    readonly expected: string,
    readonly received: unknown,
    receivedText: string = describe(received),
  ) {
    super(`Expected ${expected} for ${argument} but received ${receivedText}`);
    this.name = 'InvalidArgumentError';
  }
}

/** A native addon is missing or failed to load; the message lists likely fixes. */
export class NativeUnavailableError extends Error {
  readonly code = 'ERR_MMESID_NATIVE_UNAVAILABLE' as const;
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'NativeUnavailableError';
  }
}

/** A native computation failed. `code` is copied from the native error. */
export class NativeError extends Error {
  constructor(
    readonly code: MmesidErrorCode,
    message: string,
  ) {
    super(message);
    this.name = 'NativeError';
  }
}

/** Work was cancelled through an AbortSignal. */
export class CancelledError extends Error {
  readonly code = 'ERR_MMESID_CANCELLED' as const;
  constructor(message = 'The operation was cancelled') {
    super(message);
    this.name = 'CancelledError';
  }
}

/**
 * A data file is malformed. The message names the file, where (the 1-based line number of a text file,
 * or the byte offset of a binary one) and what was wrong: `file:line: problem` or
 * `file: byte offset: problem`.
 */
export class DataFormatError extends Error {
  readonly code = 'ERR_MMESID_DATA_FORMAT' as const;

  /**
   * @param file    the file as the caller named it
   * @param line    1-based line number of the problem (0 for a binary file)
   * @param problem what was wrong, e.g. `token 3 ("x1") is not a positive integer`
   * @param offset  byte offset of the problem in a binary file (then `line` is 0)
   */
  constructor(
    readonly file: string,
    readonly line: number,
    readonly problem: string,
    readonly offset?: number,
  ) {
    super(offset === undefined ? `${file}:${line}: ${problem}` : `${file}: byte ${offset}: ${problem}`);
    this.name = 'DataFormatError';
  }

  /** The error for a binary file: `file: byte offset: problem`. */
  static atByte(file: string, offset: number, problem: string): DataFormatError {
    return new DataFormatError(file, 0, problem, offset);
  }
}

/** A short, safe description of a value for error messages. */
export function describe(value: unknown): string {
  if (value === null) return 'null';
  if (value === undefined) return 'undefined';
  if (typeof value === 'number') return Number.isNaN(value) ? 'NaN' : String(value);
  if (typeof value === 'string') return JSON.stringify(value.length > 40 ? `${value.slice(0, 40)}…` : value);
  if (typeof value === 'bigint' || typeof value === 'boolean') return String(value);
  if (ArrayBuffer.isView(value)) {
    const name = value.constructor.name;
    const length = 'length' in value ? (value as unknown as { length: number }).length : value.byteLength;
    return `${name}(${length})`;
  }
  if (Array.isArray(value)) return `Array(${value.length})`;
  if (typeof value === 'function') return 'a function';
  if (typeof value === 'object') return `an object (${value.constructor?.name ?? 'Object'})`;
  return typeof value;
}

/**
 * Re-throws a native rejection as a NativeError with the caller's stack appended (native errors are
 * created on the main thread after the work finished, so their own stack says nothing useful).
 */
export function fromNative(error: unknown, callerStack: string | undefined): Error {
  if (!(error instanceof Error)) return new NativeError('ERR_MMESID_NATIVE', String(error));
  if (error instanceof InvalidArgumentError || error instanceof NativeError) return error;
  const native = error as Error & { code?: unknown; argument?: unknown; expected?: unknown; received?: unknown };
  if (typeof native.argument === 'string' && typeof native.expected === 'string' && typeof native.received === 'string') {
    const invalid = new InvalidArgumentError(native.argument, native.expected, native.received, native.received);
    if (callerStack) invalid.stack = `${invalid.name}: ${invalid.message}\n${callerStack.split('\n').slice(1).join('\n')}`;
    return invalid;
  }
  const located = error as Error & { file?: unknown; offset?: unknown };
  if (native.code === 'ERR_MMESID_DATA_FORMAT' && typeof located.file === 'string') {
    const prefix = typeof located.offset === 'number' ? `${located.file}: byte ${located.offset}: ` : `${located.file}: `;
    const problem = error.message.startsWith(prefix) ? error.message.slice(prefix.length) : error.message;
    const format =
      typeof located.offset === 'number'
        ? DataFormatError.atByte(located.file, located.offset, problem)
        : new DataFormatError(located.file, 0, problem);
    if (typeof located.offset !== 'number') format.message = `${located.file}: ${problem}`;
    if (callerStack) format.stack = `${format.name}: ${format.message}\n${callerStack.split('\n').slice(1).join('\n')}`;
    return format;
  }
  const raw = native.code;
  const code: MmesidErrorCode =
    raw === 'ERR_MMESID_INVALID_ARGUMENT' || raw === 'ERR_MMESID_OUT_OF_MEMORY' || raw === 'ERR_MMESID_CANCELLED'
      ? raw
      : 'ERR_MMESID_NATIVE';
  const wrapped = new NativeError(code, error.message);
  if (callerStack) wrapped.stack = `${wrapped.name}: ${wrapped.message}\n${callerStack.split('\n').slice(1).join('\n')}`;
  return wrapped;
}

/** Awaits a native call; a rejection is re-thrown through {@link fromNative} with `callerStack` (the public function's). */
export async function callNative<T>(run: () => Promise<T>, callerStack: string | undefined): Promise<T> {
  try {
    return await run();
  } catch (error) {
    throw fromNative(error, callerStack);
  }
}
