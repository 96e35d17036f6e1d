/**
 * The one way a training that runs on a native thread of its own (SASRec, the tokenizer, later the
 * LLM) is driven from JS: the native export starts the thread and returns `{ promise, cancel }`; every
 * progress event arrives on the JS thread through a thread-safe function. This helper
 * - forwards events to the caller's `onProgress` (a throw there cancels the run and becomes its error);
 * - cancels on `signal` (→ {@link CancelledError}, also when the native side finished meanwhile);
 * - turns native rejections into the library's errors with the caller's stack.
 */
import { CancelledError, fromNative } from './errors';

/** What a native training export returns. */
export interface NativeTrainingHandle<R> {
  promise: Promise<R>;
  cancel(): void;
}

/**
 * Starts `start(onEvent)` and waits for its result.
 * @param what        name used in the CancelledError message, e.g. `"trainSasrec"`
 * @param start       calls the native export with the event callback
 * @param forward     maps a native event to the caller's callback (may be undefined: events dropped)
 * @param signal      cancels the run
 * @param callerStack the public function's stack, appended to native errors
 * @throws CancelledError when cancelled; whatever `forward` threw; the native error (via fromNative)
 */
export async function runNativeTraining<R, E>(
  what: string,
  start: (onEvent: (event: E) => void) => NativeTrainingHandle<R>,
  forward: ((event: E) => void) | undefined,
  signal: AbortSignal | undefined,
  callerStack: string | undefined,
): Promise<R> {
  if (signal?.aborted) throw new CancelledError(`${what} was cancelled`);
  let progressError: { error: unknown } | undefined;
  let handle: NativeTrainingHandle<R> | undefined;
  try {
    handle = start((event: E) => {
      if (!forward || progressError) return;
      try {
        forward(event);
      } catch (error) {
        progressError = { error };
        handle?.cancel();
      }
    });
  } catch (error) {
    // Synchronous refusals: another training running in this process, a failed thread start.
    throw fromNative(error, callerStack);
  }
  const running = handle;
  const onAbort = (): void => running.cancel();
  signal?.addEventListener('abort', onAbort, { once: true });
  let result: R;
  try {
    result = await running.promise;
  } catch (error) {
    if (progressError) throw progressError.error;
    if ((error as { code?: unknown }).code === 'ERR_MMESID_CANCELLED') throw new CancelledError(`${what} was cancelled`);
    throw fromNative(error, callerStack);
  } finally {
    signal?.removeEventListener('abort', onAbort);
  }
  if (progressError) throw progressError.error;
  if (signal?.aborted) throw new CancelledError(`${what} was cancelled`);
  return result;
}
