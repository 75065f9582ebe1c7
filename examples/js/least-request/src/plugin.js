// @ts-check
/**
 * Least request by the power of two choices: each pick samples
 * `choice_count` distinct endpoints uniformly at random, asks the host for
 * their live load, and takes the one with the fewest requests in flight per
 * unit of weight. Sampling a few endpoints instead of scanning all of them
 * costs O(1) per pick, avoids the herding that a global least-loaded choice
 * suffers on stale load, and keeps almost all of its benefit: with two
 * choices the most loaded of n servers carries Θ(log log n) excess instead
 * of Θ(log n / log log n) (M. Mitzenmacher, "The Power of Two Choices in
 * Randomized Load Balancing", IEEE TPDS 12(10), 2001). This is Envoy's
 * `LEAST_REQUEST` policy, and a port of the Rust plugin
 * `plugins/least-request`.
 *
 * An endpoint's score is `(inFlight + 1) / weight`, Envoy's
 * `weight / (active_requests + 1)^bias` with its default bias of 1: with
 * equal weights it orders endpoints exactly as `inFlight` does, and the
 * `+ 1` lets weights count on an idle pool too. Scores are compared by
 * cross-multiplying, never divided. An endpoint the host reports no load for
 * counts as 0 in flight. Ties go to the first sampled, which is random.
 *
 * Config (JSON):
 * - `choice_count` (default 2, `DEFAULT_CHOICE_COUNT`): how many distinct
 *   endpoints each pick samples, from 2 to `MAX_CHOICE_COUNT`. A pool no
 *   larger than this is scanned whole.
 *
 * ```toml
 * [[pools]]
 * name = "api"
 * balancer = { plugin = "js-least-request", config = { choice_count = 2 } }
 * endpoints = [{ address = "10.0.0.1:8080" }, { address = "10.0.0.2:8080", weight = 2 }]
 * ```
 */

import { Balancer, ConfigReader, host } from '@switchyard/sdk';

/** Endpoints sampled per pick unless `choice_count` says otherwise. */
export const DEFAULT_CHOICE_COUNT = 2;

/** The largest `choice_count` accepted; it bounds the work of a pick. */
export const MAX_CHOICE_COUNT = 32;

export default class LeastRequest extends Balancer {
  /** @param {object} config the pool's `balancer.config` */
  constructor(config) {
    super(config);
    const read = new ConfigReader(config);
    /** Distinct endpoints sampled per pick. */
    this.choiceCount = read.integer('choice_count', {
      default: DEFAULT_CHOICE_COUNT,
      min: 2,
      max: MAX_CHOICE_COUNT,
    });
    read.finish();
    /** @type {number[]} */
    this.ids = [];
    /** @type {number[]} */
    this.weights = [];
    /**
     * A permutation of the indices into `ids`; every pick reshuffles its
     * first `choiceCount` places (a partial Fisher–Yates shuffle), which
     * leaves it a permutation, so sampling distinct endpoints needs no reset
     * and no allocation.
     * @type {number[]}
     */
    this.order = [];
    /** The index of the best endpoint of the current pick, -1 before the first. */
    this.best = -1;
    /** The best endpoint's in-flight requests plus one. */
    this.bestActive = 0;
  }

  /** @param {import('@switchyard/sdk').Endpoint[]} endpoints */
  setEndpoints(endpoints) {
    this.ids = endpoints.map((e) => e.id);
    this.weights = endpoints.map((e) => Math.max(e.weight, 1));
    this.order = endpoints.map((_, index) => index);
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
    if (n === 1) {
      return this.ids[0];
    }
    const count = Math.min(this.choiceCount, n);
    const order = this.order;
    for (let place = 0; place < count; place++) {
      const other = place + host.randomBelow(n - place);
      const held = order[place];
      order[place] = order[other];
      order[other] = held;
    }
    // The sampled endpoints' loads, two per call into the host.
    this.best = -1;
    for (let place = 0; place < count; place += 2) {
      const index = order[place];
      if (place + 1 < count) {
        const next = order[place + 1];
        const [load, nextLoad] = host.endpointLoadPair(this.ids[index], this.ids[next]);
        this.consider(index, load);
        this.consider(next, nextLoad);
      } else {
        this.consider(index, host.endpointLoad(this.ids[index]));
      }
    }
    return this.ids[this.best];
  }

  /**
   * Makes the endpoint at `index`, with this load, the best so far if it
   * scores strictly better; ties keep the best.
   * @param {number} index
   * @param {import('@switchyard/sdk').Load | undefined} load
   */
  consider(index, load) {
    const active = (load === undefined ? 0 : load.inFlight) + 1;
    if (this.best < 0 || this.beats(active, index, this.bestActive, this.best)) {
      this.best = index;
      this.bestActive = active;
    }
  }

  /**
   * Whether `active / weight` at `index` is strictly below the held best's,
   * without dividing. The products reach 2^64, past exact doubles, so they
   * are compared as BigInts when they leave the exact range.
   * @param {number} active
   * @param {number} index
   * @param {number} heldActive
   * @param {number} held
   */
  beats(active, index, heldActive, held) {
    const mine = active * this.weights[held];
    const theirs = heldActive * this.weights[index];
    if (mine < Number.MAX_SAFE_INTEGER && theirs < Number.MAX_SAFE_INTEGER) {
      return mine < theirs;
    }
    return BigInt(active) * BigInt(this.weights[held]) < BigInt(heldActive) * BigInt(this.weights[index]);
  }
}
