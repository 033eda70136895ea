import type { RouterConfig } from '../config/router-schema.ts';
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
  return { defaultVersion: config.defaultVersion, headerName: router.router.headerName, versions, endpoints: versionEndpoints(config) };
}

/** Versions router.yaml names that config.yaml does not: they get no traffic. */
export function unknownUpstreams(config: RerankConfig, router: RouterConfig): string[] {
  return Object.keys(router.router.upstreams).filter((name) => !Object.hasOwn(config.versions, name));
}

/** Versions that can take traffic through this router. */
export function servableVersions(table: RoutingTable): string[] {
  return table.versions.filter((v) => v.enabled && v.upstream !== undefined).map((v) => v.name);
}

export interface RouteInput {
  pathVersion?: string | undefined;
  headerVersion?: string | undefined;
  stickyKey?: string | undefined;
  random: () => number;
}

export interface Route {
  choice: VersionChoice;
  /** The chosen version's upstream; absent when even the default has none. */
  upstream?: string;
}

/** The in-process version choice (chooseVersion), over the versions that have an upstream. */
export function routeRequest(table: RoutingTable, input: RouteInput): Route {
  const choice = chooseVersion({
    versions: table.versions.map((v) => ({ name: v.name, enabled: v.enabled, ready: v.upstream !== undefined, weight: v.weight })),
    defaultVersion: table.defaultVersion,
    pathVersion: input.pathVersion,
    headerVersion: input.headerVersion,
    stickyKey: input.stickyKey,
    random: input.random,
  });
  const upstream = table.versions.find((v) => v.name === choice.version)?.upstream;
  return upstream === undefined ? { choice } : { choice, upstream };
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
