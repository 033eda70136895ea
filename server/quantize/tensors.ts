import { readFileSync } from 'node:fs';
import path from 'node:path';
import onnxProto from 'onnx-proto';

/** Reading and writing the initializers a quantizer touches: float weights in, int8/uint8/float tensors out. */

const { onnx } = onnxProto;
type TensorProto = onnxProto.onnx.ITensorProto;

export const DataType = onnx.TensorProto.DataType;

/** A dims entry as protobufjs decodes it: a number, or a Long when long.js is present. */
type Dim = number | { toString(): string };

export function dimsOf(tensor: TensorProto): number[] {
  return (tensor.dims ?? []).map((d: Dim) => (typeof d === 'number' ? d : Number(d.toString())));
}

export function elementCount(dims: readonly number[]): number {
  return dims.reduce((a, b) => a * b, 1);
}

const HOST_IS_LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

/**
 * A float32 initializer's values, from `raw_data`, `float_data` or external data (a `location` file
 * beside the model, at `offset`/`length`). Throws for any other element type.
 */
export function readFloatTensor(tensor: TensorProto, modelDir: string): Float32Array {
  if (tensor.dataType !== DataType.FLOAT) throw new Error(`initializer ${tensor.name} is not float32 (data type ${tensor.dataType})`);
  const count = elementCount(dimsOf(tensor));
  let bytes: Uint8Array | undefined;
  if (tensor.dataLocation === onnx.TensorProto.DataLocation.EXTERNAL) {
    bytes = readExternal(tensor, modelDir);
  } else if (tensor.rawData && tensor.rawData.length > 0) {
    bytes = tensor.rawData;
  } else if (tensor.floatData && tensor.floatData.length > 0) {
    return Float32Array.from(tensor.floatData);
  } else if (count === 0) {
    return new Float32Array(0);
  }
  if (!bytes || bytes.length !== count * 4) {
    throw new Error(`initializer ${tensor.name}: ${bytes?.length ?? 0} bytes of data for ${count} float32 values`);
  }
  const copy = new Uint8Array(bytes); // aligned, and ours to swap
  if (!HOST_IS_LITTLE_ENDIAN) swapBytes(copy, 4);
  return new Float32Array(copy.buffer, 0, count);
}

function readExternal(tensor: TensorProto, modelDir: string): Uint8Array {
  const entries = new Map((tensor.externalData ?? []).map((e) => [e.key ?? '', e.value ?? '']));
  const location = entries.get('location');
  if (!location) throw new Error(`initializer ${tensor.name}: external data without a location`);
  if (path.isAbsolute(location) || location.split(/[\\/]/).includes('..')) {
    throw new Error(`initializer ${tensor.name}: external data location "${location}" leaves the model directory`);
  }
  const file = readFileSync(path.join(modelDir, location));
  const offset = Number(entries.get('offset') ?? 0);
  const length = entries.has('length') ? Number(entries.get('length')) : file.length - offset;
  if (offset + length > file.length) throw new Error(`initializer ${tensor.name}: external data past the end of ${location}`);
  return file.subarray(offset, offset + length);
}

function swapBytes(bytes: Uint8Array, width: number): void {
  for (let i = 0; i < bytes.length; i += width) bytes.subarray(i, i + width).reverse();
}

function littleEndian(values: Float32Array | Int32Array): Uint8Array {
  const bytes = new Uint8Array(values.buffer, values.byteOffset, values.byteLength);
  if (HOST_IS_LITTLE_ENDIAN) return bytes;
  const copy = new Uint8Array(bytes);
  swapBytes(copy, 4);
  return copy;
}

export function floatTensor(name: string, dims: number[], values: Float32Array): TensorProto {
  return { name, dims, dataType: DataType.FLOAT, rawData: littleEndian(values) };
}

export function int8Tensor(name: string, dims: number[], values: Int8Array): TensorProto {
  return { name, dims, dataType: DataType.INT8, rawData: new Uint8Array(values.buffer, values.byteOffset, values.byteLength) };
}

export function int64Tensor(name: string, dims: number[], values: readonly number[]): TensorProto {
  const data = BigInt64Array.from(values, (v) => BigInt(v));
  const bytes = new Uint8Array(data.buffer);
  if (!HOST_IS_LITTLE_ENDIAN) swapBytes(bytes, 8);
  return { name, dims, dataType: DataType.INT64, rawData: bytes };
}

/** An int64 or int32 initializer's values as numbers (shapes, axes: small and exact). */
export function readIntTensor(tensor: TensorProto): number[] {
  const wide = tensor.dataType === DataType.INT64;
  if (!wide && tensor.dataType !== DataType.INT32) throw new Error(`initializer ${tensor.name} is not int64 or int32 (data type ${tensor.dataType})`);
  if (tensor.rawData && tensor.rawData.length > 0) {
    const bytes = new Uint8Array(tensor.rawData);
    if (!HOST_IS_LITTLE_ENDIAN) swapBytes(bytes, wide ? 8 : 4);
    return wide ? Array.from(new BigInt64Array(bytes.buffer, 0, bytes.length / 8), Number) : Array.from(new Int32Array(bytes.buffer, 0, bytes.length / 4));
  }
  const values = (wide ? tensor.int64Data : tensor.int32Data) ?? [];
  return values.map((v: number | { toString(): string }) => (typeof v === 'number' ? v : Number(v.toString())));
}
