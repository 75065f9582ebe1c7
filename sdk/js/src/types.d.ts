/**
 * The values every world shares: endpoints, their live load, and requests.
 * @module
 */

/**
 * What the host currently believes about an endpoint: passing its checks,
 * serving but slow or partly failing, failing (given no traffic), or not
 * checked yet.
 *
 * @example
 * import { isServing } from '@switchyard/sdk';
 * console.assert(isServing('degraded'));
 */
export type Health = 'healthy' | 'degraded' | 'unhealthy' | 'unknown';

/**
 * A request's priority class, from `'p0'` (critical, the last to be shed) to
 * `'p4'` (background, the first to be shed); `'p2'` is the default.
 *
 * @example
 * import { PRIORITIES } from '@switchyard/sdk';
 * const critical = (request) => PRIORITIES.indexOf(request.priority) <= 1;
 */
export type Priority = 'p0' | 'p1' | 'p2' | 'p3' | 'p4';

/**
 * Every health, best first.
 *
 * @example
 * import { HEALTH } from '@switchyard/sdk';
 * console.assert(HEALTH.includes('unknown'));
 */
export declare const HEALTH: readonly Health[];

/**
 * Every priority, critical first.
 *
 * @example
 * import { PRIORITIES } from '@switchyard/sdk';
 * console.assert(PRIORITIES[0] === 'p0');
 */
export declare const PRIORITIES: readonly Priority[];

/**
 * Whether an endpoint in this state takes traffic: all but `'unhealthy'`.
 *
 * @example
 * import { isServing } from '@switchyard/sdk';
 * console.assert(isServing('unknown') && !isServing('unhealthy'));
 */
export declare function isServing(health: Health): boolean;

/**
 * One eligible endpoint of the pool, as given to `setEndpoints`.
 *
 * @example
 * function zones(endpoints) {
 *   return new Set(endpoints.map((e) => e.zone ?? 'none'));
 * }
 */
export interface Endpoint {
  /** The id a balancer returns from `pick`; stable for the endpoint's life in its pool. */
  id: number;
  /** `host:port`. */
  address: string;
  /** Relative share of traffic; at least 1. */
  weight: number;
  /** The endpoint's zone, when the config gives one. */
  zone: string | undefined;
  /** Free-form labels from the config, as `[name, value]` pairs. */
  labels: Array<[string, string]>;
}

/**
 * An endpoint of weight 1 (unless `options.weight`), no zone and no labels
 * unless given: for tests.
 *
 * @example
 * import { endpoint } from '@switchyard/sdk';
 * const heavy = endpoint(0, '10.0.0.1:80', { weight: 3 });
 * console.assert(heavy.weight === 3);
 */
export declare function endpoint(
  id: number,
  address: string,
  options?: { weight?: number; zone?: string; labels?: Array<[string, string]> },
): Endpoint;

/**
 * Live statistics of one endpoint, kept by the host; see `host.endpointLoad`.
 *
 * @example
 * import { host } from '@switchyard/sdk';
 * const load = host.endpointLoad(3);
 * const busy = load !== undefined && load.capacity > 0 && load.inFlight >= load.capacity;
 */
export interface Load {
  /** Requests the endpoint is serving now. */
  inFlight: number;
  /** The endpoint's maximum in-flight requests; 0 when unlimited. */
  capacity: number;
  /** Moving average of response latency, in microseconds. */
  ewmaLatencyUs: number;
  /** Share of recent responses that succeeded, in thousandths. */
  successPermille: number;
  /** The endpoint's health as the host sees it. */
  health: Health;
}

/**
 * A Load with every field given a neutral value (idle, unlimited, all
 * successes, not checked) and `fields` over them: for tests.
 *
 * @example
 * import { load } from '@switchyard/sdk';
 * console.assert(load({ inFlight: 4 }).capacity === 0);
 */
export declare function load(fields?: Partial<Load>): Load;

/**
 * What a balancer knows about the request it places.
 *
 * @example
 * function isRetry(request) {
 *   return request.attempt > 0;
 * }
 */
export interface RequestInfo {
  /** The request's priority class. */
  priority: Priority;
  /** 0 for the first attempt, 1 for the first retry, and so on. */
  attempt: number;
  /**
   * The request's hash key, if any, by its route's `hash_key` (the client's
   * address, the path, a header or a cookie). A u64, so a BigInt. Inside a
   * built plugin it passes through QuickJS as a double: hashes above 2^53
   * arrive with their lowest bits rounded, the same way every time.
   */
  hash: bigint | undefined;
}

/**
 * A RequestInfo (`'p2'`, first attempt, no hash unless given): for tests.
 *
 * @example
 * import { requestInfo } from '@switchyard/sdk';
 * const retry = requestInfo({ attempt: 1, hash: 42n });
 */
export declare function requestInfo(fields?: Partial<RequestInfo>): RequestInfo;
