/**
 * What the host offers every plugin: log, clock, randomness, live load and
 * the current request's headers. Inside a built plugin these call the host;
 * under `node --test` they read the `TestHost` of `@switchyard/sdk/testing`;
 * anywhere else they throw an error saying so.
 * @module
 */

import type { Load } from './types.js';

/**
 * How important a log line is, least first.
 *
 * @example
 * import { host } from '@switchyard/sdk';
 * host.log('warn', 'took 900 ms');
 */
export type LogLevel = 'trace' | 'debug' | 'info' | 'warn' | 'error';

/**
 * Every log level, least important first.
 *
 * @example
 * import { host } from '@switchyard/sdk';
 * console.assert(host.LOG_LEVELS.indexOf('warn') > host.LOG_LEVELS.indexOf('info'));
 */
export declare const LOG_LEVELS: readonly LogLevel[];

/**
 * Writes a line to the host's log, tagged with the plugin's name. The host
 * cuts a line at `plugins.log_line_bytes` (1 KiB by default) and limits a
 * plugin to `plugins.log_lines_per_second` (50); lines over the rate are
 * dropped, counted and summarised.
 *
 * @example
 * import { host } from '@switchyard/sdk';
 * host.log('info', 'configured with 3 endpoints');
 */
export declare function log(level: LogLevel, message: string): void;

/**
 * `log('trace', message)`.
 *
 * @example
 * import { host } from '@switchyard/sdk';
 * host.trace('sampled 2 endpoints');
 */
export declare function trace(message: string): void;

/**
 * `log('debug', message)`.
 *
 * @example
 * import { host } from '@switchyard/sdk';
 * host.debug('window is 8');
 */
export declare function debug(message: string): void;

/**
 * `log('info', message)`.
 *
 * @example
 * import { host } from '@switchyard/sdk';
 * host.info('configured');
 */
export declare function info(message: string): void;

/**
 * `log('warn', message)`.
 *
 * @example
 * import { host } from '@switchyard/sdk';
 * host.warn('no endpoint has capacity left');
 */
export declare function warn(message: string): void;

/**
 * `log('error', message)`.
 *
 * @example
 * import { host } from '@switchyard/sdk';
 * host.error('state lost');
 */
export declare function error(message: string): void;

/**
 * Monotonic time in nanoseconds, a BigInt (a u64); only differences are
 * meaningful. Inside a built plugin the value passes through QuickJS as a
 * double, so after 2^53 ns (104 days) of host uptime it is rounded to a
 * few hundred nanoseconds.
 *
 * @example
 * import { host } from '@switchyard/sdk';
 * const start = host.nowNs();
 * const elapsedMs = Number(host.nowNs() - start) / 1e6;
 */
export declare function nowNs(): bigint;

/**
 * A random u64, as a BigInt. It comes from a generator inside the plugin
 * (sfc32) seeded once from the host's generator: a call into the host costs
 * about as much as a whole pick. Prefer `randomBelow` on the hot path; do
 * not use `Math.random`, whose state a built plugin starts from a snapshot.
 *
 * @example
 * import { host } from '@switchyard/sdk';
 * const token = host.randomU64().toString(16);
 */
export declare function randomU64(): bigint;

/**
 * A uniformly distributed integer in `0..bound` (0 when `bound` is 0), for
 * `bound` up to 2^32, by Lemire's multiply-shift from 32 random bits.
 *
 * @example
 * import { host } from '@switchyard/sdk';
 * const index = host.randomBelow(10);
 * console.assert(index >= 0 && index < 10);
 */
export declare function randomBelow(bound: number): number;

/**
 * The live load of an endpoint of the calling pool, or `undefined` for an
 * id the pool does not have. Constant time: ask for the few endpoints you
 * sample.
 *
 * @example
 * import { host } from '@switchyard/sdk';
 * const inFlight = host.endpointLoad(4)?.inFlight ?? 0;
 */
export declare function endpointLoad(id: number): Load | undefined;

/**
 * `endpointLoad` of two endpoints in one call into the host: what a
 * power-of-two-choices pick needs, at the cost of one call instead of two.
 *
 * @example
 * import { host } from '@switchyard/sdk';
 * const [a, b] = host.endpointLoadPair(1, 2);
 * const first = (a?.inFlight ?? 0) <= (b?.inFlight ?? 0) ? 1 : 2;
 */
export declare function endpointLoadPair(first: number, second: number): [Load | undefined, Load | undefined];

/**
 * A header of the request being placed, or `undefined` when absent or
 * outside `pick`. Names are case-insensitive; repeated headers are joined by
 * `, `.
 *
 * @example
 * import { host } from '@switchyard/sdk';
 * const tenant = host.requestHeader('x-tenant') ?? 'default';
 */
export declare function requestHeader(name: string): string | undefined;
