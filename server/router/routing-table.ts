import type { MirrorSettings, RouterConfig } from '../config/router-schema.ts';
import type { RerankConfig } from '../config/schema.ts';
import { chooseVersion, type VersionChoice } from '../engine/version-choice.ts';
import { versionEndpoints } from '../http/version-request.ts';

/**
 * What the router routes by, built from the two files it reads: config.yaml says which versions exist,
 * their weights and the default; router.yaml says where each one is served. A version counts as able to
 * serve when it is enabled and has an upstream, so a version without one never gets weighted traffic.
 */
export interface RoutingTable {
  defaultVersion: string;
  /** Request header that pins a version (router.yaml). */
  headerName: string;
  /** In config.yaml's order; the weighted draw (chooseVersion) walks them by name whatever this order is. */
  versions: RoutedVersion[];
  /** A version's own extra path (config.yaml `endpoint`) → the version. */
  endpoints: ReadonlyMap<string, string>;
  /** router.yaml's mirror: copies of some of `from`'s unpinned requests to `to`, compared. */
  mirror?: MirrorSettings;
}

export interface RoutedVersion {
  name: string;
  enabled: boolean;
  weight: number;
  /** Base URL of the version's Service; absent: the version cannot serve through this router. */
  upstream?: string;
}

export function buildRoutingTable(config: RerankConfig, router: RouterConfig): RoutingTable {
  const { upstreams } = router.router;
  const versions = Object.entries(config.versions).map(([name, version]): RoutedVersion => {
    const upstream = Object.hasOwn(upstreams, name) ? upstreams[name] : undefined;
    return { name, enabled: version.enabled, weight: version.weight, ...(upstream !== undefined ? { upstream } : {}) };
  });
  const { mirror } = router.router;
  return {
    defaultVersion: config.defaultVersion,
    headerName: router.router.headerName,
    versions,
    endpoints: versionEndpoints(config),
    ...(mirror ? { mirror } : {}),
  };
}

/** Why the mirror of router.yaml cannot run with this config.yaml (a version it names is unknown, disabled or has no upstream); undefined when it can or there is none. */
export function mirrorProblem(table: RoutingTable): string | undefined {
  const { mirror } = table;
  if (!mirror) return undefined;
  for (const name of [mirror.from, mirror.to]) {
    const version = table.versions.find((v) => v.name === name);
    if (!version) return `mirror names version ${name}, which config.yaml does not`;
    if (!version.enabled) return `mirror names version ${name}, which is disabled`;
    if (version.upstream === undefined) return `mirror names version ${name}, which has no upstream in router.yaml`;
  }
  return undefined;
}

/** Versions router.yaml names that config.yaml does not: they get no traffic. */
export function unknownUpstreams(config: RerankConfig, router: RouterConfig): string[] {
  return Object.keys(router.router.upstreams).filter((name) => !Object.hasOwn(config.versions, name));
}

/** Versions that can take traffic through this router. */
export function servableVersions(table: RoutingTable): string[] {
  return table.versions.filter((v) => v.enabled && v.upstream !== undefined).map((v) => v.name);
}

/** The distinct upstreams of the enabled versions: what the router checks and may eject. */
export function tableUpstreams(table: RoutingTable): string[] {
  return [...new Set(table.versions.flatMap((v) => (v.enabled && v.upstream !== undefined ? [v.upstream] : [])))];
}

export interface RouteInput {
  pathVersion?: string | undefined;
  headerVersion?: string | undefined;
  stickyKey?: string | undefined;
  random: () => number;
  /** Whether an upstream takes requests now (passing its checks, not ejected); every one does when absent. */
  available?: (upstream: string) => boolean;
}

export interface Route {
  choice: VersionChoice;
  /** The chosen version's upstream; absent when even the default has none. */
  upstream?: string;
  /** The upstream takes no requests now and no other could stand in: the handler answers 503 without sending. */
  unavailable?: true;
}

/**
 * The in-process version choice (chooseVersion), over the versions that have an upstream, then the
 * upstreams' health. Unpinned traffic (weighted, sticky, or the default's) whose version's upstream is
 * out is drawn again, by weight (or by its sticky key), among the versions whose upstream is in, so a
 * sticky key on a healthy version stays where it is. A request that named its version (path, header,
 * body `model`, or the default standing in for a named one) is never moved by health: it is answered
 * 503 at once when that upstream is out.
 */
export function routeRequest(table: RoutingTable, input: RouteInput): Route {
  const choose = (ready: (v: RoutedVersion) => boolean, pinned: boolean) =>
    chooseVersion({
      versions: table.versions.map((v) => ({ name: v.name, enabled: v.enabled, ready: ready(v), weight: v.weight })),
      defaultVersion: table.defaultVersion,
      pathVersion: pinned ? input.pathVersion : undefined,
      headerVersion: pinned ? input.headerVersion : undefined,
      stickyKey: input.stickyKey,
      random: input.random,
    });
  const upstreamOf = (version: string) => table.versions.find((v) => v.name === version)?.upstream;
  const choice = choose((v) => v.upstream !== undefined, true);
  const upstream = upstreamOf(choice.version);
  if (upstream === undefined) return { choice };
  const available = input.available;
  if (available === undefined || available(upstream)) return { choice, upstream };
  if (isUnpinned(choice)) {
    const again = choose((v) => v.upstream !== undefined && available(v.upstream), false);
    const other = upstreamOf(again.version);
    if (other !== undefined && available(other)) return { choice: again, upstream: other };
  }
  return { choice, upstream, unavailable: true };
}

/** A choice the request did not name (weighted, sticky, or the default's own): health may move it, and it may be mirrored. */
export function isUnpinned(choice: VersionChoice): boolean {
  return choice.reason === 'weighted' || choice.reason === 'sticky' || (choice.reason === 'default' && choice.fallbackFrom === undefined);
}

/** The upstream URL for a request: the Service's base URL (and any path it has), then the request's path and query. */
export function upstreamUrl(base: string, pathAndQuery: string): URL {
  const url = new URL(base);
  const prefix = url.pathname.replace(/\/+$/, '');
  const [pathPart = '', query] = splitQuery(pathAndQuery);
  url.pathname = `${prefix}${pathPart}`;
  url.search = query === undefined ? '' : `?${query}`;
  return url;
}

function splitQuery(pathAndQuery: string): [string, string | undefined] {
  const at = pathAndQuery.indexOf('?');
  return at < 0 ? [pathAndQuery, undefined] : [pathAndQuery.slice(0, at), pathAndQuery.slice(at + 1)];
}
