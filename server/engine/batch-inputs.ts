import { endianness } from 'node:os';
import type { EncodedPair } from './pair-tokenizer.ts';

/**
 * A batch as it crosses to the model worker (flat, transferable), and the int64 input tensors a session
 * feeds from it, in reused buffers: right-padded for cross-encoders, padded on either side with position
 * ids for decoders.
 */

/** Pairs of one batch, concatenated: what crosses to the worker (one copy, transferable). */
export interface FlatBatch {
  count: number;
  /** Longest pair: the padded width. */
  width: number;
  lengths: Int32Array;
  ids: Int32Array;
  typeIds?: Uint8Array;
}

export function flattenBatch(pairs: readonly EncodedPair[], withTypeIds: boolean): FlatBatch {
  const count = pairs.length;
  const lengths = new Int32Array(count);
  let total = 0;
  let width = 0;
  for (let i = 0; i < count; i += 1) {
    const length = (pairs[i] as EncodedPair).ids.length;
    lengths[i] = length;
    total += length;
    if (length > width) width = length;
  }
  const ids = new Int32Array(total);
  const typeIds = withTypeIds ? new Uint8Array(total) : undefined;
  let offset = 0;
  for (const pair of pairs) {
    ids.set(pair.ids, offset);
    if (typeIds && pair.typeIds) typeIds.set(pair.typeIds, offset);
    offset += pair.ids.length;
  }
  return typeIds ? { count, width, lengths, ids, typeIds } : { count, width, lengths, ids };
}

export const LITTLE_ENDIAN = endianness() === 'LE';
const FLOAT32_MAX = 3.4028234663852886e38;

/**
 * Replaces NaN and ±Infinity so that they never reach a client: +Inf and −Inf become the largest and
 * smallest float32, NaN the smallest (a broken score ranks last). Returns how many were replaced.
 */
export function makeFinite(logits: Float32Array): number {
  let replaced = 0;
  for (let i = 0; i < logits.length; i += 1) {
    const value = logits[i] as number;
    if (Number.isFinite(value)) continue;
    logits[i] = value === Infinity ? FLOAT32_MAX : -FLOAT32_MAX;
    replaced += 1;
  }
  return replaced;
}

/** Grow-only int64 input buffers, reused across runs. Their high words are never written, so stay 0. */
export class InputBuffers {
  ids = new BigInt64Array(0);
  mask = new BigInt64Array(0);
  types = new BigInt64Array(0);

  ensure(size: number, withTypes: boolean): void {
    if (this.ids.length < size) {
      const capacity = Math.max(size, this.ids.length * 2);
      this.ids = new BigInt64Array(capacity);
      this.mask = new BigInt64Array(capacity);
    }
    if (withTypes && this.types.length < size) this.types = new BigInt64Array(Math.max(size, this.ids.length));
  }
}

/**
 * Writes a flat batch into `[count, width]` int64 tensors, right-padded with `padId` (mask 0). On
 * little-endian machines it writes the low 32-bit word of each int64 through an Int32Array view, which
 * avoids a BigInt per token; ids are never negative, so the high word is 0.
 */
export function fillInputs(batch: FlatBatch, padId: number, buffers: InputBuffers, withTypes: boolean): number {
  const { count, width, lengths, ids } = batch;
  const size = count * width;
  buffers.ensure(size, withTypes);
  const typeIds = withTypes ? batch.typeIds : undefined;
  if (LITTLE_ENDIAN) {
    const ids32 = new Int32Array(buffers.ids.buffer, 0, size * 2);
    const mask32 = new Int32Array(buffers.mask.buffer, 0, size * 2);
    const types32 = withTypes ? new Int32Array(buffers.types.buffer, 0, size * 2) : undefined;
    let source = 0;
    for (let row = 0; row < count; row += 1) {
      const length = lengths[row] as number;
      let k = row * width * 2;
      for (let j = 0; j < length; j += 1, k += 2) {
        ids32[k] = ids[source + j] as number;
        mask32[k] = 1;
        if (types32) types32[k] = typeIds ? (typeIds[source + j] as number) : 0;
      }
      for (let j = length; j < width; j += 1, k += 2) {
        ids32[k] = padId;
        mask32[k] = 0;
        if (types32) types32[k] = 0;
      }
      source += length;
    }
  } else {
    const pad = BigInt(padId);
    let source = 0;
    for (let row = 0; row < count; row += 1) {
      const length = lengths[row] as number;
      let k = row * width;
      for (let j = 0; j < width; j += 1, k += 1) {
        const real = j < length;
        buffers.ids[k] = real ? BigInt(ids[source + j] as number) : pad;
        buffers.mask[k] = real ? 1n : 0n;
        if (withTypes) buffers.types[k] = real && typeIds ? BigInt(typeIds[source + j] as number) : 0n;
      }
      source += length;
    }
  }
  return size;
}


/** Grow-only int64 buffers of a decoder's inputs, reused across runs. */
export class DecoderBuffers {
  ids = new BigInt64Array(0);
  mask = new BigInt64Array(0);
  positions = new BigInt64Array(0);

  ensure(size: number): void {
    if (this.ids.length >= size) return;
    const capacity = Math.max(size, this.ids.length * 2);
    this.ids = new BigInt64Array(capacity);
    this.mask = new BigInt64Array(capacity);
    this.positions = new BigInt64Array(capacity);
  }
}

/**
 * Writes a flat batch into a decoder's `[count, width]` inputs, each row padded with `padId` on `side`.
 * position_ids are the attention mask's running sum minus one, clipped at 0 (as Hugging Face computes them
 * for a padded batch): a prompt's tokens are at positions 0..length-1 wherever its padding is, so a pair
 * scores the same in any batch. Returns the element count.
 */
export function fillDecoderInputs(batch: FlatBatch, padId: number, side: 'left' | 'right', buffers: DecoderBuffers): number {
  const { count, width, lengths, ids } = batch;
  const size = count * width;
  buffers.ensure(size);
  const write = int64Writer(buffers);
  let source = 0;
  for (let row = 0; row < count; row += 1) {
    const length = lengths[row] as number;
    const start = row * width;
    const pad = width - length;
    const first = side === 'left' ? pad : 0;
    for (let j = 0; j < width; j += 1) {
      const k = start + j;
      const real = j >= first && j < first + length;
      const position = side === 'left' ? Math.max(0, j - pad) : Math.min(j, Math.max(0, length - 1));
      write(k, real ? (ids[source + j - first] as number) : padId, real ? 1 : 0, position);
    }
    source += length;
  }
  return size;
}

/** Writes (id, mask, position) at element k: through the low 32-bit words on little-endian machines (no BigInt per token). */
function int64Writer(buffers: DecoderBuffers): (k: number, id: number, mask: number, position: number) => void {
  if (LITTLE_ENDIAN) {
    const ids32 = new Int32Array(buffers.ids.buffer);
    const mask32 = new Int32Array(buffers.mask.buffer);
    const positions32 = new Int32Array(buffers.positions.buffer);
    return (k, id, mask, position) => {
      ids32[2 * k] = id;
      mask32[2 * k] = mask;
      positions32[2 * k] = position;
    };
  }
  return (k, id, mask, position) => {
    buffers.ids[k] = BigInt(id);
    buffers.mask[k] = BigInt(mask);
    buffers.positions[k] = BigInt(position);
  };
}
