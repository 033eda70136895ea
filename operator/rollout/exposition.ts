/**
 * The Prometheus text exposition format (version 0.0.4), read back: one sample per line as
 * `name{label="value",...} value [timestamp]`, `#` lines skipped. What the server's prom-client writes,
 * and what any Prometheus client writes: label values may hold escaped `\\`, `\"` and `\n`.
 */

export interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

const NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*/;
const LABEL_NAME = /^[a-zA-Z_][a-zA-Z0-9_]*/;

/** Every sample of an exposition; throws naming the line on one that is not the format. */
export function parseExposition(text: string): Sample[] {
  const samples: Sample[] = [];
  const lines = text.split('\n');
  for (let n = 0; n < lines.length; n += 1) {
    const line = lines[n]!.trim();
    if (line === '' || line.startsWith('#')) continue;
    try {
      samples.push(parseLine(line));
    } catch (error) {
      throw new Error(`metrics line ${n + 1}: ${(error as Error).message}: ${line.slice(0, 120)}`, { cause: error });
    }
  }
  return samples;
}

function parseLine(line: string): Sample {
  const name = NAME.exec(line)?.[0];
  if (!name) throw new Error('no metric name');
  let rest = line.slice(name.length);
  const labels: Record<string, string> = {};
  if (rest.startsWith('{')) {
    rest = rest.slice(1);
    for (;;) {
      rest = rest.trimStart();
      if (rest.startsWith('}')) break;
      const label = LABEL_NAME.exec(rest)?.[0];
      if (!label) throw new Error('bad label name');
      rest = rest.slice(label.length).trimStart();
      if (!rest.startsWith('="')) throw new Error(`label ${label} has no quoted value`);
      const { value, length } = quoted(rest, 2);
      labels[label] = value;
      rest = rest.slice(length).trimStart();
      if (rest.startsWith(',')) rest = rest.slice(1);
      else if (!rest.startsWith('}')) throw new Error('labels not closed');
    }
    rest = rest.slice(1);
  }
  const [valueText] = rest.trim().split(/\s+/);
  const value = number(valueText ?? '');
  return { name, labels, value };
}

/** A quoted label value starting at `from` (after the opening quote): its text and where it ends. */
function quoted(text: string, from: number): { value: string; length: number } {
  let value = '';
  for (let i = from; i < text.length; i += 1) {
    const c = text[i]!;
    if (c === '"') return { value, length: i + 1 };
    if (c !== '\\') {
      value += c;
      continue;
    }
    const next = text[(i += 1)];
    value += next === 'n' ? '\n' : (next ?? '');
  }
  throw new Error('label value not closed');
}

/**
 * A sample value as Prometheus reads it (Go's ParseFloat): NaN and infinities in any case, so `Nan`, which
 * prom-client writes for a gauge without data (nodejs_eventloop_lag_mean_seconds of a fresh process), reads.
 */
function number(text: string): number {
  const special = /^([+-]?)(inf|infinity|nan)$/i.exec(text);
  if (special) return special[2]!.toLowerCase() === 'nan' ? NaN : special[1] === '-' ? -Infinity : Infinity;
  const value = Number(text);
  if (text === '' || Number.isNaN(value)) throw new Error(`"${text}" is not a sample value`);
  return value;
}
