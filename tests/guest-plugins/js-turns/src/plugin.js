// @ts-check
/**
 * A balancer for the end-to-end tests of contract 0.2.1 in JavaScript: it
 * takes turns over the pushed endpoints, counts its picks in the pool's
 * store, and carries its place to the next version of itself through
 * `snapshot` and `restore` (format 1: a byte, then the place as a u32).
 */

import { Balancer, store } from '@switchyard/sdk';

const FORMAT = 1;

export default class Turns extends Balancer {
  next = 0;

  pick(_request) {
    if (this.endpoints.length === 0) {
      return undefined;
    }
    store.add(undefined, 'picks', 1);
    const id = this.endpoints[this.next % this.endpoints.length].id;
    this.next += 1;
    return id;
  }

  snapshot() {
    const state = new Uint8Array(5);
    state[0] = FORMAT;
    new DataView(state.buffer).setUint32(1, this.next, true);
    return state;
  }

  restore(state) {
    if (state.length !== 5 || state[0] !== FORMAT) {
      throw new Error(`not a snapshot of format ${FORMAT}`);
    }
    this.next = new DataView(state.buffer, state.byteOffset, state.byteLength).getUint32(1, true);
  }
}
