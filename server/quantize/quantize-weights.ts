/**
 * Weight quantization to int8, as onnxruntime's `quantize_dynamic` does it: symmetric by default (scale =
 * max|w| / 127, zero point 0, values in [-127, 127]), or asymmetric over [-128, 127] with a zero point;
 * per tensor, or per output channel. `reduceRange` uses 7 bits ([-64, 64]), for CPUs without VNNI whose
 * int8 kernels saturate on 8-bit weights.
 */

export interface WeightQuantOptions {
  symmetric: boolean;
  reduceRange: boolean;
}

export interface QuantizedWeight {
  values: Int8Array;
  /** One per channel (per-channel), or one. */
  scales: Float32Array;
  zeroPoints: Int8Array;
}

/** Round half to even, as numpy (and so onnxruntime's quantizer) rounds. */
export function roundHalfEven(x: number): number {
  const r = Math.round(x);
  return Math.abs(x % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

function range(options: WeightQuantOptions): { qmin: number; qmax: number } {
  if (options.reduceRange) return { qmin: -64, qmax: 64 };
  return options.symmetric ? { qmin: -127, qmax: 127 } : { qmin: -128, qmax: 127 };
}

/** Scale and zero point for values in [min, max]; the range always holds 0, so 0 is exact. */
export function scaleAndZeroPoint(min: number, max: number, options: WeightQuantOptions): { scale: number; zeroPoint: number } {
  const { qmin, qmax } = range(options);
  const rmin = Math.min(min, 0);
  const rmax = Math.max(max, 0);
  if (options.symmetric) {
    const absMax = Math.max(Math.abs(rmin), Math.abs(rmax));
    const scale = absMax === 0 ? 1 : (2 * absMax) / (qmax - qmin);
    return { scale: Math.fround(scale), zeroPoint: 0 };
  }
  if (rmax === rmin) return { scale: 1, zeroPoint: 0 };
  const scale = Math.fround((rmax - rmin) / (qmax - qmin));
  const zeroPoint = Math.min(qmax, Math.max(qmin, roundHalfEven(qmin - rmin / scale)));
  return { scale, zeroPoint };
}

/**
 * Quantizes a [rows, cols] row-major weight. `channelAxis` 1: one scale per column (a MatMul's output
 * channels, B being [K, N]); 0: one per row; undefined: one for the whole tensor.
 */
export function quantizeWeight(
  values: Float32Array,
  rows: number,
  cols: number,
  options: WeightQuantOptions & { channelAxis?: 0 | 1 },
): QuantizedWeight {
  const { qmin, qmax } = range(options);
  const channels = options.channelAxis === undefined ? 1 : options.channelAxis === 0 ? rows : cols;
  const channelOf =
    options.channelAxis === undefined ? () => 0 : options.channelAxis === 0 ? (i: number) => Math.floor(i / cols) : (i: number) => i % cols;
  const mins = new Float64Array(channels).fill(Infinity);
  const maxs = new Float64Array(channels).fill(-Infinity);
  for (let i = 0; i < values.length; i += 1) {
    const c = channelOf(i);
    const v = values[i] as number;
    if (v < (mins[c] as number)) mins[c] = v;
    if (v > (maxs[c] as number)) maxs[c] = v;
  }
  const scales = new Float32Array(channels);
  const zeroPoints = new Int8Array(channels);
  for (let c = 0; c < channels; c += 1) {
    const { scale, zeroPoint } = scaleAndZeroPoint(mins[c] as number, maxs[c] as number, options);
    scales[c] = scale;
    zeroPoints[c] = zeroPoint;
  }
  const quantized = new Int8Array(values.length);
  for (let i = 0; i < values.length; i += 1) {
    const c = channelOf(i);
    const q = roundHalfEven((values[i] as number) / (scales[c] as number)) + (zeroPoints[c] as number);
    quantized[i] = Math.min(qmax, Math.max(qmin, q));
  }
  return { values: quantized, scales, zeroPoints };
}

/** Transposes a [rows, cols] row-major matrix (a Gemm's B with transB = 1, to MatMul's [K, N]). */
export function transpose(values: Float32Array, rows: number, cols: number): Float32Array {
  const out = new Float32Array(values.length);
  for (let r = 0; r < rows; r += 1) for (let c = 0; c < cols; c += 1) out[c * rows + r] = values[r * cols + c] as number;
  return out;
}
