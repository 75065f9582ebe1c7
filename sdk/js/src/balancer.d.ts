/**
 * The balancer world: pick an endpoint for each request.
 * @module
 */

import type { Endpoint, RequestInfo } from './types.js';

/**
 * A load-balancing strategy for one pool. Extend it and make the subclass
 * the default export of `src/plugin.js`.
 *
 * For each pool that uses the plugin, the host makes one object of your
 * class with `new` (given the pool's `balancer.config`, parsed), gives it the
 * eligible endpoints with `setEndpoints` whenever they change, and calls
 * `pick` for every request. `pick` is the hot path: keep it O(1) in the
 * pool's size and ask `host.endpointLoad` only for the few endpoints you
 * sample. Throwing from the constructor refuses the pool's config, with
 * your message shown to the operator.
 *
 * An exception thrown from `pick` is caught and logged, and the request is
 * placed by the host's round robin, as when `pick` declines.
 *
 * @example
 * // @ts-check
 * import { Balancer, host } from '@switchyard/sdk';
 *
 * // Picks uniformly at random.
 * export default class Random extends Balancer {
 *   pick(_request) {
 *     if (this.endpoints.length === 0) {
 *       return undefined;
 *     }
 *     return this.endpoints[host.randomBelow(this.endpoints.length)].id;
 *   }
 * }
 */
export declare class Balancer {
  /**
   * Builds the strategy from the pool's `balancer.config` (`{}` when the
   * pool gives none). Throw to refuse the config; the message is shown to
   * the operator.
   *
   * @example
   * import { Balancer, ConfigReader } from '@switchyard/sdk';
   * class Window extends Balancer {
   *   constructor(config) {
   *     super(config);
   *     const read = new ConfigReader(config);
   *     this.window = read.integer('window', { default: 8, min: 1, max: 64 });
   *     read.finish();
   *   }
   * }
   */
  constructor(config: object);

  /** The endpoints of the last `setEndpoints`, when it is not overridden. */
  endpoints: Endpoint[];

  /**
   * Replaces the eligible endpoints: called after the constructor and
   * whenever the set changes (endpoints added, removed, ejected or
   * readmitted). By default it keeps them in `this.endpoints`.
   *
   * @example
   * import { Balancer } from '@switchyard/sdk';
   * class Ids extends Balancer {
   *   setEndpoints(endpoints) {
   *     this.ids = endpoints.map((e) => e.id);
   *   }
   * }
   */
  setEndpoints(endpoints: Endpoint[]): void;

  /**
   * Picks an endpoint id from the last `setEndpoints`, or `undefined` to let
   * the host's round robin place the request.
   *
   * @example
   * import { Balancer } from '@switchyard/sdk';
   * class RoundRobin extends Balancer {
   *   next = 0;
   *   pick(_request) {
   *     if (this.endpoints.length === 0) return undefined;
   *     this.next = (this.next + 1) % this.endpoints.length;
   *     return this.endpoints[this.next].id;
   *   }
   * }
   */
  pick(request: RequestInfo): number | undefined;

  /**
   * The pool's state, carried to the next version of the plugin when its
   * file is swapped: each worker asks its old instance's object for it and
   * hands it to `restore` of the new version's object for the same pool.
   * The default carries nothing (empty bytes), and the new version starts
   * afresh. Put a version in the bytes if their shape may change.
   *
   * @example
   * import { Balancer } from '@switchyard/sdk';
   * class Turns extends Balancer {
   *   next = 0;
   *   snapshot() {
   *     return new Uint8Array(new Uint32Array([this.next]).buffer);
   *   }
   * }
   */
  snapshot(): Uint8Array;

  /**
   * Takes over the pool's state from an earlier version's `snapshot`
   * (never called with empty bytes). Throwing refuses the new version: the
   * host keeps the running one and shows the message, so throw for bytes
   * you cannot read rather than start cold by mistake. The default ignores
   * them.
   *
   * @example
   * import { Balancer } from '@switchyard/sdk';
   * class Turns extends Balancer {
   *   next = 0;
   *   restore(state) {
   *     if (state.length !== 4) throw new Error(`expected 4 bytes of turn, got ${state.length}`);
   *     this.next = new DataView(state.buffer, state.byteOffset).getUint32(0, true);
   *   }
   * }
   */
  restore(state: Uint8Array): void;
}
