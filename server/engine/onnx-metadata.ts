import { open } from 'node:fs/promises';

/**
 * Reads an .onnx file's `metadata_props` (ModelProto field 14) without decoding its graph: the top-level
 * fields are walked by their lengths, so a multi-gigabyte model costs a few small reads. onnxruntime-node
 * does not expose a model's custom metadata, and a prepared graph says in it which tokens it was cut for.
 */

const METADATA_PROPS = 14;
const CHUNK = 64 * 1024;

export async function readOnnxMetadata(file: string): Promise<Record<string, string>> {
  const handle = await open(file, 'r');
  try {
    const { size } = await handle.stat();
    const props: Record<string, string> = {};
    let position = 0;
    while (position < size) {
      const head = await readAt(handle, position, 20);
      const [key, keyBytes] = varint(head, 0);
      const field = Number(key >> 3n);
      const wire = Number(key & 7n);
      let at = position + keyBytes;
      if (wire === 0) {
        const [, bytes] = varint(await readAt(handle, at, 10), 0);
        position = at + bytes;
      } else if (wire === 1) {
        position = at + 8;
      } else if (wire === 5) {
        position = at + 4;
      } else if (wire === 2) {
        const [length, bytes] = varint(await readAt(handle, at, 10), 0);
        at += bytes;
        const end = at + Number(length);
        if (field === METADATA_PROPS && Number(length) <= CHUNK) {
          const entry = parseEntry(await readAt(handle, at, Number(length)));
          if (entry) props[entry.key] = entry.value;
        }
        position = end;
      } else {
        throw new Error(`${file}: not an ONNX model (protobuf wire type ${wire} at byte ${position})`);
      }
    }
    return props;
  } finally {
    await handle.close();
  }
}

async function readAt(handle: Awaited<ReturnType<typeof open>>, position: number, length: number): Promise<Buffer> {
  const buffer = Buffer.alloc(length);
  const { bytesRead } = await handle.read(buffer, 0, length, position);
  return buffer.subarray(0, bytesRead);
}

function varint(buffer: Buffer, offset: number): [bigint, number] {
  let value = 0n;
  let shift = 0n;
  for (let i = offset; i < buffer.length && i < offset + 10; i += 1) {
    const byte = buffer[i] as number;
    value |= BigInt(byte & 0x7f) << shift;
    if ((byte & 0x80) === 0) return [value, i - offset + 1];
    shift += 7n;
  }
  throw new Error('truncated protobuf varint');
}

/** A StringStringEntryProto: key (1) and value (2). */
function parseEntry(buffer: Buffer): { key: string; value: string } | undefined {
  let key: string | undefined;
  let value = '';
  let at = 0;
  while (at < buffer.length) {
    const [tag, tagBytes] = varint(buffer, at);
    at += tagBytes;
    if (Number(tag & 7n) !== 2) return undefined;
    const [length, lengthBytes] = varint(buffer, at);
    at += lengthBytes;
    const text = buffer.subarray(at, at + Number(length)).toString('utf8');
    at += Number(length);
    if (tag >> 3n === 1n) key = text;
    else if (tag >> 3n === 2n) value = text;
  }
  return key === undefined ? undefined : { key, value };
}
