/**
 * Central finite differences of a scalar loss with respect to one float32 buffer, at a few random
 * coordinates, compared with an analytic gradient. The step actually taken is measured after float32
 * rounding, so the quotient is not biased by it.
 */
import { assertClose } from './assertClose';
import type { Rng } from './random';
import { tolerances, type FiniteDifference } from './tolerances';

export async function checkGradient(
  name: string,
  buffer: Float32Array,
  analytic: Float32Array,
  loss: () => Promise<number>,
  rng: Rng,
  settings: FiniteDifference = tolerances.finiteDifference,
): Promise<void> {
  const { step, tolerance, coordinates } = settings;
  const picks = new Set<number>();
  while (picks.size < Math.min(coordinates, buffer.length)) picks.add(rng.int(buffer.length));
  const numeric: number[] = [];
  const expected: number[] = [];
  for (const i of picks) {
    const original = buffer[i] as number;
    buffer[i] = Math.fround(original + step);
    const up = buffer[i];
    const lossUp = await loss();
    buffer[i] = Math.fround(original - step);
    const down = buffer[i];
    const lossDown = await loss();
    buffer[i] = original;
    numeric.push((lossUp - lossDown) / (up - down));
    expected.push(analytic[i] as number);
  }
  assertClose(expected, numeric, tolerance, `${name}: analytic vs finite-difference gradient`);
}
