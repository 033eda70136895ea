/**
 * Which version answers a request: path version, else header version, else a weighted draw among the
 * versions that can serve (canary weights), else the default. A named version that cannot serve
 * (unknown, disabled, still loading or failed) falls back to the default; the choice says so.
 */

export interface VersionCandidate {
  name: string;
  enabled: boolean;
  /** Loaded, warmed up and taking traffic. */
  ready: boolean;
  /** Canary weight, relative to the other candidates'. */
  weight: number;
}

export interface VersionChoiceInput {
  versions: readonly VersionCandidate[];
  defaultVersion: string;
  pathVersion?: string | undefined;
  headerVersion?: string | undefined;
  /** Uniform in [0, 1): `Math.random` unless a test seeds it. */
  random: () => number;
}

export type VersionChoiceReason = 'path' | 'header' | 'weighted' | 'default';

export interface VersionChoice {
  version: string;
  reason: VersionChoiceReason;
  /** The version the request named, when it could not serve and the default answered instead. */
  fallbackFrom?: string;
}

export function chooseVersion(input: VersionChoiceInput): VersionChoice {
  const servable = (name: string) => input.versions.some((v) => v.name === name && v.enabled && v.ready);
  const named: [VersionChoiceReason, string | undefined][] = [
    ['path', input.pathVersion],
    ['header', input.headerVersion?.trim()],
  ];
  for (const [reason, name] of named) {
    if (name === undefined || name === '') continue;
    if (servable(name)) return { version: name, reason };
    return { version: input.defaultVersion, reason: 'default', fallbackFrom: name };
  }

  let total = 0;
  for (const v of input.versions) if (v.enabled && v.ready && v.weight > 0) total += v.weight;
  if (total > 0) {
    let point = input.random() * total;
    let last: string | undefined;
    for (const v of input.versions) {
      if (!(v.enabled && v.ready && v.weight > 0)) continue;
      last = v.name;
      if (point < v.weight) return { version: v.name, reason: 'weighted' };
      point -= v.weight;
    }
    // Rounding can leave `point` a hair past the last weight.
    if (last !== undefined) return { version: last, reason: 'weighted' };
  }
  return { version: input.defaultVersion, reason: 'default' };
}
