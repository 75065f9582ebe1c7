/**
 * A stand-in for the host, so a plugin's logic is unit-tested with
 * `node --test`, without building any wasm. `new TestHost()` makes the
 * `host` and `probe` functions read it; helpers drive a Balancer the way the
 * host would.
 *
 * @example
 * import assert from 'node:assert/strict';
 * import { test } from 'node:test';
 * import { TestHost, endpoints, pickCounts } from '@switchyard/sdk/testing';
 * import First from '../src/plugin.js';
 *
 * test('always the first', () => {
 *   new TestHost();
 *   const balancer = new First({});
 *   balancer.setEndpoints(endpoints(3));
 *   assert.deepEqual(pickCounts(balancer, 100), [100]);
 * });
 * @module
 */

import type { Balancer } from './balancer.js';
import type { Endpoint, Load, RequestInfo } from './types.js';
import type { Failure } from './recovery.js';
import type { LogLevel } from './host.js';
import type { HttpResponse, ProbeError } from './probe.js';

/**
 * The stand-in host. Making one resets everything the SDK's `host` and
 * `probe` functions see: no loads, no headers, the clock at 1 s, a fixed
 * random seed, no probe handlers (probes throw a `'refused'` ProbeError),
 * no logs. Make one at the start of each test.
 *
 * @example
 * import { host } from '@switchyard/sdk';
 * import { TestHost } from '@switchyard/sdk/testing';
 * const testHost = new TestHost();
 * const start = host.nowNs();
 * testHost.advanceMs(5);
 * console.assert(host.nowNs() - start === 5_000_000n);
 */
export declare class TestHost {
  /**
   * A fresh stand-in host, bound in place of any earlier one.
   *
   * @example
   * import { TestHost } from '@switchyard/sdk/testing';
   * const testHost = new TestHost();
   */
  constructor();

  /**
   * Sets the load `host.endpointLoad(id)` reports; missing fields are idle
   * (0 in flight, unlimited capacity, all successes, health unknown).
   *
   * @example
   * import { host } from '@switchyard/sdk';
   * import { TestHost } from '@switchyard/sdk/testing';
   * new TestHost().setLoad(1, { ewmaLatencyUs: 800 });
   * console.assert(host.endpointLoad(1)?.ewmaLatencyUs === 800);
   */
  setLoad(id: number, load: Partial<Load>): void;

  /**
   * Forgets the load of `id`: `host.endpointLoad(id)` is `undefined` again.
   *
   * @example
   * import { TestHost } from '@switchyard/sdk/testing';
   * const testHost = new TestHost();
   * testHost.setLoad(1, { inFlight: 2 });
   * testHost.clearLoad(1);
   */
  clearLoad(id: number): void;

  /**
   * Sets a header of the current request (names are case-insensitive).
   *
   * @example
   * import { host } from '@switchyard/sdk';
   * import { TestHost } from '@switchyard/sdk/testing';
   * new TestHost().setHeader('Cookie', 'session=7');
   * console.assert(host.requestHeader('cookie') === 'session=7');
   */
  setHeader(name: string, value: string): void;

  /**
   * Removes every header of the current request.
   *
   * @example
   * import { TestHost } from '@switchyard/sdk/testing';
   * const testHost = new TestHost();
   * testHost.setHeader('a', '1');
   * testHost.clearHeaders();
   */
  clearHeaders(): void;

  /**
   * Moves the clock forward by `ms` milliseconds.
   *
   * @example
   * import { TestHost } from '@switchyard/sdk/testing';
   * new TestHost().advanceMs(1000);
   */
  advanceMs(ms: number): void;

  /**
   * Moves the clock forward by `ns` nanoseconds.
   *
   * @example
   * import { TestHost } from '@switchyard/sdk/testing';
   * new TestHost().advanceNs(250n);
   */
  advanceNs(ns: bigint | number): void;

  /**
   * Seeds the random generator, for reproducible runs.
   *
   * @example
   * import { host } from '@switchyard/sdk';
   * import { TestHost } from '@switchyard/sdk/testing';
   * const testHost = new TestHost();
   * testHost.seed(7);
   * const a = host.randomU64();
   * testHost.seed(7);
   * console.assert(host.randomU64() === a);
   */
  seed(seed: bigint | number): void;

  /**
   * Answers `probe.http` with `handler`, given the request with every field
   * filled in; return a response (or its fields), or throw a ProbeError.
   *
   * @example
   * import { probe } from '@switchyard/sdk';
   * import { TestHost } from '@switchyard/sdk/testing';
   * new TestHost().onHttp((request) => ({ status: request.path === '/up' ? 200 : 404, body: 'ok' }));
   * console.assert(probe.http({ path: '/up' }).status === 200);
   */
  onHttp(
    handler: (request: {
      method: string;
      path: string;
      headers: Array<[string, string]>;
      timeoutMs: number;
    }) => HttpResponse | ConstructorParameters<typeof HttpResponse>[0],
  ): void;

  /**
   * Answers `probe.tcpConnect` with `handler`, given the timeout: return
   * the connect time in µs, or throw a ProbeError.
   *
   * @example
   * import { probe } from '@switchyard/sdk';
   * import { TestHost } from '@switchyard/sdk/testing';
   * new TestHost().onTcpConnect(() => { throw new probe.ProbeError('refused'); });
   */
  onTcpConnect(handler: (timeoutMs: number) => number): void;

  /**
   * The lines logged so far, as `[level, message]`.
   *
   * @example
   * import { host } from '@switchyard/sdk';
   * import { TestHost } from '@switchyard/sdk/testing';
   * const testHost = new TestHost();
   * host.warn('odd');
   * console.assert(testHost.logs()[0][1] === 'odd');
   */
  logs(): Array<[LogLevel, string]>;

  /**
   * Bounds `store` to `entries`, as the host's `plugins.store_entries` does
   * (4096 unless set). Objects made under one `TestHost` share its store,
   * as every worker's instance shares a pool's.
   *
   * @example
   * import { store } from '@switchyard/sdk';
   * import { TestHost } from '@switchyard/sdk/testing';
   * const testHost = new TestHost();
   * testHost.setStoreEntries(1);
   * store.add(undefined, 'a', 1);
   * // store.add(undefined, 'b', 1) now throws a StoreError with code 'full'
   */
  setStoreEntries(entries: number): void;

  /**
   * How many entries `store` holds.
   *
   * @example
   * import { store } from '@switchyard/sdk';
   * import { TestHost } from '@switchyard/sdk/testing';
   * const testHost = new TestHost();
   * store.add(2, 'run', 1);
   * console.assert(testHost.storeSize() === 1);
   */
  storeSize(): number;
}

/**
 * `count` endpoints with ids `0..count`, weight 1, at `10.0.0.{id}:80`.
 *
 * @example
 * import { endpoints } from '@switchyard/sdk/testing';
 * console.assert(endpoints(3)[2].address === '10.0.0.2:80');
 */
export declare function endpoints(count: number): Endpoint[];

/**
 * Calls `pick` `times` times and counts how often each id came back, as an
 * array indexed by id, as long as the largest id picked plus one (declined
 * picks are not counted).
 *
 * @example
 * import { Balancer } from '@switchyard/sdk';
 * import { pickCounts } from '@switchyard/sdk/testing';
 * class Second extends Balancer { pick() { return 1; } }
 * console.assert(pickCounts(new Second({}), 10).join() === '0,10');
 */
export declare function pickCounts(balancer: Pick<Balancer, 'pick'>, times: number, request?: RequestInfo): number[];

/**
 * A failed attempt (endpoint 0 refused a first `GET`, replayable) with
 * `fields` over it, for a Recovery's tests.
 *
 * @example
 * import { failure } from '@switchyard/sdk/testing';
 * const serverError = failure({ kind: 'status', status: 503, request: { priority: 'p2', attempt: 1, hash: undefined } });
 */
export declare function failure(fields?: Partial<Failure>): Failure;

export type { ProbeError };
