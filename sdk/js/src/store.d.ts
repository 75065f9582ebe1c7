/**
 * The store the host keeps for a pool: numbers shared by every instance of
 * the plugin that serves the pool (one per worker thread), kept across new
 * versions of the plugin.
 *
 * The host runs one instance of a plugin per worker thread, so what a
 * plugin keeps on `this` is seen by one worker only. What must be counted
 * across workers (a breaker's failure streak, a pool-wide budget) belongs
 * here. Each entry is a signed 64-bit integer (a `bigint`) named by an
 * optional endpoint id and a name, `0n` until written; every operation is
 * atomic. The store is bounded (`plugins.store_entries`, 4096 by default;
 * names up to `plugins.store_name_bytes`, 64 bytes): a full store refuses
 * new entries with `StoreError` code `'full'` and keeps serving the ones it
 * has. Balancers and recovery policies have a store; a health check's calls
 * throw code `'no-pool'`. Under `node --test`, `TestHost` stands in for it.
 *
 * Inside a built plugin the values cross to the host as numbers (QuickJS
 * passes 64-bit integers so), exact up to 2^53: keep what you store within
 * `Number.MAX_SAFE_INTEGER`.
 *
 * @example
 * import { store } from '@switchyard/sdk';
 * // Every worker's instance counts into one entry.
 * const failures = store.add(3, 'failures', 1);
 * @module
 */

/**
 * Why the store refused: `'full'` (the entry could not be made),
 * `'bad-name'` (empty, or longer than `plugins.store_name_bytes`) or
 * `'no-pool'` (no store serves the call).
 *
 * @example
 * import { store } from '@switchyard/sdk';
 * const code: store.StoreErrorCode = 'full';
 */
export type StoreErrorCode = 'full' | 'bad-name' | 'no-pool';

/**
 * Every store error code.
 *
 * @example
 * import { store } from '@switchyard/sdk';
 * console.assert(store.STORE_ERRORS.includes('full'));
 */
export declare const STORE_ERRORS: readonly StoreErrorCode[];

/**
 * Thrown when the store refuses an operation.
 *
 * @example
 * import { store } from '@switchyard/sdk';
 * try {
 *   store.add(1, 'run', 1);
 * } catch (error) {
 *   if (error instanceof store.StoreError && error.code === 'full') {
 *     // judge without the store
 *   }
 * }
 */
export declare class StoreError extends Error {
  constructor(code: StoreErrorCode);
  readonly code: StoreErrorCode;
}

/**
 * The entry's value; `0n` if it was never written.
 *
 * @example
 * import { store } from '@switchyard/sdk';
 * const run = store.get(2, 'run');
 */
export declare function get(endpoint: number | undefined, name: string): bigint;

/**
 * Adds `delta` (wrapping at 64 bits) and returns the new value.
 *
 * @example
 * import { store } from '@switchyard/sdk';
 * const inUse = store.add(undefined, 'in-use', 1);
 */
export declare function add(endpoint: number | undefined, name: string, delta: bigint | number): bigint;

/**
 * Sets the entry to `value` if it holds `expected`, and returns the value it
 * held: the swap happened if that equals `expected`. Of several instances
 * racing to change the same value, exactly one wins.
 *
 * @example
 * import { store } from '@switchyard/sdk';
 * const tripped = store.compareAndSwap(1, 'open-until', 0n, 5000n) === 0n;
 */
export declare function compareAndSwap(
  endpoint: number | undefined,
  name: string,
  expected: bigint | number,
  value: bigint | number,
): bigint;

/**
 * Replaces the entry's value `v` with `change(v)` atomically, retrying while
 * another instance changes it first; returns the old and the new value.
 * `change` may run more than once.
 *
 * @example
 * import { store } from '@switchyard/sdk';
 * const [before, peak] = store.update(undefined, 'peak', (v) => (v > 7n ? v : 7n));
 */
export declare function update(
  endpoint: number | undefined,
  name: string,
  change: (value: bigint) => bigint | number,
): [bigint, bigint];
