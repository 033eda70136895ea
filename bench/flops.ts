import { readFile } from 'node:fs/promises';

/**
 * Floating-point work of a BERT-style cross-encoder on one pair, from the model's shape and the pair's
 * actual tokens (padding is not useful work and is not counted). Per layer and sequence of n tokens, with
 * hidden size H and intermediate size I: the Q, K, V and output projections 4 × 2nH², the feed-forward
 * 2 × 2nHI, attention scores QKᵀ and their product with V 2 × 2n²H; then the pooler (2H²) and the
 * classifier (2H). Embedding look-ups, softmax, LayerNorm and GELU are left out, as FLOP counts usually do.
 */

export interface EncoderShape {
  hiddenSize: number;
  numLayers: number;
  intermediateSize: number;
}

export function encoderFlops(shape: EncoderShape, tokens: number): number {
  const { hiddenSize: h, numLayers: layers, intermediateSize: i } = shape;
  const n = tokens;
  const perLayer = 8 * n * h * h + 4 * n * h * i + 4 * n * n * h;
  return layers * perLayer + 2 * h * h + 2 * h;
}

/** The shape from a Hugging Face config.json (hidden_size, num_hidden_layers, intermediate_size). */
export async function readEncoderShape(configPath: string): Promise<EncoderShape> {
  const config = JSON.parse(await readFile(configPath, 'utf8')) as Record<string, unknown>;
  const number = (key: string) => {
    const value = config[key];
    if (typeof value !== 'number' || !(value > 0)) throw new Error(`${configPath}: ${key} must be a positive number, got ${JSON.stringify(value)}`);
    return value;
  };
  return { hiddenSize: number('hidden_size'), numLayers: number('num_hidden_layers'), intermediateSize: number('intermediate_size') };
}
