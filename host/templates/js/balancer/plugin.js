// @ts-check
/**
 * `{{name}}`: least in flight over a round-robin window. Each pick looks at
 * the next `window` endpoints in round-robin order, asks the host how many
 * requests each has in flight, and takes the one with the fewest; a tie goes
 * to the first in round-robin order, so an idle pool is served round robin.
 * Looking at a window rather than the whole pool keeps a pick O(`window`) on
 * a pool of any size. An endpoint the host reports no load for counts as 0
 * in flight; an empty pool declines the pick.
 *
 * Config (JSON, every key optional):
 * - `window` (default `DEFAULT_WINDOW`): endpoints looked at per pick, from
 *   1 (plain round robin) to `MAX_WINDOW`.
 */

import { Balancer, ConfigReader, host } from '@switchyard/sdk';

/** Endpoints looked at per pick unless `window` says otherwise. */
export const DEFAULT_WINDOW = 8;

/** The largest `window` accepted; it bounds the work of a pick. */
export const MAX_WINDOW = 64;

/** The balancer's state for one pool. */
export default class LeastInFlight extends Balancer {
  /** @param {object} config the pool's `balancer.config` */
  constructor(config) {
    super(config);
    const read = new ConfigReader(config);
    /** Endpoints looked at per pick. */
    this.window = read.integer('window', { default: DEFAULT_WINDOW, min: 1, max: MAX_WINDOW });
    read.finish();
    /** @type {number[]} */
    this.ids = [];
    /** Where the next pick's window starts. */
    this.next = 0;
  }

  /** @param {import('@switchyard/sdk').Endpoint[]} endpoints */
  setEndpoints(endpoints) {
    this.ids = endpoints.map((e) => e.id);
    this.next %= Math.max(this.ids.length, 1);
  }

  /**
   * @param {import('@switchyard/sdk').RequestInfo} _request
   * @returns {number | undefined}
   */
  pick(_request) {
    const n = this.ids.length;
    if (n === 0) {
      return undefined;
    }
    let best = -1;
    let fewest = 0;
    for (let step = 0; step < Math.min(this.window, n); step++) {
      const index = (this.next + step) % n;
      const inFlight = host.endpointLoad(this.ids[index])?.inFlight ?? 0;
      // Strictly fewer: a tie keeps the earlier in round-robin order.
      if (best < 0 || inFlight < fewest) {
        best = index;
        fewest = inFlight;
      }
    }
    this.next = (best + 1) % n;
    return this.ids[best];
  }
}
