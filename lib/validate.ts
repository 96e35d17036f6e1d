/**
 * Argument validation shared by every public function (sharp's `is` module is the model). Each check
 * throws InvalidArgumentError naming the argument, the expectation and the value received.
 *
 * Cheap checks (types, shapes, lengths) run here on the JS thread; finiteness scans of large buffers run
 * in the native worker (off the event loop) and come back as the same InvalidArgumentError.
 */
import { InvalidArgumentError } from './errors';

const tag = (value: unknown): string => Object.prototype.toString.call(value);

/** True for a Float32Array from any realm (worker_threads included). */
export function isFloat32Array(value: unknown): value is Float32Array {
  return ArrayBuffer.isView(value) && tag(value) === '[object Float32Array]';
}

export function isInt32Array(value: unknown): value is Int32Array {
  return ArrayBuffer.isView(value) && tag(value) === '[object Int32Array]';
}

export function requireObject(value: unknown, name: string): Record<string, unknown> {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new InvalidArgumentError(name, 'an options object', value);
  }
  return value as Record<string, unknown>;
}

export function requireFloat32Array(value: unknown, name: string): Float32Array {
  if (!isFloat32Array(value)) throw new InvalidArgumentError(name, 'a Float32Array', value);
  return value;
}

export function optionalFloat32Array(value: unknown, name: string): Float32Array | undefined {
  return value === undefined || value === null ? undefined : requireFloat32Array(value, name);
}

/** A safe integer >= min (default 1). */
export function requireInteger(value: unknown, name: string, min = 1, max = Number.MAX_SAFE_INTEGER): number {
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < min || value > max) {
    const range = max === Number.MAX_SAFE_INTEGER ? `>= ${min}` : `in [${min}, ${max}]`;
    throw new InvalidArgumentError(name, `an integer ${range}`, value);
  }
  return value;
}

export function optionalInteger(value: unknown, name: string, fallback: number, min = 1, max = Number.MAX_SAFE_INTEGER): number {
  return value === undefined ? fallback : requireInteger(value, name, min, max);
}

/** A finite number > 0. */
export function requirePositive(value: unknown, name: string): number {
  if (typeof value !== 'number' || !Number.isFinite(value) || value <= 0) {
    throw new InvalidArgumentError(name, 'a finite number > 0', value);
  }
  return value;
}

export function requireFinite(value: unknown, name: string): number {
  if (typeof value !== 'number' || !Number.isFinite(value)) throw new InvalidArgumentError(name, 'a finite number', value);
  return value;
}

export function optionalBoolean(value: unknown, name: string, fallback: boolean): boolean {
  if (value === undefined) return fallback;
  if (typeof value !== 'boolean') throw new InvalidArgumentError(name, 'a boolean', value);
  return value;
}

/** A non-empty array of finite numbers > 0. */
export function requirePositiveList(value: unknown, name: string): number[] {
  const list = typeof value === 'number' ? [value] : value;
  if (!Array.isArray(list) || list.length === 0) {
    throw new InvalidArgumentError(name, 'a positive number or a non-empty array of positive numbers', value);
  }
  list.forEach((item: unknown, i) => requirePositive(item, `${name}[${i}]`));
  return list as number[];
}

/** Checks `array.length === expected`, explaining the expected shape. */
export function requireLength(array: ArrayLike<unknown>, expected: number, name: string, shape: string): void {
  if (array.length !== expected) {
    throw new InvalidArgumentError(name, `${expected} elements (${shape})`, array);
  }
}

/** Rows of a row-major [rows, dim] buffer; throws when the length is not a positive multiple of dim. */
export function rowsOf(array: Float32Array, dim: number, name: string, dimName: string): number {
  if (array.length === 0 || array.length % dim !== 0) {
    throw new InvalidArgumentError(name, `a non-empty length that is a multiple of ${dimName} (${dim})`, array);
  }
  return array.length / dim;
}

/** Optional AbortSignal. */
export function optionalSignal(value: unknown, name: string): AbortSignal | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== 'object' || value === null || typeof (value as AbortSignal).aborted !== 'boolean') {
    throw new InvalidArgumentError(name, 'an AbortSignal', value);
  }
  return value as AbortSignal;
}
