// The balancer world: pick an endpoint for each request. Declarations and
// examples: balancer.d.ts.

export class Balancer {
  constructor(config) {
    this.endpoints = [];
  }

  setEndpoints(endpoints) {
    this.endpoints = endpoints;
  }

  pick(request) {
    throw new Error(`${this.constructor.name} does not implement pick(request)`);
  }

  snapshot() {
    return new Uint8Array(0);
  }

  restore(state) {}
}
