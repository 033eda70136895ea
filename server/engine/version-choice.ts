import { RerankError } from '../errors.ts';

/**
 * Which version answers a request: path version, else header version, else a weighted draw among the
 * versions that can serve (canary weights), else the default. A path that names no configured version
 * (a typo in `/rerank/{version}`) is refused: not_found, listing the configured ones. Any other named
 * version that cannot serve (a header naming an unknown version; disabled, still loading or failed)
 * falls back to the default; the choice says so.
 *
 * The weighted draw is random, or sticky: with a sticky key (a user or session id) the point on the
 * weight line comes from a hash of the key, so one key lands on one version for as long as the
 * weights (and the set of versions that can serve) stay the same. The weight line lays the versions
 * out in name order, whatever order the caller lists them in, so the server and the router (and every
 * replica of each) put a key on the same version however a config file orders its versions.
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
  /** In any order: the weighted draw walks them by name. */
  versions: readonly VersionCandidate[];
  defaultVersion: string;
  pathVersion?: string | undefined;
  headerVersion?: string | undefined;
  /** Uniform in [0, 1): `Math.random` unless a test seeds it. */
  random: () => number;
  /** When set (and no path or header version), the weighted draw uses `stickyPoint(stickyKey)` instead of `random`. */
  stickyKey?: string | undefined;
}

export type VersionChoiceReason = 'path' | 'header' | 'weighted' | 'sticky' | 'default';

export interface VersionChoice {
  version: string;
  reason: VersionChoiceReason;
  /** The version the request named, when it could not serve and the default answered instead. */
  fallbackFrom?: string;
}

export function chooseVersion(input: VersionChoiceInput): VersionChoice {
  const path = input.pathVersion;
  if (path !== undefined && path !== '' && !input.versions.some((v) => v.name === path)) {
    throw new RerankError('not_found', unknownVersionsMessage([path], input.versions));
  }
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

  const weighted = input.versions.filter((v) => v.enabled && v.ready && v.weight > 0).sort(byName);
  let total = 0;
  for (const v of weighted) total += v.weight;
  if (total > 0) {
    const sticky = input.stickyKey !== undefined && input.stickyKey !== '';
    const reason: VersionChoiceReason = sticky ? 'sticky' : 'weighted';
    let point = (sticky ? stickyPoint(input.stickyKey as string) : input.random()) * total;
    for (const v of weighted) {
      if (point < v.weight) return { version: v.name, reason };
      point -= v.weight;
    }
    // Rounding can leave `point` a hair past the last weight.
    return { version: (weighted.at(-1) as VersionCandidate).name, reason };
  }
  return { version: input.defaultVersion, reason: 'default' };
}

/** `no version "typo": the configured versions are a, b (disabled)`: for a path, or a CLI's list, naming versions that do not exist. */
export function unknownVersionsMessage(unknown: readonly string[], versions: ReadonlyArray<Pick<VersionCandidate, 'name' | 'enabled'>>): string {
  const named = unknown.map((name) => JSON.stringify(name)).join(', ');
  const configured = [...versions].sort(byName).map((v) => (v.enabled ? v.name : `${v.name} (disabled)`));
  return `no version ${named}: the configured versions are ${configured.join(', ') || '(none)'}`;
}

/** Code-unit order, the same in every process and locale. */
function byName(a: Pick<VersionCandidate, 'name'>, b: Pick<VersionCandidate, 'name'>): number {
  return a.name < b.name ? -1 : a.name > b.name ? 1 : 0;
}

/**
 * A point in [0, 1) from a key: 32-bit FNV-1a over the UTF-16 code units, then murmur3's finalizer so
 * that keys differing in one character spread over the whole line. The same in every process, so every
 * replica puts a key on the same version.
 */
export function stickyPoint(key: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < key.length; i += 1) {
    h ^= key.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return (h >>> 0) / 4294967296;
}
